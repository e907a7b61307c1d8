"""Job `zoom_sweep`: sweep a dataset through the zoom grid and a model, then analyse and report.

Workdir layout (rerunning with the same workdir resumes; nothing already written is rewritten):
  config.json       the resume key, written once the model and data are built; a rerun with a config that
                    changes the results is refused
  shards/           shard_<k>.npz, one per global image range, written atomically when complete;
                    shard_<k>.partial.npz, the finished images of a shard a Ctrl-C or SIGTERM stopped (the rerun
                    computes only the rest)
  records.npz       all shards merged (process 0)
  metrics.json      headline numbers (95 % intervals under "ci95") and every analysis, including "held_out"
                    (zoomjax.analysis.selection), "cascade" (zoomjax.analysis.cascade), "selective"
                    (zoomjax.analysis.selective) and "per_class" (zoomjax.analysis.per_class) (process 0);
                    `"complete": false` until report.html is written, then true (a run killed in the report stage
                    is visible, and a rerun redoes it)
  report.html, report/   figures and gallery (process 0)
  events.out.tfevents.*  TensorBoard scalars (zoomjax.runtime.scalars): images/s, views/s, ETA
"""
import json
import os
import time
from typing import Any, Dict, Optional

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging

from zoomjax import sweep
from zoomjax.analysis import aggregators
from zoomjax.analysis import cascade
from zoomjax.analysis import metrics as analyses
from zoomjax.analysis import paper_numbers
from zoomjax.analysis import per_class
from zoomjax.analysis import records as records_lib
from zoomjax.analysis import selection
from zoomjax.analysis import selective
from zoomjax.errors import UserError
from zoomjax.reports import html
from zoomjax.runtime import atomic
from zoomjax.runtime import config as config_lib
from zoomjax.runtime import console
from zoomjax.runtime import parallel
from zoomjax.runtime import progress as progress_lib
from zoomjax.runtime import shards

CANVAS_MODES = ("square", "buckets", "max")
# Config fields that change the numbers; a resumed run must agree on all of them.
RESULT_FIELDS = ("model", "data", "limit", "grid", "extra_crops", "shard_size", "batch_size", "view_chunk",
                 "dtype", "canvas", "record_k")


def _grid(config):
  from zoomjax import zoom  # pylint: disable=g-import-not-at-top
  try:
    return zoom.ZoomGrid(tuple(int(s) for s in config.grid.scales), anchors=int(config.grid.anchors),
                         crop=int(config.grid.crop))
  except (TypeError, ValueError) as e:
    raise UserError(f"config.grid: {e}") from None


def build(config: ml_collections.ConfigDict, mesh: Optional[jax.sharding.Mesh] = None):
  """(dataset, bundle, grid, spec, step, variables) for a config; shared by the job and the benchmark."""
  from zoomjax import data, models, zoom  # pylint: disable=g-import-not-at-top
  dataset = data.from_config(config.data)
  dtype = sweep.compute_dtype(config.dtype)
  bundle = models.from_config(config.model, **({} if dtype == jnp.float32 else {"dtype": dtype}))
  bundle.check_input_size(int(config.grid.crop), "--config.grid.crop")  # Before the step is compiled.
  record_k = int(config.get("record_k", sweep.RECORD_K))
  if not 1 <= record_k <= bundle.num_classes:
    raise UserError(f"--config.record_k={record_k}: {bundle.name} has {bundle.num_classes} classes; use "
                    f"1..{bundle.num_classes}")
  grid = _grid(config)
  spec = sweep.ViewSpec(transforms=tuple(tuple(int(v) for v in t) for t in grid.transforms),
                        crop=int(config.grid.crop), extra_crops=bool(config.extra_crops))
  predict_fn = bundle.predict_fn(dtype=dtype)
  zoom_kw = {} if dtype == jnp.float32 else {"dtype": dtype}

  def crops_fn(canvas, hw):
    return zoom.zoom_crops_batch(canvas, hw, grid, **zoom_kw)

  space = dataset.label_space
  mask = None if space.class_subset is None else space.logit_mask()
  mesh = mesh if mesh is not None else parallel.make_mesh()
  batch_size = parallel.per_process_batch(int(config.batch_size), mesh)
  jitted = sweep.make_step(predict_fn, crops_fn, spec, logit_mask=mask, view_chunk=int(config.view_chunk),
                           dtype=dtype, mesh=mesh, say=console.say, record_k=record_k)
  variables = parallel.replicate(bundle.variables, mesh)

  def step(variables, image, hw, labels):
    """Host batch -> device (split over 'data') -> jitted step -> compact numpy records."""
    args = parallel.shard_batch((image, hw, labels), mesh)
    return parallel.to_host(jitted(variables, *args))

  step.jitted = jitted
  step.batch_size = batch_size  # Images per step on this process: config.batch_size per local device.
  return dataset, bundle, grid, spec, step, variables


