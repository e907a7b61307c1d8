"""zoomjax.analysis.cascade: stop indices by hand, every setting against a per-image simulation, held-out tuning on
records whose best cascade is known exactly, and the fixed-k curve it contains."""
import dataclasses
import os
from typing import List

import numpy as np
import pytest

from zoomjax.analysis import cascade
from zoomjax.analysis import metrics as A
from zoomjax.analysis import selection


@dataclasses.dataclass
class FakeRecords:
  """The record fields the cascade reads (the Records accessors `top1`, `p_max`, `labels`, `view_names`, and
  `all_views()` for the held-out curves and the selective tables: no extra crops here)."""
  top1: np.ndarray
  p_max: np.ndarray
  labels: np.ndarray
  view_names: List[str]

  def __len__(self):
    return self.top1.shape[0]

  def all_views(self):
    return self.top1, self.p_max, None, list(self.view_names)


def test_stop_index_by_hand():
  p = np.array([[0.2, 0.9, 0.5, 0.1], [0.6, 0.1, 0.1, 0.1], [0.1, 0.2, 0.3, 0.4]])
  assert cascade.stop_index("max_prob", np.zeros((3, 4), int), p, [0.5, 0.95, np.inf]).tolist() == [
      [1, 4, 4], [0, 4, 4], [4, 4, 4]]
  labels = np.array([[3, 5, 3, 5], [1, 1, 1, 1], [7, 8, 9, 8]])
  assert cascade.stop_index("agree", labels, p, [2, 3, 4]).tolist() == [[2, 4, 4], [1, 2, 3], [3, 4, 4]]
  with pytest.raises(ValueError, match="rule"):
    cascade.stop_index("entropy", labels, p, [1])


def _simulate(rule, param, cap, top1, p_max, right):
  """One image through the cascade, literally: (right, views)."""
  votes = {}
  for j in range(cap):
    votes[top1[j]] = votes.get(top1[j], 0) + 1
    if (rule == "max_prob" and p_max[j] >= param) or (rule == "agree" and votes[top1[j]] >= param):
      return right[j], j + 1
  best = int(np.argmax(p_max[:cap]))  # First maximum: ties to the earlier view.
  return right[best], cap


@pytest.mark.parametrize("rule", cascade.RULES)
def test_every_setting_matches_a_per_image_simulation(rule):
  rng = np.random.default_rng(0)
  n, k = 60, 6
  top1 = rng.integers(0, 3, (n, k))
  p_max = np.round(rng.random((n, k)), 1)  # Ties in p_max and at the thresholds.
  right = top1 == rng.integers(0, 3, (n, 1))
  params = [0.0, 0.3, 0.5, 0.9, np.inf] if rule == "max_prob" else [2, 3, 4]
  first = cascade.stop_index(rule, top1, p_max, params)
  fallback = selection.max_confidence_curve(right, p_max, list(range(k)))
  acc, views = cascade.score_settings(first, right, fallback)
  for j, param in enumerate(params):
    for cap in range(1, k + 1):
      sim = np.array([_simulate(rule, param, cap, top1[i], p_max[i], right[i]) for i in range(n)])
      assert acc[j, cap - 1] == pytest.approx(sim[:, 0].mean()), (param, cap)
      assert views[j, cap - 1] == pytest.approx(sim[:, 1].mean()), (param, cap)


def _easy_hard(n=200, seed=0):
  """Half the images are easy: view A is right and sure (0.95), view B wrong and unsure (0.2). On the hard half A
  is wrong and unsure (0.3), B right and fairly sure (0.8). View C is always wrong and very sure (0.99), view D
  always wrong and unsure (0.1). Greedy order: A, B (a tie, to the grid's order), then C, D."""
  rng = np.random.default_rng(seed)
  folds = selection.fold_ids(n)  # Half of every fold is easy: A and B tie on every training set.
  easy = np.zeros(n, bool)
  for f in range(folds.max() + 1):
    easy[np.flatnonzero(folds == f)[::2]] = True
  labels = rng.integers(0, 10, (n, 1)).astype(np.int32)
  wrong = (labels[:, 0] + 1) % 10
  top1 = np.stack([np.where(easy, labels[:, 0], wrong), np.where(easy, wrong, labels[:, 0]), wrong, wrong], 1)
  p_max = np.stack([np.where(easy, 0.95, 0.3), np.where(easy, 0.2, 0.8), np.full(n, 0.99), np.full(n, 0.1)], 1)
  names = [A.view_name((s, 1, 1)) for s in (128, 192, 256, 320)]
  return FakeRecords(top1, p_max.astype(np.float32), labels, names), easy


