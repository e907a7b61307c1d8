"""VGG without BatchNorm (torchvision layout; the zoom paper's VGG-16 is `vgg16(pretrained=True)`)."""
import functools
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

# The conv names are part of the parameter layout the converter writes, so they are defined there.
from zoomjax.checkpoints.convert_torchvision import convert_vgg, vgg_layer_names
from zoomjax.models import registry
from zoomjax.models.layers import adaptive_avg_pool, classifier_head
from zoomjax.models.preprocessing import TORCHVISION_PREPROCESSING

# torchvision's configurations: ints are 3x3 conv widths, "M" a 2x2/2 max-pool.
CFGS = {
    11: (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    13: (64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    16: (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"),
    19: (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"),
}


class VGG(nn.Module):
  """VGG; returns (logits, intermediates) with `feature_map` (after the last pool) and `pre_logits` (fc7)."""
  cfg: Sequence = CFGS[16]
  num_classes: int = 1000
  hidden: int = 4096
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array):
    x = x.astype(self.dtype)
    names = iter(vgg_layer_names(self.cfg))
    for v in self.cfg:
      if v == "M":
        x = nn.max_pool(x, (2, 2), (2, 2), padding="VALID")
      else:
        x = nn.relu(nn.Conv(v, (3, 3), padding=((1, 1), (1, 1)), dtype=self.dtype, param_dtype=jnp.float32,
                            name=next(names))(x))
    out = {"feature_map": x}
    x = adaptive_avg_pool(x, (7, 7))
    logits, out["pre_logits"] = classifier_head(x, self.num_classes, self.dtype, self.hidden)
    return logits.astype(jnp.float32), out


def vgg(depth: int, **kw) -> VGG:
  if depth not in CFGS:
    raise ValueError(f"VGG depth {depth} not supported; choose one of {sorted(CFGS)}")
  return VGG(cfg=CFGS[depth], **kw)


# --------------------------------------------------------------------------------------------- registry

registry.register(registry.ModelSpec(
    name="vgg16",
    make_module=functools.partial(vgg, 16),
    preprocessing=TORCHVISION_PREPROCESSING,
    convert=functools.partial(convert_vgg, cfg=CFGS[16]),
    checkpoint_hint=("Pass torchvision's IMAGENET1K_V1 file `vgg16-397923af.pth` (no BatchNorm; "
                     "https://download.pytorch.org/models/vgg16-397923af.pth)."),
    num_params=138_357_544))
