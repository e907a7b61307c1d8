"""What the jobs' safety checks cost, against the work they guard, on this machine.

  .venv/bin/python experiments/bench_checks.py --photos ../shared/data/imagenet-val-100 --images 8

Three tables, each check timed (median of --runs) next to a baseline measured in the same run:
1. Per run, the checks made before anything is loaded or written: `zoomjax.runtime.config.check_job` (every
   declared field, the workdir, folder datasets), `ModelBundle.check_input_size` (free at the model's own size,
   an abstract trace otherwise) and the dataset fingerprint of the run's images, against the sweep and the
   evaluation of those images (the steps of a tiny model, `efficientnet_lite_tiny`, on the photos).
2. Per batch: the sweep's and the evaluation's non-finite check (`sweep.check_finite`) and the view store's
   staleness stamps (size, mtime and CRC-32 of each image's bytes, `view_cache.ViewStore`), against the step of
   that batch alone (a lower bound of the batch's time: decoding and view making excluded).
3. Per shard, on a real paper-grid-sized shard file (synthetic records): the dataset fingerprint of the shard's
   range, verifying an existing shard on resume (`shards.check_shard`: open, index range, ids, fingerprint), the
   non-finite check of its batches and writing the shard, against the time the shard's images take to sweep
   (shard_size * views / views_per_s, the measured end-to-end rate of BENCHMARKS.md).
A tiny model makes the step as short as it gets, so tables 1 and 2 give upper bounds of the checks' share.
"""
import argparse
import math
import os
import statistics
import tempfile
import time

import numpy as np

from zoomjax import sweep
from zoomjax.analysis import records as R
from zoomjax.runtime import shards

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def median_seconds(fn, runs: int) -> float:
  fn()
  out = []
  for _ in range(runs):
    t = time.perf_counter()
    fn()
    out.append(time.perf_counter() - t)
  return statistics.median(out)


def table(title: str, base_name: str, base_s: float, costs, unit: str = "ms") -> None:
  """One markdown table: each check's time and its share of `base_s`, the baseline measured in this run."""
  print(f"\n{title}")
  print(f"| check | {unit} | share of {base_name} ({1e3 * base_s:.2f} ms) |")
  print("|---|---|---|")
  for name, s in costs.items():
    print(f"| {name} | {1e3 * s:.3f} | {100 * s / base_s:.4f} % |")
  total = sum(costs.values())
  print(f"| all of them | {1e3 * total:.3f} | {100 * total / base_s:.4f} % |")


