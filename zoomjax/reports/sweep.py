"""`report.html` of a sweep: our numbers (with 95 % intervals) next to the paper's, the figures, zoom without an
oracle (held-out view selection, confidence selection), per-class rescue tables and a gallery of zoom rescues.

The page is static HTML with relative links to PNG/JPEG files under `<workdir>/report/`, so a workdir can be
copied and opened anywhere. A few lines of script flag images that fail to load (visibly and on the console),
so a broken report is noticed, not silently half-rendered.
"""
import datetime
import os
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np

from zoomjax.analysis import metrics as A
from zoomjax.analysis import paper_numbers as P
from zoomjax.analysis import per_class as PC
from zoomjax.analysis import selection as S
from zoomjax.reports import figures as plots
from zoomjax.reports import html
from zoomjax.runtime import atomic

__all__ = ["ASSETS", "AGGREGATOR_NOTES", "gallery_candidates", "aggregator_section", "write_report"]

ASSETS = "report"


def _num(x) -> str:
  return html.MISSING if html.is_missing(x) else (f"{x:.2f}" if isinstance(x, float) else str(x))


def gallery_candidates(rec, limit: int) -> List[Dict]:
  """Images the 1-crop view gets wrong and some zoom gets right, with their best view (highest p_true)."""
  names = [str(n) for n in rec.view_names]
  if A.ONE_CROP_VIEW not in names:
    return []
  C = A.correctness(rec.top1, rec.labels)
  j = names.index(A.ONE_CROP_VIEW)
  best = A.best_view(C, rec.p_true)
  out = []
  for i in np.flatnonzero(~C[:, j] & (best >= 0))[:limit]:
    b = int(best[i])
    out.append({"row": int(i), "index": int(rec.index[i]), "id": str(rec.ids[i]),
                "labels": [int(x) for x in rec.labels[i] if x >= 0],
                "one_crop_view": A.ONE_CROP_VIEW, "one_crop_pred": int(rec.top1[i, j]),
                "one_crop_p": float(rec.p_max[i, j]), "best_view": names[b], "best_pred": int(rec.top1[i, b]),
                "best_p": float(rec.p_true[i, b]), "num_correct_views": int(C[i].sum())})
  return out


