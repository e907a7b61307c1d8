"""Swin-T/S/B (Liu et al., 2021) in torchvision's v1 layout (`torchvision.models.swin_t/s/b`).

Window attention with a relative position bias; every second block shifts the windows by half a window and
masks attention across the wrapped-around regions; 2x2 patch merging between stages. Inputs whose token grid
is not a multiple of the window are zero-padded inside the attention, exactly as torchvision does.
"""
import functools
from typing import Any, Sequence, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from zoomjax.checkpoints.convert_torchvision import convert_swin
from zoomjax.models import registry
from zoomjax.models.preprocessing import torchvision_preprocessing

# torchvision's configurations: (embed_dim, depths, heads); patch 4, window 7, MLP ratio 4.
CONFIGS = {
    "t": (96, (2, 2, 6, 2), (3, 6, 12, 24)),
    "s": (96, (2, 2, 18, 2), (3, 6, 12, 24)),
    "b": (128, (2, 2, 18, 2), (4, 8, 16, 32)),
}
_EPS = 1e-5  # torchvision's nn.LayerNorm default in Swin


def relative_position_index(window: Tuple[int, int]) -> np.ndarray:
  """(N, N) index into the ((2Wh-1)(2Ww-1), heads) bias table, N = Wh*Ww (torchvision's buffer)."""
  wh, ww = window
  coords = np.stack(np.meshgrid(np.arange(wh), np.arange(ww), indexing="ij")).reshape(2, -1)
  rel = (coords[:, :, None] - coords[:, None, :]).transpose(1, 2, 0)
  return (rel[..., 0] + wh - 1) * (2 * ww - 1) + (rel[..., 1] + ww - 1)


