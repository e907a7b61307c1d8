"""Label spaces as data: which of the 1000 ImageNet classes a dataset scores, and what counts as correct.

Conventions used everywhere in zoomjax:
- Model outputs are 1000-way logits in the standard sorted-WNID order (TFDS imagenet2012 labels.txt).
- Labels are 1000-way class indices, stored per image as a fixed-width int32 vector padded with -1
  (single-label datasets use width 1; multi-label datasets such as ReaL or ImageNet-Hard use more).
- Predictions are taken as the argmax over the *masked* logits (classes outside the dataset's subset set to
  -inf) and stay in 1000-way index space, so one `is_correct` serves every dataset.

The declared spaces (one per dataset family; `get_label_space(name)` looks them up, datasets carry theirs):
  imagenet_1k          1000-way, single label (ImageNet val, Sketch, V2, folders)
  imagenet_a_200       200-class mask, single label (ImageNet-A)
  imagenet_r_200       200-class mask, single label (ImageNet-R)
  objectnet_113        113-class mask, single label (ObjectNet as filed by the paper)
  real                 1000-way, multi-label ReaL sets (images with an empty set are not in the dataset)
  imagenet_real_union  1000-way, multi-label {original label} | ReaL set (all 50,000 images)
  imagenet_hard        1000-way, multi-label, at most 10 labels (the reference pads to 10 with -1)
  demo_photos          1000-way, multi-label, at most 3 (the packaged demo photos)
The index lists live in `zoomjax/data/subsets.py`.
"""
import dataclasses
from typing import Optional, Sequence, Tuple

import jax.numpy as jnp
import numpy as np

from zoomjax.data import subsets
from zoomjax.errors import UnknownNameError, UserError

NUM_IMAGENET_CLASSES = 1000


@dataclasses.dataclass(frozen=True)
class LabelSpace:
  name: str
  # 1000-way indices the dataset is scored on (ImageNet-A/R: 200, ObjectNet: 113); None means all 1000.
  class_subset: Optional[Tuple[int, ...]] = None
  # True when an image may have several correct labels (ReaL, IN+ReaL, ImageNet-Hard).
  multi_label: bool = False
  # Width of the -1-padded label vector per image.
  max_labels: int = 1
  num_classes: int = NUM_IMAGENET_CLASSES

  def logit_mask(self) -> np.ndarray:
    """Boolean (num_classes,) mask of the scored classes."""
    mask = np.zeros(self.num_classes, bool)
    if self.class_subset is None:
      mask[:] = True
    else:
      mask[list(self.class_subset)] = True
    return mask

  @property
  def num_scored_classes(self) -> int:
    return self.num_classes if self.class_subset is None else len(self.class_subset)


def mask_logits(logits, mask):
  """Sets logits of classes outside `mask` to -inf (works for numpy and jax arrays)."""
  if mask is None:
    return logits
  return jnp.where(jnp.asarray(mask), logits, -jnp.inf)


def is_correct(pred, labels):
  """pred: (...,) int 1000-way predictions; labels: (..., L) int, -1 padded. -> (...,) bool.

  A prediction is correct iff it is one of the image's labels (single- and multi-label alike).
  """
  xp = np if isinstance(pred, np.ndarray) and isinstance(labels, np.ndarray) else jnp
  labels = xp.asarray(labels)
  return xp.any((labels >= 0) & (labels == xp.asarray(pred)[..., None]), axis=-1)


def topk_correct(topk, labels):
  """topk: (..., K) int predictions; labels: (..., L) int, -1 padded. -> (...,) bool: any of the K is a label."""
  return is_correct(topk, labels[..., None, :]).any(-1)


def pad_labels(labels: Sequence[int], width: int) -> np.ndarray:
  """A list of 1000-way labels -> int32 (width,) vector padded with -1."""
  labels = list(labels)
  if len(labels) > width:
    raise UserError(f"{len(labels)} labels {labels} exceed the label width {width}")
  return np.array(labels + [-1] * (width - len(labels)), np.int32)


def predict(logits, space: LabelSpace):
  """1000-way argmax of the logits restricted to the space's scored classes (the paper's protocol)."""
  return jnp.argmax(mask_logits(logits, None if space.class_subset is None else space.logit_mask()), axis=-1)


IMAGENET_1K = LabelSpace("imagenet_1k")
IMAGENET_A_200 = LabelSpace("imagenet_a_200", class_subset=subsets.IMAGENET_A_200)
IMAGENET_R_200 = LabelSpace("imagenet_r_200", class_subset=subsets.IMAGENET_R_200)
OBJECTNET_113 = LabelSpace("objectnet_113", class_subset=subsets.OBJECTNET_113)
# ReaL sets are short (most images have 1-3 labels); 16 leaves headroom, and wider sets raise a clear error.
REAL = LabelSpace("real", multi_label=True, max_labels=16)
IMAGENET_REAL_UNION = LabelSpace("imagenet_real_union", multi_label=True, max_labels=17)
IMAGENET_HARD = LabelSpace("imagenet_hard", multi_label=True, max_labels=10)
DEMO_PHOTOS = LabelSpace("demo_photos", multi_label=True, max_labels=3)

LABEL_SPACES = {s.name: s for s in (IMAGENET_1K, IMAGENET_A_200, IMAGENET_R_200, OBJECTNET_113, REAL,
                                    IMAGENET_REAL_UNION, IMAGENET_HARD, DEMO_PHOTOS)}


def get_label_space(name) -> LabelSpace:
  """A declared label space by name (a LabelSpace passes through)."""
  if isinstance(name, LabelSpace):
    return name
  try:
    return LABEL_SPACES[name]
  except KeyError:
    raise UnknownNameError(f"unknown label space {name!r}; declared: {sorted(LABEL_SPACES)}") from None
