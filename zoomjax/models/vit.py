"""Vision Transformer with a class token, big_vision/vit_jax parameter names.

One module serves torchvision, timm, vit_jax (AugReg .npz) and big_vision checkpoints; they differ only in
numerics that are attributes here: GELU (`gelu_approximate`: torchvision/timm exact erf, vit_jax/big_vision
Flax's default tanh approximation) and `layernorm_epsilon` (1e-6 for all four families). timm's fine-tuned
OpenAI-CLIP ViTs (`vit_large_patch14_clip_224.openai_ft_in1k`) add `pre_norm`, QuickGELU and eps 1e-5.
Names: embedding, cls, Transformer/posembed_input/pos_embedding (1, 1+N, D, added after the cls token),
Transformer/encoderblock_{i}/{LayerNorm_0, MultiHeadDotProductAttention_1, LayerNorm_2, MlpBlock_3},
Transformer/encoder_norm, optional pre_logits, head.

Other input sizes: `load(name, ckpt, image_size=S)` resamples the checkpoint's position embedding to the
S / patch grid (`resample_position_embedding`, timm's `resample_abs_pos_embed`) and scales the preprocessing;
without it, an input that does not fit the stored grid is an error, never silently accepted.
"""
import dataclasses
import functools
import math
from typing import Any, Dict, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from zoomjax.checkpoints import convert_timm, convert_torchvision, convert_vit_npz
from zoomjax.errors import UserError
from zoomjax.models import registry
from zoomjax.models.layers import Encoder1DBlock
from zoomjax.models.preprocessing import (AUGREG_PREPROCESSING, CLIP_PREPROCESSING, TORCHVISION_PREPROCESSING,
                                          Preprocessing)
from zoomjax.resample import FILTERS


class AddPositionEmbs(nn.Module):
  """Learned position embedding (1, L, D), checked against the sequence so a wrong input size is explicit."""

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    shape = (1,) + x.shape[1:]
    if self.has_variable("params", "pos_embedding"):
      have = self.get_variable("params", "pos_embedding").shape
      if tuple(have) != shape:
        raise ValueError(f"position embedding {tuple(have)} does not fit a {x.shape[1]}-token input; feed "
                         "the input size the checkpoint was trained at (or another patch size/width)")
    pe = self.param("pos_embedding", nn.initializers.normal(0.02), shape, jnp.float32)
    return x + pe.astype(x.dtype)


class Encoder(nn.Module):
  depth: int
  num_heads: int
  mlp_dim: int
  layernorm_epsilon: float = 1e-6
  gelu_approximate: bool = False
  activation: str = "gelu"
  pre_norm: bool = False
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    x = AddPositionEmbs(name="posembed_input")(x)
    if self.pre_norm:  # CLIP-derived ViTs (timm `norm_pre`, CLIP `ln_pre`).
      x = nn.LayerNorm(epsilon=self.layernorm_epsilon, dtype=self.dtype, param_dtype=jnp.float32,
                       name="ln_pre")(x)
    for i in range(self.depth):
      x = Encoder1DBlock(self.num_heads, self.mlp_dim, self.layernorm_epsilon, self.gelu_approximate,
                         self.activation, dtype=self.dtype, name=f"encoderblock_{i}")(x)
    return nn.LayerNorm(epsilon=self.layernorm_epsilon, dtype=self.dtype, param_dtype=jnp.float32,
                        name="encoder_norm")(x)


class VisionTransformer(nn.Module):
  """ViT with a class token. Input NHWC, normalised; returns (logits, intermediates).

  intermediates: `encoded` (B, 1+N, D) after the final norm, `feature_map` (patch tokens as (B, h, w, D)),
  `pre_logits` (class token, (B, D), after the optional representation layer).
  The position embedding fixes the input size (image_size = patch_size * grid); other sizes are an error.
  """
  num_classes: int = 1000
  patch_size: int = 16
  width: int = 768
  depth: int = 12
  num_heads: int = 12
  mlp_dim: int = 3072
  representation_size: Optional[int] = None
  layernorm_epsilon: float = 1e-6
  gelu_approximate: bool = False
  activation: str = "gelu"  # "quick_gelu" for timm's fine-tuned OpenAI-CLIP ViTs
  pre_norm: bool = False  # LayerNorm after the position embedding (CLIP-derived ViTs)
  embedding_bias: bool = True  # CLIP-derived ViTs have none
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array):
    p = self.patch_size
    x = nn.Conv(self.width, (p, p), (p, p), padding="VALID", use_bias=self.embedding_bias, dtype=self.dtype,
                param_dtype=jnp.float32, name="embedding")(x.astype(self.dtype))
    b, h, w, d = x.shape
    x = x.reshape(b, h * w, d)
    cls = self.param("cls", nn.initializers.zeros, (1, 1, d), jnp.float32)
    x = jnp.concatenate([jnp.broadcast_to(cls.astype(x.dtype), (b, 1, d)), x], axis=1)
    x = Encoder(self.depth, self.num_heads, self.mlp_dim, self.layernorm_epsilon, self.gelu_approximate,
                self.activation, self.pre_norm, dtype=self.dtype, name="Transformer")(x)
    out = {"encoded": x, "feature_map": x[:, 1:].reshape(b, h, w, d)}
    x = x[:, 0]
    if self.representation_size is not None:
      x = jnp.tanh(nn.Dense(self.representation_size, dtype=self.dtype, param_dtype=jnp.float32,
                            name="pre_logits")(x))
    out["pre_logits"] = x
    logits = nn.Dense(self.num_classes, dtype=self.dtype, param_dtype=jnp.float32, name="head")(x)
    return logits.astype(jnp.float32), out