def render_view_fn(grid_crop: int, anchors: int = 3):
  """(image, view name) -> the view's pixels for the report gallery.

  Uses the zoom module's PIL reference (identical to the kernel within 1-2 grey levels): a handful of gallery
  views on the host costs milliseconds, where the kernel would compile once per (canvas, scale).
  """
  from zoomjax import zoom  # pylint: disable=g-import-not-at-top

  def render(image: np.ndarray, name: str) -> np.ndarray:
    s, r, c = analyses.parse_view_name(name)
    crops = zoom.pil_zoom_reference(np.asarray(image), zoom.ZoomGrid((s,), anchors=anchors, crop=grid_crop))
    return crops[r * anchors + c]

  return render


def summary_table(metrics: Dict[str, Any], paper: Dict[str, float]) -> str:
  """The console summary: our headline numbers (with 95 % bootstrap intervals) next to the paper's."""
  rows = [("images", str(metrics["num_images"]), ""), ("views per image", str(metrics["num_views"]), "")]
  for key, label in (("one_crop_accuracy", "1-crop (LOC:1_1_Size:256)"),
                     ("upper_bound_accuracy", "upper bound (all views)"), ("top36_accuracy", "greedy top-36")):
    ours = html.interval(metrics.get(key), (metrics.get("ci95") or {}).get(key))
    rows.append((label, ours, html.published(paper[key]) if key in paper else ""))
  rows.append(("min-cover size", str(metrics["min_cover_size"]),
               f"{paper['min_cover_size']:.0f}" if "min_cover_size" in paper else ""))
  best = (metrics.get("held_out") or {}).get("best_fixed")
  if best:  # No oracle: views chosen on other images (zoomjax.analysis.selection).
    rows.append((f"best fixed {best['k']} views, held-out",
                 html.interval(best["accuracy"], best["ci95"]), ""))
  w = max(len(r[0]) for r in rows)
  lines = [f"{'':{w}}  {'ours [95 % CI]':>22}  {'paper':>8}"]
  lines += [f"{a:{w}}  {b:>22}  {c:>8}" for a, b, c in rows]
  grid = ((metrics.get("aggregators") or {}).get("sets") or {}).get("grid")
  if grid:  # Every test-time aggregator over the grid's views, paired against the 1-crop.
    lines.append(f"aggregators over the {grid['num_views']} grid views (paired against the 1-crop):")
    for name in [h for h in aggregators.AGGREGATORS if h in grid["accuracy"]]:
      acc, pr = grid["accuracy"][name], (grid.get("paired") or {}).get(name)
      vs = f"  {html.paired(name, '1-crop', pr['diff'], pr['ci95'], pr['p_value'])}" if pr else ""
      lines.append(f"  {name:<17} {html.interval(acc, grid['ci95'].get(name)):>22}{vs}")
  return "\n".join(lines)


