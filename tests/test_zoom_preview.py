"""The zoom preview job writes a labelled montage whose tiles are the image's zoom crops, in grid order."""
import numpy as np
import pytest
from PIL import Image, ImageDraw

from configs import zoom_preview as preview_config
from zoomjax import zoom
from zoomjax.jobs import zoom_preview

LABEL_H, GAP = 12, 4  # zoomjax.jobs.zoom_preview's layout: a name band above each tile, gaps around tiles.


def small_photo(path, h=48, w=72, seed=0):
  """A small lossless image whose every region differs (each anchor and scale gives a different crop)."""
  rng = np.random.default_rng(seed)
  y, x = np.mgrid[:h, :w]
  img = np.stack([255 * x / w, 255 * y / h, rng.integers(0, 256, (h, w))], -1).astype(np.uint8)
  Image.fromarray(img).save(path)
  return img


def expected_tiles(image, config):
  """The actual crops (zoom.zoom_crops on the same image and grid), rounded and downsampled as the job does."""
  grid = zoom.ZoomGrid(tuple(config.scales), anchors=config.anchors, crop=config.crop)
  crops = np.clip(np.round(np.asarray(zoom.zoom_crops(image, grid))), 0, 255).astype(np.uint8)
  thumbs = [np.asarray(Image.fromarray(c).resize((config.thumb, config.thumb), Image.Resampling.BILINEAR))
            if config.thumb != config.crop else c for c in crops]
  return grid, crops, np.stack(thumbs)


def tiles_of(sheet, n, columns, thumb):
  """Cuts (name band, tile) pairs out of the montage at the job's layout."""
  out = []
  for i in range(n):
    x, y = GAP + (i % columns) * (thumb + GAP), GAP + (i // columns) * (thumb + LABEL_H + GAP)
    out.append((sheet[y:y + LABEL_H, x:x + thumb], sheet[y + LABEL_H:y + LABEL_H + thumb, x:x + thumb]))
  return out


def test_preview_tiles_are_the_zoom_crops(tmp_path):
  config = preview_config.get_config("quick")  # 4 scales (zoom-out 32, 224, zoom-in 256 / 768) x 3 x 3 anchors.
  assert config.experiment == "zoom_preview" and config.scales == (32, 224, 256, 768) and config.anchors == 3
  assert config.thumb < config.crop  # 224 px views downsampled to 112 px tiles.
  config.image = str(tmp_path / "photo.png")
  image = small_photo(config.image)
  path = zoom_preview.run(config, str(tmp_path / "out"))
  sheet = np.asarray(Image.open(path).convert("RGB"))
  grid, crops, want = expected_tiles(image, config)
  columns, t = config.anchors**2, grid.num_transforms
  assert t == 36 and sheet.shape == (GAP + 4 * (112 + LABEL_H + GAP), GAP + 9 * (112 + GAP), 3)
  names = []
  for i, (band, tile) in enumerate(tiles_of(sheet, t, columns, config.thumb)):
    np.testing.assert_array_equal(tile, want[i], err_msg=grid.names[i])
    # The band holds this tile's name, as PIL draws it in black on white.
    ref = Image.new("RGB", (config.thumb, LABEL_H), (255, 255, 255))
    ImageDraw.Draw(ref).text((0, 0), grid.names[i], fill=(0, 0, 0))
    np.testing.assert_array_equal(band, np.asarray(ref), err_msg=grid.names[i])
    names.append(grid.names[i])
  assert names[0] == "LOC:0_0_Size:32" and names[-1] == "LOC:2_2_Size:768"
  # The tiles are real, distinct views: a 32 px zoom-out is mostly black padding, zoom-ins are not, and
  # the nine anchors of the 768 zoom-in show nine different parts of the image.
  assert (crops[0] == 0).all(-1).mean() > 0.5 and (crops[-9:] == 0).all(-1).mean() < 0.01
  assert len({w.tobytes() for w in want[-9:]}) == 9


def test_preview_without_downsampling_keeps_the_crops(tmp_path):
  config = preview_config.get_config("quick")
  config.scales, config.anchors, config.crop, config.thumb = (8, 40), 2, 32, 32
  config.image = str(tmp_path / "photo.png")
  image = small_photo(config.image, 30, 20, seed=1)
  sheet = np.asarray(Image.open(zoom_preview.run(config, str(tmp_path))).convert("RGB"))
  # 4 columns (2x2 anchors) x 2 rows (scales) of 32 px tiles with their name bands.
  assert sheet.shape == (GAP + 2 * (32 + LABEL_H + GAP), GAP + 4 * (32 + GAP), 3)
  grid, crops, want = expected_tiles(image, config)
  for i, (_, tile) in enumerate(tiles_of(sheet, grid.num_transforms, 4, 32)):
    np.testing.assert_array_equal(tile, crops[i], err_msg=grid.names[i])


def test_preview_bad_image(tmp_path):
  config = preview_config.get_config("quick")
  config.image = str(tmp_path / "missing.jpg")
  with pytest.raises(FileNotFoundError, match="missing.jpg"):
    zoom_preview.run(config, str(tmp_path))
  (tmp_path / "not_an_image.jpg").write_text("hello")
  config.image = str(tmp_path / "not_an_image.jpg")
  with pytest.raises(ValueError, match="not an image"):
    zoom_preview.run(config, str(tmp_path))
