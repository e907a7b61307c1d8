"""Benchmark: zoom-sweep throughput end to end vs the model alone vs the authors' way.

  .venv/bin/python experiments/bench_sweep.py --model efficientnet_lite0 --data demo_photos --grid small --runs 5

Three ways to get the same per-view predictions for the same images:
  end-to-end   the sweep as it runs: make_batches (decode, canvas) -> one jitted step (zoom kernel + 10 crops
               + model in view chunks + masked softmax + compact records) -> numpy records.
  model-only   the same jitted model calls on the same chunk shapes, on views already in device memory
               (no data pipeline, no zoom kernel): the floor the pipeline is measured against.
  authors      the original recipe (ZoomIsAllYouNeed eval-IN-trained.py): for every view, PIL Resize(S, bicubic)
               of every image, crop at the anchor with black padding, normalise, one model pass per view over
               the images (same jitted model, batch = the images).
Prints views/s (median of --runs, after one warm-up) and the ratios, measured in the same process.

  .venv/bin/python experiments/bench_sweep.py --records --model efficientnet_lite_tiny --grid small --runs 7

--records instead measures what the per-view records cost: the sweep step of this checkout (top-k ids and
float16 probabilities with k = --record_k, entropy) against the step of --baseline_rev (git; top-5 ids only),
both on the same decoded photos, views, model and chunking, end to end from canvas to the host's record arrays,
alternating within every repetition; and prints the record bytes per view and for a 50,000-image paper grid.
"""
import importlib.util
import subprocess
import argparse
import os
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from configs import zoom_sweep as zoom_sweep_config  # noqa: E402
from zoomjax import data as data_lib  # noqa: E402
from zoomjax import sweep  # noqa: E402
from zoomjax import zoom  # noqa: E402
from zoomjax.jobs import zoom_sweep as job  # noqa: E402


def timed_interleaved(fns, runs):
  """Median seconds of each fn; the fns alternate within every repetition so that they see the same load."""
  for fn in fns:
    fn()  # Warm-up (compile).
  times = [[] for _ in fns]
  for _ in range(runs):
    for fn, ts in zip(fns, times):
      t0 = time.perf_counter()
      fn()
      ts.append(time.perf_counter() - t0)
  return [statistics.median(ts) for ts in times]


def authors_views(images, transforms, predict, variables, mean, std):
  """One pass per view over the images, PIL resize + crop per image and view (the authors' loop)."""
  preds = []
  for s, r, c in transforms:
    batch = []
    for im in images:
      w, h = im.size
      nw, nh = (s, int(s * h / w)) if w <= h else (int(s * w / h), s)
      res = im.resize((nw, nh), Image.Resampling.BICUBIC)
      tw, th = nw // 3, nh // 3
      ax, ay = c * tw + tw // 2, r * th + th // 2
      crop = res.crop((ax - 112, ay - 112, ax + 112, ay + 112))  # PIL pads with black outside.
      batch.append((np.asarray(crop, np.float32) - mean) / std)
    preds.append(np.asarray(predict(variables, jnp.asarray(np.stack(batch)))))
  return preds


REPO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")


def baseline_sweep_module(rev: str):
  """zoomjax/sweep.py as of git revision `rev`, imported under another name (the step before a change)."""
  src = subprocess.run(["git", "show", f"{rev}:zoomjax/sweep.py"], cwd=REPO, check=True, capture_output=True,
                       text=True).stdout
  module = importlib.util.module_from_spec(importlib.util.spec_from_loader(f"sweep_at_{rev}", loader=None))
  exec(compile(src, f"zoomjax/sweep.py@{rev}", "exec"), module.__dict__)  # pylint: disable=exec-used
  return module


def record_bytes(fields) -> int:
  """Bytes per view of the per-view record fields {name: (dtype, width)}."""
  return sum(np.dtype(dt).itemsize * width for dt, width in fields.values())