def test_held_out_tuning_finds_the_known_best_cascade():
  rec, easy = _easy_hard()
  out = cascade.record_cascade(rec, budgets=(1, 2, 4), max_views=4, tie="grid")
  i = {b: out["budgets"].index(float(b)) for b in (1, 2, 4)}
  # One view: A alone, right on the easy half.
  assert out["curve"]["accuracy"][i[1]] == pytest.approx(0.5)
  assert out["curve"]["mean_views"][i[1]] == 1.0
  # Two views: stopping on A when it is sure (0.3 < tau <= 0.95) and taking B otherwise solves every image with
  # 1.5 views on average; the fixed pair (most confident of A, B) solves them too but with 2 views.
  for b in (2, 4):
    assert out["curve"]["accuracy"][i[b]] == 1.0
    assert out["curve"]["mean_views"][i[b]] == pytest.approx(1 + (~easy).mean())
    for s in out["curve"]["settings"][i[b]]:
      assert s["rule"] == "max_prob" and 0.3 < s["param"] <= 0.95 and s["cap"] >= 2, s
  assert out["fixed_k"] == {"1": 0.5, "2": 1.0, "4": 0.0}  # k = 4 adds C, which is always the most confident.
  assert [h["budget"] for h in out["headline"]] == [1, 2, 4]
  assert out["headline"][1]["accuracy"] == 1.0 and out["headline"][1]["rules"] == ["max_prob"]


def test_agreement_rule_wins_when_confidence_says_nothing():
  """Three views, each image has exactly one wrong view (its own wrong label) and every view says 0.5: max
  probability cannot tell right from wrong (2/3 at any setting), "2 views agree" is always right and stops after
  the second view unless the wrong one was among the first two."""
  rng = np.random.default_rng(1)
  n = 120
  labels = rng.integers(0, 5, (n, 1)).astype(np.int32)
  bad = rng.integers(0, 3, n)  # The wrong view of each image.
  top1 = np.where(np.arange(3)[None] == bad[:, None], (labels + 1 + np.arange(3)[None]) % 5, labels)
  C = A.correctness(top1, labels)
  res = cascade.cascade_outcomes(C, top1, np.full((n, 3), 0.5, np.float32), budgets=(2, 3), max_views=3)
  assert res["right"][:, 1].all()
  assert all(s["rule"] == "agree" and s["param"] == 2 and s["cap"] == 3 for s in res["settings"][1])
  first_two = np.array([bad[i] in res["fold_picks"][res["folds"][i]][:2] for i in range(n)])
  assert res["views"][:, 1].tolist() == np.where(first_two, 3, 2).tolist()


