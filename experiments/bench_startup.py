"""Start-up: seconds from `python -m zoomjax.main ...` to its first log line, and fresh-process import times.

  .venv/bin/python experiments/bench_startup.py --runs 5

The first log line is main's "process 0/1, devices: ..." (config parsed, JAX initialised). Each run is a fresh
process reading the real demo config; the job itself is not timed (the process is killed at the first line).
Import times are fresh interpreters importing one module each, with TensorFlow's presence reported.
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODULES = ("zoomjax.zoom", "zoomjax.sweep", "zoomjax.models", "zoomjax.jobs.zoom_sweep", "zoomjax.jobs.tta")


def time_to_first_log_line(config: str) -> float:
  with tempfile.TemporaryDirectory() as workdir:
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "zoomjax.main", f"--config={config}", f"--workdir={workdir}",
                             "--alsologtostderr"], cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    try:
      for line in proc.stderr:
        if "devices:" in line:
          return time.perf_counter() - t0
      raise RuntimeError(f"no first log line; exit code {proc.wait()}")
    finally:
      proc.kill()
      proc.wait()


def import_seconds(module: str):
  code = (f"import sys, time; t = time.perf_counter(); import {module}; "
          "print(time.perf_counter() - t, 'tensorflow' in sys.modules)")
  out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
  seconds, tf = out.stdout.split()
  return float(seconds), tf == "True"


def main():
  ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("--runs", type=int, default=5)
  ap.add_argument("--config", default=os.path.join(REPO, "configs", "demo.py"))
  a = ap.parse_args()
  first = [time_to_first_log_line(a.config) for _ in range(a.runs)]
  print(f"python -m zoomjax.main --config {os.path.relpath(a.config, REPO)}: first log line after "
        f"{statistics.median(first):.2f} s (median of {a.runs}; min {min(first):.2f}, max {max(first):.2f})")
  print("| module | import s (median) | loads TensorFlow |")
  print("|---|---|---|")
  for m in MODULES:
    runs = [import_seconds(m) for _ in range(a.runs)]
    print(f"| {m} | {statistics.median(r[0] for r in runs):.2f} | {'yes' if runs[0][1] else 'no'} |")


if __name__ == "__main__":
  main()
  from machine_info import line  # pylint: disable=g-import-not-at-top  experiments/machine_info.py
  print(line())
