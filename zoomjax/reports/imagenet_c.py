"""`report.html` of an ImageNet-C run: the error table with its heatmap, the mean error per severity, CE per
corruption, mCE and relative mCE (results.json of zoomjax.jobs.imagenet_c), in the reports' shared style."""
import os
from typing import Any, Dict, List

import numpy as np
from matplotlib.figure import Figure

from zoomjax.reports import html
from zoomjax.runtime import atomic

__all__ = ["error_heatmap", "write_report"]

ASSETS = "report"


def error_heatmap(table: np.ndarray, rows: List[str], severities: List[int], path: str, *, title: str) -> str:
  """A (corruptions x severities) heatmap of top-1 errors in percent, each cell annotated; NaN = not run."""
  v = 100.0 * np.asarray(table, np.float64)
  fig = Figure(figsize=(max(4.5, 2.2 + 0.8 * len(severities)), 1.2 + 0.32 * len(rows)))
  ax = fig.subplots()
  im = ax.imshow(v, cmap="magma_r", vmin=0, vmax=100, aspect="auto")
  for r in range(v.shape[0]):
    for c in range(v.shape[1]):
      val = v[r, c]
      ax.text(c, r, "n/a" if np.isnan(val) else f"{val:.0f}", ha="center", va="center", fontsize=7,
              color="white" if (not np.isnan(val) and val > 55) else "black")
  ax.set_xticks(range(len(severities)), [f"severity {s}" for s in severities], fontsize=7)
  ax.set_yticks(range(len(rows)), [r.replace("_", " ") for r in rows], fontsize=7)
  ax.set_title(title, fontsize=9)
  fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="top-1 error (%)")
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  return path


def _aggregator_table(results: Dict[str, Any]) -> str:
  """Zoom TTA: every aggregator's scores over the same views (empty for other methods)."""
  agg = results.get("aggregator_scores")
  if not agg:
    return ""
  rows = [[html.escape(how)] + [html.escape(html.percent((s or {}).get(k)))
                                for k in ("mean_error", "mce", "relative_mce")] for how, s in agg.items()]
  return ("<h2>Every aggregator over the same zoom views</h2><p>The run's prediction is one of these "
          "(<code>zoom.aggregate</code>); the others come from the same views at no extra model cost.</p>"
          + html.html_table(["aggregator", "mean error", "mCE", "relative mCE"], rows))


def write_report(results: Dict[str, Any], workdir: str) -> str:
  """Writes <workdir>/report.html (and its heatmap under <workdir>/report/); returns the page's path."""
  assets = os.path.join(workdir, ASSETS)
  os.makedirs(assets, exist_ok=True)
  sev = [int(s) for s in results["severities"]]
  scores = results.get("scores") or {}
  order = scores.get("corruptions") or list(results["corruptions"])
  cells = results["cells"]
  rows, table = [], []
  for c in order:
    errs = []
    cols = [html.escape(c.replace("_", " "))]
    for s in sev:
      r = cells.get(f"{c}-{s}")
      errs.append(np.nan if r is None or r["error"] is None else r["error"])
      cols.append(html.escape(html.MISSING if r is None or r["error"] is None
                              else html.interval(r["error"], r.get("error_ci95"))))
    ce = (scores.get("ce") or {}).get(c)
    rel = (scores.get("relative_ce") or {}).get(c)
    cols += [html.escape(html.percent(ce)), html.escape(html.percent(rel))]
    rows.append(cols)
    table.append(errs)
  by_sev = scores.get("mean_error_by_severity") or {}
  bold = lambda x: f"<b>{html.escape(html.percent(x))}</b>"  # noqa: E731
  rows.append(["<b>mean</b>"] + [html.escape(html.percent(by_sev.get(s, by_sev.get(str(s))))) for s in sev]
              + [bold(scores.get("mce")), bold(scores.get("relative_mce"))])
  header = ["corruption"] + [f"error, severity {s}" for s in sev] + ["CE", "relative CE"]
  title = f"ImageNet-C: {results['method']} with {results['model']} on {results['data']}"
  figure = ""
  if table:
    error_heatmap(np.asarray(table), order, sev, os.path.join(assets, "errors.png"),
                  title=f"top-1 error: {results['method']}, {results['model']}")
    figure = f'<p><img src="{ASSETS}/errors.png" alt="error heatmap"></p>'
  clean = cells.get("clean")
  clean_text = (html.MISSING if not clean or clean["error"] is None
                else html.interval(clean["error"], clean.get("error_ci95")))
  mce_name = "mCE" if scores.get("complete") else "mCE over the cells run (not the benchmark's 15 x 5)"
  body = (f"<h1>{html.escape(title)}</h1>"
          f"<p>{html.escape(mce_name)}: <b>{html.escape(html.percent(scores.get('mce')))}</b>, relative mCE "
          f"<b>{html.escape(html.percent(scores.get('relative_mce')))}</b> (AlexNet = 100 % by construction); mean "
          f"error {html.escape(html.percent(scores.get('mean_error')))}; clean error "
          f"{html.escape(clean_text)} ({html.escape(str(clean['num_images']) if clean else '0')} images). Top-1 "
          f"errors with 95 % bootstrap "
          f"intervals; CE normalised by AlexNet's published errors (Hendrycks &amp; Dietterich, ICLR 2019).</p>"
          + html.html_table(header, rows) + figure + _aggregator_table(results))
  path = os.path.join(workdir, "report.html")
  atomic.write_text(path, html.document(title, body))
  return path
