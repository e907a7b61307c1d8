"""MobileNetV3-Small/Large (Howard et al., 2019) in torchvision's layout (`torchvision.models.mobilenet_v3_*`)."""
import functools
from typing import Any, Optional, Sequence, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from zoomjax.checkpoints.convert_torchvision import convert_mobilenet_v3
from zoomjax.models import registry
from zoomjax.models.efficientnet_lite import DepthwiseConv
from zoomjax.models.layers import BatchNorm
from zoomjax.models.preprocessing import torchvision_preprocessing

# torchvision's inverted-residual settings (width_mult 1.0):
# (in, kernel, expanded, out, squeeze-excitation, hard-swish (else ReLU), stride).
Setting = Tuple[int, int, int, int, bool, bool, int]
SMALL: Sequence[Setting] = (
    (16, 3, 16, 16, True, False, 2), (16, 3, 72, 24, False, False, 2), (24, 3, 88, 24, False, False, 1),
    (24, 5, 96, 40, True, True, 2), (40, 5, 240, 40, True, True, 1), (40, 5, 240, 40, True, True, 1),
    (40, 5, 120, 48, True, True, 1), (48, 5, 144, 48, True, True, 1), (48, 5, 288, 96, True, True, 2),
    (96, 5, 576, 96, True, True, 1), (96, 5, 576, 96, True, True, 1))
LARGE: Sequence[Setting] = (
    (16, 3, 16, 16, False, False, 1), (16, 3, 64, 24, False, False, 2), (24, 3, 72, 24, False, False, 1),
    (24, 5, 72, 40, True, False, 2), (40, 5, 120, 40, True, False, 1), (40, 5, 120, 40, True, False, 1),
    (40, 3, 240, 80, False, True, 2), (80, 3, 200, 80, False, True, 1), (80, 3, 184, 80, False, True, 1),
    (80, 3, 184, 80, False, True, 1), (80, 3, 480, 112, True, True, 1), (112, 3, 672, 112, True, True, 1),
    (112, 5, 672, 160, True, True, 2), (160, 5, 960, 160, True, True, 1), (160, 5, 960, 160, True, True, 1))
LAST_CHANNEL = {"small": 1024, "large": 1280}
_BN_EPS = 1e-3  # torchvision's BatchNorm2d(eps=0.001) in MobileNetV3


def make_divisible(v: float, divisor: int = 8) -> int:
  """torchvision's `_make_divisible` (the SE squeeze width): nearest multiple of 8, never 10 % below v."""
  new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
  return new_v + divisor if new_v < 0.9 * v else new_v


class ConvBN(nn.Module):
  """torchvision's Conv2dNormActivation: bias-free conv (torch padding (k-1)//2) -> BatchNorm -> activation."""
  features: int
  kernel: int = 1
  stride: int = 1
  groups: int = 1
  activation: Optional[str] = None  # None | "relu" | "hard_swish"
  dtype: Any = jnp.float32
  bn_prior_strength: Optional[float] = None

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    p = (self.kernel - 1) // 2
    if self.groups > 1 and self.groups == self.features == x.shape[-1]:
      # Depthwise: the shift form on XLA:CPU (grouped convolutions are slow there), same parameters.
      x = DepthwiseConv(self.kernel, self.stride, dtype=self.dtype, padding="symmetric", name="conv")(x)
    else:
      x = nn.Conv(self.features, (self.kernel, self.kernel), (self.stride, self.stride), padding=((p, p), (p, p)),
                  feature_group_count=self.groups, use_bias=False, dtype=self.dtype, param_dtype=jnp.float32,
                  name="conv")(x)
    x = BatchNorm(epsilon=_BN_EPS, prior_strength=self.bn_prior_strength, dtype=self.dtype, name="bn")(x)
    if self.activation == "relu":
      x = nn.relu(x)
    elif self.activation == "hard_swish":
      x = jax.nn.hard_swish(x)
    return x


