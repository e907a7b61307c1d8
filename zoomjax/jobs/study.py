"""Job `study`: the paper's comparison over many finished zoom sweeps (models x datasets), in one workdir of its own.

Reads N sweep workdirs (`config.runs`: ';'-separated paths or globs), each checked by
`zoomjax.analysis.sweep_results.open_sweep` (finished, readable, its records matching its grid), and writes into its own
workdir, never into theirs:
  study.json    every number below (fractions), per run and per (dataset, grid) group
  table1.csv    Table 1 per run: 1-crop, greedy top-k and upper bound with 95 % bootstrap intervals, the paper's
  table1.md     the same as Markdown tables (models x datasets, "72.0 % [63–80]") and the paper's Table 1
  study.html, study/   figures: summed top-k anchor heatmap (centre share; paper 26.65 %), accuracy vs scale
                overlays per dataset, 1-crop vs upper bound scatter; the disentangling table; unsolved images
  export/<group>/   (config.export_max_solved >= 0) the images solved by at most k of the group's runs, as a
                `folder:` dataset (labels.csv) with each image's per-run solved flags (solved_by_run.csv):
                the ImageNet-Hard construction of the paper, made reproducible
  explorers/<run>/explorer.html   the image explorer of each run (`zoomjax.reports.explorer`)

Runs are grouped by (dataset, grid): the dataset by dataset.json's fingerprint of ids and labels (two spellings
of one folder are one dataset), its name shown. Cross-run analyses (unsolved images, export) stay inside a
group. Two runs that name the same dataset but saw other images (another limit or split, relabelled files) are
refused naming both; `config.mixed='refuse'` also refuses runs of another dataset or grid than the first run's.
Table 1 is recomputed from each run's records (its greedy cover is metrics.json's, checked against the records,
or recomputed), so the numbers are the records', whatever later edits of metrics.json.
"""
import glob
import os
import re
import shutil
from typing import Any, Dict, List, Optional, Sequence, Tuple

import ml_collections
import numpy as np

from zoomjax.analysis import metrics as analyses
from zoomjax.runtime import atomic
from zoomjax.runtime import console
from zoomjax.analysis import paper_numbers
from zoomjax.runtime import shards
from zoomjax.analysis import sweep_results as sweep_workdir
from zoomjax.errors import NotFoundError, UserError

STUDY_FILE = "study.json"
# [NB-T36]: over 7 datasets x 6 models the centre anchor (1, 1) is 26.65 % of the top-36 transforms (paper.md §2.3).
PAPER_CENTRE_SHARE = 26.65
MIXED = ("group", "refuse")
HEADLINE = ("one_crop_accuracy", "top_k_accuracy", "upper_bound_accuracy")


# ----------------------------------------------------------------------------------------------- inputs


def expand_runs(spec: str, exclude: Optional[str] = None) -> List[str]:
  """';'-separated workdirs or glob patterns -> workdirs in the given order (each pattern's matches sorted),
  duplicates dropped. A pattern that matches nothing is an error; `exclude` (the study's own workdir) is left
  out of glob matches."""
  out, seen = [], set()
  skip = os.path.realpath(exclude) if exclude else None
  for item in (p.strip() for p in (spec or "").split(";")):
    if not item:
      continue
    if glob.has_magic(item):
      matches = sorted(m for m in glob.glob(item) if os.path.isdir(m) and os.path.realpath(m) != skip)
      if not matches:
        raise NotFoundError(f"config.runs: {item!r} matches no directory")
    else:
      matches = [item]
    for m in matches:
      key = os.path.realpath(m)
      if key not in seen:
        seen.add(key)
        out.append(os.path.normpath(m))
  if not out:
    raise UserError("config.runs is empty: give sweep workdirs, e.g. runs=runs/demo;runs/val100_*")
  return out


def _inside(path: str, root: str) -> bool:
  path, root = os.path.realpath(path), os.path.realpath(root)
  return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def refuse_output_in_inputs(workdir: str, inputs: Sequence[str]) -> None:
  for w in inputs:
    if _inside(workdir, w):
      raise UserError(f"--workdir {workdir} is inside the sweep workdir {w}: the study never writes into its "
                      "inputs; use another --workdir")


def _grid_dict(grid: sweep_workdir.Grid) -> Dict[str, Any]:
  return {"scales": list(grid[0]), "anchors": grid[1], "crop": grid[2]}


