"""ConvNeXt (Liu et al., 2022) and ConvNeXt-V2 (Woo et al., 2023) with their released checkpoints.

ConvNeXt-T/S/B/L load torchvision's files (`torchvision.models.convnext_*`); ConvNeXt-V2 (`convnextv2_*`, the
block's layer scale replaced by Global Response Normalisation after the MLP's GELU) loads timm's. One module
serves both: `grn` and `layer_scale` pick the block. The OpenCLIP ConvNeXt image towers (timm's ConvNeXt trunk
plus a projection) are `zoomjax.models.clip_convnext`.
"""
import functools
from typing import Any, Sequence, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from zoomjax.checkpoints.convert_backbones import convert_timm_convnext
from zoomjax.checkpoints.convert_torchvision import convert_convnext
from zoomjax.models import registry
from zoomjax.models.efficientnet_lite import DepthwiseConv
from zoomjax.models.preprocessing import IMAGENET_MEAN, IMAGENET_STD, Preprocessing, torchvision_preprocessing

# torchvision's block settings: (width, blocks) per stage; a 2x2/2 downsample sits between stages.
CONFIGS = {
    "tiny": ((96, 3), (192, 3), (384, 9), (768, 3)),
    "small": ((96, 3), (192, 3), (384, 27), (768, 3)),
    "base": ((128, 3), (256, 3), (512, 27), (1024, 3)),
    "large": ((192, 3), (384, 3), (768, 27), (1536, 3)),
}
_EPS = 1e-6  # torchvision's LayerNorm / LayerNorm2d epsilon


def _layer_norm(dtype: Any, name: str, eps: float = _EPS) -> nn.LayerNorm:
  # Two-pass variance (torch's): the fast E[x^2]-E[x]^2 form loses digits on un-normalised conv outputs.
  return nn.LayerNorm(epsilon=eps, use_fast_variance=False, dtype=dtype, param_dtype=jnp.float32, name=name)


class GRN(nn.Module):
  """Global Response Normalisation (ConvNeXt-V2): each channel's spatial L2 norm, divided by that norm's mean
  over channels, rescales the features: `x + beta + gamma * x * n`. Computed in float32 (a sum over the map)."""
  dtype: Any = jnp.float32
  eps: float = 1e-6  # timm GlobalResponseNorm's epsilon

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    c = x.shape[-1]
    gamma = self.param("gamma", nn.initializers.zeros, (c,), jnp.float32)
    beta = self.param("beta", nn.initializers.zeros, (c,), jnp.float32)
    x32 = x.astype(jnp.float32)
    g = jnp.sqrt(jnp.sum(jnp.square(x32), axis=(1, 2), keepdims=True))
    n = g / (jnp.mean(g, axis=-1, keepdims=True) + self.eps)
    return (x32 + beta + gamma * (x32 * n)).astype(x.dtype)


class CNBlock(nn.Module):
  """7x7 depthwise conv -> LayerNorm -> Dense(4C) -> GELU [-> GRN] -> Dense(C) [times `gamma`], plus the input.

  ConvNeXt scales the branch by a learnt `gamma` (layer scale); ConvNeXt-V2 drops it and adds GRN. Stochastic
  depth is a training-time regulariser; at eval it is the identity.
  """
  dtype: Any = jnp.float32
  grn: bool = False
  layer_scale: bool = True
  eps: float = _EPS

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    c = x.shape[-1]
    # The shift form on XLA:CPU (grouped convolutions are slow there); nn.Conv's parameters.
    y = DepthwiseConv(7, 1, dtype=self.dtype, padding="symmetric", use_bias=True, name="conv_dw")(x)
    y = _layer_norm(self.dtype, "norm", self.eps)(y)
    y = nn.Dense(4 * c, dtype=self.dtype, param_dtype=jnp.float32, name="fc1")(y)
    y = nn.gelu(y, approximate=False)  # torch nn.GELU() is the exact erf form
    if self.grn:
      y = GRN(self.dtype, name="grn")(y)
    y = nn.Dense(c, dtype=self.dtype, param_dtype=jnp.float32, name="fc2")(y)
    if self.layer_scale:
      y = self.param("gamma", nn.initializers.constant(1e-6), (c,), jnp.float32) * y
    return x + y.astype(x.dtype)


