"""The image explorer of a finished sweep: static files (no server) to look at every view of every image.

  python -m zoomjax.reports.explorer WORKDIR [--out DIR] [--max-images N]     (default DIR: WORKDIR/explorer)

`write_explorer` writes explorer.html (the packaged page zoomjax/reports/assets/explorer.html with its title and
data file filled in), explorer_data.js (the records of the images shown, as one JS literal, since
browsers do not let a file:// page fetch JSON) and thumbs/ (each original, downscaled to `thumb_side` keeping its
proportions). Per image the page shows the zoom grid (one row per scale, one column per anchor) coloured by the
probability of the true label, correct views marked and the 1-crop outlined; hovering or clicking a view shows its
name, its top-5 classes and the crop itself, drawn on a <canvas> from the thumbnail with zoom.py's geometry
(short side to S, the crop window centred on the anchor's tile, black outside). Records keep the top-1 and the
true-label probabilities of a view, not the other top-5 probabilities, so only those two are shown. Images are
searchable by id or class and sortable by "rescued" (1-crop wrong, some view right) and "never solved".

Only an explicit call writes into a sweep's workdir; the study job writes its explorers into its own workdir.
Test hook: `explorer.html#test-click=<id>[&view=<name>][&search=<text>][&sort=<key>]` selects the image, clicks
the view (default: its best correct view, else the 1-crop), and writes what the page shows into
<pre id="test-result"> (JSON), for headless Chromium's --dump-dom.
"""
import argparse
import importlib.resources
import json
import os
from typing import Callable, List, Optional, Sequence

import numpy as np

from zoomjax import errors
from zoomjax.analysis import metrics as analyses
from zoomjax.analysis import sweep_results as sweep_workdir
from zoomjax.reports import html
from zoomjax.runtime import atomic
from zoomjax.runtime import cli
from zoomjax.runtime import console

__all__ = ["DATA_FILE", "PAGE_FILE", "THUMBS", "choose_rows", "explorer_data", "page_template", "write_explorer",
           "main"]

DATA_FILE = "explorer_data.js"
PAGE_FILE = "explorer.html"
THUMBS = "thumbs"


def choose_rows(C: np.ndarray, one_crop: Optional[int], max_images: int) -> np.ndarray:
  """Rows shown when there are more than `max_images`: the rescued images (1-crop wrong, some view right), then
  the never-solved ones, then the rest, each in dataset order; returned in dataset order."""
  n = C.shape[0]
  if max_images <= 0 or n <= max_images:
    return np.arange(n)
  solved = C.any(axis=1)
  rescued = solved & ~C[:, one_crop] if one_crop is not None else np.zeros(n, bool)
  order = np.concatenate([np.flatnonzero(rescued), np.flatnonzero(~solved), np.flatnonzero(solved & ~rescued)])
  return np.sort(order[:max_images])


def explorer_data(sweep: sweep_workdir.Sweep, rec, rows: np.ndarray, thumbs: List[Optional[str]],
                  sizes: List[Optional[List[int]]]) -> dict:
  """The JSON-ready data of the page: grid, class names, and per shown image its views' records."""
  from zoomjax.data import classes  # pylint: disable=g-import-not-at-top
  names = [str(v) for v in rec.view_names]
  C = analyses.correctness(rec.top1, rec.labels)
  j = names.index(analyses.ONE_CROP_VIEW) if analyses.ONE_CROP_VIEW in names else None
  scales, anchors, crop = sweep.grid
  images = []
  for k, i in enumerate(rows):
    ok = C[i]
    images.append({
        "id": str(rec.ids[i]), "index": int(rec.index[i]), "labels": [int(x) for x in rec.labels[i] if x >= 0],
        "hw": sizes[k], "thumb": thumbs[k],
        "p_true": [round(float(v), 4) for v in rec.p_true[i]], "p_max": [round(float(v), 4) for v in rec.p_max[i]],
        "top5": _top5(rec.topk[i]).reshape(-1).tolist(), "correct": "".join("1" if v else "0" for v in ok),
        "n_correct": int(ok.sum()), "one_crop_correct": None if j is None else bool(ok[j]),
        "rescued": bool(j is not None and not ok[j] and ok.any()), "never": bool(not ok.any())})
  return {"model": sweep.label, "dataset": str(sweep.dataset.get("name")), "workdir": sweep.workdir,
          "grid": {"scales": list(scales), "anchors": anchors, "crop": crop}, "view_names": names,
          "one_crop_view": -1 if j is None else j, "classes": classes.class_names(),
          "num_images_total": len(rec), "images": images}


