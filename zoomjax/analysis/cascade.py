"""A cascade of zoom views under a view budget (docs/study.md §2.10): views one by one per image, stop once sure.

The fixed-k curves of `zoomjax.analysis.selection` spend k views on every image. A cascade spends views where
they help: views are evaluated in a learned order, one at a time per image, and the image stops at the first
view where a confidence rule fires:

  max_prob   the view just evaluated has max probability >= tau; the prediction is its top-1 label.
  agree      m of the views evaluated so far share a top-1 label; the prediction is that label.

An image on which the rule has not fired after `cap` views stops there and takes the label of the most
confident view seen (highest max probability, ties to the earlier view): with tau above every probability the
cascade is the fixed-k "held-out views + most confident view" curve, so the cascade's family contains it.

Everything is chosen without the test labels, exactly as the held-out selection curves are: the images are split
into the same seeded folds (`selection.fold_ids`); for each fold the view order is the greedy cover of the other
folds (`selection.select_views`: the held-out curves' own picks), and for each view budget B the rule, its
parameter (tau among quantiles of the other folds' max probabilities, or m) and the cap are those with the
highest accuracy on the other folds among the settings whose mean number of views there is <= B (ties: fewer
views, then max_prob before agree, then the lower parameter and cap). The chosen cascade then runs on the
held-out fold. The result per budget: accuracy (with a 95 % bootstrap interval) and the mean number of views per
image actually spent on the held-out images (it may exceed B slightly: B binds on the other folds).

All settings are scored at once, without a loop over images: the stop index of every image under every tau (or
m) comes from running maxima over the (images x views) arrays, and every cap follows from it.
"""
from typing import Dict, List, Optional, Sequence

import numpy as np

from zoomjax.analysis import metrics as A
from zoomjax.analysis import selection

__all__ = ["RULES", "BUDGETS", "HEADLINE_BUDGETS", "MAX_VIEWS", "N_QUANTILES", "stop_index", "thresholds",
           "score_settings", "cascade_outcomes", "record_cascade"]

RULES = ("max_prob", "agree")
# Budgets (mean views per image) of the curve; HEADLINE_BUDGETS are reported as "the best point under B".
BUDGETS = (1, 1.5, 2, 3, 4, 6, 8, 12, 16, 24, 32)
HEADLINE_BUDGETS = (1, 2, 4, 8, 16)
MAX_VIEWS = 32  # Length of the learned order: the largest cap.
N_QUANTILES = 40  # tau candidates: quantiles 0, 1/40, ..., 1 of the training max probabilities (and +inf).


def stop_index(rule: str, top1: np.ndarray, p_max: np.ndarray, params: Sequence[float]) -> np.ndarray:
  """(N, P) 0-based index of the view at which each image stops under each parameter; K = never fires.

  top1, p_max: (N, K) the images' views in cascade order. max_prob: the first j with p_max[:, j] >= tau;
  agree: the first j at which top1[:, j] has been seen m times among views 0..j.
  """
  n, k = p_max.shape
  params = np.asarray(params, np.float64)
  if rule == "max_prob":
    running = np.maximum.accumulate(p_max.astype(np.float64), axis=1)
  elif rule == "agree":
    same = top1[:, :, None] == top1[:, None, :]  # (N, j, j'): view j' has view j's label.
    counts = np.sum(same & np.tri(k, dtype=bool)[None], axis=2)  # Votes of view j's label among views 0..j.
    running = np.maximum.accumulate(counts, axis=1).astype(np.float64)
  else:
    raise ValueError(f"cascade rule must be one of {RULES}, got {rule!r}")
  # Running maxima never decrease: the stop index is the number of views before the first one at the parameter.
  out = np.empty((n, params.size), np.int64)
  for lo in range(0, params.size, 8):  # Chunks bound the (N, K, 8) temporary.
    out[:, lo:lo + 8] = np.sum(running[:, :, None] < params[None, None, lo:lo + 8], axis=1)
  return out


def thresholds(p_max: np.ndarray, n_quantiles: int = N_QUANTILES) -> np.ndarray:
  """tau candidates: the distinct quantiles 0, 1/n, ..., 1 of `p_max` (float32 values, as stored) and +inf."""
  q = np.quantile(np.asarray(p_max, np.float64).ravel(), np.linspace(0, 1, n_quantiles + 1), method="lower")
  return np.r_[np.unique(q), np.inf]


def _fallback(correct: np.ndarray, p_max: np.ndarray) -> np.ndarray:
  """(N, K): column c-1 is 'the most confident of views 0..c-1 is right' (ties: the earlier view)."""
  return selection.max_confidence_curve(correct, p_max, list(range(correct.shape[1])))


