"""EfficientNet-B0..B7 (torchvision) and timm's tf_efficientnet_b0..b7 / L2-NS: goldens, exact sizes, contracts.

Goldens: tests/golden/{efficientnet_tv,tf_efficientnet,timm_efficientnet}_narrow*.npz, written by
`experiments/make_goldens.py efficientnet_narrow` (torchvision 0.29.1 / timm 1.0.31 at width 0.25) on seeded
weights the test rebuilds without torch; each goes through the registry (safetensors file -> converter ->
merge gate) with the width/depth/eps as `load` overrides.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from safetensors.numpy import save_file

import zoomjax.models as zm
from zoomjax.checkpoints import CheckpointError
from zoomjax.models import efficientnet as en
from zoomjax.models import efficientnet_lite as el
from goldens import GOLDEN, sw, rel_err, assert_memo_episode_adapts  # pylint: disable=wrong-import-order


# golden -> (registered name whose converter reads it, load overrides); as in make_goldens.EFFICIENTNET_NARROW.
GOLDENS = {
    "efficientnet_tv_narrow": ("efficientnet_b0", dict(width=0.25, depth=1.2, bn_epsilon=1e-5)),
    "efficientnet_tv_narrow_eps3": ("efficientnet_b5", dict(width=0.25, depth=0.5, bn_epsilon=1e-3)),
    "tf_efficientnet_narrow": ("tf_efficientnet_b0", dict(width=0.25, depth=1.2)),
    "tf_efficientnet_narrow_odd": ("tf_efficientnet_b7", dict(width=0.25, depth=0.5)),
    "timm_efficientnet_narrow": ("efficientnet_b0", dict(width=0.25, depth=0.5, bn_epsilon=1e-5)),
}

# torchvision 0.29.1's count (it documents EfficientNet-B0 5,288,548); timm 1.0.31's for the TF ports.
EXPECTED = {
    **{f"{p}efficientnet_b{i}": n for p in ("", "tf_") for i, n in enumerate(
        (5_288_548, 7_794_184, 9_109_994, 12_233_232, 19_341_616, 30_389_784, 43_040_704, 66_347_960))},
    "tf_efficientnet_l2_ns": 480_309_308, "tf_efficientnet_l2_ns_475": 480_309_308,
}




@pytest.mark.parametrize("golden", sorted(GOLDENS))
def test_narrow_efficientnet_matches_reference(golden, tmp_path):
  g = dict(np.load(GOLDEN / f"{golden}.npz"))
  state = sw.seeded_state_dict(sw.decode_spec(g["spec"]))
  path = tmp_path / "model.safetensors"
  save_file(state, str(path))
  name, kw = GOLDENS[golden]
  bundle = zm.load(name, str(path), num_classes=10, **kw)
  x = jnp.asarray(sw.seeded_images(tuple(g["input_shape"])).transpose(0, 2, 3, 1))
  apply = jax.jit(lambda v, x, m=bundle.module: m.apply(v, x))
  logits, inter = apply(bundle.variables, x)
  assert logits.shape == g["logits"].shape == (2, 10)
  assert rel_err(logits, g["logits"]) < 1e-4
  assert rel_err(inter["pre_logits"], g["pre_logits"]) < 1e-4
  assert inter["feature_map"].shape == tuple(g["feature_map_shape"])
  assert rel_err(inter["feature_map"][..., ::8], g["feature_map_every8"]) < 1e-4
  if g["input_shape"][-1] % 2 == 0:  # Even sizes: TF 'SAME' and torch padding differ (so it is tested).
    other = "symmetric" if bundle.module.padding == "same" else "same"
    assert rel_err(jax.jit(bundle.module.clone(padding=other).apply)(bundle.variables, x)[0], g["logits"]) > 1e-3


def test_wrong_layout_is_a_clear_error(tmp_path):
  """A torchvision file given to a timm entry names the key it lacks; a half-sized variant gets the diff."""
  g = dict(np.load(GOLDEN / "efficientnet_tv_narrow_eps3.npz"))
  path = tmp_path / "tv.safetensors"
  save_file(sw.seeded_state_dict(sw.decode_spec(g["spec"])), str(path))
  with pytest.raises(CheckpointError, match=r"tv\.safetensors.*timm EfficientNet: no `blocks"):
    zm.load("tf_efficientnet_b0", str(path), width=0.25, depth=0.5, num_classes=10)
  with pytest.raises(CheckpointError, match=r"(?s)does not fit the model.*missing in checkpoint"):
    zm.load("efficientnet_b5", str(path), width=0.25, depth=1.2, num_classes=10)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_exact_parameter_counts(name):
  module, spec = zm.create(name)
  assert zm.count_params(zm.variable_shapes(module, spec)) == EXPECTED[name] == spec.num_params  # eval_shape


def test_checkpoint_preprocessing():
  """torchvision's weights transforms and timm's pretrained_cfg (short side floor(size / crop_pct))."""
  pp = {n: zm.get_spec(n).preprocessing for n in EXPECTED}
  got = {n: (p.input_size, p.resize_size, p.resize_method) for n, p in pp.items()}
  assert got["efficientnet_b0"] == (224, 256, "bicubic") and got["efficientnet_b2"] == (288, 288, "bicubic")
  assert got["efficientnet_b7"] == (600, 600, "bicubic")
  assert got["tf_efficientnet_b0"] == (224, 256, "bicubic") and got["tf_efficientnet_b3"] == (300, 331, "bicubic")
  assert got["tf_efficientnet_l2_ns"] == (800, 833, "bicubic")
  assert got["tf_efficientnet_l2_ns_475"] == (475, 507, "bicubic")
  assert all(p.mean == zm.get_spec("resnet50").preprocessing.mean for p in pp.values())
  # BatchNorm eps per checkpoint: torchvision B0-B4 1e-5, the B5-B7 ports and every TF model 1e-3.
  eps = {n: zm.create(n)[0].bn_epsilon for n in EXPECTED}
  assert {n for n, e in eps.items() if e == 1e-5} == {f"efficientnet_b{i}" for i in range(5)}
  assert zm.create("tf_efficientnet_b0")[0].padding == "same" and zm.create("efficientnet_b0")[0].padding == "symmetric"


TINY = dict(width=0.1, depth=0.1)  # stem 8, one block per stage, head 128.


@pytest.mark.parametrize("name", ["efficientnet_b0", "tf_efficientnet_b0"])
def test_tiny_random_init_forward_dtype_and_prior_mode(name):
  bundle = zm.load(name, random_init=True, **TINY)
  x = bundle.preprocessing.normalize(jax.random.uniform(jax.random.PRNGKey(0), (2, 64, 64, 3), maxval=255.0))
  logits, inter = jax.jit(bundle.module.apply)(bundle.variables, x)
  assert logits.shape == (2, 1000) and logits.dtype == jnp.float32 and bool(jnp.all(jnp.isfinite(logits)))
  assert inter["pre_logits"].shape == (2, 128) and inter["feature_map"].shape == (2, 2, 2, 128)
  assert set(inter) >= {"stem", "stage_7", "feature_map", "pre_logits"}
  half = jax.jit(bundle.module.clone(dtype=jnp.bfloat16).apply)(bundle.variables, x)[0]
  assert half.dtype == jnp.float32 and 0 < rel_err(half, np.asarray(logits)) < 0.1
  prior = zm.create(name, bn_prior_strength=16.0, **TINY)[0]
  assert rel_err(jax.jit(prior.apply)(bundle.variables, x)[0], np.asarray(logits)) > 1e-3


def test_family_memo_episode():
  """A MEMO + RRC episode (gradient through depthwise, squeeze-excite and prior-mode BatchNorm), tiny width;
  the TF layout (L2-NS's)."""
  assert_memo_episode_adapts(zm.load("tf_efficientnet_l2_ns_475", random_init=True, **TINY))


def test_scaling_reuses_the_lite_rules():
  """B-variants scale every stage's depth (Lite fixes the first and last) with Lite's round_filters."""
  depth = {v: sum(len(s) for s in el.block_configs(w, d, scale_first_last=True)) for v, (w, d) in en.SCALING.items()}
  assert depth["b0"] == 16 and depth["b7"] == 55 and depth["l2"] == 88
  assert en.efficientnet(2.0, 3.1).head_features == 2560 == en.efficientnet(2.0, 3.1, "tf").head_features


@pytest.mark.parametrize("k,stride,hw", [(3, 2, (8, 8)), (5, 2, (9, 12)), (5, 1, (4, 7)), (3, 1, (5, 6))])
def test_shift_depthwise_with_torch_padding_equals_grouped_conv(k, stride, hw):
  """The kernels' explicit padding (torch's k // 2, the torchvision layout): forward and hand-written VJP."""
  from zoomjax.kernels import depthwise  # pylint: disable=import-outside-toplevel
  pad = ((k // 2, k // 2), (k // 2, k // 2))
  x = jax.random.normal(jax.random.PRNGKey(0), (2,) + hw + (6,))
  w = jax.random.normal(jax.random.PRNGKey(1), (k, k, 6))

  def run(conv):
    out, vjp = jax.vjp(lambda x, w: conv(x, w, stride, pad), x, w)
    return (out,) + vjp(jnp.cos(out))

  for got, want in zip(jax.jit(lambda: run(depthwise.depthwise_conv_shift))(),
                       jax.jit(lambda: run(depthwise.depthwise_conv_grouped))()):
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_unregistered_variant_names_the_closest_registered_ones():
  with pytest.raises(KeyError, match=r"unknown model 'tf_efficientnet_b8'; closest: tf_efficientnet_b7"):
    zm.load("tf_efficientnet_b8")
