"""Job `evaluate`: top-1 / top-5 of many classifiers on many datasets, each model with its own preprocessing.

Every (model, dataset) pair is one sub-run with its own resume key, through the same shard / resume /
multi-process / mesh machinery as the sweep (`zoomjax.runtime.shards`). Per image the model sees one view: the short
side resized to `resize_size` with the checkpoint's filter, then the centre `input_size` crop (torchvision's
Resize + CenterCrop, timm's crop_pct), made with PIL in the decode threads and normalised on the device with
the checkpoint's mean/std. Workdir layout:
  pairs/<model>__<dataset>-<hash>/   config.json (the pair's resume key), dataset.json, shards/, predictions.npz
                              (top-5 ids and probabilities, p_true, correct per image), metrics.json (written
                              last, `"complete": true`, with the pair's key and its dataset's fingerprint)
A complete pair is kept only when its stored key and dataset fingerprint match this run's (the directory's name is
never trusted: <hash> tells apart model rows and datasets whose names slug alike); otherwise it is recomputed
with a warning naming what changed (relabelled, removed or added images), its unchanged shards reused.
  results.json / results.csv / results.md   every pair's headline numbers (rewritten after each pair)
  report.html, report/        the table next to the paper's, per-origin bars, galleries of failures
"""
import csv
import dataclasses
import hashlib
import json
import os
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from zoomjax import sweep
from zoomjax.analysis import metrics as analyses
from zoomjax.analysis import paired as paired_lib
from zoomjax.analysis import paper_numbers
from zoomjax.data import label_space
from zoomjax.data import view_cache
from zoomjax.errors import NotFoundError, UserError
from zoomjax.jobs import tta as tta_job
from zoomjax.models.preprocessing import Preprocessing
from zoomjax.reports import html
from zoomjax.runtime import atomic
from zoomjax.runtime import config as config_lib
from zoomjax.runtime import console
from zoomjax.runtime import parallel
from zoomjax.runtime import progress as progress_lib
from zoomjax.runtime import shards

FIELDS = ("top5", "top5_p", "p_true", "correct", "top5_correct")  # Per-image fields besides index/ids/labels.
RECORDS_FILE = "predictions.npz"
PAIRS_DIR = "pairs"
# Fields of a pair's resume key (its config.json); every one changes a number.
PAIR_FIELDS = ("model", "dataset", "preprocessing", "dtype", "clip", "limit", "shard_size", "batch_size")


@dataclasses.dataclass(frozen=True)
class ModelEntry:
  name: str  # Registered model name.
  checkpoint: Optional[str]  # Weights file (None: the packaged default, or random_init).
  pretrained: str = ""  # open_clip pretrained tag (paper lookup and row label).
  label: str = ""  # Row name in the results.

  @property
  def row(self) -> str:
    return self.label or (f"{self.name}:{self.pretrained}" if self.pretrained else self.name)


@dataclasses.dataclass(frozen=True)
class DataEntry:
  name: str  # zoomjax.data.get_dataset name.
  manual_dir: Optional[str] = None


def parse_model_entry(entry: str) -> ModelEntry:
  """'name[@checkpoint][#pretrained]' -> ModelEntry."""
  text = entry.strip()
  text, _, tag = text.partition("#")
  name, _, ckpt = text.partition("@")
  if not name.strip():
    raise UserError(f"models entry {entry!r}: expected name[@checkpoint][#pretrained]")
  return ModelEntry(name.strip(), ckpt.strip() or None, tag.strip())


def parse_data_entry(entry: str) -> DataEntry:
  """'name[@manual_dir]' -> DataEntry ('folder:PATH' keeps its own path)."""
  name, _, manual = entry.strip().partition("@")
  if not name.strip():
    raise UserError(f"data entry {entry!r}: expected dataset[@manual_dir]")
  return DataEntry(name.strip(), manual.strip() or None)