def _top5(topk: np.ndarray) -> np.ndarray:
  """(V, k) top-k ids -> (V, 5): the page lists five per view (-1 pads records that keep fewer)."""
  out = np.full((topk.shape[0], 5), -1, np.int64)
  out[:, :min(5, topk.shape[1])] = topk[:, :5]
  return out


def write_explorer(sweep_dir: str, out_dir: Optional[str] = None, max_images: int = 200, *, thumb_side: int = 512,
                   read_image: Optional[Callable[[int], np.ndarray]] = None) -> str:
  """Writes the explorer of the finished sweep in `sweep_dir` into `out_dir` (default: `sweep_dir`/explorer);
  returns the path of explorer.html.

  max_images: at most this many images (0 = all; `choose_rows` picks which). thumb_side: longest side of the
  stored originals. read_image(global index) -> uint8 (H, W, 3): the originals (default: the sweep's dataset,
  rebuilt from its config.json; without it the page shows no crops, with a warning).
  """
  sweep = sweep_workdir.open_sweep(sweep_dir)
  out_dir = out_dir or os.path.join(sweep_dir, "explorer")
  rec = sweep.records()
  names = [str(v) for v in rec.view_names]
  C = analyses.correctness(rec.top1, rec.labels)
  one = names.index(analyses.ONE_CROP_VIEW) if analyses.ONE_CROP_VIEW in names else None
  rows = choose_rows(C, one, int(max_images))
  if read_image is None:
    try:
      ds = sweep_workdir.source_dataset(sweep)
      read_image = lambda i: ds.read(i)["image"]  # noqa: E731
    except errors.UserError as e:
      console.warn(f"explorer of {sweep_dir}: no originals, so no crops ({e})")
  os.makedirs(os.path.join(out_dir, THUMBS), exist_ok=True)
  thumbs, sizes = [], []
  for i in rows:
    thumb, hw = None, None
    if read_image is not None:
      try:
        image = np.asarray(read_image(int(rec.index[i])))
        hw = [int(image.shape[0]), int(image.shape[1])]
        thumb = f"{THUMBS}/{int(rec.index[i]):06d}.jpg"
        html.save_thumbnail(image, os.path.join(out_dir, thumb), max_side=int(thumb_side))
      except Exception as e:  # pylint: disable=broad-except  One unreadable original costs its crops only.
        console.warn(f"explorer of {sweep_dir}: cannot read image {rec.ids[i]} ({type(e).__name__}: {e})")
        thumb, hw = None, None
    thumbs.append(thumb)
    sizes.append(hw)
  data = analyses.nan_to_none(explorer_data(sweep, rec, rows, thumbs, sizes))
  atomic.write_text(os.path.join(out_dir, DATA_FILE),
                    "window.EXPLORER_DATA = " + json.dumps(data, separators=(",", ":"), allow_nan=False) + ";\n")
  title = f"{sweep.label} on {data['dataset']}"
  page = page_template().replace("__TITLE__", html.escape(title)).replace("__DATA__", DATA_FILE)
  path = os.path.join(out_dir, PAGE_FILE)
  atomic.write_text(path, page)
  return path


def page_template() -> str:
  """The packaged page (zoomjax/reports/assets/explorer.html) with its __TITLE__ and __DATA__ placeholders."""
  return (importlib.resources.files("zoomjax.reports") / "assets" / PAGE_FILE).read_text(encoding="utf-8")


def main(argv: Optional[Sequence[str]] = None) -> int:
  """`python -m zoomjax.reports.explorer WORKDIR ...`: 0 when written; a user error ends in one line (exit 2)."""
  p = argparse.ArgumentParser(prog="python -m zoomjax.reports.explorer", description=__doc__.split("\n\n")[0])
  p.add_argument("workdir", help="a finished zoom_sweep workdir")
  p.add_argument("--out", default=None, help="output folder (default: WORKDIR/explorer)")
  p.add_argument("--max-images", type=int, default=200, help="at most this many images (0 = all)")
  p.add_argument("--thumb-side", type=int, default=512, help="longest side of the stored originals, px")
  p.add_argument("--verbose", action="store_true", help="also print the traceback of a user error")
  a = p.parse_args(argv)
  try:
    path = write_explorer(a.workdir, a.out, a.max_images, thumb_side=a.thumb_side)
  except Exception as e:  # pylint: disable=broad-except  User errors end in one line; bugs are re-raised.
    cli.exit_on_user_error(e, a.verbose)
    raise
  print(f"explorer: {os.path.abspath(path)}")
  return 0


if __name__ == "__main__":
  raise SystemExit(main())
