"""Host input pipeline throughput: decoded-and-batched images/s of `make_batches` vs a plain PIL loop.

  .venv/bin/python experiments/bench_data.py [--data folder:../shared/data/imagenet-val-100] [--repeats 5]

Both sides decode every image to RGB uint8 and copy it onto its zero canvas; the baseline is the loop a
user would write (`PIL.Image.open(f).convert('RGB')`, one thread). Each configuration runs `--repeats` times
(after one warm-up pass that also fills the page cache); the table gives the median and the ratio to the
baseline measured in the same run, because this machine's CPU is shared and absolute numbers drift.
"""
import argparse
import pathlib
import statistics
import sys
import tempfile
import time

import numpy as np
from PIL import Image

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # Works without an installed zoomjax.
import zoomjax.data as zd  # noqa: E402


def canvas_fn():
  try:
    from zoomjax.zoom import canvas_size  # The zoom kernel's buckets, when that module exists.
    return canvas_size, "zoomjax.zoom.canvas_size"
  except ImportError:
    return (lambda h, w: (-(-h // 64) * 64, -(-w // 64) * 64)), "round up to multiples of 64"


def pil_loop(ds, cfn) -> int:
  n = 0
  for i in range(len(ds)):
    src = ds.fetch(i)
    img = np.asarray(Image.open(src).convert("RGB"))
    h, w = img.shape[:2]
    canvas = np.zeros((*cfn(h, w), 3), np.uint8)
    canvas[:h, :w] = img
    n += 1
  return n


def pipeline(ds, cfn, batch_size, workers) -> int:
  fresh = zd.Dataset(ds.name, ds.label_space, ds.ids, [[x for x in r if x >= 0] for r in ds.labels], ds.fetch)
  n = 0
  for b in zd.make_batches(fresh, batch_size=batch_size, canvas_fn=cfn, num_workers=workers, prefetch=2):
    n += int(b["mask"].sum())
  return n


def tfds_copy(ds, tmp):
  """The same images as our array_record build (ImageNet-Sketch config: WNID folders), read without TF."""
  root = pathlib.Path(tmp) / "manual" / "sketch"
  for i in range(len(ds)):
    d = root / zd.wnids()[int(ds.labels[i, 0])]
    d.mkdir(parents=True, exist_ok=True)
    src = pathlib.Path(ds.fetch(i))
    (d / src.name).symlink_to(src.resolve())
  t = time.perf_counter()
  built = zd.get_dataset("imagenet_sketch", manual_dir=root.parent, data_dir=pathlib.Path(tmp) / "tfds")
  return built, time.perf_counter() - t


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--data", default="folder:../shared/data/imagenet-val-100")
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--batch_size", type=int, default=16)
  args = parser.parse_args()
  ds = zd.get_dataset(args.data)
  cfn, cname = canvas_fn()
  configs = [("PIL loop, 1 thread (baseline)", lambda: pil_loop(ds, cfn))]
  for workers in (0, 1, 2, 4):
    configs.append((f"make_batches, {workers} decode threads" if workers else "make_batches, inline decode",
                    lambda w=workers: pipeline(ds, cfn, args.batch_size, w)))
  tmp = tempfile.TemporaryDirectory()
  built, build_s = tfds_copy(ds, tmp.name)
  configs.append(("make_batches over our array_record build, 2 threads",
                  lambda: pipeline(built, cfn, args.batch_size, 2)))
  rows = []
  for name, fn in configs:
    fn()  # Warm-up (page cache, imports).
    rates = []
    for _ in range(args.repeats):
      t = time.perf_counter()
      n = fn()
      rates.append(n / (time.perf_counter() - t))
    rows.append((name, statistics.median(rates), min(rates), max(rates)))
  base = rows[0][1]
  print(f"{len(ds)} images of {args.data}; canvas: {cname}; batch {args.batch_size}; "
        f"median of {args.repeats} runs (images/s, includes the header-size pass)")
  print("| configuration | images/s (median) | min-max | vs PIL loop |")
  print("|---|---|---|---|")
  for name, med, lo, hi in rows:
    print(f"| {name} | {med:.0f} | {lo:.0f}-{hi:.0f} | {med / base:.2f}x |")
  print(f"building the array_record copy (TFDS, no TensorFlow): {len(ds) / build_s:.0f} images/s (one run)")


if __name__ == "__main__":
  main()
  from machine_info import line  # pylint: disable=g-import-not-at-top  experiments/machine_info.py
  print(line())
