"""Golden tests: torchvision, timm and .npz (vit_jax / big_vision) ViT layouts -> one zoomjax ViT module.

The npz goldens were computed by timm after loading the npz with timm's own `_load_weights`, so they also
pin the meaning of each npz layout (position embedding with or without the cls slot, block numbering, scan).
"""

import jax
import jax.numpy as jnp
import pytest

from zoomjax.checkpoints import convert_timm, convert_torchvision, convert_vit_npz
from zoomjax.models import vit
from goldens import load_golden, rel_err  # pylint: disable=wrong-import-order


# The tiny config both reference libraries were built with (exact GELU, LayerNorm eps 1e-6).
TINY = dict(num_classes=10, patch_size=8, width=16, depth=2, num_heads=2, mlp_dim=32)






_apply = jax.jit(vit.VisionTransformer(**TINY).apply)

CASES = {
    "vit_torchvision_tiny": lambda s: convert_torchvision.convert_vit(s, num_heads=2),
    "vit_timm_tiny": lambda s: convert_timm.convert_vit(s, num_heads=2),
    "vit_npz_vitjax": convert_vit_npz.convert_vit_npz,
    "vit_npz_bigvision": convert_vit_npz.convert_vit_npz,
    "vit_npz_bigvision_scan": convert_vit_npz.convert_vit_npz,
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_vit_layout_matches_reference(name):
  g, state, x = load_golden(name)
  variables = CASES[name](state)
  logits, inter = _apply(variables, jnp.asarray(x))
  assert rel_err(logits, g["logits"]) < 1e-4, name
  assert inter["feature_map"].shape == (2, 4, 4, 16)
  assert inter["pre_logits"].shape == (2, 16)


def test_timm_clip_style_vit_matches():
  """timm's fine-tuned OpenAI-CLIP ViTs: norm_pre, QuickGELU, LayerNorm eps 1e-5 (the vit_l14 entry)."""
  g, state, x = load_golden("vit_timm_clip_tiny")
  variables = convert_timm.convert_vit(state, num_heads=2)
  model = vit.VisionTransformer(**TINY, pre_norm=True, activation="quick_gelu", layernorm_epsilon=1e-5,
                                embedding_bias=False)
  logits, _ = jax.jit(model.apply)(variables, jnp.asarray(x))
  assert rel_err(logits, g["logits"]) < 1e-4


def test_npz_config_is_read_from_the_file():
  _, state, _ = load_golden("vit_npz_bigvision_scan")
  cfg = convert_vit_npz.vit_npz_config(state)
  assert cfg == dict(TINY, representation_size=None)


def test_tanh_gelu_changes_outputs():
  """vit_jax/big_vision were trained with tanh GELU; the attribute must really switch the activation."""
  g, state, x = load_golden("vit_npz_vitjax")
  variables = convert_vit_npz.convert_vit_npz(state)
  logits, _ = jax.jit(vit.VisionTransformer(**TINY, gelu_approximate=True).apply)(variables, jnp.asarray(x))
  err = rel_err(logits, g["logits"])
  assert 1e-6 < err < 5e-2


def test_wrong_input_size_is_a_clear_error():
  _, state, _ = load_golden("vit_timm_tiny")
  variables = convert_timm.convert_vit(state, num_heads=2)
  with pytest.raises(ValueError, match="position embedding"):
    vit.VisionTransformer(**TINY).apply(variables, jnp.zeros((1, 48, 48, 3)))
