"""Accelerator check: the matrix-product ceiling, then the 324-view zoom sweep's throughput per model.

  python experiments/gpu_check.py --out gpu_check.json            # one GPU: < 5 min, compiles included
  python experiments/gpu_check.py --quick --out /tmp/quick.json   # CPU smoke test (tiny model, tiny grid)

What it measures, in one process, nothing from the network (random weights, synthetic images):
  1. the bf16 and fp32 matrix-product ceiling (TFLOP/s, square products of side --matmul-n);
  2. per model, the sweep's own jitted step (`zoomjax.sweep.make_step`: zoom grid + 10 crops computed on the
     device, chunked model calls, compact outputs) on synthetic ~500x375 images in the 512 canvas bucket,
     batch sharded over every local device (`zoomjax.runtime.parallel`): views/s, images/s, FLOPs per image from
     XLA's cost analysis (zoom kernel + views x model), the achieved fraction of the ceiling, and the projected
     time for the 50,000-image ImageNet validation set.
Prints a table and writes everything to --out (JSON).
"""
import argparse
import json
import os
import platform
import statistics
import sys
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
  sys.path.insert(0, REPO)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from zoomjax import sweep  # noqa: E402
from zoomjax.zoom import PAPER_SCALES  # noqa: E402

QUICK_SCALES = (224, 256)
# Synthetic image sizes (h, w): ImageNet val's most common shapes, all in the 512 canvas bucket.
IMAGE_SIZES = ((375, 500), (500, 375), (333, 500), (375, 500), (500, 333), (400, 500), (375, 500), (500, 500))


def _time(fn, reps: int) -> list:
  out = []
  for _ in range(reps):
    t = time.perf_counter()
    jax.block_until_ready(fn())
    out.append(time.perf_counter() - t)
  return out


def matmul_ceiling(n: int, dtype, reps: int, k: int = 4) -> dict:
  """TFLOP/s of a (k*n, n) @ (n, n) product (one GEMM of 2*k*n^3 FLOPs), median of `reps` after a warm-up."""
  key = jax.random.PRNGKey(0)
  a = jax.random.normal(key, (k * n, n), jnp.float32).astype(dtype)
  b = jax.random.normal(jax.random.fold_in(key, 1), (n, n), jnp.float32).astype(dtype)
  precision = jax.lax.Precision.HIGHEST if dtype == jnp.float32 else jax.lax.Precision.DEFAULT
  f = jax.jit(lambda a, b: jnp.dot(a, b, precision=precision, preferred_element_type=jnp.float32))
  jax.block_until_ready(f(a, b))
  times = _time(lambda: f(a, b), reps)
  flops = 2.0 * k * n ** 3
  med = statistics.median(times)
  return {"n": n, "k": k, "dtype": jnp.dtype(dtype).name, "median_s": med, "tflops": flops / med / 1e12,
          "times_s": times}


def _cost(fn, *args) -> tuple:
  """(FLOPs, bytes accessed) of one call from XLA's cost analysis ((0, 0) if the backend gives none).

  FLOPs come from the HLO before optimisation (on GPU, compiled convolutions become library calls the analysis
  may not count); bytes from the compiled, fused program where the backend reports them (the unfused HLO
  counts every intermediate as memory traffic), else from the unfused HLO (an upper bound).
  """
  def first(cost):
    return (cost[0] if cost else {}) if isinstance(cost, (list, tuple)) else (cost or {})

  lowered = jax.jit(fn).lower(*args)
  before = first(lowered.cost_analysis())
  flops = float(before.get("flops", 0.0))
  compiled = {}
  try:
    compiled = first(lowered.compile().cost_analysis())
  except Exception:  # pylint: disable=broad-except  Some backends give no analysis of compiled programs.
    pass
  flops = flops or float(compiled.get("flops", 0.0))
  nbytes = float(compiled.get("bytes accessed", 0.0)) or float(before.get("bytes accessed", 0.0))
  return flops, nbytes


def _flops(fn, *args) -> float:
  return _cost(fn, *args)[0]