class InvertedResidual(nn.Module):
  """[1x1 expand] -> kxk depthwise -> [squeeze-excitation, hard-sigmoid gate] -> 1x1 project, [+ input]."""
  setting: Setting
  dtype: Any = jnp.float32
  bn_prior_strength: Optional[float] = None

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    cin, k, exp, cout, use_se, use_hs, stride = self.setting
    cbn = functools.partial(ConvBN, activation="hard_swish" if use_hs else "relu", dtype=self.dtype,
                            bn_prior_strength=self.bn_prior_strength)
    y = x
    if exp != cin:
      y = cbn(exp, name="expand")(y)
    y = cbn(exp, k, stride, groups=exp, name="depthwise")(y)
    if use_se:
      conv1 = functools.partial(nn.Conv, kernel_size=(1, 1), dtype=self.dtype, param_dtype=jnp.float32)
      s = jnp.mean(y.astype(jnp.float32), axis=(1, 2), keepdims=True).astype(self.dtype)
      s = nn.relu(conv1(make_divisible(exp // 4), name="se_fc1")(s))
      y = y * jax.nn.hard_sigmoid(conv1(exp, name="se_fc2")(s))
    y = cbn(cout, activation=None, name="project")(y)
    return x + y if stride == 1 and cin == cout else y


class MobileNetV3(nn.Module):
  """MobileNetV3; returns (logits, intermediates) with `feature_map` (after the last 1x1 conv) and `pre_logits`
  (after the classifier's hard-swish). `bn_prior_strength` is MEMO's BatchNorm prior mode."""
  setting: Sequence[Setting] = SMALL
  last_channel: int = LAST_CHANNEL["small"]
  num_classes: int = 1000
  dtype: Any = jnp.float32
  bn_prior_strength: Optional[float] = None

  @nn.compact
  def __call__(self, x: jax.Array):
    kw = dict(dtype=self.dtype, bn_prior_strength=self.bn_prior_strength)
    x = ConvBN(self.setting[0][0], 3, 2, activation="hard_swish", name="stem", **kw)(x.astype(self.dtype))
    for i, s in enumerate(self.setting):
      x = InvertedResidual(tuple(s), name=f"blocks_{i}", **kw)(x)
    x = ConvBN(6 * self.setting[-1][3], activation="hard_swish", name="last_conv", **kw)(x)
    out = {"feature_map": x}
    x = jnp.mean(x.astype(jnp.float32), axis=(1, 2)).astype(self.dtype)
    dense = functools.partial(nn.Dense, dtype=self.dtype, param_dtype=jnp.float32)
    out["pre_logits"] = x = jax.nn.hard_swish(dense(self.last_channel, name="pre_head")(x))
    logits = dense(self.num_classes, name="head")(x)  # dropout (p=0.2) is inert at eval
    return logits.astype(jnp.float32), out


def mobilenet_v3(variant: str, **kw) -> MobileNetV3:
  """torchvision's `mobilenet_v3_{variant}`; `setting`, `last_channel`, ... in `kw` override (tiny test widths)."""
  if variant not in LAST_CHANNEL:
    raise ValueError(f"MobileNetV3 variant {variant!r} not supported; choose one of {sorted(LAST_CHANNEL)}")
  kw.setdefault("setting", SMALL if variant == "small" else LARGE)
  kw.setdefault("last_channel", LAST_CHANNEL[variant])
  return MobileNetV3(**kw)


# --------------------------------------------------------------------------------------------- registry

# Exact 'params' counts (BN running statistics excluded), equal to torchvision 0.29.1's (MobileNetV3-S 2,542,856).
NUM_PARAMS = {"small": 2_542_856, "large": 5_483_032}
# name -> (variant, torchvision file, eval resize (bilinear, crop 224)). Large has two weights entries.
_ENTRIES = {
    "mobilenet_v3_small": ("small", "mobilenet_v3_small-047dcff4.pth", 256, "IMAGENET1K_V1"),
    "mobilenet_v3_large": ("large", "mobilenet_v3_large-8738ca79.pth", 256, "IMAGENET1K_V1"),
    "mobilenet_v3_large_v2": ("large", "mobilenet_v3_large-5c1a4163.pth", 232, "IMAGENET1K_V2"),
}

for _name, (_variant, _file, _resize, _entry) in _ENTRIES.items():
  registry.register(registry.ModelSpec(
      name=_name,
      make_module=functools.partial(mobilenet_v3, _variant),
      preprocessing=torchvision_preprocessing(_resize),
      convert=functools.partial(convert_mobilenet_v3, what=f"torchvision mobilenet_v3_{_variant}"),
      checkpoint_hint=(f"Pass torchvision's {_entry} file `{_file}` (https://download.pytorch.org/models/{_file})."),
      num_params=NUM_PARAMS[_variant]))
