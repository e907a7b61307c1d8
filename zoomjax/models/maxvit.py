"""MaxViT-T (Tu et al., 2022) in torchvision's layout (`torchvision.models.maxvit_t`).

A BatchNorm conv stem, then stages of MaxViT layers: MBConv (pre-norm BatchNorm, 1x1 expand, 3x3 depthwise,
squeeze-excite, 1x1 project; a stride-2 first layer whose shortcut is 3x3 average pool + 1x1 conv), then block
attention (non-overlapping P x P windows) and grid attention (a P x P grid of tokens strided across the whole
map), each with a relative position bias and an MLP. torchvision scales attention logits by the full width,
C ** -0.5, not the head width; kept here. Every stage's feature map must be divisible by P (torchvision refuses
other input sizes too); torchvision's grid attention is only defined on square maps, this one on any.
"""
import functools
from typing import Any, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from zoomjax.checkpoints.convert_torchvision import convert_maxvit
from zoomjax.models import registry
from zoomjax.models.efficientnet_lite import DepthwiseConv
from zoomjax.models.layers import BatchNorm
from zoomjax.models.preprocessing import torchvision_preprocessing
from zoomjax.models.swin import relative_position_index

_BN_EPS = 1e-3  # torchvision's BatchNorm2d(eps=1e-3) in MaxViT
_LN_EPS = 1e-5  # torchvision's nn.LayerNorm default


def _gelu(x: jax.Array) -> jax.Array:
  return nn.gelu(x, approximate=False)  # torch nn.GELU() is the exact erf form


def _layer_norm(dtype: Any, name: str) -> nn.LayerNorm:
  return nn.LayerNorm(epsilon=_LN_EPS, use_fast_variance=False, dtype=dtype, param_dtype=jnp.float32, name=name)


def _dense(features: int, dtype: Any, name: str, use_bias: bool = True) -> nn.Dense:
  # 1x1 convolutions are Dense layers over the channel axis (the converter reshapes torch's (O, I, 1, 1)).
  return nn.Dense(features, use_bias=use_bias, dtype=dtype, param_dtype=jnp.float32, name=name)


