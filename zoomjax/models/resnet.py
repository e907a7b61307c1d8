"""ResNet v1.5 (torchvision layout: stride on the 3x3 conv) with PyTorch-exact padding.

Padding is explicit everywhere: Flax's 'SAME' pads (0, 1) on stride-2 layers where torch pads (1, 1), which
would silently shift every feature map of a converted checkpoint.
Parameter names follow scenic's ResNet (`stem_conv`, `init_bn`, `ResidualBlock_{k}`, `output_projection`).
"""
import functools
from typing import Any, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from zoomjax.checkpoints.convert_torchvision import convert_resnet
from zoomjax.models import registry
from zoomjax.models.layers import BatchNorm
from zoomjax.models.preprocessing import TORCHVISION_PREPROCESSING


class ResidualBlock(nn.Module):
  """Basic (two 3x3) or bottleneck (1x1, 3x3 strided and grouped, 1x1 x4) residual block.

  Bottleneck inner width as torchvision: int(filters * width_per_group / 64) * groups (ResNeXt: groups 32;
  Wide-ResNet: width_per_group 128).
  """
  filters: int
  strides: int
  bottleneck: bool
  project: bool  # 1x1 conv + BN on the shortcut (torchvision `downsample`).
  dtype: Any = jnp.float32
  bn_prior_strength: Optional[float] = None
  groups: int = 1
  width_per_group: int = 64

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    conv = functools.partial(nn.Conv, use_bias=False, dtype=self.dtype, param_dtype=jnp.float32)
    bn = functools.partial(BatchNorm, epsilon=1e-5, prior_strength=self.bn_prior_strength, dtype=self.dtype)
    s = (self.strides, self.strides)
    if self.bottleneck:
      out_ch = self.filters * 4
      inner = int(self.filters * (self.width_per_group / 64.0)) * self.groups
      y = nn.relu(bn(name="bn1")(conv(inner, (1, 1), name="conv1")(x)))
      y = conv(inner, (3, 3), s, padding=((1, 1), (1, 1)), feature_group_count=self.groups, name="conv2")(y)
      y = nn.relu(bn(name="bn2")(y))
      y = bn(name="bn3")(conv(out_ch, (1, 1), name="conv3")(y))
    else:
      if self.groups != 1 or self.width_per_group != 64:
        raise ValueError("groups / width_per_group need bottleneck blocks (as in torchvision's BasicBlock)")
      out_ch = self.filters
      y = conv(self.filters, (3, 3), s, padding=((1, 1), (1, 1)), name="conv1")(x)
      y = nn.relu(bn(name="bn1")(y))
      y = conv(self.filters, (3, 3), padding=((1, 1), (1, 1)), name="conv2")(y)
      y = bn(name="bn2")(y)
    if self.project:
      x = bn(name="proj_bn")(conv(out_ch, (1, 1), s, name="proj_conv")(x))
    return nn.relu(y + x)


class ResNet(nn.Module):
  """ResNet v1.5. Input NHWC, normalised; returns (logits, intermediates).

  intermediates: `stem` (after max-pool), `stage_{1..4}`, `feature_map` (= last stage, (B, h, w, C)) and
  `pre_logits` (global average, (B, C)). `groups` / `width_per_group`: ResNeXt and Wide-ResNet bottlenecks.
  """
  stage_sizes: Sequence[int]
  bottleneck: bool
  num_classes: int = 1000
  width: int = 64
  dtype: Any = jnp.float32
  bn_prior_strength: Optional[float] = None
  groups: int = 1
  width_per_group: int = 64

  @nn.compact
  def __call__(self, x: jax.Array):
    out = {}
    x = x.astype(self.dtype)
    x = nn.Conv(self.width, (7, 7), (2, 2), padding=((3, 3), (3, 3)), use_bias=False, dtype=self.dtype,
                param_dtype=jnp.float32, name="stem_conv")(x)
    x = BatchNorm(epsilon=1e-5, prior_strength=self.bn_prior_strength, dtype=self.dtype, name="init_bn")(x)
    x = nn.relu(x)
    # torch pads max-pool with -inf; flax's max_pool pads with its init value -inf too.
    x = nn.max_pool(x, (3, 3), (2, 2), padding=((1, 1), (1, 1)))
    out["stem"] = x
    k = 0
    in_ch = self.width
    expansion = 4 if self.bottleneck else 1
    for s, n in enumerate(self.stage_sizes):
      filters = self.width * 2 ** s
      for b in range(n):
        strides = 2 if (s > 0 and b == 0) else 1
        project = b == 0 and (strides != 1 or in_ch != filters * expansion)
        x = ResidualBlock(filters, strides, self.bottleneck, project, dtype=self.dtype,
                          bn_prior_strength=self.bn_prior_strength, groups=self.groups,
                          width_per_group=self.width_per_group, name=f"ResidualBlock_{k}")(x)
        in_ch = filters * expansion
        k += 1
      out[f"stage_{s + 1}"] = x
    out["feature_map"] = x
    x = jnp.mean(x.astype(jnp.float32), axis=(1, 2))
    out["pre_logits"] = x
    logits = nn.Dense(self.num_classes, dtype=self.dtype, param_dtype=jnp.float32,
                      name="output_projection")(x.astype(self.dtype))
    return logits.astype(jnp.float32), out