# ------------------------------------------------------------------------- position-embedding resampling

def _resize_matrix(n_in: int, n_out: int) -> np.ndarray:
  """(n_out, n_in) weights of torch's antialiased bicubic `interpolate` (PIL's a=-0.5 kernel, support widened
  by the scale when shrinking, taps renormalised at the borders)."""
  kernel = FILTERS["bicubic"][0]
  scale = n_in / n_out
  stretch = max(scale, 1.0)
  centre = (np.arange(n_out, dtype=np.float64)[:, None] + 0.5) * scale
  taps = np.arange(n_in, dtype=np.float64)[None, :] + 0.5
  w = np.asarray(kernel((taps - centre) / stretch), np.float64)
  return w / w.sum(axis=1, keepdims=True)


def resample_position_embedding(posemb: np.ndarray, grid: Sequence[int], num_prefix_tokens: int = 1,
                                old_grid: Optional[Sequence[int]] = None) -> np.ndarray:
  """(..., prefix + h*w, D) learned position embedding -> (..., prefix + H*W, D) for the (H, W) patch grid.

  timm's `resample_abs_pos_embed` (bicubic, antialias=True): prefix (class) tokens are kept, the grid part is
  resized as an image; `old_grid` defaults to the square grid the token count implies.
  """
  posemb = np.asarray(posemb)
  *lead, n, d = posemb.shape
  prefix, tokens = posemb[..., :num_prefix_tokens, :], posemb[..., num_prefix_tokens:, :]
  if old_grid is None:
    side = math.isqrt(n - num_prefix_tokens)
    if side * side != n - num_prefix_tokens:
      raise ValueError(f"position embedding of {n - num_prefix_tokens} patch tokens is not a square grid")
    old_grid = (side, side)
  (h, w), (gh, gw) = old_grid, tuple(grid)
  if h * w != n - num_prefix_tokens:
    raise ValueError(f"position embedding has {n - num_prefix_tokens} patch tokens, not a {h}x{w} grid")
  if (h, w) == (gh, gw):
    return posemb
  tokens = tokens.reshape(*lead, h, w, d).astype(np.float64)
  out = np.einsum("Hh,Ww,...hwd->...HWd", _resize_matrix(h, gh), _resize_matrix(w, gw), tokens)
  out = out.reshape(*lead, gh * gw, d).astype(posemb.dtype)
  return np.concatenate([prefix, out], axis=-2)


def preprocessing_at(pp: Preprocessing, image_size: int) -> Preprocessing:
  """`pp` for another input size, keeping its crop fraction (resize = floor(size / crop_pct), as timm)."""
  if image_size == pp.input_size:
    return pp
  return dataclasses.replace(pp, input_size=int(image_size),
                             resize_size=int(math.floor(image_size * pp.resize_size / pp.input_size)))


def grid_for(image_size: int, patch_size: int, what: str) -> int:
  """Patch-grid side of a square `image_size` input; sizes that are not a multiple of the patch are refused."""
  if int(image_size) <= 0 or int(image_size) % int(patch_size):
    raise UserError(f"{what}: image_size={image_size} is not a positive multiple of the patch size {patch_size}")
  return int(image_size) // int(patch_size)


def _resampled_vit(flat: Dict[str, np.ndarray], num_heads: int, grid: int) -> dict:
  variables = convert_checkpoint(flat, num_heads)
  pos = variables["params"]["Transformer"]["posembed_input"]
  pos["pos_embedding"] = resample_position_embedding(pos["pos_embedding"], (grid, grid))
  return variables


