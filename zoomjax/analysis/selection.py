"""Zoom without an oracle: views chosen on some images and judged on others, and per-image selection
by confidence.

The paper's top-36 number is an oracle twice over: its views are picked on the test images with their labels,
and an image counts as solved when any picked view is right. Here, for budgets k = 1..K:

  oracle_in_sample         union accuracy of the in-sample greedy k views (the paper's curve; k=36 is top-36)
  held_out_upper_bound     union accuracy of k views picked on the other folds (views no longer an oracle)
  held_out_max_confidence  k views picked on the other folds + the label of the most confident of them
  held_out_mean_softmax    k views picked on the other folds + the argmax of their mean softmax
The images are split into seeded folds; for each fold the greedy cover (`analyses.greedy_min_cover`, same tie
order as the sweep's top-36) runs on the other folds and its first k views are judged on the held-out fold.
Once the training images are all covered, the k views are padded with the remaining views by their accuracy on
the training images (a cover shorter than k happens on small sets). The best fixed set is picked on all images
for the budget and method whose held-out accuracy is highest; that accuracy, the maximum over 2 x K held-out
numbers, is slightly optimistic for the chosen budget.

Confidence selection over every view (zoom grid and extra crops), per image: the label of the most confident
view, the p_max-weighted vote and the plain vote, each against the 1-crop.

Mean softmax here runs over the top-1 sparse softmax (p_true would leak the label): each view puts its p_max on
its top-1 class and nothing elsewhere, which makes its argmax the p_max-weighted vote, so the curves need only
what every sweep's records hold, older ones included. An approximation of the dense mean (exact when each view's
top-1 probability dominates the rest of its mass); `sparse_mean_argmax` takes any sparse width and equals the
dense argmax whenever the stored entries hold all of each view's mass. The mean over the stored top-k, entropy
weights, TPT and ZERO over fixed view sets are `zoomjax.analysis.aggregators`.

Intervals: 95 % percentile bootstrap over images (`analyses.bootstrap_interval` for 0/1 outcomes,
`bootstrap_mean_interval` for paired differences; seeded, 1000 draws). They leave out the variation of the
fold split itself.

A sweep stores the result in metrics.json ("held_out"); its report.html draws it, and the study job prints it
(`zoomjax.reports.study.held_out_markdown`).
"""
from typing import Dict, List, Optional, Sequence

import numpy as np

from zoomjax.analysis import metrics as A

__all__ = ["CURVES", "CURVE_LABELS", "NO_ORACLE", "CONFIDENCE_METHODS", "MEAN_SOFTMAX_NOTE", "N_FOLDS", "SEED", "DRAWS",
           "fold_ids", "select_views", "union_curve", "max_confidence_curve", "sparse_mean_argmax",
           "mean_softmax_curve", "held_out_outcomes", "confidence_outcomes", "record_held_out", "headline_intervals"]

CURVES = ("oracle_in_sample", "held_out_upper_bound", "held_out_max_confidence", "held_out_mean_softmax")
CURVE_LABELS = {"oracle_in_sample": "oracle: in-sample greedy k views (upper bound)",
                "held_out_upper_bound": "held-out views, upper bound",
                "held_out_max_confidence": "held-out views + most confident view",
                "held_out_mean_softmax": "held-out views + mean softmax (top-1 sparse)"}
# The no-oracle methods the best fixed set is chosen by.
NO_ORACLE = ("held_out_max_confidence", "held_out_mean_softmax")
CONFIDENCE_METHODS = ("1-crop", "max-prob view", "p_max-weighted vote", "vote")
MEAN_SOFTMAX_NOTE = ("mean over the top-1 sparse softmax (records keep each view's top-1 probability only): "
                     "the p_max-weighted vote")
N_FOLDS = 5
SEED = 0
DRAWS = 1000


def fold_ids(n: int, n_folds: int = N_FOLDS, seed: int = SEED) -> np.ndarray:
  """(n,) fold of each image: a seeded permutation cut into min(n_folds, n) folds whose sizes differ by <= 1."""
  if n_folds < 2:
    raise ValueError(f"held-out selection needs at least 2 folds, got {n_folds}")
  folds = min(n_folds, n)
  out = np.empty(n, np.int64)
  out[np.random.default_rng(seed).permutation(n)] = np.arange(n) % max(folds, 1)
  return out


def select_views(C: np.ndarray, k: int, rank: Optional[np.ndarray] = None) -> List[int]:
  """The first k views of the greedy cover of C (ties to the lowest `rank`), padded once the cover ends with the
  remaining views by accuracy on C (ties to the lowest rank). Returns min(k, T) distinct view indices."""
  t = C.shape[1]
  rank = np.arange(t) if rank is None else np.asarray(rank)
  picks = A.greedy_min_cover(C, rank)[0][:k]
  if len(picks) < k:
    rest = np.setdiff1d(np.arange(t), picks)
    acc = C[:, rest].sum(axis=0)
    rest = rest[np.lexsort((rank[rest], -acc))]
    picks = picks + [int(v) for v in rest[:k - len(picks)]]
  return [int(v) for v in picks]


