"""Compact per-image x per-view sweep records, stored as atomic per-shard `.npz` files.

Why compact: the authors pickled the full softmax of every view (about 64 GB for ImageNet val at 324 views).
Every analysis of the study needs only, per image and view, the top-1 id (plus top-5 for inspection), the
probability of the true label(s) and the max probability. The one exception, aggregation by mean softmax, is
reduced on device during the sweep: per image and aggregation set we keep the top-5 ids and probabilities of
the set's mean masked softmax (its argmax is the aggregated prediction).

They are written through `zoomjax.runtime.shards` (one `.npz` per shard of images, merged by process 0 into
`records.npz`).

Arrays (N images, T grid views, X extra crops, A aggregation sets, L label width):
  index (N,) int64      global image index          ids (N,) str         labels (N, L) int32 (-1 padded)
  top5 (N, T, 5) int16  top-5 class ids per view    p_true (N, T) f32    max probability of a true label
  p_max (N, T) f32      max probability (= top-1 probability)
  crop_top5 / crop_p_true / crop_p_max: the same for the X extra views (5-crop then its 5 flips)
  agg_top5 (N, A, 5) int16, agg_p (N, A, 5) f32: top-5 of the mean masked softmax of each aggregation set
  view_names (T,), crop_names (X,), agg_names (A,): str, identical in every shard of a run.
  skipped (S,) str: "<id>: <reason>" for the shard's images the data layer could not read (not in the arrays).
"""
import dataclasses
import os
from typing import Dict, Optional

import numpy as np

from zoomjax.runtime import atomic
from zoomjax.runtime import shards

__all__ = ["PER_IMAGE", "NAMES", "SKIPPED", "FINAL_FILE", "TOP_K", "AGG_SETS", "CROP_NAMES", "Records", "save", "load",
           "empty_rows", "merge_shards"]

PER_IMAGE = ("index", "ids", "labels", "top5", "p_true", "p_max", "crop_top5", "crop_p_true", "crop_p_max",
             "agg_top5", "agg_p")
NAMES = ("view_names", "crop_names", "agg_names")
# Per shard, concatenated on merge: "id: reason" of images the data layer could not read.
SKIPPED = "skipped"
FINAL_FILE = "records.npz"
TOP_K = 5
# Aggregation sets (docs/study.md §2.8); zoom sets are defined by the scale relative to the crop size.
AGG_SETS = ("zoom-in", "zoom-out", "zoom-224", "5-crop", "10-crop")
# The extra views: torchvision Resize(256) + TenCrop(224) = FiveCrop, then FiveCrop of the flipped image.
CROP_NAMES = tuple(f"5CROP:{p}_Size:256" for p in ("tl", "tr", "bl", "br", "center")) + tuple(
    f"10CROP:flip_{p}_Size:256" for p in ("tl", "tr", "bl", "br", "center"))


@dataclasses.dataclass
class Records:
  """All arrays of a sweep (or of one shard); see the module docstring."""
  index: np.ndarray
  ids: np.ndarray
  labels: np.ndarray
  top5: np.ndarray
  p_true: np.ndarray
  p_max: np.ndarray
  crop_top5: np.ndarray
  crop_p_true: np.ndarray
  crop_p_max: np.ndarray
  agg_top5: np.ndarray
  agg_p: np.ndarray
  view_names: np.ndarray
  crop_names: np.ndarray
  agg_names: np.ndarray
  skipped: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, np.str_))

  def __len__(self) -> int:
    return int(self.index.shape[0])

  @property
  def top1(self) -> np.ndarray:
    return self.top5[..., 0].astype(np.int64)

  def all_views(self):
    """(top1, p_max, p_true, names) over grid views followed by the extra crops."""
    return (np.concatenate([self.top5[..., 0], self.crop_top5[..., 0]], 1).astype(np.int64),
            np.concatenate([self.p_max, self.crop_p_max], 1),
            np.concatenate([self.p_true, self.crop_p_true], 1),
            list(self.view_names) + list(self.crop_names))

  def mean_predictions(self) -> Dict[str, np.ndarray]:
    """{aggregation set: (N,) argmax of its mean softmax} (-1 where the set is empty)."""
    return {str(n): self.agg_top5[:, a, 0].astype(np.int64) for a, n in enumerate(self.agg_names)}

  def select(self, rows: np.ndarray) -> "Records":
    kw = {f: getattr(self, f)[rows] for f in PER_IMAGE}
    kw.update({f: getattr(self, f) for f in NAMES + (SKIPPED,)})
    return Records(**kw)


def _as_arrays(rec: Records) -> Dict[str, np.ndarray]:
  out = {f: np.asarray(getattr(rec, f)) for f in PER_IMAGE + NAMES + (SKIPPED,)}
  for f in ("ids", SKIPPED) + NAMES:
    out[f] = np.asarray([str(x) for x in out[f]], dtype=np.str_)
  return out


def save(path: str, rec: Records) -> None:
  """Writes records atomically: the file at `path` is either absent or complete."""
  atomic.savez(path, _as_arrays(rec))


def _from_arrays(arrays: Dict[str, np.ndarray]) -> Records:
  kw = {f: arrays[f] for f in PER_IMAGE + NAMES}
  if SKIPPED in arrays:
    kw[SKIPPED] = arrays[SKIPPED]
  return Records(**kw)


def load(path: str) -> Records:
  """A sweep's records file (records.npz, or one shard) as Records; a clear error for a missing or bad file."""
  return _from_arrays(shards.load_arrays(path, PER_IMAGE + NAMES))


def empty_rows(num_views: int, num_crops: int, num_sets: int) -> Dict[str, np.ndarray]:
  """Zero-image record fields (a shard whose images were all unreadable)."""
  t, x, a = num_views, num_crops, num_sets
  return dict(top5=np.zeros((0, t, TOP_K), np.int16), p_true=np.zeros((0, t), np.float32),
              p_max=np.zeros((0, t), np.float32), crop_top5=np.zeros((0, x, TOP_K), np.int16),
              crop_p_true=np.zeros((0, x), np.float32), crop_p_max=np.zeros((0, x), np.float32),
              agg_top5=np.zeros((0, a, TOP_K), np.int16), agg_p=np.zeros((0, a, TOP_K), np.float32))


def merge_shards(workdir: str, n_shards: int, out_path: Optional[str] = None,
                 num_images: Optional[int] = None) -> Records:
  """Joins the sweep's shards 0..n-1 (`shards.merge`) and writes the final `records.npz`."""
  rec = _from_arrays(shards.merge(workdir, n_shards, PER_IMAGE, NAMES, num_images=num_images))
  save(out_path or os.path.join(workdir, FINAL_FILE), rec)
  return rec
