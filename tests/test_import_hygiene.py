"""Importing zoomjax's public modules loads neither TensorFlow nor clu's metric writers, nor pyplot.

TensorFlow costs seconds and gigabytes in every process and test worker; only a TFDS build needs it (TensorBoard
scalars go through `zoomjax.runtime.scalars`, which needs no TensorFlow). pyplot would switch the user's matplotlib
backend. Runs in a fresh interpreter, since this test process has imported much already.
"""
import json
import pathlib
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parents[1]


def public_modules():
  """Every public module of the package (no part of its name starts with '_'), found on disk: packages first,
  then their modules, in path order; the configs as installed, zoomjax.configs.<name>."""
  root = REPO / "zoomjax"
  out = []
  for path in sorted(root.rglob("*.py")):
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
      parts.pop()
    if "__pycache__" not in path.parts and not any(p.startswith("_") for p in parts):
      out.append(".".join(parts))
  configs = sorted(p.stem for p in (REPO / "configs").glob("*.py") if not p.stem.startswith("_"))
  return out + ["zoomjax.configs"] + [f"zoomjax.configs.{name}" for name in configs]


MODULES = tuple(public_modules())
FORBIDDEN = ("tensorflow", "keras", "clu.metric_writers", "clu.periodic_actions", "matplotlib.pyplot")


def test_the_module_list_is_the_whole_package():
  """The walk finds the front door, every wing and the configs (a list that silently shrank would check nothing)."""
  for name in ("zoomjax", "zoomjax.main", "zoomjax.sweep", "zoomjax.runtime.config", "zoomjax.runtime.cli",
               "zoomjax.analysis.metrics", "zoomjax.reports.sweep", "zoomjax.data.builders", "zoomjax.data.prepare",
               "zoomjax.jobs.zoom_sweep", "zoomjax.models.resnet", "zoomjax.checkpoints.torch_pickle",
               "zoomjax.kernels", "zoomjax.tta.memo", "zoomjax.configs.zoom_sweep", "zoomjax.configs.demo"):
    assert name in MODULES, name
  assert len(MODULES) == len(set(MODULES)) and len(MODULES) > 80
  assert not [m for m in MODULES if "._" in m or "__" in m]


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
