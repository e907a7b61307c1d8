"""The zoom_sweep job end to end: tiny random model, 3 packaged photos, a 2-scale grid; resume after a failure."""
import json
import os

import numpy as np
import pytest

from configs import demo as demo_config
from configs import zoom_sweep as config_lib
from zoomjax.analysis import aggregators as G
from zoomjax.analysis import records as R
from zoomjax.jobs import zoom_sweep as job
from zoomjax.runtime import shards

pytestmark = pytest.mark.usefixtures("fast_compile_module")  # Compiles dominate; no parity check here.


def small_config(**overrides):
  c = config_lib.get_config("runlocal=1,data=demo_photos,limit=3,grid=224/256")
  c.shard_size = 2  # Shards {0, 1} and {2}.
  c.batch_size = 1
  c.view_chunk = 16  # 18 zoom views + 10 crops = 28 views -> 2 chunks of 14.
  c.gallery_size = 2
  for k, v in overrides.items():
    setattr(c, k, v)
  return c


class Boom(Exception):
  pass


@pytest.fixture(scope="module")
def built():
  return job.build(small_config())  # One model and one compiled step for every run of this module.


@pytest.fixture(scope="module")
def reference(tmp_path_factory, built):
  work = str(tmp_path_factory.mktemp("ref"))
  metrics = job.run(small_config(), work, built=built)
  return work, metrics


def test_job_outputs(reference):
  work, metrics = reference
  with open(os.path.join(work, "metrics.json")) as f:
    on_disk = json.load(f)
  for key in ("num_images", "one_crop_accuracy", "upper_bound_accuracy", "top36_accuracy", "min_cover_size",
              "anchor_upper_bound", "skipped_files", "aggregation", "disentangling", "accuracy_vs_scale"):
    assert key in on_disk, key
  assert on_disk["num_images"] == 3 and on_disk["num_views"] == 18
  lo, hi = on_disk["ci95"]["one_crop_accuracy"]  # 95 % bootstrap interval around the headline number.
  assert lo <= on_disk["one_crop_accuracy"] <= hi and "aggregation/10-crop mean" in on_disk["ci95"]
  assert on_disk["compile_time_s"] > 0  # The step compiled during this run (module-scoped `built`).
  assert np.asarray(on_disk["anchor_upper_bound"]).shape == (3, 3)
  assert set(on_disk["aggregation"]) >= {"zoom-in max", "zoom-in mean", "5-crop mean", "10-crop max"}
  assert on_disk["upper_bound_accuracy"] >= on_disk["top36_accuracy"] >= on_disk["one_crop_accuracy"]
  # Zoom without an oracle and per class (zoomjax.analysis.selection / .per_class), with their intervals.
  held = on_disk["held_out"]
  assert held["budgets"] == list(range(1, 19)) and held["n_folds"] == 3  # 18 views; 3 images, one per fold.
  assert held["curves"]["oracle_in_sample"]["accuracy"][-1] == pytest.approx(on_disk["upper_bound_accuracy"])
  assert len(held["best_fixed"]["views"]) == held["best_fixed"]["k"]
  assert "held_out/best_fixed" in on_disk["ci95"] and "confidence/max-prob view" in on_disk["ci95"]
  assert held["confidence_selection_views"] == 28
  assert sum(on_disk["per_class"]["columns"]["n"]) == 3
  rec = R.load(os.path.join(work, R.FINAL_FILE))
  assert rec.topk.shape == (3, 18, 10) and rec.crop_topk.shape == (3, 10, 10) and rec.agg_top5.shape == (3, 5, 5)
  assert list(rec.ids) == ["chelsea.png", "coffee.png", "rocket.jpg"]
  assert rec.labels.shape[1] == 3  # demo_photos are multi-label.
  assert np.all((rec.p_true >= 0) & (rec.p_true <= rec.p_max + 1e-6))
  # The richer records: top-10 probabilities (float16, descending, the first is p_max) and the entropy, which
  # is at least that of any distribution with those top-10 probabilities and at most log(1000).
  assert rec.topk_p.dtype == np.float16 and rec.entropy.dtype == np.float32 and rec.crop_entropy.shape == (3, 10)
  assert np.all(np.diff(rec.topk_p.astype(np.float32), axis=-1) <= 0)
  np.testing.assert_allclose(rec.topk_p[..., 0], rec.p_max, rtol=1e-3)
  p = rec.topk_p.astype(np.float64)
  assert np.all(rec.entropy >= -(p * np.log(np.maximum(p, 1e-30))).sum(-1) - 1e-3)
  assert np.all(rec.entropy <= np.log(1000) + 1e-4)
  # Every aggregator over every view set, with its interval and its paired test against the 1-crop.
  agg = on_disk["aggregators"]
  assert (agg["k"], agg["rho"], agg["missing"]) == (10, 0.1, {}) and set(agg["sets"]) == {"grid", "zoom-in",
                                                                                          "10-crop"}
  grid = agg["sets"]["grid"]
  assert set(grid["accuracy"]) == set(G.AGGREGATORS) and grid["num_views"] == 18
  assert grid["accuracy"]["1-crop"] == pytest.approx(on_disk["one_crop_accuracy"])
  assert grid["accuracy"]["oracle"] == pytest.approx(on_disk["upper_bound_accuracy"])
  assert set(grid["paired"]) == set(G.ONLINE) and grid["paired"]["zero"]["n"] == 3
  assert "zero vs 1-crop: " in open(os.path.join(work, "report.html"), encoding="utf-8").read()
  # The max of a mean of softmaxes is at most the mean of their maxima (zoom-224 = the 9 views at S=224).
  z224 = [i for i, n in enumerate(rec.view_names) if n.endswith("_Size:224")]
  sets = list(rec.agg_names)
  assert np.all(rec.agg_p[:, sets.index("zoom-224"), 0] <= rec.p_max[:, z224].mean(1) + 1e-5)
  assert np.all(rec.agg_p[:, sets.index("10-crop"), 0] <= rec.crop_p_max.mean(1) + 1e-5)
  assert np.all(rec.agg_p[:, sets.index("zoom-out"), 0] == 0)  # No scale below 224 in this grid.
  assert os.path.exists(os.path.join(work, "config.json"))
  assert os.path.exists(os.path.join(work, "report.html"))
  # The image explorer of the finished sweep, linked from the report (its page is tested in test_explorer.py).
  assert on_disk["explorer"] == os.path.join(work, "explorer", "explorer.html") and os.path.exists(on_disk["explorer"])
  assert 'href="explorer/explorer.html"' in open(os.path.join(work, "report.html")).read()
  with open(os.path.join(work, "explorer", "explorer_data.js")) as f:
    assert f.read().startswith("window.EXPLORER_DATA = ")
  assert any(f.startswith("events.out.tfevents") for f in os.listdir(work))
  assert sorted(os.listdir(os.path.join(work, shards.SHARD_DIR))) == ["shard_000000.npz", "shard_000001.npz"]