def partition(x: jax.Array, p: int, grid: bool) -> jax.Array:
  """(B, H, W, C) -> (B, groups, p*p, C): p x p windows (block), or a p x p grid strided by (H/p, W/p)."""
  b, h, w, c = x.shape
  if grid:
    x = x.reshape(b, p, h // p, p, w // p, c).transpose(0, 2, 4, 1, 3, 5)
  else:
    x = x.reshape(b, h // p, p, w // p, p, c).transpose(0, 1, 3, 2, 4, 5)
  return x.reshape(b, -1, p * p, c)


def departition(x: jax.Array, p: int, h: int, w: int, grid: bool) -> jax.Array:
  """The inverse of `partition` for an (h, w) map."""
  b, _, _, c = x.shape
  if grid:
    return x.reshape(b, h // p, w // p, p, p, c).transpose(0, 3, 1, 4, 2, 5).reshape(b, h, w, c)
  return x.reshape(b, h // p, w // p, p, p, c).transpose(0, 1, 3, 2, 4, 5).reshape(b, h, w, c)


class MBConv(nn.Module):
  """res(x) + conv_c(SE(GELU(BN(dw3x3(GELU(BN(conv_a(BN(x))))))))); res: identity, or [3x3/2 avg pool ->] 1x1."""
  features: int
  stride: int = 1
  expansion: float = 4.0
  squeeze: float = 0.25
  dtype: Any = jnp.float32
  bn_prior_strength: Optional[float] = None
  depthwise_impl: Optional[str] = None  # zoomjax.models.efficientnet_lite.DepthwiseConv's

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    bn = functools.partial(BatchNorm, epsilon=_BN_EPS, prior_strength=self.bn_prior_strength, dtype=self.dtype)
    mid, sqz = int(self.features * self.expansion), int(self.features * self.squeeze)
    res = x
    if self.stride != 1 or x.shape[-1] != self.features:
      if self.stride == 2:  # torch AvgPool2d(3, 2, padding=1) counts the zero padding
        res = nn.avg_pool(res, (3, 3), (2, 2), padding=((1, 1), (1, 1)), count_include_pad=True)
      res = _dense(self.features, self.dtype, "proj")(res)
    y = bn(name="pre_norm")(x)
    y = _gelu(bn(name="conv_a_bn")(_dense(mid, self.dtype, "conv_a", use_bias=False)(y)))
    y = DepthwiseConv(3, self.stride, self.depthwise_impl, self.dtype, "symmetric", name="conv_b")(y)
    y = _gelu(bn(name="conv_b_bn")(y))
    s = jnp.mean(y.astype(jnp.float32), axis=(1, 2)).astype(self.dtype)
    s = nn.silu(_dense(sqz, self.dtype, "se_reduce")(s))
    y = y * jax.nn.sigmoid(_dense(mid, self.dtype, "se_expand")(s))[:, None, None, :].astype(y.dtype)
    return res + _dense(self.features, self.dtype, "conv_c")(y)


class RelativeAttention(nn.Module):
  """(B, G, P*P, C) -> same: multi-head self-attention within each group, with a relative position bias."""
  head_dim: int
  partition_size: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    b, g, n, c = x.shape
    p, heads = self.partition_size, c // self.head_dim
    qkv = _dense(3 * c, self.dtype, "to_qkv")(x).reshape(b, g, n, 3, heads, self.head_dim)
    q, k, v = qkv[..., 0, :, :], qkv[..., 1, :, :], qkv[..., 2, :, :]  # (B, G, N, heads, Dh)
    k = k * jnp.asarray(c ** -0.5, k.dtype)  # torchvision's scale: the full width
    attn = jnp.einsum("bgqhd,bgkhd->bghqk", q, k)
    table = self.param("relative_position_bias_table", nn.initializers.truncated_normal(0.02),
                       ((2 * p - 1) ** 2, heads), jnp.float32)
    bias = table[relative_position_index((p, p)).reshape(-1)].reshape(n, n, heads).transpose(2, 0, 1)
    attn = jax.nn.softmax(attn.astype(jnp.float32) + bias, axis=-1).astype(self.dtype)
    x = jnp.einsum("bghqk,bgkhd->bgqhd", attn, v).reshape(b, g, n, c)
    return _dense(c, self.dtype, "merge")(x)


class PartitionAttention(nn.Module):
  """Block (`grid=False`) or grid attention: partition, x + attn(LN(x)), x + MLP(LN(x)), departition."""
  head_dim: int
  partition_size: int
  grid: bool
  mlp_ratio: int = 4
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    _, h, w, c = x.shape
    p = self.partition_size
    if h % p or w % p:
      raise ValueError(f"MaxViT: a {h}x{w} feature map is not divisible by the partition size {p}; "
                       "every stage's map must be (torchvision's maxvit_t: 224x224 inputs)")
    t = partition(x, p, self.grid)
    t = t + RelativeAttention(self.head_dim, p, self.dtype, name="attn")(_layer_norm(self.dtype, "attn_norm")(t))
    y = _gelu(_dense(self.mlp_ratio * c, self.dtype, "mlp_fc1")(_layer_norm(self.dtype, "mlp_norm")(t)))
    t = t + _dense(c, self.dtype, "mlp_fc2")(y)
    return departition(t, p, h, w, self.grid)


class MaxViT(nn.Module):
  """MaxViT; returns (logits, intermediates) with `feature_map` (last stage) and `pre_logits` (after the head's
  Linear + tanh). `bn_prior_strength` is MEMO's BatchNorm prior mode (stem and MBConv BatchNorms)."""
  stem_channels: int = 64
  block_channels: Sequence[int] = (64, 128, 256, 512)
  block_layers: Sequence[int] = (2, 2, 5, 2)
  head_dim: int = 32
  partition_size: int = 7
  num_classes: int = 1000
  dtype: Any = jnp.float32
  bn_prior_strength: Optional[float] = None
  depthwise_impl: Optional[str] = None  # 'shift' | 'grouped' | None (by backend).

  @nn.compact
  def __call__(self, x: jax.Array):
    conv = functools.partial(nn.Conv, kernel_size=(3, 3), padding=((1, 1), (1, 1)), dtype=self.dtype,
                             param_dtype=jnp.float32)
    x = conv(self.stem_channels, strides=(2, 2), use_bias=False, name="stem_conv")(x.astype(self.dtype))
    x = _gelu(BatchNorm(epsilon=_BN_EPS, prior_strength=self.bn_prior_strength, dtype=self.dtype,
                        name="stem_bn")(x))
    x = conv(self.stem_channels, name="stem_conv2")(x)
    attn = functools.partial(PartitionAttention, self.head_dim, self.partition_size, dtype=self.dtype)
    for s, (width, layers) in enumerate(zip(self.block_channels, self.block_layers)):
      for i in range(layers):
        name = f"blocks_{s}_layers_{i}"
        x = MBConv(width, 2 if i == 0 else 1, dtype=self.dtype, bn_prior_strength=self.bn_prior_strength,
                   depthwise_impl=self.depthwise_impl, name=f"{name}_mbconv")(x)
        x = attn(grid=False, name=f"{name}_window_attention")(x)
        x = attn(grid=True, name=f"{name}_grid_attention")(x)
    out = {"feature_map": x}
    x = jnp.mean(x.astype(jnp.float32), axis=(1, 2)).astype(self.dtype)
    x = _layer_norm(self.dtype, "head_norm")(x)
    out["pre_logits"] = x = jnp.tanh(_dense(x.shape[-1], self.dtype, "pre_head")(x))
    logits = _dense(self.num_classes, self.dtype, "head", use_bias=False)(x)
    return logits.astype(jnp.float32), out


# --------------------------------------------------------------------------------------------- registry

# torchvision's maxvit_t: stem 64, 4 stages, head dim 32, 7x7 windows / grid.
MAXVIT_T = dict(stem_channels=64, block_channels=(64, 128, 256, 512), block_layers=(2, 2, 5, 2), head_dim=32,
                partition_size=7)
# Exact 'params' count (the relative-position index is a buffer), equal to torchvision 0.29.1's documented one.
NUM_PARAMS = {"maxvit_t": 30_919_624}
_FILE = "maxvit_t-bc5ab103.pth"


def maxvit_t(**kw) -> MaxViT:
  """torchvision's `maxvit_t`; `block_channels`, `partition_size`, ... in `kw` override (tiny test widths)."""
  return MaxViT(**{**MAXVIT_T, **kw})


registry.register(registry.ModelSpec(
    name="maxvit_t",
    make_module=maxvit_t,
    preprocessing=torchvision_preprocessing(224, "bicubic"),  # MaxVit_T_Weights.IMAGENET1K_V1: resize = crop
    convert=functools.partial(convert_maxvit, what="torchvision maxvit_t"),
    checkpoint_hint=f"Pass torchvision's IMAGENET1K_V1 file `{_FILE}` (https://download.pytorch.org/models/{_FILE}).",
    num_params=NUM_PARAMS["maxvit_t"]))
