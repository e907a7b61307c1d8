"""Benchmark: the evaluation job's throughput vs the model alone vs a plain PIL loop, in one process.

  .venv/bin/python experiments/bench_evaluate.py --model efficientnet_lite0 \
    --data folder:../shared/data/imagenet-val-100 --images 320 --batch_size 32 --runs 5

--images streams that many images (cycling through the first --limit of the dataset), so that the first
batch's decode, which nothing can overlap, weighs what it does in a dataset-sized run (1 batch of 10, not 1 of 2).

Three ways to get the same top-1 for the same images:
  job          what `zoomjax.jobs.evaluate` runs per shard: make_batches (threaded decode + PIL resize/crop of
               the checkpoint's preprocessing) -> the jitted model program (normalise, forward, masked
               softmax, top-5) -> numpy.
  job, cached  the job for a later model of a run with the same view (dataset, resize, crop): make_batches copies
               the views the first model made (zoomjax.data.view_cache) instead of decoding again.
  job, stored  the job in a later run with view_cache_dir: the views are read from the run's .npz file (the OS
               page cache holds it, as it does on a machine that evaluates checkpoint after checkpoint).
  model-only   the same jitted model program on the same batch shape, views already in device memory: the floor.
  PIL loop     decode with PIL, Resize + CenterCrop with PIL, normalise in NumPy, batch, jitted forward: the
               torchvision-style evaluation loop.
  host alone   the job's make_batches without the model: the decoding and resizing any evaluator pays; on a
               CPU-only machine it shares the cores with the model, on an accelerator it overlaps.
Prints images/s (median of --runs after a warm-up, the three interleaved) and the ratios.
"""
import argparse
import os
import shutil
import sys
import tempfile

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from configs import evaluate as evaluate_config  # noqa: E402
from zoomjax import data as data_lib  # noqa: E402
from zoomjax.data import view_cache  # noqa: E402
from zoomjax.jobs import evaluate as job  # noqa: E402
from zoomjax.runtime import parallel  # noqa: E402
from bench_sweep import timed_interleaved  # noqa: E402  (the fns alternate within every repetition)


def pil_view(path_or_bytes, pp):
  """torchvision Resize(resize_size, filter) + CenterCrop(input_size) with PIL, as float32 pixels."""
  im = Image.open(path_or_bytes if isinstance(path_or_bytes, str) else __import__("io").BytesIO(path_or_bytes))
  im = im.convert("RGB")
  w, h = im.size
  s = pp.resize_size
  nw, nh = (s, int(s * h / w)) if w <= h else (int(s * w / h), s)
  filt = Image.Resampling.BICUBIC if pp.resize_method == "bicubic" else Image.Resampling.BILINEAR
  im = im.resize((nw, nh), filt)
  top, left = int(round((nh - pp.input_size) / 2.0)), int(round((nw - pp.input_size) / 2.0))
  return np.asarray(im.crop((left, top, left + pp.input_size, top + pp.input_size)), np.float32)


