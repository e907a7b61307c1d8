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
import contextlib
import importlib.metadata
import inspect
import json
import math
import os
import platform
import time
import warnings
from typing import Any, Dict, Optional, Tuple

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
from zoomjax.errors import NonFiniteError, UserError
from zoomjax.reports import html
from zoomjax.runtime import atomic
from zoomjax.runtime import config as config_lib
from zoomjax.runtime import console
from zoomjax.runtime import parallel
from zoomjax.runtime import progress as progress_lib
from zoomjax.runtime import shards
from zoomjax.tta import augment, clip_tta, memo, online, zoom_tta

# Config fields that change a result; a resumed run must agree on those its method reads (result_fields).
RESULT_FIELDS = ("method", "model", "data", "limit", "seeds", "memo", "view", "zoom", "clip", "online", "shard_size",
                 "canvas_multiple")
METHOD_BLOCKS = ("memo", "zoom", "clip", "online")  # Each read only by some methods (result_fields).
FIELDS = ("pred", "top5", "top5_p", "p_true", "correct")  # Per-image record fields besides index/ids/labels.
# Zoom TTA's extra record: (N, A) int16, every online aggregator's prediction over the image's views, in the order
# of zoomjax.tta.zoom_tta.AGGREGATIONS (metrics.json "aggregators": accuracy and interval of each).
AGGREGATES = "aggregates"
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
  if method in clip_tta.CLIP_METHODS:  # CLIP's test-time methods; `bundle` from clip_tta.job_bundle.
    return clip_tta.job_episode(config, bundle, logit_mask)
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
  if method in ("zoom_tta", "zoom_mean", "zoom_max"):
    from zoomjax import zoom  # pylint: disable=import-outside-toplevel
    scales = tuple(int(s) for s in config.zoom.scales) or paper_numbers.ZOOM_IN_SCALES
    try:
      grid = zoom.ZoomGrid(scales, anchors=int(config.zoom.anchors), crop=int(config.view.crop))
    except (TypeError, ValueError) as e:
      raise UserError(f"config.zoom: {e}") from None
    how = method.split("_")[1] if method != "zoom_tta" else str(config.zoom.get("aggregate", "mean"))
    # every=True: each image also records every aggregator's prediction over the same views (AGGREGATES).
    return zoom_tta.make_zoom_tta(bundle, zoom_tta.grid_views(grid), how, logit_mask=logit_mask,
                                  view_chunk=int(config.zoom.view_chunk), rho=float(config.zoom.get("rho", 0.1)),
                                  every=True)
  raise UserError(f"method={method!r} is not one of baseline, memo_augmix, memo_rrc, zoom_tta, zoom_mean, "
                  "zoom_max")


def views_per_image(config: ml_collections.ConfigDict) -> Optional[int]:
  """How many views the method's model sees per image (progress lines, metrics.json); None for online methods,
  whose unit is the prediction view of a stream batch."""
  if config.method.startswith("memo"):
    return int(config.memo.num_views)
  if config.method in clip_tta.CLIP_METHODS and config.method != "tda":
    return clip_tta.job_views(config)[1]
  if config.method.startswith("zoom"):
    scales = tuple(int(s) for s in config.zoom.scales) or paper_numbers.ZOOM_IN_SCALES
    return len(scales) * int(config.zoom.anchors) ** 2
  return 1 if config.method == "baseline" else None


def result_fields(method: str) -> Tuple[str, ...]:
  """The resume key of a `method` run: RESULT_FIELDS and the label space, less the method blocks it never reads,
  so a setting the method ignores, or a block the config gained after the run started, never refuses a workdir."""
  used = {"memo"} if method.startswith("memo") else {"zoom"} if method.startswith("zoom") else set()
  if method in clip_tta.CLIP_METHODS:
    used |= {"clip", "zoom"}  # views=zoom takes the zoom grid's scales and anchors.
  if method in online.STREAM_METHODS + ("tda",):
    used.add("online")
  return tuple(f for f in RESULT_FIELDS if f not in METHOD_BLOCKS or f in used) + ("label_space",)


