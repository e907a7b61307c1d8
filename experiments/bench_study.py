"""Benchmark: load + analyse the records of a study of many sweeps, and the held-out view selection.

Synthetic records of the paper's size (default 42 runs x 50,000 images x 324 zoom views + 10 crops = 334 views),
written one run at a time in the sweep's own format (`zoomjax.analysis.records.save`) to a scratch folder and
deleted after it is measured, so one run's arrays are in memory at a time (about 0.5 GB), never the study's.
Per run it times
  load       records.load of records.npz
  analyse    analyses.record_metrics (correctness, greedy min-cover, anchors, scales, aggregation, intervals)
  per_class  per_class.record_per_class
  held_out   selection.record_held_out (5 folds, budgets 1..36, confidence selection; the first
             --held-out-runs runs only)
  aggregators  aggregators.aggregator_table: every test-time aggregator over 5 view sets (grid, zoom-in,
             zoom-out, 10 crops, 64 random views), with intervals and paired tests against the 1-crop (the first
             --aggregator-runs runs only; k = --k stored classes per view)
and prints a Markdown table of medians (min, max) and the projected study total for --runs runs.

The correctness of a view on an image is drawn from a logistic model (image ease + view quality + noise) tuned to
ResNet-50-on-ImageNet-like numbers at 50,000 images (1-crop about 73 %, upper bound 98.5 %, top-36 96.4 %,
min-cover about 250 views; paper: 75.75 / 96.78 / 94.46 / 234), so the greedy cover does the work it does on a
real sweep.

  python experiments/bench_study.py            # the full study size (quiet machine; minutes)
  python experiments/bench_study.py --quick    # 3 runs x 2,000 images: proves it works
  python experiments/bench_study.py --runs 1 --held-out-runs 0   # one 50,000-image run: the aggregators' budget
"""
import argparse
import os
import shutil
import statistics
import tempfile
import time

import numpy as np

from zoomjax.analysis import aggregators
from zoomjax.analysis import metrics as analyses
from zoomjax.analysis import per_class
from zoomjax.analysis import records
from zoomjax.analysis import selection

SCALES = sorted(analyses.PAPER_SCALE_INSERTION_ORDER)  # The paper's 36 scales.


def synthetic_records(n: int, seed: int, *, scales=SCALES, anchors: int = 3, classes: int = 1000,
                      k: int = records.RECORD_K) -> records.Records:
  """Records of one fake sweep: n images x (len(scales) * anchors**2) zoom views + the 10 extra crops, k classes
  per view (descending probabilities below p_max, an entropy consistent with them)."""
  rng = np.random.default_rng(seed)
  names = [analyses.view_name((s, r, c)) for s in scales for r in range(anchors) for c in range(anchors)]
  t, x = len(names), len(records.CROP_NAMES)
  labels = rng.integers(0, classes, (n, 1)).astype(np.int32)
  ease = rng.normal(1.5, 3.5, (n, 1)).astype(np.float32)  # Per image.
  # Per view: best near the 1-crop scale and at the centre anchor.
  quality = np.array([1.0 - 0.8 * abs(np.log(s / 256)) - 0.6 * (r != 1) - 0.6 * (c != 1)
                      for s in scales for r in range(anchors) for c in range(anchors)], np.float32)

  def views(v, quality):
    logit = ease + quality[None, :] + rng.normal(0, 1.0, (n, v)).astype(np.float32)
    right = rng.random((n, v), np.float32) < 1 / (1 + np.exp(-logit))
    wrong = (labels + 1 + rng.integers(0, classes - 1, (n, v))) % classes
    topk = rng.integers(0, classes, (n, v, k)).astype(np.int16)
    topk[..., 0] = np.where(right, labels, wrong)
    p_max = (1 / (1 + np.exp(-(logit + rng.normal(0, 1, (n, v)).astype(np.float32))))).astype(np.float32)
    p_true = np.where(right, p_max, p_max * rng.random((n, v), np.float32) * 0.5).astype(np.float32)
    rest = (1 - p_max)[..., None] * 0.4 * 0.6 ** np.arange(1, k, dtype=np.float32)  # Sums below 1 - p_max.
    topk_p = np.concatenate([p_max[..., None], np.minimum(rest, p_max[..., None])], -1)
    tail = np.maximum(1 - topk_p.sum(-1), 1e-6)  # Spread over the other classes.
    q = np.maximum(topk_p, 1e-12)  # p_max may underflow to 0 far below the decision boundary.
    entropy = -(q * np.log(q)).sum(-1) - tail * np.log(tail / (classes - k))
    return topk, p_true, p_max, topk_p.astype(np.float16), entropy.astype(np.float32)

  topk, p_true, p_max, topk_p, entropy = views(t, quality)
  ctopk, cp_true, cp_max, ctopk_p, centropy = views(x, np.full(x, 1.0, np.float32))
  a = len(records.AGG_SETS)
  return records.Records(
      index=np.arange(n, dtype=np.int64), ids=np.array([f"ILSVRC2012_val_{i + 1:08d}.JPEG" for i in range(n)]),
      labels=labels, topk=topk, topk_p=topk_p, entropy=entropy, p_true=p_true, p_max=p_max, crop_topk=ctopk,
      crop_topk_p=ctopk_p, crop_entropy=centropy, crop_p_true=cp_true, crop_p_max=cp_max,
      agg_top5=rng.integers(0, classes, (n, a, records.TOP_K)).astype(np.int16),
      agg_p=rng.random((n, a, records.TOP_K), np.float32), view_names=np.array(names),
      crop_names=np.array(records.CROP_NAMES), agg_names=np.array(records.AGG_SETS))


