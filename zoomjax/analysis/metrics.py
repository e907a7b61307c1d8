"""Every analysis of the zoom study (docs/study.md §2) as pure numpy functions over sweep records.

The central object is the boolean correctness matrix `C` of shape (N images, T views): C[i, t] is true iff the
top-1 prediction of view t on image i is one of the image's labels (`zoomjax.data.label_space.is_correct`, so
multi-label datasets such as ReaL, IN+ReaL and ImageNet-Hard need nothing special). The paper writes it C[t, i];
we keep images first because records are stored image-major.

Views are described by `transforms`: a list of (S, row, col) triples in the sweep's view order, with names
'LOC:{row}_{col}_Size:{S}' as in the authors' notebooks.
"""
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from zoomjax.data.label_space import is_correct
from zoomjax.zoom import parse_view_name, view_name  # noqa: F401  (re-exported: analyses name views)

__all__ = ["ONE_CROP_VIEW", "PAPER_SCALE_INSERTION_ORDER", "Transform", "parse_view_name", "view_name", "correctness",
           "view_index", "one_crop_accuracy", "solved", "upper_bound", "tie_order", "greedy_min_cover",
           "union_accuracy", "coverage_curve", "anchor_upper_bound", "accuracy_vs_scale", "zoom_groups", "disentangle",
           "aggregation_sets", "most_confident_prediction", "aggregation_accuracy", "top36_anchor_counts", "best_view",
           "unsolved_by_all", "summary", "bootstrap_interval", "bootstrap_mean_interval", "with_intervals",
           "record_metrics", "nan_to_none"]

ONE_CROP_VIEW = "LOC:1_1_Size:256"

# Not the grid (that is `zoomjax.zoom.PAPER_SCALES`, sorted): the same 36 scales in the order the authors' result
# dict was filled (27 hand-picked sizes, then the new values of int(linspace(10, 1024, 10))), which only decides
# greedy ties. Their correctness-matrix rows were the per-anchor files concatenated, each in this scale order;
# greedy ties go to the first row, so the `paper` tie order (`tie_order`) reproduces their picks.
PAPER_SCALE_INSERTION_ORDER = (10, 16, 32, 48, 64, 96, 128, 192, 224, 240, 256, 288, 320, 384, 448, 512, 576,
                               640, 664, 672, 680, 690, 700, 720, 768, 832, 896, 122, 235, 348, 460, 573,
                               686, 798, 911, 1024)

Transform = Tuple[int, int, int]


def correctness(pred: np.ndarray, labels: np.ndarray) -> np.ndarray:
  """pred (N, T) 1000-way top-1 ids, labels (N, L) -1 padded -> C (N, T) bool via the data layer's rule."""
  pred = np.asarray(pred)
  labels = np.asarray(labels)
  return np.asarray(is_correct(pred, np.broadcast_to(labels[:, None, :], pred.shape + labels.shape[-1:])))


def _mean(x: np.ndarray) -> float:
  return float(np.mean(x)) if x.size else float("nan")


def view_index(names: Sequence[str], name: str) -> int:
  """The column of view `name` (e.g. 'LOC:1_1_Size:256') in a sweep's views; an error naming the grid's range."""
  names = list(names)
  if name not in names:
    raise ValueError(f"view {name!r} is not in the sweep's grid; its views run {names[0]} .. {names[-1]}")
  return names.index(name)


def one_crop_accuracy(C: np.ndarray, names: Sequence[str], view: str = ONE_CROP_VIEW) -> float:
  """Accuracy of the paper's standard 1-crop, the zoom view LOC:1_1_Size:256 (docs/study.md §1.1, §2.1)."""
  return _mean(C[:, view_index(names, view)])


def solved(C: np.ndarray, views: Optional[Sequence[int]] = None) -> np.ndarray:
  """(N,) bool: image solved by at least one of `views` (all views when None)."""
  if views is not None:
    C = C[:, list(views)]
  return C.any(axis=1) if C.shape[1] else np.zeros(C.shape[0], bool)


def upper_bound(C: np.ndarray, views: Optional[Sequence[int]] = None) -> float:
  """'Optimal zoom' accuracy: fraction of images that at least one view classifies correctly."""
  return _mean(solved(C, views))