def union_curve(C: np.ndarray, picks: Sequence[int]) -> np.ndarray:
  """(N, len(picks)) bool: column j-1 is 'solved by one of the first j picks'."""
  return np.logical_or.accumulate(C[:, list(picks)], axis=1)


def max_confidence_curve(C: np.ndarray, p_max: np.ndarray, picks: Sequence[int]) -> np.ndarray:
  """(N, len(picks)) bool: column j-1 is 'the most confident of the first j picks is right' (ties: first pick).
  The same rule as `analyses.most_confident_prediction`, for every prefix at once."""
  picks = list(picks)
  conf, right = p_max[:, picks], C[:, picks]
  out = np.empty(right.shape, bool)
  best_p = np.full(C.shape[0], -np.inf)
  best_c = np.zeros(C.shape[0], bool)
  for j in range(len(picks)):
    better = conf[:, j] > best_p
    best_p = np.where(better, conf[:, j], best_p)
    best_c = np.where(better, right[:, j], best_c)
    out[:, j] = best_c
  return out


def sparse_mean_argmax(ids: np.ndarray, probs: np.ndarray) -> np.ndarray:
  """(N,) argmax over classes of the summed sparse distributions of each image's views.

  ids, probs: (N, V) or (N, V, K): view v puts probs[i, v, k] on class ids[i, v, k] (negative ids are empty
  entries). Ties go to the lowest class id, like np.argmax of the dense mean. -1 for an image with no entries.
  """
  n = ids.shape[0]
  m = int(np.prod(ids.shape[1:]))
  if n == 0 or m == 0:
    return np.full(n, -1, np.int64)
  ids = np.asarray(ids).reshape(n, m).astype(np.int64)
  probs = np.where(ids >= 0, np.asarray(probs, np.float64).reshape(n, m), -np.inf)
  order = np.argsort(ids, axis=1, kind="stable")
  s_ids = np.take_along_axis(ids, order, 1)
  s_p = np.take_along_axis(probs, order, 1)
  start = np.ones((n, m), bool)
  start[:, 1:] = s_ids[:, 1:] != s_ids[:, :-1]
  flat_start = np.flatnonzero(start)  # Segments (image, class) in row-major order.
  totals = np.add.reduceat(s_p.ravel(), flat_start)  # Exact sums in view order per segment.
  seg_cls = s_ids.ravel()[flat_start]
  row_first = np.searchsorted(flat_start, np.arange(n) * m)  # Each row's first segment (every row has one).
  best = np.maximum.reduceat(totals, row_first)
  seg_row = flat_start // m
  idx = np.where(totals == best[seg_row], np.arange(totals.size), totals.size)
  first = np.minimum.reduceat(idx, row_first)  # Classes ascend within a row: the lowest id among the ties.
  return np.where(np.isfinite(best), seg_cls[first], -1)


def mean_softmax_curve(top1: np.ndarray, p_max: np.ndarray, labels: np.ndarray,
                       picks: Sequence[int]) -> np.ndarray:
  """(N, len(picks)) bool: column j-1 is 'the argmax of the top-1 sparse mean softmax of the first j picks is
  right' (see the module docstring)."""
  picks = list(picks)
  out = np.empty((top1.shape[0], len(picks)), bool)
  for j in range(len(picks)):
    v = picks[:j + 1]
    out[:, j] = A.correctness(sparse_mean_argmax(top1[:, v], p_max[:, v])[:, None], labels)[:, 0]
  return out


def held_out_outcomes(C: np.ndarray, top1: np.ndarray, p_max: np.ndarray, labels: np.ndarray, *,
                      budget: int = 36, rank: Optional[np.ndarray] = None, n_folds: int = N_FOLDS,
                      seed: int = SEED) -> Dict:
  """Per-image outcomes of the four curves (module docstring) for budgets 1..min(budget, T).

  C, top1, p_max: (N, T) over the candidate views; labels (N, L). Returns {curve: (N, K) bool, 'folds': (N,),
  'fold_picks': [[view] per fold], 'in_sample_picks': [view]}. Needs N >= 2 (one image per fold at least).
  """
  n, t = C.shape
  if n < 2:
    raise ValueError(f"held-out selection needs at least 2 images, got {n}")
  k = min(int(budget), t)
  folds = fold_ids(n, n_folds, seed)
  in_sample = select_views(C, k, rank)
  out = {"oracle_in_sample": union_curve(C, in_sample)}
  for name in CURVES[1:]:
    out[name] = np.zeros((n, k), bool)
  fold_picks = []
  for f in range(int(folds.max()) + 1):
    test = folds == f
    picks = select_views(C[~test], k, rank)
    fold_picks.append(picks)
    out["held_out_upper_bound"][test] = union_curve(C[test], picks)
    out["held_out_max_confidence"][test] = max_confidence_curve(C[test], p_max[test], picks)
    out["held_out_mean_softmax"][test] = mean_softmax_curve(top1[test], p_max[test], labels[test], picks)
  out.update(folds=folds, fold_picks=fold_picks, in_sample_picks=in_sample)
  return out