def _held_out_section(held: Dict, metrics: Dict, assets: str, rel: Callable[[str], str]) -> str:
  """Accuracy vs views per image (the four curves with bands), a few budgets as a table, the best fixed set,
  and per-image confidence selection over every view (`zoomjax.analysis.selection`)."""
  out = ["<h2>Zoom without an oracle: views chosen on other images</h2>"]
  fmt = lambda x, ci, sign=False: html.escape(html.interval(x, ci, sign=sign))  # noqa: E731
  curves = held.get("curves") or {}
  if curves:
    fig = plots.held_out_curves(held, os.path.join(assets, "held_out.png"), labels=S.CURVE_LABELS,
                                title=f"{held['n_folds']}-fold held-out view selection, 95 % bands",
                                one_crop=metrics.get("one_crop_accuracy"))
    out.append(f'<div class="figs"><img src="{rel(fig)}" alt="held-out selection curves"></div>')
    budgets = held["budgets"]
    shown = [k for k in (1, 2, 3, 5, 10, 20, 36) if k in budgets] or budgets
    if budgets[-1] not in shown:
      shown.append(budgets[-1])
    rows = [[str(k)] + [fmt(curves[c]["accuracy"][k - 1], curves[c]["ci95"][k - 1]) for c in S.CURVES]
            for k in shown]
    out.append(html.html_table(["views per image"] + [S.CURVE_LABELS[c] for c in S.CURVES], rows))
    best = held.get("best_fixed")
    if best:
      delta = ""
      if "delta_vs_1crop" in best:
        delta = f" ({fmt(best['delta_vs_1crop'], best['delta_ci95'], True)} vs the 1-crop)"
      out.append(f"<p>Best fixed set without an oracle: <b>k = {best['k']}</b> views by "
                 f"{html.escape(S.CURVE_LABELS[best['method']])}, held-out "
                 f"<b>{fmt(best['accuracy'], best['ci95'])}</b>{delta}: "
                 + ", ".join(f"<code>{html.escape(v)}</code>" for v in best["views"]) + "</p>")
    out.append(f'<p class="muted">{held["num_images"]} images in {held["n_folds"]} seeded folds: the greedy '
               "cover is run on the other folds and its first k views judged on the held-out fold (padded by "
               "training accuracy once the cover ends). The oracle curve picks its views on all images, like the "
               f"paper's top-36. Mean softmax: {html.escape(held['mean_softmax'])}. The best fixed set is picked on "
               "all images for the budget and method with the best held-out accuracy (the best of many held-out "
               "numbers, so slightly optimistic). Intervals: bootstrap over images "
               "(fold split held fixed).</p>")
  conf = held.get("confidence_selection") or {}
  if conf:
    rows = [[html.escape(m), fmt(v["accuracy"], v["ci95"]),
             fmt(v["delta_vs_1crop"], v["delta_ci95"], True) if "delta_vs_1crop" in v else ""]
            for m, v in conf.items()]
    out.append(f"<h3>Per-image selection by confidence over all {held.get('confidence_selection_views')} views"
               "</h3>" + html.html_table(["method", "accuracy [95 %]", "vs 1-crop (paired) [95 %]"], rows)
               + '<p class="muted">max-prob view: label of the view with the highest top-1 probability; '
               "p_max-weighted vote: each view votes its top-1 class with its top-1 probability (the mean of the "
               "top-1 sparse softmax); vote: one vote per view. The records keep no full softmax, so entropy "
               "weights are not available.</p>")
  return "".join(out)


def _cascade_section(metrics: Dict, assets: str, rel: Callable[[str], str]) -> str:
  """HTML of metrics.json's "cascade" (accuracy vs mean views, next to the fixed-k curves) and "selective"
  (risk-coverage, AURC, ECE per method and confidence score)."""
  out = []
  casc, sel = metrics.get("cascade") or {}, metrics.get("selective") or {}
  fmt = lambda x, ci: html.escape(html.interval(x, ci))  # noqa: E731
  if casc.get("curve"):
    fig = plots.cascade_curve(casc, os.path.join(assets, "cascade.png"), held_out=metrics.get("held_out"),
                              title=f"cascade under a view budget, {casc['n_folds']}-fold held-out, 95 % bars",
                              one_crop=metrics.get("one_crop_accuracy"))
    rows = [[f"{h['budget']:g}", fmt(h["accuracy"], h["ci95"]), f"{h['mean_views']:.2f}", ", ".join(h["rules"]),
             html.percent(casc["fixed_k"].get(f"{h['budget']:g}"))] for h in casc["headline"]]
    out.append("<h2>A cascade under a view budget</h2>"
               f'<div class="figs"><img src="{rel(fig)}" alt="cascade: accuracy vs views"></div>'
               + html.html_table(["budget (mean views)", "cascade, held-out [95 %]", "views spent", "rule",
                                  "fixed k = budget, most confident"], rows)
               + f'<p class="muted">Views in the held-out curves\' greedy order, one at a time per image, stopping '
               "when the view's max probability reaches tau or m views agree (the label of the most confident view "
               f"seen at the cap); rule, tau or m and cap chosen on the other folds among settings within the "
               f"budget, judged on the held-out fold ({casc['num_images']} images, up to {casc['max_views']} "
               "views).</p>")
  if sel.get("methods"):
    curves, rows = [], []
    for m, scores in sel["methods"].items():
      for sc, v in scores.items():
        curves.append((m, sc, v["curve"]))
        rows.append([html.escape(m), sc, html.percent(v["accuracy"]), f"{v['aurc']:.4f}", f"{v['excess_aurc']:.4f}",
                     f"{v['ece']:.4f}", html.percent(v["risk_at"].get("0.8"))])
    fig = plots.risk_coverage_curves(curves, os.path.join(assets, "risk_coverage.png"),
                                     title="selective classification: risk vs coverage")
    out.append("<h2>Selective classification</h2>"
               f'<div class="figs"><img src="{rel(fig)}" alt="risk-coverage curves"></div>'
               + html.html_table(["method", "confidence", "accuracy", "AURC", "excess AURC",
                                  f"ECE ({sel['ece_bins']} bins)", "risk at 80 % coverage"], rows)
               + '<p class="muted">softmax: max probability of the predicting view; agreement: fraction of the '
               f"{sel['num_agreement_views']} views whose top-1 is the prediction. AURC: mean risk of the k most "
               "confident images over k; excess: minus that of a perfect ranking. Lower is better.</p>")
  return "".join(out)


