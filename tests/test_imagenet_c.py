"""mCE arithmetic against AlexNet's published table (zoomjax.analysis.corruption) and the ImageNet-C driver
(configs/imagenet_c.py, zoomjax.jobs.imagenet_c) over the 15 x 5 grid on 2 tiny photos."""
import json
import os

import numpy as np
import pytest
from PIL import Image

from zoomjax.analysis import corruption as C
from zoomjax.configs import imagenet_c as config_module
from zoomjax.data import corruptions as data_corruptions
from zoomjax.errors import UserError

# AlexNet's corruption errors averaged over the 5 severities, as quoted with the benchmark (the CE denominators).
PUBLISHED_CE = {
    "gaussian_noise": 0.886428, "shot_noise": 0.894468, "impulse_noise": 0.922640, "defocus_blur": 0.819880,
    "glass_blur": 0.826268, "motion_blur": 0.785948, "zoom_blur": 0.798360, "snow": 0.866816, "frost": 0.826572,
    "fog": 0.819324, "brightness": 0.564592, "contrast": 0.853204, "elastic_transform": 0.646056,
    "pixelate": 0.717840, "jpeg_compression": 0.606500}


def test_alexnet_table_matches_the_published_means():
  assert tuple(C.ALEXNET_ERRORS) == C.CORRUPTIONS == data_corruptions.CORRUPTIONS
  for name, ce in PUBLISHED_CE.items():
    assert len(C.ALEXNET_ERRORS[name]) == 5
    assert abs(np.mean(C.ALEXNET_ERRORS[name]) - ce) < 5e-7, name


def test_alexnet_scores_100_by_construction():
  grid = {c: dict(zip(range(1, 6), e)) for c, e in C.ALEXNET_ERRORS.items()}
  s = C.summary(grid, clean_error=C.ALEXNET_CLEAN_ERROR)
  assert s["complete"] and s["mce"] == pytest.approx(1.0, abs=1e-12)
  assert s["relative_mce"] == pytest.approx(1.0, abs=1e-12)
  assert s["mean_error_by_severity"][5] == pytest.approx(np.mean([e[4] for e in C.ALEXNET_ERRORS.values()]))


def test_hand_computed_example():
  """Two corruptions at severities 4 and 5, clean error 0.2, worked out by hand."""
  grid = {"fog": {4: 0.5, 5: 0.6}, "contrast": {5: 0.8, 4: 0.7}}
  s = C.summary(grid, clean_error=0.2)
  ce_fog = (0.5 + 0.6) / (0.87260 + 0.94500)
  ce_con = (0.7 + 0.8) / (0.97760 + 0.99270)
  assert s["corruptions"] == ["fog", "contrast"]  # The benchmark's order.
  assert s["ce"]["fog"] == pytest.approx(ce_fog, abs=1e-12)
  assert s["mce"] == pytest.approx((ce_fog + ce_con) / 2, abs=1e-12)
  rel_fog = (0.3 + 0.4) / (0.87260 + 0.94500 - 2 * 0.4345)
  rel_con = (0.5 + 0.6) / (0.97760 + 0.99270 - 2 * 0.4345)
  assert s["relative_mce"] == pytest.approx((rel_fog + rel_con) / 2, abs=1e-12)
  assert s["mean_error_by_severity"] == {4: pytest.approx(0.6), 5: pytest.approx(0.7)}
  assert not s["complete"]
  assert C.summary({"saturate": {5: 0.4}})["mce"] is None  # Held-out corruptions have no AlexNet errors.


@pytest.mark.parametrize("arg,message", [
    ("corruptions=fogg", "corruptions='fogg'.*gaussian_noise"),
    ("severities=6", "severities='6': use integers 1-5"),
    ("source=cloud", "source='cloud' is not one of generated, released"),
])
def test_bad_args_are_one_line(arg, message):
  with pytest.raises(UserError, match=message):
    config_module.get_config(arg)


@pytest.fixture(scope="module")
def grid_run(tmp_path_factory, fast_compile_module):  # Job plumbing: compile time dominates.
  from zoomjax.jobs import imagenet_c  # pylint: disable=import-outside-toplevel
  workdir = str(tmp_path_factory.mktemp("imagenet_c"))
  # Stand-ins for the benchmark's frost pictures, which ship with corrupt-tta, not with zoomjax.
  frost_dir = tmp_path_factory.mktemp("frost")
  for k, n in enumerate(("frost1.png", "frost2.png", "frost3.png", "frost4.jpg", "frost5.jpg", "frost6.jpg")):
    Image.fromarray(np.full((240, 250, 3), 30 * k, np.uint8)).save(frost_dir / n)
  config = config_module.get_config("runlocal")
  config.compilation_cache_dir = "off"
  with pytest.MonkeyPatch.context() as mp:
    mp.setattr(data_corruptions, "frost_pictures", lambda frost_dir_=None: [
        str(frost_dir / n) for n in ("frost1.png", "frost2.png", "frost3.png", "frost4.jpg", "frost5.jpg",
                                     "frost6.jpg")])
    first = imagenet_c.run(config, workdir)
    second = imagenet_c.run(config, workdir)
  return workdir, first, second


