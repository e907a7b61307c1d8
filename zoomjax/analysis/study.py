"""Cross-run statistics of the study (docs/study.md §2.2-§2.3): many finished sweeps compared, pure NumPy over
their records.

  group_sweeps      runs grouped by (dataset, grid): only runs over the same images are compared image by image
  run_labels        one label per run (its model; the workdir's name added where two runs of a group share one)
  analyse_run       Table 1 of one run from its records (1-crop, greedy top-k, upper bound, with 95 % intervals),
                    its top-k anchor counts, accuracy vs scale and disentangling, plus per-image solved flags
  centre_share      the centre anchor's share of the top-k picks (26.65 % over the paper's 42 runs)
  anchor_summary    top-k anchor counts summed over runs, per anchor grid size
  solved_counts     per image of a group, how many of its runs solve it (the ImageNet-Hard construction)
  unsolved_summary  the images no run of a group solves (paper: 0.39 % of IN+ReaL), with an interval
  paired_runs       two runs on the same images compared image by image: paired bootstrap and McNemar's test

The study job (`zoomjax.jobs.study`) reads the workdirs (`zoomjax.analysis.sweep_results`), calls these and
writes the files; nothing here writes anything.
"""
import os
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from zoomjax import zoom
from zoomjax.analysis import aggregators
from zoomjax.analysis import metrics as analyses
from zoomjax.analysis import paired
from zoomjax.analysis import paper_numbers
from zoomjax.analysis import sweep_results
from zoomjax.errors import UserError
from zoomjax.runtime import atomic
from zoomjax.runtime import console

__all__ = ["PAPER_CENTRE_SHARE", "MIXED", "HEADLINE", "grid_dict", "grid_text", "group_sweeps", "run_labels",
           "analyse_run", "centre_share", "anchor_summary", "solved_counts", "unsolved_summary", "paired_runs"]

# Over 7 datasets x 6 models the centre anchor (1, 1) is 26.65 % of the top-36 transforms (docs/study.md §2.3).
PAPER_CENTRE_SHARE = 26.65
MIXED = ("group", "refuse")
HEADLINE = ("one_crop_accuracy", "top_k_accuracy", "upper_bound_accuracy")


def grid_dict(grid: sweep_results.Grid) -> Dict[str, Any]:
  """(scales, anchors, crop) as study.json stores it."""
  return {"scales": list(grid[0]), "anchors": grid[1], "crop": grid[2]}


def grid_text(grid: sweep_results.Grid) -> str:
  """'paper x 3x3', '64/224/256 x 3x3 crop 192': a grid as a person reads it."""
  scales, anchors, crop = grid
  s = "paper" if tuple(scales) == zoom.PAPER_SCALES else "/".join(map(str, scales))
  return f"{s} x {anchors}x{anchors}" + ("" if crop == 224 else f" crop {crop}")


def _short_dataset(name: str) -> str:
  """'folder:/long/path/imagenet-val-100' -> 'folder:imagenet-val-100' (study.json keeps the full name)."""
  if name.startswith("folder:"):
    return "folder:" + (os.path.basename(os.path.normpath(name[len("folder:"):])) or name[len("folder:"):])
  return name