def tie_order(transforms: Sequence[Transform], mode: str = "paper") -> np.ndarray:
  """Priority of views when greedy picks tie (lower rank wins).

  `grid`: the sweep's own view order (scale-major). `paper`: the authors' matrix row order as far as it can
  be inferred — anchor-major with anchors in row-major (r, c) order, then scales in their insertion order
  (scales outside the paper's list after those, ascending). The anchor order of the authors' concatenation is
  not recorded anywhere, so N=36 numbers may still differ from theirs by a tie or two.
  """
  if mode == "grid":
    return np.arange(len(transforms))
  if mode != "paper":
    raise ValueError(f"tie order must be 'paper' or 'grid', got {mode!r}")
  pos = {s: i for i, s in enumerate(PAPER_SCALE_INSERTION_ORDER)}
  keys = [(r, c, pos.get(s, len(pos)), s) for s, r, c in transforms]
  order = sorted(range(len(transforms)), key=lambda i: keys[i])
  rank = np.empty(len(transforms), np.int64)
  rank[order] = np.arange(len(transforms))
  return rank


def greedy_min_cover(C: np.ndarray, rank: Optional[np.ndarray] = None) -> Tuple[List[int], List[int]]:
  """Greedy set cover of the solvable images by views (docs/study.md §2.1/§2.3).

  Each step picks the view that solves the most still-uncovered images; ties go to the lowest `rank`
  (default: view order). Stops when every image that any view solves is covered.
  Returns (picked view indices in pick order, newly covered images per pick).
  """
  n, t = C.shape
  rank = np.arange(t) if rank is None else np.asarray(rank)
  by_rank = np.argsort(rank, kind="stable")  # Column permutation: argmax then returns the first in rank.
  Cr = C[:, by_rank]
  uncovered = Cr.any(axis=1)
  picks, gains = [], []
  while uncovered.any():
    counts = Cr[uncovered].sum(axis=0)
    j = int(np.argmax(counts))
    if counts[j] == 0:
      break
    picks.append(int(by_rank[j]))
    gains.append(int(counts[j]))
    uncovered &= ~Cr[:, j]
  return picks, gains


def union_accuracy(C: np.ndarray, views: Sequence[int]) -> float:
  """Accuracy of a set of views with an oracle: the fraction of images at least one of `views` solves."""
  return upper_bound(C, views)


def coverage_curve(gains: Sequence[int], num_images: int) -> np.ndarray:
  """Cumulative accuracy after each greedy pick (the 'coverage curve')."""
  return np.cumsum(np.asarray(gains, np.float64)) / max(num_images, 1)


def anchor_upper_bound(C: np.ndarray, transforms: Sequence[Transform], anchors: int = 3) -> np.ndarray:
  """(anchors, anchors) fraction of images solved by some scale at anchor (r, c); rows top to bottom (§2.6a)."""
  out = np.full((anchors, anchors), np.nan)
  rows = np.array([t[1] for t in transforms])
  cols = np.array([t[2] for t in transforms])
  for r in range(anchors):
    for c in range(anchors):
      views = np.flatnonzero((rows == r) & (cols == c))
      if views.size:
        out[r, c] = upper_bound(C, views)
  return out


def accuracy_vs_scale(C: np.ndarray, transforms: Sequence[Transform], anchors: int = 3) -> Dict[str, list]:
  """Per scale S: best of the anchors (solved by any anchor at S) and the centre anchor alone (§2.5).

  The paper's 'waterfall' plot shows best-of-9 for S > 100 and the centre plot S in 16..690; we return every
  scale of the grid and leave the choice of range to the plot.
  """
  centre = anchors // 2
  scales = sorted({t[0] for t in transforms})
  best, cen = [], []
  for s in scales:
    at_s = [i for i, t in enumerate(transforms) if t[0] == s]
    best.append(upper_bound(C, at_s))
    ci = [i for i in at_s if transforms[i][1] == centre and transforms[i][2] == centre]
    cen.append(_mean(C[:, ci[0]]) if ci else float("nan"))
  return {"scales": scales, "best_of_anchors": best, "centre": cen}


def zoom_groups(transforms: Sequence[Transform], crop: int = 224) -> Dict[str, np.ndarray]:
  """View indices of the zoom-in (S > crop), zoom-out (S < crop) and zoom-224 (S == crop) groups."""
  s = np.array([t[0] for t in transforms])
  return {"in": np.flatnonzero(s > crop), "out": np.flatnonzero(s < crop), "224": np.flatnonzero(s == crop)}


