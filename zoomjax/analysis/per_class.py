"""Per-class analyses of a sweep: which classes zoom rescues, and where their solving views sit.

Per class: n images, 1-crop accuracy, upper bound (some zoom view right), rescue rate (of the images the 1-crop
gets wrong, the fraction some zoom view gets right) and best anchor (the anchor whose 36 scales solve the most
of the class's images; ties go to the centre, then row-major order).

Multi-label images (ReaL, IN+ReaL, ImageNet-Hard): `by="first"` files each image under its first label only
(each image counted once; in zoomjax's datasets that is the original ImageNet label for IN+ReaL and the
lowest id of the set for ReaL); `by="every"` files it under each of its labels (an image counts in several
classes). Correctness is always judged against the whole label set. Images without a label are left out.
"""
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from zoomjax.analysis import metrics as A

__all__ = ["BY", "TOP", "class_rows", "per_class_table", "rescue_ranking", "record_per_class", "rows_of"]

BY = ("first", "every")
TOP = 10


def class_rows(labels: np.ndarray, by: str = "first") -> Tuple[np.ndarray, np.ndarray]:
  """(rows, classes): image row and class of every (image, class) membership under the `by` rule."""
  labels = np.asarray(labels)
  if by == "first":
    rows = np.flatnonzero(labels[:, 0] >= 0)
    return rows, labels[rows, 0].astype(np.int64)
  if by == "every":
    rows, slot = np.nonzero(labels >= 0)
    return rows, labels[rows, slot].astype(np.int64)
  raise ValueError(f"per-class grouping must be one of {BY}, got {by!r}")


def per_class_table(C: np.ndarray, labels: np.ndarray, transforms: Sequence[A.Transform],
                    one_crop: Optional[int], *, by: str = "first", anchors: int = 3) -> Dict[str, np.ndarray]:
  """Columns over the classes present (ascending id): class, n, one_crop, upper_bound, wrong, rescued,
  rescue_rate (nan where the 1-crop is never wrong), best_anchor ('r_c', '' when no view solves any image).

  C (N, T) over the zoom grid `transforms`; one_crop: its 1-crop column (None: the 1-crop columns are nan).
  """
  rows, cls = class_rows(labels, by)
  classes, inv = np.unique(cls, return_inverse=True)
  k = classes.size
  count = lambda w: np.bincount(inv, weights=np.asarray(w, np.float64)[rows], minlength=k)  # noqa: E731
  n = np.bincount(inv, minlength=k).astype(np.float64)
  solved = A.solved(C)
  with np.errstate(invalid="ignore", divide="ignore"):
    out = {"class": classes, "n": n.astype(np.int64), "upper_bound": count(solved) / n}
    if one_crop is None:
      out.update(one_crop=np.full(k, np.nan), wrong=np.zeros(k, np.int64), rescued=np.zeros(k, np.int64),
                 rescue_rate=np.full(k, np.nan))
    else:
      wrong = ~C[:, one_crop]
      out["one_crop"] = count(C[:, one_crop]) / n
      out["wrong"] = count(wrong).astype(np.int64)
      out["rescued"] = count(wrong & solved).astype(np.int64)
      out["rescue_rate"] = np.where(out["wrong"] > 0, out["rescued"] / np.maximum(out["wrong"], 1), np.nan)
  r = np.array([t[1] for t in transforms])
  c = np.array([t[2] for t in transforms])
  cells = [(i, j) for i in range(anchors) for j in range(anchors)]
  centre = cells.index((anchors // 2, anchors // 2))
  priority = [centre] + [a for a in range(len(cells)) if a != centre]  # Tie order: centre, then row-major.
  per_anchor = np.stack([count(A.solved(C, np.flatnonzero((r == i) & (c == j)))) for i, j in cells], 1)
  best = np.array(priority)[np.argmax(per_anchor[:, priority], axis=1)]
  out["best_anchor"] = np.array([f"{cells[b][0]}_{cells[b][1]}" if per_anchor[q, b] > 0 else ""
                                 for q, b in enumerate(best)])
  return out


def rescue_ranking(table: Dict[str, np.ndarray], top: int = TOP, min_wrong: int = 1) -> Tuple[List[int], List[int]]:
  """(most, least): up to `top` classes by rescue rate among those with >= min_wrong 1-crop mistakes, highest
  (lowest) first; ties go to the class with more mistakes (more evidence), then the lower class id. The most
  rescued are only classes with at least one rescue."""
  ok = np.flatnonzero(table["wrong"] >= max(min_wrong, 1))
  rate, wrong, cls = table["rescue_rate"][ok], table["wrong"][ok], table["class"][ok]
  most = ok[np.lexsort((cls, -wrong, -rate))]
  most = most[table["rescued"][most] > 0][:top]
  least = ok[np.lexsort((cls, -wrong, rate))][:top]
  return [int(table["class"][i]) for i in most], [int(table["class"][i]) for i in least]


def _json_col(v: np.ndarray) -> list:
  if v.dtype.kind == "f":
    return [None if x != x else round(float(x), 6) for x in v]
  return [x.item() if hasattr(x, "item") else x for x in v.tolist()]


def record_per_class(rec, *, by: str = "first", anchors: int = 3, top: int = TOP, min_wrong: int = 1) -> Dict:
  """metrics.json's "per_class": columnar table (one entry per class present), the most and least rescued
  classes, and how multi-label images were filed (JSON-ready)."""
  names = [str(v) for v in rec.view_names]
  transforms = [A.parse_view_name(v) for v in names]
  C = A.correctness(rec.top1, rec.labels)
  one = names.index(A.ONE_CROP_VIEW) if A.ONE_CROP_VIEW in names else None
  table = per_class_table(C, rec.labels, transforms, one, by=by, anchors=anchors)
  most, least = rescue_ranking(table, top, min_wrong)
  multi = int(((np.asarray(rec.labels) >= 0).sum(axis=1) > 1).sum())
  return {"by": by, "num_classes": int(table["class"].size), "num_multi_label_images": multi,
          "num_unlabelled_images": int((np.asarray(rec.labels)[:, 0] < 0).sum()) if len(rec) else 0,
          "min_wrong": min_wrong, "columns": {k: _json_col(v) for k, v in table.items()},
          "most_rescued": most, "least_rescued": least}


def rows_of(per_class: Dict, classes: Sequence[int]) -> List[Dict]:
  """The table rows (dicts of the columns) of the given class ids, in that order."""
  cols = per_class["columns"]
  where = {c: i for i, c in enumerate(cols["class"])}
  return [{k: v[where[c]] for k, v in cols.items()} for c in classes if c in where]
