"""Importing zoomjax's public modules loads neither TensorFlow nor clu's metric writers, nor pyplot.

TensorFlow costs seconds and gigabytes in every process and test worker; only a TFDS build needs it (TensorBoard
scalars go through `zoomjax.runtime.scalars`, which needs no TensorFlow). pyplot would switch the user's matplotlib
backend. Runs in a fresh interpreter, since this test process has imported much already.
"""
import json
import subprocess
import sys

MODULES = ("zoomjax", "zoomjax.zoom", "zoomjax.sweep", "zoomjax.runtime.shards", "zoomjax.tta", "zoomjax.tta.memo",
           "zoomjax.tta.zoom_tta", "zoomjax.models", "zoomjax.data", "zoomjax.analysis.metrics", "zoomjax.reports.sweep",
           "zoomjax.reports.figures", "zoomjax.runtime.parallel", "zoomjax.checkpoints", "zoomjax.jobs.zoom_sweep", "zoomjax.jobs.tta",
           "zoomjax.jobs.zoom_preview", "zoomjax.main", "zoomjax.runtime.cli", "zoomjax.runtime.scalars",
           "zoomjax.jobs.evaluate", "zoomjax.reports.evaluate", "zoomjax.jobs.study", "zoomjax.reports.study",
           "zoomjax.reports.explorer", "zoomjax.analysis.sweep_results", "zoomjax.analysis.selection", "zoomjax.analysis.per_class")
FORBIDDEN = ("tensorflow", "keras", "clu.metric_writers", "clu.periodic_actions", "matplotlib.pyplot")

_PROBE = """
import importlib, json, sys
import matplotlib
backend = matplotlib.rcParams._get_backend_or_none()
out = {}
for name in %r:
  importlib.import_module(name)
  out[name] = [m for m in %r if m in sys.modules]
out["backend changed"] = matplotlib.rcParams._get_backend_or_none() != backend
print(json.dumps(out))
"""


def test_public_modules_import_no_tensorflow_clu_writers_or_pyplot():
  proc = subprocess.run([sys.executable, "-c", _PROBE % (MODULES, FORBIDDEN)], capture_output=True, text=True,
                        timeout=300, check=False)
  assert proc.returncode == 0, proc.stderr[-3000:]
  loaded = json.loads(proc.stdout.strip().splitlines()[-1])
  # The first module after which a forbidden one appears is the culprit.
  culprits = {name: mods for name, mods in loaded.items() if name in MODULES and mods}
  assert not culprits, f"first import that loads {next(iter(culprits.values()))}: {next(iter(culprits))}"
  assert not loaded["backend changed"], "importing zoomjax changed matplotlib's backend"


_WRITE = """
import sys
from zoomjax.runtime import scalars
w = scalars.ScalarWriter(sys.argv[1])
w.write_scalars(3, {"images_per_sec": 1.5, "eta_secs": 2})
w.write_scalars(4, {"images_per_sec": 2.5})
w.close()
print("tensorflow" in sys.modules)
"""


def test_scalar_writer_needs_no_tensorflow_and_tensorboard_reads_it(tmp_path):
  proc = subprocess.run([sys.executable, "-c", _WRITE, str(tmp_path)], capture_output=True, text=True, timeout=120,
                        check=False)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert proc.stdout.strip() == "False"
  from tensorboard.backend.event_processing import event_accumulator  # pylint: disable=import-outside-toplevel
  acc = event_accumulator.EventAccumulator(str(tmp_path))
  acc.Reload()
  assert sorted(acc.Tags()["scalars"]) == ["eta_secs", "images_per_sec"]
  assert [(e.step, e.value) for e in acc.Scalars("images_per_sec")] == [(3, 1.5), (4, 2.5)]
