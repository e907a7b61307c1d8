"""Job `tta`: baseline, MEMO + AugMix, MEMO + RRC or zoom aggregation over a dataset (configs/tta.py).

Each batch of images runs one jitted, vmapped episode per image (each image its own parameter copy), split over
this process's devices; results go through the same shard / resume / merge machinery as the zoom sweep
(`zoomjax.runtime.shards`). Workdir layout:
  config.json              the resume key: every field that changes a result (method, model and checkpoint,
                           data and label space, seeds, MEMO / view / zoom settings, limit, shard size)
  seed_<s>/shards/         per-shard records of seed s: pred, top-5 ids and probabilities, p_true, correct
  seed_<s>/predictions.npz all shards of seed s merged (process 0)
  metrics.json             accuracy per seed, mean and spread over seeds (process 0), written last, with
                           `"complete": true` (every seed's predictions.npz is written before it)
"""
import importlib.metadata
import inspect
import json
import math
import os
import platform
import time
import warnings
from typing import Any, Dict, Optional

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import logging

from zoomjax import sweep
from zoomjax.analysis import metrics as analyses
from zoomjax.analysis import paper_numbers
from zoomjax.data import label_space
from zoomjax.errors import UserError
from zoomjax.reports import html
from zoomjax.runtime import atomic
from zoomjax.runtime import console
from zoomjax.runtime import parallel
from zoomjax.runtime import progress as progress_lib
from zoomjax.runtime import shards
from zoomjax.tta import augment, memo, zoom_tta

# Config fields that change a result; a resumed run must agree on all of them.
RESULT_FIELDS = ("method", "model", "data", "limit", "seeds", "memo", "view", "zoom", "shard_size",
                 "canvas_multiple")
FIELDS = ("pred", "top5", "top5_p", "p_true", "correct")  # Per-image record fields besides index/ids/labels.
RECORDS_FILE = "predictions.npz"


def library_versions() -> Dict[str, str]:
  out = {"python": platform.python_version()}
  for name in ("jax", "jaxlib", "flax", "optax", "numpy", "pillow"):
    try:
      out[name] = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
      out[name] = "missing"
  return out


def square_canvas(multiple: int):
  """canvas_fn for make_batches: a square of side max(h, w) rounded up (one compile per side)."""

  def canvas_fn(h: int, w: int):
    side = int(math.ceil(max(h, w) / multiple) * multiple)
    return side, side

  return canvas_fn


def make_optimizer(m: ml_collections.ConfigDict) -> optax.GradientTransformation:
  """`optax.<m.optimizer>(learning_rate=m.lr, ...)` with momentum / weight_decay where the optimiser takes them."""
  name = str(m.optimizer)
  fn = getattr(optax, name, None)
  if not callable(fn) or "learning_rate" not in inspect.signature(fn).parameters:
    raise UserError(f"memo.optimizer={name!r} is not an optax optimiser (e.g. sgd, adam, adamw)")
  params = inspect.signature(fn).parameters
  kw = {"learning_rate": float(m.lr)}
  for key in ("momentum", "weight_decay"):
    value = float(m.get(key, 0.0))
    if key in params:
      # optax.sgd's momentum=None means none; 0.0 would add a no-op trace.
      kw[key] = None if (value == 0.0 and params[key].default is None) else value
    elif value:
      raise UserError(f"memo.{key}={value}, but optax.{name} takes no {key}")
  return fn(**kw)