def _flop_counts(sweep, spec, predict_fn, crops_fn, variables, canvas, hw, dtype) -> dict:
  """GFLOPs per image: the zoom kernel on one image + the 10 crops + every view through the model."""
  c1, hw1 = jnp.asarray(canvas[:1]), jnp.asarray(hw[:1])
  zoom_flops, zoom_bytes = _cost(crops_fn, c1, hw1)
  crop_flops = crop_bytes = 0.0
  if spec.extra_crops:
    crop_flops, crop_bytes = _cost(lambda c, s: jax.vmap(lambda a, b: sweep.ten_crops(a, b, dtype=dtype))(c, s),
                                   c1, hw1)
  nb = 8
  model_flops, model_bytes = (v / nb for v in _cost(predict_fn, variables, jnp.zeros((nb, 224, 224, 3), jnp.float32)))
  total = zoom_flops + crop_flops + spec.num_views * model_flops
  total_bytes = zoom_bytes + crop_bytes + spec.num_views * model_bytes
  return {"gflop_per_view_model": model_flops / 1e9, "gflop_per_image_zoom_kernel": zoom_flops / 1e9,
          "gflop_per_image_ten_crops": crop_flops / 1e9, "gflop_per_image": total / 1e9,
          "gbytes_per_image": total_bytes / 1e9, "gbytes_per_view_model": model_bytes / 1e9,
          "gbytes_per_image_zoom_kernel": zoom_bytes / 1e9, "gbytes_per_image_ten_crops": crop_bytes / 1e9}


def synthetic_batch(batch: int, canvas_fn, seed: int = 0):
  rng = np.random.default_rng(seed)
  sizes = [IMAGE_SIZES[i % len(IMAGE_SIZES)] for i in range(batch)]
  hc = max(canvas_fn(h, w)[0] for h, w in sizes)
  wc = max(canvas_fn(h, w)[1] for h, w in sizes)
  canvas = np.zeros((batch, hc, wc, 3), np.uint8)
  for i, (h, w) in enumerate(sizes):
    canvas[i, :h, :w] = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
  hw = np.asarray(sizes, np.int32)
  labels = np.stack([rng.integers(0, 1000, batch), np.full(batch, -1)], 1).astype(np.int32)
  return canvas, hw, labels


def bench_model(name: str, *, scales, dtype, batch_per_device: int, view_chunk: int, reps: int,
                num_images: int, ceiling_tflops: float, zoom_impl=None, flops_only: bool = False) -> dict:
  from zoomjax import models, zoom  # pylint: disable=g-import-not-at-top
  from zoomjax.runtime import parallel
  overrides = {} if dtype == jnp.float32 else {"dtype": dtype}
  t0 = time.perf_counter()
  bundle = models.load(name, random_init=True, seed=0, **overrides)
  init_s = time.perf_counter() - t0
  grid = zoom.ZoomGrid(tuple(scales), anchors=3, crop=224)
  spec = sweep.ViewSpec(transforms=tuple(tuple(int(v) for v in t) for t in grid.transforms), crop=224,
                        extra_crops=True)
  predict_fn = bundle.predict_fn(dtype=dtype)

  zoom_kw = {} if dtype == jnp.float32 else {"dtype": dtype}
  if zoom_impl:
    zoom_kw["impl"] = zoom_impl
  crops_fn = lambda canvas, hw: zoom.zoom_crops_batch(canvas, hw, grid, **zoom_kw)  # noqa: E731
  if flops_only:
    canvas, hw, _ = synthetic_batch(1, zoom.canvas_size)
    f = _flop_counts(sweep, spec, predict_fn, crops_fn, bundle.variables, canvas, hw, dtype)
    return {"model": name, "dtype": jnp.dtype(dtype).name, "views_per_image": spec.num_views,
            "grid_views": len(spec.transforms), "canvas": list(canvas.shape[1:3]),
            "zoom_impl": zoom_impl or zoom._default_impl(), **f}  # pylint: disable=protected-access
  mesh = parallel.make_mesh()
  batch = batch_per_device * mesh.size
  step = sweep.make_step(predict_fn, crops_fn, spec, view_chunk=view_chunk, dtype=dtype, mesh=mesh)
  variables = parallel.replicate(bundle.variables, mesh)
  canvas, hw, labels = synthetic_batch(batch, zoom.canvas_size)
  args = parallel.shard_batch((canvas, hw, labels), mesh)

  t0 = time.perf_counter()
  compiled = step.lower(variables, *args).compile() if hasattr(step, "lower") else step
  compile_s = time.perf_counter() - t0
  jax.block_until_ready(compiled(variables, *args))  # Warm-up (first-run allocations; compiles if not yet).
  if not hasattr(step, "lower"):
    compile_s = time.perf_counter() - t0
  times = _time(lambda: compiled(variables, *args), reps)
  med = statistics.median(times)

  f = _flop_counts(sweep, spec, predict_fn, crops_fn, bundle.variables, canvas[:1], hw[:1], dtype)
  ips = batch / med
  achieved = f["gflop_per_image"] * 1e9 * ips / 1e12
  return {**f,
      "model": name, "dtype": jnp.dtype(dtype).name, "devices": mesh.size, "batch_images": batch,
      "views_per_image": spec.num_views, "grid_views": len(spec.transforms), "view_chunk": view_chunk,
      "canvas": list(canvas.shape[1:3]), "init_s": init_s, "compile_s": compile_s, "step_median_s": med,
      "step_times_s": times, "images_per_s": ips, "views_per_s": ips * spec.num_views,
      "zoom_impl": zoom_impl or zoom._default_impl(),  # pylint: disable=protected-access
      "achieved_tflops": achieved, "fraction_of_ceiling": achieved / ceiling_tflops if ceiling_tflops else None,
      "projected_s_for_images": num_images / ips, "projected_images": num_images,
  }