def disentangle(C: np.ndarray, transforms: Sequence[Transform], cover: Sequence[int],
                exclusive_cover: Optional[Sequence[int]] = None, crop: int = 224) -> Dict[str, float]:
  """Zoom-in vs zoom-out vs zoom-224 (docs/study.md §2.7).

  ub_<g>: union accuracy of the group's views that are in the model's own min-cover `cover`.
  excl_<g>: fraction of images solved by group g and by neither other group, where each group is restricted
  to the views of `exclusive_cover`. The authors' notebook (variable shadowing) used CLIP ViT-L/14's min-cover
  there for every model; pass that cover (view indices into this grid) to reproduce the quirk. Default: the
  model's own cover, the evidently intended definition.
  """
  groups = zoom_groups(transforms, crop)
  own = set(int(v) for v in cover)
  excl = own if exclusive_cover is None else set(int(v) for v in exclusive_cover)
  out = {}
  for g, views in groups.items():
    out[f"ub_{g}"] = upper_bound(C, [v for v in views if v in own])
  solved_by = {g: solved(C, [v for v in views if v in excl]) for g, views in groups.items()}
  for g in groups:
    others = np.zeros(C.shape[0], bool)
    for h in groups:
      if h != g:
        others |= solved_by[h]
    out[f"excl_{g}"] = _mean(solved_by[g] & ~others)
  return out


def aggregation_sets(transforms: Sequence[Transform], crop: int = 224) -> Dict[str, np.ndarray]:
  """The zoom view sets aggregated without an oracle (§2.8): zoom-in, zoom-out, zoom-224 (view indices)."""
  g = zoom_groups(transforms, crop)
  return {"zoom-in": g["in"], "zoom-out": g["out"], "zoom-224": g["224"]}


def most_confident_prediction(top1: np.ndarray, p_max: np.ndarray, views: Sequence[int]) -> np.ndarray:
  """(N,) label of the single most confident view (highest max softmax) among `views`; ties -> first view."""
  views = np.asarray(views, np.int64)
  best = np.argmax(p_max[:, views], axis=1)
  return top1[np.arange(top1.shape[0]), views[best]]


def aggregation_accuracy(top1: np.ndarray, p_max: np.ndarray, labels: np.ndarray,
                         sets: Dict[str, Sequence[int]], mean_pred: Dict[str, np.ndarray]) -> Dict[str, float]:
  """Accuracy of '<set> max' (label of the most confident view) and '<set> mean' (argmax of the mean softmax).

  top1/p_max: (N, V) over every view the sets index (zoom grid plus extra crops); mean_pred[set]: (N,) argmax of
  the set's mean masked softmax, computed during the sweep (the full softmax is never stored).
  """
  out = {}
  for name, views in sets.items():
    if len(views) == 0:
      continue
    pred = most_confident_prediction(top1, p_max, views)
    out[f"{name} max"] = _mean(correctness(pred[:, None], labels)[:, 0])
    if name in mean_pred:
      out[f"{name} mean"] = _mean(correctness(np.asarray(mean_pred[name])[:, None], labels)[:, 0])
  return out


def top36_anchor_counts(cover: Sequence[int], transforms: Sequence[Transform], k: int = 36,
                        anchors: int = 3) -> np.ndarray:
  """(anchors, anchors) counts of the anchors among the first k greedy picks (docs/study.md §2.3)."""
  counts = np.zeros((anchors, anchors), np.int64)
  for v in list(cover)[:k]:
    _, r, c = transforms[v]
    counts[r, c] += 1
  return counts


def best_view(C: np.ndarray, p_true: np.ndarray) -> np.ndarray:
  """(N,) per image the correct view with the highest true-label probability (-1 if none is correct)."""
  score = np.where(C, p_true, -np.inf)
  best = np.argmax(score, axis=1)
  return np.where(C.any(axis=1), best, -1)


def unsolved_by_all(solved_per_model: Dict[str, Dict[str, bool]]) -> List[str]:
  """Image ids that no model solves, over the images every model saw.

  solved_per_model: {model/workdir: {image id: solved by some view}}. Images missing from some model's records
  are ignored (reported by the caller), so partial sweeps never count an image as unsolved by accident.
  """
  if not solved_per_model:
    return []
  common = set.intersection(*(set(d) for d in solved_per_model.values()))
  return sorted(i for i in common if not any(d[i] for d in solved_per_model.values()))


def summary(C: np.ndarray, transforms: Sequence[Transform], *, k: int = 36, tie: str = "paper",
            crop: int = 224, anchors: int = 3) -> Dict:
  """The headline numbers of one (model, dataset) sweep (fractions, not percent)."""
  names = [view_name(t) for t in transforms]
  cover, gains = greedy_min_cover(C, tie_order(transforms, tie))
  out = {
      "num_images": int(C.shape[0]),
      "num_views": int(C.shape[1]),
      "upper_bound_accuracy": upper_bound(C),
      "top36_accuracy": union_accuracy(C, cover[:k]),
      "min_cover_size": len(cover),
      "min_cover": [names[v] for v in cover],
      "min_cover_gains": gains,
      "tie_order": tie,
      "anchor_upper_bound": anchor_upper_bound(C, transforms, anchors).tolist(),
      "top36_anchor_counts": top36_anchor_counts(cover, transforms, k, anchors).tolist(),
      "accuracy_vs_scale": accuracy_vs_scale(C, transforms, anchors),
      "disentangling": disentangle(C, transforms, cover, crop=crop),
  }
  out["one_crop_accuracy"] = one_crop_accuracy(C, names) if ONE_CROP_VIEW in names else None
  return out


