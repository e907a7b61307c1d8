"""Paired comparisons (zoomjax.analysis.paired): McNemar's exact test against scipy, the paired bootstrap against
an explicit NumPy resampling, hand-computed counts, the refusal of different image sets, and the report format."""
import numpy as np
import pytest
from scipy import stats

from zoomjax.analysis import paired
from zoomjax.errors import UserError
from zoomjax.reports import html


@pytest.mark.parametrize("a_only,b_only", [(0, 0), (1, 0), (0, 1), (5, 0), (3, 3), (7, 2), (2, 9), (40, 61),
                                           (0, 25), (480, 531), (3000, 3190)])
def test_mcnemar_matches_scipy_binomtest(a_only, b_only):
  n = a_only + b_only
  want = 1.0 if n == 0 else stats.binomtest(a_only, n, 0.5, alternative="two-sided").pvalue
  assert paired.mcnemar_exact(a_only, b_only) == pytest.approx(want, rel=1e-9, abs=1e-300)


def test_mcnemar_hand_computed():
  assert paired.mcnemar_exact(5, 0) == pytest.approx(2 / 32)  # Five heads of five fair flips, both tails.
  assert paired.mcnemar_exact(2, 1) == 1.0  # min(1, 2 * (1 + 3) / 8).
  with pytest.raises(ValueError, match="a_only=-1"):
    paired.mcnemar_exact(-1, 3)


def _reference_bootstrap(a, b, draws, seed):
  """Resamples image indices explicitly: the textbook paired bootstrap."""
  rng = np.random.default_rng(seed)
  idx = rng.integers(0, a.size, (draws, a.size))
  d = a[idx].mean(1) - b[idx].mean(1)
  return np.percentile(d, 2.5), np.percentile(d, 97.5)


def test_paired_difference_counts_and_bootstrap():
  rng = np.random.default_rng(3)
  n = 400
  b = rng.random(n) < 0.6
  a = b.copy()
  flip = rng.choice(n, 60, replace=False)  # 60 discordant images, mostly in a's favour.
  a[flip[:42]] = True
  a[flip[42:]] = False
  r = paired.paired_difference(a, b, n_boot=20000, seed=1)
  assert r.n == n
  assert r.a_only == int(np.sum(a & ~b)) and r.b_only == int(np.sum(b & ~a))
  assert r.diff == pytest.approx(a.mean() - b.mean())
  assert r.p_value == pytest.approx(stats.binomtest(r.a_only, r.a_only + r.b_only, 0.5).pvalue)
  lo, hi = _reference_bootstrap(a.astype(float), b.astype(float), 20000, 7)
  # Two independent bootstrap estimates of the same percentiles: they agree to Monte-Carlo error (~0.2 points).
  assert r.ci95[0] == pytest.approx(lo, abs=0.004) and r.ci95[1] == pytest.approx(hi, abs=0.004)
  assert r.ci95[0] < r.diff < r.ci95[1]
  assert r.as_dict()["ci95"] == list(r.ci95)
  # Seeded: the same interval twice; swapping a and b mirrors everything.
  assert paired.paired_difference(a, b, n_boot=20000, seed=1) == r
  s = paired.paired_difference(b, a, n_boot=20000, seed=1)
  assert (s.diff, s.a_only, s.b_only, s.p_value) == (-r.diff, r.b_only, r.a_only, r.p_value)


def test_identical_methods_and_bad_input():
  a = np.array([1, 0, 1, 1], bool)
  r = paired.paired_difference(a, a)
  assert (r.diff, r.ci95, r.p_value, r.a_only, r.b_only) == (0.0, (0.0, 0.0), 1.0, 0, 0)
  with pytest.raises(ValueError, match="same images"):
    paired.paired_difference(a, a[:3])
  with pytest.raises(ValueError, match="0/1"):
    paired.paired_difference(np.array([0, 2]), np.array([0, 1]))


def test_same_images_aligns_and_refuses_by_name():
  ia, ib = paired.same_images(["x", "y", "z"], ["z", "x", "y"], "runA", "runB")
  assert np.array_equal(np.array(["z", "x", "y"])[ib], np.array(["x", "y", "z"])[ia])
  with pytest.raises(UserError, match=r"cannot pair runA with runB: .*1 only in runA, 1 only in runB"):
    paired.same_images(["x", "y"], ["x", "q"], "runA", "runB")


def test_report_format():
  assert html.paired("ZERO", "1-crop", 0.03, [0.005, 0.055], 0.03) == \
      "ZERO vs 1-crop: +3.0 points [+0.5, +5.5], p = 0.03"
  assert html.paired("a", "b", -0.012, None, 0.0004) == "a vs b: -1.2 points, p < 0.001"
  assert html.paired("a", "b", None, None, None) == f"a vs b: {html.MISSING}, {html.MISSING}"


def test_evaluate_pairs_models_on_the_same_images_and_refuses_others(tmp_path):
  from zoomjax.jobs import evaluate  # pylint: disable=import-outside-toplevel
  rows = {"m1": (["a", "b", "c", "d"], [1, 1, 0, 0]), "m2": (["b", "a", "d", "c"], [1, 1, 1, 1]),
          "m3": (["a", "b", "c", "e"], [1, 0, 0, 0])}
  results = []
  for row, (ids, correct) in rows.items():
    (tmp_path / row).mkdir()
    np.savez(tmp_path / row / "predictions.npz", ids=np.array(ids), correct=np.array(correct, bool))
    results.append({"row": row, "dataset": "d1", "predictions": f"{row}/predictions.npz"})
  out = evaluate.paired_models(str(tmp_path), results, n_boot=100)
  m2, m3 = out
  # m2 against m1 aligned by id: m2 right on c, d where m1 is wrong; never the other way.
  assert (m2["a"], m2["b"], m2["a_only"], m2["b_only"], m2["diff"]) == ("m2", "m1", 2, 0, 0.5)
  assert m2["p_value"] == pytest.approx(stats.binomtest(2, 2, 0.5).pvalue)
  assert m3["refused"] == ("cannot pair m1 on d1 with m3 on d1: they ran on different images (1 only in m1 on d1, "
                           "1 only in m3 on d1); compare runs over the same dataset and images")
