"""Job `study`: the paper's comparison over many finished zoom sweeps (models x datasets), in one workdir of its own.

Reads N sweep workdirs (`config.runs`: ';'-separated paths or globs), each checked by
`zoomjax.analysis.sweep_results.open_sweep` (finished, readable, its records matching its grid), and writes into its own
workdir, never into theirs:
  study.json    every number below (fractions), per run and per (dataset, grid) group
  table1.csv    Table 1 per run: 1-crop, greedy top-k and upper bound with 95 % bootstrap intervals, the paper's
  table1.md     the same as Markdown tables (models x datasets, "72.0 % [63.0–80.0]") and the paper's Table 1
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
or recomputed), so the numbers are the records', whatever later edits of metrics.json. The statistics are
`zoomjax.analysis.study`'s; this module reads the config and the workdirs and writes the files.

On the console: Table 1, the centre anchor share, per group the images no run solves (their ids, up to
PRINTED_IDS) and the export, and per run its held-out view selection (when its sweep has one).
"""
import glob
import os
import re
import shutil
from typing import Any, Dict, List, Optional, Sequence

import ml_collections
import numpy as np

from zoomjax.analysis import metrics as analyses
from zoomjax.analysis import paper_numbers
from zoomjax.analysis import study as study_lib
from zoomjax.analysis import sweep_results as sweep_workdir
from zoomjax.errors import NotFoundError, UserError
from zoomjax.reports import html
from zoomjax.runtime import atomic
from zoomjax.runtime import config as config_lib
from zoomjax.runtime import console
from zoomjax.runtime import shards

__all__ = ["STUDY_FILE", "PRINTED_IDS", "expand_runs", "refuse_output_in_inputs", "export_hard", "study",
           "summary_text", "run"]

STUDY_FILE = "study.json"
# Unsolved ids printed on the console per group (all of them are in study.json).
PRINTED_IDS = 20


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


# ------------------------------------------------------------------------------------------------ export

_SAFE = re.compile(r"[^A-Za-z0-9._/-]+")


