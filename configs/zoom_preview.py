"""Preview the paper's zoom grid on one image: a labelled montage of every view.

  python -m zoomjax.main --config configs/zoom_preview.py --workdir /tmp/zoom_preview
  python -m zoomjax.main --config configs/zoom_preview.py:quick --workdir /tmp/zoom_preview   # 4 scales

Writes <workdir>/zoom_grid.png (one row per scale, one column per anchor). Override the photo with
--config.image=/path/to/photo.jpg.
"""
import ml_collections

from zoomjax.runtime import config as config_lib

# The allowed values of every numeric field, checked before the job writes anything (config_lib.validate).
RANGES = {
    "scales": config_lib.Range(1, integer=True),
    "anchors": config_lib.Range(1, integer=True),
    "crop": config_lib.Range(1, integer=True),
    "thumb": config_lib.Range(1, integer=True),
    "image": config_lib.InputFile(),
}


def get_config(arg=None):
  a = config_lib.parse_arg(arg, quick=False)
  c = ml_collections.ConfigDict()
  c.experiment = "zoom_preview"  # zoomjax.jobs.<experiment>.run(config, workdir) is what main.py runs.
  c.image = ""  # Path of the photo; "" = scikit-image's packaged cat (chelsea.png), no download.
  # Scales S (short side after resizing); () = the paper's 36 scales. `quick`: one per regime.
  c.scales = (32, 224, 256, 768) if a.quick else ()
  c.anchors = 3  # n x n anchor grid (the paper: 3 x 3).
  c.crop = 224  # Side of each view (the paper: 224).
  c.thumb = 112  # Side of each tile in the montage, in pixels (views are downsampled for the picture).
  return config_lib.add_common(c)