def bootstrap_interval(fraction: Optional[float], n: int, *, draws: int = 1000, seed: int = 0,
                       level: float = 0.95) -> Optional[List[float]]:
  """[lo, hi] percentile bootstrap interval of a per-image 0/1 mean (an accuracy) over `n` images.

  Resampling the n images with replacement makes the number of correct ones Binomial(n, fraction), so the
  seeded draws are taken from that distribution directly: the same interval as resampling, in O(draws).
  """
  if fraction is None or n <= 0 or fraction != fraction:
    return None
  means = np.random.default_rng(seed).binomial(n, fraction, draws) / n
  tail = 100 * (1 - level) / 2
  return [float(np.percentile(means, tail)), float(np.percentile(means, 100 - tail))]


def bootstrap_mean_interval(values: np.ndarray, *, draws: int = 1000, seed: int = 0,
                            level: float = 0.95) -> Optional[List[float]]:
  """[lo, hi] percentile bootstrap interval of the mean of per-image `values` (images resampled with replacement,
  seeded; in chunks, so 50,000 images x 1000 draws stays small). For 0/1 values `bootstrap_interval` is the same
  interval without the resampling."""
  values = np.asarray(values, np.float64).reshape(-1)
  if values.size == 0:
    return None
  rng = np.random.default_rng(seed)
  chunk = max(1, 2_000_000 // values.size)
  means = np.concatenate([values[rng.integers(0, values.size, (min(chunk, draws - s), values.size))].mean(1)
                          for s in range(0, draws, chunk)])
  tail = 100 * (1 - level) / 2
  return [float(np.percentile(means, tail)), float(np.percentile(means, 100 - tail))]


def with_intervals(metrics: Dict, n: int, keys: Sequence[str] = ("one_crop_accuracy", "upper_bound_accuracy",
                                                                  "top36_accuracy")) -> Dict:
  """Adds `ci95` ({key: [lo, hi]}, aggregation methods under `aggregation/<name>`) for the headline accuracies."""
  ci = {k: bootstrap_interval(metrics.get(k), n) for k in keys if metrics.get(k) is not None}
  for name, acc in (metrics.get("aggregation") or {}).items():
    if acc is not None:
      ci[f"aggregation/{name}"] = bootstrap_interval(acc, n)
  metrics["ci95"] = ci
  return metrics


def record_metrics(rec, *, k: int = 36, tie: str = "paper", crop: int = 224, anchors: int = 3) -> Dict:
  """Every analysis of one sweep from its `zoomjax.analysis.records.Records` (fractions; JSON-ready)."""
  transforms = [parse_view_name(str(n)) for n in rec.view_names]
  C = correctness(rec.top1, rec.labels)
  out = summary(C, transforms, k=k, tie=tie, crop=crop, anchors=anchors)
  top1, p_max, _, names = rec.all_views()
  t = len(transforms)
  sets = {name: list(v) for name, v in aggregation_sets(transforms, crop).items()}
  crop_names = [str(n) for n in rec.crop_names]
  if crop_names:
    sets["5-crop"] = [t + i for i, n in enumerate(crop_names) if n.startswith("5CROP")]
    sets["10-crop"] = list(range(t, t + len(crop_names)))
  out["aggregation"] = aggregation_accuracy(top1, p_max, rec.labels, sets, rec.mean_predictions())
  if out["one_crop_accuracy"] is not None:
    out["aggregation"]["1-crop"] = out["one_crop_accuracy"]
  out["solved_fraction_by_group"] = {g: upper_bound(C, v) for g, v in zoom_groups(transforms, crop).items()}
  return with_intervals(out, int(C.shape[0]))


def nan_to_none(x):
  """JSON has no NaN: analyses of empty groups become null."""
  if isinstance(x, float) and x != x:
    return None
  if isinstance(x, dict):
    return {k: nan_to_none(v) for k, v in x.items()}
  if isinstance(x, (list, tuple)):
    return [nan_to_none(v) for v in x]
  return x
