"""What `zoomjax.models.load` returns: a module, its variables and how its checkpoint wants inputs."""
import dataclasses
from typing import Any, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp

IMAGENET_MEAN = (0.485 * 255, 0.456 * 255, 0.406 * 255)
IMAGENET_STD = (0.229 * 255, 0.224 * 255, 0.225 * 255)


@dataclasses.dataclass(frozen=True)
class Preprocessing:
  """Standard evaluation preprocessing of one checkpoint family (never a global default).

  mean/std are in pixel units (0..255) so that `normalize` applies to zoom crops directly.
  """
  input_size: int  # Side of the square input the model expects (e.g. 224).
  resize_size: int  # Short side before the centre crop in standard eval (e.g. 256).
  resize_method: str  # "bicubic" | "bilinear" (PIL filters).
  mean: Tuple[float, float, float]
  std: Tuple[float, float, float]

  def normalize(self, pixels: jax.Array) -> jax.Array:
    """Float pixel values in [0, 255] (..., 3) -> model input."""
    mean = jnp.asarray(self.mean, jnp.float32)
    std = jnp.asarray(self.std, jnp.float32)
    return (pixels - mean) / std


@dataclasses.dataclass(frozen=True)
class ModelBundle:
  """A classifier ready to apply: `logits, inter = module.apply(variables, preprocessing.normalize(x))`."""
  name: str
  module: nn.Module
  variables: Any  # {"params": ..., maybe "batch_stats": ...}
  preprocessing: Preprocessing
  num_classes: int = 1000  # Output classes, in the standard sorted-WNID ImageNet-1k order.

  def predict_fn(self):
    """Pure function (variables, pixels in [0,255] NHWC) -> logits."""
    module, pp = self.module, self.preprocessing

    def fn(variables, pixels):
      logits, _ = module.apply(variables, pp.normalize(pixels))
      return logits

    return fn