def shift_mask(pad_hw: Tuple[int, int], window: Tuple[int, int], shift: Tuple[int, int]) -> np.ndarray:
  """(num_windows, N, N) additive mask: -100 between tokens of different pre-roll regions (torchvision's)."""
  img = np.zeros(pad_hw, np.float32)
  count = 0
  for h in ((0, -window[0]), (-window[0], -shift[0]), (-shift[0], None)):
    for w in ((0, -window[1]), (-window[1], -shift[1]), (-shift[1], None)):
      img[h[0]:h[1], w[0]:w[1]] = count
      count += 1
  ids = img.reshape(pad_hw[0] // window[0], window[0], pad_hw[1] // window[1], window[1])
  ids = ids.transpose(0, 2, 1, 3).reshape(-1, window[0] * window[1])
  return np.where(ids[:, None, :] != ids[:, :, None], np.float32(-100.0), np.float32(0.0))


class ShiftedWindowAttention(nn.Module):
  """(B, H, W, C) -> (B, H, W, C): multi-head self-attention inside (shifted) windows."""
  num_heads: int
  window: Tuple[int, int] = (7, 7)
  shift: Tuple[int, int] = (0, 0)
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    b, h, w, c = x.shape
    (wh, ww), heads = self.window, self.num_heads
    pad_b, pad_r = (-h) % wh, (-w) % ww
    x = jnp.pad(x, ((0, 0), (0, pad_b), (0, pad_r), (0, 0)))
    ph, pw = h + pad_b, w + pad_r
    # A window covering the whole padded grid is never shifted (torchvision).
    shift = (0 if wh >= ph else self.shift[0], 0 if ww >= pw else self.shift[1])
    if sum(shift):
      x = jnp.roll(x, (-shift[0], -shift[1]), axis=(1, 2))
    nh, nw, n = ph // wh, pw // ww, wh * ww
    x = x.reshape(b, nh, wh, nw, ww, c).transpose(0, 1, 3, 2, 4, 5).reshape(b, nh * nw, n, c)
    qkv = nn.Dense(3 * c, dtype=self.dtype, param_dtype=jnp.float32, name="qkv")(x)
    qkv = qkv.reshape(b, nh * nw, n, 3, heads, c // heads)
    q, k, v = qkv[..., 0, :, :], qkv[..., 1, :, :], qkv[..., 2, :, :]  # (B, nW, N, heads, Dh)
    q = q * jnp.asarray((c // heads) ** -0.5, q.dtype)
    attn = jnp.einsum("bwqhd,bwkhd->bwhqk", q, k)
    table = self.param("relative_position_bias_table", nn.initializers.truncated_normal(0.02),
                       ((2 * wh - 1) * (2 * ww - 1), heads), jnp.float32)
    bias = table[relative_position_index(self.window).reshape(-1)].reshape(n, n, heads).transpose(2, 0, 1)
    attn = attn.astype(jnp.float32) + bias
    if sum(shift):
      attn = attn + jnp.asarray(shift_mask((ph, pw), self.window, shift))[None, :, None]
    attn = jax.nn.softmax(attn, axis=-1).astype(self.dtype)
    x = jnp.einsum("bwhqk,bwkhd->bwqhd", attn, v).reshape(b, nh * nw, n, c)
    x = nn.Dense(c, dtype=self.dtype, param_dtype=jnp.float32, name="proj")(x)
    x = x.reshape(b, nh, nw, wh, ww, c).transpose(0, 1, 3, 2, 4, 5).reshape(b, ph, pw, c)
    if sum(shift):
      x = jnp.roll(x, shift, axis=(1, 2))
    return x[:, :h, :w]


class SwinBlock(nn.Module):
  """Pre-norm block: x + W-MSA(LN(x)), then x + MLP(LN(x)) (GELU, ratio 4); stochastic depth off at eval."""
  num_heads: int
  window: Tuple[int, int] = (7, 7)
  shift: Tuple[int, int] = (0, 0)
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    ln = functools.partial(nn.LayerNorm, epsilon=_EPS, use_fast_variance=False, dtype=self.dtype,
                           param_dtype=jnp.float32)
    dense = functools.partial(nn.Dense, dtype=self.dtype, param_dtype=jnp.float32)
    c = x.shape[-1]
    x = x + ShiftedWindowAttention(self.num_heads, self.window, self.shift, self.dtype, name="attn")(
        ln(name="norm1")(x))
    y = dense(4 * c, name="mlp_fc1")(ln(name="norm2")(x))
    return x + dense(c, name="mlp_fc2")(nn.gelu(y, approximate=False))


def patch_merge(x: jax.Array) -> jax.Array:
  """torchvision's `_patch_merging_pad`: pad odd sides, concat the 2x2 neighbours as [x00, x10, x01, x11]."""
  x = jnp.pad(x, ((0, 0), (0, x.shape[1] % 2), (0, x.shape[2] % 2), (0, 0)))
  return jnp.concatenate([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], axis=-1)


class Swin(nn.Module):
  """Swin v1; returns (logits, intermediates) with `feature_map` (tokens after the final norm, (B, h, w, C))
  and `pre_logits` (their mean)."""
  embed_dim: int = 96
  depths: Sequence[int] = (2, 2, 6, 2)
  num_heads: Sequence[int] = (3, 6, 12, 24)
  window: Tuple[int, int] = (7, 7)
  patch_size: int = 4
  num_classes: int = 1000
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array):
    ln = functools.partial(nn.LayerNorm, epsilon=_EPS, use_fast_variance=False, dtype=self.dtype,
                           param_dtype=jnp.float32)
    p = self.patch_size
    x = nn.Conv(self.embed_dim, (p, p), (p, p), padding="VALID", dtype=self.dtype, param_dtype=jnp.float32,
                name="patch_embed_conv")(x.astype(self.dtype))
    x = ln(name="patch_embed_norm")(x)
    window = tuple(self.window)
    for s, (depth, heads) in enumerate(zip(self.depths, self.num_heads)):
      if s > 0:
        x = ln(name=f"stages_{s}_merge_norm")(patch_merge(x))
        x = nn.Dense(2 * x.shape[-1] // 4, use_bias=False, dtype=self.dtype, param_dtype=jnp.float32,
                     name=f"stages_{s}_merge_reduction")(x)
      for i in range(depth):
        shift = (0, 0) if i % 2 == 0 else (window[0] // 2, window[1] // 2)
        x = SwinBlock(heads, window, shift, self.dtype, name=f"stages_{s}_blocks_{i}")(x)
    x = ln(name="norm")(x)
    out = {"feature_map": x}
    out["pre_logits"] = x = jnp.mean(x.astype(jnp.float32), axis=(1, 2)).astype(self.dtype)
    logits = nn.Dense(self.num_classes, dtype=self.dtype, param_dtype=jnp.float32, name="head")(x)
    return logits.astype(jnp.float32), out


def swin(variant: str, **kw) -> Swin:
  """torchvision's `swin_{variant}`; `embed_dim`, `depths`, ... in `kw` override (tiny test widths)."""
  if variant not in CONFIGS:
    raise ValueError(f"Swin variant {variant!r} not supported; choose one of {sorted(CONFIGS)}")
  embed, depths, heads = CONFIGS[variant]
  kw.setdefault("embed_dim", embed)
  kw.setdefault("depths", depths)
  kw.setdefault("num_heads", heads)
  return Swin(**kw)


# --------------------------------------------------------------------------------------------- registry

# Exact 'params' counts (the relative-position index is a buffer), equal to torchvision 0.29.1's
# (it documents Swin-B 87,768,224).
NUM_PARAMS = {"swin_t": 28_288_354, "swin_s": 49_606_258, "swin_b": 87_768_224}
# torchvision's IMAGENET1K_V1 files and their eval resize (bicubic, crop 224).
_FILES = {"t": ("swin_t-704ceda3.pth", 232), "s": ("swin_s-5e29d889.pth", 246), "b": ("swin_b-68c6b09e.pth", 238)}

for _variant, (_file, _resize) in _FILES.items():
  registry.register(registry.ModelSpec(
      name=f"swin_{_variant}",
      make_module=functools.partial(swin, _variant),
      preprocessing=torchvision_preprocessing(_resize, "bicubic"),
      convert=functools.partial(convert_swin, depths=CONFIGS[_variant][1], what=f"torchvision swin_{_variant}"),
      checkpoint_hint=(f"Pass torchvision's IMAGENET1K_V1 file `{_file}` "
                       f"(https://download.pytorch.org/models/{_file})."),
      num_params=NUM_PARAMS[f"swin_{_variant}"]))
