"""ConvNeXt / MobileNetV3 / Swin: torchvision goldens at narrow widths, exact full-size counts, contracts.

Expected outputs were computed by experiments/make_goldens.py (`convnext_narrow`, `mobilenet_v3_narrow`,
`swin_narrow`) in a throwaway torch venv on the seeded weights of tests/golden/seeded_weights.py, rebuilt here
with numpy alone.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from zoomjax import models
from zoomjax.checkpoints import convert_torchvision as ctv
from zoomjax.models import convnext, mobilenet_v3, swin
from goldens import load_golden, rel_err, assert_memo_episode_adapts  # pylint: disable=wrong-import-order







# torchvision 0.29.1's counts (its weights' `num_params`); it documents ConvNeXt-B 88,591,464.
EXPECTED = {
    "convnext_tiny": 28_589_128, "convnext_small": 50_223_688, "convnext_base": 88_591_464,
    "convnext_large": 197_767_336,
    # it documents MobileNetV3-S 2,542,856.
    "mobilenet_v3_small": 2_542_856, "mobilenet_v3_large": 5_483_032, "mobilenet_v3_large_v2": 5_483_032,
    # it documents Swin-B 87,768,224.
    "swin_t": 28_288_354, "swin_s": 49_606_258, "swin_b": 87_768_224,
}
# torchvision's eval resize per weights entry (bilinear, centre crop 224, ImageNet mean/std).
RESIZE = {"convnext_tiny": (236, "bilinear"), "convnext_small": (230, "bilinear"),
          "convnext_base": (232, "bilinear"), "convnext_large": (232, "bilinear"),
          "mobilenet_v3_small": (256, "bilinear"), "mobilenet_v3_large": (256, "bilinear"),  # IMAGENET1K_V1
          "mobilenet_v3_large_v2": (232, "bilinear"),  # IMAGENET1K_V2
          "swin_t": (232, "bicubic"), "swin_s": (246, "bicubic"), "swin_b": (238, "bicubic")}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_exact_parameter_counts(name):
  module, spec = models.create(name)
  count = models.count_params(models.variable_shapes(module, spec))  # eval_shape: no real init
  assert count == EXPECTED[name] == spec.num_params


@pytest.mark.parametrize("name", sorted(RESIZE))
def test_torchvision_preprocessing_per_variant(name):
  pp = models.get_spec(name).preprocessing
  assert (pp.resize_size, pp.resize_method) == RESIZE[name] and pp.input_size == 224
  assert pp.mean == pytest.approx((123.675, 116.28, 103.53)) and pp.std == pytest.approx((58.395, 57.12, 57.375))


# ----------------------------------------------------------------------------------------------- ConvNeXt

CONVNEXT_NARROW = ((8, 2), (16, 1), (32, 1))  # make_goldens.py: CNBlockConfig(8, 16, 2), (16, 32, 1), (32, None, 1)


def test_convnext_matches_torchvision():
  g, state, x = load_golden("convnext_narrow")
  variables = ctv.convert_convnext(state)  # stage sizes read from the keys
  model = convnext.ConvNeXt(stages=CONVNEXT_NARROW, num_classes=10)
  apply = jax.jit(model.apply)
  logits, inter = apply(variables, jnp.asarray(x))
  assert logits.shape == g["logits"].shape == (2, 10)
  assert rel_err(logits, g["logits"]) < 1e-4
  assert rel_err(inter["pre_logits"], g["pre_logits"]) < 1e-4
  assert inter["feature_map"].shape == g["feature_map"].shape == (2, 4, 4, 32)
  assert rel_err(inter["feature_map"], g["feature_map"]) < 1e-4
  # The layer scale really matters (a converter that dropped it would fail the golden).
  bad = jax.tree_util.tree_map(lambda a: a, variables)
  bad["params"]["stages_0_blocks_1"]["gamma"] = np.ones_like(bad["params"]["stages_0_blocks_1"]["gamma"])
  assert rel_err(apply(bad, jnp.asarray(x))[0], g["logits"]) > 1e-3
  with pytest.raises(ValueError, match="not used"):  # A deeper file is not this variant.
    ctv.convert_convnext(state, stage_sizes=(1, 1, 1))


def test_convnext_tiny_width_forward_and_dtype():
  """`load('convnext_base', random_init=True)` at a tiny width: contract shapes and the bfloat16 compute dtype."""
  kw = dict(stages=((8, 1), (16, 1)))
  bundle = models.load("convnext_base", random_init=True, **kw)
  x = bundle.preprocessing.normalize(jax.random.uniform(jax.random.PRNGKey(0), (2, 64, 64, 3), maxval=255.0))
  logits, inter = jax.jit(bundle.module.apply)(bundle.variables, x)
  assert logits.shape == (2, 1000) and logits.dtype == jnp.float32 and bool(jnp.all(jnp.isfinite(logits)))
  assert inter["pre_logits"].shape == (2, 16) and inter["feature_map"].shape == (2, 8, 8, 16)
  half = models.create("convnext_base", dtype=jnp.bfloat16, **kw)[0]
  h_logits, h_inter = jax.jit(half.apply)(bundle.variables, x)
  assert h_inter["feature_map"].dtype == jnp.bfloat16 and h_logits.dtype == jnp.float32
  assert rel_err(h_logits, logits) < 5e-2


# -------------------------------------------------------------------------------------------- MobileNetV3

# make_goldens.py's setting: (in, kernel, expanded, out, SE, hard-swish, stride); last_channel 32.
MOBILENET_NARROW = ((8, 3, 8, 8, True, False, 2), (8, 3, 24, 16, False, False, 2),
                    (16, 5, 32, 16, True, True, 1), (16, 3, 48, 24, True, True, 2))
# Tiny widths for load(): one block of each kind.
MOBILENET_TINY = dict(setting=((8, 3, 8, 8, True, False, 2), (8, 3, 16, 8, True, True, 1)), last_channel=16)


def test_mobilenet_v3_matches_torchvision():
  g, state, x = load_golden("mobilenet_v3_narrow")
  variables = ctv.convert_mobilenet_v3(state)  # block structure read from the keys
  model = mobilenet_v3.MobileNetV3(setting=MOBILENET_NARROW, last_channel=32, num_classes=10)
  apply = jax.jit(model.apply)
  logits, inter = apply(variables, jnp.asarray(x))
  assert logits.shape == g["logits"].shape == (2, 10)
  assert rel_err(logits, g["logits"]) < 1e-4
  assert rel_err(inter["pre_logits"], g["pre_logits"]) < 1e-4
  assert inter["feature_map"].shape == g["feature_map"].shape == (2, 4, 4, 144)
  assert rel_err(inter["feature_map"], g["feature_map"]) < 1e-4
  assert variables["params"]["blocks_3"]["se_fc1"]["kernel"].shape == (1, 1, 48, 16)  # _make_divisible(48 // 4)
  # The running statistics matter, and the prior mode changes the answer.
  bad = jax.tree_util.tree_map(lambda a: a, variables)
  bn = bad["batch_stats"]["blocks_2"]["depthwise"]["bn"]
  bn["var"] = np.ones_like(bn["var"])
  assert rel_err(apply(bad, jnp.asarray(x))[0], g["logits"]) > 1e-3
  prior = mobilenet_v3.MobileNetV3(setting=MOBILENET_NARROW, last_channel=32, num_classes=10,
                                   bn_prior_strength=1e9)
  assert rel_err(jax.jit(prior.apply)(variables, jnp.asarray(x))[0], g["logits"]) < 1e-4  # N -> inf: eval
  with pytest.raises(KeyError, match="torchvision ConvNeXt: checkpoint has no key 'features.0.0.bias'"):
    ctv.convert_convnext(state)  # A MobileNetV3 file is not a ConvNeXt (bias-free stem conv).


@pytest.mark.parametrize("name", ["mobilenet_v3_small", "mobilenet_v3_large"])
def test_mobilenet_v3_tiny_width_forward(name):
  """`load(name, random_init=True)` at a tiny width: contract shapes, bf16 compute, BN prior mode."""
  bundle = models.load(name, random_init=True, **MOBILENET_TINY)
  x = bundle.preprocessing.normalize(jax.random.uniform(jax.random.PRNGKey(0), (2, 64, 64, 3), maxval=255.0))
  logits, inter = jax.jit(bundle.module.apply)(bundle.variables, x)
  assert logits.shape == (2, 1000) and logits.dtype == jnp.float32 and bool(jnp.all(jnp.isfinite(logits)))
  assert inter["pre_logits"].shape == (2, 16) and inter["feature_map"].shape == (2, 16, 16, 48)
  prior = models.create(name, bn_prior_strength=16.0, **MOBILENET_TINY)[0]
  assert not np.allclose(jax.jit(prior.apply)(bundle.variables, x)[0], logits)
  half = models.create(name, dtype=jnp.bfloat16, **MOBILENET_TINY)[0]
  h_logits, h_inter = jax.jit(half.apply)(bundle.variables, x)
  assert h_inter["feature_map"].dtype == jnp.bfloat16 and h_logits.dtype == jnp.float32
  assert bool(jnp.all(jnp.isfinite(h_logits)))


def test_mobilenet_v3_memo_episode():
  """A MEMO + RRC episode (gradient step through hard-swish, SE and prior-mode BatchNorm) at a tiny width."""
  assert_memo_episode_adapts(models.load("mobilenet_v3_small", random_init=True, **MOBILENET_TINY))


# --------------------------------------------------------------------------------------------------- Swin

SWIN_NARROW = dict(embed_dim=8, depths=(2, 2, 2), num_heads=(2, 2, 4), window=(5, 5), num_classes=10)


def test_swin_matches_torchvision(monkeypatch):
  """Padded, shifted and unshifted windows, odd-width patch merging, on a 64x44 input (make_goldens.py)."""
  g, state, x = load_golden("swin_narrow")
  variables = ctv.convert_swin(state)  # depths read from the keys
  model = swin.Swin(**SWIN_NARROW)
  apply = jax.jit(model.apply)
  logits, inter = apply(variables, jnp.asarray(x))
  assert x.shape == (2, 64, 44, 3) and logits.shape == g["logits"].shape == (2, 10)
  assert rel_err(logits, g["logits"]) < 1e-4
  assert rel_err(inter["pre_logits"], g["pre_logits"]) < 1e-4
  assert inter["feature_map"].shape == g["feature_map"].shape == (2, 4, 3, 32)
  assert rel_err(inter["feature_map"], g["feature_map"]) < 1e-4
  # The relative position bias and the shift really matter.
  bad = jax.tree_util.tree_map(lambda a: a, variables)
  attn = bad["params"]["stages_0_blocks_0"]["attn"]
  attn["relative_position_bias_table"] = np.zeros_like(attn["relative_position_bias_table"])
  assert rel_err(apply(bad, jnp.asarray(x))[0], g["logits"]) > 1e-3
  monkeypatch.setattr(swin, "shift_mask", lambda pad_hw, window, shift: np.zeros((1, 1, 1), np.float32))
  unmasked = jax.jit(lambda v, x: model.apply(v, x))(variables, jnp.asarray(x))[0]  # a new trace
  assert rel_err(unmasked, g["logits"]) > 1e-3
  with pytest.raises(ValueError, match="not used"):  # A deeper file is not this variant.
    ctv.convert_swin(state, depths=(2, 2))


def test_swin_shift_mask_matches_the_window_regions():
  """torchvision's mask: 0 inside a region, -100 across; a window not touching the wrap-around is all zeros."""
  m = swin.shift_mask((8, 8), (4, 4), (2, 2))
  assert m.shape == (4, 16, 16) and set(np.unique(m)) == {0.0, -100.0}
  assert not m[0].any() and m[3].any()
  idx = swin.relative_position_index((2, 3))
  assert idx.shape == (6, 6) and idx.max() == 3 * 5 - 1 and (np.diag(idx) == (2 - 1) * 5 + (3 - 1)).all()


def test_swin_tiny_width_forward_and_dtype():
  kw = dict(embed_dim=8, depths=(2, 1), num_heads=(2, 2))
  bundle = models.load("swin_b", random_init=True, **kw)
  assert bundle.preprocessing.resize_method == "bicubic"
  x = bundle.preprocessing.normalize(jax.random.uniform(jax.random.PRNGKey(0), (2, 64, 64, 3), maxval=255.0))
  logits, inter = jax.jit(bundle.module.apply)(bundle.variables, x)
  assert logits.shape == (2, 1000) and logits.dtype == jnp.float32 and bool(jnp.all(jnp.isfinite(logits)))
  assert inter["pre_logits"].shape == (2, 16) and inter["feature_map"].shape == (2, 8, 8, 16)
  half = models.create("swin_b", dtype=jnp.bfloat16, **kw)[0]
  h_logits, h_inter = jax.jit(half.apply)(bundle.variables, x)
  assert h_inter["feature_map"].dtype == jnp.bfloat16 and h_logits.dtype == jnp.float32
  assert rel_err(h_logits, logits) < 5e-2