def make_step(episode: memo.EpisodeFn, mesh: jax.sharding.Mesh):
  """`step(variables, images, hws, keys, labels) -> compact outputs` over a batch, split over `mesh`."""

  def step(variables, images, hws, keys, labels):
    res = jax.vmap(episode, in_axes=(None, 0, 0, 0))(variables, images, hws, keys)
    logits, every = res if isinstance(res, tuple) else (res, None)  # every: zoom TTA's (B, A) predictions.
    logits = logits.astype(jnp.float32)
    out = sweep.top5_outputs(jax.nn.softmax(logits, axis=-1), labels)
    if every is not None:
      out[AGGREGATES] = every
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


class Builds:
  """What a TTA run builds before its loop (the model, the per-image function, the jitted step), memoised on
  their inputs. A run makes its own; a caller that runs many configs differing only in their data (the
  ImageNet-C driver's cells) passes one in, so the runs share one model and one set of compiled executables.
  Results do not change: every run gets what it would have built itself."""

  def __init__(self):
    self._bundles: Dict[str, Any] = {}
    self._episodes: Dict[Any, Any] = {}
    self._steps: Dict[Any, Any] = {}

  def model(self, block: ml_collections.ConfigDict, **kwargs: Any):
    """`zoomjax.models.from_config(block, **kwargs)`, once per distinct block and arguments."""
    from zoomjax import models  # pylint: disable=import-outside-toplevel
    key = json.dumps([block.to_dict(), kwargs], sort_keys=True, default=str)
    if key not in self._bundles:
      self._bundles[key] = models.from_config(block, **kwargs)
    return self._bundles[key]

  def episode(self, config: ml_collections.ConfigDict, bundle, logit_mask: np.ndarray) -> memo.EpisodeFn:
    """`build_episode`, once per model, label space and config apart from its data block."""
    body = {k: v for k, v in config.to_dict().items() if k != "data"}
    key = (id(bundle), json.dumps(body, sort_keys=True, default=str), np.asarray(logit_mask).tobytes())
    if key not in self._episodes:
      self._episodes[key] = (bundle, build_episode(config, bundle, logit_mask))  # Holds bundle: its id stays.
    return self._episodes[key][1]

  def step(self, episode: memo.EpisodeFn, mesh: jax.sharding.Mesh):
    """`make_step`, once per episode and device mesh."""
    key = (id(episode), None if mesh is None else tuple(d.id for d in mesh.devices.flat))
    if key not in self._steps:
      self._steps[key] = (episode, make_step(episode, mesh))
    return self._steps[key][1]


