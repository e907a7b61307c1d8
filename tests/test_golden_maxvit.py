"""MaxViT-T: torchvision golden at a narrow width, exact full-size count, loading, contracts.

Expected outputs were computed by experiments/make_maxvit_golden.py in a throwaway torch venv on the seeded
weights of tests/golden/seeded_weights.py, rebuilt here with numpy alone.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from zoomjax import models
from zoomjax.checkpoints import CheckpointError
from zoomjax.checkpoints import convert_torchvision as ctv
from zoomjax.models import maxvit
from goldens import load_golden, rel_err, assert_memo_episode_adapts  # pylint: disable=wrong-import-order

# make_maxvit_golden.py's NARROW: 112x112 input, 7x7 windows / grid on 28x28, 14x14 and 7x7 stage maps.
NARROW = dict(stem_channels=8, block_channels=(8, 16, 32), block_layers=(2, 1, 1), head_dim=4, num_classes=10)
# Tiny widths for load(): one stage, 2x2 partitions, so inputs whose side is a multiple of 8 work.
TINY = dict(stem_channels=8, block_channels=(16,), block_layers=(1,), head_dim=4, partition_size=2)


def test_exact_parameter_count_and_preprocessing():
  module, spec = models.create("maxvit_t")
  count = models.count_params(models.variable_shapes(module, spec))  # eval_shape: no real init
  assert count == 30_919_624 == spec.num_params  # torchvision 0.29.1's (and its documented) count
  pp = spec.preprocessing  # MaxVit_T_Weights.IMAGENET1K_V1: Resize(224, bicubic) -> CenterCrop(224)
  assert (pp.input_size, pp.resize_size, pp.resize_method) == (224, 224, "bicubic")
  assert pp.mean == pytest.approx((123.675, 116.28, 103.53)) and pp.std == pytest.approx((58.395, 57.12, 57.375))


@pytest.fixture(scope="module")
def golden():
  g, state, x = load_golden("maxvit_narrow")
  scale = np.float32(g["table_scale"])  # the generator's O(1) bias tables
  state = {k: v * scale if k.endswith("relative_position_bias_table") else v for k, v in state.items()}
  return g, state, jnp.asarray(x)


def test_maxvit_matches_torchvision(golden):
  g, state, x = golden
  variables = ctv.convert_maxvit(state)  # layers per stage read from the keys
  model = maxvit.MaxViT(**NARROW)
  apply = jax.jit(model.apply)
  logits, inter = apply(variables, x)
  assert x.shape == (2, 112, 112, 3) and logits.shape == g["logits"].shape == (2, 10)
  assert rel_err(logits, g["logits"]) < 1e-4
  assert rel_err(inter["pre_logits"], g["pre_logits"]) < 1e-4
  assert inter["feature_map"].shape == g["feature_map"].shape == (2, 7, 7, 32)
  assert rel_err(inter["feature_map"], g["feature_map"]) < 1e-4
  # The relative position bias and the running statistics really matter.
  bad = jax.tree_util.tree_map(lambda a: a, variables)
  attn = bad["params"]["blocks_0_layers_1_grid_attention"]["attn"]
  attn["relative_position_bias_table"] = np.zeros_like(attn["relative_position_bias_table"])
  assert rel_err(apply(bad, x)[1]["feature_map"], g["feature_map"]) > 1e-3
  bad = jax.tree_util.tree_map(lambda a: a, variables)
  bn = bad["batch_stats"]["blocks_0_layers_0_mbconv"]["pre_norm"]
  bn["var"] = np.ones_like(bn["var"])
  assert rel_err(apply(bad, x)[0], g["logits"]) > 1e-3


def test_partition_round_trip_and_grid_order():
  x = jnp.arange(2 * 4 * 6 * 3, dtype=jnp.float32).reshape(2, 4, 6, 3)
  for grid in (False, True):
    t = maxvit.partition(x, 2, grid)
    assert t.shape == (2, 6, 4, 3)
    np.testing.assert_array_equal(maxvit.departition(t, 2, 4, 6, grid), x)
  # Grid group 0 holds the tokens at rows {0, 2} x columns {0, 3}: one per cell of the 2x2 grid.
  np.testing.assert_array_equal(maxvit.partition(x, 2, True)[0, 0], x[0, ::2, ::3].reshape(4, 3))
  np.testing.assert_array_equal(maxvit.partition(x, 2, False)[0, 0], x[0, :2, :2].reshape(4, 3))


def test_checkpoint_file_loads_through_the_registry_and_wrong_files_fail(golden, tmp_path):
  g, state, x = golden
  path = tmp_path / "maxvit_narrow.npz"
  np.savez(path, **state)
  bundle = models.load("maxvit_t", str(path), **NARROW)  # the registry's converter and merge gate
  want = ctv.convert_maxvit(state)  # what the golden test runs
  assert jax.tree_util.tree_structure(bundle.variables) == jax.tree_util.tree_structure(want)
  assert all(jax.tree_util.tree_leaves(jax.tree_util.tree_map(np.array_equal, bundle.variables, want)))
  with pytest.raises(CheckpointError, match="does not fit the model") as e:  # the full-size model: two-sided diff
    models.load("maxvit_t", str(path))
  assert "missing in checkpoint" in str(e.value) and "shape mismatch" in str(e.value)
  with pytest.raises(KeyError, match="torchvision MaxViT: checkpoint has no key 'stem.0.0.weight'"):
    ctv.convert_maxvit(load_golden("swin_narrow")[1])  # a Swin file is not a MaxViT
  with pytest.raises(ValueError, match="not used"):  # a deeper file is not this variant
    ctv.convert_maxvit(state, block_layers=(1, 1, 1))


def test_tiny_width_forward_dtype_prior_and_bad_sizes():
  bundle = models.load("maxvit_t", random_init=True, **TINY)
  x = bundle.preprocessing.normalize(jax.random.uniform(jax.random.PRNGKey(0), (2, 64, 64, 3), maxval=255.0))
  logits, inter = jax.jit(bundle.module.apply)(bundle.variables, x)
  assert logits.shape == (2, 1000) and logits.dtype == jnp.float32 and bool(jnp.all(jnp.isfinite(logits)))
  assert inter["pre_logits"].shape == (2, 16) and inter["feature_map"].shape == (2, 16, 16, 16)
  prior = models.create("maxvit_t", bn_prior_strength=16.0, **TINY)[0]
  assert not np.allclose(jax.jit(prior.apply)(bundle.variables, x)[0], logits)
  half = models.create("maxvit_t", dtype=jnp.bfloat16, **TINY)[0]
  h_logits, h_inter = jax.jit(half.apply)(bundle.variables, x)
  assert h_inter["feature_map"].dtype == jnp.bfloat16 and h_logits.dtype == jnp.float32
  assert rel_err(h_logits, logits) < 5e-2
  with pytest.raises(ValueError, match="not divisible by the partition size 2"):
    jax.eval_shape(bundle.module.apply, bundle.variables, x[:, :60, :60])  # 60 -> a 15x15 stage map


def test_maxvit_memo_episode():
  """A MEMO + RRC episode (gradient step through attention, SE and prior-mode BatchNorm) at a tiny width."""
  assert_memo_episode_adapts(models.load("maxvit_t", random_init=True, **TINY))
