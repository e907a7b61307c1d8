"""Every test-time aggregator over a sweep's stored views, pure NumPy (docs/study.md, "Aggregators over the views").

A sweep keeps, per image and view, the top-k class ids and probabilities of the view's masked softmax, its
entropy, its max probability and the true label's probability (`zoomjax.analysis.records`). From those alone
this module predicts with each aggregator over ANY subset of the views (the grid, a zoom group, the 10 crops, a
seeded random sample standing in for RandomResizedCrop), without running a model again:

  1-crop            the paper's standard view alone.
  oracle            right if any view of the subset is right (an upper bound, not a method).
  mean              argmax of the mean softmax over the views (Krizhevsky-style averaging).
  max               the top-1 label of the view with the highest max probability (ties: first view).
  vote              majority vote of the views' top-1 labels.
  geometric         argmax of the mean log-probability (the geometric mean of the softmaxes).
  entropy_weighted  argmax of sum_v w_v p_v with w = softmax(-H): a view's weight falls with its entropy H.
  tpt               TPT's confidence selection (Shu et al., 2022): keep the max(1, int(rho * n)) views of
                    lowest entropy, then the mean softmax of those.
  zero              ZERO (Farina et al., NeurIPS 2024): the same selection, each kept view's argmax, a vote.

Votes (vote, zero) break ties by confidence: among the classes with the most votes, the one whose most
confident voter (lowest entropy) is more confident wins; equal entropies go to the lower class id.

Truncation (stated once, applied everywhere): the records hold each view's top-k probabilities only, so the
mass outside a view's top-k is dropped from `mean`, `entropy_weighted` and `tpt`; `geometric` gives a class
outside a view's top-k that view's largest possible probability, min(p_k, 1 - sum of the top-k), so a class is
never ruled out by one view's truncation. With k = the number of classes nothing is truncated and every answer
equals the online one (`zoomjax.tta.zoom_tta.aggregate`, same names). Entropy, max probability and top-1 are
computed on the full softmax during the sweep, so `max`, `vote` and the selection of `tpt`/`zero` are exact.
"""
from typing import Any, Dict, Mapping, Optional, Sequence, Union

import numpy as np

from zoomjax.analysis import metrics
from zoomjax.analysis import paired

__all__ = ["AGGREGATORS", "ONLINE", "TPT_RHO", "RANDOM_VIEWS", "kept_count", "view_subset", "random_views",
           "select_confident", "vote_prediction", "predict_views", "predictions", "correct_by_aggregator",
           "view_sets", "aggregator_table", "paired_table"]

# Model-free aggregators, each also online in zoomjax.tta.zoom_tta.aggregate under the same name.
ONLINE = ("mean", "max", "vote", "geometric", "entropy_weighted", "tpt", "zero")
# Every row of the aggregator table, in display order.
AGGREGATORS = ("1-crop", "oracle") + ONLINE
TPT_RHO = 0.1  # TPT's and ZERO's default fraction of views kept (TPT: 6 of 64 views).
RANDOM_VIEWS = 64  # Size of the seeded random sample of grid views (TPT and ZERO sample 64 views).
_TINY = 2.0 ** -24  # float16's smallest positive value: probabilities stored as 0 are at most this.

Views = Union[None, Sequence[int], np.ndarray]


def kept_count(n: int, rho: float = TPT_RHO) -> int:
  """How many of n views the confidence selection keeps: int(rho * n) as in TPT's and ZERO's code, at least 1."""
  if not 0 < rho <= 1:
    raise ValueError(f"rho={rho!r}: the fraction of views kept must be in (0, 1]")
  return max(1, int(rho * n))


def view_subset(views: Views, num_views: int) -> np.ndarray:
  """A subset of views as an index array: None (every view), a boolean mask (num_views,) or indices."""
  if views is None:
    return np.arange(num_views)
  v = np.asarray(views)
  if v.dtype == bool:
    if v.shape != (num_views,):
      raise ValueError(f"a view mask must have one entry per view ({num_views}), got shape {v.shape}")
    return np.flatnonzero(v)
  v = v.astype(np.int64).reshape(-1)
  if v.size and (v.min() < 0 or v.max() >= num_views):
    raise ValueError(f"view indices must be in [0, {num_views}), got {v.min()}..{v.max()}")
  return v


def random_views(num_views: int, size: int = RANDOM_VIEWS, seed: int = 0) -> np.ndarray:
  """A seeded random sample of `size` distinct views of `num_views` (sorted), a stand-in for the 64
  RandomResizedCrop views TPT and ZERO draw: the grid's views are fixed, so sampling them is reproducible."""
  size = min(int(size), int(num_views))
  return np.sort(np.random.default_rng(seed).choice(num_views, size, replace=False))