def test_fixed_k_equals_the_held_out_curve_and_reuses_its_picks():
  rng = np.random.default_rng(2)
  n, t = 80, 12
  labels = rng.integers(0, 4, (n, 1)).astype(np.int32)
  top1 = rng.integers(0, 4, (n, t))
  p_max = rng.random((n, t)).astype(np.float32)
  names = [A.view_name((s, r, c)) for s in (64, 128, 256, 512)[:t // 3] for r in range(1) for c in range(3)]
  rec = FakeRecords(top1, p_max, labels, names)
  C = A.correctness(top1, labels)
  rank = A.tie_order([A.parse_view_name(x) for x in names], "paper")
  ref = selection.held_out_outcomes(C, top1, p_max, labels, budget=8, rank=rank)["held_out_max_confidence"]
  held_out = {"fold_picks": [[names[v] for v in p] for p in
                             selection.held_out_outcomes(C, top1, p_max, labels, budget=8, rank=rank)["fold_picks"]],
              "seed": selection.SEED, "n_folds": selection.N_FOLDS, "tie_order": "paper"}
  out = cascade.record_cascade(rec, budgets=(1, 2, 4, 8), max_views=8)
  reused = cascade.record_cascade(rec, budgets=(1, 2, 4, 8), max_views=8, held_out=held_out)
  for k in (1, 2, 4, 8):
    assert out["fixed_k"][str(k)] == pytest.approx(ref[:, k - 1].mean())
  assert reused == out and out["fold_picks"] == held_out["fold_picks"]
  # Given orders are taken as they are (no second greedy cover): reversed ones give reversed orders.
  backwards = dict(held_out, fold_picks=[p[::-1] for p in held_out["fold_picks"]])
  assert cascade.record_cascade(rec, budgets=(1,), max_views=8, held_out=backwards)["fold_picks"] == [
      p[::-1] for p in held_out["fold_picks"]]
  assert cascade.record_cascade(rec, budgets=(1,), max_views=8, held_out=dict(backwards, tie_order="grid"))[
      "fold_picks"] == held_out["fold_picks"]  # Another tie order: its picks are not these, so recomputed.
  # The cascade's family holds the fixed-k setting: on the images it is tuned on it never does worse.
  res = cascade.cascade_outcomes(C, top1, p_max, budgets=(1, 2, 4, 8), max_views=8, rank=rank)
  for b, settings in zip(res["budgets"], res["settings"]):
    for f, s in enumerate(settings):
      train = res["folds"] != f
      picks = res["fold_picks"][f][:b]
      fixed = selection.max_confidence_curve(C[train], p_max[train], picks)[:, -1].mean()
      assert s["train_accuracy"] >= fixed - 1e-12 and s["train_views"] <= b + 1e-9, (b, f, s, fixed)


def test_tiny_inputs():
  rec = FakeRecords(np.zeros((1, 2), int), np.ones((1, 2), np.float32), np.zeros((1, 1), np.int32),
                    [A.view_name((s, 1, 1)) for s in (128, 256)])
  out = cascade.record_cascade(rec)
  assert out["budgets"] == [] and out["curve"] == {}
  with pytest.raises(ValueError, match="at least 2 images"):
    cascade.cascade_outcomes(np.zeros((1, 2), bool), np.zeros((1, 2), int), np.zeros((1, 2)))


def test_report_section_draws_the_curve_and_tables(tmp_path):
  """The sweep report's cascade and selective-classification section from metrics of known records."""
  from zoomjax.analysis import selective  # pylint: disable=g-import-not-at-top
  from zoomjax.reports import html  # pylint: disable=g-import-not-at-top
  from zoomjax.reports import sweep as report  # pylint: disable=g-import-not-at-top
  rec, _ = _easy_hard()
  names = rec.view_names[:1] + [A.ONE_CROP_VIEW] + rec.view_names[2:]
  rec = dataclasses.replace(rec, view_names=names)
  C = A.correctness(rec.top1, rec.labels)
  held = selection.record_held_out(rec, budget=4, tie="grid")
  metrics = {"one_crop_accuracy": float(C[:, 1].mean()), "held_out": held,
             "cascade": cascade.record_cascade(rec, held_out=held, budgets=(1, 2, 4), max_views=4, tie="grid"),
             "selective": selective.record_selective(rec)}
  page = report._cascade_section(metrics, str(tmp_path), rel=os.path.basename)  # pylint: disable=protected-access
  assert "A cascade under a view budget" in page and "Selective classification" in page
  h = metrics["cascade"]["headline"][1]  # Budget 2.
  assert html.escape(html.interval(h["accuracy"], h["ci95"])) in page and "1.50" in page
  assert "ECE (15 bins)" in page and "max-prob view" in page
  for name in ("cascade.png", "risk_coverage.png"):
    assert os.path.getsize(tmp_path / name) > 1000
  assert report._cascade_section({}, str(tmp_path), rel=os.path.basename) == ""  # pylint: disable=protected-access

