"""Ideas the jobs and reports share have one definition each: the compute dtype by name, file-name slugs, the
image limit, the paper's scales, and the reports' formatting (zoomjax.reports.html). Checked by behaviour and
statically: no module defines a second copy."""
import ast
import os
import pathlib
import subprocess
import sys

import jax.numpy as jnp
import pytest

import zoomjax
from zoomjax import errors
from zoomjax import sweep
from zoomjax import zoom
from zoomjax.analysis import paper_numbers
from zoomjax.runtime import atomic
from zoomjax.runtime import shards

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_compute_dtype():
  assert sweep.compute_dtype("float32") == jnp.float32
  assert sweep.compute_dtype("bfloat16") == jnp.bfloat16
  assert sweep.compute_dtype("float16") == jnp.float16
  with pytest.raises(errors.UserError) as e:
    sweep.compute_dtype("float8")
  assert errors.user_message(e.value) == "config.dtype='float8': use one of float32, bfloat16, float16"


def test_a_bad_dtype_ends_the_run_in_one_line(tmp_path):
  proc = subprocess.run([sys.executable, "-m", "zoomjax.main", "--config=configs/evaluate.py:dtype=half",
                         f"--workdir={tmp_path / 'w'}"], cwd=REPO, capture_output=True, text=True, timeout=300,
                        check=False)
  assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
  assert proc.stderr.strip().splitlines()[-1].endswith("config.dtype='half': use one of float32, bfloat16, float16")


def test_slug():
  assert atomic.slug("folder:/data/my photos/val") == "folder_data_my_photos_val"
  assert atomic.slug("resnet50 (r.pth) seed=1") == "resnet50_r.pth_seed_1"
  assert atomic.slug("///") == "x" and atomic.slug("") == "x"
  assert atomic.slug("a" * 100, max_len=80) == "a" * 80 and atomic.slug("a b" * 60) == "a_b" * 60


def test_images_to_run():
  assert shards.images_to_run(0, 50) == 50 and shards.images_to_run(8, 50) == 8 and shards.images_to_run(80, 50) == 50
  with pytest.raises(errors.UserError, match=r"config.limit=-1: use 0 for all images or a positive count"):
    shards.images_to_run(-1, 50)


def test_paper_scales_live_in_the_grid():
  assert len(zoom.PAPER_SCALES) == 36 and not hasattr(paper_numbers, "PAPER_SCALES")
  assert paper_numbers.ZOOM_IN_SCALES == tuple(s for s in zoom.PAPER_SCALES if s > 224)


# Names whose definition has one home; any other module defining them (or the old private copies) is a copy.
HOMES = {"PAPER_SCALES": "zoomjax/zoom.py", "compute_dtype": "zoomjax/sweep.py", "slug": "zoomjax/runtime/atomic.py",
         "images_to_run": "zoomjax/runtime/shards.py", "interval": "zoomjax/reports/html.py",
         "percent": "zoomjax/reports/html.py", "escape": "zoomjax/reports/html.py",
         "html_table": "zoomjax/reports/html.py", "markdown_table": "zoomjax/reports/html.py",
         "csv_text": "zoomjax/reports/html.py", "save_thumbnail": "zoomjax/reports/html.py",
         "image_check_script": "zoomjax/reports/html.py"}
COPIES = ("_dtype", "_slug", "pct_interval", "_pct", "_esc", "_table", "_csv_cell", "_save_image", "_html_escape",
          "_CSS", "_SCRIPT", "_PAGE")


def _definitions():
  root = pathlib.Path(zoomjax.__file__).parent
  for path in sorted(root.rglob("*.py")):
    rel = str(path.relative_to(root.parent))
    for node in ast.parse(path.read_text(), rel).body:
      if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
        yield rel, node.name
      elif isinstance(node, ast.Assign):
        for t in node.targets:
          if isinstance(t, ast.Name):
            yield rel, t.id


def test_each_shared_idea_is_defined_once():
  found = {}
  for rel, name in _definitions():
    found.setdefault(name, []).append(rel)
  for name, home in HOMES.items():
    assert found.get(name) == [home], (name, found.get(name))
  copies = {name: found[name] for name in COPIES if name in found}
  assert not copies, copies