def select_confident(entropy: np.ndarray, rho: float = TPT_RHO) -> np.ndarray:
  """(N, V) entropies -> (N, m) indices of each image's m = kept_count(V, rho) lowest-entropy views, lowest
  first; equal entropies keep the earlier view (a stable sort, as the online version)."""
  m = kept_count(entropy.shape[1], rho)
  return np.argsort(entropy, axis=1, kind="stable")[:, :m]


def _class_counts(flat: np.ndarray, n: int, num_classes: int, weights: Optional[np.ndarray] = None) -> np.ndarray:
  """Row-offset class ids `flat` (id + num_classes * row, any shape) and weights -> (n, num_classes) per-row sums
  of the weights (counts when None): one bincount, no loop over images."""
  w = None if weights is None else weights.reshape(-1)
  return np.bincount(flat.reshape(-1), weights=w, minlength=n * num_classes).reshape(n, num_classes)


def _offsets(ids: np.ndarray, num_classes: int) -> np.ndarray:
  """(n, ...) class ids -> ids + num_classes * row (int64), the bincount key of (image, class)."""
  shape = (ids.shape[0],) + (1,) * (ids.ndim - 1)
  return ids.astype(np.int64) + num_classes * np.arange(ids.shape[0], dtype=np.int64).reshape(shape)


def vote_prediction(top1: np.ndarray, entropy: np.ndarray, num_classes: int) -> np.ndarray:
  """(N, V) top-1 ids and entropies of the voting views -> (N,) majority class. Ties: the tied class whose most
  confident voter has the lowest entropy wins; equal entropies go to the lower class id."""
  top1 = np.asarray(top1, np.int64)
  n = top1.shape[0]
  flat = _offsets(top1, num_classes)
  votes = _class_counts(flat, n, num_classes).reshape(-1)[flat]  # (N, V): the votes of each view's class.
  cand = votes == votes.max(axis=1, keepdims=True)
  ent = np.where(cand, entropy, np.inf)
  cand &= ent == ent.min(axis=1, keepdims=True)
  return np.where(cand, top1, np.iinfo(np.int64).max).min(axis=1)


def _predict_many(topk: np.ndarray, topk_p: np.ndarray, entropy: np.ndarray, p_max: np.ndarray,
                  names: Sequence[str], rho: float, c: int) -> Dict[str, np.ndarray]:
  """Every aggregator of `names` over the same views, sharing the (image, class) keys and the selection."""
  n, v = topk.shape[:2]
  out: Dict[str, np.ndarray] = {}
  if v == 0:
    return {h: np.full(n, -1, np.int64) for h in names}
  top1 = topk[..., 0].astype(np.int64)
  flat = _offsets(topk, c) if any(h in names for h in ("mean", "entropy_weighted", "geometric")) else None
  keep = select_confident(entropy, rho) if any(h in names for h in ("tpt", "zero")) else None

  def argmax_sum(weights, keys=None):  # Ties: the lower class id (np.argmax), as jnp.argmax online.
    keys = flat if keys is None else keys
    return np.argmax(_class_counts(keys, n, c, weights), axis=1)

  for h in names:
    if h == "max":
      out[h] = top1[np.arange(n), np.argmax(p_max, axis=1)]
    elif h == "vote":
      out[h] = vote_prediction(top1, entropy, c)
    elif h == "mean":
      out[h] = argmax_sum(topk_p)
    elif h == "entropy_weighted":
      w = np.exp(-(entropy - entropy.min(axis=1, keepdims=True)))
      out[h] = argmax_sum(topk_p * (w / w.sum(axis=1, keepdims=True))[..., None].astype(topk_p.dtype))
    elif h == "geometric":
      # sum_v log p_vc, a class outside view v's top-k at that view's largest possible probability f_v: the
      # constant sum_v log f_v is common to every class, so only the gains log(p_vc / f_v) >= 0 are summed.
      # A class in no view's top-k scores 0: it never beats one that is (gains > 0) unless all tie.
      fill = np.maximum(np.minimum(topk_p[..., -1], 1.0 - topk_p.sum(-1)), _TINY)
      out[h] = argmax_sum(np.log(np.maximum(topk_p, fill[..., None]) / fill[..., None]))
    elif h in ("tpt", "zero"):
      if h == "zero":
        out[h] = vote_prediction(np.take_along_axis(top1, keep, 1), np.take_along_axis(entropy, keep, 1), c)
      else:
        kept = np.take_along_axis(topk, keep[..., None], 1)
        out[h] = argmax_sum(np.take_along_axis(topk_p, keep[..., None], 1), _offsets(kept, c))
    else:
      raise ValueError(f"aggregator {h!r} is not one of {ONLINE}")
  return out