def _outcomes(first: np.ndarray, stop_right: np.ndarray, fallback: np.ndarray, cap: int):
  """Per image (right, views) of one setting: stop index `first` (N,), capped at `cap` views."""
  fired = first < cap
  right = np.where(fired, stop_right, fallback[:, cap - 1])
  return right, np.minimum(first + 1, cap)


def score_settings(first: np.ndarray, correct: np.ndarray, fallback: np.ndarray):
  """(accuracy (P, K), mean views (P, K)) of every parameter (stop indices `first` (N, P)) and cap 1..K.

  An image stopping at view f < cap scores correct[f], any other image the fallback of the cap: the sums come
  from per-stop-index histograms (a one-hot matmul for the fallbacks), not from (N, P, K) arrays.
  """
  n, k = correct.shape
  p = first.shape[1]
  stop_right = (np.take_along_axis(correct, np.minimum(first, k - 1), 1) & (first < k)).astype(np.float64)
  caps = np.arange(1, k + 1)
  stops = np.arange(k + 1)
  fired = (stops[:, None] < caps[None, :]).astype(np.float64)  # (K + 1, K): stop index f < cap c.
  spent = np.minimum(stops[:, None] + 1, caps[None, :]).astype(np.float64)  # Views an image stopping at f uses.
  fb = fallback.astype(np.float32)  # 0/1 sums of up to 2^24 images are exact in float32.
  fb_total = fallback.sum(axis=0).astype(np.float64)
  acc = np.full((p, k), np.nan)
  views = np.full((p, k), np.nan)
  if n == 0:
    return acc, views
  for lo in range(0, p, 8):
    q = min(8, p - lo)
    onehot = (first[:, lo:lo + q, None] == stops[None, None, :]).reshape(n, -1).astype(np.float32)
    by_stop = (onehot.T @ fb).astype(np.float64).reshape(q, k + 1, k)  # [j, f, c-1]: fallbacks of stop f.
    for jj in range(q):
      j = lo + jj
      count = np.bincount(first[:, j], minlength=k + 1).astype(np.float64)
      right = np.bincount(first[:, j], weights=stop_right[:, j], minlength=k + 1)
      acc[j] = (right @ fired + fb_total - np.sum(fired * by_stop[jj], axis=0)) / n
      views[j] = count @ spent / n
  return acc, views


def _choose(acc: Dict[str, np.ndarray], views: Dict[str, np.ndarray], budget: float):
  """(rule, parameter row, cap) with the best accuracy among those within `budget` mean views (module ties)."""
  best = None
  for r, rule in enumerate(RULES):
    ok = views[rule] <= budget + 1e-9
    if not ok.any():
      continue
    a = np.where(ok, acc[rule], -np.inf)
    # Highest accuracy, then fewest views, then lowest parameter row and cap (row-major order).
    key = np.lexsort((np.where(ok, views[rule], np.inf).ravel(), -a.ravel()))[0]
    j, c = np.unravel_index(key, a.shape)
    cand = (-a[j, c], views[rule][j, c], r, int(j), int(c))
    if best is None or cand < best:
      best = cand
  if best is None:
    return None
  return RULES[best[2]], best[3], best[4] + 1


def cascade_outcomes(C: np.ndarray, top1: np.ndarray, p_max: np.ndarray, *, budgets: Sequence[float] = BUDGETS,
                     max_views: int = MAX_VIEWS, rank: Optional[np.ndarray] = None,
                     fold_picks: Optional[Sequence[Sequence[int]]] = None, n_folds: int = selection.N_FOLDS,
                     seed: int = selection.SEED) -> Dict:
  """Held-out cascade outcomes per image for each budget (module docstring).

  C, top1, p_max: (N, V) over the candidate views. fold_picks: each fold's view order (e.g. the held-out
  curves' picks, to reuse their greedy covers); computed with `selection.select_views` when None.
  Returns {'budgets': [B], 'right': (N, len(B)) bool, 'views': (N, len(B)) int, 'settings': [[per fold
  {'rule', 'param', 'cap'} or None] per budget], 'folds': (N,), 'fold_picks': [[view]], 'max_views': K}.
  Needs N >= 2.
  """
  n, v = C.shape
  if n < 2:
    raise ValueError(f"the cascade's held-out tuning needs at least 2 images, got {n}")
  k = min(int(max_views), v)
  folds = selection.fold_ids(n, n_folds, seed)
  budgets = [b for b in budgets if b <= k] or [1]
  right = np.zeros((n, len(budgets)), bool)
  views = np.zeros((n, len(budgets)), np.int64)
  settings: List[List] = [[] for _ in budgets]
  picks_out = []
  for f in range(int(folds.max()) + 1):
    test = folds == f
    picks = list(fold_picks[f])[:k] if fold_picks is not None else selection.select_views(C[~test], k, rank)
    picks_out.append([int(p) for p in picks])
    c, t1, pm = C[:, picks], top1[:, picks], p_max[:, picks]
    fb = _fallback(c, pm)
    params = {"max_prob": thresholds(pm[~test]), "agree": np.arange(2, c.shape[1] + 1, dtype=np.float64)}
    first = {r: stop_index(r, t1, pm, params[r]) for r in RULES}
    acc, spent = {}, {}
    for r in RULES:
      acc[r], spent[r] = score_settings(first[r][~test], c[~test], fb[~test])
    for b, budget in enumerate(budgets):
      chosen = _choose(acc, spent, budget)
      if chosen is None:
        settings[b].append(None)
        continue
      rule, j, cap = chosen
      stop_right = np.take_along_axis(c[test], np.minimum(first[rule][test, j:j + 1], c.shape[1] - 1), 1)[:, 0]
      right[test, b], views[test, b] = _outcomes(first[rule][test, j], stop_right, fb[test], cap)
      param = float(params[rule][j])
      settings[b].append({"rule": rule, "param": param if np.isfinite(param) else None, "cap": int(cap),
                          "train_accuracy": float(acc[rule][j, cap - 1]),
                          "train_views": float(spent[rule][j, cap - 1])})
  return {"budgets": list(budgets), "right": right, "views": views, "settings": settings, "folds": folds,
          "fold_picks": picks_out, "max_views": k}