def records_cost(args, config, dataset, bundle, spec, indices):
  """The --records table: this checkout's step vs --baseline_rev's, and the record sizes."""
  from zoomjax.analysis import records as records_lib  # pylint: disable=g-import-not-at-top
  before = baseline_sweep_module(args.baseline_rev)
  grid = zoom.ZoomGrid(tuple(int(s) for s in config.grid.scales), anchors=int(config.grid.anchors),
                       crop=int(config.grid.crop))
  predict_fn = bundle.predict_fn()

  def crops_fn(canvas, hw):
    return zoom.zoom_crops_batch(canvas, hw, grid)

  old_spec = before.ViewSpec(transforms=spec.transforms, crop=spec.crop, extra_crops=spec.extra_crops)
  step_old = before.make_step(predict_fn, crops_fn, old_spec, view_chunk=args.view_chunk)
  step_new = sweep.make_step(predict_fn, crops_fn, spec, view_chunk=args.view_chunk, record_k=args.record_k)
  batches = list(data_lib.make_batches(dataset, batch_size=args.batch_size, canvas_fn=zoom.canvas_size,
                                       indices=indices, num_workers=2))
  t = len(spec.transforms)

  def run(step, module):
    def fn():
      for b in batches:
        module.split_outputs(jax.device_get(step(bundle.variables, b["image"], b["hw"], b["labels"])), t)
    return fn

  t_old, t_new = timed_interleaved([run(step_old, before), run(step_new, sweep)], args.runs)
  n_views = len(indices) * spec.num_views
  print(f"{args.model} on {args.data}: {len(indices)} images x {spec.num_views} views, grid {args.grid}, chunk "
        f"{args.view_chunk}, {jax.devices()[0].platform}, median of {args.runs} (alternating)")
  print("| sweep step (canvas -> host records) | views/s | time ratio |")
  print("|---|---:|---:|")
  print(f"| before ({args.baseline_rev}: top-5 ids, p_true, p_max) | {n_views / t_old:.1f} | 1.000 |")
  print(f"| now (top-{args.record_k} ids + float16 probabilities, entropy, p_true, p_max) | {n_views / t_new:.1f} | "
        f"{t_new / t_old:.3f} |")
  print(f"extra cost of the richer records: {100 * (t_new / t_old - 1):+.1f} % (target < 3 %)")
  old = {"top5": (np.int16, 5), "p_true": (np.float32, 1), "p_max": (np.float32, 1)}
  new = {"topk": (np.int16, args.record_k), "topk_p": (np.float16, args.record_k), "entropy": (np.float32, 1),
         "p_true": (np.float32, 1), "p_max": (np.float32, 1)}
  views = len(zoom.PAPER_SCALES) * 9 + len(records_lib.CROP_NAMES)
  agg = len(records_lib.AGG_SETS) * records_lib.TOP_K * (2 + 4)  # agg_top5 int16 + agg_p float32, per image.
  for name, fields in (("before", old), (f"now, k = {args.record_k}", new)):
    per_view = record_bytes(fields)
    total = 50_000 * (views * per_view + agg)
    print(f"records {name}: {per_view} B per view; 50,000 images x {views} views (paper grid + 10 crops): "
          f"{total / 1e9:.2f} GB")


