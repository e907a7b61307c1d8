"""The study's analyses on correctness matrices whose answers are known by construction (docs/study.md §2)."""
import numpy as np
import pytest

from zoomjax import zoom
from zoomjax.analysis import metrics as A
from zoomjax.analysis import paper_numbers as P
from zoomjax.analysis import study as ST
from zoomjax.analysis import sweep_results
from zoomjax.errors import UserError

SCALES = (64, 224, 256, 512)
GRID = [(s, r, c) for s in SCALES for r in range(3) for c in range(3)]  # scale-major like ZoomGrid.
NAMES = [A.view_name(t) for t in GRID]


def col(s, r, c):
  return GRID.index((s, r, c))


def test_view_names_round_trip():
  assert A.view_name((256, 1, 2)) == "LOC:1_2_Size:256"
  assert A.parse_view_name("LOC:1_2_Size:256") == (256, 1, 2)
  with pytest.raises(ValueError, match="not a zoom view name"):
    A.parse_view_name("5CROP:tl")


def test_correctness_multi_label_uses_label_sets():
  pred = np.array([[3, 7], [5, 9]])
  labels = np.array([[3, -1], [9, 5]])  # Image 1 is multi-label.
  np.testing.assert_array_equal(A.correctness(pred, labels), [[True, False], [True, True]])
  # -1 padding never matches a -1 prediction (empty aggregation sets are stored as -1).
  assert not A.correctness(np.array([[-1]]), np.array([[4, -1]]))[0, 0]


def test_one_crop_upper_bound():
  C = np.zeros((4, len(GRID)), bool)
  C[0, col(256, 1, 1)] = True  # 1-crop right.
  C[1, col(512, 0, 0)] = True  # Only a zoom-in corner.
  C[2, col(64, 2, 2)] = True
  assert A.one_crop_accuracy(C, NAMES) == 0.25
  assert A.upper_bound(C) == 0.75
  with pytest.raises(ValueError, match="LOC:1_1_Size:256"):
    A.one_crop_accuracy(C[:, :9], NAMES[:9])


def test_greedy_cover_is_greedy_not_optimal():
  # Classic: optimum is {v1, v2} (2 views) but greedy first takes the biggest set v0 and needs 3.
  C = np.zeros((6, 3), bool)
  C[[0, 1, 2, 3], 0] = True  # v0 covers 4 images.
  C[[0, 1, 4], 1] = True  # v1 covers 3.
  C[[2, 3, 5], 2] = True  # v2 covers 3; v1 + v2 cover everything.
  picks, gains = A.greedy_min_cover(C)
  assert picks == [0, 1, 2] and gains == [4, 1, 1]
  np.testing.assert_allclose(A.coverage_curve(gains, 6), [4 / 6, 5 / 6, 1.0])


def test_greedy_cover_stops_at_coverable_and_ties():
  C = np.zeros((5, 4), bool)
  C[0, [1, 3]] = True
  C[1, [1, 3]] = True
  # Images 2..4 are unsolvable: the cover stops once the solvable ones are covered.
  picks, _ = A.greedy_min_cover(C)
  assert picks == [1]  # Tie between views 1 and 3: the first in rank order wins.
  picks, _ = A.greedy_min_cover(C, rank=np.array([3, 2, 1, 0]))
  assert picks == [3]


def test_paper_tie_order_is_anchor_major_then_insertion_order():
  grid = [(s, r, c) for s in (122, 224, 256) for r in range(3) for c in range(3)]
  rank = A.tie_order(grid, "paper")
  order = [grid[i] for i in np.argsort(rank)]
  # Anchor (0, 0) first; within it 224 and 256 (hand-picked list) come before 122 (added by linspace).
  assert order[:3] == [(224, 0, 0), (256, 0, 0), (122, 0, 0)]
  assert order[3] == (224, 0, 1)
  np.testing.assert_array_equal(A.tie_order(grid, "grid"), np.arange(len(grid)))
  # Two views solving the same images: 'grid' picks the first scale, 'paper' the paper's row order.
  C = np.zeros((2, len(grid)), bool)
  C[:, grid.index((122, 1, 1))] = True
  C[:, grid.index((256, 0, 2))] = True
  assert grid[A.greedy_min_cover(C, A.tie_order(grid, "grid"))[0][0]] == (122, 1, 1)
  assert grid[A.greedy_min_cover(C, A.tie_order(grid, "paper"))[0][0]] == (256, 0, 2)