def predict_views(topk: np.ndarray, topk_p: np.ndarray, entropy: np.ndarray, p_max: np.ndarray, how: str, *,
                  rho: float = TPT_RHO, num_classes: Optional[int] = None) -> np.ndarray:
  """(N,) predictions of aggregator `how` (a name of ONLINE) over the given views: topk (N, V, k) ids, topk_p
  (N, V, k) probabilities, entropy and p_max (N, V). The module docstring states each definition."""
  if how not in ONLINE:
    raise ValueError(f"aggregator {how!r} is not one of {ONLINE}")
  topk = np.asarray(topk)
  c = int(num_classes if num_classes is not None else (topk.max() + 1 if topk.size else 1))
  return _predict_many(topk, np.asarray(topk_p, np.float64), np.asarray(entropy, np.float64), np.asarray(p_max),
                       (how,), rho, c)[how]


def _chunks(n: int, views: int, k: int):
  """Row ranges that keep one chunk's work arrays near 32 MB."""
  step = max(1, int(4_000_000 // max(1, views * max(k, 1))))
  return [slice(s, min(n, s + step)) for s in range(0, n, step)]


def _columns(grid: np.ndarray, crop: np.ndarray, rows: slice, idx: np.ndarray, t: int) -> np.ndarray:
  """rows x views `idx` of the grid-then-crops view axis, copying only what `idx` needs."""
  if idx.size and idx.max() < t:
    if idx.size == idx[-1] - idx[0] + 1 and np.all(np.diff(idx) == 1):
      return grid[rows, idx[0]:idx[-1] + 1]
    return grid[rows][:, idx]
  if idx.size and idx.min() >= t:
    return crop[rows][:, idx - t]
  return np.concatenate([grid[rows], crop[rows]], 1)[:, idx]


def predictions(rec, views: Views = None, *, names: Sequence[str] = ONLINE, rho: float = TPT_RHO,
                num_classes: Optional[int] = None) -> Dict[str, np.ndarray]:
  """{aggregator: (N,) predictions} of a sweep's `Records` over `views`: indices (or a boolean mask) into the
  grid views followed by the extra crops (None: every view). In chunks of images, so 50,000 images x 334 views
  never materialise as one float64 array. Records without top-k probabilities (older sweeps) give the
  aggregators that need only top-1 and p_max (max) and refuse the others by name."""
  t = len(rec.view_names)
  idx = view_subset(views, t + len(rec.crop_names))
  need_p = [h for h in names if h != "max"]
  if need_p:
    rec.require(("topk_p", "entropy") + (("crop_topk_p", "crop_entropy") if (idx >= t).any() else ()),
                f"aggregator {need_p[0]!r}")
  c = num_classes
  if c is None:
    c = int(max(rec.topk.max(initial=0), rec.crop_topk.max(initial=0))) + 1
  n = len(rec)
  out = {h: np.full(n, -1, np.int64) for h in names}
  if idx.size == 0:
    return out
  for rows in _chunks(n, idx.size, rec.k):
    topk = _columns(rec.topk, rec.crop_topk, rows, idx, t)
    p_max = _columns(rec.p_max, rec.crop_p_max, rows, idx, t)
    if need_p:
      topk_p = _columns(rec.topk_p, rec.crop_topk_p, rows, idx, t).astype(np.float32)
      ent = _columns(rec.entropy, rec.crop_entropy, rows, idx, t)
    else:
      topk_p, ent = np.zeros(topk.shape, np.float32), np.zeros(p_max.shape, np.float32)
    for h, pred in _predict_many(topk, topk_p, ent, p_max, names, rho, c).items():
      out[h][rows] = pred
  return out


def view_sets(rec, *, crop: int = 224, seed: int = 0, random_size: int = RANDOM_VIEWS) -> Dict[str, np.ndarray]:
  """The view subsets a sweep's aggregator table covers (indices into grid views + extra crops), empty ones left
  out: the whole grid, its zoom-in and zoom-out groups, the 10 crops, and a seeded random sample of
  `random_size` grid views (as RandomResizedCrop would draw; only when the grid has more views than that)."""
  t = len(rec.view_names)
  transforms = [metrics.parse_view_name(str(n)) for n in rec.view_names]
  groups = metrics.zoom_groups(transforms, crop)
  out = {"grid": np.arange(t), "zoom-in": groups["in"], "zoom-out": groups["out"],
         "10-crop": t + np.arange(len(rec.crop_names))}
  if t > random_size:
    out[f"random-{random_size}"] = random_views(t, random_size, seed)
  return {k: np.asarray(v, np.int64) for k, v in out.items() if len(v)}


def correct_by_aggregator(rec, views: Views = None, *, rho: float = TPT_RHO, names: Sequence[str] = AGGREGATORS,
                          _all_views=None, known: Optional[Mapping[str, np.ndarray]] = None) -> Dict[str, np.ndarray]:
  """{aggregator: (N,) bool correct} over `views` (as in `predictions`); '1-crop' is the paper's view alone
  (left out when the grid lacks it), 'oracle' is right when any of the views is. known: `predictions` over the
  same views and rho already computed by the caller (not computed again)."""
  top1, _, _, all_names = rec.all_views() if _all_views is None else _all_views
  idx = view_subset(views, top1.shape[1])
  out: Dict[str, np.ndarray] = {}
  if "1-crop" in names and metrics.ONE_CROP_VIEW in all_names:
    j = all_names.index(metrics.ONE_CROP_VIEW)
    out["1-crop"] = metrics.correctness(top1[:, j:j + 1], rec.labels)[:, 0]
  if "oracle" in names:
    out["oracle"] = metrics.correctness(top1[:, idx], rec.labels).any(axis=1) if idx.size else \
        np.zeros(len(rec), bool)
  online = [h for h in names if h in ONLINE]
  if online:
    preds = dict(known or {})
    todo = [h for h in online if h not in preds]
    if todo:
      preds.update(predictions(rec, idx, names=todo, rho=rho))
    for h in online:
      out[h] = metrics.correctness(preds[h][:, None], rec.labels)[:, 0]
  return out


def paired_table(correct: Mapping[str, np.ndarray], baseline: str = "1-crop", *, n_boot: int = 2000,
                 seed: int = 0) -> Dict[str, Dict[str, Any]]:
  """{name: PairedResult.as_dict()} of every aggregator against `baseline` on the same images (the oracle, an
  upper bound rather than a method, and the baseline itself are left out; {} without the baseline)."""
  if baseline not in correct:
    return {}
  return {name: paired.paired_difference(c, correct[baseline], n_boot=n_boot, seed=seed).as_dict()
          for name, c in correct.items() if name not in (baseline, "oracle")}


def aggregator_table(rec, sets: Optional[Mapping[str, Views]] = None, *, rho: float = TPT_RHO, crop: int = 224,
                     seed: int = 0, n_boot: int = 2000,
                     known: Optional[Mapping[str, Mapping[str, np.ndarray]]] = None) -> Dict[str, Any]:
  """Every aggregator over every view set of a sweep, each accuracy with its 95 % bootstrap interval and its
  paired comparison with the 1-crop (metrics.json's "aggregators"; fractions):

    {"rho", "k", "truncation", "sets": {set: {"num_views", "views" (first few names),
     "accuracy": {name: acc}, "ci95": {name: [lo, hi]}, "paired": {name: PairedResult dict}}}, "missing"}

  Records from older sweeps (no top-k probabilities) fill 1-crop, oracle and max and list the others under
  "missing" with the field they need. known: {set: `predictions` over that set at this rho} the caller already
  has (a sweep computes the grid's once for the table and for selective classification).
  """
  sets = view_sets(rec, crop=crop, seed=seed) if sets is None else dict(sets)
  lacking = rec.missing()
  names = AGGREGATORS if not lacking else ("1-crop", "oracle", "max")
  n = len(rec)
  all_views = rec.all_views()
  all_names = all_views[3]
  out_sets = {}
  for set_name, views in sets.items():
    idx = view_subset(views, len(all_names))
    correct = correct_by_aggregator(rec, idx, rho=rho, names=names, _all_views=all_views,
                                    known=(known or {}).get(set_name))
    acc = {h: float(np.mean(c)) if n else None for h, c in correct.items()}
    out_sets[set_name] = {
        "num_views": int(idx.size), "views": [all_names[i] for i in idx[:3]] + (["..."] if idx.size > 3 else []),
        "accuracy": acc, "ci95": {h: metrics.bootstrap_interval(a, n) for h, a in acc.items()},
        "paired": paired_table(correct, n_boot=n_boot, seed=seed)}
  return {"rho": rho, "k": rec.k, "num_images": n,
          "kept_views": {s: kept_count(len(view_subset(v, len(all_names))), rho) for s, v in sets.items()},
          "truncation": f"mean, entropy_weighted and tpt sum each view's top-{rec.k} probabilities only (the mass "
                        "outside a view's top-k is dropped); geometric gives a class outside a view's top-k that "
                        "view's largest possible probability",
          "sets": out_sets,
          "missing": {h: f"needs {', '.join(lacking)} (an older sweep: rerun it into a new workdir)"
                      for h in AGGREGATORS if h not in names}}