def group_sweeps(sweeps: Sequence[sweep_results.Sweep], mixed: str = "group") -> List[Dict[str, Any]]:
  """Groups of comparable runs: same dataset (fingerprint of ids and labels) and grid, in first-seen order.

  Each group: datasets, dataset, name (shown), key (file-name-safe, unique), grid, runs (indices into `sweeps`),
  num_images, fingerprint, paper_dataset. Refuses (naming both workdirs) two runs of one dataset name over
  different images or labels; with mixed='refuse' also any run of another dataset or grid than the first run's.
  """
  if mixed not in MIXED:
    raise UserError(f"config.mixed must be one of {MIXED}, got {mixed!r}")
  by_name: Dict[str, sweep_results.Sweep] = {}
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
            f"{s.workdir} is of another {what} ({s.dataset.get('name')}, grid {grid_text(s.grid)}) than "
            f"{first.workdir} ({first.dataset.get('name')}, grid {grid_text(first.grid)}); study them apart "
            "or set mixed=group")
      groups[key] = {"datasets": [], "grid": grid_dict(s.grid), "runs": [],
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
      shown += f" · {grid_text(tuple((tuple(g['grid']['scales']), g['grid']['anchors'], g['grid']['crop'])))}"
    g["name"] = shown
  used = set()
  for g in out:
    key = base = atomic.slug(g["name"], max_len=80)
    k = 2
    while key in used:
      key, k = f"{base}_{k}", k + 1
    used.add(key)
    g["key"] = key
  return out


def run_labels(sweeps: Sequence[sweep_results.Sweep], groups: Sequence[Dict[str, Any]]) -> List[str]:
  """One label per run (its model); a label two runs of one group share gets the workdir's name appended."""
  labels = [s.label for s in sweeps]
  for g in groups:
    names = [labels[i] for i in g["runs"]]
    for i in g["runs"]:
      if names.count(labels[i]) > 1:
        labels[i] = f"{sweeps[i].label} [{os.path.basename(sweeps[i].workdir)}]"
  return labels


def _cover(sweep: sweep_results.Sweep, C: np.ndarray, transforms, names: List[str], tie: str) -> Tuple[List[int], str]:
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


def analyse_run(sweep: sweep_results.Sweep, *, top_k: int = 36, tie: str = "", draws: int = 1000,
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
      "grid": grid_dict(sweep.grid), "num_images": n, "num_views": int(C.shape[1]),
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
  if "held_out" in sweep.metrics:  # The sweep's held-out view selection (zoomjax.analysis.selection), if any.
    row["held_out"] = sweep.metrics["held_out"]
  # Every test-time aggregator: the sweep's own table, or computed from its records (older sweeps' metrics).
  row["aggregators"] = sweep.metrics.get("aggregators") or aggregators.aggregator_table(
      sweep.records(), rho=float(sweep.config.get("rho", aggregators.TPT_RHO)), crop=crop, seed=seed)
  per_image = {"ids": np.asarray([str(i) for i in arr["ids"]]), "solved": analyses.solved(C),
               "one_crop": C[:, names.index(analyses.ONE_CROP_VIEW)] if has_one else None}
  return analyses.nan_to_none(row), per_image


def paired_runs(per_image: Sequence[Dict[str, np.ndarray]], labels: Sequence[str], *, draws: int = 2000,
                seed: int = 0) -> List[Dict[str, Any]]:
  """Every run of a group against its first run, image by image over the images both recorded (an image one
  run skipped is left out and counted): the 1-crop and the upper bound (solved by some view), each as a
  PairedResult dict with "a", "b", "what" and "images_left_out". Runs whose recorded images have nothing in
  common cannot be paired: refused naming both."""
  out = []
  base, base_label = per_image[0], labels[0]
  for img, lab in zip(per_image[1:], labels[1:]):
    common = sorted(set(map(str, base["ids"])) & set(map(str, img["ids"])))
    if not common:
      paired.same_images(base["ids"], img["ids"], base_label, lab)  # Raises, naming both runs.
    pos_a = {str(i): j for j, i in enumerate(base["ids"])}
    pos_b = {str(i): j for j, i in enumerate(img["ids"])}
    ia = np.array([pos_a[i] for i in common], np.int64)
    ib = np.array([pos_b[i] for i in common], np.int64)
    left_out = len(base["ids"]) + len(img["ids"]) - 2 * len(common)
    for what, key in (("1-crop", "one_crop"), ("upper bound", "solved")):
      if base.get(key) is None or img.get(key) is None:
        continue
      r = paired.paired_difference(img[key][ib], base[key][ia], n_boot=draws, seed=seed).as_dict()
      out.append({"a": lab, "b": base_label, "what": what, "images_left_out": left_out, **r})
  return out


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