def build_episode(config: ml_collections.ConfigDict, bundle, logit_mask: np.ndarray) -> memo.EpisodeFn:
  """The per-image function `config.method` names."""
  method = config.method
  view_kw = dict(resize_size=int(config.view.resize), crop_size=int(config.view.crop),
                 view_method=config.view.method)
  if method == "baseline":
    return memo.make_baseline(bundle, logit_mask=logit_mask, **view_kw)
  if method in ("memo_augmix", "memo_rrc"):
    m = config.memo
    size = int(m.view_size)
    if method == "memo_rrc":
      aug = augment.rrc_augmentation(size)
    else:
      aug = augment.augmix_augmentation(size, float(m.severity), int(m.width), int(m.max_depth))
    prior = float(m.prior_strength) if float(m.prior_strength) > 0 else None
    note = memo.prior_mode_note(bundle, prior)  # A model that cannot take prior mode: said once, in one line.
    if note is not None:
      (console.warn if "batch_stats" in bundle.variables else console.say)(f"tta {method}: {note}")
    with warnings.catch_warnings():  # make_memo's warning is the note just printed.
      warnings.simplefilter("ignore", UserWarning)
      return memo.make_memo(bundle, aug, optimizer=make_optimizer(m), num_views=int(m.num_views),
                            steps=int(m.steps), prior_strength=prior, logit_mask=logit_mask, **view_kw)
  if method in ("zoom_mean", "zoom_max"):
    from zoomjax import zoom  # pylint: disable=import-outside-toplevel
    scales = tuple(int(s) for s in config.zoom.scales) or paper_numbers.ZOOM_IN_SCALES
    try:
      grid = zoom.ZoomGrid(scales, anchors=int(config.zoom.anchors), crop=int(config.view.crop))
    except (TypeError, ValueError) as e:
      raise UserError(f"config.zoom: {e}") from None
    return zoom_tta.make_zoom_tta(bundle, zoom_tta.grid_views(grid), method.split("_")[1], logit_mask=logit_mask,
                                  view_chunk=int(config.zoom.view_chunk))
  raise UserError(f"method={method!r} is not one of baseline, memo_augmix, memo_rrc, zoom_mean, zoom_max")


def make_step(episode: memo.EpisodeFn, mesh: jax.sharding.Mesh):
  """`step(variables, images, hws, keys, labels) -> compact outputs` over a batch, split over `mesh`."""

  def step(variables, images, hws, keys, labels):
    logits = jax.vmap(episode, in_axes=(None, 0, 0, 0))(variables, images, hws, keys).astype(jnp.float32)
    out = sweep.compact_outputs(jax.nn.softmax(logits, axis=-1), labels)
    # Masked classes are -inf by design; NaN or +inf means broken weights or an overflow.
    out["finite"] = ~jnp.any(jnp.isnan(logits) | (logits == jnp.inf), axis=-1)[:, None]
    return out

  return parallel.data_parallel_jit(step, mesh, num_args=5)


def _seed_metrics(rows: Dict[str, np.ndarray], seed: int) -> Dict[str, Any]:
  n = int(rows["index"].shape[0])
  labels = rows["labels"]
  top5_hit = label_space.topk_correct(rows["top5"], labels)
  return {"seed": seed, "num_images": n,
          "accuracy": float(np.mean(rows["correct"])) if n else None,
          "accuracy_ci95": analyses.bootstrap_interval(float(np.mean(rows["correct"])), n) if n else None,
          "top5_accuracy": float(np.mean(top5_hit)) if n else None,
          "skipped": [str(s) for s in rows[shards.SKIPPED]]}


def run(config: ml_collections.ConfigDict, workdir: str) -> Optional[Dict[str, Any]]:
  """Runs (or resumes) `config.method` for every seed; process 0 merges and writes metrics.json."""
  from zoomjax import data, models  # pylint: disable=import-outside-toplevel
  pid = jax.process_index()
  t_start = time.monotonic()
  workers = data.decode_threads(config.num_workers)
  bundle = models.from_config(config.model)
  dataset = data.from_config(config.data, num_workers=workers)
  num_images = shards.images_to_run(config.limit, len(dataset))
  space = dataset.label_space
  episode = build_episode(config, bundle, space.logit_mask())
  mesh = parallel.make_mesh()
  batch_size = parallel.per_process_batch(int(config.batch_size), mesh)
  step = progress_lib.announcing(make_step(episode, mesh), lambda variables, images, *rest: (
      images.shape, f"the {config.method} step for batches of {images.shape[0]} on {images.shape[1]}x"
      f"{images.shape[2]} canvases"))  # Each canvas side compiles once.
  variables = parallel.replicate(bundle.variables, mesh)
  shards.num_shards(num_images, int(config.shard_size))  # A bad shard_size fails before the workdir is claimed.
  key = json.loads(config.to_json_best_effort())
  key["label_space"] = space.name
  # Claimed only once the model and data are built: a failed start leaves the workdir reusable.
  with shards.claim(workdir, pid, key, RESULT_FIELDS + ("label_space",), dataset.name, dataset.ids[:num_images],
                    dataset.labels[:num_images]):
    return _adapt(config, workdir, dataset, space, bundle, step, variables, mesh, batch_size=batch_size,
                  num_images=num_images, t_start=t_start)


