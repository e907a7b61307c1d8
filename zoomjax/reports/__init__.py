"""What a person looks at: HTML pages, figures, tables and the image explorer.

  html      the shared toolkit: escaping, the one value-with-interval format, tables, thumbnails.
  figures   matplotlib figures (Agg backend; pyplot is never imported).
  sweep     a sweep's report.html.
  study     the cross-run study's study.html.
  evaluate  the evaluation job's results.html.
  explorer  the image explorer (a static page over a finished sweep; its page is assets/explorer.html).

Nothing here imports `zoomjax.jobs` (tests/test_import_graph.py).
"""
import importlib
from typing import Any, List

# Public name -> (module, attribute). Imported on first use: the pages pull in matplotlib and PIL, which a job
# that only formats a number (`zoomjax.reports.html`) does not need.
_EXPORTS = {
    "write_sweep_report": ("sweep", "write_report"),
    "write_study_report": ("study", "write_study_report"),
    "write_evaluate_report": ("evaluate", "write_report"),
    "write_explorer": ("explorer", "write_explorer"),
}

__all__ = ["write_sweep_report", "write_study_report", "write_evaluate_report", "write_explorer"]


def __getattr__(name: str) -> Any:
  if name in _EXPORTS:
    module, attr = _EXPORTS[name]
    return getattr(importlib.import_module(f"{__name__}.{module}"), attr)
  raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> List[str]:
  return sorted(set(globals()) | set(__all__))
