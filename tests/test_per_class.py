"""Per-class analyses on fake records whose per-class answers are known by construction, and against an explicit
loop over classes on random multi-label records."""
import json

import numpy as np
import pytest

from test_selection import GRID, NAMES, ONE, make_records
from zoomjax.analysis import metrics as A
from zoomjax.analysis import per_class as PC


def v(name):
  return NAMES.index(name)


def constructed():
  """13 images. Class 5: 1-crop right on 2 of 4, one more rescued at anchor 0_2, one never solved. Class 7: the
  1-crop wrong on all 3, all rescued at anchor 2_0. Class 9: 1-crop right on both (image 8 is also labelled 7).
  Class 11: rescued at 0_0 and 2_2 alike (tie -> row-major). Class 13: right at 0_0 and the centre (tie ->
  centre). Class 15: wrong, never solved. Image 11 has no label."""
  n, t = 13, len(GRID)
  labels = np.full((n, 2), -1)
  labels[:, 0] = [5, 5, 5, 5, 7, 7, 7, 9, 9, 11, 13, -1, 15]
  labels[8, 1] = 7
  top1 = np.full((n, t), 999)
  top1[[0, 1], ONE] = 5
  top1[2, v("LOC:0_2_Size:512")] = 5
  top1[[4, 5], v("LOC:2_0_Size:64")] = 7
  top1[6, v("LOC:2_0_Size:512")] = 7
  top1[[7, 8], ONE] = 9
  top1[9, [v("LOC:0_0_Size:224"), v("LOC:2_2_Size:224")]] = 11
  top1[10, [v("LOC:0_0_Size:224"), ONE]] = 13
  return make_records(top1, np.full((n, t), 0.5), labels)


def test_per_class_known_answers_first_label():
  rec = constructed()
  out = PC.record_per_class(rec)
  assert json.loads(json.dumps(out)) == out
  assert out["by"] == "first" and out["num_classes"] == 6
  assert out["num_multi_label_images"] == 1 and out["num_unlabelled_images"] == 1
  rows = {r["class"]: r for r in PC.rows_of(out, [5, 7, 9, 11, 13, 15])}
  assert (rows[5]["n"], rows[5]["one_crop"], rows[5]["upper_bound"]) == (4, 0.5, 0.75)
  assert (rows[5]["wrong"], rows[5]["rescued"], rows[5]["rescue_rate"], rows[5]["best_anchor"]) == (2, 1, 0.5, "1_1")
  assert (rows[7]["n"], rows[7]["one_crop"], rows[7]["rescue_rate"], rows[7]["best_anchor"]) == (3, 0.0, 1.0, "2_0")
  assert rows[9]["rescue_rate"] is None and rows[9]["one_crop"] == 1.0  # Never wrong: no rate.
  assert rows[11]["best_anchor"] == "0_0" and rows[13]["best_anchor"] == "1_1"  # Ties: centre, then row-major.
  assert rows[15]["upper_bound"] == 0.0 and rows[15]["best_anchor"] == ""
  assert out["most_rescued"] == [7, 11, 5]  # Rate, then more mistakes first; 15 rescued nothing.
  assert out["least_rescued"] == [15, 5, 7, 11]
  most, least = PC.rescue_ranking(PC.per_class_table(A.correctness(rec.top1, rec.labels), rec.labels, GRID, ONE),
                                  top=2, min_wrong=2)
  assert most == [7, 5] and least == [5, 7]


def test_per_class_every_label_counts_multi_label_images_in_each_class():
  out = PC.record_per_class(constructed(), by="every")
  seven = PC.rows_of(out, [7])[0]
  assert (seven["n"], seven["one_crop"], seven["wrong"], seven["rescued"]) == (4, 0.25, 3, 3)  # + image 8.
  assert PC.rows_of(out, [9])[0]["n"] == 2
  with pytest.raises(ValueError, match="first"):
    PC.class_rows(np.zeros((2, 1), int), by="some")


def test_per_class_matches_a_loop_over_classes():
  rng = np.random.default_rng(4)
  n, t = 80, len(GRID)
  labels = np.full((n, 3), -1)
  labels[:, 0] = rng.integers(0, 6, n)
  extra = rng.random(n) < 0.3
  labels[extra, 1] = (labels[extra, 0] + 1) % 6  # Multi-label images.
  top1 = rng.integers(0, 8, (n, t))
  C = A.correctness(top1, labels)
  for by in PC.BY:
    table = PC.per_class_table(C, labels, GRID, ONE, by=by)
    for q, c in enumerate(table["class"]):
      members = labels[:, 0] == c if by == "first" else (labels == c).any(1)
      Cc = C[members]
      wrong = ~Cc[:, ONE]
      assert table["n"][q] == members.sum()
      assert table["one_crop"][q] == pytest.approx(Cc[:, ONE].mean())
      assert table["upper_bound"][q] == pytest.approx(Cc.any(1).mean())
      assert table["rescued"][q] == (wrong & Cc.any(1)).sum() and table["wrong"][q] == wrong.sum()
      anchor = A.anchor_upper_bound(Cc, GRID)
      best = anchor.max()
      assert anchor[tuple(int(x) for x in table["best_anchor"][q].split("_"))] == best


def test_per_class_without_a_one_crop_view():
  top1 = np.full((2, 9), 3)
  rec = make_records(top1, np.full((2, 9), 0.5), [[3], [4]])  # 9 views at S=64: no LOC:1_1_Size:256.
  out = PC.record_per_class(rec)
  assert out["columns"]["one_crop"] == [None, None] and out["columns"]["upper_bound"] == [1.0, 0.0]
  assert out["most_rescued"] == [] and out["least_rescued"] == []