def flops_table(a, models_, scales, dtype) -> dict:
  """FLOP counts per image and the time the whole dataset would take at fractions of an assumed ceiling."""
  rows = [bench_model(m, scales=scales, dtype=dtype, batch_per_device=1, view_chunk=1, reps=0, num_images=a.images,
                      ceiling_tflops=0.0, zoom_impl=a.zoom_impl or None, flops_only=True) for m in models_]
  fracs = (1.0, 0.5, 0.3)
  hdr = (f"{'model':<20} {'views':>5} {'GFLOP/view':>10} {'zoom GFLOP/img':>14} {'10crop GFLOP/img':>16} "
         f"{'GFLOP/img':>9} {'PFLOP/' + str(a.images // 1000) + 'k':>9} " +
         " ".join(f"{'min@' + str(int(100 * f)) + '%':>8}" for f in fracs))
  print(hdr)
  print("-" * len(hdr))
  for r in rows:
    total = r["gflop_per_image"] * 1e9 * a.images
    r["pflop_dataset"] = total / 1e15
    r["minutes_at_fraction"] = {str(f): total / (f * a.assume_tflops * 1e12) / 60 for f in fracs}
    # Roofline: a step can go no faster than its FLOPs at the matmul ceiling or its bytes at the HBM bandwidth
    # (bytes of the program as compiled for this backend; an accelerator's fusion differs).
    r["roofline_s_per_image"] = max(r["gflop_per_image"] * 1e9 / (a.assume_tflops * 1e12),
                                    r["gbytes_per_image"] * 1e9 / (a.assume_tbps * 1e12))
    r["roofline_minutes_dataset"] = r["roofline_s_per_image"] * a.images / 60
    print(f"{r['model']:<20} {r['views_per_image']:>5} {r['gflop_per_view_model']:>10.3f} "
          f"{r['gflop_per_image_zoom_kernel']:>14.2f} {r['gflop_per_image_ten_crops']:>16.2f} "
          f"{r['gflop_per_image']:>9.1f} {r['pflop_dataset']:>9.1f} " +
          " ".join(f"{r['minutes_at_fraction'][str(f)]:>8.1f}" for f in fracs))
  print(f"\n(minutes for {a.images} images at the given fraction of {a.assume_tflops:.0f} TFLOP/s)")
  print(f"\n| model | GFLOP/img | GB/img (compiled here): model per view / zoom kernel / 10 crops / total | "
        f"roofline ms/img at {a.assume_tflops:.0f} TFLOP/s, {a.assume_tbps:.1f} TB/s | roofline min for {a.images} |")
  print("|---|---|---|---|---|")
  for r in rows:
    print(f"| {r['model']} | {r['gflop_per_image']:.1f} | "
          f"{r['gbytes_per_view_model']:.3f} / "
          f"{r['gbytes_per_image_zoom_kernel']:.2f} / {r['gbytes_per_image_ten_crops']:.2f} / "
          f"{r['gbytes_per_image']:.1f} | {1e3 * r['roofline_s_per_image']:.2f} | "
          f"{r['roofline_minutes_dataset']:.1f} |")
  out = {"flops_only": True, "assume_tflops": a.assume_tflops, "assume_tbps": a.assume_tbps, "models": rows}
  if a.out:
    with open(a.out, "w") as f:
      json.dump(out, f, indent=2)
    print(f"wrote {a.out}")
  return out


