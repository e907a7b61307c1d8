"""Accuracy change of the bf16 compute option against fp32: real EfficientNet-Lite0 on the 100 val photos.

  python experiments/bf16_accuracy.py --out bf16_accuracy.json            # reduced grid, ~2 x 5 min CPU
  python experiments/bf16_accuracy.py --grid paper --out bf16_paper.json        # the paper grid (accelerator)

Runs the zoom sweep job (`zoomjax.jobs.zoom_sweep`, the product's own path) twice on the same images and grid,
once with config.dtype float32 and once bfloat16 (model and zoom kernel), and reports: 1-crop top-1
(LOC:1_1_Size:256), the upper bound (any view right), per-view top-1 agreement between the dtypes, and the
largest change of a view's top-1 probability. The grid must contain 256 (the 1-crop view).
With --fp32-records, the fp32 side is read from an existing sweep (e.g. runs/val100/records.npz over the paper
grid) restricted to this grid's views, instead of being recomputed.
"""
import argparse
import json
import os
import sys
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
  sys.path.insert(0, REPO)

REDUCED_SCALES = (64, 128, 224, 256, 384, 512)  # 6 scales x 9 anchors = 54 views, 256 included.


def _config(grid, data, model, dtype, limit):
  from configs import zoom_sweep as cfg  # pylint: disable=g-import-not-at-top
  c = cfg.get_config(f"model={model},data={data}")
  c.grid.scales = tuple(grid)
  c.extra_crops = False  # Not needed for top-1 / upper bound; saves 10 views per image.
  c.dtype = dtype
  c.limit = limit
  c.report = False
  c.batch_size = 1
  c.view_chunk = len(grid) * 9
  c.shard_size = 25
  return c


def metrics_of(rec, names):
  """1-crop top-1 and upper bound over the views `names` (a subset of the records' grid views)."""
  from zoomjax.data.label_space import is_correct  # pylint: disable=g-import-not-at-top
  view_names = [str(v) for v in rec.view_names]
  cols = [view_names.index(n) for n in names]
  top1 = rec.topk[:, cols, 0].astype(np.int64)
  labels = rec.labels
  correct = np.stack([np.asarray(is_correct(top1[:, v], labels)) for v in range(len(cols))], 1)
  one = names.index("LOC:1_1_Size:256")
  return {"one_crop_accuracy": float(correct[:, one].mean()), "upper_bound_accuracy": float(correct.any(1).mean()),
          "num_images": int(len(rec)), "num_views": len(cols)}, top1, rec.p_max[:, cols]


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--grid", default="reduced", help="'reduced' (6 scales incl. 256), 'paper', or scales a/b/c")
  p.add_argument("--data", default=os.path.join(os.path.dirname(REPO), "shared", "data", "imagenet-val-100"))
  p.add_argument("--model", default="efficientnet_lite0")
  p.add_argument("--limit", type=int, default=0)
  p.add_argument("--workdir", default="runs/bf16_accuracy", help="sweeps go to WORKDIR/{float32,bfloat16}")
  p.add_argument("--fp32-records", default="", help="reuse an fp32 sweep's records.npz (same images)")
  p.add_argument("--bf16-records", default="", help="reuse a bf16 sweep's records.npz (same images)")
  p.add_argument("--only", default="", choices=("", "float32", "bfloat16"),
                 help="run only this dtype's sweep and stop (run both at once, then combine with --*-records)")
  p.add_argument("--out", default="")
  a = p.parse_args(argv)
  from configs import zoom_sweep as cfg  # pylint: disable=g-import-not-at-top
  from zoomjax.analysis import records as R  # pylint: disable=g-import-not-at-top
  from zoomjax.jobs import zoom_sweep  # pylint: disable=g-import-not-at-top
  from zoomjax.runtime import config as config_lib  # pylint: disable=g-import-not-at-top
  grid = REDUCED_SCALES if a.grid == "reduced" else config_lib.grid_scales(a.grid, cfg.GRIDS)
  if 256 not in grid:
    raise ValueError(f"--grid {a.grid}: must contain scale 256 (the 1-crop view LOC:1_1_Size:256)")
  data = f"folder:{a.data}"
  recs, walls = {}, {}
  given = {"float32": a.fp32_records, "bfloat16": a.bf16_records}
  for dtype in ("float32", "bfloat16"):
    if a.only and dtype != a.only:
      continue
    if given[dtype]:
      recs[dtype] = R.load(given[dtype])
      continue
    wd = os.path.join(a.workdir, dtype)
    t = time.monotonic()
    zoom_sweep.run(_config(grid, data, a.model, dtype, a.limit), wd)
    walls[dtype] = time.monotonic() - t
    recs[dtype] = R.load(os.path.join(wd, R.FINAL_FILE))
  if a.only:
    print(f"{a.only} sweep done: {os.path.join(a.workdir, a.only, R.FINAL_FILE)}")
    return None
  names = [str(n) for n in recs["bfloat16"].view_names]
  if list(recs["float32"].index) != list(recs["bfloat16"].index):
    raise ValueError("the fp32 and bf16 records hold different images; use the same --data/--limit")
  res = {}
  top1, pmax = {}, {}
  for dtype in ("float32", "bfloat16"):
    res[dtype], top1[dtype], pmax[dtype] = metrics_of(recs[dtype], names)
    if dtype in walls:
      res[dtype]["sweep_wall_s"] = walls[dtype]
  res["view_top1_agreement"] = float((top1["float32"] == top1["bfloat16"]).mean())
  res["max_abs_p_max_change"] = float(np.abs(pmax["float32"] - pmax["bfloat16"]).max())
  res["mean_abs_p_max_change"] = float(np.abs(pmax["float32"] - pmax["bfloat16"]).mean())
  for k in ("one_crop_accuracy", "upper_bound_accuracy"):
    res[f"delta_{k}_points"] = 100 * (res["bfloat16"][k] - res["float32"][k])
  res.update({"model": a.model, "data": a.data, "scales": list(grid), "fp32_records": a.fp32_records or None,
              "bf16_records": a.bf16_records or None, "sweep_limit": a.limit,
              "command": " ".join(["python", "experiments/bf16_accuracy.py"] + (argv or sys.argv[1:]))})
  print(f"{'':<22}{'fp32':>10}{'bf16':>10}{'change':>10}")
  for k, label in (("one_crop_accuracy", "1-crop top-1"), ("upper_bound_accuracy", "upper bound")):
    f32, b16 = 100 * res["float32"][k], 100 * res["bfloat16"][k]
    print(f"{label:<22}{f32:>9.2f}%{b16:>9.2f}%{b16 - f32:>+9.2f}")
  print(f"views with the same top-1: {100 * res['view_top1_agreement']:.2f}% of "
        f"{top1['float32'].size}; max |change| of top-1 probability {res['max_abs_p_max_change']:.4f}")
  if a.out:
    with open(a.out, "w") as f:
      json.dump(res, f, indent=2)
    print(f"wrote {a.out}")
  return res


if __name__ == "__main__":
  main()
  from machine_info import line  # pylint: disable=g-import-not-at-top  experiments/machine_info.py
  print(line())
