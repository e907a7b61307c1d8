"""What `zoomjax.models.load` returns: a module, its variables and how its checkpoint wants inputs.

A model of your own is a ModelBundle too: build one in a function of no arguments (a factory) and name it
`package.module:function` in a job's config, or `zoomjax.models.register` it (docs/own-model.md).
"""
import dataclasses
from typing import Any, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from zoomjax.errors import UserError
# Preprocessing (and the ImageNet constants) are importable from here too, where they lived first.
from zoomjax.models.preprocessing import IMAGENET_MEAN, IMAGENET_STD, Preprocessing  # noqa: F401

__all__ = ["ModelBundle", "Preprocessing", "IMAGENET_MEAN", "IMAGENET_STD"]


@dataclasses.dataclass(frozen=True)
class ModelBundle:
  """A classifier ready to apply: `logits, inter = module.apply(variables, preprocessing.normalize(x))`.

  name: what messages call it; module: a flax module whose `apply(variables, x)` returns `(logits (N, C),
  intermediates)`; variables: {"params": ..., maybe "batch_stats": ...}; preprocessing: the input size, the
  standard eval view and the mean/std (pixel units) its weights expect; num_classes: C, in the standard
  sorted-WNID ImageNet-1k order when C is 1000.
  """
  name: str
  module: nn.Module
  variables: Any  # {"params": ..., maybe "batch_stats": ...}
  preprocessing: Preprocessing
  num_classes: int = 1000  # Output classes, in the standard sorted-WNID ImageNet-1k order.

  def __post_init__(self):
    # Checked here so that a hand-built bundle (a model of one's own) fails where it is made, not inside a job.
    if not callable(getattr(self.module, "apply", None)):
      raise TypeError(f"ModelBundle {self.name!r}: module must be a flax module (with .apply), got "
                      f"{type(self.module).__name__}")
    if not isinstance(self.preprocessing, Preprocessing):
      raise TypeError(f"ModelBundle {self.name!r}: preprocessing must be a zoomjax.models.Preprocessing, got "
                      f"{type(self.preprocessing).__name__}")
    if int(self.num_classes) != self.num_classes or self.num_classes < 1:
      raise ValueError(f"ModelBundle {self.name!r}: num_classes must be a positive int, got {self.num_classes!r}")

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

  def check_input_size(self, size: int, field: str, fix: Optional[str] = None) -> None:
    """Refuses (UserError, one line naming the model, its input size and the config `field` to change) square
    `size` x `size` inputs that the module cannot take: a ViT or CLIP, whose position embedding fixes its input
    size, fed the views of a job whose crop differs. CNNs take any size. Traced abstractly (`jax.eval_shape`):
    nothing is compiled or computed, so a job calls it before its first compile; the model's own
    `preprocessing.input_size` is taken as it is. `fix`: the advice, when `set <field>=<own size>` is not it."""
    own, size = int(self.preprocessing.input_size), int(size)
    if size == own:
      return
    leaves, tree = jax.tree_util.tree_flatten(self.variables)
    key = (self.module, tree, tuple((tuple(x.shape), str(x.dtype)) for x in leaves), size)
    try:
      hash(key)
    except TypeError:  # A module with unhashable fields: traced every time.
      key = None
    if key is not None and key in _SIZES_TAKEN:
      return
    try:
      jax.eval_shape(self.module.apply, self.variables, jax.ShapeDtypeStruct((1, size, size, 3), jnp.float32))
    except Exception as e:  # pylint: disable=broad-except  Whatever the module raises on that shape.
      reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
      raise UserError(f"model {self.name!r} takes {own}x{own} inputs (preprocessing.input_size {own}), not the "
                      f"{size}x{size} views of {field}={size} ({type(e).__name__}: {reason}); "
                      f"{fix or f'set {field}={own}'}") from e
    if key is not None:
      if len(_SIZES_TAKEN) > 256:
        _SIZES_TAKEN.clear()
      _SIZES_TAKEN.add(key)


# (module, variable shapes, size) that `check_input_size` found a module takes: a process that runs one model
# many times (tests, benchmarks, the evaluation's datasets) traces it once.
_SIZES_TAKEN: set = set()
