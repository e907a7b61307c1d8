"""What `zoomjax.models.load` returns: a module, its variables and how its checkpoint wants inputs."""
import dataclasses
from typing import Any, Optional

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

  def predict_fn(self, module: Optional[nn.Module] = None, dtype: Any = None):
    """Pure `fn(variables, pixels in [0, 255] NHWC float) -> logits`: normalise, then apply.

    module: a variant of `self.module` (e.g. BatchNorm in MEMO's prior mode); dtype: the model input's
    compute dtype, applied after normalising in float32 (normalising in bfloat16 would lose precision).
    """
    module = self.module if module is None else module
    normalize = self.preprocessing.normalize

    def fn(variables, pixels):
      x = normalize(pixels)
      logits, _ = module.apply(variables, x if dtype is None else x.astype(dtype))
      return logits

    return fn
