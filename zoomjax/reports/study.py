"""The study's tables and page: table1.csv, table1.md, study.html with its figures under `<workdir>/study/`.

Everything is drawn from the dict the study job writes to study.json (fractions; rendered as percent). Cells of
Table 1 read "72.0 % [63–80]": the value and its 95 % bootstrap interval over images. The page is static HTML
with relative links, so a study workdir can be copied and opened anywhere; a few lines of script flag figures
that fail to load (visibly and on the console).
"""
import csv
import datetime
import html
import io
import os
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
from matplotlib.figure import Figure

from zoomjax.analysis import metrics as analyses
from zoomjax.runtime import atomic
from zoomjax.analysis import paper_numbers as P
from zoomjax.reports import figures as plots
from zoomjax.reports import sweep as report
from zoomjax.analysis import selection

ASSETS = "study"
METRICS = (("one_crop_accuracy", "1-crop (LOC:1_1_Size:256)", P.ONE_CROP),
           ("top_k_accuracy", "greedy top-{k} upper bound", P.TOP36),
           ("upper_bound_accuracy", "upper bound, all views", P.UPPER_BOUND))
# study.json's keys -> paper_numbers.lookup's.
PAPER_KEYS = {"one_crop_accuracy": "one_crop_accuracy", "top_k_accuracy": "top36_accuracy",
              "upper_bound_accuracy": "upper_bound_accuracy"}

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;max-width:1180px;color:#222}
h1{font-size:22px} h2{font-size:18px;margin-top:28px;border-bottom:1px solid #ddd;padding-bottom:4px}
h3{font-size:15px;margin:14px 0 4px} table{border-collapse:collapse;margin:8px 0}
td,th{border:1px solid #ccc;padding:3px 8px;text-align:right;vertical-align:top} th{background:#f3f3f3}
td.l,th.l{text-align:left} .muted{color:#777;font-size:13px} .paper{color:#777;font-size:12px}
.figs img{max-width:560px;margin:4px} .figs img.wide{max-width:1100px} code{background:#f6f6f6;padding:1px 4px}
.missing{outline:3px solid #b42318}
"""

_SCRIPT = report.image_check_script("study")


def cell(value: Optional[float], ci: Optional[Sequence[float]] = None) -> str:
  """0.72, [0.63, 0.80] -> '72.0 % [63–80]' (analyses.pct_interval); '–' for a missing value."""
  return analyses.pct_interval(value, ci)


def _esc(s) -> str:
  return html.escape(str(s))


def _models(study: Dict[str, Any]) -> List[str]:
  return list(dict.fromkeys(r["label"] for r in study["runs"]))


def _lookup(study: Dict[str, Any]) -> Dict[tuple, Dict[str, Any]]:
  return {(r["label"], r["group"]): r for r in study["runs"]}


def _metric_title(title: str, k: int) -> str:
  return title.format(k=k)


def table1_markdown(study: Dict[str, Any], with_paper: bool = True) -> str:
  """Table 1 of the study as Markdown: one table per metric, models x datasets, the paper's value beside ours."""
  models, groups, by = _models(study), study["groups"], _lookup(study)
  k = study["top_k"]
  out = []
  for key, title, _ in METRICS:
    out.append(f"**{_metric_title(title, k)}** (95 % bootstrap interval; paper in parentheses)\n")
    out.append("| model | " + " | ".join(g["name"] + (f" ({g['paper_dataset']})" if g.get("paper_dataset") else "")
                                           for g in groups) + " |")
    out.append("|---" * (len(groups) + 1) + "|")
    for m in models:
      cells = []
      for g in groups:
        r = by.get((m, g["key"]))
        if r is None:
          cells.append("")
          continue
        c = cell(r[key], (r.get("ci95") or {}).get(key))
        paper = (r.get("paper") or {}).get(PAPER_KEYS[key])
        if paper is not None and (key != "top_k_accuracy" or k == 36):
          c += f" ({paper:.2f})"
        cells.append(c)
      out.append(f"| {m} | " + " | ".join(cells) + " |")
    out.append("")
  if with_paper:
    out.append(paper_table1_markdown())
  return "\n".join(out)


def paper_table1_markdown() -> str:
  """The paper's Table 1 (final version, percent): 1-crop, top-36 and upper bound (N = 324)."""
  out = ["**The paper's Table 1** (full datasets, paper.md §2.2)\n"]
  for (_, title, table), head in zip(METRICS, ("(a) 1-crop", "(b) top-36", "(c) upper bound, N = 324")):
    out.append(f"{head}\n")
    out.append("| model | " + " | ".join(P.DATASETS) + " |")
    out.append("|---" * (len(P.DATASETS) + 1) + "|")
    for model, row in table.items():
      out.append(f"| {P.DISPLAY_NAMES.get(model, model)} | "
                 + " | ".join(f"{row[d]:.2f}" if d in row else "" for d in P.DATASETS) + " |")
    out.append("")
  return "\n".join(out)


def table1_csv(study: Dict[str, Any]) -> str:
  """One row per run: Table 1's numbers in percent with interval bounds, and the paper's."""
  buf = io.StringIO()
  w = csv.writer(buf, lineterminator="\n")
  head = ["model", "label", "dataset", "group", "grid_scales", "anchors", "workdir", "num_images", "paper_dataset"]
  for key, _, _ in METRICS:
    short = key.replace("_accuracy", "")
    head += [f"{short}_pct", f"{short}_lo_pct", f"{short}_hi_pct"]
  head += ["top_k", "min_cover_size"] + [f"paper_{PAPER_KEYS[k]}_pct" for k, _, _ in METRICS]
  head += ["held_out_best_k", "held_out_best_method", "held_out_best_pct", "held_out_best_lo_pct",
           "held_out_best_hi_pct"]
  w.writerow(head)
  pct = lambda v: "" if v is None else f"{100 * v:.4f}"  # noqa: E731
  for r in study["runs"]:
    row = [r["model"], r["label"], r["dataset"], r["group"], "/".join(map(str, r["grid"]["scales"])),
           r["grid"]["anchors"], r["workdir"], r["num_images"], r.get("paper_dataset") or ""]
    for key, _, _ in METRICS:
      ci = (r.get("ci95") or {}).get(key) or [None, None]
      row += [pct(r[key]), pct(ci[0]), pct(ci[1])]
    row += [r["top_k"], r["min_cover_size"]]
    row += ["" if (r.get("paper") or {}).get(PAPER_KEYS[k]) is None else f"{r['paper'][PAPER_KEYS[k]]:.2f}"
            for k, _, _ in METRICS]
    best = (r.get("held_out") or {}).get("best_fixed") or {}
    ci = best.get("ci95") or [None, None]
    row += [best.get("k", ""), best.get("method", ""), pct(best.get("accuracy")), pct(ci[0]), pct(ci[1])]
    w.writerow(row)
  return buf.getvalue()


def write_tables(workdir: str, study: Dict[str, Any]) -> None:
  atomic.write_text(os.path.join(workdir, "table1.csv"), table1_csv(study))
  atomic.write_text(os.path.join(workdir, "table1.md"), table1_markdown(study) + "\n")


# ------------------------------------------------------------------------------------------------ figures


def _save(fig, path: str) -> str:
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  return path


def accuracy_vs_scale_overlay(curves: Sequence[tuple], path: str, *, title: str, one_crop_scale: int = 256) -> str:
  """curves [(label, accuracy_vs_scale dict)]: best-of-anchors (left) and centre anchor (right), a line per model."""
  fig = Figure(figsize=(10, 3.8))
  axes = fig.subplots(1, 2, sharey=True)
  fig.suptitle(title, fontsize=10)
  for i, (label, avs) in enumerate(curves):
    s = np.asarray(avs["scales"])
    for ax, key in zip(axes, ("best_of_anchors", "centre")):
      y = np.asarray([np.nan if v is None else v for v in avs[key]], float)
      ax.plot(s, 100 * y, "o-", ms=3, color=f"C{i % 10}", label=label)
  for ax, sub in zip(axes, ("best of the anchors at S", "centre anchor only")):
    ax.set_title(sub, fontsize=9)
    ax.axvline(one_crop_scale, ls="--", color="grey", lw=1)
    ax.set_xlabel("scale S (shorter side, px)")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
  axes[0].set_ylabel("accuracy (%)")
  axes[0].legend(fontsize=7)
  return _save(fig, path)


def one_crop_vs_upper_bound(points: Sequence[Dict[str, Any]], path: str) -> str:
  """Per run (1-crop, upper bound) with 95 % intervals, a colour per dataset; the paper's Table 1 in grey."""
  fig = Figure(figsize=(6, 5))
  ax = fig.subplots()
  px, py = [], []
  for model, row in P.ONE_CROP.items():
    for d, v in row.items():
      u = P.UPPER_BOUND.get(model, {}).get(d)
      if u is not None:
        px.append(v)
        py.append(u)
  ax.scatter(px, py, s=18, facecolors="none", edgecolors="#999", label="paper, Table 1 (a) vs (c)")
  groups = list(dict.fromkeys(p["group"] for p in points))
  for p in points:
    if p["x"] is None:
      continue
    c = f"C{groups.index(p['group']) % 10}"
    xe = None if not p["xci"] else [[100 * (p["x"] - p["xci"][0])], [100 * (p["xci"][1] - p["x"])]]
    ye = None if not p["yci"] else [[100 * (p["y"] - p["yci"][0])], [100 * (p["yci"][1] - p["y"])]]
    ax.errorbar([100 * p["x"]], [100 * p["y"]], xerr=xe, yerr=ye, fmt="o", ms=5, color=c, lw=0.8, capsize=2)
    ax.annotate(p["label"], (100 * p["x"], 100 * p["y"]), fontsize=7, xytext=(3, 3), textcoords="offset points")
  for g in groups:
    ax.plot([], [], "o", color=f"C{groups.index(g) % 10}", label=g)
  ax.plot([0, 100], [0, 100], ":", color="grey", lw=1)
  ax.set_xlim(0, 100)
  ax.set_ylim(0, 101)
  ax.set_xlabel("1-crop accuracy (%)")
  ax.set_ylabel("upper bound, all views (%)")
  ax.grid(alpha=0.3)
  ax.legend(fontsize=7, loc="lower right")
  ax.set_title("zoom's headroom: 1-crop vs upper bound", fontsize=9)
  return _save(fig, path)


def held_out_curves(curves: Sequence[tuple], path: str, *, title: str) -> str:
  """curves [(label, metrics.json "held_out")]: accuracy vs views per image, a colour per run; dotted: the in-sample
  oracle, dashed: held-out views' upper bound, solid: held-out views + the most confident one (no oracle)."""
  fig = Figure(figsize=(6.5, 3.8))
  ax = fig.subplots()
  styles = (("oracle_in_sample", ":"), ("held_out_upper_bound", "--"), ("held_out_max_confidence", "-"))
  for i, (label, h) in enumerate(curves):
    ks = h["budgets"]
    for c, style in styles:
      y = np.asarray([np.nan if v is None else v for v in h["curves"][c]["accuracy"]], float)
      ax.plot(ks, 100 * y, style, color=f"C{i % 10}", lw=1.3, label=label if c == "held_out_max_confidence" else None)
  for c, style in styles:
    ax.plot([], [], style, color="grey", label=selection.CURVE_LABELS[c])
  ax.set_xlabel("views per image (k)")
  ax.set_ylabel("accuracy (%)")
  ax.set_ylim(0, 100)
  ax.grid(alpha=0.3)
  ax.legend(fontsize=6, loc="lower right")
  ax.set_title(f"{title}: zoom without an oracle", fontsize=9)
  return _save(fig, path)


# --------------------------------------------------------------------------------------------------- page


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], left_cols: int = 1) -> str:
  th = "".join(f'<th class="{"l" if i < left_cols else ""}">{_esc(h)}</th>' for i, h in enumerate(header))
  body = "".join("<tr>" + "".join(f'<td class="{"l" if i < left_cols else ""}">{c}</td>' for i, c in enumerate(row))
                 + "</tr>" for row in rows)
  return f"<table><tr>{th}</tr>{body}</table>"


def _pct(v: Optional[float]) -> str:
  return "–" if v is None else f"{100 * v:.2f}"


def write_study_report(workdir: str, study: Dict[str, Any]) -> str:
  """Writes `<workdir>/study.html` and its figures; returns the page's path."""
  assets = os.path.join(workdir, ASSETS)
  os.makedirs(assets, exist_ok=True)
  rel = lambda p: os.path.relpath(p, workdir).replace(os.sep, "/")  # noqa: E731
  runs, groups, k = study["runs"], study["groups"], study["top_k"]
  models, by = _models(study), _lookup(study)
  when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
  parts = ["<h1>Zoom study</h1>",
           f'<p class="muted">{len(runs)} runs ({len(models)} models) over {len(groups)} (dataset, grid) groups · '
           f"bootstrap {study['bootstrap']['draws']} draws, seed {study['bootstrap']['seed']} · written {when}</p>"]
  if study.get("command"):
    parts.append(f'<p class="muted">Command: <code>{_esc(study["command"])}</code></p>')

  # Table 1.
  parts.append("<h2>Table 1: ours next to the paper's</h2>"
               '<p class="muted">Each cell: accuracy [95 % bootstrap interval over images]; grey: the paper\'s number '
               "for the model on the full paper dataset (a reference, not a target, on a subset).</p>")
  for key, title, _ in METRICS:
    rows = []
    for m in models:
      cells = [_esc(m)]
      for g in groups:
        r = by.get((m, g["key"]))
        if r is None:
          cells.append("")
          continue
        c = _esc(cell(r[key], (r.get("ci95") or {}).get(key)))
        paper = (r.get("paper") or {}).get(PAPER_KEYS[key])
        if paper is not None and (key != "top_k_accuracy" or k == 36):
          c += f'<div class="paper">paper {paper:.2f}</div>'
        cells.append(c)
      rows.append(cells)
    head = ["model"] + [g["name"] + (f" ({g['paper_dataset']})" if g.get("paper_dataset") else "") for g in groups]
    parts.append(f"<h3>{_esc(_metric_title(title, k))}</h3>" + _table(head, rows))
  ptab = []
  for (_, title, table), head in zip(METRICS, ("(a) 1-crop", "(b) top-36", "(c) upper bound, N = 324")):
    rows = [[_esc(P.DISPLAY_NAMES.get(m, m))] + [f"{row[d]:.2f}" if d in row else "" for d in P.DATASETS]
            for m, row in table.items()]
    ptab.append(f"<h3>{head}</h3>" + _table(["model"] + list(P.DATASETS), rows))
  parts.append("<h2>The paper's Table 1 (%)</h2>" + "".join(ptab))

  # Anchors of the top-k views.
  figs = []
  for e in study["anchors"]:
    n_runs = len(e["runs"])
    p = plots.anchor_heatmap(e["counts"], os.path.join(assets, f"top_k_anchors_{e['anchors']}.png"),
                             title=f"top-{k} anchors, {n_runs} runs", percent=False, deltas=False, cmap="magma")
    figs.append(p)
    share = "–" if e["centre_share"] is None else f"{100 * e['centre_share']:.2f} %"
    mean = "–" if e["mean_per_run_centre_share"] is None else f"{100 * e['mean_per_run_centre_share']:.2f} %"
    rows = [[_esc(runs[i]["label"]), _esc(next(g["name"] for g in groups if g["key"] == runs[i]["group"])),
             "–" if s is None else f"{100 * s:.1f}"] for i, s in zip(e["runs"], e["per_run_centre_share"])]
    parts.append(
        f"<h2>Where the top-{k} views look ({e['anchors']}x{e['anchors']} anchors)</h2>"
        f'<div class="figs"><img src="{rel(p)}" alt="top-k anchors"></div>'
        f"<p>Centre anchor share of the top-{k} views, summed over {n_runs} runs: <b>{share}</b> "
        f"(mean of the runs' shares {mean}; paper [NB-T36], 42 runs: {100 * e['paper_centre_share']:.2f} %; uniform: "
        f"{100 * e['uniform_share']:.1f} %).</p>" + _table(["run", "dataset", "centre share (%)"], rows, 2))

  # Accuracy vs scale, one figure per group.
  parts.append("<h2>Accuracy vs scale</h2>")
  figs = []
  for g in groups:
    curves = [(runs[i]["label"], runs[i]["accuracy_vs_scale"]) for i in g["runs"]]
    figs.append(accuracy_vs_scale_overlay(curves, os.path.join(assets, f"accuracy_vs_scale_{g['key']}.png"),
                                          title=g["name"]))
  parts.append('<div class="figs">'
               + "".join(f'<img class="wide" src="{rel(p)}" alt="accuracy vs scale">' for p in figs)
               + "</div>")

  # Scatter.
  pts = [{"label": r["label"], "group": next(g["name"] for g in groups if g["key"] == r["group"]),
          "x": r["one_crop_accuracy"], "y": r["upper_bound_accuracy"],
          "xci": (r.get("ci95") or {}).get("one_crop_accuracy"),
          "yci": (r.get("ci95") or {}).get("upper_bound_accuracy")} for r in runs]
  sc = one_crop_vs_upper_bound(pts, os.path.join(assets, "one_crop_vs_upper_bound.png"))
  parts.append(f'<h2>1-crop vs upper bound</h2><div class="figs"><img src="{rel(sc)}" alt="scatter"></div>')

  # Disentangling.
  cols = ["ub_in", "ub_out", "ub_224", "excl_in", "excl_out", "excl_224"]
  rows = []
  for r in runs:
    d = r.get("disentangling") or {}
    g = next(g["name"] for g in groups if g["key"] == r["group"])
    rows.append([_esc(r["label"]), _esc(g), "ours"] + [_pct(d.get(c)) for c in cols])
    pd = P.DISENTANGLING.get(r["model"], {}).get(r.get("paper_dataset") or "", {})
    if pd:
      rows.append([_esc(r["label"]), _esc(r["paper_dataset"]), "paper"] + [f"{pd[c]:.2f}" for c in cols])
  parts.append("<h2>Zoom-in vs zoom-out vs zoom-224 (%)</h2>"
               + _table(["model", "dataset", "", "UB in", "UB out", "UB 224", "excl. in", "excl. out", "excl. 224"],
                        rows, 3)
               + '<p class="muted">UB: union over the group\'s views in the run\'s own min-cover; exclusive: solved by '
               "the group and by neither other group (own min-cover).</p>")

  # Unsolved images and the export.
  parts.append("<h2>Images no run solves</h2>")
  for g in groups:
    u = g["unsolved"]
    ids = u["unsolved_ids"]
    frac = cell(u["unsolved_fraction"], u.get("ci95"))
    hist = ", ".join(f"{j}: {c}" for j, c in enumerate(u["images_solved_by_exactly"]))
    listed = ", ".join(_esc(i) for i in ids[:60])
    if len(ids) > 60:
      listed += f" … and {len(ids) - 60} more (study.json)"
    parts.append(
        f"<h3>{_esc(g['name'])}: {len(ids)} of {u['num_common_images']} images ({_esc(frac)}) over {len(g['runs'])} "
        f"runs</h3><p class=\"muted\">Images by number of runs solving them: {_esc(hist)}. Paper: 0.39 % of IN+ReaL "
        "unsolved by its 5 IN-trained models."
        + (f" {len(u['not_in_every_run'])} images are missing from some run (skipped there) and not counted."
           if u["not_in_every_run"] else "") + f"</p><p>{listed or 'None.'}</p>")
    if "export" in g:
      e = g["export"]
      kw = "".join(f",{a}={b}" for a, b in e["get_dataset_kwargs"].items())
      parts.append(f"<p>Export: <b>{e['num_images']}</b> images solved by at most {e['max_solved']} runs in "
                   f"<code>{_esc(rel(e['path']))}</code> (labels.csv, solved_by_run.csv); sweep it with "
                   f"<code>--config configs/zoom_sweep.py:data={_esc(e['dataset'])}{_esc(kw)}</code>.</p>")

  # Held-out selection (zoomjax.analysis.selection), when the sweeps have it.
  held = [r for r in runs if (r.get("held_out") or {}).get("budgets")]
  if held:
    parts.append("<h2>Zoom without an oracle (held-out view selection)</h2>"
                 '<p class="muted">Views chosen on the other folds of images, evaluated on the held-out fold '
                 "(zoomjax.analysis.selection; every curve and interval in study.json).</p>")
    figs = []
    for g in groups:
      curves = [(runs[i]["label"], runs[i]["held_out"]) for i in g["runs"] if runs[i] in held]
      if curves:
        figs.append(held_out_curves(curves, os.path.join(assets, f"held_out_{g['key']}.png"), title=g["name"]))
    parts.append('<div class="figs">' + "".join(f'<img src="{rel(p)}" alt="held-out curves">' for p in figs)
                 + "</div>")
    rows = []
    for r in held:
      h, best = r["held_out"], r["held_out"].get("best_fixed") or {}
      last = len(h["budgets"]) - 1
      rows.append([_esc(r["label"]), _esc(next(g["name"] for g in groups if g["key"] == r["group"])),
                   str(best.get("k", "–")), _esc(selection.CURVE_LABELS.get(best.get("method"), "–")),
                   _esc(cell(best.get("accuracy"), best.get("ci95")))]
                  + [_esc(cell(h["curves"][c]["accuracy"][last], h["curves"][c]["ci95"][last]))
                     for c in selection.CURVES])
    parts.append(_table(["model", "dataset", "best k", "best method (no oracle)", "held-out accuracy"]
                        + [f"{selection.CURVE_LABELS[c]}, k = max" for c in selection.CURVES], rows, 2))

  # Explorers.
  links = [r for r in runs if r.get("explorer")]
  if links:
    parts.append("<h2>Image explorers</h2><ul>" + "".join(
        f'<li><a href="{_esc(rel(r["explorer"]))}">{_esc(r["label"])} on '
        f"{_esc(next(g['name'] for g in groups if g['key'] == r['group']))}</a></li>" for r in links) + "</ul>")

  # Runs.
  rows = [[_esc(r["label"]), _esc(r["dataset"]), _esc(r["workdir"]), str(r["num_images"]), str(r["num_views"]),
           str(r["min_cover_size"]), _esc(r["min_cover_from"]), str(r["skipped_files"])] for r in runs]
  parts.append("<h2>Runs</h2>" + _table(["model", "dataset", "workdir", "images", "views", "min-cover",
                                         "cover from", "skipped"], rows, 3))
  page = (f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Zoom study</title>"
          f"<style>{_CSS}</style></head><body>{''.join(parts)}<script>{_SCRIPT}</script></body></html>")
  path = os.path.join(workdir, "study.html")
  atomic.write_text(path, page)
  return path