def read_models_file(path: str) -> List[ModelEntry]:
  """The batch runner's list: a CSV with columns model, checkpoint (and optionally pretrained, label).

  UTF-8 (an Excel "CSV UTF-8" byte-order mark is fine); blank lines and lines starting with '#' are ignored.
  One row per line: a quote left open or a row with more cells than the header is refused by line number, so a
  typo cannot merge the rows after it into one cell."""
  path = os.path.expanduser(path)
  if not os.path.isfile(path):
    raise NotFoundError(f"models_file {path} not found (a CSV with a header: model,checkpoint[,pretrained,label])")
  with open(path, "rb") as f:
    raw = f.read()
  try:
    text = raw.decode("utf-8-sig")
  except UnicodeDecodeError as e:
    line = e.object[:e.start].count(b"\n") + 1
    raise UserError(f"models_file {path}: line {line} is not UTF-8 text (byte {e.object[e.start]:#04x}); save it "
                    "as UTF-8 (Excel: CSV UTF-8)") from None
  numbered = [(k, line) for k, line in enumerate(text.splitlines(), 1)
              if line.strip() and not line.lstrip().startswith("#")]
  header, rows = None, []
  for k, line in numbered:
    try:
      (cells,) = list(csv.reader([line], strict=True))
    except (csv.Error, ValueError):
      raise UserError(f"models_file {path}: line {k} has a quote that is not closed on that line or text after "
                      f"a closing quote ({line.strip()[:60]!r}); one model per line") from None
    cells = [c.strip() for c in cells]
    if header is None:
      header = cells
      if "model" not in header:
        raise UserError(f"models_file {path}: line {k} should be the header naming the columns "
                        "model,checkpoint[,pretrained,label]")
      continue
    if len(cells) > len(header):
      raise UserError(f"models_file {path}: line {k} has {len(cells)} cells, the header {len(header)} "
                      f"({','.join(header)}); quote a cell that holds a comma")
    rows.append((k, dict(zip(header, cells))))
  if header is None:
    raise UserError(f"models_file {path}: expected a header line naming the columns model,checkpoint[,pretrained,"
                    "label]")
  out = []
  for k, r in rows:
    name = r.get("model") or ""
    if not name:
      raise UserError(f"models_file {path}: line {k} has no model name")
    out.append(ModelEntry(name, r.get("checkpoint") or None, r.get("pretrained") or "", r.get("label") or ""))
  return out


def model_entries(config: ml_collections.ConfigDict) -> List[ModelEntry]:
  """The run's models in order: `models` then `models_file`; rows must have distinct names."""
  out = [parse_model_entry(e) for e in config.models]
  if config.get("models_file"):
    out += read_models_file(config.models_file)
  if not out:
    raise UserError("no models: pass models=name[@checkpoint];... or models_file=PATH")
  rows = [m.row for m in out]
  dup = sorted({r for r in rows if rows.count(r) > 1})
  if dup:
    raise UserError(f"models {dup} appear more than once; give each a distinct label (models_file column 'label'"
                    " or a #pretrained tag)")
  return out


def preprocessing_for(bundle_pp: Preprocessing, override: ml_collections.ConfigDict) -> Preprocessing:
  """The checkpoint's own preprocessing with the config's non-empty overrides applied."""
  for field in ("input_size", "resize_size"):  # Named as given, before any size is derived from them.
    if int(override[field]) < 0:
      raise UserError(f"preprocessing.{field}={override[field]}: must be a positive number of pixels (0 keeps the "
                      "checkpoint's own)")
  size = int(override.input_size) or bundle_pp.input_size
  if int(override.resize_size):
    resize = int(override.resize_size)
  elif float(override.crop_fraction):
    frac = float(override.crop_fraction)
    if not 0 < frac <= 1:
      raise UserError(f"preprocessing.crop_fraction={frac}: expected 0 < fraction <= 1")
    resize = int(size / frac)  # timm: scale_size = floor(img_size / crop_pct).
  elif int(override.input_size):  # Same framing as the checkpoint's at the new size.
    resize = int(round(size * bundle_pp.resize_size / bundle_pp.input_size))
  else:
    resize = bundle_pp.resize_size
  method = override.resize_method or bundle_pp.resize_method
  if method not in ("bilinear", "bicubic"):
    raise UserError(f"preprocessing.resize_method={method!r}: use 'bilinear' or 'bicubic'")
  mean = tuple(float(v) for v in override.mean) or bundle_pp.mean
  std = tuple(float(v) for v in override.std) or bundle_pp.std
  if len(mean) != 3 or len(std) != 3:
    raise UserError(f"preprocessing.mean/std need 3 values each (pixel units), got {mean} / {std}")
  if resize < size:
    raise UserError(f"preprocessing: resize_size {resize} is smaller than the crop {size}")
  return Preprocessing(input_size=size, resize_size=resize, resize_method=method, mean=mean, std=std,
                       crop_mode=bundle_pp.crop_mode, antialias=bundle_pp.antialias or method != "bilinear")


def _is_zero_shot(name: str) -> bool:
  from zoomjax import models  # pylint: disable=import-outside-toplevel
  from zoomjax.models import clip_families  # pylint: disable=import-outside-toplevel
  return not models.is_factory(name) and clip_families.is_zero_shot(name)