def record_cascade(rec, *, held_out: Optional[Dict] = None, budgets: Sequence[float] = BUDGETS,
                   max_views: int = MAX_VIEWS, tie: str = "paper", n_folds: int = selection.N_FOLDS,
                   seed: int = selection.SEED, draws: int = selection.DRAWS) -> Dict:
  """metrics.json's "cascade": accuracy vs mean views per image under each budget, JSON-ready: 'curve' over
  every budget, 'headline' the points at HEADLINE_BUDGETS (a list, in budget order), 'fixed_k' by str(k).

  Candidate views: the zoom grid, as for the fixed-k curves. held_out: metrics.json's "held_out" of the same
  records (`selection.record_held_out` with the same folds, seed and tie order): its per-fold picks are the cascade's
  orders (no second greedy cover); otherwise they are computed. 'fixed_k' holds the held-out fixed-k
  most-confident-view accuracy at each integer budget, from the same folds and orders, for comparison.
  """
  names = [str(x) for x in rec.view_names]
  n = len(rec)
  out = {"num_images": n, "num_candidate_views": len(names), "rules": list(RULES), "n_folds": min(n_folds, n),
         "seed": seed, "max_views": min(int(max_views), len(names)), "budgets": [], "curve": {}, "headline": [],
         "fixed_k": {}}
  if n < 2 or not names:
    return out
  top1 = rec.top1
  C = A.correctness(top1, rec.labels)
  rank = A.tie_order([A.parse_view_name(x) for x in names], tie)
  fold_picks = None
  same = held_out and (held_out.get("seed"), held_out.get("n_folds"), held_out.get("tie_order")) == (
      seed, min(n_folds, n), tie)
  if same and held_out.get("fold_picks") and len(held_out["fold_picks"][0]) >= min(int(max_views), len(names)):
    fold_picks = [[names.index(x) for x in p] for p in held_out["fold_picks"]]
  res = cascade_outcomes(C, top1, np.asarray(rec.p_max), budgets=budgets, max_views=max_views, rank=rank,
                         fold_picks=fold_picks, n_folds=n_folds, seed=seed)
  out["max_views"] = res["max_views"]
  out["fold_picks"] = [[names[v] for v in p] for p in res["fold_picks"]]  # Each fold's view order.
  out["budgets"] = [float(b) for b in res["budgets"]]
  acc = res["right"].mean(axis=0)
  spent = res["views"].mean(axis=0)
  out["curve"] = {"accuracy": [float(a) for a in acc], "mean_views": [float(s) for s in spent],
                  "ci95": [A.bootstrap_interval(float(a), n, draws=draws, seed=seed) for a in acc],
                  "settings": res["settings"]}
  for b in HEADLINE_BUDGETS:
    if float(b) in out["budgets"]:
      i = out["budgets"].index(float(b))
      rules = sorted({s["rule"] for s in res["settings"][i] if s})
      out["headline"].append({"budget": float(b), "accuracy": float(acc[i]), "mean_views": float(spent[i]),
                              "ci95": out["curve"]["ci95"][i], "rules": rules})
  # The fixed-k curve of the same orders: the cascade with tau = +inf and cap k (held_out_max_confidence).
  fixed = np.zeros(n, bool)
  for k in sorted({int(b) for b in out["budgets"] if float(b).is_integer()}):
    for f, picks in enumerate(res["fold_picks"]):
      test = res["folds"] == f
      fixed[test] = selection.max_confidence_curve(C[test], np.asarray(rec.p_max)[test], picks[:k])[:, -1]
    out["fixed_k"][str(k)] = float(fixed.mean())
  return out
