"""A finished `zoom_sweep` workdir, read only: its files checked, its records loaded, its source dataset rebuilt.

The study job and the image explorer read what `zoomjax.jobs.zoom_sweep` wrote: config.json (the resume key),
dataset.json (name, count, fingerprint of the ids and labels), shards/, records.npz and metrics.json with
`"complete": true`. `open_sweep` refuses a workdir that is not such a run, or not a finished one, by name and
says how to finish it. Nothing here writes into the workdir.
"""
import dataclasses
import json
import os
from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np

from zoomjax.analysis import records as records_lib
from zoomjax.errors import NotFoundError, UserError
from zoomjax.runtime import shards

__all__ = ["EXPERIMENT", "METRICS_FILE", "Grid", "Sweep", "open_sweep", "source_dataset"]

EXPERIMENT = "zoom_sweep"
METRICS_FILE = "metrics.json"
# (scales, anchors, crop) of a sweep's zoom grid.
Grid = Tuple[Tuple[int, ...], int, int]


def _read_json(path: str, what: str) -> Dict[str, Any]:
  try:
    with open(path, encoding="utf-8") as f:
      out = json.load(f)
  except FileNotFoundError:
    raise NotFoundError(f"{path} is missing ({what})") from None
  except (OSError, ValueError) as e:
    raise UserError(f"cannot read {path} ({what}): {e}") from None
  if not isinstance(out, dict):
    raise UserError(f"{path} ({what}) is not a JSON object")
  return out


@dataclasses.dataclass
class Sweep:
  """One finished zoom sweep: its workdir and the JSON files the sweep wrote there."""
  workdir: str
  config: Dict[str, Any]  # config.json
  dataset: Dict[str, Any]  # dataset.json: name, num_images, fingerprint
  metrics: Dict[str, Any]  # metrics.json

  @property
  def records_path(self) -> str:
    return os.path.join(self.workdir, records_lib.FINAL_FILE)

  @property
  def grid(self) -> Grid:
    g = self.config["grid"]
    return tuple(int(s) for s in g["scales"]), int(g["anchors"]), int(g["crop"])

  @property
  def model(self) -> str:
    return str(self.config["model"]["name"])

  @property
  def label(self) -> str:
    """The model as a run label: name, checkpoint file, random seed, overrides (two seeds are two models)."""
    m = self.config["model"]
    out = str(m["name"])
    if m.get("checkpoint"):
      out += f" ({os.path.basename(str(m['checkpoint']))})"
    if m.get("random_init"):
      out += f" random seed {m.get('seed', 0)}"
    if m.get("overrides"):
      out += " " + ",".join(f"{k}={v}" for k, v in sorted(m["overrides"].items()))
    if self.config.get("dtype", "float32") != "float32":
      out += f" {self.config['dtype']}"
    return out

  def load(self, fields: Optional[Sequence[str]] = None) -> Dict[str, np.ndarray]:
    """The arrays `fields` of records.npz (all when None; "top1" = topk[..., 0]), read one by one: a study of many
    large sweeps holds only what it needs (the correctness matrix needs top-1 ids and labels, not probabilities).
    Records from before per-view top-k probabilities (`top5`, no `topk_p`/`entropy`) give `topk` from `top5`
    and lack the optional fields: asking for one of those is an error naming it (records_lib.Records.require)."""
    fields = list(records_lib.PER_IMAGE + records_lib.NAMES) if fields is None else list(fields)
    try:
      with np.load(self.records_path, allow_pickle=False) as z:
        files = set(z.files)

        def stored_name(f):
          f = "topk" if f == "top1" else f
          old = records_lib.LEGACY_NAMES.get(f)
          return old if f not in files and old in files else f

        stored = [stored_name(f) for f in fields]
        missing = [f for f in stored if f not in files]
        if any(f in records_lib.OPTIONAL for f in missing) and "top5" in files:
          raise records_lib.missing_fields_error(missing, "this analysis", self.workdir)
        if missing:
          raise UserError(f"{self.records_path} is not a zoomjax records file (missing {missing})")
        out = {f: z[s][..., 0].astype(np.int64) if f == "top1" else z[s] for f, s in zip(fields, stored)}
    except UserError:
      raise
    except Exception as e:  # zipfile.BadZipFile, EOFError, OSError, ValueError: all mean "not readable".
      raise UserError(f"cannot read {self.records_path}: {type(e).__name__}: {e}; rerun the sweep in "
                      f"{self.workdir} (delete records.npz first)") from e
    return out

  def records(self) -> records_lib.Records:
    return records_lib.load(self.records_path)