def test_top36_union_of_first_36_picks():
  rng = np.random.default_rng(0)
  n, t = 200, 60
  # View v solves exactly image v for the first 50 views (each pick gains 1), others random sparse.
  C = np.zeros((n, t), bool)
  C[np.arange(50), np.arange(50)] = True
  C[50:120, 55] = True  # One big view: picked first.
  C[120:140, 56] = rng.random(20) < 2  # All 20.
  summary = A.summary(C, [(300 + v, 1, 1) for v in range(t)], tie="grid")
  # Picks: v55 (70), v56 (20), then 34 singletons -> 70 + 20 + 34 images.
  assert summary["min_cover"][:2] == ["LOC:1_1_Size:355", "LOC:1_1_Size:356"]
  assert summary["top36_accuracy"] == pytest.approx((70 + 20 + 34) / n)
  assert summary["min_cover_size"] == 52
  assert summary["upper_bound_accuracy"] == pytest.approx(140 / n)


def test_anchor_upper_bound_rows_top_to_bottom():
  C = np.zeros((4, len(GRID)), bool)
  C[0, col(512, 0, 2)] = True  # Top-right anchor only.
  C[1, col(64, 0, 2)] = True
  C[1, col(224, 1, 1)] = True
  C[2, col(256, 2, 0)] = True  # Bottom-left.
  hm = A.anchor_upper_bound(C, GRID)
  expected = np.zeros((3, 3))
  expected[0, 2] = 0.5
  expected[1, 1] = 0.25
  expected[2, 0] = 0.25
  np.testing.assert_allclose(hm, expected)


def test_accuracy_vs_scale_best_of_anchors_and_centre():
  C = np.zeros((2, len(GRID)), bool)
  C[0, col(512, 0, 0)] = True
  C[1, col(512, 1, 1)] = True
  C[1, col(64, 1, 1)] = True
  out = A.accuracy_vs_scale(C, GRID)
  assert out["scales"] == list(SCALES)
  assert out["best_of_anchors"] == [0.5, 0.0, 0.0, 1.0]
  assert out["centre"] == [0.5, 0.0, 0.0, 0.5]


def test_disentangle_groups_cover_and_quirk():
  C = np.zeros((5, len(GRID)), bool)
  C[0, col(512, 0, 0)] = True  # in only.
  C[1, col(64, 1, 1)] = True  # out only.
  C[2, col(224, 2, 2)] = True  # 224 only.
  C[3, [col(512, 1, 1), col(64, 0, 0)]] = True  # in and out.
  # Image 4 unsolved.
  cover, _ = A.greedy_min_cover(C)
  # All gains are 1, so ties decide: grid order puts (64, 0, 0) first, which covers image 3 from zoom-out.
  assert [GRID[v] for v in cover] == [(64, 0, 0), (64, 1, 1), (224, 2, 2), (512, 0, 0)]
  d = A.disentangle(C, GRID, cover)
  assert d == pytest.approx({"ub_in": 1 / 5, "ub_out": 2 / 5, "ub_224": 1 / 5,
                             "excl_in": 1 / 5, "excl_out": 2 / 5, "excl_224": 1 / 5})
  # Restricting to a foreign cover (the authors' CLIP-cover quirk) changes the exclusive columns only.
  foreign = [col(512, 0, 0), col(64, 1, 1)]
  q = A.disentangle(C, GRID, cover, exclusive_cover=foreign)
  assert q["excl_in"] == pytest.approx(1 / 5) and q["excl_out"] == pytest.approx(1 / 5)
  assert q["excl_224"] == 0.0
  assert q["ub_in"] == d["ub_in"]
  # Without the own-cover restriction, image 3 is solved by in and out: exclusive to neither.
  full = A.disentangle(C, GRID, list(range(len(GRID))))
  assert full["excl_in"] == pytest.approx(1 / 5) and full["ub_in"] == pytest.approx(2 / 5)


