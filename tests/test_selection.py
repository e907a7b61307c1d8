"""Zoom without an oracle: held-out view selection and confidence selection on fake records whose answers are
known by construction, and against brute-force NumPy oracles (dense softmax, explicit fold loops)."""
import json

import numpy as np
import pytest

from zoomjax.analysis import metrics as A
from zoomjax.analysis import records as R
from zoomjax.analysis import selection as S
from zoomjax.reports import html
from zoomjax.reports import study as study_report

SCALES = (64, 224, 256, 512)
GRID = [(s, r, c) for s in SCALES for r in range(3) for c in range(3)]
NAMES = [A.view_name(t) for t in GRID]
ONE = NAMES.index(A.ONE_CROP_VIEW)


def make_records(top1, p_max, labels, crop_top1=None, crop_p=None) -> R.Records:
  """Records of a fake model: per view its top-1 class and probability (ranks 2-5 filler)."""
  n, t = top1.shape
  x = len(R.CROP_NAMES)
  crop_top1 = np.full((n, x), 999) if crop_top1 is None else crop_top1
  crop_p = np.full((n, x), 0.01, np.float32) if crop_p is None else crop_p
  top5 = np.concatenate([top1[..., None], np.full((n, t, 4), 990)], -1).astype(np.int16)
  ctop5 = np.concatenate([crop_top1[..., None], np.full((n, x, 4), 990)], -1).astype(np.int16)
  labels = np.asarray(labels, np.int32).reshape(n, -1) if n else np.zeros((0, 1), np.int32)
  return R.Records(
      index=np.arange(n, dtype=np.int64), ids=np.array([f"img{i}.jpg" for i in range(n)]), labels=labels,
      topk=top5, p_true=np.zeros((n, t), np.float32), p_max=np.asarray(p_max, np.float32),
      crop_topk=ctop5, crop_p_true=np.zeros((n, x), np.float32), crop_p_max=np.asarray(crop_p, np.float32),
      agg_top5=np.zeros((n, len(R.AGG_SETS), 5), np.int16), agg_p=np.zeros((n, len(R.AGG_SETS), 5), np.float32),
      view_names=np.array(NAMES[:t]), crop_names=np.array(R.CROP_NAMES), agg_names=np.array(R.AGG_SETS))


def test_folds_are_seeded_and_balanced():
  f = S.fold_ids(23, 5, seed=1)
  assert sorted(np.bincount(f)) == [4, 4, 5, 5, 5]
  np.testing.assert_array_equal(f, S.fold_ids(23, 5, seed=1))
  assert not np.array_equal(f, S.fold_ids(23, 5, seed=2))
  assert sorted(S.fold_ids(3, 5)) == [0, 1, 2]  # Fewer images than folds: one image per fold.
  with pytest.raises(ValueError, match="2 folds"):
    S.fold_ids(10, 1)


def test_select_views_pads_a_short_cover_by_accuracy_then_rank():
  C = np.zeros((6, 5), bool)
  C[:4, 3] = True  # The cover is {3, 0}.
  C[4, 0] = True
  C[[0, 1], 2] = True  # Views 2 and 4 are each right twice: padding order by accuracy, ties by rank.
  C[[2, 3], 4] = True
  C[0, 1] = True
  assert S.select_views(C, 2) == [3, 0]
  assert S.select_views(C, 5) == [3, 0, 2, 4, 1]
  assert S.select_views(C, 4, rank=np.array([0, 1, 4, 2, 3])) == [3, 0, 4, 2]
  assert S.select_views(C, 9) == [3, 0, 2, 4, 1]  # No more views than the grid has.


def constructed():
  """58 images, 15 views. 30 'A' images: view 0 right (p .9). 15 'B': view 1 right (p .8), view 0 wrong
  (p .4). 13 'R': each solved only by its own view 2 + j (a view that memorises one image). Every fold has
  12 images at most, so on every fold's training images view 0 (>= 18 right) beats view 1 (<= 15, >= 3) beats
  each one-image view, and at least one R image is in training: the held-out third pick never helps."""
  na, nb, nr = 30, 15, 13
  n, t = na + nb + nr, 2 + nr
  labels = np.arange(n) % 500
  top1 = np.full((n, t), 999)
  p = np.full((n, t), 0.1)
  top1[:na, 0], p[:na, 0] = labels[:na], 0.9
  top1[:na, 1], p[:na, 1] = 998, 0.3
  top1[na:na + nb, 0], p[na:na + nb, 0] = 998, 0.4
  top1[na:na + nb, 1], p[na:na + nb, 1] = labels[na:na + nb], 0.8
  for j in range(nr):
    top1[na + nb + j, 2 + j], p[na + nb + j, 2 + j] = labels[na + nb + j], 0.2
  return top1, p, labels[:, None], n