def _adapt(config, workdir: str, dataset, space, bundle, step, variables, mesh, *, batch_size: int,
           num_images: int, t_start: float) -> Optional[Dict[str, Any]]:
  from zoomjax import data  # pylint: disable=import-outside-toplevel
  pid, pcount = jax.process_index(), jax.process_count()
  workers = data.decode_threads(config.num_workers)
  shard_size = int(config.shard_size)
  n_shards = shards.num_shards(num_images, shard_size)
  seeds = [int(s) for s in config.seeds]
  is_memo = config.method.startswith("memo")
  views = int(config.memo.num_views) if is_memo else 1
  logging.info("tta %s: %s on %s, %d images, seeds %s, %d shards of %d", config.method, config.model.name,
               dataset.name, num_images, seeds, n_shards, shard_size)
  canvas_fn = square_canvas(int(config.canvas_multiple))
  num_classes = int(bundle.num_classes)
  empty = dict(pred=np.zeros(0, np.int32), top5=np.zeros((0, 5), np.int16), top5_p=np.zeros((0, 5), np.float32),
               p_true=np.zeros(0, np.float32), correct=np.zeros(0, bool))
  computed = [0]
  loop_s = 0.0
  clock = progress_lib.CompileClock()
  for seed in seeds:  # The line a Ctrl-C prints counts every seed's images.
    shards.expect(os.path.join(workdir, f"seed_{seed}"), num_images=num_images, shard_size=shard_size,
                  process_index=pid, process_count=pcount)
  for seed in seeds:
    seed_dir = os.path.join(workdir, f"seed_{seed}")
    base_key = jax.random.PRNGKey(seed)

    def compute(batch, base_key=base_key):
      real = np.asarray(batch["index"]) >= 0
      # Padding slots repeat a real image (a 0x0 image has no views); run_shards drops their rows.
      src = np.where(real, np.arange(len(real)), np.argmax(real))
      args = (batch["image"][src], batch["hw"][src].astype(np.int32),
              np.asarray(memo.episode_keys(base_key, batch["index"][src])), batch["labels"][src].astype(np.int32))
      out = parallel.to_host(step(variables, *parallel.shard_batch(args, mesh)))
      sweep.check_finite(out, batch["index"], lambda i: dataset.ids[i], ["the prediction view"],
                         config.model.name)
      pred = out["top5"][:, 0].astype(np.int32)
      computed[0] += int(real.sum())
      return {"pred": pred, "top5": out["top5"].astype(np.int16), "top5_p": out["top5_p"].astype(np.float32),
              "p_true": out["p_true"].astype(np.float32), "correct": data.is_correct(pred, batch["labels"])}

    def batches_for(indices):
      return data.make_batches(dataset, batch_size=batch_size, canvas_fn=canvas_fn, indices=indices,
                               num_workers=workers, on_error=config.on_error,
                               max_pixels_warning=int(config.max_pixels_warning))

    def skipped_in(rng):
      return [f"{s['id']}: {s['reason']}" for s in dataset.skipped if s["index"] in rng]

    mine = shards.process_shards(n_shards, pid, pcount)
    total = sum(len(shards.shard_range(k, shard_size, num_images)) for k in mine)
    progress = progress_lib.Progress(total_images=total, views_per_image=views, what=f"tta {config.method} seed {seed}",
                              every_secs=float(config.progress_every_secs), log_fn=console.say, compile_clock=clock)
    t0 = time.monotonic()
    with clock:
      shards.run_shards(
          seed_dir, num_images=num_images, shard_size=shard_size, batches_for=batches_for, compute=compute,
          empty_rows=empty, meta={"classes": [str(num_classes)]}, ids_of=lambda i: dataset.ids[i],
          skipped_in=skipped_in, process_index=pid, process_count=pcount, progress=progress,
          fingerprint_of=lambda r: shards.fingerprint(dataset.ids[r.start:r.stop], dataset.labels[r.start:r.stop]),
          file_stamp_of=dataset.file_stamp)
    loop_s += time.monotonic() - t0
  if pid != 0:
    return None
  per_seed, correct = [], []
  for seed in seeds:
    seed_dir = os.path.join(workdir, f"seed_{seed}")
    shards.wait_for_shards(seed_dir, n_shards, float(config.merge_timeout_s))
    rows = shards.merge(seed_dir, n_shards, FIELDS, ("classes",), num_images=num_images)
    atomic.savez(os.path.join(seed_dir, RECORDS_FILE), rows)
    per_seed.append(_seed_metrics(rows, seed))
    correct.append(rows["correct"])
  metrics = _metrics(config, dataset, space, per_seed, computed[0], loop_s, time.monotonic() - t_start)
  if correct and len(correct[0]):  # Images resampled, each scored by its mean correctness over the seeds.
    metrics["accuracy_ci95"] = analyses.bootstrap_mean_interval(np.mean(np.stack(correct), axis=0))
  metrics["compile_time_s"] = clock.seconds  # Of this invocation: tracing + lowering + XLA compilation.
  metrics["complete"] = True  # Written last, atomically: after every seed's predictions.
  atomic.write_json(os.path.join(workdir, "metrics.json"), metrics)
  msg = (f"tta {config.method} {config.model.name} on {dataset.name}: accuracy {_percent(metrics)} over "
         f"{metrics['num_images']} images")
  if metrics["paper_accuracy_percent"] is not None:
    msg += f" (paper: {html.published(metrics['paper_accuracy_percent'])})"
  print(msg, flush=True)
  skips = shards.skip_summary(metrics["skipped"], num_images)
  if skips:
    print(skips, flush=True)
  return metrics


