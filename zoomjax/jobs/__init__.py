"""One module per experiment kind; each exposes `run(config, workdir)`.

  zoom_sweep    a dataset through the zoom grid and a model: records, metrics, report (configs/zoom_sweep.py).
  zoom_preview  one image's zoom grid as a contact sheet (configs/zoom_preview.py).
  tta           baseline, MEMO + AugMix, MEMO + RRC or zoom aggregation over a dataset (configs/tta.py).
  evaluate      top-1 / top-5 of many models on many datasets (configs/evaluate.py).
  study         the cross-run study over finished sweeps (configs/study.py).
  imagenet_c    one TTA method over ImageNet-C's corruptions x severities: errors, mCE (configs/imagenet_c.py).

`python -m zoomjax.main --config configs/<job>.py --workdir DIR` runs one; from Python,
`zoomjax.jobs.tta.run(config, workdir)` with the config's `get_config(arg)`. Job modules load on first use.
"""
import importlib
from typing import Any, List

__all__ = ["zoom_sweep", "zoom_preview", "tta", "evaluate", "study", "imagenet_c"]


def __getattr__(name: str) -> Any:
  if name in __all__:
    return importlib.import_module(f"{__name__}.{name}")
  raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> List[str]:
  return sorted(set(globals()) | set(__all__))
