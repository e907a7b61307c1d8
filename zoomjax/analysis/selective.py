"""Selective classification over a sweep's records (docs/study.md §2.10): does a confidence rank right above wrong?

A method gives each image a prediction and a confidence; abstaining on the least confident images trades
coverage (the fraction answered) for risk (the error rate on those answered). Per (method, confidence score):

  risk-coverage curve  risk of the most confident fraction c of the images, for c in (0, 1].
  aurc                 the area under it: (1/N) sum_k risk(top k) (Geifman et al., 2019). Lower is better.
  excess_aurc          aurc minus the aurc of a perfect ranking of the same predictions (every error last).
  ece                  expected calibration error over 15 equal-width confidence bins (Guo et al., 2017):
                       sum_b (n_b / N) |accuracy_b - mean confidence_b|; bins [0, 1/15], (1/15, 2/15], ...,
                       (14/15, 1] (right-closed as Guo et al.'s, with 0 in the first).

Ties in the confidence (frequent: view agreement takes few values) are not broken by image order: the risk at a
coverage inside a block of tied images is its expectation over the block's orders (the block's errors spread
evenly), so every number here depends on the scores only.

Confidence scores:
  softmax    the max probability of the view that made the prediction (the 1-crop's, or the most confident
             view's).
  agreement  view agreement: the fraction of views (zoom grid and extra crops) whose top-1 label is the
             prediction. It applies to any aggregator's prediction (`record_selective(predictions=...)`).
"""
from typing import Dict, Optional, Sequence

import numpy as np

from zoomjax.analysis import metrics as A
from zoomjax.analysis import selection

__all__ = ["ECE_BINS", "COVERAGES", "risk_coverage", "aurc", "excess_aurc", "ece", "view_agreement",
           "selective_summary", "record_selective"]

ECE_BINS = 15
COVERAGES = (0.5, 0.8, 0.9)  # Risks reported at these coverages.
_CURVE_POINTS = 50  # Points of the stored risk-coverage curve (coverage 1/50 .. 1).


def _expected_errors(correct: np.ndarray, confidence: np.ndarray) -> np.ndarray:
  """(N + 1,) expected number of errors among the k most confident images, k = 0..N (ties: every order
  equally likely, so the errors of a tied block accrue linearly across it)."""
  correct = np.asarray(correct, bool).reshape(-1)
  confidence = np.asarray(confidence, np.float64).reshape(-1)
  if correct.shape != confidence.shape:
    raise ValueError(f"correct {correct.shape} and confidence {confidence.shape} must have one entry per image")
  n = correct.size
  if n == 0:
    return np.zeros(1)
  order = np.argsort(-confidence, kind="stable")
  conf, err = confidence[order], (~correct[order]).astype(np.float64)
  ends = np.r_[np.flatnonzero(conf[1:] != conf[:-1]) + 1, n]  # One past each tied block.
  starts = np.r_[0, ends[:-1]]
  cum = np.r_[0.0, np.cumsum(err)]
  k = np.arange(n + 1)
  block = np.searchsorted(ends, k, side="left")  # The block that holds the k-th image (k >= 1).
  block = np.minimum(block, ends.size - 1)
  s, e = starts[block], ends[block]
  frac = np.where(e > s, (k - s) / np.maximum(e - s, 1), 0.0)
  out = cum[s] + frac * (cum[e] - cum[s])
  out[0] = 0.0
  return out


def risk_coverage(correct: np.ndarray, confidence: np.ndarray, points: Optional[int] = None):
  """(coverage, risk): risk of the most confident images at coverage k / N for k = 1..N, or at `points` evenly
  spaced coverages 1/points .. 1 (the expected errors interpolated between images)."""
  errors = _expected_errors(correct, confidence)
  n = errors.size - 1
  if n == 0:
    return np.zeros(0), np.zeros(0)
  if points is None:
    k = np.arange(1, n + 1, dtype=np.float64)
    return k / n, errors[1:] / k
  cov = np.arange(1, points + 1) / points
  k = cov * n
  e = np.interp(k, np.arange(n + 1), errors)
  return cov, np.where(k > 0, e / np.maximum(k, 1e-12), 0.0)


def aurc(correct: np.ndarray, confidence: np.ndarray) -> Optional[float]:
  """Area under the risk-coverage curve, (1/N) sum_{k=1..N} risk of the k most confident; None for no images."""
  cov, risk = risk_coverage(correct, confidence)
  return float(risk.mean()) if risk.size else None


def excess_aurc(correct: np.ndarray, confidence: np.ndarray) -> Optional[float]:
  """aurc minus that of the best ranking of the same right/wrong outcomes (every wrong prediction last)."""
  correct = np.asarray(correct, bool).reshape(-1)
  value = aurc(correct, confidence)
  if value is None:
    return None
  return value - aurc(correct, correct.astype(np.float64))