def test_aggregation_max_and_mean():
  # 3 views; image 0: most confident view (v2) says 7 (right); image 1: most confident says 1 (wrong).
  top1 = np.array([[1, 2, 7], [5, 1, 5]])
  p_max = np.array([[0.2, 0.3, 0.9], [0.4, 0.8, 0.3]])
  labels = np.array([[7], [5]])
  sets = {"a": [0, 1, 2], "b": [0], "empty": []}
  mean_pred = {"a": np.array([7, 5]), "b": np.array([1, 5])}
  acc = A.aggregation_accuracy(top1, p_max, labels, sets, mean_pred)
  assert acc == {"a max": 0.5, "a mean": 1.0, "b max": 0.5, "b mean": 0.5}


def test_best_view_and_unsolved():
  C = np.array([[False, True, True], [False, False, False]])
  p_true = np.array([[0.9, 0.4, 0.6], [0.1, 0.2, 0.3]])
  np.testing.assert_array_equal(A.best_view(C, p_true), [2, -1])
  solved = {"m1": {"a": True, "b": False, "c": False}, "m2": {"a": False, "b": False, "c": True, "d": False}}
  assert A.unsolved_by_all(solved) == ["b"]


def test_top36_anchor_counts():
  cover = [col(512, 1, 1), col(256, 1, 1), col(64, 0, 2)]
  counts = A.top36_anchor_counts(cover, GRID, k=2)
  assert counts[1, 1] == 2 and counts.sum() == 2


def test_paper_numbers_consistent():
  for model, row in P.UPPER_BOUND.items():
    for ds, ub in row.items():
      assert P.TOP36[model][ds] <= ub, (model, ds)
      if model in P.ONE_CROP:
        assert P.ONE_CROP[model][ds] <= P.TOP36[model][ds], (model, ds)
  for model, per_ds in P.ANCHOR_UPPER_BOUND.items():
    for ds, grid in per_ds.items():
      assert max(max(r) for r in grid) <= P.UPPER_BOUND[model][ds] + 1e-9, (model, ds)
  assert P.lookup("resnet50", "IN") == {"one_crop_accuracy": 75.75, "upper_bound_accuracy": 96.78,
                                        "top36_accuracy": 94.46, "min_cover_size": 234}
  assert P.lookup("efficientnet_b0", "IN")["min_cover_size"] == 219
  assert P.lookup("efficientnet_lite0", "IN") == {}
  assert P.paper_dataset_key("imagenet_a") == "IN-A"
  assert P.paper_dataset_key("imagenet2012_real") == "ReaL"
  assert P.paper_dataset_key("imagenet2012_real/union") == "IN+ReaL"
  assert P.paper_dataset_key("imagenet2012_real", variant="union") == "IN+ReaL"
  assert P.paper_dataset_key("folder:/x", override="IN") == "IN"
  with pytest.raises(ValueError, match="paper_dataset"):
    P.paper_dataset_key("folder", override="imagenet")


def test_unsolved_over_runs_counts_only_images_every_run_saw():
  """analysis.study over per-image solved flags: image 3 no run solves; b never saw image 2 (not unsolved)."""
  per = [{"ids": np.array(["i0", "i1", "i2", "i3"]), "solved": np.array([True, True, False, False])},
         {"ids": np.array(["i0", "i1", "i3"]), "solved": np.array([False, True, False])}]
  counts = ST.solved_counts(per)
  assert counts["ids"] == ["i0", "i1", "i3"] and counts["count"].tolist() == [1, 2, 0]
  assert counts["solved"].tolist() == [[True, True, False], [False, True, False]]
  assert counts["not_in_every_run"] == ["i2"]
  u = ST.unsolved_summary(per, ["a", "b"], draws=200, seed=0)
  assert u["unsolved_ids"] == ["i3"] and u["num_common_images"] == 3
  assert u["unsolved_fraction"] == pytest.approx(1 / 3) and u["images_solved_by_exactly"] == [1, 1, 1]
  assert u["ci95"] == A.bootstrap_interval(1 / 3, 3, draws=200, seed=0) and u["not_in_every_run"] == ["i2"]


