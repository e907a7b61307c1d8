"""Paired comparisons: is method A's accuracy really above method B's on the same images?

Two methods scored on the same N images are not independent: most images are right (or wrong) for both, and
only the discordant ones (right for one, wrong for the other) carry evidence. Two overlapping 95 % intervals
therefore say little; the paired statistics here use the pairing:

  diff      mean(a) - mean(b), in [-1, 1] (a fraction; reports show it in points).
  ci95      percentile bootstrap over images, resampling each image's (a, b) pair together.
  p_value   McNemar's exact test: under "no difference" each of the a_only + b_only discordant images is
            a_only or b_only with probability 1/2; the two-sided binomial p-value of the observed split.

Resampling N pairs with replacement makes the counts of (a_only, b_only, concordant) images multinomial, and the
difference is (A - B) / N, so the seeded draws come from that distribution directly: the same interval as
resampling index vectors, in O(n_boot) whatever N is.
"""
import dataclasses
import math
from typing import Tuple

import numpy as np

from zoomjax.errors import UserError

__all__ = ["PairedResult", "paired_difference", "mcnemar_exact", "same_images"]


@dataclasses.dataclass(frozen=True)
class PairedResult:
  """A paired comparison of two 0/1 correctness vectors over the same images (fractions, not percent)."""
  diff: float  # mean(a) - mean(b), in [-1, 1].
  ci95: Tuple[float, float]  # Paired percentile bootstrap interval of diff.
  p_value: float  # McNemar's exact two-sided p-value on the discordant pairs.
  n: int  # Images compared.
  a_only: int  # Images a gets right and b gets wrong.
  b_only: int  # Images b gets right and a gets wrong.

  def as_dict(self) -> dict:
    """JSON-ready: {diff, ci95: [lo, hi], p_value, n, a_only, b_only}."""
    out = dataclasses.asdict(self)
    out["ci95"] = list(self.ci95)
    return out


def mcnemar_exact(a_only: int, b_only: int) -> float:
  """McNemar's exact two-sided p-value: P(a split of a_only + b_only fair coin flips at least as uneven as the
  observed one), i.e. min(1, 2 * P(X <= min(a_only, b_only))) with X ~ Binomial(a_only + b_only, 1/2); 1.0 when
  there are no discordant pairs. Exact in log space for any number of pairs."""
  a_only, b_only = int(a_only), int(b_only)
  if a_only < 0 or b_only < 0:
    raise ValueError(f"discordant counts must be >= 0, got a_only={a_only}, b_only={b_only}")
  n = a_only + b_only
  m = min(a_only, b_only)
  if n == 0 or 2 * m == n:
    return 1.0
  k = np.arange(m + 1)
  log_pmf = (math.lgamma(n + 1) - np.array([math.lgamma(i + 1) + math.lgamma(n - i + 1) for i in k])
             - n * math.log(2.0))
  tail = float(np.exp(np.logaddexp.reduce(log_pmf)))
  return min(1.0, 2.0 * tail)


def _as_bool(x, name: str) -> np.ndarray:
  x = np.asarray(x)
  if x.ndim != 1:
    raise ValueError(f"{name} must be one 0/1 value per image (shape (N,)), got shape {x.shape}")
  if x.dtype != bool and not np.isin(x, (0, 1)).all():
    raise ValueError(f"{name} must hold 0/1 (correct or not) values")
  return x.astype(bool)


def paired_difference(correct_a, correct_b, *, n_boot: int = 2000, seed: int = 0,
                      level: float = 0.95) -> PairedResult:
  """Accuracy of a minus accuracy of b over the same images, with its paired bootstrap interval and McNemar's
  exact p-value. correct_a, correct_b: (N,) bool (or 0/1), image i in the same position in both."""
  a = _as_bool(correct_a, "correct_a")
  b = _as_bool(correct_b, "correct_b")
  if a.shape != b.shape:
    raise ValueError(f"paired comparison needs the same images: correct_a has {a.size}, correct_b {b.size}")
  n = int(a.size)
  a_only = int(np.count_nonzero(a & ~b))
  b_only = int(np.count_nonzero(b & ~a))
  if n == 0:
    return PairedResult(float("nan"), (float("nan"), float("nan")), 1.0, 0, 0, 0)
  diff = (a_only - b_only) / n
  probs = np.array([a_only, b_only, n - a_only - b_only], np.float64) / n
  counts = np.random.default_rng(seed).multinomial(n, probs, size=int(n_boot))
  diffs = (counts[:, 0] - counts[:, 1]) / n
  tail = 100 * (1 - level) / 2
  ci = (float(np.percentile(diffs, tail)), float(np.percentile(diffs, 100 - tail)))
  return PairedResult(float(diff), ci, mcnemar_exact(a_only, b_only), n, a_only, b_only)


def same_images(ids_a, ids_b, name_a: str, name_b: str) -> Tuple[np.ndarray, np.ndarray]:
  """Index arrays (ia, ib) that align two runs' images by id (ids_a[ia] == ids_b[ib], in ids_a's order).

  Paired statistics only mean something over the same images: runs whose image sets differ are refused with one
  line naming both runs (the caller's names: workdirs or models) and how many images each has alone."""
  ids_a = [str(i) for i in ids_a]
  ids_b = [str(i) for i in ids_b]
  pos_b = {i: j for j, i in enumerate(ids_b)}
  only_a = sum(1 for i in ids_a if i not in pos_b)
  only_b = len(set(ids_b) - set(ids_a))
  if only_a or only_b or len(ids_a) != len(ids_b):
    raise UserError(f"cannot pair {name_a} with {name_b}: they ran on different images ({only_a} only in "
                     f"{name_a}, {only_b} only in {name_b}); compare runs over the same dataset and images")
  ia = np.arange(len(ids_a))
  ib = np.array([pos_b[i] for i in ids_a], np.int64)
  return ia, ib