class ConvNeXt(nn.Module):
  """ConvNeXt; returns (logits, intermediates) with `feature_map` (last stage) and `pre_logits` (head norm).

  `grn=True, layer_scale=False` is ConvNeXt-V2. `num_classes=0` has no classifier: the logits are the pooled,
  normalised features (timm's `num_classes=0`, the trunk of OpenCLIP's ConvNeXt towers).
  """
  stages: Sequence[Tuple[int, int]] = CONFIGS["tiny"]
  num_classes: int = 1000
  dtype: Any = jnp.float32
  grn: bool = False
  layer_scale: bool = True
  eps: float = _EPS  # LayerNorm epsilon (timm's convnext_xxlarge uses 1e-5)

  @nn.compact
  def __call__(self, x: jax.Array):
    conv = functools.partial(nn.Conv, dtype=self.dtype, param_dtype=jnp.float32, padding="VALID")
    x = x.astype(self.dtype)
    x = conv(self.stages[0][0], (4, 4), (4, 4), name="stem_conv")(x)
    x = _layer_norm(self.dtype, "stem_norm", self.eps)(x)
    for s, (width, blocks) in enumerate(self.stages):
      if s > 0:
        x = _layer_norm(self.dtype, f"stages_{s}_downsample_norm", self.eps)(x)
        x = conv(width, (2, 2), (2, 2), name=f"stages_{s}_downsample_conv")(x)
      for b in range(blocks):
        x = CNBlock(dtype=self.dtype, grn=self.grn, layer_scale=self.layer_scale, eps=self.eps,
                    name=f"stages_{s}_blocks_{b}")(x)
    out = {"feature_map": x}
    x = jnp.mean(x.astype(jnp.float32), axis=(1, 2)).astype(self.dtype)
    out["pre_logits"] = x = _layer_norm(self.dtype, "head_norm", self.eps)(x)
    if not self.num_classes:
      return x.astype(jnp.float32), out
    logits = nn.Dense(self.num_classes, dtype=self.dtype, param_dtype=jnp.float32, name="head")(x)
    return logits.astype(jnp.float32), out


def convnext(variant: str, **kw) -> ConvNeXt:
  """torchvision's `convnext_{variant}`; `stages`, `num_classes`, `dtype` in `kw` override (tiny test widths)."""
  if variant not in CONFIGS:
    raise ValueError(f"ConvNeXt variant {variant!r} not supported; choose one of {sorted(CONFIGS)}")
  kw.setdefault("stages", CONFIGS[variant])
  return ConvNeXt(**kw)


# --------------------------------------------------------------------------------------------- registry

# Exact 'params' counts, equal to torchvision 0.29.1's (it documents ConvNeXt-B 88,591,464).
NUM_PARAMS = {"convnext_tiny": 28_589_128, "convnext_small": 50_223_688, "convnext_base": 88_591_464,
              "convnext_large": 197_767_336}
# torchvision's IMAGENET1K_V1 files and their eval resize (bilinear, crop 224).
_FILES = {"tiny": ("convnext_tiny-983f1562.pth", 236), "small": ("convnext_small-0c510722.pth", 230),
          "base": ("convnext_base-6075fbad.pth", 232), "large": ("convnext_large-ea097f82.pth", 232)}

