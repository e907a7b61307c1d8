"""The zoom preview job writes a labelled montage with one tile per transform."""
import numpy as np
import pytest
from PIL import Image

from configs import zoom_preview as preview_config
from zoomjax.jobs import zoom_preview


def test_preview_writes_montage(tmp_path):
  config = preview_config.get_config("quick")
  assert config.experiment == "zoom_preview" and len(config.scales) == 4
  config.scales = (8, 40)
  config.anchors = 2
  config.crop = 32
  config.thumb = 32
  path = zoom_preview.run(config, str(tmp_path))
  sheet = np.asarray(Image.open(path))
  # 4 columns (2x2 anchors) x 2 rows (scales) of 32 px tiles with their name bands.
  assert sheet.shape == (4 + 2 * (32 + 12 + 4), 4 + 4 * (32 + 4), 3)
  assert sheet.min() == 0 and sheet.max() == 255  # Black padding of the zoom-out tiles, white margins.


def test_preview_bad_image(tmp_path):
  config = preview_config.get_config("quick")
  config.image = str(tmp_path / "missing.jpg")
  with pytest.raises(FileNotFoundError, match="missing.jpg"):
    zoom_preview.run(config, str(tmp_path))
  (tmp_path / "not_an_image.jpg").write_text("hello")
  config.image = str(tmp_path / "not_an_image.jpg")
  with pytest.raises(ValueError, match="not an image"):
    zoom_preview.run(config, str(tmp_path))
