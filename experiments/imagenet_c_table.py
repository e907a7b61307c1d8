"""The docs' ImageNet-C table: finished `imagenet_c` runs of several methods side by side, each against the first.

  python experiments/imagenet_c_table.py runs/imagenet_c/baseline runs/imagenet_c/bn_adapt runs/imagenet_c/tent

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
from zoomjax.reports import html


def _cell_rows(workdir: str, cell: str):
  z = np.load(os.path.join(workdir, "cells", cell, "seed_0", "predictions.npz"))
  return [str(i) for i in z["ids"]], np.asarray(z["correct"], bool)


def main(workdirs, summary_only: bool = False):
  runs = [json.load(open(os.path.join(w, "results.json"))) for w in workdirs]
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
    for w in workdirs[1:]:
      if cell not in json.load(open(os.path.join(w, "results.json")))["cells"]:
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
  parser.add_argument("workdirs", nargs="+", help="finished imagenet_c workdirs; the first is the reference")
  parser.add_argument("--summary", action="store_true", help="only the table of mean error, mCE and relative mCE")
  args = parser.parse_args()
  main(args.workdirs, args.summary)
