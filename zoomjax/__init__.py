"""zoomjax: would this classifier have been right with a better framing?

  from zoomjax import zoom, models, data, tta      # or: import zoomjax; zoomjax.zoom.zoom_crops(...)
  crops = zoom.zoom_crops(image, zoom.ZoomGrid.paper())   # the paper's 324 views of one image
  bundle = models.load("efficientnet_lite0")

Subpackages load on first use, so `import zoomjax` costs nothing until one is touched (docs/api.md lists the API).
"""
import importlib
from typing import Any, List

__version__ = "0.1.0"

__all__ = ["zoom", "models", "data", "tta", "analysis", "reports", "jobs", "errors"]

# Importable through attribute access too, undocumented: the building blocks under the public API.
_SUBMODULES = frozenset(__all__) | {"checkpoints", "kernels", "resample", "runtime", "sweep"}


def __getattr__(name: str) -> Any:
  if name in _SUBMODULES:
    return importlib.import_module(f"{__name__}.{name}")
  raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> List[str]:
  return sorted(set(globals()) | set(__all__))