def _grid_text(grid: sweep_workdir.Grid) -> str:
  scales, anchors, crop = grid
  s = "paper" if tuple(scales) == paper_numbers.PAPER_SCALES else "/".join(map(str, scales))
  return f"{s} x {anchors}x{anchors}" + ("" if crop == 224 else f" crop {crop}")


def _slug(text: str) -> str:
  return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_")[:80] or "x"


def group_sweeps(sweeps: Sequence[sweep_workdir.Sweep], mixed: str = "group") -> List[Dict[str, Any]]:
  """Groups of comparable runs: same dataset (fingerprint of ids and labels) and grid, in first-seen order.

  Refuses (naming both workdirs) two runs of one dataset name over different images or labels; with
  mixed='refuse' also any run of another dataset or grid than the first run's.
  """
  if mixed not in MIXED:
    raise UserError(f"config.mixed must be one of {MIXED}, got {mixed!r}")
  by_name: Dict[str, sweep_workdir.Sweep] = {}
  for s in sweeps:
    name = str(s.dataset.get("name"))
    first = by_name.setdefault(name, s)
    if first.dataset.get("fingerprint") != s.dataset.get("fingerprint"):
      raise UserError(
          f"{first.workdir} and {s.workdir} both swept {name} but over different images or labels "
          f"({first.dataset.get('num_images')} vs {s.dataset.get('num_images')} images, fingerprints "
          f"{str(first.dataset.get('fingerprint'))[:12]} vs {str(s.dataset.get('fingerprint'))[:12]}): their images "
          "cannot be compared. Sweep the same images (same data, split and limit) or study them apart")
  groups: Dict[Tuple, Dict[str, Any]] = {}
  for i, s in enumerate(sweeps):
    key = (s.dataset.get("fingerprint"), s.grid)
    if key not in groups:
      if mixed == "refuse" and groups:
        first = sweeps[0]
        what = ("grid" if first.dataset.get("fingerprint") == s.dataset.get("fingerprint") else "dataset")
        raise UserError(
            f"{s.workdir} is of another {what} ({s.dataset.get('name')}, grid {_grid_text(s.grid)}) than "
            f"{first.workdir} ({first.dataset.get('name')}, grid {_grid_text(first.grid)}); study them apart "
            "or set mixed=group")
      groups[key] = {"datasets": [], "grid": _grid_dict(s.grid), "runs": [],
                     "num_images": int(s.dataset.get("num_images", 0)), "fingerprint": key[0],
                     "paper_dataset": s.metrics.get("paper_dataset")}
    g = groups[key]
    g["runs"].append(i)
    if s.dataset.get("name") not in g["datasets"]:
      g["datasets"].append(s.dataset.get("name"))
  out = list(groups.values())
  names = [g["datasets"][0] for g in out]
  for g in out:
    g["dataset"] = g["datasets"][0]
    shown = _short_dataset(g["dataset"])
    if names.count(g["dataset"]) > 1:
      shown += f" · {_grid_text(tuple((tuple(g['grid']['scales']), g['grid']['anchors'], g['grid']['crop'])))}"
    g["name"] = shown
  used = set()
  for g in out:
    slug = base = _slug(g["name"])
    k = 2
    while slug in used:
      slug, k = f"{base}_{k}", k + 1
    used.add(slug)
    g["key"] = slug
  return out


def _short_dataset(name: str) -> str:
  """'folder:/long/path/imagenet-val-100' -> 'folder:imagenet-val-100' (study.json keeps the full name)."""
  if name.startswith("folder:"):
    return "folder:" + (os.path.basename(os.path.normpath(name[len("folder:"):])) or name[len("folder:"):])
  return name


def run_labels(sweeps: Sequence[sweep_workdir.Sweep], groups: Sequence[Dict[str, Any]]) -> List[str]:
  """One label per run (its model); a label two runs of one group share gets the workdir's name appended."""
  labels = [s.label for s in sweeps]
  for g in groups:
    names = [labels[i] for i in g["runs"]]
    for i in g["runs"]:
      if names.count(labels[i]) > 1:
        labels[i] = f"{sweeps[i].label} [{os.path.basename(sweeps[i].workdir)}]"
  return labels


# ---------------------------------------------------------------------------------------------- analyses


