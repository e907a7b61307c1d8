"""The study's tables and page: table1.csv, table1.md, study.html with its figures under `<workdir>/study/`.

Everything is drawn from the dict the study job writes to study.json (fractions; rendered as percent). Cells of
Table 1 read "72.0 % [63.0–80.0]" (`zoomjax.reports.html.interval`): the value and its 95 % bootstrap interval
over images. The page is static HTML with relative links, so a study workdir can be copied and opened anywhere;
a few lines of script flag figures that fail to load (visibly and on the console).
"""
import datetime
import os
from typing import Any, Dict, List, Optional, Sequence

from zoomjax.analysis import paper_numbers as P
from zoomjax.analysis import selection
from zoomjax.reports import figures as plots
from zoomjax.reports import html
from zoomjax.reports import sweep as sweep_report
from zoomjax.runtime import atomic

__all__ = ["ASSETS", "METRICS", "PAPER_KEYS", "table1_markdown", "paper_table1_markdown", "table1_csv",
           "held_out_markdown", "write_tables", "write_study_report"]

ASSETS = "study"
METRICS = (("one_crop_accuracy", "1-crop (LOC:1_1_Size:256)", P.ONE_CROP),
           ("top_k_accuracy", "greedy top-{k} upper bound", P.TOP36),
           ("upper_bound_accuracy", "upper bound, all views", P.UPPER_BOUND))
# study.json's keys -> paper_numbers.lookup's.
PAPER_KEYS = {"one_crop_accuracy": "one_crop_accuracy", "top_k_accuracy": "top36_accuracy",
              "upper_bound_accuracy": "upper_bound_accuracy"}
PAPER_TABLE1_HEADS = ("(a) 1-crop", "(b) top-36", "(c) upper bound, N = 324")


def _models(study: Dict[str, Any]) -> List[str]:
  return list(dict.fromkeys(r["label"] for r in study["runs"]))


def _lookup(study: Dict[str, Any]) -> Dict[tuple, Dict[str, Any]]:
  return {(r["label"], r["group"]): r for r in study["runs"]}


def _group_name(study: Dict[str, Any], key: str) -> str:
  return next(g["name"] for g in study["groups"] if g["key"] == key)


def _group_head(g: Dict[str, Any]) -> str:
  return g["name"] + (f" ({g['paper_dataset']})" if g.get("paper_dataset") else "")


def _table1_cells(study: Dict[str, Any], key: str):
  """Per model, per group: (our interval text, the paper's number or None); None where the run is absent."""
  by, k = _lookup(study), study["top_k"]
  for m in _models(study):
    cells = []
    for g in study["groups"]:
      r = by.get((m, g["key"]))
      if r is None:
        cells.append(None)
        continue
      paper = (r.get("paper") or {}).get(PAPER_KEYS[key])
      if key == "top_k_accuracy" and k != 36:  # The paper's top-36 is no reference for another k.
        paper = None
      cells.append((html.interval(r[key], (r.get("ci95") or {}).get(key)), paper))
    yield m, cells


def table1_markdown(study: Dict[str, Any], with_paper: bool = True) -> str:
  """Table 1 of the study as Markdown: one table per metric, models x datasets, the paper's value beside ours."""
  out = []
  for key, title, _ in METRICS:
    out.append(f"**{title.format(k=study['top_k'])}** (95 % bootstrap interval; paper in parentheses)\n")
    rows = [[m] + ["" if c is None else c[0] + ("" if c[1] is None else f" ({html.published(c[1], unit=False)})")
                   for c in cells] for m, cells in _table1_cells(study, key)]
    out.append(html.markdown_table(["model"] + [_group_head(g) for g in study["groups"]], rows))
    out.append("")
  if with_paper:
    out.append(paper_table1_markdown())
  return "\n".join(out)


def _paper_table1_rows(table: Dict[str, Dict[str, float]]) -> List[List[str]]:
  return [[P.DISPLAY_NAMES.get(m, m)] + [html.published(row[d], unit=False) if d in row else "" for d in P.DATASETS]
          for m, row in table.items()]