def test_driver_runs_the_15_by_5_grid(grid_run):
  workdir, results, _ = grid_run
  assert len(results["cells"]) == 1 + 15 * 5
  assert results["cells"]["clean"]["dataset"] == "demo_photos+clean"
  for name, cell in results["cells"].items():
    assert cell["num_images"] == 2 and cell["images_this_run"] == 2, name
    assert 0.0 <= cell["error"] <= 1.0
  assert results["cells"]["fog-5"]["dataset"] == "demo_photos+fog/5"
  s = results["scores"]
  assert s["complete"] and s["severities"] == [1, 2, 3, 4, 5] and s["corruptions"] == list(C.CORRUPTIONS)
  errors = {c: dict(zip(results["severities"], row)) for c, row in results["error_table"].items()}
  assert s["mce"] == pytest.approx(C.summary(errors)["mce"])
  assert s["relative_mce"] == pytest.approx(C.summary(errors, results["cells"]["clean"]["error"])["relative_mce"])
  on_disk = json.load(open(os.path.join(workdir, "results.json")))
  assert on_disk["complete"] and on_disk["scores"]["mce"] == pytest.approx(s["mce"])
  page = open(os.path.join(workdir, "report.html")).read()
  assert "errors.png" in page and "relative mCE" in page and "glass blur" in page
  assert os.path.getsize(os.path.join(workdir, "report", "errors.png")) > 1000
  assert sorted(os.listdir(os.path.join(workdir, "cells"))) == sorted(results["cells"])


def test_rerun_reuses_every_finished_cell(grid_run):
  _, first, second = grid_run
  assert all(c["images_this_run"] == 0 for c in second["cells"].values())
  assert second["scores"] == first["scores"] and second["error_table"] == first["error_table"]


def test_table_script_reads_finished_runs(grid_run, capsys):
  """experiments/imagenet_c_table.py (the docs' tables): per-cell rows, the severity columns, the grid."""
  import importlib.util  # pylint: disable=import-outside-toplevel
  path = os.path.join(os.path.dirname(__file__), os.pardir, "experiments", "imagenet_c_table.py")
  spec = importlib.util.spec_from_file_location("imagenet_c_table", path)
  table = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(table)
  workdir, results, _ = grid_run
  table.main([workdir, workdir])
  out = capsys.readouterr().out
  assert "| fog 5 |" in out and "| clean |" in out and "+0.0 points" in out  # A run against itself.
  assert f"| baseline ({os.path.basename(workdir)}) accuracy |" in out  # Same method twice: named by workdir.
  s = results["scores"]
  assert f"| {100 * s['mean_error']:.1f} | " + " | ".join(
      f"{100 * s['mean_error_by_severity'][k]:.1f}" for k in (1, 2, 3, 4, 5)) in out
  table.main([workdir, workdir], grid=True)
  out = capsys.readouterr().out
  fog = [f"{100 * results['cells'][f'fog-{k}']['error']:.1f}" for k in (1, 2, 3, 4, 5)]
  assert "| fog | " + " | ".join(f"{e} / {e}" for e in fog) + " |" in out
  assert out.count("\n| ") == 1 + 15 + 1  # The header, 15 corruptions, the mean.


def test_zoom_runs_score_every_aggregator(tmp_path):
  from zoomjax.jobs import imagenet_c  # pylint: disable=import-outside-toplevel
  from zoomjax.reports import imagenet_c as report  # pylint: disable=import-outside-toplevel
  config = config_module.get_config("runlocal,method=zoom_tta,corruptions=fog;contrast,severities=5")

  def cell(corruption, acc, agg):
    return {"corruption": corruption, "severity": None if corruption is None else 5, "error": 1 - acc,
            "accuracy": acc, "num_images": 10, "aggregators": {"mean": {"accuracy": acc}, "zero": {"accuracy": agg}}}

  per_cell = {"clean": cell(None, 0.8, 0.9), "fog-5": cell("fog", 0.4, 0.5), "contrast-5": cell("contrast", 0.2, 0.1)}
  results = imagenet_c.summarise(config, per_cell)
  zero = results["aggregator_scores"]["zero"]
  assert results["aggregator_scores"]["mean"] == results["scores"]  # The run's own aggregator: its scores.
  assert zero["mean_error"] == pytest.approx(0.7) and zero["clean_error"] == pytest.approx(0.1)
  assert zero["mce"] == pytest.approx(C.summary({"fog": {5: 0.5}, "contrast": {5: 0.9}})["mce"])
  page = open(report.write_report(results, str(tmp_path))).read()
  assert "Every aggregator over the same zoom views" in page and "zero" in page
  del per_cell["fog-5"]["aggregators"]  # A cell without them (e.g. another method): no aggregator scores.
  assert imagenet_c.summarise(config, per_cell)["aggregator_scores"] is None