def test_held_out_greedy_provably_picks_the_shared_views_not_the_memorising_ones():
  top1, p, labels, n = constructed()
  C = A.correctness(top1, labels)
  res = S.held_out_outcomes(C, top1, p, labels, budget=3, n_folds=5, seed=0)
  assert all(picks[:2] == [0, 1] and picks[2] >= 2 for picks in res["fold_picks"])
  assert res["in_sample_picks"] == [0, 1, 2]
  means = {k: v.mean(axis=0) for k, v in res.items() if k in S.CURVES}
  np.testing.assert_allclose(means["oracle_in_sample"], np.array([30, 45, 46]) / n)
  np.testing.assert_allclose(means["held_out_upper_bound"], np.array([30, 45, 45]) / n)  # Never the memoriser.
  # Max confidence and mean softmax: B images' view 1 (p .8, right) outweighs view 0 (p .4, wrong).
  np.testing.assert_allclose(means["held_out_max_confidence"], np.array([30, 45, 45]) / n)
  np.testing.assert_allclose(means["held_out_mean_softmax"], np.array([30, 45, 45]) / n)
  for seed in (1, 2, 3):  # Provable for any split.
    res = S.held_out_outcomes(C, top1, p, labels, budget=3, n_folds=5, seed=seed)
    np.testing.assert_allclose(res["held_out_upper_bound"].mean(0), np.array([30, 45, 45]) / n)


def test_max_confidence_ties_go_to_the_earlier_pick_like_analyses():
  C = np.array([[False, True, False]])
  p = np.array([[0.5, 0.5, 0.7]], np.float32)
  assert S.max_confidence_curve(C, p, [0, 1, 2]).tolist() == [[False, False, False]]
  assert S.max_confidence_curve(C, p, [1, 0]).tolist() == [[True, True]]
  top1 = np.array([[4, 5, 6]])
  assert A.most_confident_prediction(top1, p, [1, 0]).tolist() == [5]  # The same rule.


def test_sparse_mean_argmax_matches_the_dense_mean_when_top5_holds_all_the_mass():
  rng = np.random.default_rng(0)
  n, v, k, classes = 40, 7, 5, 12
  ids = np.stack([np.stack([rng.choice(classes, k, replace=False) for _ in range(v)]) for _ in range(n)])
  probs = rng.dirichlet(np.ones(k), size=(n, v))  # A fake model whose softmax lives on 5 classes.
  dense = np.zeros((n, v, classes))
  np.put_along_axis(dense, ids, probs, axis=2)
  np.testing.assert_array_equal(S.sparse_mean_argmax(ids, probs), dense.mean(1).argmax(1))
  # Ties go to the lowest class id, as np.argmax does; negative ids are empty entries.
  np.testing.assert_array_equal(S.sparse_mean_argmax(np.array([[5, 2, 9]]), np.array([[1.0, 1.0, 0.5]])), [2])
  np.testing.assert_array_equal(S.sparse_mean_argmax(np.array([[-1, 4], [-1, -1]]), np.ones((2, 2))), [4, -1])


def brute_force(C, top1, p, labels, budget, n_folds, seed):
  """The held-out curves by explicit loops over folds, budgets and images, with a dense 1000-way mean."""
  n = C.shape[0]
  folds = S.fold_ids(n, n_folds, seed)
  out = {c: np.zeros((n, budget), bool) for c in S.CURVES[1:]}
  for f in np.unique(folds):
    picks = S.select_views(C[folds != f], budget)
    for i in np.flatnonzero(folds == f):
      for k in range(1, budget + 1):
        v = picks[:k]
        out["held_out_upper_bound"][i, k - 1] = C[i, v].any()
        out["held_out_max_confidence"][i, k - 1] = C[i, v[int(np.argmax(p[i, v]))]]
        dense = np.zeros(1000)
        for view in v:
          dense[top1[i, view]] += p[i, view] / k
        out["held_out_mean_softmax"][i, k - 1] = np.argmax(dense) in labels[i]
  return out


def test_held_out_curves_match_brute_force_on_random_records():
  rng = np.random.default_rng(5)
  n, t = 37, 20
  labels = rng.integers(0, 6, (n, 1))
  top1 = rng.integers(0, 6, (n, t))  # Six classes: votes collide often.
  p = rng.uniform(0.1, 0.9, (n, t))
  C = A.correctness(top1, labels)
  res = S.held_out_outcomes(C, top1, p, labels, budget=8, n_folds=4, seed=3)
  ref = brute_force(C, top1, p, labels, 8, 4, 3)
  for c in S.CURVES[1:]:
    np.testing.assert_array_equal(res[c], ref[c], err_msg=c)
  assert (res["held_out_upper_bound"] >= res["held_out_max_confidence"]).all()


def test_confidence_selection_max_view_vote_and_weighted_vote_differ_as_constructed():
  # Image 0: v0 says 7 (p .5), v1 and v2 say 3 (p .4 each): max -> 7, weighted vote -> 3 (.8), vote -> 3.
  # Image 1: v0 says 7 (p .9), v1, v2 say 3 (p .3 each): max -> 7, weighted -> 7 (.9 > .6), vote -> 3.
  top1 = np.array([[7, 3, 3], [7, 3, 3]])
  p = np.array([[0.5, 0.4, 0.4], [0.9, 0.3, 0.3]])
  for truth, expect in ((3, {"max-prob view": [0, 0], "p_max-weighted vote": [1, 0], "vote": [1, 1]}),
                        (7, {"max-prob view": [1, 1], "p_max-weighted vote": [0, 1], "vote": [0, 0]})):
    labels = np.full((2, 1), truth)
    out = S.confidence_outcomes(A.correctness(top1, labels), top1, p, labels, one_crop=1)
    assert out["1-crop"].tolist() == [truth == 3] * 2
    for m, e in expect.items():
      assert out[m].tolist() == [bool(x) for x in e], (truth, m)


