"""ConvNeXt-T/S/B/L (Liu et al., 2022) in torchvision's layout (`torchvision.models.convnext_*`)."""
import functools
from typing import Any, Sequence, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from zoomjax.checkpoints.convert_torchvision import convert_convnext
from zoomjax.models import registry
from zoomjax.models.efficientnet_lite import DepthwiseConv
from zoomjax.models.preprocessing import torchvision_preprocessing

# torchvision's block settings: (width, blocks) per stage; a 2x2/2 downsample sits between stages.
CONFIGS = {
    "tiny": ((96, 3), (192, 3), (384, 9), (768, 3)),
    "small": ((96, 3), (192, 3), (384, 27), (768, 3)),
    "base": ((128, 3), (256, 3), (512, 27), (1024, 3)),
    "large": ((192, 3), (384, 3), (768, 27), (1536, 3)),
}
_EPS = 1e-6  # torchvision's LayerNorm / LayerNorm2d epsilon


def _layer_norm(dtype: Any, name: str) -> nn.LayerNorm:
  # Two-pass variance (torch's): the fast E[x^2]-E[x]^2 form loses digits on un-normalised conv outputs.
  return nn.LayerNorm(epsilon=_EPS, use_fast_variance=False, dtype=dtype, param_dtype=jnp.float32, name=name)


class CNBlock(nn.Module):
  """7x7 depthwise conv -> LayerNorm -> Dense(4C) -> GELU -> Dense(C), times `gamma`, plus the input.

  Stochastic depth is a training-time regulariser; at eval it is the identity.
  """
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    c = x.shape[-1]
    # The shift form on XLA:CPU (grouped convolutions are slow there); nn.Conv's parameters.
    y = DepthwiseConv(7, 1, dtype=self.dtype, padding="symmetric", use_bias=True, name="conv_dw")(x)
    y = _layer_norm(self.dtype, "norm")(y)
    y = nn.Dense(4 * c, dtype=self.dtype, param_dtype=jnp.float32, name="fc1")(y)
    y = nn.gelu(y, approximate=False)  # torch nn.GELU() is the exact erf form
    y = nn.Dense(c, dtype=self.dtype, param_dtype=jnp.float32, name="fc2")(y)
    gamma = self.param("gamma", nn.initializers.constant(1e-6), (c,), jnp.float32)
    return x + (gamma * y).astype(x.dtype)


class ConvNeXt(nn.Module):
  """ConvNeXt; returns (logits, intermediates) with `feature_map` (last stage) and `pre_logits` (head norm)."""
  stages: Sequence[Tuple[int, int]] = CONFIGS["tiny"]
  num_classes: int = 1000
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array):
    conv = functools.partial(nn.Conv, dtype=self.dtype, param_dtype=jnp.float32, padding="VALID")
    x = x.astype(self.dtype)
    x = conv(self.stages[0][0], (4, 4), (4, 4), name="stem_conv")(x)
    x = _layer_norm(self.dtype, "stem_norm")(x)
    for s, (width, blocks) in enumerate(self.stages):
      if s > 0:
        x = _layer_norm(self.dtype, f"stages_{s}_downsample_norm")(x)
        x = conv(width, (2, 2), (2, 2), name=f"stages_{s}_downsample_conv")(x)
      for b in range(blocks):
        x = CNBlock(dtype=self.dtype, name=f"stages_{s}_blocks_{b}")(x)
    out = {"feature_map": x}
    x = jnp.mean(x.astype(jnp.float32), axis=(1, 2)).astype(self.dtype)
    out["pre_logits"] = x = _layer_norm(self.dtype, "head_norm")(x)
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
