"""What `zoomjax.models.load` returns: a module, its variables and how its checkpoint wants inputs."""
import dataclasses
from typing import Any

import flax.linen as nn

# Preprocessing (and the ImageNet constants) are importable from here too, where they lived first.
from zoomjax.models.preprocessing import IMAGENET_MEAN, IMAGENET_STD, Preprocessing  # noqa: F401


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