# One line per aggregator of zoomjax.analysis.aggregators, for the tables' first column.
AGGREGATOR_NOTES = {
    "1-crop": "the paper's view LOC:1_1_Size:256 alone", "oracle": "right if any view is (an upper bound)",
    "mean": "argmax of the mean softmax", "max": "label of the most confident view",
    "vote": "majority vote of the views' top-1", "geometric": "argmax of the mean log-probability",
    "entropy_weighted": "mean softmax weighted by softmax(-entropy)",
    "tpt": "TPT: lowest-entropy views, then mean softmax", "zero": "ZERO: lowest-entropy views, then a vote",
}


def aggregator_section(table: Dict, *, main_set: str = "grid", title: str = "Every aggregator over the stored views",
                       level: int = 2) -> str:
  """HTML of metrics.json's "aggregators" (zoomjax.analysis.aggregators.aggregator_table): the main view set's
  accuracies with 95 % intervals and paired tests against the 1-crop, then every set's accuracies side by side."""
  sets = table.get("sets") or {}
  if not sets:
    return ""
  main_set = main_set if main_set in sets else next(iter(sets))
  main = sets[main_set]
  names = [h for h in AGGREGATOR_NOTES if h in main["accuracy"]]
  rows = []
  for h in names:
    pr = (main.get("paired") or {}).get(h)
    vs = html.paired(h, "1-crop", pr["diff"], pr["ci95"], pr["p_value"]) if pr else html.MISSING
    rows.append([f"<b>{html.escape(h)}</b>", html.escape(AGGREGATOR_NOTES[h]),
                 html.escape(html.interval(main["accuracy"][h], main["ci95"].get(h))), html.escape(vs)])
  for h, why in (table.get("missing") or {}).items():
    rows.append([f"<b>{html.escape(h)}</b>", html.escape(AGGREGATOR_NOTES.get(h, "")), html.MISSING,
                 html.escape(why)])
  set_names = list(sets)
  grid_rows = [[html.escape(h)] + [html.escape(html.interval(sets[s]["accuracy"].get(h), sets[s]["ci95"].get(h)))
                                   for s in set_names] for h in names]
  kept = table.get("kept_views") or {}
  h_ = f"h{level}"
  return (f"<{h_}>{html.escape(title)}</{h_}>"
          + f'<p class="muted">Over the {main["num_views"]} views of "{html.escape(main_set)}", from the records '
          f"alone (no model is run again). Paired tests: bootstrap over images and McNemar's exact p-value on the "
          f"images one method gets right and the other wrong. tpt and zero keep max(1, int({table.get('rho')} x "
          f"views)) views ({kept.get(main_set, '?')} here). {html.escape(table.get('truncation', ''))}.</p>"
          + html.html_table(["aggregator", "definition", "accuracy [95 % interval]", "vs 1-crop (paired)"], rows,
                            left=2)
          + f"<{h_}>Every view set (accuracy, 95 % interval)</{h_}>"
          + html.html_table(["aggregator"] + [f"{s} ({sets[s]['num_views']} views)" for s in set_names], grid_rows))