def paper_table1_markdown() -> str:
  """The paper's Table 1 (final version, percent): 1-crop, top-36 and upper bound (N = 324)."""
  out = ["**The paper's Table 1** (full datasets, docs/study.md §2.2)\n"]
  for (_, _, table), head in zip(METRICS, PAPER_TABLE1_HEADS):
    out += [f"{head}\n", html.markdown_table(["model"] + list(P.DATASETS), _paper_table1_rows(table)), ""]
  return "\n".join(out)


def table1_csv(study: Dict[str, Any]) -> str:
  """One row per run: Table 1's numbers in percent with interval bounds, and the paper's."""
  head = ["model", "label", "dataset", "group", "grid_scales", "anchors", "workdir", "num_images", "paper_dataset"]
  for key, _, _ in METRICS:
    short = key.replace("_accuracy", "")
    head += [f"{short}_pct", f"{short}_lo_pct", f"{short}_hi_pct"]
  head += ["top_k", "min_cover_size"] + [f"paper_{PAPER_KEYS[k]}_pct" for k, _, _ in METRICS]
  head += ["held_out_best_k", "held_out_best_method", "held_out_best_pct", "held_out_best_lo_pct",
           "held_out_best_hi_pct"]
  pct = lambda v: None if v is None else f"{100 * v:.4f}"  # noqa: E731  (a file for programs: full precision)
  rows = []
  for r in study["runs"]:
    row = [r["model"], r["label"], r["dataset"], r["group"], "/".join(map(str, r["grid"]["scales"])),
           r["grid"]["anchors"], r["workdir"], r["num_images"], r.get("paper_dataset")]
    for key, _, _ in METRICS:
      ci = (r.get("ci95") or {}).get(key) or [None, None]
      row += [pct(r[key]), pct(ci[0]), pct(ci[1])]
    row += [r["top_k"], r["min_cover_size"]]
    row += [(r.get("paper") or {}).get(PAPER_KEYS[k]) for k, _, _ in METRICS]
    best = (r.get("held_out") or {}).get("best_fixed") or {}
    ci = best.get("ci95") or [None, None]
    row += [best.get("k"), best.get("method"), pct(best.get("accuracy")), pct(ci[0]), pct(ci[1])]
    rows.append(row)
  return html.csv_text(head, rows)


def held_out_markdown(held_out: Dict, title: str = "", budgets: Optional[Sequence[int]] = None) -> str:
  """metrics.json's "held_out" (`zoomjax.analysis.selection.record_held_out`) as Markdown: the curves at `budgets`
  (default all; the last budget always), the best fixed set and per-image confidence selection."""
  lines = [f"**{title}**", ""] if title else []
  curves = held_out.get("curves") or {}
  if curves:
    rows = [[str(k)] + [html.interval(curves[c]["accuracy"][j], curves[c]["ci95"][j]) for c in selection.CURVES]
            for j, k in enumerate(held_out["budgets"])
            if not budgets or k in budgets or k == held_out["budgets"][-1]]
    lines += [html.markdown_table(["views per image"] + [selection.CURVE_LABELS[c] for c in selection.CURVES], rows),
              "", f"{held_out['num_images']} images, {held_out['n_folds']} folds (seed {held_out['seed']}), "
              f"{held_out['num_candidate_views']} candidate views, greedy ties by the {held_out['tie_order']} "
              f"order; 95 % bootstrap intervals over images. Mean softmax: {held_out['mean_softmax']}."]
  best = held_out.get("best_fixed")
  if best:
    lines += ["", f"Best fixed set without an oracle: k = {best['k']} by {selection.CURVE_LABELS[best['method']]}, "
              f"held-out {html.interval(best['accuracy'], best['ci95'])}: "
              + ", ".join(f"`{v}`" for v in best["views"])]
  conf = held_out.get("confidence_selection") or {}
  if conf:
    rows = [[m, html.interval(v["accuracy"], v["ci95"]),
             html.interval(v["delta_vs_1crop"], v["delta_ci95"], sign=True) if "delta_vs_1crop" in v else ""]
            for m, v in conf.items()]
    lines += ["", html.markdown_table([f"per-image selection over all {held_out.get('confidence_selection_views')} "
                                       "views", "accuracy", "vs 1-crop"], rows)]
  return "\n".join(lines)