def _export_name(image_id: str, source, used: set) -> str:
  """A relative file name for an exported image: the id itself when it is a safe relative path (so the reloaded
  dataset keeps the ids), else a sanitised one (never starting with a spreadsheet formula character, so that
  labels.csv holds it as it is); always with the image's extension, unique."""
  from zoomjax.data import files  # pylint: disable=g-import-not-at-top
  rel = _SAFE.sub("_", image_id.replace("\\", "/")).strip("/")
  parts = [p for p in rel.split("/") if p not in ("", ".", "..")]
  rel = "/".join(parts) or "image"
  if rel.startswith(html.FORMULA_START):  # labels.csv must hold the name as it is, not a neutralised one.
    rel = "_" + rel[1:]
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
  counts = study_lib.solved_counts(per_image)
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

  atomic.write_text(os.path.join(tmp, "labels.csv"), html.csv_text(["file", "label", "source_id"], lab_rows))
  atomic.write_text(os.path.join(tmp, "solved_by_run.csv"),
                    html.csv_text(["file", "source_id", "label", "num_runs_solving"] + list(labels), side_rows))
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
  from zoomjax.reports import study as study_report  # pylint: disable=g-import-not-at-top  (imports matplotlib)
  inputs = expand_runs(str(config.runs), workdir)
  refuse_output_in_inputs(workdir, inputs)
  sweeps = [sweep_workdir.open_sweep(w) for w in inputs]
  groups = study_lib.group_sweeps(sweeps, str(config.mixed))
  labels = study_lib.run_labels(sweeps, groups)
  top_k, draws, seed = int(config.top_k), int(config.bootstrap_draws), int(config.bootstrap_seed)
  export_k = int(config.export_max_solved)
  if top_k < 1:
    raise UserError(f"config.top_k={top_k}: must be >= 1")
  if export_k < -1:
    raise UserError(f"config.export_max_solved={export_k}: use -1 (no export) or k >= 0")
  rows, per_image = [], []
  for s, lab in zip(sweeps, labels):
    console.say(f"study: reading {s.workdir} ({lab} on {s.dataset.get('name')})")
    row, img = study_lib.analyse_run(s, top_k=top_k, tie=str(config.tie_order), draws=draws, seed=seed)
    row["label"] = lab
    rows.append(row)
    per_image.append(img)
  for g in groups:
    for i in g["runs"]:
      rows[i]["group"] = g["key"]
    g["unsolved"] = study_lib.unsolved_summary([per_image[i] for i in g["runs"]], [labels[i] for i in g["runs"]],
                                               draws, seed)
    g["paper_unsolved_fraction_in_real"] = paper_numbers.UNSOLVED_BY_ALL_IN_REAL / 100
    if len(g["runs"]) > 1:  # Same images: paired tests of every run against the group's first.
      g["paired"] = study_lib.paired_runs([per_image[i] for i in g["runs"]], [labels[i] for i in g["runs"]],
                                          draws=draws, seed=seed)
  out: Dict[str, Any] = {"runs": rows, "groups": groups, "top_k": top_k, "bootstrap": {"draws": draws, "seed": seed},
                         "anchors": study_lib.anchor_summary(rows), "export_max_solved": export_k,
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
    subs = [f"{i:02d}_{atomic.slug(row['label'], max_len=80)}_{row['group']}" for i, row in enumerate(rows)]
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


def summary_text(out: Dict[str, Any]) -> str:
  """What the job prints: Table 1, the centre anchor share, the images no run of a group solves (ids up to
  PRINTED_IDS) and the export, and each run's held-out view selection."""
  from zoomjax.reports import study as study_report  # pylint: disable=g-import-not-at-top
  lines = [study_report.table1_markdown(out, with_paper=False)]
  for e in out["anchors"]:
    if e["centre_share"] is not None:
      lines.append(f"centre anchor share of the greedy top-{out['top_k']} views over {len(e['runs'])} runs: "
                   f"{html.percent(e['centre_share'])} (paper: {html.published(study_lib.PAPER_CENTRE_SHARE)}, "
                   f"uniform {html.percent(e['uniform_share'])})")
  for g in out["groups"]:
    u = g["unsolved"]
    if u["unsolved_fraction"] is not None:
      ids = u["unsolved_ids"]
      listed = ", ".join(ids[:PRINTED_IDS]) + (f" … and {len(ids) - PRINTED_IDS} more (study.json)"
                                                if len(ids) > PRINTED_IDS else "")
      lines.append(f"{g['name']}: {len(ids)} of {u['num_common_images']} images solved by none of its "
                   f"{len(g['runs'])} runs ({html.interval(u['unsolved_fraction'], u['ci95'])})"
                   + (f": {listed}" if ids else ""))
      if u["not_in_every_run"]:
        lines.append(f"  {len(u['not_in_every_run'])} images missing from some run (skipped there) not counted")
    if "export" in g:
      e = g["export"]
      kw = "".join(f",{k}={v}" for k, v in e["get_dataset_kwargs"].items())
      lines.append(f"  export ({e['num_images']} images solved by <= {e['max_solved']} runs): "
                   f"data={e['dataset']}{kw}")
  for r in out["runs"]:
    if (r.get("held_out") or {}).get("budgets"):
      lines += ["", study_report.held_out_markdown(r["held_out"], f"{r['label']} on {r['dataset']}: zoom without "
                                                   "an oracle", budgets=(1, 2, 3, 5, 10, 20, 36))]
  return "\n".join(lines)


def run(config: ml_collections.ConfigDict, workdir: str) -> Dict[str, Any]:
  """The job: process 0 studies the runs (`study`) and prints the summary; other processes do nothing."""
  import jax  # pylint: disable=g-import-not-at-top
  config_lib.check_job(config, workdir)  # What zoomjax.main checks, for calls from Python too.
  if jax.process_index() != 0:  # Host-side analysis of files: one process does it.
    return {}
  out = study(config, workdir)
  print(summary_text(out))
  print(f"study: {os.path.abspath(os.path.join(workdir, 'study.html'))}")
  return out
