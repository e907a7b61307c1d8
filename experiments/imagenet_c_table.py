"""The docs' ImageNet-C table: finished `imagenet_c` runs of several methods side by side, each against the first.

  python experiments/imagenet_c_table.py runs/imagenet_c/baseline runs/imagenet_c/bn_adapt runs/imagenet_c/tent
  python experiments/imagenet_c_table.py runs/imagenet_c/baseline runs/zoom@mean runs/zoom@zero

A zoom TTA run records every aggregator over the same views: WORKDIR@NAME reads aggregator NAME of it
(zoomjax.tta.zoom_tta.AGGREGATIONS).

Prints a Markdown table: per cell (clean, then each corruption at each severity run), each method's accuracy with
its 95 % bootstrap interval, and for the later methods the paired difference to the first (bootstrap interval
and McNemar's exact p-value over the same images); then each method's mean error, mCE and relative mCE (only
those with --summary).
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


def main(workdirs, summary_only: bool = False):
  runs = [_load(w) for w in workdirs]
  names = [r["method"] for r in runs]
  r0 = runs[0]
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
  summary = [[n, f"{100 * r['scores']['mean_error']:.1f}", f"{100 * r['scores']['mce']:.1f}",
              f"{100 * r['scores']['relative_mce']:.1f}" if r["scores"]["relative_mce"] is not None else html.MISSING]
             for n, r in zip(names, runs)]
  print(html.markdown_table(["method", "mean error (%)", "mCE (%)", "relative mCE (%)"], summary))


if __name__ == "__main__":
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("workdirs", nargs="+", help="finished imagenet_c workdirs (WORKDIR@AGGREGATOR: one aggregator of a zoom TTA run); "
                      "the first is the reference")
  parser.add_argument("--summary", action="store_true", help="only the table of mean error, mCE and relative mCE")
  args = parser.parse_args()
  main(args.workdirs, args.summary)