def analyse_and_report(config, workdir: str, rec: records_lib.Records, *, dataset=None,
                       wall_time_s: Optional[float] = None, command: str = "",
                       compile_time_s: Optional[float] = None) -> Dict[str, Any]:
  """metrics.json, figures and report.html from merged records (process 0)."""
  from zoomjax.reports import sweep as report  # pylint: disable=g-import-not-at-top
  metrics = analyses.record_metrics(rec, k=int(config.top_k), tie=config.tie_order, crop=int(config.grid.crop),
                                    anchors=int(config.grid.anchors))
  metrics["held_out"] = selection.record_held_out(rec, budget=int(config.top_k), tie=config.tie_order)
  metrics["ci95"].update(selection.headline_intervals(metrics["held_out"]))
  # A cascade under a view budget (same folds and view orders as "held_out"), and selective classification.
  metrics["cascade"] = cascade.record_cascade(rec, held_out=metrics["held_out"], tie=config.tie_order)
  rho = float(config.get("rho", aggregators.TPT_RHO))
  # The aggregators' predictions over the whole grid: computed once, for selective classification and the table.
  grid = None if rec.missing() else aggregators.predictions(rec, np.arange(len(rec.view_names)), rho=rho)
  metrics["selective"] = selective.record_selective(rec, predictions=grid)
  metrics["per_class"] = per_class.record_per_class(rec, anchors=int(config.grid.anchors))
  # Every test-time aggregator over the stored views, with intervals and paired tests against the 1-crop.
  metrics["aggregators"] = aggregators.aggregator_table(rec, rho=rho, crop=int(config.grid.crop),
                                                        known=None if grid is None else {"grid": grid})
  metrics["skipped_files"] = [str(s) for s in rec.skipped]
  metrics["model"] = config.model.name
  metrics["dataset"] = config.data.name
  pds = paper_numbers.paper_dataset_key(config.data.name, config.get("paper_dataset") or None,
                                        config.data.get("variant"))
  metrics["paper_dataset"] = pds
  metrics["paper"] = paper_numbers.lookup(config.model.name, pds)
  metrics["scales"] = [int(s) for s in config.grid.scales]
  if wall_time_s is not None:
    metrics["sweep_wall_time_s"] = wall_time_s
  if compile_time_s is not None:  # Of this invocation (process 0): tracing + lowering + XLA compilation.
    metrics["compile_time_s"] = compile_time_s
  metrics = analyses.nan_to_none(metrics)
  path = os.path.join(workdir, "metrics.json")
  if _incomplete(path):
    console.say(f"{path} is from a run interrupted before its report was written: redoing the analysis and report")
  metrics["complete"] = False  # Until the report is written: a kill in between stays visible.
  atomic.write_json(path, metrics)
  if config.get("report", True):
    read_image = None
    if dataset is not None:
      read_image = lambda i: dataset.read(i)["image"]  # noqa: E731
    class_names = dataset.class_names if dataset is not None else [str(i) for i in range(1000)]
    report_path = report.write_report(
        workdir, rec, metrics, class_names=class_names, model=config.model.name, dataset=config.data.name,
        paper_dataset=pds, command=command, wall_time_s=wall_time_s, read_image=read_image,
        render_view=render_view_fn(int(config.grid.crop), int(config.grid.anchors)),
        gallery_size=int(config.gallery_size), top_k=int(config.top_k),
        explorer="explorer/explorer.html" if int(config.get("explorer_images", 0)) > 0 else None)
    metrics["report"] = report_path
  metrics["complete"] = True
  atomic.write_json(path, metrics)
  if config.get("report", True) and int(config.get("explorer_images", 0)) > 0:
    # After "complete": the explorer reads the finished workdir. A failure here costs the explorer only.
    from zoomjax.reports import explorer  # pylint: disable=g-import-not-at-top
    read = None if dataset is None else (lambda i: dataset.read(i)["image"])  # noqa: E731
    try:
      metrics["explorer"] = explorer.write_explorer(workdir, max_images=int(config.explorer_images), read_image=read)
    except Exception as e:  # pylint: disable=broad-except
      console.say(f"the image explorer was not written ({type(e).__name__}: {e}); rerun "
                  f"python -m zoomjax.reports.explorer {workdir}")
    else:
      atomic.write_json(path, metrics)
  return metrics