STAGES = {
    18: ((2, 2, 2, 2), False),
    34: ((3, 4, 6, 3), False),
    50: ((3, 4, 6, 3), True),
    101: ((3, 4, 23, 3), True),
}


def resnet(depth: int, **kw) -> ResNet:
  """torchvision's `resnet{depth}`; `kw` sets groups / width_per_group (ResNeXt, Wide-ResNet) or overrides."""
  if depth not in STAGES:
    raise ValueError(f"ResNet depth {depth} not supported; choose one of {sorted(STAGES)}")
  stages, bottleneck = STAGES[depth]
  kw.setdefault("stage_sizes", stages)  # overridable: tiny test variants of a registered depth
  return ResNet(bottleneck=bottleneck, **kw)


# --------------------------------------------------------------------------------------------- registry

# Exact 'params' counts (BN running statistics excluded), equal to torchvision's `num_params`.
NUM_PARAMS = {"resnet18": 11_689_512, "resnet34": 21_797_672, "resnet50": 25_557_032,
              "resnet101": 44_549_160, "resnet_tiny": 143_312,
              "resnext50_32x4d": 25_028_904, "resnext101_32x8d": 88_791_336, "wide_resnet50_2": 68_883_240}
_FILES = {18: "resnet18-f37072fd.pth", 34: "resnet34-b627a593.pth", 50: "resnet50-0676ba61.pth",
          101: "resnet101-63fe2227.pth"}

for _depth, _file in _FILES.items():
  registry.register(registry.ModelSpec(
      name=f"resnet{_depth}",
      make_module=functools.partial(resnet, _depth),
      preprocessing=TORCHVISION_PREPROCESSING,
      convert=functools.partial(convert_resnet, stage_sizes=STAGES[_depth][0], bottleneck=STAGES[_depth][1]),
      checkpoint_hint=(f"Pass torchvision's IMAGENET1K_V1 file `{_file}` (https://download.pytorch.org/models/"
                       f"{_file}, the zoom paper's weights) or a timm `resnet{_depth}.*` model.safetensors."),
      num_params=NUM_PARAMS[f"resnet{_depth}"]))

# ResNeXt / Wide-ResNet (torchvision IMAGENET1K_V1 files): same layout and converter as ResNet, grouped or wider
# 3x3 convs. The WSL checkpoints (facebookresearch/WSL-Images `resnext101_32x8d_wsl`) share the layout.
_VARIANTS = {
    "resnext50_32x4d": (50, 32, 4, "resnext50_32x4d-7cdf4587.pth"),
    "resnext101_32x8d": (101, 32, 8, "resnext101_32x8d-8ba56ff5.pth"),
    "wide_resnet50_2": (50, 1, 128, "wide_resnet50_2-95faca4d.pth"),
}
for _name, (_depth, _groups, _wpg, _file) in _VARIANTS.items():
  registry.register(registry.ModelSpec(
      name=_name,
      make_module=functools.partial(resnet, _depth, groups=_groups, width_per_group=_wpg),
      preprocessing=TORCHVISION_PREPROCESSING,
      convert=functools.partial(convert_resnet, stage_sizes=STAGES[_depth][0], bottleneck=True,
                                what=f"torchvision {_name}"),
      checkpoint_hint=(f"Pass torchvision's IMAGENET1K_V1 file `{_file}` (https://download.pytorch.org/models/"
                       f"{_file})" + (" or the WSL `ig_resnext101_32x8-c38310e5.pth` state dict."
                                      if _name == "resnext101_32x8d" else ".")),
      num_params=NUM_PARAMS[_name]))

# A 0.14M-parameter ResNet (basic blocks, width 8) for fast tests of other modules (random_init=True).
registry.register(registry.ModelSpec(
    name="resnet_tiny",
    make_module=functools.partial(ResNet, stage_sizes=(1, 1, 1, 1), bottleneck=False, width=8),
    preprocessing=TORCHVISION_PREPROCESSING,
    convert=functools.partial(convert_resnet, stage_sizes=(1, 1, 1, 1), bottleneck=False),
    checkpoint_hint="resnet_tiny is a testing model: use random_init=True.",
    num_params=NUM_PARAMS["resnet_tiny"]))