def main():
  ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  ap.add_argument("--model", default="efficientnet_lite0")
  ap.add_argument("--data", default="demo_photos")
  ap.add_argument("--limit", type=int, default=100, help="distinct images (the first of the dataset)")
  ap.add_argument("--images", type=int, default=320, help="images per run, cycling through the distinct ones")
  ap.add_argument("--batch_size", type=int, default=32)
  ap.add_argument("--runs", type=int, default=5)
  ap.add_argument("--num_workers", type=int, default=None, help="decode threads (default: the config's)")
  ap.add_argument("--random_init", action="store_true", help="seeded random weights (models without a package)")
  args = ap.parse_args()

  config = evaluate_config.get_config(f"models={args.model},data={args.data}")
  config.random_init = args.random_init
  if args.num_workers is not None:
    config.num_workers = args.num_workers
  workers = data_lib.decode_threads(config.num_workers)
  entry = job.parse_model_entry(args.model)
  dataset = data_lib.get_dataset(job.parse_data_entry(config.data[0]).name)
  distinct = min(args.limit, len(dataset))
  n = args.images - args.images % args.batch_size
  if n == 0 or distinct == 0:
    raise SystemExit(f"--images {args.images} holds no whole batch of {args.batch_size}")
  mesh = parallel.make_mesh()
  model = job.prepare_model(config, entry, mesh)
  bundle, pp, step, variables = model.bundle, model.pp, model.step, model.variables
  space = dataset.label_space
  mask = job.logit_mask(space, bundle.num_classes)
  indices = [i % distinct for i in range(n)]

  def job_way(table=None):
    for batch in data_lib.make_batches(dataset, batch_size=args.batch_size, indices=indices,
                                       num_workers=workers, transform=pp.pil_view,
                                       transform_hw=(pp.input_size, pp.input_size), view_table=table):
      args_ = (batch["image"], batch["labels"].astype(np.int32))
      np.asarray(parallel.to_host(step(variables, *parallel.shard_batch(args_, mesh), mask))["top5"])

  table = view_cache.ViewCache(int(float(config.view_cache_gb) * 1e9)).table("bench")
  job_way(table)  # The first model of the run fills the table.
  store_root = tempfile.mkdtemp(prefix="bench_views_")
  store = view_cache.ViewStore(store_root, {"bench": True}, dataset)
  store.save(indices, table)  # What the first run writes.

  views = jnp.full((args.batch_size, pp.input_size, pp.input_size, 3), 100, jnp.uint8)
  labels = jnp.zeros((args.batch_size, space.max_labels), jnp.int32)

  def model_only():
    for _ in range(n // args.batch_size):
      np.asarray(parallel.to_host(step(variables, views, labels, mask))["top5"])

  predict = jax.jit(bundle.predict_fn())

  def pil_loop():
    for s in range(0, n, args.batch_size):
      batch = np.stack([pil_view(dataset.fetch(i), pp) for i in indices[s:s + args.batch_size]])
      np.asarray(jnp.argmax(predict(bundle.variables, jnp.asarray(batch)), -1))

  def host_only():
    for batch in data_lib.make_batches(dataset, batch_size=args.batch_size, indices=indices,
                                       num_workers=workers, transform=pp.pil_view,
                                       transform_hw=(pp.input_size, pp.input_size)):
      np.asarray(batch["image"]).sum()

  t_job, t_cached, t_stored, t_model, t_pil, t_host = timed_interleaved(
      [job_way, lambda: job_way(table), lambda: job_way(store.open(indices, (pp.input_size,) * 2)), model_only,
       pil_loop, host_only], args.runs)
  shutil.rmtree(store_root, ignore_errors=True)
  ips = [n / t for t in (t_job, t_model, t_pil, t_cached, t_stored)]
  print(f"{args.model} on {dataset.name}: {n} images ({distinct} distinct), batch {args.batch_size}, "
        f"preprocessing resize {pp.resize_size} {pp.resize_method} -> crop {pp.input_size}; "
        f"{jax.device_count()} device(s) {jax.devices()[0].platform}; load average {os.getloadavg()[0]:.2f}; "
        f"median of {args.runs} runs")
  print("| way | images/s | vs model-only |")
  print("|---|---|---|")
  for name, v in (("job (make_batches with PIL views + model program)", ips[0]), ("model-only", ips[1]),
                  ("PIL decode + resize/crop + model loop", ips[2]),
                  ("job, later model of the run: views from the view cache", ips[3]),
                  ("job, later run: views read from view_cache_dir", ips[4])):
    print(f"| {name} | {v:.1f} | {v / ips[1]:.3f} |")
  print(f"| host pipeline alone (decode + PIL view, {workers} threads, no model) | {n / t_host:.1f} | "
        f"{n / t_host / ips[1]:.3f} |")
  print(f"pipeline cost on top of the model: {100 * (t_job / t_model - 1):.1f} % (first model), "
        f"{100 * (t_cached / t_model - 1):.1f} % (later models with the same view), "
        f"{100 * (t_stored / t_model - 1):.1f} % (later runs, views on disk); job vs PIL loop: "
        f"{ips[0] / ips[2]:.2f}x; host work alone: {1000 * t_host / n:.2f} ms per image (wall, "
        f"{workers} threads) against {1000 * t_model / n:.2f} ms of model")


if __name__ == "__main__":
  main()
  from machine_info import line  # pylint: disable=g-import-not-at-top  experiments/machine_info.py
  print(line())