def load_model(config: ml_collections.ConfigDict, entry: ModelEntry):
  """The bundle of one entry: its checkpoint (or random_init), compute dtype and, for CLIP, its text head.

  An entry may name a factory of your own (`package.module:function`, zoomjax.models.load); random_init does not
  apply to it (its variables are its own)."""
  from zoomjax import models  # pylint: disable=import-outside-toplevel
  dtype = sweep.compute_dtype(config.dtype)
  kw = dict(config.model_overrides.to_dict())
  if dtype != jnp.float32:
    kw["dtype"] = dtype
  if _is_zero_shot(entry.name):
    c = config.clip
    kw.update(vocab=c.vocab or None, class_names=c.class_names, templates=c.templates,
              head_cache_dir=c.head_cache_dir or None)
  random_init = bool(config.random_init) and not models.is_factory(entry.name)
  return models.from_config({"name": entry.name, "checkpoint": None if random_init else entry.checkpoint,
                             "random_init": random_init, "seed": int(config.model_seed)}, **kw)


def make_step(bundle, pp: Preprocessing, mesh: jax.sharding.Mesh, dtype):
  """`step(variables, views uint8 (B, S, S, 3), labels, logit_mask) -> top-5, p_true, finite`, jitted once per
  model: the dataset's class mask is an argument, so datasets of one label width share the executable.

  The views are made on the host by `pp.pil_view` in the decode threads (PIL's resize is exact and its cost
  is what the reference loaders pay too), so one executable serves every image size.
  """
  predict = dataclasses.replace(bundle, preprocessing=pp).predict_fn(dtype=None if dtype == jnp.float32 else dtype)

  def model_fn(variables, views, labels, logit_mask):
    logits = predict(variables, views.astype(jnp.float32)).astype(jnp.float32)
    finite = jnp.all(jnp.isfinite(logits), axis=-1)
    logits = jnp.where(logit_mask, logits, -jnp.inf)
    out = sweep.top5_outputs(jax.nn.softmax(logits, axis=-1), labels)
    out["finite"] = finite[:, None]
    return out

  return parallel.data_parallel_jit(model_fn, mesh, num_args=4, replicated_argnums=(0, 3))


@dataclasses.dataclass(frozen=True)
class PreparedModel:
  """One entry's bundle, preprocessing, jitted step and replicated variables, shared by all its datasets."""
  bundle: Any
  pp: Preprocessing
  step: Any
  variables: Any


def prepare_model(config: ml_collections.ConfigDict, entry: ModelEntry, mesh: jax.sharding.Mesh) -> PreparedModel:
  bundle = load_model(config, entry)
  pp = preprocessing_for(bundle.preprocessing, config.preprocessing)
  bundle.check_input_size(pp.input_size, "--config.preprocessing.input_size", fix=(
      f"set --config.preprocessing.input_size=0 (each model's own size), or evaluate {entry.row} in a run of its "
      "own"))  # Before its step is compiled.
  step = progress_lib.announcing(  # One executable per model and label width.
      make_step(bundle, pp, mesh, sweep.compute_dtype(config.dtype)), lambda v, x, labels, m: (
          (x.shape, labels.shape), f"{entry.row} for batches of {x.shape[0]} {x.shape[1]}x{x.shape[2]} views"))
  return PreparedModel(bundle, pp, step, parallel.replicate(bundle.variables, mesh))


def logit_mask(space, num_classes: int) -> np.ndarray:
  """The dataset's scored classes (all of the model's outputs when it scores every class)."""
  return np.ones(num_classes, bool) if space.class_subset is None else space.logit_mask()