def main():
  ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  ap.add_argument("--model", default="efficientnet_lite0")
  ap.add_argument("--data", default="demo_photos")
  ap.add_argument("--grid", default="small", help="paper | small | tiny | S1/S2/...")
  ap.add_argument("--limit", type=int, default=2)
  ap.add_argument("--batch_size", type=int, default=1)
  ap.add_argument("--view_chunk", type=int, default=48)
  ap.add_argument("--runs", type=int, default=5)
  ap.add_argument("--authors_views", type=int, default=6, help="views timed for the authors' way (per run)")
  ap.add_argument("--authors_batch", type=int, default=16,
                  help="images per model call in the authors' way (their DataLoader batch; photos are repeated)")
  ap.add_argument("--records", action="store_true", help="the records' cost: this step vs --baseline_rev's")
  ap.add_argument("--baseline_rev", default="HEAD", help="git revision of the step to compare with (--records)")
  ap.add_argument("--record_k", type=int, default=10, help="classes kept per view (--records)")
  args = ap.parse_args()

  config = zoom_sweep_config.get_config(f"model={args.model},data={args.data},grid={args.grid}")
  config.batch_size, config.view_chunk, config.canvas = args.batch_size, args.view_chunk, "max"
  config.model.random_init = args.model.endswith("tiny")
  dataset, bundle, grid, spec, step, variables = job.build(config)
  indices = list(range(min(args.limit, len(dataset))))
  n_views = len(indices) * spec.num_views
  if args.records:
    records_cost(args, config, dataset, bundle, spec, indices)
    return

  def end_to_end():
    for batch in data_lib.make_batches(dataset, batch_size=args.batch_size, canvas_fn=zoom.canvas_size,
                                       indices=indices, num_workers=2):
      sweep.split_outputs(step(variables, batch["image"], batch["hw"], batch["labels"]), len(spec.transforms))

  # Model-only: the step's model calls (same chunking, same softmax + compact outputs), views pre-made.
  module, pp = bundle.module, bundle.preprocessing
  predict_fn = bundle.predict_fn()
  n_chunks, chunk = sweep.chunking(spec.num_views, args.view_chunk)
  n_steps = -(-len(indices) // args.batch_size)
  views = jax.device_put(jnp.asarray(np.random.default_rng(0).uniform(
      0, 255, (n_chunks, args.batch_size * chunk, spec.crop, spec.crop, 3)).astype(np.float32)))
  labels = jnp.zeros((args.batch_size * chunk, 1), jnp.int32)

  @jax.jit
  def model_only(variables, views):
    def body(_, x):
      logits = predict_fn(variables, x)
      return None, sweep.compact_outputs(jax.nn.softmax(logits.astype(jnp.float32)), labels)
    return jax.lax.scan(body, None, views)[1]

  def model_only_all():
    for _ in range(n_steps):
      jax.block_until_ready(model_only(variables, views))

  model_views = n_steps * n_chunks * args.batch_size * chunk  # Includes the padding the step also computes.

  predict = jax.jit(lambda v, x: module.apply(v, x)[0])
  mean, std = np.asarray(pp.mean, np.float32), np.asarray(pp.std, np.float32)
  sub = list(spec.transforms)[::max(1, len(spec.transforms) // args.authors_views)][:args.authors_views]

  photos = [Image.fromarray(dataset.read(i)["image"]) for i in indices]
  photos = [photos[i % len(photos)] for i in range(args.authors_batch)]

  def authors():
    authors_views(photos, sub, predict, variables, mean, std)

  t_e2e, t_model, t_auth = timed_interleaved([end_to_end, model_only_all, authors], args.runs)
  e2e = n_views / t_e2e
  model = model_views / t_model
  auth = len(photos) * len(sub) / t_auth
  print(f"{args.model} on {args.data}: {len(indices)} images x {spec.num_views} views ({len(spec.transforms)} zoom "
        f"+ {len(spec.crop_names)} crops), grid {args.grid}, batch {args.batch_size} images x chunk {chunk} "
        f"views, {jax.devices()[0].platform}, median of {args.runs}")
  print("| pipeline | views/s | ratio |")
  print("|---|---|---|")
  print(f"| model only (same chunk shapes, views in memory) | {model:.1f} | 1.00 |")
  print(f"| end-to-end sweep (decode + zoom + crops + model + records) | {e2e:.1f} | {e2e / model:.2f} |")
  print(f"| authors' way (PIL per view, one pass per view; {len(sub)} views x {len(photos)} images) | {auth:.1f} "
        f"| {auth / model:.2f} |")
  print(f"pipeline overhead on top of the model: {100 * (model / e2e - 1):.1f}% "
        f"(target <= 10%); end-to-end vs authors: {e2e / auth:.2f}x")


if __name__ == "__main__":
  main()
  from machine_info import line  # pylint: disable=g-import-not-at-top  experiments/machine_info.py
  print(line())
