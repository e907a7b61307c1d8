"""Preview of a zoom grid: every view of one image in a labelled montage (`zoom_grid.png`).

  python -m zoomjax.main --config configs/zoom_preview.py --workdir /tmp/zoom_preview

Shows exactly what the classifiers see (before normalisation): one row per scale, one column per anchor,
each tile titled with its transform name (LOC:<row>_<col>_Size:<S>).
"""
import os
from typing import Sequence

import numpy as np
from absl import logging
from PIL import Image, ImageDraw

from zoomjax import zoom
from zoomjax.errors import NotFoundError, UserError
from zoomjax.runtime import config as config_lib
from zoomjax.runtime import console

_LABEL_H = 12  # Pixels above each tile for its name (PIL's default bitmap font is ~11 px high).
_GAP = 4


def default_image() -> str:
  """The CC0 cat photo that ships inside scikit-image (no network)."""
  import skimage.data  # pylint: disable=g-import-not-at-top
  return os.path.join(skimage.data.data_dir, "chelsea.png")


def load_rgb(path: str) -> np.ndarray:
  if not os.path.exists(path):
    raise NotFoundError(f"config.image: no such file {path!r}")
  try:
    with Image.open(path) as im:
      return np.asarray(im.convert("RGB"))
  except OSError as e:
    raise UserError(f"config.image: {path!r} is not an image PIL can read ({e})") from e


def montage(crops: np.ndarray, names: Sequence[str], columns: int, thumb: int) -> Image.Image:
  """(T, c, c, 3) crops in [0, 255] -> one image, `columns` tiles per row, each `thumb` px with its name."""
  crops = np.clip(np.round(np.asarray(crops)), 0, 255).astype(np.uint8)
  rows = -(-len(crops) // columns)
  tile_w, tile_h = thumb + _GAP, thumb + _LABEL_H + _GAP
  sheet = Image.new("RGB", (columns * tile_w + _GAP, rows * tile_h + _GAP), (255, 255, 255))
  draw = ImageDraw.Draw(sheet)
  for i, (crop, name) in enumerate(zip(crops, names)):
    x, y = _GAP + (i % columns) * tile_w, _GAP + (i // columns) * tile_h
    tile = Image.fromarray(crop)
    if tile.size != (thumb, thumb):
      tile = tile.resize((thumb, thumb), Image.Resampling.BILINEAR)
    sheet.paste(tile, (x, y + _LABEL_H))
    draw.text((x, y), name, fill=(0, 0, 0))
  return sheet


def run(config, workdir: str) -> str:
  """Writes <workdir>/zoom_grid.png and returns its path."""
  config_lib.check_job(config, workdir)  # What zoomjax.main checks, for calls from Python too.
  path = config.get("image") or default_image()
  image = load_rgb(path)
  scales = config.get("scales")
  grid = zoom.ZoomGrid(tuple(scales) if scales else zoom.PAPER_SCALES, anchors=int(config.anchors),
                       crop=int(config.crop))
  logging.info("zoom preview of %s (%d x %d): %d transforms", path, image.shape[1], image.shape[0],
               grid.num_transforms)
  console.say(f"compiling the zoom grid ({grid.num_transforms} views) for a {image.shape[1]}x{image.shape[0]} "
              "image...")
  crops = np.asarray(zoom.zoom_crops(image, grid))
  os.makedirs(workdir, exist_ok=True)
  out = os.path.join(workdir, "zoom_grid.png")
  montage(crops, grid.names, grid.anchors**2, int(config.thumb)).save(out)
  logging.info("wrote %s", out)
  print(f"zoom grid montage: {out}")
  return out
