"""Zoom-grid throughput against PIL, measured in the same run (views per second, median of runs).

  .venv/bin/python experiments/bench_zoom.py [--images 3] [--runs 5] [--impl sparse,dense] [--scales paper]

Baselines (same images, same process):
  (a) the authors' loop: PIL resize for every view, then crop (docs/study.md §1.2 "one script per anchor");
  (b) PIL resize once per scale, then the 9 crops.
JAX rows: zoom_crops on each image's canvas bucket after warm-up. Compile time is reported cold (an empty
persistent compilation cache in a temporary folder) and cached (a second process-level compile from it).
The machine is shared and noisy: read the ratios, which come from interleaved runs.
"""
import argparse
import os
import pathlib
import sys
import tempfile
import time

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import jax  # noqa: E402
from PIL import Image  # noqa: E402

from zoomjax import zoom  # noqa: E402


def pil_per_view(image: Image.Image, grid: zoom.ZoomGrid):
  w, h = image.size
  for s, r, c in grid.transforms:
    oh, ow, tops, lefts = zoom.zoom_geometry(h, w, s, grid.anchors, grid.crop)
    resized = image.resize((ow, oh), Image.Resampling.BICUBIC)
    np.asarray(resized.crop((lefts[c], tops[r], lefts[c] + grid.crop, tops[r] + grid.crop)))


def pil_per_scale(image: Image.Image, grid: zoom.ZoomGrid):
  w, h = image.size
  for s in grid.scales:
    oh, ow, tops, lefts = zoom.zoom_geometry(h, w, s, grid.anchors, grid.crop)
    resized = image.resize((ow, oh), Image.Resampling.BICUBIC)
    for t in tops:
      for l in lefts:
        np.asarray(resized.crop((l, t, l + grid.crop, t + grid.crop)))


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--images", type=int, default=3, help="photos from ../shared/data/imagenet-val-100")
  parser.add_argument("--runs", type=int, default=5, help="timed runs per method (median reported)")
  parser.add_argument("--impl", default="sparse,dense", help="JAX implementations to time")
  parser.add_argument("--scales", default="paper", help="'paper' or comma-separated scales")
  parser.add_argument("--skip_per_view", action="store_true", help="skip the slow baseline (a)")
  args = parser.parse_args()

  folder = REPO.parent / "shared" / "data" / "imagenet-val-100" / "images"
  paths = sorted(folder.iterdir())[:args.images]
  pils = [Image.open(p).convert("RGB") for p in paths]
  arrays = [np.asarray(p) for p in pils]
  grid = zoom.ZoomGrid.paper() if args.scales == "paper" else zoom.ZoomGrid(
      tuple(int(s) for s in args.scales.split(",")))
  views = grid.num_transforms * len(arrays)
  print(f"{len(arrays)} photos {[a.shape[:2] for a in arrays]}, {grid.num_transforms} views each, "
        f"backend {jax.default_backend()}, {os.cpu_count()} CPUs")

  # Compile: cold into an empty persistent cache, then again from that cache with the in-memory caches
  # cleared (what a second process sees).
  cache = tempfile.mkdtemp(prefix="zoomjax-bench-cache-")
  jax.config.update("jax_compilation_cache_dir", cache)
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
  impls = [s for s in args.impl.split(",") if s]
  compile_s = {}
  for impl in impls:
    canvases = sorted({zoom.canvas_size(*a.shape[:2]) for a in arrays})
    t0 = time.perf_counter()
    for c in canvases:
      jax.block_until_ready(zoom.zoom_crops_batch(np.zeros((1,) + c + (3,), np.uint8),
                                                  np.array([[c[0], c[1]]], np.int32), grid, impl=impl))
    cold = time.perf_counter() - t0
    jax.clear_caches()
    t0 = time.perf_counter()
    for c in canvases:
      jax.block_until_ready(zoom.zoom_crops_batch(np.zeros((1,) + c + (3,), np.uint8),
                                                  np.array([[c[0], c[1]]], np.int32), grid, impl=impl))
    compile_s[impl] = (cold, time.perf_counter() - t0, len(canvases))

  methods = {"(b) PIL resize once per scale + crops": lambda: [pil_per_scale(p, grid) for p in pils]}
  if not args.skip_per_view:
    methods["(a) PIL resize per view (authors' loop)"] = lambda: [pil_per_view(p, grid) for p in pils]
  for impl in impls:
    methods[f"JAX zoom_crops impl={impl}"] = (
        lambda impl=impl: [jax.block_until_ready(zoom.zoom_crops(a, grid, impl=impl)) for a in arrays])
  for fn in methods.values():  # Warm-up.
    fn()
  times = {k: [] for k in methods}
  for _ in range(args.runs):  # Interleaved, so load changes hit every method alike.
    for name, fn in methods.items():
      t0 = time.perf_counter()
      fn()
      times[name].append(time.perf_counter() - t0)

  base_b = np.median(times["(b) PIL resize once per scale + crops"])
  base_a = np.median(times["(a) PIL resize per view (authors' loop)"]) if not args.skip_per_view else None
  print(f"\n| method | views/s (median of {args.runs}) | vs (b) | vs (a) | compile cold / cached |")
  print("|---|---|---|---|---|")
  for name, ts in times.items():
    med = np.median(ts)
    vs_a = f"{base_a / med:.2f}x" if base_a else "-"
    impl = name.split("impl=")[-1] if "impl=" in name else None
    comp = "-" if impl is None else (f"{compile_s[impl][0]:.1f} s / {compile_s[impl][1]:.1f} s "
                                     f"({compile_s[impl][2]} canvas)")
    print(f"| {name} | {views / med:.0f} | {base_b / med:.2f}x | {vs_a} | {comp} |")


if __name__ == "__main__":
  main()
  from machine_info import line  # pylint: disable=g-import-not-at-top  experiments/machine_info.py
  print(line())