def _per_class_section(pc: Dict, class_names: Sequence[str]) -> str:
  """The classes zoom rescues most and least (`zoomjax.analysis.per_class`)."""
  header = ["class", "images", "1-crop", "upper bound", "rescued / 1-crop wrong", "rescue rate", "best anchor"]
  pct = lambda x: html.percent(x, unit="")  # noqa: E731  (the title says %)

  def rows(classes):
    out = []
    for r in PC.rows_of(pc, classes):
      out.append([html.escape(html.class_name(class_names, r["class"])), str(r["n"]), pct(r["one_crop"]),
                  pct(r["upper_bound"]), f"{r['rescued']} / {r['wrong']}", pct(r["rescue_rate"]),
                  html.escape(r["best_anchor"] or html.MISSING)])
    return out

  by = ("first label" if pc["by"] == "first" else "every label")
  note = (f"{pc['num_classes']} classes; images filed by their {by}"
          + (f" ({pc['num_multi_label_images']} multi-label images)" if pc["num_multi_label_images"] else "")
          + f"; classes with at least {pc['min_wrong']} 1-crop mistake(s) ranked by rescue rate (the fraction "
          "of the 1-crop's mistakes that some zoom view gets right), ties to more mistakes. Best anchor: row_col "
          "of the anchor whose scales solve most of the class.")
  return ("<h2>Per class (%)</h2><h3>Most rescued by zoom</h3>" + html.html_table(header, rows(pc["most_rescued"]))
          + "<h3>Least rescued by zoom</h3>" + html.html_table(header, rows(pc["least_rescued"]))
          + f'<p class="muted">{html.escape(note)}</p>')