def write_tables(workdir: str, study: Dict[str, Any]) -> None:
  """table1.csv and table1.md into the study's workdir (atomic writes)."""
  atomic.write_text(os.path.join(workdir, "table1.csv"), table1_csv(study))
  atomic.write_text(os.path.join(workdir, "table1.md"), table1_markdown(study) + "\n")


# --------------------------------------------------------------------------------------------------- page


def _paper_points() -> List[tuple]:
  """(1-crop, upper bound) of every (model, dataset) of the paper's Table 1, percent."""
  return [(v, P.UPPER_BOUND[m][d]) for m, row in P.ONE_CROP.items() for d, v in row.items()
          if d in P.UPPER_BOUND.get(m, {})]


def write_study_report(workdir: str, study: Dict[str, Any]) -> str:
  """Writes `<workdir>/study.html` and its figures; returns the page's path."""
  assets = os.path.join(workdir, ASSETS)
  os.makedirs(assets, exist_ok=True)
  rel = lambda p: os.path.relpath(p, workdir).replace(os.sep, "/")  # noqa: E731
  esc = html.escape
  runs, groups, k = study["runs"], study["groups"], study["top_k"]
  models = _models(study)
  when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
  parts = ["<h1>Zoom study</h1>",
           f'<p class="muted">{len(runs)} runs ({len(models)} models) over {len(groups)} (dataset, grid) groups · '
           f"bootstrap {study['bootstrap']['draws']} draws, seed {study['bootstrap']['seed']} · written {when}</p>"]
  if study.get("command"):
    parts.append(f'<p class="muted">Command: <code>{esc(study["command"])}</code></p>')

  # Table 1.
  parts.append("<h2>Table 1: ours next to the paper's</h2>"
               '<p class="muted">Each cell: accuracy [95 % bootstrap interval over images]; grey: the paper\'s number '
               "for the model on the full paper dataset (a reference, not a target, on a subset).</p>")
  for key, title, _ in METRICS:
    rows = [[esc(m)] + ["" if c is None else esc(c[0]) + (
        "" if c[1] is None else f'<div class="paper">paper {esc(html.published(c[1]))}</div>') for c in cells]
            for m, cells in _table1_cells(study, key)]
    parts.append(f"<h3>{esc(title.format(k=k))}</h3>"
                 + html.html_table(["model"] + [_group_head(g) for g in groups], rows))
  parts.append("<h2>The paper's Table 1 (%)</h2>" + "".join(
      f"<h3>{head}</h3>" + html.html_table(["model"] + list(P.DATASETS),
                                           [[esc(c) for c in row] for row in _paper_table1_rows(table)])
      for (_, _, table), head in zip(METRICS, PAPER_TABLE1_HEADS)))

  # Anchors of the top-k views.
  for e in study["anchors"]:
    n_runs = len(e["runs"])
    p = plots.anchor_heatmap(e["counts"], os.path.join(assets, f"top_k_anchors_{e['anchors']}.png"),
                             title=f"top-{k} anchors, {n_runs} runs", percent=False, deltas=False, cmap="magma")
    rows = [[esc(runs[i]["label"]), esc(_group_name(study, runs[i]["group"])), html.percent(s, unit="")]
            for i, s in zip(e["runs"], e["per_run_centre_share"])]
    parts.append(
        f"<h2>Where the top-{k} views look ({e['anchors']}x{e['anchors']} anchors)</h2>"
        f'<div class="figs"><img src="{rel(p)}" alt="top-k anchors"></div>'
        f"<p>Centre anchor share of the top-{k} views, summed over {n_runs} runs: "
        f"<b>{esc(html.percent(e['centre_share']))}</b> (mean of the runs' shares "
        f"{esc(html.percent(e['mean_per_run_centre_share']))}; paper (docs/study.md §2.3), 42 runs: "
        f"{esc(html.published(100 * e['paper_centre_share']))}; uniform: {esc(html.percent(e['uniform_share']))})."
        "</p>" + html.html_table(["run", "dataset", "centre share (%)"], rows, left=2))

  # Accuracy vs scale, one figure per group.
  figs = [plots.accuracy_vs_scale_overlay([(runs[i]["label"], runs[i]["accuracy_vs_scale"]) for i in g["runs"]],
                                          os.path.join(assets, f"accuracy_vs_scale_{g['key']}.png"), title=g["name"])
          for g in groups]
  parts.append('<h2>Accuracy vs scale</h2><div class="figs">'
               + "".join(f'<img class="wide" src="{rel(p)}" alt="accuracy vs scale">' for p in figs) + "</div>")

  # Scatter.
  pts = [{"label": r["label"], "group": _group_name(study, r["group"]),
          "x": r["one_crop_accuracy"], "y": r["upper_bound_accuracy"],
          "xci": (r.get("ci95") or {}).get("one_crop_accuracy"),
          "yci": (r.get("ci95") or {}).get("upper_bound_accuracy")} for r in runs]
  sc = plots.one_crop_vs_upper_bound(pts, os.path.join(assets, "one_crop_vs_upper_bound.png"),
                                     paper_points=_paper_points())
  parts.append(f'<h2>1-crop vs upper bound</h2><div class="figs"><img src="{rel(sc)}" alt="scatter"></div>')

  # Disentangling.
  cols = ["ub_in", "ub_out", "ub_224", "excl_in", "excl_out", "excl_224"]
  rows = []
  for r in runs:
    d = r.get("disentangling") or {}
    rows.append([esc(r["label"]), esc(_group_name(study, r["group"])), "ours"]
                + [html.percent(d.get(c), unit="") for c in cols])
    pd = P.DISENTANGLING.get(r["model"], {}).get(r.get("paper_dataset") or "", {})
    if pd:
      rows.append([esc(r["label"]), esc(r["paper_dataset"]), "paper"]
                  + [html.published(pd[c], unit=False) for c in cols])
  parts.append("<h2>Zoom-in vs zoom-out vs zoom-224 (%)</h2>"
               + html.html_table(["model", "dataset", "", "UB in", "UB out", "UB 224", "excl. in", "excl. out",
                                  "excl. 224"], rows, left=3)
               + '<p class="muted">UB: union over the group\'s views in the run\'s own min-cover; exclusive: solved by '
               "the group and by neither other group (own min-cover).</p>")

  # Unsolved images and the export.
  parts.append("<h2>Images no run solves</h2>")
  for g in groups:
    u = g["unsolved"]
    ids = u["unsolved_ids"]
    frac = html.interval(u["unsolved_fraction"], u.get("ci95"))
    hist = ", ".join(f"{j}: {c}" for j, c in enumerate(u["images_solved_by_exactly"]))
    listed = ", ".join(esc(i) for i in ids[:60])
    if len(ids) > 60:
      listed += f" … and {len(ids) - 60} more (study.json)"
    parts.append(
        f"<h3>{esc(g['name'])}: {len(ids)} of {u['num_common_images']} images ({esc(frac)}) over {len(g['runs'])} "
        f"runs</h3><p class=\"muted\">Images by number of runs solving them: {esc(hist)}. Paper: "
        f"{esc(html.published(P.UNSOLVED_BY_ALL_IN_REAL))} of IN+ReaL unsolved by its 5 IN-trained models."
        + (f" {len(u['not_in_every_run'])} images are missing from some run (skipped there) and not counted."
           if u["not_in_every_run"] else "") + f"</p><p>{listed or 'None.'}</p>")
    if "export" in g:
      e = g["export"]
      kw = "".join(f",{a}={b}" for a, b in e["get_dataset_kwargs"].items())
      parts.append(f"<p>Export: <b>{e['num_images']}</b> images solved by at most {e['max_solved']} runs in "
                   f"<code>{esc(rel(e['path']))}</code> (labels.csv, solved_by_run.csv); sweep it with "
                   f"<code>--config configs/zoom_sweep.py:data={esc(e['dataset'])}{esc(kw)}</code>.</p>")

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
        figs.append(plots.held_out_overlay(curves, os.path.join(assets, f"held_out_{g['key']}.png"), title=g["name"],
                                           labels=selection.CURVE_LABELS))
    parts.append('<div class="figs">' + "".join(f'<img src="{rel(p)}" alt="held-out curves">' for p in figs)
                 + "</div>")
    rows = []
    for r in held:
      h, best = r["held_out"], r["held_out"].get("best_fixed") or {}
      last = len(h["budgets"]) - 1
      rows.append([esc(r["label"]), esc(_group_name(study, r["group"])), str(best.get("k", html.MISSING)),
                   esc(selection.CURVE_LABELS.get(best.get("method"), html.MISSING)),
                   esc(html.interval(best.get("accuracy"), best.get("ci95")))]
                  + [esc(html.interval(h["curves"][c]["accuracy"][last], h["curves"][c]["ci95"][last]))
                     for c in selection.CURVES])
    parts.append(html.html_table(["model", "dataset", "best k", "best method (no oracle)", "held-out accuracy"]
                                 + [f"{selection.CURVE_LABELS[c]}, k = max" for c in selection.CURVES], rows, left=2))

  # Every aggregator, per run, and paired comparisons of runs on the same images.
  with_agg = [r for r in runs if (r.get("aggregators") or {}).get("sets")]
  if with_agg:
    parts.append("<h2>Test-time aggregators over the stored views</h2>" + "".join(
        sweep_report.aggregator_section(r["aggregators"], title=f"{r['label']} on {_group_name(study, r['group'])}",
                                        level=3) for r in with_agg))
  pairs = [(g, p) for g in groups for p in g.get("paired") or []]
  if pairs:
    rows = [[esc(g["name"]), esc(p["what"]),
             esc(html.paired(p["a"], p["b"], p["diff"], p["ci95"], p["p_value"])),
             f"{p['a_only']} / {p['b_only']}", str(p["n"]), str(p["images_left_out"])] for g, p in pairs]
    parts.append("<h2>Runs compared on the same images (paired)</h2>"
                 '<p class="muted">Each run against its group\'s first run, image by image: the accuracy difference '
                 "with a paired bootstrap interval over images and McNemar's exact p-value on the images one run "
                 "gets right and the other wrong (right only by the first / only by the second).</p>"
                 + html.html_table(["dataset", "what", "difference [95 % interval], p", "right only by one / other",
                                    "images", "left out (skipped by one run)"], rows, left=2))

  # Explorers.
  links = [r for r in runs if r.get("explorer")]
  if links:
    parts.append("<h2>Image explorers</h2><ul>" + "".join(
        f'<li><a href="{esc(rel(r["explorer"]))}">{esc(r["label"])} on '
        f"{esc(_group_name(study, r['group']))}</a></li>" for r in links) + "</ul>")

  # Runs.
  rows = [[esc(r["label"]), esc(r["dataset"]), esc(r["workdir"]), str(r["num_images"]), str(r["num_views"]),
           str(r["min_cover_size"]), esc(r["min_cover_from"]), str(r["skipped_files"])] for r in runs]
  parts.append("<h2>Runs</h2>" + html.html_table(["model", "dataset", "workdir", "images", "views", "min-cover",
                                                  "cover from", "skipped"], rows, left=3))
  path = os.path.join(workdir, "study.html")
  atomic.write_text(path, html.document("Zoom study", "".join(parts), what="study"))
  return path
