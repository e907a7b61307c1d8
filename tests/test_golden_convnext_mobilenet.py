"""ConvNeXt / MobileNetV3 (issue 15): torchvision goldens at narrow widths, exact full-size counts, contracts.

Expected outputs were computed by experiments/make_goldens.py (`convnext_narrow`, `mobilenet_v3_narrow`) in a
throwaway torch venv on the seeded weights of tests/golden/seeded_weights.py, rebuilt here with numpy alone.
"""
import importlib.util
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from zoomjax import models
from zoomjax.checkpoints import convert_torchvision as ctv
from zoomjax.models import convnext

GOLDEN = pathlib.Path(__file__).parent / "golden"
_spec = importlib.util.spec_from_file_location("seeded_weights", GOLDEN / "seeded_weights.py")
sw = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(sw)


def load_golden(name):
  g = dict(np.load(GOLDEN / f"{name}.npz"))
  state = sw.seeded_state_dict(sw.decode_spec(g["spec"]))
  x = sw.seeded_images(tuple(g["input_shape"])).transpose(0, 2, 3, 1)  # NCHW -> NHWC
  return g, state, x


def rel_err(got, want):
  got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
  return float(np.max(np.abs(got - want)) / max(np.max(np.abs(want)), 1e-12))


# torchvision 0.29.1's counts (its weights' `num_params`); it documents ConvNeXt-B 88,591,464.
EXPECTED = {
    "convnext_tiny": 28_589_128, "convnext_small": 50_223_688, "convnext_base": 88_591_464,
    "convnext_large": 197_767_336,
}
# torchvision's eval resize per weights entry (bilinear, centre crop 224, ImageNet mean/std).
RESIZE = {"convnext_tiny": (236, "bilinear"), "convnext_small": (230, "bilinear"),
          "convnext_base": (232, "bilinear"), "convnext_large": (232, "bilinear")}


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
