"""Compact per-image x per-view sweep records, stored as atomic per-shard `.npz` files.

Why compact: the authors pickled the full softmax of every view (about 64 GB for ImageNet val at 324 views).
Every analysis of the study needs only, per image and view, the top-1 id (plus top-5 for inspection), the
probability of the true label(s) and the max probability. The one exception, aggregation by mean softmax, is
reduced on device during the sweep: per image and aggregation set we keep the top-5 ids and probabilities of
the set's mean masked softmax (its argmax is the aggregated prediction).

Shard k holds the images with global index in [k * shard_size, (k + 1) * shard_size), independent of the number
of processes, so any process layout resumes any other's partial run. A shard file appears (os.replace of a
complete temporary file) only when all its images are done; resuming skips shards whose file exists.

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
import tempfile
from typing import Dict, List, Optional, Sequence

import numpy as np

PER_IMAGE = ("index", "ids", "labels", "top5", "p_true", "p_max", "crop_top5", "crop_p_true", "crop_p_max",
             "agg_top5", "agg_p")
NAMES = ("view_names", "crop_names", "agg_names")
# Per shard, concatenated on merge: "id: reason" of images the data layer could not read.
SKIPPED = "skipped"
FINAL_FILE = "records.npz"
TOP_K = 5
# Aggregation sets (paper.md §2.8); zoom sets are defined by the scale relative to the crop size.
AGG_SETS = ("zoom-in", "zoom-out", "zoom-224", "5-crop", "10-crop")
# The extra views: torchvision Resize(256) + TenCrop(224) = FiveCrop, then FiveCrop of the flipped image.
CROP_NAMES = tuple(f"5CROP:{p}_Size:256" for p in ("tl", "tr", "bl", "br", "center")) + tuple(
    f"10CROP:flip_{p}_Size:256" for p in ("tl", "tr", "bl", "br", "center"))
SHARD_DIR = "shards"


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


def shard_path(workdir: str, k: int) -> str:
  return os.path.join(workdir, SHARD_DIR, f"shard_{k:06d}.npz")


def num_shards(num_images: int, shard_size: int) -> int:
  return -(-num_images // shard_size)


def shard_range(k: int, shard_size: int, num_images: int) -> range:
  """Global image indices of shard k."""
  return range(k * shard_size, min((k + 1) * shard_size, num_images))


def process_shards(n_shards: int, process_index: int, process_count: int) -> List[int]:
  """Round-robin assignment of shards to processes."""
  return list(range(process_index, n_shards, process_count))


def _atomic_savez(path: str, arrays: Dict[str, np.ndarray]) -> None:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".tmp-", suffix=".npz")
  try:
    with os.fdopen(fd, "wb") as f:
      np.savez(f, **arrays)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise


def _as_arrays(rec: Records) -> Dict[str, np.ndarray]:
  out = {f: np.asarray(getattr(rec, f)) for f in PER_IMAGE + NAMES + (SKIPPED,)}
  for f in ("ids", SKIPPED) + NAMES:
    out[f] = np.asarray([str(x) for x in out[f]], dtype=np.str_)
  return out


def save(path: str, rec: Records) -> None:
  """Writes records atomically: the file at `path` is either absent or complete."""
  _atomic_savez(path, _as_arrays(rec))


def load(path: str) -> Records:
  try:
    with np.load(path, allow_pickle=False) as z:
      missing = [f for f in PER_IMAGE + NAMES if f not in z.files]
      if missing:
        raise ValueError(f"{path} is not a zoomjax records file (missing {missing})")
      kw = {f: z[f] for f in PER_IMAGE + NAMES}
      if SKIPPED in z.files:
        kw[SKIPPED] = z[SKIPPED]
      return Records(**kw)
  except (OSError, EOFError, ValueError, KeyError) as e:
    if isinstance(e, ValueError) and "not a zoomjax records file" in str(e):
      raise
    raise ValueError(f"cannot read records file {path}: {e}; delete it to recompute that shard") from e


def concatenate(parts: Sequence[Records]) -> Records:
  """Joins shard records in order; refuses shards made with different grids, crops or aggregation sets."""
  if not parts:
    raise ValueError("no records to concatenate")
  first = parts[0]
  for p in parts[1:]:
    for f in NAMES:
      if list(getattr(p, f)) != list(getattr(first, f)):
        raise ValueError(f"shards disagree on {f}: {list(getattr(first, f))[:3]}... vs "
                         f"{list(getattr(p, f))[:3]}...; the workdir mixes different sweeps")
  width = max(p.labels.shape[1] for p in parts)
  kw = {}
  for f in PER_IMAGE:
    arrs = [getattr(p, f) for p in parts]
    if f == "labels":
      arrs = [np.pad(a, ((0, 0), (0, width - a.shape[1])), constant_values=-1) for a in arrs]
    kw[f] = np.concatenate(arrs, axis=0)
  kw.update({f: getattr(first, f) for f in NAMES})
  kw[SKIPPED] = np.concatenate([np.asarray(p.skipped, np.str_) for p in parts])
  return Records(**kw)


def merge_shards(workdir: str, n_shards: int, out_path: Optional[str] = None) -> Records:
  """Loads shards 0..n-1 in order, checks the global indices are contiguous, writes the final file."""
  missing = [k for k in range(n_shards) if not os.path.exists(shard_path(workdir, k))]
  if missing:
    raise FileNotFoundError(f"{len(missing)} shard(s) missing in {workdir}/{SHARD_DIR}, e.g. "
                            f"{shard_path(workdir, missing[0])}; rerun the sweep with the same workdir")
  rec = concatenate([load(shard_path(workdir, k)) for k in range(n_shards)])
  if np.any(np.diff(rec.index) <= 0):
    raise ValueError(f"shards in {workdir} are not in increasing image order")
  save(out_path or os.path.join(workdir, FINAL_FILE), rec)
  return rec


def load_available(workdir: str) -> Records:
  """Every shard written so far, in order (a look at a sweep that is still running; never written back)."""
  shard_dir = os.path.join(workdir, SHARD_DIR)
  names = sorted(f for f in os.listdir(shard_dir) if f.startswith("shard_") and f.endswith(".npz")) \
      if os.path.isdir(shard_dir) else []
  if not names:
    raise FileNotFoundError(f"no shards in {shard_dir} yet")
  return concatenate([load(os.path.join(shard_dir, n)) for n in names])
