"""VGG-11/13/16/19 (+BN) (torchvision layout; the zoom paper's VGG-16 is `vgg16(pretrained=True)`)."""
import functools
from typing import Any, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

# The conv names are part of the parameter layout the converter writes, so they are defined there.
from zoomjax.checkpoints.convert_torchvision import convert_vgg, vgg_layer_names
from zoomjax.models import registry
from zoomjax.models.layers import BatchNorm, adaptive_avg_pool, classifier_head
from zoomjax.models.preprocessing import TORCHVISION_PREPROCESSING

# torchvision's configurations (its `cfgs` letters): ints are 3x3 conv widths, "M" a 2x2/2 max-pool.
TORCHVISION_CFGS = {
    "A": (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    "B": (64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    "D": (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"),
    "E": (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"),
}
DEPTH_TO_CFG = {11: "A", 13: "B", 16: "D", 19: "E"}
CFGS = {depth: TORCHVISION_CFGS[letter] for depth, letter in DEPTH_TO_CFG.items()}


class VGG(nn.Module):
  """VGG; returns (logits, intermediates) with `feature_map` (after the last pool) and `pre_logits` (fc7).

  `batch_norm`: torchvision's `_bn` variants (conv -> BN -> ReLU); `bn_prior_strength` is MEMO's prior mode.
  """
  cfg: Sequence = CFGS[16]
  num_classes: int = 1000
  hidden: int = 4096
  batch_norm: bool = False
  dtype: Any = jnp.float32
  bn_prior_strength: Optional[float] = None

  @nn.compact
  def __call__(self, x: jax.Array):
    x = x.astype(self.dtype)
    names = iter(vgg_layer_names(self.cfg))
    for v in self.cfg:
      if v == "M":
        x = nn.max_pool(x, (2, 2), (2, 2), padding="VALID")
      else:
        name = next(names)
        x = nn.Conv(v, (3, 3), padding=((1, 1), (1, 1)), dtype=self.dtype, param_dtype=jnp.float32, name=name)(x)
        if self.batch_norm:
          x = BatchNorm(epsilon=1e-5, prior_strength=self.bn_prior_strength, dtype=self.dtype,
                        name=name.replace("conv", "bn", 1))(x)
        x = nn.relu(x)
    out = {"feature_map": x}
    x = adaptive_avg_pool(x, (7, 7))
    logits, out["pre_logits"] = classifier_head(x, self.num_classes, self.dtype, self.hidden)
    return logits.astype(jnp.float32), out


def vgg(depth: int, batch_norm: bool = False, **kw) -> VGG:
  """torchvision's `vgg{depth}` / `vgg{depth}_bn`; `cfg`, `hidden`, ... in `kw` override (tiny test widths)."""
  if depth not in CFGS:
    raise ValueError(f"VGG depth {depth} not supported; choose one of {sorted(CFGS)}")
  kw.setdefault("cfg", CFGS[depth])
  return VGG(batch_norm=batch_norm, **kw)


# --------------------------------------------------------------------------------------------- registry

# Exact 'params' counts (BN running statistics excluded), equal to torchvision 0.29.1's.
NUM_PARAMS = {"vgg11": 132_863_336, "vgg13": 133_047_848, "vgg16": 138_357_544, "vgg19": 143_667_240,
              "vgg11_bn": 132_868_840, "vgg13_bn": 133_053_736, "vgg16_bn": 138_365_992, "vgg19_bn": 143_678_248}
# torchvision's IMAGENET1K_V1 files.
_FILES = {"vgg11": "vgg11-8a719046.pth", "vgg13": "vgg13-19584684.pth", "vgg16": "vgg16-397923af.pth",
          "vgg19": "vgg19-dcbb9e9d.pth", "vgg11_bn": "vgg11_bn-6002323d.pth", "vgg13_bn": "vgg13_bn-abd245e5.pth",
          "vgg16_bn": "vgg16_bn-6c64b313.pth", "vgg19_bn": "vgg19_bn-c79401a0.pth"}

for _depth in CFGS:
  for _bn in (False, True):
    _name = f"vgg{_depth}{'_bn' if _bn else ''}"
    registry.register(registry.ModelSpec(
        name=_name,
        make_module=functools.partial(vgg, _depth, _bn),
        preprocessing=TORCHVISION_PREPROCESSING,
        convert=functools.partial(convert_vgg, cfg=CFGS[_depth], batch_norm=_bn),
        checkpoint_hint=(f"Pass torchvision's IMAGENET1K_V1 file `{_FILES[_name]}` ({'with' if _bn else 'no'} "
                         f"BatchNorm; https://download.pytorch.org/models/{_FILES[_name]})."),
        num_params=NUM_PARAMS[_name]))
