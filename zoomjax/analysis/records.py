"""Compact per-image x per-view sweep records, stored as atomic per-shard `.npz` files.

Why compact: the authors pickled the full softmax of every view (about 64 GB for ImageNet val at 324 views).
Every analysis of the study, and every test-time aggregator (`zoomjax.analysis.aggregators`), needs only, per
image and view, the top-k ids and probabilities (k = the sweep's `record_k`, default 10), the softmax entropy,
the max probability and the probability of the true label(s): 52 bytes per view at k = 10, 0.87 GB for 50,000
images x 334 views. Aggregation by the exact mean softmax of the fixed sets is also reduced on device: per image
and aggregation set we keep the top-5 ids and probabilities of the set's mean masked softmax.

They are written through `zoomjax.runtime.shards` (one `.npz` per shard of images, merged by process 0 into
`records.npz`).

Arrays (N images, T grid views, X extra crops, A aggregation sets, L label width):
  index (N,) int64      global image index          ids (N,) str         labels (N, L) int32 (-1 padded)
  topk (N, T, k) int16  top-k class ids per view, most probable first
  topk_p (N, T, k) f16  their probabilities         entropy (N, T) f32   softmax entropy (nats, full softmax)
  p_true (N, T) f32     max probability of a true label
  p_max (N, T) f32      max probability (= top-1 probability, float32 so rankings by confidence are exact)
  crop_topk / crop_topk_p / crop_entropy / crop_p_true / crop_p_max: the same for the X extra views (5-crop then
      its 5 flips)
  agg_top5 (N, A, 5) int16, agg_p (N, A, 5) f32: top-5 of the mean masked softmax of each aggregation set
  view_names (T,), crop_names (X,), agg_names (A,): str, identical in every shard of a run.
  skipped (S,) str: "<id>: <reason>" for the shard's images the data layer could not read (not in the arrays).

Records written before per-view top-k probabilities and entropies existed (`top5`/`crop_top5`, no `topk_p`,
`entropy`) load with the fields they have: `topk` holds their top-5 ids, `topk_p`/`entropy` (and the crop
versions) are None, and whatever needs them names the missing field and the command that recomputes it.
"""
import dataclasses
import os
from typing import Dict, Optional

import numpy as np

from zoomjax.errors import UserError
from zoomjax.runtime import atomic
from zoomjax.runtime import shards

__all__ = ["PER_IMAGE", "NAMES", "SKIPPED", "FINAL_FILE", "TOP_K", "RECORD_K", "AGG_SETS", "CROP_NAMES",
           "OPTIONAL", "LEGACY_NAMES", "Records", "missing_fields_error", "save", "load", "empty_rows", "merge_shards"]

PER_IMAGE = ("index", "ids", "labels", "topk", "topk_p", "entropy", "p_true", "p_max", "crop_topk", "crop_topk_p",
             "crop_entropy", "crop_p_true", "crop_p_max", "agg_top5", "agg_p")
# Absent from records written before they existed (None there).
OPTIONAL = ("topk_p", "entropy", "crop_topk_p", "crop_entropy")
# Their names in those records.
LEGACY_NAMES = {"topk": "top5", "crop_topk": "crop_top5"}
NAMES = ("view_names", "crop_names", "agg_names")
# Per shard, concatenated on merge: "id: reason" of images the data layer could not read.
SKIPPED = "skipped"
FINAL_FILE = "records.npz"
TOP_K = 5  # Width of each aggregation set's stored mean-softmax top (agg_top5, agg_p).
RECORD_K = 10  # Default top-k kept per view (config field record_k).
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
  topk: np.ndarray
  p_true: np.ndarray
  p_max: np.ndarray
  crop_topk: np.ndarray
  crop_p_true: np.ndarray
  crop_p_max: np.ndarray
  agg_top5: np.ndarray
  agg_p: np.ndarray
  view_names: np.ndarray
  crop_names: np.ndarray
  agg_names: np.ndarray
  # OPTIONAL: None in records from before they existed.
  topk_p: Optional[np.ndarray] = None
  entropy: Optional[np.ndarray] = None
  crop_topk_p: Optional[np.ndarray] = None
  crop_entropy: Optional[np.ndarray] = None
  skipped: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, np.str_))
  source: str = ""  # The file they were read from ("" when built in memory): named by errors.

  def __len__(self) -> int:
    return int(self.index.shape[0])

  @property
  def k(self) -> int:
    """How many classes per view the records keep (top-k)."""
    return int(self.topk.shape[-1])

  @property
  def top1(self) -> np.ndarray:
    return self.topk[..., 0].astype(np.int64)

  def all_views(self):
    """(top1, p_max, p_true, names) over grid views followed by the extra crops."""
    return (np.concatenate([self.topk[..., 0], self.crop_topk[..., 0]], 1).astype(np.int64),
            np.concatenate([self.p_max, self.crop_p_max], 1),
            np.concatenate([self.p_true, self.crop_p_true], 1),
            list(self.view_names) + list(self.crop_names))

  def missing(self) -> list:
    """The OPTIONAL fields these records lack (records from before they existed)."""
    return [f for f in OPTIONAL if getattr(self, f) is None]

  def require(self, fields, what: str) -> None:
    """A UserError naming the records, the missing fields and how to recompute them, if any of `fields` is absent.
    """
    missing = [f for f in fields if getattr(self, f, None) is None]
    if missing:
      raise missing_fields_error(missing, what, os.path.dirname(self.source) if self.source else "")

  def all_views_topk(self):
    """(topk (N, V, k) int64, topk_p (N, V, k) f32, entropy (N, V) f32, p_max (N, V) f32) over grid views
    followed by the extra crops (the aggregators' inputs)."""
    self.require(("topk_p", "entropy", "crop_topk_p", "crop_entropy"), "this aggregator")
    return (np.concatenate([self.topk, self.crop_topk], 1).astype(np.int64),
            np.concatenate([self.topk_p, self.crop_topk_p], 1).astype(np.float32),
            np.concatenate([self.entropy, self.crop_entropy], 1).astype(np.float32),
            np.concatenate([self.p_max, self.crop_p_max], 1).astype(np.float32))

  def mean_predictions(self) -> Dict[str, np.ndarray]:
    """{aggregation set: (N,) argmax of its mean softmax} (-1 where the set is empty)."""
    return {str(n): self.agg_top5[:, a, 0].astype(np.int64) for a, n in enumerate(self.agg_names)}

  def select(self, rows: np.ndarray) -> "Records":
    kw = {f: None if getattr(self, f) is None else getattr(self, f)[rows] for f in PER_IMAGE}
    kw.update({f: getattr(self, f) for f in NAMES + (SKIPPED, "source")})
    return Records(**kw)


