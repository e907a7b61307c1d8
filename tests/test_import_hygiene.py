"""Importing zoomjax's public modules loads neither TensorFlow nor clu's metric writers, nor pyplot.

TensorFlow costs seconds and gigabytes in every process and test worker; only a TFDS build needs it, and the jobs
load clu's TensorBoard writer when they start writing. pyplot would switch the user's matplotlib backend.
Runs in a fresh interpreter, since this test process has imported much already.
"""
import json
import subprocess
import sys

MODULES = ("zoomjax", "zoomjax.zoom", "zoomjax.sweep", "zoomjax.shards", "zoomjax.tta", "zoomjax.tta.memo",
           "zoomjax.tta.zoom_tta", "zoomjax.models", "zoomjax.data", "zoomjax.analyses", "zoomjax.report",
           "zoomjax.plots", "zoomjax.parallel", "zoomjax.checkpoints", "zoomjax.jobs.zoom_sweep", "zoomjax.jobs.tta",
           "zoomjax.jobs.zoom_preview", "zoomjax.main")
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
