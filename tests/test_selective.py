"""zoomjax.analysis.selective: risk-coverage, AURC and ECE on outcomes whose answers are computed by hand, ties
independent of image order, view agreement, and the record-level table."""
import dataclasses
import itertools
from typing import List

import numpy as np
import pytest

from zoomjax.analysis import metrics as A
from zoomjax.analysis import selective


def test_risk_coverage_and_aurc_by_hand():
  # Confidence order: 0.9 (right), 0.8 (wrong), 0.7 (right), 0.6 (wrong).
  correct = np.array([True, False, True, False])
  conf = np.array([0.9, 0.8, 0.7, 0.6])
  cov, risk = selective.risk_coverage(correct, conf)
  assert cov.tolist() == [0.25, 0.5, 0.75, 1.0]
  assert risk.tolist() == pytest.approx([0, 1 / 2, 1 / 3, 1 / 2])
  assert selective.aurc(correct, conf) == pytest.approx((0 + 1 / 2 + 1 / 3 + 1 / 2) / 4)
  # Best ranking of two rights and two wrongs: risks 0, 0, 1/3, 1/2.
  assert selective.excess_aurc(correct, conf) == pytest.approx((1 / 2 + 1 / 3 + 1 / 2) / 4 - (1 / 3 + 1 / 2) / 4)
  assert selective.excess_aurc(correct, correct.astype(float)) == pytest.approx(0.0)
  cov, risk = selective.risk_coverage(correct, conf, points=2)
  assert cov.tolist() == [0.5, 1.0] and risk.tolist() == pytest.approx([0.5, 0.5])


def test_ties_are_order_free_expectations():
  """One block of tied confidences: the AURC is the mean over every order of the block."""
  correct = np.array([True, False, False, True, True])
  conf = np.array([0.5, 0.5, 0.5, 0.9, 0.1])
  orders = []
  for perm in itertools.permutations([0, 1, 2]):
    order = [3] + list(perm) + [4]
    err = np.cumsum(~correct[order])
    orders.append(np.mean(err / np.arange(1, 6)))
  assert selective.aurc(correct, conf) == pytest.approx(np.mean(orders))
  shuffled = np.random.default_rng(0).permutation(5)
  assert selective.aurc(correct[shuffled], conf[shuffled]) == pytest.approx(selective.aurc(correct, conf))


def test_ece_fifteen_bins_by_hand():
  # Bin (9/15, 10/15] holds 0.62 (right) and 0.64 (wrong): |0.5 - 0.63|. Bin (14/15, 1] holds 1.0 and 0.95, both
  # right: |1 - 0.975|. Bin [0, 1/15] holds 0.0 (wrong): 0.
  correct = np.array([True, False, True, True, False])
  conf = np.array([0.62, 0.64, 1.0, 0.95, 0.0])
  want = (2 * abs(0.5 - 0.63) + 2 * abs(1 - 0.975) + 0) / 5
  assert selective.ece(correct, conf) == pytest.approx(want)
  assert selective.ECE_BINS == 15
  # Right-closed bins: 2/3 = 10/15 belongs to (9/15, 10/15], with 0.62, not to the next bin.
  assert selective.ece(np.array([True, False]), np.array([0.62, 2 / 3])) == pytest.approx(abs(0.5 - (0.62 + 2 / 3) / 2))
  assert selective.ece(np.ones(4, bool), np.ones(4)) == 0.0
  with pytest.raises(ValueError, match=r"\[0, 1\]"):
    selective.ece(np.ones(2, bool), np.array([0.5, 1.5]))


def test_view_agreement():
  top1 = np.array([[1, 1, 2, 3], [4, 4, 4, 4]])
  assert selective.view_agreement(top1, np.array([1, 5])).tolist() == [0.5, 0.0]
  assert selective.view_agreement(top1, np.array([3, 4])).tolist() == [0.25, 1.0]


@dataclasses.dataclass
class FakeRecords:
  """The fields `record_selective` reads (the Records accessors `all_views()`, `labels`, `view_names`)."""
  top1: np.ndarray
  p_max: np.ndarray
  crop_top1: np.ndarray
  crop_p_max: np.ndarray
  labels: np.ndarray
  view_names: List[str]

  def __len__(self):
    return self.top1.shape[0]

  def all_views(self):
    return (np.concatenate([self.top1, self.crop_top1], 1), np.concatenate([self.p_max, self.crop_p_max], 1), None,
            self.view_names + ["crop"] * self.crop_top1.shape[1])


def test_record_selective_by_hand():
  names = [A.view_name((128, 1, 1)), A.ONE_CROP_VIEW]
  # Image 0: label 7; views say 7 (0.6), 7 (0.9), crop 3 (0.5). Image 1: label 2; views 5 (0.8), 2 (0.4), crop 2.
  rec = FakeRecords(np.array([[7, 7], [5, 2]]), np.array([[0.6, 0.9], [0.8, 0.4]]), np.array([[3], [2]]),
                    np.array([[0.5], [0.3]]), np.array([[7], [2]]), names)
  out = selective.record_selective(rec, predictions={"mine": np.array([3, 2]),
                                                     "paired": (np.array([7, 5]), np.array([0.3, 0.9]))})
  m = out["methods"]
  assert out["ece_bins"] == 15 and out["num_agreement_views"] == 3
  assert m["1-crop"]["softmax"]["accuracy"] == 1.0  # The 1-crop (second view) says 7 and 2.
  assert m["1-crop"]["agreement"]["aurc"] == 0.0
  # max-prob view: image 0 -> view 1 (7, right, 0.9); image 1 -> view 0 (5, wrong, 0.8): ECE |1-0.9|/2 + |0-0.8|/2.
  assert m["max-prob view"]["softmax"]["ece"] == pytest.approx((0.1 + 0.8) / 2)
  assert m["max-prob view"]["softmax"]["risk_at"]["0.5"] == 0.0
  # vote: image 0 -> 7 (2 of 3 views), image 1 -> 2 (2 of 3).
  assert m["vote"]["agreement"]["accuracy"] == 1.0 and set(m["vote"]) == {"agreement"}
  # "mine": 3 on image 0 (wrong, agreement 1/3), 2 on image 1 (right, 2/3): ranked right first, aurc (0 + 1/2) / 2.
  assert m["mine"]["agreement"]["aurc"] == pytest.approx(0.25)
  assert m["mine"]["agreement"]["ece"] == pytest.approx((abs(0 - 1 / 3) + abs(1 - 2 / 3)) / 2)
  assert len(m["mine"]["agreement"]["curve"]["coverage"]) == 50
  # "paired": its own confidence ranks its error (image 1, 0.9) first: risks 1, 1/2.
  assert set(m["paired"]) == {"own", "agreement"}
  assert m["paired"]["own"]["aurc"] == pytest.approx(0.75) and m["paired"]["agreement"]["aurc"] == pytest.approx(0.25)