def missing_fields_error(missing, what: str, workdir: str = "") -> UserError:
  """The one-line error for records that lack `missing` (OPTIONAL fields): names the workdir and how to recompute."""
  where = f"the sweep in {workdir}" if workdir else "these records"
  return UserError(f"{what} needs {', '.join(missing)}, which {where} lacks (records written before per-view top-k "
                   "probabilities and entropies); recompute them: rerun that sweep's command with a new --workdir")


def _as_arrays(rec: Records) -> Dict[str, np.ndarray]:
  out = {f: np.asarray(getattr(rec, f)) for f in PER_IMAGE + NAMES + (SKIPPED,) if getattr(rec, f) is not None}
  for f in ("ids", SKIPPED) + NAMES:
    out[f] = np.asarray([str(x) for x in out[f]], dtype=np.str_)
  return out


def save(path: str, rec: Records) -> None:
  """Writes records atomically: the file at `path` is either absent or complete."""
  atomic.savez(path, _as_arrays(rec))


def _from_arrays(arrays: Dict[str, np.ndarray], source: str = "") -> Records:
  arrays = dict(arrays)
  for new, old in LEGACY_NAMES.items():
    if new not in arrays and old in arrays:
      arrays[new] = arrays.pop(old)
  kw = {f: arrays.get(f) if f in OPTIONAL else arrays[f] for f in PER_IMAGE + NAMES}
  if SKIPPED in arrays:
    kw[SKIPPED] = arrays[SKIPPED]
  return Records(**kw, source=source)


def load(path: str) -> Records:
  """A sweep's records file (records.npz, or one shard) as Records; a clear error for a missing or bad file.
  Records from before per-view top-k probabilities load with those fields None (module docstring)."""
  arrays = shards.load_arrays(path, [f for f in PER_IMAGE + NAMES if f not in OPTIONAL and f not in LEGACY_NAMES])
  if not any(f in arrays or old in arrays for f, old in LEGACY_NAMES.items()):
    shards.load_arrays(path, PER_IMAGE + NAMES)  # Neither layout: the error names what is missing.
  return _from_arrays(arrays, source=path)


def empty_rows(num_views: int, num_crops: int, num_sets: int, k: int = RECORD_K) -> Dict[str, np.ndarray]:
  """Zero-image record fields (a shard whose images were all unreadable)."""
  t, x, a = num_views, num_crops, num_sets
  return dict(topk=np.zeros((0, t, k), np.int16), topk_p=np.zeros((0, t, k), np.float16),
              entropy=np.zeros((0, t), np.float32), p_true=np.zeros((0, t), np.float32),
              p_max=np.zeros((0, t), np.float32), crop_topk=np.zeros((0, x, k), np.int16),
              crop_topk_p=np.zeros((0, x, k), np.float16), crop_entropy=np.zeros((0, x), np.float32),
              crop_p_true=np.zeros((0, x), np.float32), crop_p_max=np.zeros((0, x), np.float32),
              agg_top5=np.zeros((0, a, TOP_K), np.int16), agg_p=np.zeros((0, a, TOP_K), np.float32))


def merge_shards(workdir: str, n_shards: int, out_path: Optional[str] = None,
                 num_images: Optional[int] = None) -> Records:
  """Joins the sweep's shards 0..n-1 (`shards.merge`) and writes the final `records.npz`."""
  out_path = out_path or os.path.join(workdir, FINAL_FILE)
  rec = _from_arrays(shards.merge(workdir, n_shards, PER_IMAGE, NAMES, num_images=num_images), source=out_path)
  save(out_path, rec)
  return rec
