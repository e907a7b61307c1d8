"""Test-time adaptation over a dataset: baseline, MEMO + AugMix, MEMO + RRC, zoom aggregation (configs/tta.py).

Images stream through `zoomjax.data.make_batches` (canvas-bucketed, masked batches); each batch runs one jitted
`vmap` of the per-image episode (each image its own parameter copy). Per-image results are appended to
`predictions.jsonl` as they come, so a rerun with the same workdir resumes where it stopped; `metrics.json`
is written at the end.
"""
import importlib.metadata
import json
import math
import os
import platform
import time
from typing import Any, Dict, Optional

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import logging

from zoomjax.tta import augment, memo, zoom_tta

# Paper Table 5 (top-1 %, March-2023 draft): method -> row -> column.
TABLE5 = {
    "baseline": {"resnet50": (76.13, 0.00, 36.17, 24.09, 35.92), "deepaug_augmix": (75.82, 3.87, 46.77, 32.62, 34.81),
                 "moex_cutmix": (79.04, 7.97, 35.52, 23.96, 38.59)},
    "memo_augmix": {"resnet50": (77.27, 0.83, 41.28, 27.63, 38.38),
                    "deepaug_augmix": (76.27, 5.35, 50.79, 35.70, 36.42),
                    "moex_cutmix": (79.38, 11.21, 40.65, 27.07, 40.62)},
    "memo_rrc": {"resnet50": (77.50, 1.31, 40.81, 27.53, 38.85), "deepaug_augmix": (76.38, 5.76, 50.88, 35.65, 36.64),
                 "moex_cutmix": (79.49, 13.61, 40.41, 26.80, 41.43)},
}
TABLE5_COLUMNS = ("IN", "IN-A", "IN-R", "IN-S", "ON")
_DATASET_COLUMNS = {"imagenet2012": "IN", "imagenet_a": "IN-A", "imagenet_r": "IN-R", "imagenet_sketch": "IN-S",
                    "objectnet": "ON"}
# The paper's zoom-in scales (S > 224, paper.md §1.2).
ZOOM_IN_SCALES = (235, 240, 256, 288, 320, 348, 384, 448, 460, 512, 573, 576, 640, 664, 672, 680, 686, 690, 700,
                  720, 768, 798, 832, 896, 911, 1024)


def paper_accuracy(method: str, row: str, dataset: str, paper_dataset: str = "") -> Optional[float]:
  """Table 5's number for (method, checkpoint row, dataset column), or None."""
  column = paper_dataset or _DATASET_COLUMNS.get(dataset.split(":")[0])
  if not row or column not in TABLE5_COLUMNS or method not in TABLE5:
    return None
  return TABLE5[method][row][TABLE5_COLUMNS.index(column)]


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
    opt = optax.sgd(float(m.lr), momentum=float(m.momentum) or None)
    prior = float(m.prior_strength) if float(m.prior_strength) > 0 else None
    return memo.make_memo(bundle, aug, optimizer=opt, num_views=int(m.num_views), steps=int(m.steps),
                          prior_strength=prior, logit_mask=logit_mask, **view_kw)
  if method in ("zoom_mean", "zoom_max"):
    from zoomjax import zoom  # pylint: disable=import-outside-toplevel
    scales = tuple(int(s) for s in config.zoom.scales) or ZOOM_IN_SCALES
    grid = zoom.ZoomGrid(scales, anchors=int(config.zoom.anchors), crop=int(config.view.crop))
    crops_fn = lambda canvas, hw: zoom.zoom_crops_batch(canvas[None], hw[None], grid)[0]  # noqa: E731
    return zoom_tta.make_zoom_tta(bundle, crops_fn, method.split("_")[1], logit_mask=logit_mask,
                                  view_chunk=int(config.zoom.view_chunk))
  raise ValueError(f"method={method!r} is not one of baseline, memo_augmix, memo_rrc, zoom_mean, zoom_max")


def _settings(config) -> Dict[str, Any]:
  """What must not change between a run and its resumption."""
  return {"method": config.method, "model": config.model.name, "checkpoint": config.model.checkpoint,
          "data": config.data.name, "split": config.data.split, "seed": int(config.seed),
          "memo": config.memo.to_dict(), "view": config.view.to_dict()}


def _read_done(path: str) -> Dict[int, Dict[str, Any]]:
  done = {}
  if os.path.exists(path):
    with open(path) as f:
      for line in f:
        line = line.strip()
        if line:
          try:
            rec = json.loads(line)
          except json.JSONDecodeError:
            continue  # A line cut by a crash; the image is redone.
          done[int(rec["index"])] = rec
  return done


def _write_json_atomic(path: str, obj: Any) -> None:
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    json.dump(obj, f, indent=2, sort_keys=True)
  os.replace(tmp, path)