def test_record_held_out_json_intervals_best_fixed_set_and_top36():
  rng = np.random.default_rng(2)
  n, t = 60, len(GRID)
  labels = rng.integers(0, 20, (n, 1))
  good = [NAMES.index("LOC:1_1_Size:512"), NAMES.index("LOC:1_1_Size:224")]
  top1 = np.where(rng.random((n, t)) < 0.15, labels, 999)
  top1[:, good[0]] = np.where(rng.random(n) < 0.7, labels[:, 0], 998)  # Two views right most of the time.
  top1[:, good[1]] = np.where(rng.random(n) < 0.5, labels[:, 0], 997)
  p = np.where(top1 == labels, 0.8, 0.3) + rng.uniform(0, 0.1, (n, t))
  rec = make_records(top1, p, labels)
  out = S.record_held_out(rec, budget=36)
  assert json.loads(json.dumps(out)) == out
  assert out["budgets"] == list(range(1, 37)) and out["n_folds"] == 5
  curves = out["curves"]
  metrics = A.record_metrics(rec)
  assert curves["oracle_in_sample"]["accuracy"][35] == pytest.approx(metrics["top36_accuracy"])
  for c in S.CURVES:
    for acc, (lo, hi) in zip(curves[c]["accuracy"], curves[c]["ci95"]):
      assert lo <= acc <= hi and hi - lo < 0.35
  ub = np.array(curves["held_out_upper_bound"]["accuracy"])
  assert (np.diff(ub) >= 0).all()  # A union only grows with the budget.
  best = out["best_fixed"]
  assert best["method"] in S.NO_ORACLE and len(best["views"]) == best["k"]
  assert best["views"][0] == "LOC:1_1_Size:512"
  assert best["accuracy"] == max(max(curves[m]["accuracy"]) for m in S.NO_ORACLE)
  conf = out["confidence_selection"]
  assert set(conf) == set(S.CONFIDENCE_METHODS) and "delta_vs_1crop" not in conf["1-crop"]
  c1 = A.correctness(top1, labels)[:, ONE].mean()
  assert conf["1-crop"]["accuracy"] == pytest.approx(c1)
  for m in S.CONFIDENCE_METHODS[1:]:
    v = conf[m]
    assert v["delta_vs_1crop"] == pytest.approx(v["accuracy"] - c1)
    assert v["delta_ci95"][0] <= v["delta_vs_1crop"] <= v["delta_ci95"][1]
  assert set(S.headline_intervals(out)) == {"held_out/best_fixed"} | {f"confidence/{m}"
                                                                       for m in S.CONFIDENCE_METHODS[1:]}
  assert out == S.record_held_out(rec, budget=36)  # Seeded.
  table = study_report.held_out_markdown(out, "fake")
  assert "| 36 |" in table and " % [" in table and "LOC:1_1_Size:512" in table


def test_record_held_out_small_grids_and_tiny_sets():
  rng = np.random.default_rng(0)
  top1 = rng.integers(0, 3, (3, 9))
  rec = make_records(top1, rng.random((3, 9)), rng.integers(0, 3, (3, 1)))
  out = S.record_held_out(rec)
  assert out["budgets"] == list(range(1, 10)) and out["n_folds"] == 3  # Budget capped at the grid's 9 views.
  assert "1-crop" not in out["confidence_selection"]  # LOC:1_1_Size:256 is not among these 9 views.
  one = S.record_held_out(rec.select(np.array([0])))
  assert one["curves"] == {} and one["best_fixed"] is None and one["confidence_selection"]
  none = S.record_held_out(rec.select(np.array([], np.int64)))  # Every image unreadable: nothing to select.
  assert none["curves"] == {} and none["confidence_selection"]["vote"]["accuracy"] is None


def test_held_out_markdown_shows_the_chosen_budgets_and_the_last():
  """The held-out tables as the study job prints them (zoomjax.reports.study.held_out_markdown)."""
  top1, p, labels, _ = constructed()
  t = top1.shape[1]
  held = S.record_held_out(make_records(top1, p, labels))
  every = study_report.held_out_markdown(held, "m on d")
  assert every.startswith("**m on d**") and f"| {t} |" in every and "| 3 |" in every and "views per image" in every
  some = study_report.held_out_markdown(held, budgets=(1, 2))
  assert "| 2 |" in some and "| 3 |" not in some and f"| {t} |" in some  # The last budget is always shown.
  best = held["best_fixed"]
  assert html.interval(best["accuracy"], best["ci95"]) in some and all(f"`{v}`" in some for v in best["views"])
  for m, v in held["confidence_selection"].items():
    assert f"| {m} | {html.interval(v['accuracy'], v['ci95'])} |" in some