def per_run_and_batch(photos: str, n: int, runs: int) -> None:
  """Tables 1 and 2 on a tiny model and `n` photos of the folder `photos`."""
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top

  from zoomjax import data  # pylint: disable=g-import-not-at-top
  from zoomjax.data import view_cache  # pylint: disable=g-import-not-at-top
  from zoomjax.jobs import evaluate as eval_job  # pylint: disable=g-import-not-at-top
  from zoomjax.jobs import zoom_sweep as sweep_job  # pylint: disable=g-import-not-at-top
  from zoomjax.models import bundle as bundle_lib  # pylint: disable=g-import-not-at-top
  from zoomjax.runtime import config as config_lib  # pylint: disable=g-import-not-at-top
  from zoomjax.runtime import parallel  # pylint: disable=g-import-not-at-top

  config_lib.bind_checkout_configs()
  from zoomjax.configs import evaluate as eval_cfg  # pylint: disable=g-import-not-at-top
  from zoomjax.configs import zoom_sweep as sweep_cfg  # pylint: disable=g-import-not-at-top

  with tempfile.TemporaryDirectory() as tmp:
    workdir = os.path.join(tmp, "run")
    c = sweep_cfg.get_config(f"runlocal,data=folder:{photos},limit={n}")
    c.canvas = "max"  # One executable for every photo: the step is timed, not its compiles.
    dataset, bundle, grid, spec, step, variables = sweep_job.build(c)
    n = min(n, len(dataset))
    canvas_fn = sweep_job._canvas_fn("max", dataset, n, 2)  # pylint: disable=protected-access
    batches = list(data.make_batches(dataset, batch_size=step.batch_size, canvas_fn=canvas_fn, indices=range(n),
                                     num_workers=2, max_pixels_warning=0))
    names = spec.view_names + spec.crop_names
    outs = [step(variables, b["image"], b["hw"], b["labels"]) for b in batches]  # Compiles once.
    sweep_step = statistics.median(
        median_seconds(lambda b=b: step(variables, b["image"], b["hw"], b["labels"]), runs) for b in batches)
    sweep_finite = statistics.median(median_seconds(
        lambda b=b, o=o: sweep.check_finite(o, b["index"], dataset.ids.__getitem__, names, "m"), runs)
        for b, o in zip(batches, outs))

    e = eval_cfg.get_config(f"runlocal,data=folder:{photos},limit={n}")
    pp = bundle.preprocessing
    mesh = parallel.make_mesh()
    estep = eval_job.make_step(bundle, pp, mesh, jnp.float32)
    bs = int(e.batch_size)
    views = np.stack([pp.pil_view(dataset.read(i)["image"]) for i in range(n)])
    labels = np.asarray(dataset.labels[:n], np.int32)
    mask = np.ones(bundle.num_classes, bool)
    groups = [(views[a:a + bs], labels[a:a + bs], np.arange(a, min(a + bs, n))) for a in range(0, n, bs)]
    groups = [g for g in groups if len(g[0]) == bs] or groups[:1]
    eouts = [parallel.to_host(estep(variables, v, l, mask)) for v, l, _ in groups]
    eval_step = statistics.median(median_seconds(lambda v=v, l=l: parallel.to_host(estep(variables, v, l, mask)),
                                                 runs) for v, l, _ in groups)
    eval_finite = statistics.median(median_seconds(
        lambda o=o, i=i: sweep.check_finite(o, i, dataset.ids.__getitem__, ["crop"], "m"), runs)
        for (_, _, i), o in zip(groups, eouts))
    host = statistics.median(median_seconds(
        lambda i=i: [pp.pil_view(dataset.read(int(k))["image"]) for k in i], runs) for _, _, i in groups)
    store = view_cache.ViewStore(os.path.join(tmp, "views"), {"bench": 1}, dataset)
    stamps = statistics.median(median_seconds(lambda i=i: store._stamps(i), runs)  # pylint: disable=protected-access
                               for _, _, i in groups)

    per_run = {
        "check_job: every declared field, workdir, folder datasets": median_seconds(
            lambda: config_lib.check_job(c, workdir), runs),
        "check_input_size at the model's own size": median_seconds(
            lambda: bundle.check_input_size(pp.input_size, "grid.crop"), runs),
        "check_input_size at another size (abstract trace)": median_seconds(
            lambda: (bundle_lib._SIZES_TAKEN.clear(),  # pylint: disable=protected-access
                     bundle.check_input_size(pp.input_size + 32, "grid.crop")), runs),
        "the same, once traced in this process": median_seconds(
            lambda: bundle.check_input_size(pp.input_size + 32, "grid.crop"), runs),
        f"dataset fingerprint of the {n} images": median_seconds(
            lambda: shards.fingerprint(dataset.ids[:n], dataset.labels[:n]), runs),
    }
    sweep_run = len(batches) * sweep_step
    print(f"{n} photos of {photos}; model {bundle.name} ({pp.input_size} px), sweep grid {list(c.grid.scales)} + "
          f"{len(spec.crop_names)} crops = {spec.num_views} views; median of {runs}")
    table(f"1. Per run, before anything is loaded or written (vs the {n} images' steps)",
          f"the sweep's {len(batches)} steps", sweep_run, per_run)
    trace = per_run["check_input_size at another size (abstract trace)"]
    always = sum(per_run.values()) - trace - per_run["the same, once traced in this process"]
    eval_image = (eval_step + host) / bs
    sweep_image = sweep_run / n

    def at_least(cost, per_image):
      return math.ceil(cost / (0.01 * per_image))

    print(f"Fixed costs per run. Always paid ({1e3 * always:.3f} ms): under 1 % of any sweep of more than "
          f"{at_least(always, sweep_image)} images and of any evaluation (decode, view and step: "
          f"{1e3 * eval_image:.2f} ms per image) of more than {at_least(always, eval_image)}. The trace, paid only "
          f"when the crop differs from the model's own input size (as here: {spec.crop} px views, a "
          f"{pp.input_size} px model), once per process: under 1 % of any sweep of more than "
          f"{at_least(trace, sweep_image)} images (an evaluation pays it only with a preprocessing.input_size "
          f"override: more than {at_least(trace, eval_image)} images with this tiny model).")
    table("2a. Per sweep batch (1 image x all its views)", "the sweep step", sweep_step,
          {"non-finite check of the step's outputs": sweep_finite})
    table(f"2b. Per evaluation batch ({bs} views; the step alone: {1e3 * eval_step:.2f} ms)",
          "decode, view and step", eval_step + host,
          {"non-finite check of the step's outputs": eval_finite,
           f"view store stamps of {bs} images (stat + CRC-32 of the file; only with view_cache_dir)": stamps})


def main():
  ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("--shard-size", type=int, default=16)
  ap.add_argument("--views", type=int, default=334, help="views per image (paper grid + 10 crops)")
  ap.add_argument("--views-per-s", type=float, default=40.0, help="measured end-to-end sweep rate")
  ap.add_argument("--runs", type=int, default=20)
  ap.add_argument("--photos", default=os.path.join(REPO, "..", "shared", "data", "imagenet-val-100"),
                  help="a folder dataset of real photos for tables 1 and 2 ('' = skip them)")
  ap.add_argument("--images", type=int, default=8, help="photos of it to use")
  a = ap.parse_args()
  if a.photos:
    per_run_and_batch(os.path.abspath(a.photos), a.images, a.runs)
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
  table(f"3. Per shard of {n} images x {a.views} views ({size / 1e6:.2f} MB); sweeping it takes {sweep_s:.0f} s "
        f"at {a.views_per_s:g} views/s; median of {a.runs}", "the shard's sweep time", sweep_s, costs)


if __name__ == "__main__":
  main()
  from machine_info import line  # pylint: disable=g-import-not-at-top  experiments/machine_info.py
  print(line())