def hits(top5: np.ndarray, labels: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
  """(top-1 correct, top-5 correct) per image: a hit is any of the image's labels (multi-label: "any label")."""
  return label_space.is_correct(top5[:, 0], labels), label_space.topk_correct(top5, labels)


def pair_metrics(rows: Dict[str, np.ndarray], origins: Optional[Sequence[str]]) -> Dict[str, Any]:
  """Headline numbers of one pair from its merged predictions (each accuracy with its 95 % interval)."""
  n = int(rows["index"].shape[0])
  top1 = float(np.mean(rows["correct"])) if n else None
  top5 = float(np.mean(rows["top5_correct"])) if n else None
  out = {"num_images": n, "top1": top1, "top5": top5,
         "ci95": {"top1": analyses.bootstrap_interval(top1, n), "top5": analyses.bootstrap_interval(top5, n)}}
  if origins is not None and n:
    per = {}
    org = np.asarray([origins[int(i)] for i in rows["index"]])
    for o in sorted(set(org.tolist())):
      sel = org == o
      k = int(sel.sum())
      t1, t5 = float(np.mean(rows["correct"][sel])), float(np.mean(rows["top5_correct"][sel]))
      per[o] = {"num_images": k, "top1": t1, "top5": t5, "top1_ci95": analyses.bootstrap_interval(t1, k)}
    out["per_origin"] = per
  return out


def paper_top1(entry: ModelEntry, dataset_name: str, variant: Optional[str] = None) -> Optional[Dict[str, Any]]:
  """The paper's top-1 (percent) for this model and dataset, with where it comes from; None when it has none."""
  base = dataset_name.split("/")[0]
  if base == "imagenet_hard":
    v = paper_numbers.imagenet_hard(entry.name, entry.pretrained or None)
    return None if v is None else {"top1_percent": v, "source": "docs/study.md §4.6 (ImageNet-Hard, 10,980 images)"}
  key = paper_numbers.paper_dataset_key(dataset_name, None, variant)
  v = paper_numbers.lookup(entry.name, key).get("one_crop_accuracy")
  return None if v is None else {"top1_percent": v, "source": f"Table 1 / §2.4 1-crop, {key}"}


def run(config: ml_collections.ConfigDict, workdir: str) -> Optional[Dict[str, Any]]:
  """Evaluates every (model, dataset) pair not already complete; process 0 writes the tables and the report."""
  from zoomjax import data  # pylint: disable=import-outside-toplevel
  config_lib.check_job(config, workdir)  # What zoomjax.main checks, for calls from Python too.
  t_start = time.monotonic()
  entries = model_entries(config)
  data_entries = [parse_data_entry(d) for d in config.data]
  if not data_entries:
    raise UserError("no datasets: pass data=name[@manual_dir];...")
  shards.images_to_run(config.limit, 0)  # A bad limit fails now, before any dataset or model is loaded.
  shards.num_shards(1, int(config.shard_size))  # A bad shard_size fails now.
  sweep.compute_dtype(config.dtype)
  workers = data.decode_threads(config.num_workers)
  # Datasets first: a missing one fails before any model is loaded or any pair is claimed.
  datasets = {}
  for d in data_entries:
    datasets[d.name] = data.from_config({"name": d.name, "data_dir": config.data_dir, "manual_dir": d.manual_dir,
                                         "real_json": config.real_json, "split": config.split}, num_workers=workers)
  names = [d.name for d in data_entries]
  if len(set(names)) != len(names):
    raise UserError(f"data lists a dataset twice: {names}")
  for entry in entries:  # A finished pair of another config is refused before anything is loaded.
    for d in data_entries:
      _check_pair_key(pair_dir(workdir, entry, d), _pair_key(config, entry, d))
      shards.expect(pair_dir(workdir, entry, d), num_images=shards.images_to_run(config.limit, len(datasets[d.name])),
                    shard_size=int(config.shard_size), process_index=jax.process_index(),
                    process_count=jax.process_count())  # Every pair counts in the line a Ctrl-C prints.
  os.makedirs(workdir, exist_ok=True)
  mesh = parallel.make_mesh()
  cache_gb = float(config.view_cache_gb)
  if cache_gb < 0:
    raise UserError(f"config.view_cache_gb={cache_gb}: use 0 to turn the view cache off or a positive size")
  store_dir = config.view_cache_dir
  # In memory, only a later model of this run can reuse a view; on disk (store_dir), later runs too.
  views = (view_cache.ViewCache(int(cache_gb * 1e9)) if cache_gb > 0 and len(entries) > 1 and not store_dir
           else None)
  results = []
  fingerprints = {}  # Per dataset, computed once for all its models.
  for entry in entries:
    model = None
    for d in data_entries:
      where = pair_dir(workdir, entry, d)
      if d.name not in fingerprints:
        fingerprints[d.name] = dataset_fingerprint(datasets[d.name], int(config.limit))
      done = kept_metrics(where, entry, d, _pair_key(config, entry, d), fingerprints[d.name], datasets[d.name])
      if done is None:
        if model is None:
          model = prepare_model(config, entry, mesh)
        view = (model.pp.input_size, model.pp.resize_size, model.pp.resize_method) + (
            ("squash",) if model.pp.crop_mode == "squash" else ()) + (
            ("tf",) if not model.pp.antialias else ())  # Squashed views, TensorFlow's resize: other views.
        table = None if views is None else views.table((d.name, *view))
        store = None if not store_dir else view_cache.ViewStore(
            store_dir, {"dataset": _pair_key(config, entry, d)["dataset"], "view": view}, datasets[d.name])
        done = evaluate_pair(config, where, entry, d, datasets[d.name], model, mesh, table, store)
      else:
        console.say(f"{entry.row} on {d.name}: complete in {where}, kept")
      if jax.process_index() == 0 and done is not None:
        results.append(done)
        write_results(config, workdir, results, entries, data_entries, datasets)
  if jax.process_index() != 0:
    return None
  summary = write_results(config, workdir, results, entries, data_entries, datasets, final=True)
  print(results_markdown(results, entries, data_entries), flush=True)
  print(f"evaluate: {len(results)} pairs in {time.monotonic() - t_start:.1f} s; report: "
        f"{os.path.abspath(os.path.join(workdir, 'report.html'))}", flush=True)
  return summary


def pair_dir(workdir: str, entry: ModelEntry, d: DataEntry) -> str:
  """`<workdir>/pairs/<model row>__<dataset>-<hash>`: slugs for people, plus 10 hex digits of a hash of the exact
  row and dataset name, so that rows or datasets whose names slug alike (`a b`, `a_b`) never share a directory."""
  digest = hashlib.sha256(json.dumps([entry.row, d.name]).encode("utf-8")).hexdigest()[:10]
  return os.path.join(workdir, PAIRS_DIR, f"{atomic.slug(entry.row, 80)}__{atomic.slug(d.name, 80)}-{digest}")


def _pair_key(config, entry: ModelEntry, d: DataEntry) -> Dict[str, Any]:
  """The pair's resume key: what changes its numbers."""
  full = json.loads(config.to_json_best_effort())
  return {
      "model": {"name": entry.name, "checkpoint": entry.checkpoint, "pretrained": entry.pretrained,
                "random_init": bool(config.random_init), "seed": int(config.model_seed),
                "overrides": full.get("model_overrides", {})},
      "dataset": {"name": d.name, "manual_dir": d.manual_dir, "data_dir": config.data_dir,
                  "real_json": config.real_json, "split": config.split},
      "preprocessing": full["preprocessing"], "dtype": config.dtype,
      "clip": full["clip"] if _is_zero_shot(entry.name) else None,
      "limit": int(config.limit), "shard_size": int(config.shard_size), "batch_size": int(config.batch_size)}


def dataset_fingerprint(dataset, limit: int) -> Dict[str, Any]:
  """The images a pair is computed on: their count and `shards.fingerprint` of their ids and labels."""
  n = shards.images_to_run(limit, len(dataset))
  return {"num_images": n, "fingerprint": shards.fingerprint(dataset.ids[:n], dataset.labels[:n])}


def _complete_metrics(pair_dir_: str) -> Optional[Dict[str, Any]]:
  path = os.path.join(pair_dir_, "metrics.json")
  try:
    with open(path) as f:
      m = json.load(f)
  except (OSError, ValueError):
    return None
  return m if isinstance(m, dict) and m.get("complete") is True else None


def _data_change(pair_dir_: str, was: Dict[str, Any], dataset, num_images: int) -> str:
  """What changed in the pair's images since its predictions: counts, then examples from predictions.npz."""
  parts = [f"{was.get('num_images')} -> {num_images} images"] if was.get("num_images") != num_images else []
  try:
    with np.load(os.path.join(pair_dir_, RECORDS_FILE), allow_pickle=False) as z:
      old = {str(i): tuple(int(x) for x in lab if x >= 0) for i, lab in zip(z["ids"], z["labels"])}
  except (OSError, ValueError, KeyError):
    return "; ".join(parts + ["ids or labels differ"])
  now = {str(i): tuple(int(x) for x in lab if x >= 0)
         for i, lab in zip(dataset.ids[:num_images], dataset.labels[:num_images])}
  for what, ids in (("relabelled", [i for i in old if i in now and now[i] != old[i]]),
                    ("removed", [i for i in old if i not in now]),
                    ("added", [i for i in now if i not in old])):
    if ids:
      parts.append(f"{len(ids)} {what} (e.g. {', '.join(ids[:3])})")
  return "; ".join(parts) or "ids or labels differ"


def kept_metrics(pair_dir_: str, entry: ModelEntry, d: DataEntry, key: Dict[str, Any], data_fp: Dict[str, Any],
                 dataset) -> Optional[Dict[str, Any]]:
  """The pair's metrics.json when it is complete AND was computed for this key on these images; else None, with
  a warning when a complete one is set aside (the rerun recomputes the pair, reusing its unchanged shards)."""
  m = _complete_metrics(pair_dir_)
  if m is None:
    return None
  where = os.path.join(pair_dir_, "metrics.json")
  if m.get("key") != json.loads(json.dumps(key)):
    console.warn(f"{where} was not written for {entry.row} on {d.name} with this config; recomputing that pair")
    return None
  was = m.get("dataset_fingerprint") or {}
  if was != data_fp:
    change = _data_change(pair_dir_, was, dataset, data_fp["num_images"])
    console.warn(f"{entry.row} on {d.name}: the dataset changed since {where} was computed ({change}); "
                 "recomputing that pair (unchanged shards are reused)")
    return None
  return m


def _check_pair_key(pair_dir: str, key: Dict[str, Any]) -> None:
  """Refuses a pair directory that holds a run of a different key (naming the fields that differ)."""
  path = os.path.join(pair_dir, shards.CONFIG_FILE)
  if not os.path.exists(path):
    return
  try:
    with open(path) as f:
      old = json.load(f)
  except (OSError, ValueError) as e:
    raise UserError(f"cannot read {path} ({e}); delete {pair_dir} to recompute that pair") from None
  new = json.loads(json.dumps(key))
  diff = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
  if diff:
    detail = "; ".join(f"{k}: {old.get(k)!r} there, {new.get(k)!r} now" for k in diff)
    raise UserError(f"{pair_dir} holds this pair evaluated with another config ({detail}); use a new --workdir "
                    "or delete that directory")


def evaluate_pair(config, pair_dir: str, entry: ModelEntry, d: DataEntry, dataset, model: PreparedModel,
                  mesh, views: Optional[view_cache.ViewTable] = None,
                  store: Optional[view_cache.ViewStore] = None) -> Optional[Dict[str, Any]]:
  """Runs (or resumes) one pair; process 0 merges and writes the pair's predictions.npz and metrics.json.

  views: this dataset's views under this model's resize/crop, shared with the run's other models in memory;
  store: the same on disk, per shard, shared with later runs."""
  from zoomjax import data  # pylint: disable=import-outside-toplevel
  pid, pcount = jax.process_index(), jax.process_count()
  t_start = time.monotonic()
  workers = data.decode_threads(config.num_workers)
  num_images = shards.images_to_run(config.limit, len(dataset))
  bundle, pp, step, variables = model.bundle, model.pp, model.step, model.variables
  space = dataset.label_space
  mask = logit_mask(space, bundle.num_classes)
  batch_size = parallel.per_process_batch(int(config.batch_size), mesh)
  shard_size = int(config.shard_size)
  n_shards = shards.num_shards(num_images, shard_size)
  clock = progress_lib.CompileClock()
  computed = [0]

  def compute(batch):
    real = np.asarray(batch["index"]) >= 0
    args = (batch["image"], batch["labels"].astype(np.int32))
    out = parallel.to_host(step(variables, *parallel.shard_batch(args, mesh), mask))
    sweep.check_finite(out, batch["index"], lambda i: dataset.ids[i], [f"{pp.input_size}px centre crop"],
                       f"{entry.row} ({entry.checkpoint or 'packaged or random weights'})")
    top5 = np.asarray(out["top5"]).astype(np.int16)
    c1, c5 = hits(top5, np.asarray(batch["labels"]))
    computed[0] += int(real.sum())
    return {"top5": top5, "top5_p": np.asarray(out["top5_p"], np.float32),
            "p_true": np.asarray(out["p_true"], np.float32), "correct": c1, "top5_correct": c5}

  from_cache = [0]

  def batches_for(indices):
    table = views if store is None else store.open(indices, (pp.input_size, pp.input_size))
    kept, hits = (0, 0) if table is None else (len(table), table.hits)
    yield from data.make_batches(dataset, batch_size=batch_size, indices=indices,
                                 num_workers=workers, on_error=config.on_error,
                                 transform=pp.pil_view, transform_hw=(pp.input_size, pp.input_size),
                                 view_table=table)
    if table is not None:
      from_cache[0] += table.hits - hits
      if store is not None and len(table) > kept:
        store.save(indices, table)

  def skipped_in(rng):
    return [f"{s['id']}: {s['reason']}" for s in dataset.skipped if s["index"] in rng]

  empty = dict(top5=np.zeros((0, 5), np.int16), top5_p=np.zeros((0, 5), np.float32),
               p_true=np.zeros(0, np.float32), correct=np.zeros(0, bool), top5_correct=np.zeros(0, bool))
  mine = shards.process_shards(n_shards, pid, pcount)
  total = sum(len(shards.shard_range(k, shard_size, num_images)) for k in mine)
  progress = progress_lib.Progress(total_images=total, views_per_image=1, what=f"evaluate {entry.row} on {d.name}",
                            every_secs=float(config.progress_every_secs), log_fn=console.say, compile_clock=clock)
  key = _pair_key(config, entry, d)
  with shards.claim(pair_dir, pid, key, PAIR_FIELDS, dataset.name, dataset.ids[:num_images],
                    dataset.labels[:num_images]):
    t0 = time.monotonic()
    with clock:
      shards.run_shards(
          pair_dir, num_images=num_images, shard_size=shard_size, batches_for=batches_for, compute=compute,
          empty_rows=empty, meta={"classes": [str(bundle.num_classes)]}, ids_of=lambda i: dataset.ids[i],
          skipped_in=skipped_in, process_index=pid, process_count=pcount, progress=progress,
          fingerprint_of=lambda r: shards.fingerprint(dataset.ids[r.start:r.stop], dataset.labels[r.start:r.stop]),
          file_stamp_of=dataset.file_stamp)
    loop_s = time.monotonic() - t0
    if pid != 0:
      return None
    shards.wait_for_shards(pair_dir, n_shards, float(config.merge_timeout_s))
    rows = shards.merge(pair_dir, n_shards, FIELDS, ("classes",), num_images=num_images)
    atomic.savez(os.path.join(pair_dir, RECORDS_FILE), rows)
    m = pair_metrics(rows, dataset.origins)
    skipped = [str(s) for s in rows[shards.SKIPPED]]
    m.update({
        "model": entry.name, "row": entry.row, "checkpoint": entry.checkpoint, "pretrained": entry.pretrained,
        "predictions": os.path.join(PAIRS_DIR, os.path.basename(pair_dir), RECORDS_FILE),
        "random_init": bool(config.random_init), "dataset": d.name, "dataset_name": dataset.name,
        "label_space": space.name, "multi_label": bool(space.multi_label), "num_skipped": len(skipped),
        "skipped": skipped, "preprocessing": dataclasses.asdict(pp), "dtype": config.dtype,
        "paper": paper_top1(entry, d.name, None),
        "images_this_run": computed[0],
        # Of those, views copied from an earlier model's or run's (same dataset, resize and crop), not decoded.
        "views_from_cache": from_cache[0],
        # Throughput of this invocation's images, compile time excluded (it is reported on its own).
        "images_per_second": (computed[0] / (loop_s - clock.seconds)
                              if computed[0] and loop_s > clock.seconds else None),
        "compile_time_s": clock.seconds, "wall_time_s": time.monotonic() - t_start,
        "devices": [str(x) for x in jax.local_devices()], "versions": tta_job.library_versions()})
    m = analyses.nan_to_none(m)
    m["key"] = json.loads(json.dumps(key))  # What `kept_metrics` checks before a rerun keeps this pair.
    m["dataset_fingerprint"] = dataset_fingerprint(dataset, int(config.limit))
    m["complete"] = True  # Written last, atomically, after predictions.npz.
    atomic.write_json(os.path.join(pair_dir, "metrics.json"), m)
  msg = f"{entry.row} on {d.name}: top-1 {_cell(m)}, top-5 {html.percent(m['top5'])} over {m['num_images']} images"
  if m["paper"]:
    msg += f" (paper: {html.published(m['paper']['top1_percent'])})"
  console.say(msg)
  skips = shards.skip_summary(skipped, num_images)
  if skips:
    console.say(skips)
  return m


def _cell(m: Dict[str, Any]) -> str:
  """'72.0 % [63.0–80.0]': top-1 with its 95 % bootstrap interval (`zoomjax.reports.html.interval`)."""
  return html.interval(m.get("top1"), (m.get("ci95") or {}).get("top1"))


def results_markdown(results: Sequence[Dict[str, Any]], entries: Sequence[ModelEntry],
                     data_entries: Sequence[DataEntry]) -> str:
  """Rows model, columns dataset: 'top-1 [95 % CI] (paper X)'; '…' for a pair not evaluated yet."""
  by = {(r["row"], r["dataset"]): r for r in results}
  rows = []
  for e in entries:
    cells = [e.row]
    for d in data_entries:
      r = by.get((e.row, d.name))
      if r is None:
        cells.append("…")
        continue
      cell = _cell(r)
      if r.get("paper"):
        cell += f" (paper {html.published(r['paper']['top1_percent'], unit=False)})"
      cells.append(cell)
    rows.append(cells)
  return html.markdown_table(["model"] + [d.name for d in data_entries], rows)


CSV_COLUMNS = ("model", "pretrained", "checkpoint", "dataset", "label_space", "num_images", "num_skipped", "top1",
               "top1_lo", "top1_hi", "top5", "top5_lo", "top5_hi", "paper_top1", "images_per_second", "dtype",
               "input_size", "resize_size", "resize_method")


def paired_models(workdir: str, results: Sequence[Dict[str, Any]], *, n_boot: int = 2000) -> List[Dict[str, Any]]:
  """Per dataset, every model against the first one evaluated on it, image by image (top-1 correctness from the
  pairs' predictions.npz): paired bootstrap interval and McNemar's exact p-value. Two models whose recorded
  images differ (e.g. other skips) are not paired: the entry says so in one line naming both ("refused")."""
  out = []
  first: Dict[str, Tuple[str, np.ndarray, np.ndarray]] = {}
  for r in results:
    try:
      with np.load(os.path.join(workdir, r["predictions"]), allow_pickle=False) as z:
        ids, correct = z["ids"], z["correct"].astype(bool)
    except (OSError, KeyError, ValueError):
      continue
    if r["dataset"] not in first:
      first[r["dataset"]] = (r["row"], ids, correct)
      continue
    base_row, base_ids, base_correct = first[r["dataset"]]
    entry = {"dataset": r["dataset"], "a": r["row"], "b": base_row, "what": "top-1"}
    try:
      ia, ib = paired_lib.same_images(base_ids, ids, f"{base_row} on {r['dataset']}", f"{r['row']} on {r['dataset']}")
    except UserError as e:
      out.append({**entry, "refused": str(e)})
      continue
    out.append({**entry, **paired_lib.paired_difference(correct[ib], base_correct[ia], n_boot=n_boot).as_dict()})
  return out


def write_results(config, workdir: str, results: Sequence[Dict[str, Any]], entries: Sequence[ModelEntry],
                  data_entries: Sequence[DataEntry], datasets: Dict[str, Any], final: bool = False) -> Dict:
  """results.json / .csv / .md and report.html from the pairs finished so far (atomic writes)."""
  from zoomjax.reports import evaluate as evaluate_report  # pylint: disable=import-outside-toplevel
  rows = []
  for r in results:
    ci1, ci5 = (r.get("ci95") or {}).get("top1") or [None, None], (r.get("ci95") or {}).get("top5") or [None, None]
    pp = r.get("preprocessing") or {}
    rows.append({"model": r["row"], "pretrained": r.get("pretrained", ""), "checkpoint": r.get("checkpoint") or "",
                 "dataset": r["dataset"], "label_space": r["label_space"], "num_images": r["num_images"],
                 "num_skipped": r["num_skipped"], "top1": r["top1"], "top1_lo": ci1[0], "top1_hi": ci1[1],
                 "top5": r["top5"], "top5_lo": ci5[0], "top5_hi": ci5[1],
                 "paper_top1": (r.get("paper") or {}).get("top1_percent"),
                 "images_per_second": r.get("images_per_second"), "dtype": r.get("dtype"),
                 "input_size": pp.get("input_size"), "resize_size": pp.get("resize_size"),
                 "resize_method": pp.get("resize_method")})
  atomic.write_text(os.path.join(workdir, "results.csv"),
                    html.csv_text(CSV_COLUMNS, [[row[c] for c in CSV_COLUMNS] for row in rows]))
  md = results_markdown(results, entries, data_entries)
  atomic.write_text(os.path.join(workdir, "results.md"), md + "\n")
  summary = {"pairs": [{k: v for k, v in r.items() if k != "skipped"} for r in results],
             "models": [m.row for m in entries], "datasets": [d.name for d in data_entries],
             "complete": bool(final) and len(results) == len(entries) * len(data_entries),
             # Models compared on the same images (paired), each against the first on its dataset.
             "paired": paired_models(workdir, results)}
  summary["report"] = evaluate_report.write_report(workdir, results, entries=[m.row for m in entries],
                                                   datasets=[d.name for d in data_entries], data=datasets,
                                                   gallery_size=int(config.gallery_size),
                                                   command=config.get("command", "") or "",
                                                   paired=summary["paired"])
  atomic.write_json(os.path.join(workdir, "results.json"), summary)
  return summary

