"""What the sweep's safety checks cost per shard, against the time the shard's images take to sweep.

  .venv/bin/python experiments/bench_checks.py --shard-size 16 --views 334 --views-per-s 40

Times, on a real paper-grid-sized shard file (synthetic records): the dataset fingerprint of the shard's range,
verifying an existing shard on resume (`shards.check_shard`: open, index range, ids, fingerprint), the non-finite
check of one batch's step outputs (`sweep.check_finite`), and writing the shard. The sweep time of a shard is
shard_size * views / views_per_s, with views_per_s the measured end-to-end rate (BENCHMARKS.md).
"""
import argparse
import os
import statistics
import tempfile
import time

import numpy as np

from zoomjax import sweep
from zoomjax.analysis import records as R
from zoomjax.runtime import shards


def median_seconds(fn, runs: int) -> float:
  fn()
  out = []
  for _ in range(runs):
    t = time.perf_counter()
    fn()
    out.append(time.perf_counter() - t)
  return statistics.median(out)


def main():
  ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("--shard-size", type=int, default=16)
  ap.add_argument("--views", type=int, default=334, help="views per image (paper grid + 10 crops)")
  ap.add_argument("--views-per-s", type=float, default=40.0, help="measured end-to-end sweep rate")
  ap.add_argument("--runs", type=int, default=20)
  a = ap.parse_args()
  n, t, x = a.shard_size, a.views - 10, 10
  rng = np.random.default_rng(0)
  ids = [f"ILSVRC2012_val_{i:08d}.JPEG" for i in range(n)]
  labels = rng.integers(0, 1000, (n, 1)).astype(np.int32)
  rows = {f: (rng.random((n,) + v.shape[1:]) * 100).astype(v.dtype)
          for f, v in R.empty_rows(t, x, len(sweep.AGG_SETS)).items()}
  rows.update(index=np.arange(n, dtype=np.int64), ids=np.asarray(ids), labels=labels)
  meta = {"view_names": [f"v{i}" for i in range(t)], "crop_names": list(R.CROP_NAMES),
          "agg_names": list(sweep.AGG_SETS)}
  out = {"finite": np.ones((1, a.views), bool)}
  with tempfile.TemporaryDirectory() as d:
    path = shards.shard_path(d, 0)
    fp = shards.fingerprint(ids, labels)
    write = median_seconds(lambda: shards.save_shard(path, rows, {**meta, shards.FINGERPRINT: [fp]}, []), a.runs)
    size = os.path.getsize(path)
    costs = {
        "fingerprint of the shard's ids and labels": median_seconds(lambda: shards.fingerprint(ids, labels), a.runs),
        "verify the shard on resume (check_shard)": median_seconds(
            lambda: shards.check_shard(path, range(n), fp, ids.__getitem__), a.runs),
        f"non-finite check, {n} one-image batches": n * median_seconds(
            lambda: sweep.check_finite(out, np.zeros(1, np.int64), ids.__getitem__, ["v"] * a.views, "m"), a.runs),
        "write the shard atomically (fsync)": write,
    }
  sweep_s = n * a.views / a.views_per_s
  print(f"shard of {n} images x {a.views} views ({size / 1e6:.2f} MB); sweeping it takes {sweep_s:.0f} s at "
        f"{a.views_per_s:g} views/s; median of {a.runs}")
  print("| check | ms per shard | share of the shard's sweep time |")
  print("|---|---|---|")
  for name, s in costs.items():
    print(f"| {name} | {1e3 * s:.2f} | {100 * s / sweep_s:.4f} % |")
  total = sum(costs.values())
  print(f"| all of them | {1e3 * total:.2f} | {100 * total / sweep_s:.4f} % |")


if __name__ == "__main__":
  main()
  from machine_info import line  # pylint: disable=g-import-not-at-top  experiments/machine_info.py
  print(line())