def test_centre_share_and_anchor_summary():
  a = np.zeros((3, 3), int)
  a[1, 1], a[0, 0] = 3, 1
  b = np.zeros((3, 3), int)
  b[2, 2] = 4
  assert ST.centre_share(a) == pytest.approx(0.75) and ST.centre_share(b) == 0.0
  assert ST.centre_share(np.zeros((3, 3))) is None and ST.centre_share(np.ones((2, 2))) is None  # No picks; even.
  small = np.zeros((5, 5), int)
  small[2, 2] = 2
  rows = [{"top_k_anchor_counts": c.tolist()} for c in (a, b, small)]
  three, five = ST.anchor_summary(rows)
  assert three["counts"] == (a + b).tolist() and three["runs"] == [0, 1] and five["runs"] == [2]
  assert three["centre_share"] == pytest.approx(3 / 8) and three["mean_per_run_centre_share"] == pytest.approx(0.375)
  assert three["uniform_share"] == pytest.approx(1 / 9) and three["paper_centre_share"] == pytest.approx(0.2665)
  assert five["centre_share"] == 1.0


def _sweep(workdir, name, fingerprint, scales=(224, 256), model="m"):
  return sweep_results.Sweep(workdir, {"grid": {"scales": list(scales), "anchors": 3, "crop": 224},
                                       "model": {"name": model}},
                             {"name": name, "fingerprint": fingerprint, "num_images": 2}, {"paper_dataset": None})


def test_group_sweeps_by_dataset_and_grid():
  runs = [_sweep("w/a", "folder:/x/val", "f1"), _sweep("w/b", "folder:/x/val", "f1", model="n"),
          _sweep("w/c", "folder:/x/val", "f1", scales=zoom.PAPER_SCALES), _sweep("w/d", "demo_photos", "f2"),
          _sweep("w/e", "folder:/x/val", "f1")]
  groups = ST.group_sweeps(runs)
  assert [g["runs"] for g in groups] == [[0, 1, 4], [2], [3]]
  assert [g["name"] for g in groups] == ["folder:val · 224/256 x 3x3", "folder:val · paper x 3x3", "demo_photos"]
  assert [g["key"] for g in groups] == ["folder_val_224_256_x_3x3", "folder_val_paper_x_3x3", "demo_photos"]
  assert ST.run_labels(runs, groups) == ["m [a]", "n", "m", "m", "m [e]"]  # Same model twice in one group.
  with pytest.raises(UserError, match="w/a and w/x both swept folder:/x/val but over different images"):
    ST.group_sweeps(runs[:1] + [_sweep("w/x", "folder:/x/val", "f9")])
  with pytest.raises(UserError, match="w/c is of another grid"):
    ST.group_sweeps(runs[:3], mixed="refuse")
  with pytest.raises(UserError, match="config.mixed"):
    ST.group_sweeps(runs, mixed="merge")


def test_bootstrap_intervals_are_seeded_and_match_resampling():
  rng = np.random.default_rng(3)
  correct = rng.random(400) < 0.72
  p = float(correct.mean())
  fast = A.bootstrap_interval(p, len(correct))
  slow = A.bootstrap_mean_interval(correct)
  assert fast == A.bootstrap_interval(p, len(correct)) and slow == A.bootstrap_mean_interval(correct)  # Seeded.
  assert fast[0] < p < fast[1] and slow[0] < p < slow[1]
  # Both estimate the same interval: the normal approximation's half-width is 1.96 * sqrt(p (1 - p) / n).
  half = 1.96 * np.sqrt(p * (1 - p) / len(correct))
  for lo, hi in (fast, slow):
    assert abs((hi - lo) / 2 - half) < 0.15 * half
  assert abs(fast[0] - slow[0]) < 0.015 and abs(fast[1] - slow[1]) < 0.015
  assert A.bootstrap_interval(1.0, 10) == [1.0, 1.0] and A.bootstrap_interval(None, 10) is None
  # Headline metrics carry them.
  m = A.with_intervals({"one_crop_accuracy": 0.5, "upper_bound_accuracy": 0.9, "top36_accuracy": None,
                        "aggregation": {"zoom-in mean": 0.6}}, 100)
  assert set(m["ci95"]) == {"one_crop_accuracy", "upper_bound_accuracy", "aggregation/zoom-in mean"}
  lo, hi = m["ci95"]["one_crop_accuracy"]
  assert 0.39 < lo < 0.42 and 0.58 < hi < 0.61  # 50 % of 100 images: about [40, 60].
