"""Job `imagenet_c`: one test-time method over ImageNet-C's corruptions x severities (configs/imagenet_c.py).

Every (corruption, severity) cell, and the clean dataset, is one run of the `tta` job (`zoomjax.jobs.tta.run`)
with the cell's corruption in its data block, in its own sub-workdir, so each cell resumes on its own and a
finished cell is reused when its settings (the TTA resume key) and its images (ids, labels) match. The model,
the method's per-batch function and its compiled executables are built once and shared by all cells.
Workdir layout:
  cells/clean/, cells/<corruption>-<severity>/   the TTA run of each cell (its own config.json, shards, metrics)
  results.json   per cell accuracy and error with 95 % intervals; the error table, the mean error per severity,
                 CE per corruption, mCE and relative mCE (zoomjax.analysis.corruption), for zoom TTA the same
                 scores of every aggregator over the same views, written last with `"complete": true`
  report.html    the table, the scores and a heatmap of the errors (zoomjax.reports.imagenet_c)
"""
import os
from typing import Any, Dict, List, Optional, Tuple

import jax
import ml_collections

from zoomjax.analysis import corruption as corruption_lib
from zoomjax.runtime import atomic
from zoomjax.runtime import config as config_lib
from zoomjax.runtime import console

Cell = Tuple[Optional[str], Optional[int]]  # (corruption, severity); (None, None) is the clean dataset.
RESULTS_FILE = "results.json"


def cells(config: ml_collections.ConfigDict) -> List[Cell]:
  """The cells the config asks for: the clean one first (when `clean`), then corruption by severity."""
  out: List[Cell] = [(None, None)] if config.clean else []
  return out + [(c, int(s)) for c in config.corruptions for s in config.severities]


def cell_name(cell: Cell) -> str:
  return "clean" if cell[0] is None else f"{cell[0]}-{cell[1]}"


def cell_config(config: ml_collections.ConfigDict, cell: Cell) -> ml_collections.ConfigDict:
  """The TTA config of one cell: `config.tta` with the cell's corruption (or the released files)."""
  c = ml_collections.ConfigDict(config.tta.to_dict())
  corruption, severity = cell
  if corruption is None and config.source == "released":
    # The clean dataset as the benchmark scored it: Resize(256) + CenterCrop(224) of each clean image.
    c.view.resize, c.view.crop = 256, 224
    c.data.corruption = None
    c.data.corruption_size = None
  elif corruption is None:
    # The same view, made by the data layer at the corrupted images' size: every cell then has the same image
    # shape and shares one compiled step.
    c.data.corruption = "clean"
  elif config.source == "released":
    c.data.name = f"imagenet_c/{corruption}/{severity}"
    c.data.corruption = None
    c.data.corruption_size = None
  else:
    c.data.corruption = f"{corruption}/{severity}"
  return c


def run(config: ml_collections.ConfigDict, workdir: str) -> Optional[Dict[str, Any]]:
  """Runs (or resumes) every cell, then (process 0) writes results.json and report.html."""
  from zoomjax.jobs import tta  # pylint: disable=import-outside-toplevel
  from zoomjax.reports import imagenet_c as report  # pylint: disable=import-outside-toplevel
  config_lib.check_job(config, workdir)
  todo = cells(config)
  for cell in todo:  # Every cell's settings are checked before the first one runs.
    config_lib.validate(cell_config(config, cell), {**config_lib.COMMON_RANGES, **_tta_ranges()})
  if config.source == "generated" and "frost" in config.corruptions:
    from zoomjax.data import corruptions  # pylint: disable=import-outside-toplevel
    corruptions.frost_pictures()  # Missing frost pictures fail now, in one line, not at the frost cells.
  os.makedirs(workdir, exist_ok=True)
  per_cell: Dict[str, Dict[str, Any]] = {}
  builds = tta.Builds()  # The cells differ only in their data: one model, one set of compiled executables.
  for k, cell in enumerate(todo):
    console.say(f"imagenet_c: cell {k + 1}/{len(todo)}: {cell_name(cell)}")
    metrics = tta.run(cell_config(config, cell), os.path.join(workdir, "cells", cell_name(cell)), builds=builds)
    if metrics is not None:
      per_cell[cell_name(cell)] = _cell_result(cell, metrics)
  if jax.process_index() != 0:
    return None
  results = summarise(config, per_cell)
  atomic.write_json(os.path.join(workdir, RESULTS_FILE), results)
  report.write_report(results, workdir)
  print(headline(results), flush=True)
  return results