def main(argv=None) -> dict:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--quick", action="store_true", help="CPU smoke test: tiny model, 2 scales, small matmuls")
  p.add_argument("--out", default="", help="write the results as JSON here")
  p.add_argument("--models", default="", help="comma-separated registered names "
                 "(default resnet50,efficientnet_lite0; --quick: efficientnet_lite_tiny)")
  p.add_argument("--dtype", default="bfloat16", choices=("bfloat16", "float32"))
  p.add_argument("--batch", type=int, default=0, help="images per device per step (default 16; quick 1)")
  p.add_argument("--view-chunk", type=int, default=0, help="views per image per model call (default 167)")
  p.add_argument("--reps", type=int, default=0, help="timed steps (default 5; quick 2)")
  p.add_argument("--matmul-n", type=int, default=0, help="matrix side (default 8192; quick 256)")
  p.add_argument("--images", type=int, default=50_000, help="dataset size for the projection")
  p.add_argument("--zoom-impl", default="", choices=("", "dense", "sparse"),
                 help="zoom kernel implementation (default: zoomjax.zoom's choice for the backend)")
  p.add_argument("--flops-only", action="store_true", help="only XLA FLOP counts (no timing; cheap on CPU), "
                 "with the time each would take at --assume-tflops")
  p.add_argument("--assume-tflops", type=float, default=790.0, help="ceiling for --flops-only projections "
                 "(H200 bf16 dense matmul measured here: about 790)")
  p.add_argument("--assume-tbps", type=float, default=4.8, help="HBM bandwidth for the --flops-only roofline "
                 "(H200: 4.8 TB/s; H100 SXM: 3.35)")
  a = p.parse_args(argv)
  models_ = [m for m in (a.models or ("efficientnet_lite_tiny" if a.quick else
                                       "resnet50,efficientnet_lite0")).split(",") if m]
  batch = a.batch or (1 if a.quick else 16)
  chunk = a.view_chunk or (14 if a.quick else 167)
  reps = a.reps or (2 if a.quick else 5)
  n = a.matmul_n or (256 if a.quick else 8192)
  scales = QUICK_SCALES if a.quick else PAPER_SCALES
  dtype = jnp.dtype(a.dtype)

  if a.flops_only:
    return flops_table(a, models_, scales, dtype)
  t_start = time.perf_counter()
  dev = jax.devices()[0]
  info = {"backend": jax.default_backend(), "device_kind": dev.device_kind, "local_devices": jax.local_device_count(),
          "jax": jax.__version__, "python": platform.python_version(), "quick": a.quick}
  print(f"# gpu_check: {info}", flush=True)
  ceilings = {}
  for dt in (jnp.bfloat16, jnp.float32):
    r = matmul_ceiling(n, dt, reps=max(3, reps))
    ceilings[r["dtype"]] = r
    print(f"matmul {r['dtype']:>8} {n}x{n}x{r['k'] * n}: {r['tflops']:8.2f} TFLOP/s "
          f"(median of {len(r['times_s'])})", flush=True)
  ceiling = ceilings[dtype.name]["tflops"]
  results = []
  for name in models_:
    r = bench_model(name, scales=scales, dtype=dtype, batch_per_device=batch, view_chunk=chunk, reps=reps,
                    num_images=a.images, ceiling_tflops=ceiling, zoom_impl=a.zoom_impl or None)
    results.append(r)
    print(f"{name}: compile {r['compile_s']:.1f} s, step {r['step_median_s'] * 1e3:.1f} ms", flush=True)
  total_s = time.perf_counter() - t_start

  command = " ".join(["python", "experiments/gpu_check.py"] + (argv if argv is not None else sys.argv[1:]))
  # One Markdown table to paste into BENCHMARKS.md as it is: the command, the machine, the ceiling, the rows.
  machine = ", ".join(f"{k} {v}" for k, v in info.items())
  print(f"\n`{command}` ({machine}); {dtype.name} matmul ceiling ({n}^3) {ceiling:.2f} TFLOP/s; total wall "
        f"time {total_s:.1f} s\n")
  print("| model | dtype | devices | views/img | GFLOP/img | views/s | images/s | TFLOP/s | of ceiling | 50k proj |")
  print("|---|---|---|---|---|---|---|---|---|---|")
  for r in results:
    frac = r["fraction_of_ceiling"]
    print(f"| {r['model']} | {r['dtype']} | {r['devices']} | {r['views_per_image']} | {r['gflop_per_image']:.1f} | "
          f"{r['views_per_s']:.1f} | {r['images_per_s']:.2f} | {r['achieved_tflops']:.2f} | "
          f"{(f'{100 * frac:.1f}%' if frac else '-')} | {r['projected_s_for_images'] / 60:.1f} min |")
  out = {"info": info, "matmul": ceilings, "models": results, "total_s": total_s, "command": command}
  if a.out:
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    with open(a.out, "w") as f:
      json.dump(out, f, indent=2)
    print(f"wrote {a.out}")
  return out


if __name__ == "__main__":
  main()
  from machine_info import line  # pylint: disable=g-import-not-at-top  experiments/machine_info.py
  print(line())