def _prepare_vit(cfg: Dict[str, Any], pp: Preprocessing, flat, overrides: Dict[str, Any], *, path=None,
                 image_size: Optional[int] = None) -> registry.LoadPlan:
  """`image_size=S`: the checkpoint's position embedding resampled to the S / patch grid, preprocessing at S."""
  del path
  if image_size is None:
    return registry.LoadPlan(overrides=overrides, preprocessing=pp, flat=flat)
  grid = grid_for(image_size, overrides.get("patch_size", cfg["patch_size"]), "ViT")
  heads = overrides.get("num_heads", cfg["num_heads"])
  return registry.LoadPlan(overrides=overrides, preprocessing=preprocessing_at(pp, image_size), flat=flat,
                           convert=functools.partial(_resampled_vit, num_heads=heads, grid=grid))


# ------------------------------------------------------------------------------------ checkpoints, registry

def convert_checkpoint(flat: Dict[str, np.ndarray], num_heads: int) -> dict:
  """Any supported ViT layout -> variables, recognised by its keys (torchvision, timm, vit_jax/big_vision npz)."""
  if "conv_proj.weight" in flat:
    return convert_torchvision.convert_vit(flat, num_heads)
  if "patch_embed.proj.weight" in flat:
    return convert_timm.convert_vit(flat, num_heads)
  if any(k.endswith("embedding/kernel") for k in flat):
    return convert_vit_npz.convert_vit_npz(flat)
  raise KeyError("not a ViT checkpoint zoomjax knows: expected torchvision `conv_proj.weight`, timm "
                 f"`patch_embed.proj.weight` or npz `embedding/kernel`; keys start with {sorted(flat)[:5]}")


B32 = dict(patch_size=32, width=768, depth=12, num_heads=12, mlp_dim=3072)
B16 = dict(B32, patch_size=16)
L14_CLIP = dict(patch_size=14, width=1024, depth=24, num_heads=16, mlp_dim=4096, pre_norm=True,
                activation="quick_gelu", layernorm_epsilon=1e-5, embedding_bias=False)
TINY = dict(patch_size=32, width=16, depth=2, num_heads=2, mlp_dim=32)

_TV = "https://download.pytorch.org/models/"
_ENTRIES = (
    ("vit_b32", B32, TORCHVISION_PREPROCESSING, 88_224_232,
     f"Pass torchvision's IMAGENET1K_V1 file `vit_b_32-d86f8d99.pth` ({_TV}vit_b_32-d86f8d99.pth), the zoom "
     "paper's ViT-B/32."),
    ("vit_b16", B16, TORCHVISION_PREPROCESSING, 86_567_656,
     f"Pass torchvision's IMAGENET1K_V1 file `vit_b_16-c867db91.pth` ({_TV}vit_b_16-c867db91.pth)."),
    ("vit_l14", L14_CLIP, CLIP_PREPROCESSING, 304_204_776,
     "Pass timm's `vit_large_patch14_clip_224.openai_ft_in1k` model.safetensors (HF hub "
     "timm/vit_large_patch14_clip_224.openai_ft_in1k): OpenAI CLIP ViT-L/14 fine-tuned on ImageNet-1k."),
    ("vit_b32_augreg", dict(B32, gelu_approximate=True), AUGREG_PREPROCESSING, 88_224_232,
     "Pass an AugReg file: vit_jax `B_32-i21k-300ep-lr_0.001-aug_medium1-wd_0.03-do_0.0-sd_0.0--imagenet2012-"
     "steps_20k-lr_0.01-res_224.npz` (gs://vit_models/augreg/), a big_vision .npz, or timm "
     "`vit_base_patch32_224.augreg_in21k_ft_in1k` model.safetensors (timm computes exact GELU: pass "
     "gelu_approximate=False for timm parity)."),
    ("vit_b16_augreg", dict(B16, gelu_approximate=True), AUGREG_PREPROCESSING, 86_567_656,
     "Pass an AugReg B/16 .npz (gs://vit_models/augreg/) or timm `vit_base_patch16_224.augreg_in21k_ft_in1k` "
     "model.safetensors (pass gelu_approximate=False for timm parity)."),
    ("vit_tiny", TINY, TORCHVISION_PREPROCESSING, 71_464,
     "vit_tiny is a testing model (patch 32, width 16, 2 blocks, 224 input): use random_init=True."),
)

for _name, _cfg, _pp, _n, _hint in _ENTRIES:
  registry.register(registry.ModelSpec(
      name=_name, make_module=functools.partial(VisionTransformer, **_cfg), preprocessing=_pp,
      convert=functools.partial(convert_checkpoint, num_heads=_cfg["num_heads"]), checkpoint_hint=_hint,
      num_params=_n, load_kwargs=("image_size",), prepare=functools.partial(_prepare_vit, _cfg, _pp)))