def _timed(fn):
  t0 = time.perf_counter()
  out = fn()
  return out, time.perf_counter() - t0


def main():
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--runs", type=int, default=42, help="sweeps in the study")
  p.add_argument("--images", type=int, default=50_000, help="images per sweep")
  p.add_argument("--held-out-runs", type=int, default=3, help="runs whose held-out selection is timed")
  p.add_argument("--aggregator-runs", type=int, default=1, help="runs whose aggregator table is timed")
  p.add_argument("--k", type=int, default=records.RECORD_K, help="classes stored per view")
  p.add_argument("--scratch", default=None, help="folder for the one records.npz on disk (default: a temp dir)")
  p.add_argument("--quick", action="store_true", help="3 runs x 2,000 images (a smoke test)")
  args = p.parse_args()
  if args.quick:
    args.runs, args.images, args.held_out_runs, args.aggregator_runs = 3, 2000, 2, 2
  if args.scratch:
    os.makedirs(args.scratch, exist_ok=True)
  scratch = tempfile.mkdtemp(prefix="bench_study_", dir=args.scratch)
  times = {k: [] for k in ("load", "analyse", "per_class", "held_out", "aggregators")}
  agg = None
  facts, best = [], None
  try:
    for r in range(args.runs):
      path = os.path.join(scratch, records.FINAL_FILE)
      records.save(path, synthetic_records(args.images, seed=r, k=args.k))
      rec, dt = _timed(lambda: records.load(path))
      times["load"].append(dt)
      m, dt = _timed(lambda: analyses.record_metrics(rec))
      times["analyse"].append(dt)
      _, dt = _timed(lambda: per_class.record_per_class(rec))
      times["per_class"].append(dt)
      line = f"load {times['load'][-1]:.2f} s, analyse {times['analyse'][-1]:.2f} s, per_class {dt:.2f} s"
      if r < args.held_out_runs:
        h, dt = _timed(lambda: selection.record_held_out(rec))
        times["held_out"].append(dt)
        best = h["best_fixed"]
        line += f", held_out {dt:.2f} s"
      if r < args.aggregator_runs:
        agg, dt = _timed(lambda: aggregators.aggregator_table(rec))
        times["aggregators"].append(dt)
        line += f", aggregators {dt:.2f} s"
      facts.append((m["one_crop_accuracy"], m["upper_bound_accuracy"], m["top36_accuracy"], m["min_cover_size"]))
      print(f"run {r + 1}/{args.runs}: {line}", flush=True)
      del rec
      os.remove(path)
  finally:
    shutil.rmtree(scratch, ignore_errors=True)
  n_views = len(SCALES) * 9 + len(records.CROP_NAMES)
  med = lambda i: statistics.median(f[i] for f in facts)  # noqa: E731
  print(f"\n{args.runs} runs x {args.images:,} images x {n_views} views (synthetic: 1-crop {100 * med(0):.1f} %, "
        f"upper bound {100 * med(1):.1f} %, top-36 {100 * med(2):.1f} %, min-cover {med(3):.0f} views"
        + (f"; held-out best fixed set k = {best['k']}" if best else "") + f"; {os.cpu_count()} CPUs)\n")
  print("| stage | median s per run | min | max | runs timed |")
  print("|---|---:|---:|---:|---:|")
  for k, v in times.items():
    if v:
      print(f"| {k} | {statistics.median(v):.2f} | {min(v):.2f} | {max(v):.2f} | {len(v)} |")
  per_run = sum(statistics.median(times[k]) for k in ("load", "analyse", "per_class"))
  print(f"\nload + analyse + per_class, projected for {args.runs} runs: {per_run * args.runs / 60:.1f} min "
        f"({per_run:.2f} s per run)")
  if times["aggregators"]:
    a = statistics.median(times["aggregators"])
    sets = {s: v["num_views"] for s, v in agg["sets"].items()}
    print(f"every aggregator ({len(aggregators.AGGREGATORS)}) over {len(sets)} view sets {sets}, intervals and "
          f"paired tests, one {args.images:,}-image run at k = {args.k}: {a:.1f} s (target <= 60 s: "
          f"{'met' if a <= 60 else 'MISSED'})")
    zero = agg["sets"]["grid"]["paired"]["zero"]
    print(f"(synthetic grid: 1-crop {100 * agg['sets']['grid']['accuracy']['1-crop']:.1f} %, zero "
          f"{100 * agg['sets']['grid']['accuracy']['zero']:.1f} %, zero - 1-crop {100 * zero['diff']:+.1f} points, "
          f"p = {zero['p_value']:.2g})")
  if times["held_out"]:
    h = statistics.median(times["held_out"])
    print(f"held-out selection of one {args.images:,}-image run: {h:.1f} s (target <= 60 s: "
          f"{'met' if h <= 60 else 'MISSED'}); with it for every run: {(per_run + h) * args.runs / 60:.1f} min")

if __name__ == "__main__":
  main()
  from machine_info import line  # pylint: disable=g-import-not-at-top  experiments/machine_info.py
  print(line())
