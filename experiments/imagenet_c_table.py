"""The docs' ImageNet-C table: finished `imagenet_c` runs of several methods side by side, each against the first.

  python experiments/imagenet_c_table.py runs/imagenet_c/baseline runs/imagenet_c/bn_adapt runs/imagenet_c/tent
  python experiments/imagenet_c_table.py runs/imagenet_c/baseline runs/zoom@mean runs/zoom@zero

A zoom TTA run records every aggregator over the same views: WORKDIR@NAME reads aggregator NAME of it
(zoomjax.tta.zoom_tta.AGGREGATIONS).

Prints a Markdown table: per cell (clean, then each corruption at each severity run), each method's accuracy with
its 95 % bootstrap interval, and for the later methods the paired difference to the first (bootstrap interval
and McNemar's exact p-value over the same images); then each method's mean error, mCE and relative mCE (only
those with --summary), with the mean error at each severity when the runs cover several. --grid prints instead
the error table, corruptions x severities, every method's error in each cell.
"""
import argparse
import json
import os

import numpy as np

from zoomjax.analysis import paired
from zoomjax.data import label_space
from zoomjax.jobs import tta
from zoomjax.reports import html
from zoomjax.tta import zoom_tta


def _split(spec: str):
  """WORKDIR or WORKDIR@AGGREGATOR -> (workdir, aggregator or None)."""
  workdir, _, how = spec.partition("@")
  return workdir, how or None


def _cell_rows(spec: str, cell: str):
  workdir, how = _split(spec)
  z = np.load(os.path.join(workdir, "cells", cell, "seed_0", "predictions.npz"))
  if how is None:
    return [str(i) for i in z["ids"]], np.asarray(z["correct"], bool)
  pred = z[tta.AGGREGATES][:, zoom_tta.AGGREGATIONS.index(how)].astype(np.int32)
  return [str(i) for i in z["ids"]], label_space.is_correct(pred, np.asarray(z["labels"]))


def _load(spec: str):
  """results.json of a run, as the table reads it: for WORKDIR@NAME, aggregator NAME's cells and scores."""
  workdir, how = _split(spec)
  r = json.load(open(os.path.join(workdir, "results.json")))
  if how is None:
    return r
  if not r.get("aggregator_scores") or how not in r["aggregator_scores"]:
    raise SystemExit(f"{workdir}/results.json has no aggregator {how!r} (a zoom TTA run records "
                     f"{', '.join(zoom_tta.AGGREGATIONS)})")
  cells = {}
  for name, c in r["cells"].items():
    a = c["aggregators"][how]
    cells[name] = {**c, "accuracy": a["accuracy"], "accuracy_ci95": a["accuracy_ci95"]}
  return {**r, "method": f"{r['method']} {how}", "cells": cells, "scores": r["aggregator_scores"][how]}


def _pct(x) -> str:
  return html.percent(x, unit="")


def _mean_error_at(scores, severity: int):
  """The mean error at one severity (results.json stores the severities as string keys)."""
  by_sev = scores["mean_error_by_severity"]
  return by_sev.get(str(severity), by_sev.get(severity))


def grid_table(runs) -> str:
  """Corruptions x severities of the first run, each cell every run's error (%) joined by ' / ', then the mean
  error per severity."""
  r0 = runs[0]
  severities = r0["severities"]
  rows = []
  for c in r0["scores"]["corruptions"]:
    rows.append([c.replace("_", " ")] + [" / ".join(_pct((r["cells"].get(f"{c}-{s}") or {}).get("error"))
                                                     for r in runs) for s in severities])
  rows.append(["mean"] + [" / ".join(_pct(_mean_error_at(r["scores"], s)) for r in runs) for s in severities])
  return html.markdown_table(["corruption"] + [f"severity {s}" for s in severities], rows)


def main(workdirs, summary_only: bool = False, grid: bool = False):
  runs = [_load(w) for w in workdirs]
  names = [r["method"] for r in runs]
  if len(set(names)) < len(names):  # e.g. one method with other settings: say which workdir each column is.
    names = [f"{n} ({os.path.basename(os.path.normpath(_split(w)[0]))})" for n, w in zip(names, workdirs)]
  r0 = runs[0]
  if grid:
    print(f"error (%) of {' / '.join(names)}")
    print()
    print(grid_table(runs))
    return
  cells = (["clean"] if "clean" in r0["cells"] else []) + [
      f"{c}-{s}" for c in r0["scores"]["corruptions"] for s in r0["severities"] if f"{c}-{s}" in r0["cells"]]
  header = ["cell"] + [f"{n} accuracy" for n in names] + [f"{n} - {names[0]}" for n in names[1:]]
  rows = []
  for cell in cells:
    row = [cell.replace("-", " ")]
    for r in runs:
      c = r["cells"].get(cell)
      row.append(html.interval(c["accuracy"], c["accuracy_ci95"]) if c else html.MISSING)
    ids0, c0 = _cell_rows(workdirs[0], cell)
    for w, r in zip(workdirs[1:], runs[1:]):
      if cell not in r["cells"]:
        row.append(html.MISSING)
        continue
      ids, c = _cell_rows(w, cell)
      ia, ib = paired.same_images(ids, ids0, w, workdirs[0])
      p = paired.paired_difference(c[ia], c0[ib])
      row.append(html.paired("", "", p.diff, p.ci95, p.p_value).split(": ", 1)[1])
    rows.append(row)
  if not summary_only:
    print(html.markdown_table(header, rows))
    print()
  severities = r0["severities"] if len(r0["severities"]) > 1 else []
  summary = []
  for n, r in zip(names, runs):
    s = r["scores"]
    summary.append([n, _pct(s["mean_error"])] + [_pct(_mean_error_at(s, k)) for k in severities]
                   + [_pct(s["mce"]), _pct(s["relative_mce"])])
  print(html.markdown_table(["method", "mean error (%)"] + [f"severity {k} (%)" for k in severities]
                            + ["mCE (%)", "relative mCE (%)"], summary))


if __name__ == "__main__":
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("workdirs", nargs="+", help="finished imagenet_c workdirs (WORKDIR@AGGREGATOR: one "
                      "aggregator of a zoom TTA run); the first is the reference")
  parser.add_argument("--summary", action="store_true", help="only the table of mean error, mCE and relative mCE")
  parser.add_argument("--grid", action="store_true", help="only the error table, corruptions x severities")
  args = parser.parse_args()
  main(args.workdirs, args.summary, args.grid)