def ece(correct: np.ndarray, confidence: np.ndarray, bins: int = ECE_BINS) -> Optional[float]:
  """Expected calibration error over `bins` equal-width bins of [0, 1], right-closed (module docstring)."""
  correct = np.asarray(correct, np.float64).reshape(-1)
  confidence = np.asarray(confidence, np.float64).reshape(-1)
  if correct.size == 0:
    return None
  if confidence.min() < 0 or confidence.max() > 1:
    raise ValueError(f"ECE needs confidences in [0, 1], got {confidence.min()}..{confidence.max()}")
  edges = np.linspace(0.0, 1.0, bins + 1)
  b = np.searchsorted(edges[1:-1], confidence, side="left")  # conf <= edge -> the lower bin.
  n_b = np.bincount(b, minlength=bins)
  gap = np.abs(np.bincount(b, correct, bins) - np.bincount(b, confidence, bins))  # n_b * |acc_b - conf_b|
  return float(gap.sum() / correct.size) if n_b.sum() else None


def view_agreement(top1: np.ndarray, prediction: np.ndarray) -> np.ndarray:
  """(N,) fraction of each image's views (top1 (N, V)) whose top-1 label is `prediction` (N,)."""
  top1 = np.asarray(top1)
  if top1.shape[1] == 0:
    return np.zeros(top1.shape[0])
  return np.mean(top1 == np.asarray(prediction).reshape(-1, 1), axis=1)


def selective_summary(correct: np.ndarray, confidence: np.ndarray, *, coverages: Sequence[float] = COVERAGES,
                      points: int = _CURVE_POINTS) -> Dict:
  """JSON-ready numbers of one (method, score): accuracy, aurc, excess_aurc, ece (15 bins), risk at
  `coverages` and the risk-coverage curve at `points` coverages."""
  correct = np.asarray(correct, bool).reshape(-1)
  cov, risk = risk_coverage(correct, confidence, points)
  out = {"accuracy": float(correct.mean()) if correct.size else None, "aurc": aurc(correct, confidence),
         "excess_aurc": excess_aurc(correct, confidence), "ece": ece(correct, confidence)}
  errors = _expected_errors(correct, confidence)
  n = correct.size
  out["risk_at"] = {f"{c:g}": (float(np.interp(c * n, np.arange(n + 1), errors) / (c * n)) if n else None)
                    for c in coverages}
  out["curve"] = {"coverage": [float(c) for c in cov], "risk": [float(r) for r in risk]}
  return out


def record_selective(rec, predictions: Optional[Dict[str, np.ndarray]] = None) -> Dict:
  """metrics.json's "selective": per method and confidence score, `selective_summary` (JSON-ready).

  Methods: '1-crop' (the view LOC:1_1_Size:256; softmax and agreement), 'max-prob view' (softmax and
  agreement), 'vote' (one vote per view, ties to the lowest class; agreement) and each of `predictions` ({name:
  (N,) predicted class}, e.g. `zoomjax.analysis.aggregators.predictions`, scored by agreement; or {name:
  (prediction, confidence)}, scored by agreement and by that confidence as 'own'), which replace a built-in method
  of the same name. Agreement counts every view: zoom grid and extra crops.
  """
  top1_all, p_max_all, _, _ = rec.all_views()
  labels = rec.labels
  names = [str(v) for v in rec.view_names]
  n = len(rec)
  out = {"num_images": n, "ece_bins": ECE_BINS, "num_agreement_views": int(top1_all.shape[1]), "methods": {}}
  if n == 0 or top1_all.shape[1] == 0:
    return out
  rows = np.arange(n)
  methods = {}
  if A.ONE_CROP_VIEW in names:
    one = names.index(A.ONE_CROP_VIEW)
    methods["1-crop"] = (top1_all[:, one], {"softmax": p_max_all[:, one]})
  best = np.argmax(p_max_all, axis=1)
  methods["max-prob view"] = (top1_all[rows, best], {"softmax": p_max_all[rows, best]})
  methods["vote"] = (selection.sparse_mean_argmax(top1_all, np.ones_like(p_max_all)), {})
  for name, pred in (predictions or {}).items():
    if isinstance(pred, tuple):  # (prediction, the method's own confidence in [0, 1]).
      methods[str(name)] = (np.asarray(pred[0]).reshape(-1), {"own": np.asarray(pred[1]).reshape(-1)})
    else:
      methods[str(name)] = (np.asarray(pred).reshape(-1), {})
  for name, (pred, scores) in methods.items():
    right = A.correctness(pred[:, None], labels)[:, 0]
    scores = dict(scores, agreement=view_agreement(top1_all, pred))
    out["methods"][name] = {s: selective_summary(right, np.clip(np.asarray(c, np.float64), 0.0, 1.0))
                            for s, c in scores.items()}
  return out