def write_report(workdir: str, rec, metrics: Dict, *, class_names: Sequence[str], model: str, dataset: str,
                 paper_dataset: Optional[str] = None, command: str = "", wall_time_s: Optional[float] = None,
                 read_image: Optional[Callable[[int], np.ndarray]] = None,
                 render_view: Optional[Callable[[np.ndarray, str], np.ndarray]] = None,
                 gallery_size: int = 12, top_k: int = 36, explorer: Optional[str] = None) -> str:
  """Writes `<workdir>/report.html` and its figures; returns the page's path.

  explorer: relative link of the image explorer (zoomjax.reports.explorer) written next to the report, if any.

  read_image(global index) -> uint8 (H, W, 3) and render_view(image, view name) -> (224, 224, 3) pixels are
  needed for the gallery; without them the gallery lists the images without pictures.
  """
  assets = os.path.join(workdir, ASSETS)
  os.makedirs(assets, exist_ok=True)
  rel = lambda p: f"{ASSETS}/{os.path.basename(p)}"  # noqa: E731
  paper = P.lookup(model, paper_dataset)
  shown = P.DISPLAY_NAMES.get(model, model)
  title = f"{shown} on {dataset}"
  parts = [f"<h1>Zoom sweep: {html.escape(title)}</h1>"]
  when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
  meta = [f"{metrics['num_images']} images x {metrics['num_views']} zoom views",
          f"written {when}"]
  if wall_time_s is not None:
    meta.append(f"sweep wall time {wall_time_s / 60:.1f} min")
  parts.append(f'<p class="muted">{" · ".join(html.escape(m) for m in meta)}</p>')
  if command:
    parts.append(f"<p class=\"muted\">Command: <code>{html.escape(command)}</code></p>")
  if explorer:
    parts.append(f'<p><a id="explorer-link" href="{html.escape(explorer)}">Image explorer</a>: every view of every '
                 "image (scale x anchor grid coloured by the true label's probability, crops on click)</p>")

  # Headline numbers.
  if paper_dataset and paper:
    note = (f"Paper: {html.escape(shown)} on the full {html.escape(paper_dataset)} set (docs/study.md §2); "
            "ours may be a subset, so expect sampling noise.")
  elif paper_dataset:
    note = f"The paper reports no numbers for {html.escape(shown)} on {html.escape(paper_dataset)}."
  else:
    note = "No paper dataset is associated with this data (set config.paper_dataset to compare)."
  rows = []
  for key, label in (("one_crop_accuracy", "1-crop accuracy (LOC:1_1_Size:256)"),
                     ("upper_bound_accuracy", f"upper bound, all {metrics['num_views']} views"),
                     ("top36_accuracy", f"upper bound, greedy top-{top_k}")):
    theirs = paper.get(key)
    rows.append([html.escape(label), html.escape(html.interval(metrics.get(key), (metrics.get("ci95") or {}).get(key))),
                 html.escape(html.published(theirs))])
  theirs = paper.get("min_cover_size")
  rows.append(["greedy min-cover size", _num(metrics.get("min_cover_size")),
               html.MISSING if theirs is None else f"{theirs:.0f}"])
  parts.append("<h2>Headline numbers</h2>"
               + html.html_table(["metric", "ours [95 % bootstrap interval]", "paper"], rows)
               + f'<p class="muted">{note} Intervals: percentile bootstrap over images (1000 seeded draws). '
               f'Greedy ties broken by the {html.escape(metrics.get("tie_order", ""))} order '
               "(zoomjax.analysis.metrics.tie_order).</p>")

  # Figures.
  figs = []
  figs.append(plots.anchor_heatmap(metrics["anchor_upper_bound"], os.path.join(assets, "anchor_upper_bound.png"),
                                   title="per-anchor upper bound (%), rows top to bottom"))
  paper_hm = P.ANCHOR_UPPER_BOUND.get(model, {}).get(paper_dataset or "")
  if paper_hm:
    figs.append(plots.anchor_heatmap(np.asarray(paper_hm) / 100, os.path.join(assets, "anchor_paper.png"),
                                     title=f"paper: {shown} on {paper_dataset}"))
  figs.append(plots.anchor_heatmap(metrics["top36_anchor_counts"], os.path.join(assets, "top36_anchors.png"),
                                   title=f"anchors of the greedy top-{top_k} views", percent=False,
                                   deltas=False, cmap="magma"))
  figs.append(plots.accuracy_vs_scale(metrics["accuracy_vs_scale"], os.path.join(assets, "accuracy_vs_scale.png"),
                                      title="accuracy vs scale"))
  curve = A.coverage_curve(metrics["min_cover_gains"], metrics["num_images"])
  figs.append(plots.coverage_curve(curve, os.path.join(assets, "coverage.png"), title="greedy min-cover",
                                   upper_bound=metrics["upper_bound_accuracy"],
                                   one_crop=metrics.get("one_crop_accuracy"), k=top_k))
  parts.append("<h2>Figures</h2><div class=\"figs\">"
               + "".join(f'<img src="{rel(p)}" alt="{html.escape(os.path.basename(p))}">' for p in figs) + "</div>")

  # Disentangling.
  dis = metrics.get("disentangling", {})
  pdis = P.DISENTANGLING.get(model, {}).get(paper_dataset or "", {})
  cols = ["ub_in", "ub_out", "ub_224", "excl_in", "excl_out", "excl_224"]
  pct = lambda x: html.percent(x, unit="")  # noqa: E731  (the title says %)
  rows = [["ours"] + [pct(dis.get(c)) for c in cols]]
  by_group = metrics.get("solved_fraction_by_group", {})
  if by_group:
    rows.append(["ours, every view of the group"] + [pct(by_group.get(g)) for g in ("in", "out", "224")]
                + ["", "", ""])
  if pdis:
    rows.append(["paper"] + [html.published(pdis[c], unit=False) for c in cols])
  parts.append("<h2>Zoom-in vs zoom-out vs zoom-224 (%)</h2>"
               + html.html_table(["", "UB in", "UB out", "UB 224", "excl. in", "excl. out", "excl. 224"], rows)
               + '<p class="muted">UB: union over the group\'s views in the model\'s own min-cover. Exclusive: '
               "solved by the group and by neither other group (own min-cover; the paper's exclusive columns "
               "used CLIP's min-cover for every model, a code quirk).</p>")

  # Aggregation without an oracle.
  agg = metrics.get("aggregation", {})
  pagg = P.AGGREGATION.get(model, {}).get(paper_dataset or "", {})
  keys = [k for k in ["1-crop"] + [f"{s} {m}" for s in ("zoom-in", "zoom-out", "zoom-224", "5-crop", "10-crop")
                                   for m in ("max", "mean")] if k in agg]
  ci = metrics.get("ci95") or {}
  rows = [[html.escape(k), html.escape(html.interval(agg[k], ci.get(f"aggregation/{k}"))),
           html.escape(html.published(pagg.get(k)))] for k in keys]
  parts.append("<h2>Aggregating views without an oracle</h2>"
               + html.html_table(["method", "ours [95 % interval]", "paper"], rows)
               + '<p class="muted">max: label of the most confident view; mean: argmax of the mean softmax '
               "over the set. 5/10-crop: Resize(256, bicubic) + FiveCrop/TenCrop(224).</p>")

  if metrics.get("aggregators"):
    parts.append(aggregator_section(metrics["aggregators"]))
  held = metrics.get("held_out")
  if held:
    parts.append(_held_out_section(held, metrics, assets, rel))
  parts.append(_cascade_section(metrics, assets, rel))
  if metrics.get("per_class"):
    parts.append(_per_class_section(metrics["per_class"], class_names))

  # Gallery.
  cands = gallery_candidates(rec, gallery_size)
  cards = []
  for g in cands:
    truth = ", ".join(html.class_name(class_names, k) for k in g["labels"])
    pics = ""
    if read_image is not None and render_view is not None:
      image = read_image(g["index"])
      stem = f"gallery_{g['index']:06d}"
      p0 = html.save_thumbnail(image, os.path.join(assets, f"{stem}_orig.jpg"), max_side=320, quality=90)
      p1 = html.save_thumbnail(render_view(image, g["one_crop_view"]), os.path.join(assets, f"{stem}_1crop.jpg"),
                               quality=90)
      p2 = html.save_thumbnail(render_view(image, g["best_view"]), os.path.join(assets, f"{stem}_best.jpg"),
                               quality=90)
      pics = "".join(f'<figure><img src="{rel(p)}" alt="{html.escape(a)}" title="{html.escape(a)}">'
                     f"<figcaption>{html.escape(a)}</figcaption></figure>" for p, a in
                     ((p0, "original"), (p1, "1-crop " + g["one_crop_view"]), (p2, "best " + g["best_view"])))
    cards.append(
        f'<div class="card"><div class="row">{pics}</div>'
        f"<div><b>{html.escape(g['id'])}</b> · true: {html.escape(truth)} · {g['num_correct_views']} views "
        "correct</div>"
        f'<div class="bad">1-crop {html.escape(g["one_crop_view"])}: '
        f'{html.escape(html.class_name(class_names, g["one_crop_pred"]))} '
        f"({html.escape(html.percent(g['one_crop_p']))})</div>"
        f'<div class="ok">best {html.escape(g["best_view"])}: '
        f'{html.escape(html.class_name(class_names, g["best_pred"]))} '
        f"({html.escape(html.percent(g['best_p']))})</div></div>")
  parts.append(f"<h2>Rescued by zoom: 1-crop wrong, some zoom right ({len(cands)} shown)</h2>"
               + (f'<div class="gallery">{"".join(cards)}</div>' if cards else "<p>None.</p>"))

  skipped = metrics.get("skipped_files") or []
  parts.append(f"<h2>Skipped files ({len(skipped)})</h2>"
               + ("<ul>" + "".join(f"<li>{html.escape(s)}</li>" for s in skipped) + "</ul>" if skipped
                  else "<p>None.</p>"))
  page = html.document(title, "".join(parts), what="report")
  path = os.path.join(workdir, "report.html")
  atomic.write_text(path, page)
  return path
