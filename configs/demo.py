"""The embedded default: `python -m zoomjax.main --config configs/demo.py --workdir runs/demo` (`make demo`).

Until the sweep lands this previews the paper's zoom grid on one packaged photo.
"""
from configs import zoom_preview


def get_config(arg=None):
  return zoom_preview.get_config(arg)