def run(config: ml_collections.ConfigDict, workdir: str, *, after_shard=None,
        built=None) -> Optional[Dict[str, Any]]:
  """Runs (or resumes) the sweep; process 0 merges, analyses and reports. Returns the metrics on process 0.

  after_shard(k, path): called after each shard file is written (tests inject failures here).
  built: the result of `build(config)` to reuse (tests and benchmarks that run several sweeps).
  """
  config_lib.check_job(config, workdir)  # What zoomjax.main checks, for calls from Python too.
  pid = jax.process_index()
  t_start = time.monotonic()
  dataset, bundle, grid, spec, step, variables = build(config) if built is None else built
  try:
    analyses.tie_order(grid.transforms, config.tie_order)  # A bad analysis setting fails now, not after the sweep.
  except ValueError as e:
    raise UserError(f"config.tie_order: {e}") from None
  num_images = shards.images_to_run(config.limit, len(dataset))
  shards.num_shards(num_images, int(config.shard_size))  # A bad shard_size fails before the workdir is claimed.
  if config.get("canvas", "square") not in CANVAS_MODES:
    raise UserError(f"config.canvas must be one of {CANVAS_MODES}, got {config.canvas!r}")
  # Claimed only now: a config that fails to build leaves the workdir reusable.
  with shards.claim(workdir, pid, json.loads(config.to_json_best_effort()), RESULT_FIELDS, dataset.name,
                    dataset.ids[:num_images], dataset.labels[:num_images]):
    return _sweep(config, workdir, dataset, spec, step, variables, num_images=num_images, t_start=t_start,
                  after_shard=after_shard)