def _tta_ranges():
  from zoomjax.configs import tta as tta_config  # pylint: disable=import-outside-toplevel
  return tta_config.RANGES


def _cell_result(cell: Cell, metrics: Dict[str, Any]) -> Dict[str, Any]:
  acc, ci = metrics.get("accuracy"), metrics.get("accuracy_ci95")
  return {"corruption": cell[0], "severity": cell[1], "dataset": metrics.get("dataset"),
          "num_images": metrics.get("num_images"), "accuracy": acc, "accuracy_ci95": ci,
          "error": None if acc is None else 1.0 - acc,
          "error_ci95": None if ci is None or None in ci else [1.0 - ci[1], 1.0 - ci[0]],
          "images_this_run": metrics.get("images_this_run"),
          # Zoom TTA: every aggregator's accuracy and interval over the same views (zoomjax.jobs.tta).
          "aggregators": metrics.get("aggregators")}


def summarise(config: ml_collections.ConfigDict, per_cell: Dict[str, Dict[str, Any]]) -> Dict[str, Any]:
  """results.json: the cells, the error table, the mean error per severity, CE, mCE and relative mCE."""
  errors: Dict[str, Dict[int, float]] = {}
  for r in per_cell.values():
    if r["corruption"] is not None and r["error"] is not None:
      errors.setdefault(r["corruption"], {})[int(r["severity"])] = r["error"]
  clean = per_cell.get("clean", {}).get("error")
  scores = corruption_lib.summary(errors, clean) if errors else None
  severities = [int(s) for s in config.severities]
  aggregator_scores = None  # Zoom TTA: the scores of every aggregator over the same views, when every cell has them.
  if per_cell and all(r.get("aggregators") for r in per_cell.values()):
    aggregator_scores = {}
    for how in next(iter(per_cell.values()))["aggregators"]:
      errs: Dict[str, Dict[int, float]] = {}
      for r in per_cell.values():
        if r["corruption"] is not None:
          errs.setdefault(r["corruption"], {})[int(r["severity"])] = 1.0 - r["aggregators"][how]["accuracy"]
      clean_how = per_cell["clean"]["aggregators"][how]["accuracy"] if "clean" in per_cell else None
      aggregator_scores[how] = (corruption_lib.summary(errs, None if clean_how is None else 1.0 - clean_how)
                                if errs else None)
  return {
      "method": config.tta.method,
      "model": config.tta.model.name,
      "data": config.tta.data.name,
      "source": config.source,
      "corruptions": list(config.corruptions),
      "severities": severities,
      "cells": per_cell,
      "clean_error": clean,
      "error_table": ({c: [errors.get(c, {}).get(s) for s in severities] for c in config.corruptions}),
      "scores": scores,
      "aggregator_scores": aggregator_scores,
      "complete": True,
  }


def headline(results: Dict[str, Any]) -> str:
  """One line: method, model, cells, mean error, mCE and relative mCE."""
  s = results["scores"] or {}
  pct = lambda x: "n/a" if x is None else f"{100 * x:.1f}"  # noqa: E731
  mce_name = "mCE" if s.get("complete") else "mCE over the cells run"
  return (f"imagenet_c {results['method']} {results['model']} on {results['data']}: {len(results['cells'])} cells, "
          f"mean error {pct(s.get('mean_error'))} %, {mce_name} {pct(s.get('mce'))}, relative "
          f"{pct(s.get('relative_mce'))} (clean error {pct(results['clean_error'])} %)")