for _variant, (_file, _resize) in _FILES.items():
  registry.register(registry.ModelSpec(
      name=f"convnext_{_variant}",
      make_module=functools.partial(convnext, _variant),
      preprocessing=torchvision_preprocessing(_resize),
      convert=functools.partial(convert_convnext, stage_sizes=[b for _, b in CONFIGS[_variant]],
                                what=f"torchvision convnext_{_variant}"),
      checkpoint_hint=(f"Pass torchvision's IMAGENET1K_V1 file `{_file}` "
                       f"(https://download.pytorch.org/models/{_file})."),
      num_params=NUM_PARAMS[f"convnext_{_variant}"]))


# ------------------------------------------------------------------------------------- ConvNeXt-V2 (timm)

# timm's convnextv2_* model arguments: (width, blocks) per stage; atto..nano run their MLPs as 1x1 convs
# (`conv_mlp`), the same maths as the Dense layers here (the converter reshapes the kernels).
V2_CONFIGS = {
    "atto": ((40, 2), (80, 2), (160, 6), (320, 2)),
    "femto": ((48, 2), (96, 2), (192, 6), (384, 2)),
    "pico": ((64, 2), (128, 2), (256, 6), (512, 2)),
    "nano": ((80, 2), (160, 2), (320, 8), (640, 2)),
    "tiny": ((96, 3), (192, 3), (384, 9), (768, 3)),
    "base": ((128, 3), (256, 3), (512, 27), (1024, 3)),
    "large": ((192, 3), (384, 3), (768, 27), (1536, 3)),
    "huge": ((352, 3), (704, 3), (1408, 27), (2816, 3)),
}
# Exact 'params' counts: timm 1.0.31's `sum(p.numel() for p in model.parameters())` (experiments/
# make_backbone_goldens.py computes them; tests/test_golden_backbones.py pins eval_shape to them).
V2_NUM_PARAMS = {"atto": 3_708_400, "femto": 5_233_240, "pico": 9_066_280, "nano": 15_623_800,
                 "tiny": 28_635_496, "base": 88_717_800, "large": 197_956_840, "huge": 660_289_640}
# timm's fine-tuned ImageNet-1k tags: (variant, tag, input size, resize size). 224 px tags crop 0.875
# (resize floor(224 / 0.875) = 256, bicubic); 384/512 px tags squash the whole image to the square (crop_pct 1.0,
# crop_mode='squash'). ImageNet mean/std throughout.
V2_CHECKPOINTS = (
    [(v, "fcmae_ft_in1k", 224, 256) for v in V2_CONFIGS]
    + [(v, "fcmae_ft_in22k_in1k", 224, 256) for v in ("nano", "tiny", "base", "large")]
    + [(v, "fcmae_ft_in22k_in1k_384", 384, 384) for v in ("nano", "tiny", "base", "large", "huge")]
    + [("huge", "fcmae_ft_in22k_in1k_512", 512, 512)])


def convnextv2(variant: str, **kw) -> ConvNeXt:
  """timm's `convnextv2_{variant}` (GRN, no layer scale); `kw` overrides fields (tiny test widths, dtype)."""
  if variant not in V2_CONFIGS:
    raise ValueError(f"ConvNeXt-V2 variant {variant!r} not supported; choose one of {sorted(V2_CONFIGS)}")
  kw.setdefault("stages", V2_CONFIGS[variant])
  return ConvNeXt(grn=True, layer_scale=False, **kw)


for _variant, _tag, _size, _resize in V2_CHECKPOINTS:
  _name = f"convnextv2_{_variant}.{_tag}"
  registry.register(registry.ModelSpec(
      name=_name,
      make_module=functools.partial(convnextv2, _variant),
      preprocessing=Preprocessing(input_size=_size, resize_size=_resize, resize_method="bicubic",
                                  mean=IMAGENET_MEAN, std=IMAGENET_STD,
                                  crop_mode="squash" if _size > 224 else "center"),
      convert=functools.partial(convert_timm_convnext, what=f"timm {_name}"),
      checkpoint_hint=f"Pass timm's `{_name}` weights: model.safetensors of HF hub timm/{_name}.",
      num_params=V2_NUM_PARAMS[_variant]))