def _metrics(config, dataset, space, per_seed, computed: int, loop_s: float, wall_s: float) -> Dict[str, Any]:
  accs = [s["accuracy"] for s in per_seed if s["accuracy"] is not None]
  m = config.memo
  is_memo = config.method.startswith("memo")
  return {
      "method": config.method,
      "model": config.model.name,
      "checkpoint": config.model.get("checkpoint"),
      "dataset": dataset.name,
      "label_space": space.name,
      "num_images": per_seed[0]["num_images"],
      "num_skipped": len(per_seed[0]["skipped"]),
      "skipped": per_seed[0]["skipped"],
      "seeds": [s["seed"] for s in per_seed],
      "per_seed": [{k: v for k, v in s.items() if k != "skipped"} for s in per_seed],
      "accuracy": float(np.mean(accs)) if accs else None,  # Mean over seeds.
      "accuracy_std": float(np.std(accs, ddof=1)) if len(accs) > 1 else None,  # Spread over seeds.
      "accuracy_percent": 100.0 * float(np.mean(accs)) if accs else None,
      "top5_accuracy": float(np.mean([s["top5_accuracy"] for s in per_seed])) if accs else None,
      "paper_accuracy_percent": paper_numbers.table5(config.method, config.model.paper_row, config.data.name,
                                                     config.paper_dataset or None),
      # Throughput of the images computed in this invocation (compile time included).
      "images_per_second": computed / loop_s if computed and loop_s > 0 else None,
      "images_this_run": computed,
      "wall_time_s": wall_s,
      "views": int(m.num_views) if is_memo else (1 if config.method == "baseline" else None),
      "steps": int(m.steps) if is_memo else 0,
      "lr": float(m.lr) if is_memo else None,
      "optimizer": (f"{m.optimizer}(momentum={float(m.momentum)}, weight_decay={float(m.weight_decay)})"
                    if is_memo else None),
      "prior_strength": float(m.prior_strength) if is_memo else None,
      "batch_size": int(config.batch_size),
      "devices": [str(d) for d in jax.local_devices()],
      "versions": library_versions(),
  }


def _percent(metrics) -> str:
  """'72.0 % [63.0–80.0]' (95 % bootstrap interval), '± 0.5 pts (std over 3 seeds)' with several seeds."""
  if metrics["accuracy_percent"] is None:
    return html.MISSING
  out = html.interval(metrics["accuracy_percent"] / 100, metrics.get("accuracy_ci95"))
  if metrics["accuracy_std"] is not None:
    out += f" ± {html.percent(metrics['accuracy_std'], unit=' pts')} (std over {len(metrics['seeds'])} seeds)"
  return out