def test_resume_after_failure_gives_identical_arrays(reference, built, tmp_path):
  ref_work, _ = reference
  work = str(tmp_path)

  def fail_after_first(k, path):
    raise Boom(f"injected failure after shard {k}")

  with pytest.raises(Boom):
    job.run(small_config(), work, after_shard=fail_after_first, built=built)
  first = os.path.join(work, shards.SHARD_DIR, "shard_000000.npz")
  assert os.listdir(os.path.join(work, shards.SHARD_DIR)) == ["shard_000000.npz"]
  assert not os.path.exists(os.path.join(work, "metrics.json"))
  before = os.stat(first)
  written = []
  job.run(small_config(), work, after_shard=lambda k, p: written.append(k), built=built)
  assert written == [1]  # Only the missing shard was computed.
  after = os.stat(first)
  assert (before.st_mtime_ns, before.st_ino) == (after.st_mtime_ns, after.st_ino)
  a = R.load(os.path.join(ref_work, R.FINAL_FILE))
  b = R.load(os.path.join(work, R.FINAL_FILE))
  for f in R.PER_IMAGE + R.NAMES:
    np.testing.assert_array_equal(getattr(a, f), getattr(b, f), err_msg=f)


def test_resume_refuses_a_different_config(reference, built):
  work, _ = reference
  with pytest.raises(ValueError, match="grid"):
    job.run(small_config(grid=config_lib.get_config("grid=64/256").grid), work, built=built)
  with pytest.raises(ValueError, match="record_k"):  # k is part of the resume key.
    job.run(small_config(record_k=5), work, built=built)


def test_configs_parse():
  c = config_lib.get_config("model=resnet50,data=folder:/x/y,grid=paper,limit=20,paper=IN")
  assert c.model.name == "resnet50" and c.data.name == "folder:/x/y" and c.limit == 20
  assert len(c.grid.scales) == 36 and c.paper_dataset == "IN"
  assert config_lib.get_config("grid=64/128").grid.scales == (64, 128)
  with pytest.raises(ValueError, match="unknown config arg 'modle'"):
    config_lib.get_config("modle=x")
  with pytest.raises(ValueError, match="grid="):
    config_lib.get_config("grid=huge")
  with pytest.raises(ValueError, match="positive"):
    config_lib.get_config("grid=0/224")
  with pytest.raises(ValueError, match="limit='x': expected int"):
    config_lib.get_config("limit=x")
  assert config_lib.get_config("checkpoint=/w/r50.pth,model=resnet50").model.checkpoint == "/w/r50.pth"
  d = demo_config.get_config()
  assert d.model.name == "efficientnet_lite0" and d.data.name == "demo_photos" and len(d.grid.scales) == 36
  assert not d.model.random_init


def test_real_weights_on_real_photos(val100_dir, tmp_path):
  """CI's real-data check: EfficientNet-Lite0 on the first 4 ImageNet val photos, 2 scales (18 views)."""
  c = config_lib.get_config(f"model=efficientnet_lite0,data=folder:{val100_dir},grid=224/256,limit=4,paper=IN")
  c.canvas, c.report, c.shard_size = "max", False, 4
  metrics = job.run(c, str(tmp_path))
  # The first four val images (sea snake, garter snake, porcupine, vulture): Lite0 gets at least 3 with the
  # 1-crop (measured: all 4), and the upper bound can only add.
  assert metrics["num_images"] == 4
  assert metrics["one_crop_accuracy"] >= 0.75
  assert metrics["upper_bound_accuracy"] >= metrics["one_crop_accuracy"]
  assert metrics["aggregation"]["10-crop mean"] >= 0.5
  assert metrics["paper"] == {}  # The paper has no EfficientNet-Lite0 numbers.