def confidence_outcomes(C: np.ndarray, top1: np.ndarray, p_max: np.ndarray, labels: np.ndarray,
                        one_crop: Optional[int]) -> Dict[str, np.ndarray]:
  """Per-image correctness (N,) of per-image selection over every view (no oracle, nothing chosen on labels):
  '1-crop' (column `one_crop`, left out when None), 'max-prob view', 'p_max-weighted vote', 'vote'."""
  n, t = C.shape
  out = {} if one_crop is None else {"1-crop": C[:, one_crop]}
  out["max-prob view"] = C[np.arange(n), np.argmax(p_max, axis=1)] if t else np.zeros(n, bool)
  for name, w in (("p_max-weighted vote", p_max), ("vote", np.ones_like(p_max))):
    out[name] = A.correctness(sparse_mean_argmax(top1, w)[:, None], labels)[:, 0]
  return out


def _interval(correct: np.ndarray, seed: int, draws: int) -> Dict:
  acc = float(np.mean(correct)) if correct.size else None
  return {"accuracy": acc, "ci95": A.bootstrap_interval(acc, int(correct.size), draws=draws, seed=seed)}


def _with_delta(correct: np.ndarray, base: Optional[np.ndarray], seed: int, draws: int) -> Dict:
  out = _interval(correct, seed, draws)
  if base is not None and correct.size:
    diff = correct.astype(np.float64) - base
    out["delta_vs_1crop"] = float(diff.mean())
    out["delta_ci95"] = A.bootstrap_mean_interval(diff, draws=draws, seed=seed)  # Paired, per image.
  return out


def record_held_out(rec, *, budget: int = 36, tie: str = "paper", n_folds: int = N_FOLDS, seed: int = SEED,
                    draws: int = DRAWS) -> Dict:
  """metrics.json's "held_out": the curves with intervals, the best fixed set, confidence selection (JSON-ready).

  Candidate views for the curves: the zoom grid (so oracle_in_sample at k=36 is the sweep's top-36 accuracy);
  for confidence selection: every view, zoom grid and extra crops.
  """
  names = [str(v) for v in rec.view_names]
  transforms = [A.parse_view_name(v) for v in names]
  rank = A.tie_order(transforms, tie)
  top1 = rec.top1
  C = A.correctness(top1, rec.labels)
  n = int(C.shape[0])
  one = names.index(A.ONE_CROP_VIEW) if A.ONE_CROP_VIEW in names else None
  base = None if one is None else C[:, one].astype(np.float64)
  out = {"num_images": n, "num_candidate_views": len(names), "n_folds": min(n_folds, n), "seed": seed,
         "tie_order": tie, "mean_softmax": MEAN_SOFTMAX_NOTE}
  top1_all, p_max_all, _, all_names = rec.all_views()
  C_all = A.correctness(top1_all, rec.labels)
  conf = confidence_outcomes(C_all, top1_all, p_max_all, rec.labels, one)
  out["confidence_selection"] = {m: _with_delta(c, None if m == "1-crop" else base, seed, draws)
                                 for m, c in conf.items()}
  out["confidence_selection_views"] = len(all_names)
  if n < 2 or not names:
    out.update(budgets=[], curves={}, best_fixed=None)
    return out
  res = held_out_outcomes(C, top1, rec.p_max, rec.labels, budget=budget, rank=rank, n_folds=n_folds, seed=seed)
  k = res["oracle_in_sample"].shape[1]
  out["budgets"] = list(range(1, k + 1))
  out["curves"] = {}
  for c in CURVES:
    per_k = [_interval(res[c][:, j], seed, draws) for j in range(k)]
    out["curves"][c] = {"accuracy": [p["accuracy"] for p in per_k], "ci95": [p["ci95"] for p in per_k]}
  out["fold_picks"] = [[names[v] for v in p] for p in res["fold_picks"]]
  # Best budget and method without an oracle (ties: smaller k, then max-confidence).
  score = np.array([[res[m][:, j].mean() for m in NO_ORACLE] for j in range(k)])  # (budget, method)
  kj, mi = (int(v) for v in np.unravel_index(int(np.argmax(score)), score.shape))  # First max: row-major.
  method = NO_ORACLE[mi]
  fixed = select_views(C, kj + 1, rank)  # Chosen on every image: the set to use on new images.
  out["best_fixed"] = dict(method=method, k=kj + 1, views=[names[v] for v in fixed],
                           **_with_delta(res[method][:, kj], base, seed, draws))
  return out


def headline_intervals(held_out: Dict) -> Dict[str, List[float]]:
  """ci95 entries for metrics["ci95"]: the best fixed set and each confidence-selection method."""
  ci = {}
  if held_out.get("best_fixed"):
    ci["held_out/best_fixed"] = held_out["best_fixed"]["ci95"]
  for m, v in (held_out.get("confidence_selection") or {}).items():
    if m != "1-crop" and v.get("ci95") is not None:
      ci[f"confidence/{m}"] = v["ci95"]
  return ci