def run(config: ml_collections.ConfigDict, workdir: str, *, builds: Optional[Builds] = None
        ) -> Optional[Dict[str, Any]]:
  """Runs (or resumes) `config.method` for every seed; process 0 merges and writes metrics.json.

  builds: shared with other runs whose configs differ only in their data (see `Builds`); None: a fresh one.
  """
  from zoomjax import data  # pylint: disable=import-outside-toplevel
  config_lib.check_job(config, workdir)  # What zoomjax.main checks, for calls from Python too.
  if config.method in clip_tta.CLIP_METHODS:  # A model the method cannot use is refused before it is loaded.
    clip_tta.check_model(str(config.model.name), str(config.method))
  builds = builds or Builds()
  if config.method in online.STREAM_METHODS + ("tda",):  # Online: one stream of batches, state carried across.
    return run_online(config, workdir, builds=builds)
  pid = jax.process_index()
  t_start = time.monotonic()
  workers = data.decode_threads(config.num_workers)
  bundle = builds.model(config.model, **clip_tta.job_load_kwargs(config))
  if config.method in clip_tta.CLIP_METHODS:  # A CLIP classifier (TPT: with its text tower), views checked.
    bundle = clip_tta.job_bundle(config, bundle)
  bundle.check_input_size(int(config.view.crop), "--config.view.crop")  # The views it predicts on.
  if str(config.method).startswith("memo"):  # The views MEMO adapts on.
    bundle.check_input_size(int(config.memo.view_size), "--config.memo.view_size")
  dataset = data.from_config(config.data, num_workers=workers)
  num_images = shards.images_to_run(config.limit, len(dataset))
  space = dataset.label_space
  episode = builds.episode(config, bundle, space.logit_mask())
  mesh = parallel.make_mesh()
  batch_size = parallel.per_process_batch(int(config.batch_size), mesh)
  step = progress_lib.announcing(builds.step(episode, mesh), lambda variables, images, *rest: (
      images.shape, f"the {config.method} step for batches of {images.shape[0]} on {images.shape[1]}x"
      f"{images.shape[2]} canvases"))  # Each canvas side compiles once.
  variables = parallel.replicate(bundle.variables, mesh)
  shards.num_shards(num_images, int(config.shard_size))  # A bad shard_size fails before the workdir is claimed.
  key = json.loads(config.to_json_best_effort())
  key["label_space"] = space.name
  # Claimed only once the model and data are built: a failed start leaves the workdir reusable.
  with shards.claim(workdir, pid, key, result_fields(config.method), dataset.name, dataset.ids[:num_images],
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
  views = views_per_image(config) or 1
  logging.info("tta %s: %s on %s, %d images, seeds %s, %d shards of %d", config.method, config.model.name,
               dataset.name, num_images, seeds, n_shards, shard_size)
  canvas_fn = square_canvas(int(config.canvas_multiple))
  num_classes = int(bundle.num_classes)
  empty = dict(pred=np.zeros(0, np.int32), top5=np.zeros((0, 5), np.int16), top5_p=np.zeros((0, 5), np.float32),
               p_true=np.zeros(0, np.float32), correct=np.zeros(0, bool))
  zoom_method = config.method.startswith("zoom")
  if zoom_method:
    empty[AGGREGATES] = np.zeros((0, len(zoom_tta.AGGREGATIONS)), np.int16)
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
      rows = {"pred": pred, "top5": out["top5"].astype(np.int16), "top5_p": out["top5_p"].astype(np.float32),
              "p_true": out["p_true"].astype(np.float32), "correct": data.is_correct(pred, batch["labels"])}
      if AGGREGATES in out:
        rows[AGGREGATES] = out[AGGREGATES].astype(np.int16)
      return rows

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
  per_seed, correct, every = [], [], []
  for seed in seeds:
    seed_dir = os.path.join(workdir, f"seed_{seed}")
    shards.wait_for_shards(seed_dir, n_shards, float(config.merge_timeout_s))
    # Zoom shards written before AGGREGATES was recorded are merged without it (no aggregator table then).
    fields = FIELDS + ((AGGREGATES,) if zoom_method and _all_have(seed_dir, n_shards, AGGREGATES) else ())
    rows = shards.merge(seed_dir, n_shards, fields, ("classes",), num_images=num_images)
    atomic.savez(os.path.join(seed_dir, RECORDS_FILE), rows)
    per_seed.append(_seed_metrics(rows, seed))
    correct.append(rows["correct"])
    if AGGREGATES in rows:
      agg = rows[AGGREGATES].astype(np.int32)
      every.append(np.stack([data.is_correct(agg[:, a], rows["labels"]) for a in range(agg.shape[1])], axis=1))
  metrics = _metrics(config, dataset, space, per_seed, computed[0], loop_s, time.monotonic() - t_start)
  if correct and len(correct[0]):  # Images resampled, each scored by its mean correctness over the seeds.
    metrics["accuracy_ci95"] = analyses.bootstrap_mean_interval(np.mean(np.stack(correct), axis=0))
  if len(every) == len(seeds) and len(correct[0]):
    metrics["aggregators"] = aggregator_metrics(np.mean(np.stack(every).astype(np.float64), axis=0))
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


def _all_have(seed_dir: str, n_shards: int, field: str) -> bool:
  """Whether every shard file of `seed_dir` holds `field`."""
  for k in range(n_shards):
    with np.load(shards.shard_path(seed_dir, k), allow_pickle=False) as z:
      if field not in z.files:
        return False
  return True


def aggregator_metrics(correct: np.ndarray) -> Dict[str, Dict[str, Any]]:
  """metrics.json "aggregators" of a zoom TTA run: for each aggregator of zoomjax.tta.zoom_tta.AGGREGATIONS, its
  accuracy and 95 % bootstrap interval over the images. correct: (N, A), each image's correctness (its mean
  over the seeds) under each aggregator, in AGGREGATIONS order."""
  return {how: {"accuracy": float(np.mean(correct[:, a])),
                "accuracy_ci95": analyses.bootstrap_mean_interval(correct[:, a])}
          for a, how in enumerate(zoom_tta.AGGREGATIONS)}


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
      "views": views_per_image(config),
      "steps": int(m.steps) if is_memo else 0,
      "lr": float(m.lr) if is_memo else None,
      "optimizer": (f"{m.optimizer}(momentum={float(m.momentum)}, weight_decay={float(m.weight_decay)})"
                    if is_memo else None),
      "prior_strength": float(m.prior_strength) if is_memo else None,
      # CLIP methods: which views (augment | zoom), how many, the filter and TPT's step (clip_tta.job_summary).
      "clip": clip_tta.job_summary(config) if config.method in clip_tta.CLIP_METHODS else None,
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


# ---------------------------------------------------------------------------------------------------------------
# Online adaptation (source, bn_adapt, tent, eata, sar): one stream of batches per seed, state carried across.
#
# Workdir layout (besides config.json and metrics.json):
#   seed_<s>/stream.npz              the stream: readable image indices in their seeded order, the batch size
#   seed_<s>/online/shard_<k>.npz    batches k*S .. (k+1)*S-1 of the stream (S = online.shard_batches): the
#                                    per-image records in stream order and the adapted state after the shard
#   seed_<s>/predictions.npz         every record, in image index order, with `stream_position`
# A rerun continues after the last shard whose images are the planned ones, from the state stored with it, so a
# resumed stream equals an uninterrupted one bit for bit.

STREAM_FILE = "stream.npz"
STATE_PREFIX = "state:"


def online_shard_path(seed_dir: str, k: int) -> str:
  return os.path.join(seed_dir, "online", f"shard_{k:05d}.npz")


def stream_order(num_images: int, readable: np.ndarray, seed: int, shuffle: bool) -> np.ndarray:
  """The stream: readable image indices, in a `seed`ed permutation of 0..num_images-1 (or in order)."""
  order = np.random.default_rng(seed).permutation(num_images) if shuffle else np.arange(num_images)
  return order[readable[order]].astype(np.int64)


def build_stream_method(config: ml_collections.ConfigDict, bundle, logit_mask: np.ndarray,
                        fisher_batches=None) -> online.StreamMethod:
  """The StreamMethod `config.method` names, with `config.online`'s settings (EATA: `fisher_batches()` yields the
  source batches of its Fisher information)."""
  if config.method == "tda":  # CLIP's TDA (zoomjax.tta.clip_tta).
    return clip_tta.job_stream(config, bundle, logit_mask)
  o = config.online
  name = config.method
  kw: Dict[str, Any] = {"logit_mask": logit_mask}
  if name in ("tent", "eata", "sar"):
    kw["optimizer"] = optax.sgd(float(o.lr), momentum=float(o.momentum) or None)
    kw["episodic"] = bool(o.episodic)
  if name in ("eata", "sar") and float(o.e_margin) > 0:
    kw["e_margin"] = float(o.e_margin)
  if name == "eata":
    kw.update(d_margin=float(o.d_margin), fisher_alpha=float(o.fisher_alpha))
  if name == "sar":
    kw.update(rho=float(o.rho), reset_constant=float(o.reset_constant))
  method = online.make_stream_method(name, bundle, **kw)  # Refuses a model without BatchNorm, by name.
  if name == "eata" and float(o.fisher_alpha) > 0 and fisher_batches is not None:
    fisher = online.fisher_information(bundle, bundle.variables, fisher_batches(), logit_mask=logit_mask)
    kw["fisher"] = fisher
    method = online.make_stream_method(name, bundle, **kw)
  return method


def _view_transform(bundle, config):
  """Host view of each decoded image: Resize(view.resize) + CenterCrop(view.crop) with PIL (torchvision's
  eval view); an image already crop x crop (ImageNet-C's files, on-the-fly corruptions) is used as it is, as
  the official TENT / EATA / SAR loaders do."""
  from zoomjax.models.preprocessing import Preprocessing  # pylint: disable=import-outside-toplevel
  crop = int(config.view.crop)
  pp = Preprocessing(input_size=crop, resize_size=int(config.view.resize), resize_method=str(config.view.method),
                     mean=bundle.preprocessing.mean, std=bundle.preprocessing.std)

  def transform(image):
    arr = np.asarray(image, np.uint8)
    if arr.shape[:2] == (crop, crop):
      return arr
    return pp.pil_view(image)

  return transform, (crop, crop)


def _host_records(logits: np.ndarray, labels: np.ndarray) -> Dict[str, np.ndarray]:
  logits = logits.astype(np.float64)
  probs = np.exp(logits - logits.max(axis=-1, keepdims=True))
  probs /= probs.sum(axis=-1, keepdims=True)
  top5 = np.argsort(-probs, axis=-1, kind="stable")[:, :5]
  valid = labels >= 0
  p_lab = np.take_along_axis(probs, np.where(valid, labels, 0), axis=-1)
  pred = top5[:, 0].astype(np.int32)
  return {"pred": pred, "top5": top5.astype(np.int16),
          "top5_p": np.take_along_axis(probs, top5, axis=-1).astype(np.float32),
          "p_true": np.max(np.where(valid, p_lab, 0.0), axis=-1).astype(np.float32),
          "correct": label_space.is_correct(pred, labels.astype(np.int32))}


def run_online(config: ml_collections.ConfigDict, workdir: str, *, builds: Optional[Builds] = None
               ) -> Optional[Dict[str, Any]]:
  """Runs (or resumes) an online method over the dataset, one seeded stream per seed (builds: as in `run`)."""
  from zoomjax import data  # pylint: disable=import-outside-toplevel
  builds = builds or Builds()
  t_start = time.monotonic()
  if jax.process_count() > 1:
    raise UserError(f"method={config.method!r} adapts one stream: run it in one process (its devices share each "
                    "batch), not with --config.distributed")
  o = config.online
  batch = int(o.batch_size)
  if config.method in online.BATCH_STAT_METHODS and batch < 2:
    raise UserError(f"online.batch_size={batch}: method={config.method!r} normalises with the test batch's "
                    "statistics and needs at least 2 images per batch (the papers use 64)")
  workers = data.decode_threads(config.num_workers)
  bundle = builds.model(config.model, **clip_tta.job_load_kwargs(config))
  if config.method == "tda":  # CLIP's TDA: a CLIP classifier, its views checked.
    bundle = clip_tta.job_bundle(config, bundle)
  bundle.check_input_size(int(config.view.crop), "--config.view.crop")
  dataset = data.from_config(config.data, num_workers=workers)
  num_images = shards.images_to_run(config.limit, len(dataset))
  space = dataset.label_space
  mesh = parallel.make_mesh()
  parallel.check_batch_size(batch, mesh, "online.batch_size")
  transform, view_hw = _view_transform(bundle, config)

  def batches_of(ds, indices, on_error=config.on_error):
    return data.make_batches(ds, batch_size=batch, indices=indices, num_workers=workers, on_error=on_error,
                             transform=transform, transform_hw=view_hw)

  def fisher_batches():
    block = ml_collections.ConfigDict(config.data.to_dict())
    if o.fisher_data:
      block.name = str(o.fisher_data)
    if "corruption" in block:  # EATA's source set: clean images.
      block.corruption = None
    ds = data.from_config(block, num_workers=workers)
    n = min(int(o.fisher_size), len(ds))
    order = np.random.default_rng(0).permutation(len(ds))[:n]
    for b in batches_of(ds, order, on_error="skip"):
      real = np.asarray(b["index"]) >= 0
      if real.sum() >= 2:
        yield np.asarray(b["image"][real], np.float32)

  method = build_stream_method(config, bundle, space.logit_mask(), fisher_batches)
  step = progress_lib.announcing(online.sharded_step(method, mesh), lambda state, pixels: (
      pixels.shape, f"the {config.method} step for batches of {pixels.shape[0]}"))
  key = json.loads(config.to_json_best_effort())
  key["label_space"] = space.name
  with shards.claim(workdir, 0, key, result_fields(config.method), dataset.name, dataset.ids[:num_images],
                    dataset.labels[:num_images]):
    sizes = dataset.sizes(np.arange(num_images), num_workers=workers)
    if config.on_error == "raise" and (sizes[:, 0] < 0).any():
      bad = dataset.skipped[0]
      raise UserError(f"unreadable image {bad['id']}: {bad['reason']} (on_error='raise')")
    readable = sizes[:, 0] >= 0
    per_seed, correct, computed, loop_s = [], [], 0, 0.0
    for seed in (int(s) for s in config.seeds):
      seed_dir = os.path.join(workdir, f"seed_{seed}")
      stream = stream_order(num_images, readable, seed, bool(o.shuffle))
      t0 = time.monotonic()
      rows, done = _run_stream(config, seed_dir, stream, batch, method, step, mesh, dataset, batches_of,
                               bundle.variables)
      loop_s += time.monotonic() - t0
      computed += done
      rows[shards.SKIPPED] = np.asarray([f"{s['id']}: {s['reason']}" for s in dataset.skipped
                                         if s["index"] < num_images], np.str_)
      atomic.savez(os.path.join(seed_dir, RECORDS_FILE), rows)
      per_seed.append(_seed_metrics(rows, seed))
      correct.append(rows["correct"])
    metrics = _metrics(config, dataset, space, per_seed, computed, loop_s, time.monotonic() - t_start)
    if correct and len(correct[0]):
      metrics["accuracy_ci95"] = analyses.bootstrap_mean_interval(np.mean(np.stack(correct), axis=0))
    metrics["online"] = {"batch_size": batch, "shuffle": bool(o.shuffle), "episodic": bool(o.episodic),
                         "optimizer": f"sgd(lr={float(o.lr)}, momentum={float(o.momentum)})"
                                      if config.method in ("tent", "eata", "sar") else None,
                         "logits": "from the forward pass before each batch's update" if config.method != "tda"
                                   else "each image's, after it entered TDA's caches"}
    metrics["complete"] = True
    atomic.write_json(os.path.join(workdir, "metrics.json"), metrics)
  print(f"tta {config.method} {config.model.name} on {dataset.name}: accuracy {_percent(metrics)} over "
        f"{metrics['num_images']} images (online, batches of {batch})", flush=True)
  skips = shards.skip_summary(metrics["skipped"], num_images)
  if skips:
    print(skips, flush=True)
  return metrics


def _run_stream(config, seed_dir: str, stream: np.ndarray, batch: int, method: online.StreamMethod, step, mesh,
                dataset, batches_of, variables):
  """Adapts over `stream` shard by shard, resuming after the last stored shard; -> (rows by index, images done)."""
  per_shard = int(config.online.shard_batches) * batch
  n_shards = max(1, -(-len(stream) // per_shard))
  os.makedirs(os.path.join(seed_dir, "online"), exist_ok=True)
  stream_path = os.path.join(seed_dir, STREAM_FILE)
  if os.path.exists(stream_path):
    with np.load(stream_path) as z:
      same = np.array_equal(z["stream"], stream) and int(z["batch_size"]) == batch
    if not same:  # The readable images changed (a skipped file was fixed): the stream starts over.
      console.warn(f"{stream_path}: the stream changed since it was stored; adapting from the start")
      for k in range(n_shards + 1000):
        with contextlib.suppress(FileNotFoundError):
          os.remove(online_shard_path(seed_dir, k))
  atomic.savez(stream_path, {"stream": stream, "batch_size": np.int64(batch)})
  state = None
  parts, start = [], 0
  for k in range(n_shards):  # The stored prefix.
    path = online_shard_path(seed_dir, k)
    want = stream[k * per_shard:(k + 1) * per_shard]
    try:
      with np.load(path, allow_pickle=False) as z:
        arrays = {f: z[f] for f in z.files}
    except (FileNotFoundError, OSError, ValueError):
      break
    if not np.array_equal(arrays.get("index"), want) or list(arrays.get("ids", [])) != [dataset.ids[i] for i in want]:
      console.warn(f"recomputing {path} and the shards after it: it holds other images than the stream's")
      break
    parts.append({f: v for f, v in arrays.items() if not f.startswith(STATE_PREFIX)})
    state = {f[len(STATE_PREFIX):]: v for f, v in arrays.items() if f.startswith(STATE_PREFIX)}
    start = k + 1
  if start:
    logging.info("online %s: resuming after %d of %d shards", config.method, start, n_shards)
  variables_state = method.init(variables)
  if state is not None:
    try:
      variables_state = online.restore_adapted(variables_state, state)
    except ValueError as e:
      raise UserError(f"{online_shard_path(seed_dir, start - 1)}: {e}; delete {seed_dir} to start over") from None
  state = parallel.replicate(variables_state, mesh)
  done = 0
  progress = progress_lib.Progress(total_images=len(stream), views_per_image=1,
                                   what=f"tta {config.method} stream", every_secs=float(config.progress_every_secs),
                                   log_fn=console.say)
  progress(start * per_shard)
  for k in range(start, n_shards):
    want = stream[k * per_shard:(k + 1) * per_shard]
    rows = []
    for b in batches_of(dataset, want):
      real = np.asarray(b["index"]) >= 0
      pixels = np.asarray(b["image"][real], np.float32)
      if len(pixels) % parallel.local_batch_multiple(mesh):  # A last, smaller batch: on one device.
        single = jax.sharding.SingleDeviceSharding(mesh.devices.flat[0])
        state, logits = jax.jit(method.step)(jax.device_put(state, single), pixels)
        state = parallel.replicate(state, mesh)
      else:
        state, logits = step(state, parallel.shard_batch(pixels, mesh))
      logits = parallel.to_host(logits)
      index = np.asarray(b["index"])[real].astype(np.int64)
      labels = np.asarray(b["labels"])[real].astype(np.int32)
      if not np.all(np.isfinite(np.where(np.isneginf(logits), 0.0, logits))):
        raise NonFiniteError(f"model {config.model.name!r} gave NaN or infinite logits under {config.method} "
                             f"(images {[dataset.ids[i] for i in index[:3]]}...); lower --config.online.lr")
      rows.append({"index": index, "labels": labels, "ids": np.asarray([dataset.ids[i] for i in index], np.str_),
                   **_host_records(logits, labels)})
      done += len(index)
      progress(start * per_shard + done)
    got = np.concatenate([r["index"] for r in rows]) if rows else np.zeros(0, np.int64)
    if not np.array_equal(got, want):
      raise RuntimeError(f"the data stream for online shard {k} yielded images {got[:5]}..., not the planned ones")
    shard = {f: np.concatenate([r[f] for r in rows]) for f in rows[0]}
    shard.update({STATE_PREFIX + key: v for key, v in online.adapted_arrays(parallel.to_host(state)).items()})
    atomic.savez(online_shard_path(seed_dir, k), shard)
    parts.append({f: v for f, v in shard.items() if not f.startswith(STATE_PREFIX)})
  label_width = max(p["labels"].shape[1] for p in parts)
  for p in parts:
    p["labels"] = np.pad(p["labels"], ((0, 0), (0, label_width - p["labels"].shape[1])), constant_values=-1)
  merged = {f: np.concatenate([p[f] for p in parts]) for f in parts[0]}
  merged["stream_position"] = np.arange(len(merged["index"]), dtype=np.int64)
  order = np.argsort(merged["index"], kind="stable")
  return {f: v[order] for f, v in merged.items()}, done