def _cover(sweep: sweep_workdir.Sweep, C: np.ndarray, transforms, names: List[str], tie: str) -> Tuple[List[int], str]:
  """The run's greedy min-cover (view indices): metrics.json's when it used the same tie order and covers exactly
  the images the records solve; recomputed otherwise. Returns (cover, where it came from)."""
  stored = sweep.metrics.get("min_cover")
  if stored is not None and sweep.metrics.get("tie_order") == tie and all(v in names for v in stored):
    cover = [names.index(v) for v in stored]
    if np.array_equal(analyses.solved(C, cover), analyses.solved(C)):
      return cover, "metrics.json"
    console.warn(f"{sweep.workdir}: the min-cover in metrics.json does not cover what records.npz solves; "
                 "recomputing it")
  cover, _ = analyses.greedy_min_cover(C, analyses.tie_order(transforms, tie))
  return cover, "recomputed"


def analyse_run(sweep: sweep_workdir.Sweep, *, top_k: int = 36, tie: str = "", draws: int = 1000,
                seed: int = 0) -> Tuple[Dict[str, Any], Dict[str, np.ndarray]]:
  """(row, per-image) of one run from its records: Table 1 with bootstrap intervals, top-k anchor counts,
  accuracy vs scale, disentangling. per-image: ids, solved (by some zoom view), one_crop (correct) or None.
  Only the top-1 ids and labels are loaded, and only per-image vectors are kept."""
  arr = sweep.load(("ids", "labels", "top1", "view_names"))
  names = [str(v) for v in arr["view_names"]]
  transforms = [analyses.parse_view_name(v) for v in names]
  _, anchors, crop = sweep.grid
  C = analyses.correctness(arr["top1"], arr["labels"])
  n = int(C.shape[0])
  tie = tie or sweep.config.get("tie_order") or "paper"
  try:
    analyses.tie_order(transforms, tie)
  except ValueError as e:
    raise UserError(f"config.tie_order: {e}") from None
  cover, cover_from = _cover(sweep, C, transforms, names, tie)
  has_one = analyses.ONE_CROP_VIEW in names
  row: Dict[str, Any] = {
      "workdir": sweep.workdir, "model": sweep.model, "dataset": sweep.dataset.get("name"),
      "grid": _grid_dict(sweep.grid), "num_images": n, "num_views": int(C.shape[1]),
      "one_crop_accuracy": analyses.one_crop_accuracy(C, names) if has_one else None,
      "top_k": int(top_k), "top_k_accuracy": analyses.union_accuracy(C, cover[:top_k]),
      "upper_bound_accuracy": analyses.upper_bound(C), "min_cover_size": len(cover), "min_cover_from": cover_from,
      "tie_order": tie, "top_k_anchor_counts": analyses.top36_anchor_counts(cover, transforms, top_k, anchors).tolist(),
      "accuracy_vs_scale": analyses.accuracy_vs_scale(C, transforms, anchors),
      "disentangling": analyses.disentangle(C, transforms, cover, crop=crop),
      "paper_dataset": sweep.metrics.get("paper_dataset"),
      "paper": paper_numbers.lookup(sweep.model, sweep.metrics.get("paper_dataset")),
      "skipped_files": len(sweep.metrics.get("skipped_files") or []),
  }
  row["ci95"] = {k: analyses.bootstrap_interval(row[k], n, draws=draws, seed=seed) for k in HEADLINE
                 if row[k] is not None}
  if "held_out" in sweep.metrics:  # zoomjax.analysis.selection's held-out view selection curves, when the sweep has them.
    row["held_out"] = sweep.metrics["held_out"]
  per_image = {"ids": np.asarray([str(i) for i in arr["ids"]]), "solved": analyses.solved(C),
               "one_crop": C[:, names.index(analyses.ONE_CROP_VIEW)] if has_one else None}
  return analyses.nan_to_none(row), per_image


