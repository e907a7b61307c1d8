"""Benchmark: the cascade's held-out tuning and the selective-classification numbers at a paper-size sweep.

Synthetic per-view outcomes of 50,000 images x 334 views (324 zoom views + 10 crops; the cascade's candidates
are the 324 grid views, as for the fixed-k curves) from a logistic model (image ease + view quality + noise, the
same shape as experiments/bench_study.py's). Times, median of --repeats runs:
  tune        cascade.cascade_outcomes given the held-out curves' fold picks (5 folds, both rules, every tau / m
              and cap 1..32, budgets 1..32): the cascade's own work in a sweep
  tune+cover  the same computing the 5 greedy covers itself (no held-out result to reuse)
  selective   selective.selective_summary of 4 (method, score) pairs (risk-coverage, AURC, ECE)

  python experiments/bench_cascade.py            # 50,000 images
  python experiments/bench_cascade.py --quick    # 2,000 images: proves it works
"""
import argparse
import statistics
import time

import numpy as np

from zoomjax.analysis import cascade
from zoomjax.analysis import selection
from zoomjax.analysis import selective


def synthetic(n: int, views: int = 324, classes: int = 1000, seed: int = 0):
  rng = np.random.default_rng(seed)
  labels = rng.integers(0, classes, (n, 1))
  ease = rng.normal(1.5, 3.5, (n, 1)).astype(np.float32)
  quality = rng.normal(-0.5, 1.0, views).astype(np.float32)
  logit = ease + quality[None] + rng.normal(0, 1.0, (n, views)).astype(np.float32)
  right = rng.random((n, views), np.float32) < 1 / (1 + np.exp(-logit))
  top1 = np.where(right, labels, (labels + 1 + rng.integers(0, classes - 1, (n, views))) % classes)
  p_max = (1 / (1 + np.exp(-(logit + rng.normal(0, 1, (n, views)).astype(np.float32))))).astype(np.float32)
  return right, top1, p_max


def _time(fn, repeats):
  """Median (min, max) wall seconds and the median CPU seconds of this process (all its threads)."""
  times, cpu = [], []
  for _ in range(repeats):
    t0, c0 = time.perf_counter(), time.process_time()
    fn()
    times.append(time.perf_counter() - t0)
    cpu.append(time.process_time() - c0)
  return statistics.median(times), min(times), max(times), statistics.median(cpu)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--images", type=int, default=50_000)
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--quick", action="store_true", help="2,000 images, 1 repeat")
  args = parser.parse_args()
  n = 2_000 if args.quick else args.images
  repeats = 1 if args.quick else args.repeats
  C, top1, p_max = synthetic(n)
  folds = selection.fold_ids(n)
  picks = [selection.select_views(C[folds != f], cascade.MAX_VIEWS) for f in range(folds.max() + 1)]
  rows = [("tune", lambda: cascade.cascade_outcomes(C, top1, p_max, fold_picks=picks))]
  rows.append(("tune+cover", lambda: cascade.cascade_outcomes(C, top1, p_max)))
  correct, conf = C[:, 0], p_max[:, 0]
  agree = selective.view_agreement(top1, top1[:, 0])
  rows.append(("selective", lambda: [selective.selective_summary(correct, s) for s in (conf, agree, conf, agree)]))
  print(f"{n:,} images x 334 views (cascade candidates: 324), median (min, max) of {repeats} runs")
  print("| step | wall seconds | CPU seconds |\n|---|---|---|")
  for name, fn in rows:
    med, lo, hi, cpu = _time(fn, repeats)
    print(f"| {name} | {med:.2f} ({lo:.2f}, {hi:.2f}) | {cpu:.2f} |")
  res = cascade.cascade_outcomes(C, top1, p_max, fold_picks=picks)
  print("budget | accuracy | mean views")
  for b, a, v in zip(res["budgets"], res["right"].mean(0), res["views"].mean(0)):
    print(f"{b:g} | {a:.4f} | {v:.2f}")


if __name__ == "__main__":
  main()