def open_sweep(workdir: str) -> Sweep:
  """The finished sweep in `workdir`; a UserError naming it when it is not one (what is missing, how to finish)."""
  rerun = f"finish it by rerunning the sweep with --workdir {workdir}"
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise UserError(f"sweep workdir {workdir} is a file, not a folder: give the folder a zoom_sweep run wrote "
                    "(its --workdir)")
  if not os.path.isdir(workdir):
    raise NotFoundError(f"sweep workdir {workdir} does not exist")
  config_path = os.path.join(workdir, shards.CONFIG_FILE)
  if not os.path.exists(config_path):
    raise UserError(f"{workdir} is not a zoom_sweep workdir (no {shards.CONFIG_FILE})")
  config = _read_json(config_path, "the sweep's config")
  if config.get("experiment") != EXPERIMENT:
    raise UserError(f"{workdir} holds a {config.get('experiment')!r} run, not a {EXPERIMENT} sweep")
  for key in ("grid", "model", "data", "shard_size"):
    if key not in config:
      raise UserError(f"{config_path} has no {key!r}: not a zoom_sweep config")
  dataset_path = os.path.join(workdir, shards.DATASET_FILE)
  if not os.path.exists(dataset_path):
    raise NotFoundError(f"{workdir} is incomplete (no {shards.DATASET_FILE}): {rerun}")
  dataset = _read_json(dataset_path, "the sweep's dataset")
  n = int(dataset.get("num_images", -1))
  n_shards = shards.num_shards(n, int(config["shard_size"])) if n >= 0 else 0
  missing = [k for k in range(n_shards) if not os.path.exists(shards.shard_path(workdir, k))]
  if missing:
    raise NotFoundError(f"{workdir} is incomplete: {len(missing)} of its {n_shards} shards are missing, e.g. "
                        f"{shards.shard_path(workdir, missing[0])}; {rerun}")
  rec_path = os.path.join(workdir, records_lib.FINAL_FILE)
  if not os.path.exists(rec_path):
    raise NotFoundError(f"{workdir} is incomplete (no {records_lib.FINAL_FILE}): {rerun}")
  metrics_path = os.path.join(workdir, METRICS_FILE)
  if not os.path.exists(metrics_path):
    raise NotFoundError(f"{workdir} is incomplete (no {METRICS_FILE}): {rerun}")
  metrics = _read_json(metrics_path, "the sweep's metrics")
  if metrics.get("complete") is not True:
    raise UserError(f"{workdir} is incomplete ({METRICS_FILE} is not marked complete: the sweep stopped before its "
                    f"report was written); {rerun}")
  sweep = Sweep(os.path.normpath(workdir), config, dataset, metrics)
  got = sweep.load(("ids", "view_names", records_lib.SKIPPED))
  if len(got["ids"]) + len(got[records_lib.SKIPPED]) != n:
    raise UserError(f"{rec_path} accounts for {len(got['ids'])} recorded + {len(got[records_lib.SKIPPED])} skipped "
                    f"images, not the {n} of {dataset_path} (the dataset changed since the merge); {rerun}")
  from zoomjax import zoom  # pylint: disable=g-import-not-at-top
  scales, anchors, crop = sweep.grid
  expected = zoom.ZoomGrid(scales, anchors, crop).names
  if [str(v) for v in got["view_names"]] != expected:
    raise UserError(f"{rec_path} holds the views {list(got['view_names'])[:3]}..., not those of the grid in "
                    f"{config_path} ({expected[:3]}...): the workdir mixes runs")
  return sweep


def source_dataset(sweep: Sweep):
  """The sweep's dataset rebuilt from its config.json (`zoom_sweep.build`'s rule), checked to be the images and
  labels the sweep saw (dataset.json's fingerprint over the first num_images); a UserError otherwise."""
  from zoomjax import data  # pylint: disable=g-import-not-at-top
  d = dict(sweep.config["data"])
  try:
    ds = data.from_config(d)
  except UserError as e:  # A relative folder: path is relative to where the sweep ran.
    raise type(e)(f"the dataset of {sweep.workdir} ({d['name']}) cannot be read from here: {e}") from e
  n = int(sweep.dataset["num_images"])
  if len(ds) < n or shards.fingerprint(ds.ids[:n], ds.labels[:n]) != sweep.dataset.get("fingerprint"):
    raise UserError(f"the dataset {d['name']} of {sweep.workdir} is no longer the one it swept (its images or labels "
                    f"changed since: {shards.DATASET_FILE} says {n} images, fingerprint "
                    f"{str(sweep.dataset.get('fingerprint'))[:12]})")
  return ds