def centre_share(counts: np.ndarray) -> Optional[float]:
  """Fraction of the top-k picks at the centre anchor of an odd n x n anchor grid (None without picks)."""
  counts = np.asarray(counts)
  n = counts.shape[0]
  total = counts.sum()
  return float(counts[n // 2, n // 2] / total) if total and n % 2 else None


def anchor_summary(rows: Sequence[Dict[str, Any]]) -> List[Dict[str, Any]]:
  """Top-k anchor counts summed over the runs of each anchor grid size, their centre share and per-run shares."""
  out = {}
  for i, r in enumerate(rows):
    c = np.asarray(r["top_k_anchor_counts"], np.int64)
    e = out.setdefault(c.shape[0], {"anchors": c.shape[0], "counts": np.zeros_like(c), "runs": [], "shares": []})
    e["counts"] = e["counts"] + c
    e["runs"].append(i)
    e["shares"].append(centre_share(c))
  res = []
  for e in out.values():
    shares = [s for s in e["shares"] if s is not None]
    res.append({"anchors": e["anchors"], "counts": e["counts"].tolist(), "runs": e["runs"],
                "centre_share": centre_share(e["counts"]), "per_run_centre_share": e["shares"],
                "mean_per_run_centre_share": float(np.mean(shares)) if shares else None,
                "uniform_share": 1.0 / e["anchors"] ** 2, "paper_centre_share": PAPER_CENTRE_SHARE / 100})
  return res


def solved_counts(per_image: Sequence[Dict[str, np.ndarray]]) -> Dict[str, Any]:
  """Over the images every run of a group recorded: {ids, count (runs solving each), solved (runs x images)}
  and the ids some run lacks (skipped as unreadable there), so a partial run never makes an image 'unsolved'."""
  common = set(per_image[0]["ids"].tolist())
  for p in per_image[1:]:
    common &= set(p["ids"].tolist())
  ids = [i for i in per_image[0]["ids"].tolist() if i in common]  # Dataset order.
  flags = []
  for p in per_image:
    pos = {v: k for k, v in enumerate(p["ids"].tolist())}
    flags.append(p["solved"][[pos[i] for i in ids]] if ids else np.zeros(0, bool))
  flags = np.stack(flags) if flags else np.zeros((0, 0), bool)
  missing = sorted(set().union(*(set(p["ids"].tolist()) for p in per_image)) - common)
  return {"ids": ids, "solved": flags, "count": flags.sum(0) if len(ids) else np.zeros(0, np.int64),
          "not_in_every_run": missing}


def unsolved_summary(per_image: Sequence[Dict[str, np.ndarray]], labels: Sequence[str], draws: int,
                     seed: int) -> Dict[str, Any]:
  """Images no run of the group solves (analyses.unsolved_by_all over the common images), with an interval."""
  per = {lab: dict(zip(p["ids"].tolist(), p["solved"].tolist())) for lab, p in zip(labels, per_image)}
  unsolved = analyses.unsolved_by_all(per)
  counts = solved_counts(per_image)
  n = len(counts["ids"])
  frac = len(unsolved) / n if n else None
  hist = np.bincount(counts["count"], minlength=len(per_image) + 1).tolist() if n else []
  return {"num_common_images": n, "unsolved_ids": unsolved, "unsolved_fraction": frac,
          "ci95": analyses.bootstrap_interval(frac, n, draws=draws, seed=seed),
          "images_solved_by_exactly": hist, "not_in_every_run": counts["not_in_every_run"]}


# ------------------------------------------------------------------------------------------------ export

_SAFE = re.compile(r"[^A-Za-z0-9._/-]+")


def _export_name(image_id: str, source, used: set) -> str:
  """A relative file name for an exported image: the id itself when it is a safe relative path (so the reloaded
  dataset keeps the ids), else a sanitised one; always with the image's extension, unique."""
  from zoomjax.data import files  # pylint: disable=g-import-not-at-top
  rel = _SAFE.sub("_", image_id.replace("\\", "/")).strip("/")
  parts = [p for p in rel.split("/") if p not in ("", ".", "..")]
  rel = "/".join(parts) or "image"
  if not files.is_image(rel):
    ext = os.path.splitext(source)[1].lower() if isinstance(source, str) else ""
    if not ext:
      from PIL import Image  # pylint: disable=g-import-not-at-top
      import io  # pylint: disable=g-import-not-at-top
      try:
        with Image.open(io.BytesIO(bytes(source))) as im:
          ext = {"JPEG": ".jpg", "PNG": ".png"}.get(im.format, f".{(im.format or 'img').lower()}")
      except OSError:
        ext = ".img"
    rel += ext
  base, ext = os.path.splitext(rel)
  k, out = 2, rel
  while out.lower() in used:
    out, k = f"{base}_{k}{ext}", k + 1
  used.add(out.lower())
  return out


def export_hard(out_dir: str, group: Dict[str, Any], sweeps: Sequence[sweep_workdir.Sweep],
                per_image: Sequence[Dict[str, np.ndarray]], labels: Sequence[str], max_solved: int) -> Dict[str, Any]:
  """Writes `out_dir` as a `folder:` dataset of the group's images solved by at most `max_solved` of its runs.

  labels.csv (file, label: 1000-way indices, space-separated when several, source_id), the images copied from
  the source dataset (rebuilt from the first run's config and checked against its fingerprint),
  solved_by_run.csv (file, source_id, label, num_runs_solving, one 0/1 column per run) and export.json (what,
  from where, how to load it). Written beside and swapped in at the end: a failed export leaves the last one.
  """
  import csv  # pylint: disable=g-import-not-at-top
  import io  # pylint: disable=g-import-not-at-top
  counts = solved_counts(per_image)
  keep = [k for k, c in enumerate(counts["count"].tolist()) if c <= max_solved]
  first = sweeps[group["runs"][0]]
  ds = sweep_workdir.source_dataset(first)
  n = int(first.dataset["num_images"])
  where = {v: i for i, v in enumerate(ds.ids[:n])}
  tmp = out_dir.rstrip(os.sep) + ".partial"
  shutil.rmtree(tmp, ignore_errors=True)
  os.makedirs(tmp)
  used: set = set()
  lab_rows, side_rows = [], []
  for k in keep:
    image_id = counts["ids"][k]
    i = where[image_id]
    src = ds.fetch(i)
    name = _export_name(image_id, src, used)
    dst = os.path.join(tmp, *name.split("/"))
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    if isinstance(src, str):
      shutil.copyfile(src, dst)
    else:
      with open(dst, "wb") as f:
        f.write(bytes(src))
    lab = " ".join(str(int(x)) for x in ds.labels[i] if x >= 0)
    lab_rows.append([name, lab, image_id])
    side_rows.append([name, image_id, lab, int(counts["count"][k])] + [int(v) for v in counts["solved"][:, k]])

  def write_csv(path, header, rows):
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    atomic.write_text(path, buf.getvalue())

  write_csv(os.path.join(tmp, "labels.csv"), ["file", "label", "source_id"], lab_rows)
  write_csv(os.path.join(tmp, "solved_by_run.csv"), ["file", "source_id", "label", "num_runs_solving"] + list(labels),
            side_rows)
  space = ds.label_space
  load_kw = {} if space.class_subset is None else {"label_space": space.name}
  info = {"dataset": f"folder:{os.path.abspath(out_dir)}", "get_dataset_kwargs": load_kw,
          "source_dataset": group["dataset"], "source_workdirs": [sweeps[i].workdir for i in group["runs"]],
          "runs": [{"label": lab, "workdir": sweeps[i].workdir} for lab, i in zip(labels, group["runs"])],
          "max_solved": int(max_solved), "num_images": len(keep), "num_common_images": len(counts["ids"]),
          "source_label_space": space.name, "grid": group["grid"],
          "note": ("solved = at least one zoom view of the run's grid predicts one of the image's labels; "
                   "labels are 1000-way indices (space-separated when several)"
                   + (f"; load with label_space={space.name} to keep the {space.name} scoring mask"
                      if load_kw else ""))}
  atomic.write_json(os.path.join(tmp, "export.json"), info)
  shutil.rmtree(out_dir, ignore_errors=True)
  os.replace(tmp, out_dir)
  if not keep:
    console.warn(f"no image of {group['name']} is solved by at most {max_solved} of its {len(labels)} runs: "
                 f"{out_dir} holds no images")
  return {"path": out_dir, **{k: info[k] for k in ("dataset", "get_dataset_kwargs", "max_solved", "num_images")}}


# ---------------------------------------------------------------------------------------------------- job


def study(config: ml_collections.ConfigDict, workdir: str) -> Dict[str, Any]:
  """Reads, checks and analyses the runs; writes the study's files into `workdir`. Returns study.json's dict."""
  from zoomjax.reports import study as study_report  # pylint: disable=g-import-not-at-top  (matplotlib only when needed)
  inputs = expand_runs(str(config.runs), workdir)
  refuse_output_in_inputs(workdir, inputs)
  sweeps = [sweep_workdir.open_sweep(w) for w in inputs]
  groups = group_sweeps(sweeps, str(config.mixed))
  labels = run_labels(sweeps, groups)
  top_k, draws, seed = int(config.top_k), int(config.bootstrap_draws), int(config.bootstrap_seed)
  export_k = int(config.export_max_solved)
  if top_k < 1:
    raise UserError(f"config.top_k={top_k}: must be >= 1")
  if export_k < -1:
    raise UserError(f"config.export_max_solved={export_k}: use -1 (no export) or k >= 0")
  rows, per_image = [], []
  for s, lab in zip(sweeps, labels):
    console.say(f"study: reading {s.workdir} ({lab} on {s.dataset.get('name')})")
    row, img = analyse_run(s, top_k=top_k, tie=str(config.tie_order), draws=draws, seed=seed)
    row["label"] = lab
    rows.append(row)
    per_image.append(img)
  for g in groups:
    for i in g["runs"]:
      rows[i]["group"] = g["key"]
    g["unsolved"] = unsolved_summary([per_image[i] for i in g["runs"]], [labels[i] for i in g["runs"]], draws, seed)
    g["paper_unsolved_fraction_in_real"] = paper_numbers.UNSOLVED_BY_ALL_IN_REAL / 100
  out: Dict[str, Any] = {"runs": rows, "groups": groups, "top_k": top_k, "bootstrap": {"draws": draws, "seed": seed},
                         "anchors": anchor_summary(rows), "export_max_solved": export_k,
                         "command": str(config.get("command") or "")}
  with shards.workdir_lock(workdir):
    _drop_stale(os.path.join(workdir, "export"), {g["key"] for g in groups} if export_k >= 0 else set(),
                "export.json")
    if export_k >= 0:
      for g in groups:
        sub = [per_image[i] for i in g["runs"]]
        g["export"] = export_hard(os.path.join(workdir, "export", g["key"]), g, sweeps, sub,
                                  [labels[i] for i in g["runs"]], export_k)
        console.say(f"export: {g['export']['num_images']} images of {g['name']} solved by <= {export_k} runs -> "
                    f"{g['export']['path']}")
    subs = [f"{i:02d}_{_slug(row['label'])}_{row['group']}" for i, row in enumerate(rows)]
    _drop_stale(os.path.join(workdir, "explorers"), set(subs) if int(config.explorer_max_images) > 0 else set(),
                "explorer.html")
    if int(config.explorer_max_images) > 0:
      from zoomjax.reports import explorer  # pylint: disable=g-import-not-at-top
      for s, row, name in zip(sweeps, rows, subs):
        sub = os.path.join(workdir, "explorers", name)
        row["explorer"] = explorer.write_explorer(s.workdir, out_dir=sub, max_images=int(config.explorer_max_images),
                                                  thumb_side=int(config.explorer_thumb_side))
    out = analyses.nan_to_none(out)
    study_report.write_tables(workdir, out)
    out["report"] = study_report.write_study_report(workdir, out)
    atomic.write_json(os.path.join(workdir, STUDY_FILE), out)
  return out


def _drop_stale(folder: str, keep: set, marker: str) -> None:
  """Removes the sub-folders of `folder` (the study's own export/ or explorers/) that an earlier study wrote
  (they hold `marker`) and this one does not, so a rerun over other runs leaves no stale pages or datasets."""
  if not os.path.isdir(folder):
    return
  for name in os.listdir(folder):
    path = os.path.join(folder, name)
    if name not in keep and os.path.isfile(os.path.join(path, marker)):
      shutil.rmtree(path)


def run(config: ml_collections.ConfigDict, workdir: str) -> Dict[str, Any]:
  import jax  # pylint: disable=g-import-not-at-top
  if jax.process_index() != 0:  # Host-side analysis of files: one process does it.
    return {}
  out = study(config, workdir)
  from zoomjax.reports import study as study_report  # pylint: disable=g-import-not-at-top
  print(study_report.table1_markdown(out, with_paper=False))
  a = [e for e in out["anchors"] if e["centre_share"] is not None]
  for e in a:
    print(f"centre anchor share of the greedy top-{out['top_k']} views over {len(e['runs'])} runs: "
          f"{100 * e['centre_share']:.2f} % (paper: {PAPER_CENTRE_SHARE} %, uniform {100 * e['uniform_share']:.1f} %)")
  for g in out["groups"]:
    u = g["unsolved"]
    if u["unsolved_fraction"] is not None:
      print(f"{g['name']}: {len(u['unsolved_ids'])} of {u['num_common_images']} images solved by none of its "
            f"{len(g['runs'])} runs ({100 * u['unsolved_fraction']:.2f} %)")
    if "export" in g:
      e = g["export"]
      kw = "".join(f",{k}={v}" for k, v in e["get_dataset_kwargs"].items())
      print(f"  export ({e['num_images']} images solved by <= {e['max_solved']} runs): "
            f"data={e['dataset']}{kw}")
  print(f"study: {os.path.abspath(os.path.join(workdir, 'study.html'))}")
  return out