def run(config: ml_collections.ConfigDict, workdir: str) -> Dict[str, Any]:
  """Runs (or resumes) `config.method` over the dataset; writes predictions.jsonl and metrics.json."""
  from zoomjax import data, models  # pylint: disable=import-outside-toplevel
  os.makedirs(workdir, exist_ok=True)
  settings_path = os.path.join(workdir, "tta_settings.json")
  settings = json.loads(json.dumps(_settings(config)))
  if os.path.exists(settings_path):
    with open(settings_path) as f:
      previous = json.load(f)
    if previous != settings:
      raise ValueError(f"{workdir} holds a run with other settings ({settings_path}: {previous}); "
                       f"use a new --workdir")
  else:
    _write_json_atomic(settings_path, settings)
  with open(os.path.join(workdir, "config.json"), "w") as f:
    f.write(config.to_json_best_effort(indent=2, sort_keys=True))

  t_start = time.monotonic()
  bundle = models.load(config.model.name, config.model.checkpoint, random_init=bool(config.model.random_init),
                       seed=int(config.model.seed))
  dataset = data.get_dataset(config.data.name, data_dir=config.data.data_dir, manual_dir=config.data.manual_dir,
                             split=config.data.split, label_space=config.data.label_space,
                             num_workers=int(config.num_workers))
  num_images = len(dataset) if int(config.limit) <= 0 else min(int(config.limit), len(dataset))
  space = dataset.label_space
  mask = space.logit_mask()
  episode = build_episode(config, bundle, mask)
  step = jax.jit(jax.vmap(episode, in_axes=(None, 0, 0, 0)))
  base_key = jax.random.PRNGKey(int(config.seed))

  pred_path = os.path.join(workdir, "predictions.jsonl")
  done = {i: r for i, r in _read_done(pred_path).items() if i < num_images}
  todo = [i for i in range(num_images) if i not in done]
  logging.info("tta %s: %s on %s, %d images (%d already done)", config.method, config.model.name, dataset.name,
               num_images, len(done))
  t_loop, n_new, last_log = time.monotonic(), 0, time.monotonic()
  with open(pred_path, "a") as out:
    if todo:
      batches = data.make_batches(dataset, batch_size=int(config.batch_size),
                                  canvas_fn=square_canvas(int(config.canvas_multiple)), indices=todo,
                                  num_workers=int(config.num_workers), on_error=config.on_error)
      for batch in batches:
        if not batch["mask"].any():
          continue
        # Padding slots repeat a real image (a 0x0 image has no views); their results are dropped.
        src = np.where(batch["mask"], np.arange(len(batch["mask"])), np.argmax(batch["mask"]))
        keys = memo.episode_keys(base_key, batch["index"][src])
        logits = np.asarray(step(bundle.variables, jnp.asarray(batch["image"][src]), keys,
                                 jnp.asarray(batch["hw"][src])))
        pred = np.argmax(logits, axis=-1)
        correct = data.is_correct(pred, batch["labels"])
        for slot in np.flatnonzero(batch["mask"]):
          i = int(batch["index"][slot])
          rec = {"index": i, "id": dataset.ids[i], "pred": int(pred[slot]), "correct": bool(correct[slot]),
                 "labels": [int(x) for x in batch["labels"][slot] if x >= 0]}
          out.write(json.dumps(rec) + "\n")
          done[i] = rec
          n_new += 1
        out.flush()
        if time.monotonic() - last_log > float(config.progress_every_secs):
          last_log = time.monotonic()
          rate = n_new / (last_log - t_loop)
          msg = f"tta {config.method}: {len(done)}/{num_images} images, {rate:.3f} images/s"
          logging.info(msg)
          print(msg, flush=True)
  loop_s = time.monotonic() - t_loop
  skipped = [{"index": int(s["index"]), "id": s["id"], "reason": s["reason"]} for s in dataset.skipped]
  scored = [done[i] for i in sorted(done)]
  accuracy = float(np.mean([r["correct"] for r in scored])) if scored else float("nan")
  m = config.memo
  is_memo = config.method.startswith("memo")
  metrics = {
      "method": config.method,
      "model": config.model.name,
      "checkpoint": config.model.checkpoint,
      "dataset": dataset.name,
      "label_space": space.name,
      "num_images": len(scored),
      "num_skipped": len(skipped),
      "skipped": skipped,
      "accuracy": accuracy,
      "accuracy_percent": 100.0 * accuracy,
      "paper_accuracy_percent": paper_accuracy(config.method, config.model.paper_row, config.data.name,
                                               config.paper_dataset),
      # Throughput of the images computed in this invocation (compile time included).
      "images_per_second": n_new / loop_s if n_new and loop_s > 0 else None,
      "images_this_run": n_new,
      "wall_time_s": time.monotonic() - t_start,
      "seed": int(config.seed),
      "views": int(m.num_views) if is_memo else (1 if config.method == "baseline" else None),
      "steps": int(m.steps) if is_memo else 0,
      "lr": float(m.lr) if is_memo else None,
      "optimizer": f"sgd(momentum={float(m.momentum)})" if is_memo else None,
      "prior_strength": float(m.prior_strength) if is_memo else None,
      "batch_size": int(config.batch_size),
      "devices": [str(d) for d in jax.devices()],
      "versions": library_versions(),
  }
  _write_json_atomic(os.path.join(workdir, "metrics.json"), metrics)
  msg = (f"tta {config.method} {config.model.name} on {dataset.name}: accuracy {100 * accuracy:.2f}% "
         f"over {len(scored)} images")
  if metrics["paper_accuracy_percent"] is not None:
    msg += f" (paper: {metrics['paper_accuracy_percent']:.2f}%)"
  print(msg, flush=True)
  return metrics
