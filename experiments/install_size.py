"""Install size: what `pip install .` and `pip install '.[tfds]'` put in a fresh virtual environment.

  python experiments/install_size.py [--keep DIR]

Each variant gets its own venv in a temporary folder (or under --keep), installed with the tested versions
(`-c constraints.txt`, a normal, non-editable install of this checkout). Prints a table of the site-packages size,
the install time, and whether TensorFlow is importable there, then the command/machine/date line.
"""
import argparse
import os
import pathlib
import subprocess
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "experiments"))

import machine_info  # noqa: E402

VARIANTS = (("base", "."), ("tfds", ".[tfds]"))


def _size_mb(folder: pathlib.Path) -> float:
  total = 0
  for root, _, files in os.walk(folder):
    for name in files:
      path = os.path.join(root, name)
      if not os.path.islink(path):
        total += os.path.getsize(path)
  return total / 2**20


def measure(parent: pathlib.Path, name: str, spec: str):
  venv = parent / f"venv-{name}"
  subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
  py = venv / "bin" / "python"
  t0 = time.perf_counter()
  subprocess.run([str(py), "-m", "pip", "install", "--quiet", "-c", str(REPO / "constraints.txt"), spec], cwd=REPO,
                 check=True)
  seconds = time.perf_counter() - t0
  site = next((venv / "lib").glob("python3*/site-packages"))
  has_tf = subprocess.run([str(py), "-c", "import tensorflow"], capture_output=True, cwd="/").returncode == 0
  return _size_mb(site), seconds, has_tf


def main():
  ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  ap.add_argument("--keep", default="", help="build the venvs here and keep them (default: a temporary folder)")
  args = ap.parse_args()
  with tempfile.TemporaryDirectory(prefix="zoomjax-install-") as tmp:
    parent = pathlib.Path(args.keep or tmp)
    parent.mkdir(parents=True, exist_ok=True)
    rows = [(name, spec, *measure(parent, name, spec)) for name, spec in VARIANTS]
  print("| install | command | site-packages | install time | TensorFlow importable |")
  print("|---|---|---|---|---|")
  for name, spec, mb, seconds, has_tf in rows:
    print(f"| {name} | `pip install -c constraints.txt '{spec}'` | {mb:,.0f} MB | {seconds:.0f} s | "
          f"{'yes' if has_tf else 'no'} |")
  print(machine_info.line())


if __name__ == "__main__":
  main()