def _sweep(config, workdir: str, dataset, spec, step, variables, *, num_images: int, t_start: float,
           after_shard) -> Optional[Dict[str, Any]]:
  from zoomjax import data  # pylint: disable=g-import-not-at-top
  pid, pcount = jax.process_index(), jax.process_count()
  shard_size = int(config.shard_size)
  n_shards = shards.num_shards(num_images, shard_size)
  writer = _metric_writer(config, workdir, pid)
  mine = shards.process_shards(n_shards, pid, pcount)
  total_mine = sum(len(shards.shard_range(k, shard_size, num_images)) for k in mine)
  logging.info("zoom sweep: %s on %s, %d images x %d views (%d grid + %d crops), %d shards of %d",
               config.model.name, dataset.name, num_images, spec.num_views, len(spec.transforms),
               len(spec.crop_names), n_shards, shard_size)
  clock = progress_lib.CompileClock()
  progress = progress_lib.Progress(total_images=total_mine, views_per_image=spec.num_views,
                            write=writer.write_scalars if writer else None,
                            every_secs=float(config.progress_every_secs), log_fn=console.say, compile_clock=clock)
  meta = {"view_names": spec.view_names, "crop_names": spec.crop_names, "agg_names": list(sweep.AGG_SETS)}
  t = len(spec.transforms)

  workers = data.decode_threads(config.num_workers)
  canvas_fn = _canvas_fn(config.get("canvas", "square"), dataset, num_images, workers)

  def batches_for(indices):
    return data.make_batches(dataset, batch_size=step.batch_size, canvas_fn=canvas_fn, indices=indices,
                             num_workers=workers, on_error=config.on_error,
                             max_pixels_warning=int(config.max_pixels_warning),
                             prefetch=int(config.prefetch))

  view_names = spec.view_names + spec.crop_names

  def compute(batch):
    out = step(variables, batch["image"], batch["hw"], batch["labels"])
    sweep.check_finite(out, batch["index"], lambda i: dataset.ids[i], view_names, config.model.name)
    return sweep.split_outputs(out, t)

  def skipped_in(rng):
    return [f"{s['id']}: {s['reason']}" for s in dataset.skipped if s["index"] in rng]

  with clock:
    written = shards.run_shards(
        workdir, num_images=num_images, shard_size=shard_size, batches_for=batches_for, compute=compute,
        empty_rows=records_lib.empty_rows(t, len(spec.crop_names), len(sweep.AGG_SETS),
                                          int(config.get("record_k", sweep.RECORD_K))), meta=meta,
        ids_of=lambda i: dataset.ids[i], skipped_in=skipped_in,
        fingerprint_of=lambda r: shards.fingerprint(dataset.ids[r.start:r.stop], dataset.labels[r.start:r.stop]),
        file_stamp_of=dataset.file_stamp, process_index=pid, process_count=pcount, progress=progress,
        on_shard_written=after_shard)
  wall = time.monotonic() - t_start
  if writer:
    writer.write_scalars(total_mine, {"sweep_wall_time_s": wall, "shards_written": len(written)})
    writer.flush()
  if pid != 0:
    return None
  shards.wait_for_shards(workdir, n_shards, float(config.merge_timeout_s))
  rec = records_lib.merge_shards(workdir, n_shards, num_images=num_images)
  command = config.get("command", "") or ""
  metrics = analyse_and_report(config, workdir, rec, dataset=dataset, wall_time_s=wall, command=command,
                               compile_time_s=clock.seconds)
  if writer:
    writer.write_scalars(total_mine, {k: metrics[k] for k in ("one_crop_accuracy", "upper_bound_accuracy",
                                                              "top36_accuracy") if metrics.get(k) is not None})
    writer.close()
  print(summary_table(metrics, metrics["paper"]))
  print(f"sweep wall time {wall:.1f} s, of which {clock.seconds:.1f} s compiling ({clock.count} executables, "
        f"{clock.cache_hits} read from the persistent compilation cache)")
  skips = shards.skip_summary(metrics["skipped_files"], num_images)
  if skips:
    print(skips, flush=True)
  if metrics.get("report"):
    print(f"report: {os.path.abspath(metrics['report'])}")
  return metrics


def _incomplete(metrics_path: str) -> bool:
  """True when `metrics_path` holds the metrics of a run whose report stage did not finish."""
  try:
    with open(metrics_path) as f:
      return json.load(f).get("complete") is False
  except (OSError, ValueError, AttributeError):
    return False


def _metric_writer(config, workdir: str, pid: int):
  """TensorBoard scalars on process 0 (`zoomjax.runtime.scalars`, no TensorFlow), or None."""
  if pid != 0 or not config.get("tensorboard", True):
    return None
  from zoomjax.runtime import scalars  # pylint: disable=g-import-not-at-top
  return scalars.ScalarWriter(workdir)


def _canvas_fn(mode: str, dataset, num_images: int, num_workers: int):
  """'square': a square canvas of the bucket of the longer side (portrait and landscape photos of one size share
  a canvas, so one views program serves them, for a little more padding: BENCHMARKS.md).
  'buckets': zoom.canvas_size per image (each side its own bucket: least padding, most programs).
  'max': one canvas that holds every image of the run (one compile; best for a handful of photos)."""
  from zoomjax import zoom  # pylint: disable=g-import-not-at-top
  if mode == "square":
    return lambda h, w: (max(zoom.canvas_size(h, w)),) * 2
  if mode == "buckets":
    return zoom.canvas_size
  if mode != "max":
    raise UserError(f"config.canvas must be one of {CANVAS_MODES}, got {mode!r}")
  sizes = dataset.sizes(np.arange(num_images), num_workers=num_workers)
  ok = sizes[:, 0] > 0
  hmax, wmax = (int(v) for v in sizes[ok].max(0)) if ok.any() else (1, 1)
  canvas = zoom.canvas_size(hmax, wmax)
  return lambda h, w: canvas
