"""ImageNet-C scores: corruption errors normalised by AlexNet's, mCE and relative mCE (Hendrycks & Dietterich 2019).

  s = summary({"gaussian_noise": {5: 0.71, ...}, ...}, clean_error=0.25)
  s["mce"], s["relative_mce"], s["ce"]["gaussian_noise"], s["mean_error_by_severity"][5]

Definitions (D. Hendrycks and T. Dietterich, "Benchmarking Neural Network Robustness to Common Corruptions and
Perturbations", ICLR 2019, section 3): with E_{s,c} the top-1 error on corruption c at severity s,
  CE_c          = sum_s E_{s,c} / sum_s E^AlexNet_{s,c}
  mCE           = mean of CE_c over the 15 corruptions
  relative CE_c = sum_s (E_{s,c} - E_clean) / sum_s (E^AlexNet_{s,c} - E^AlexNet_clean)
  relative mCE  = mean of relative CE_c over the 15 corruptions
all times 100 when printed as percentages. Over a subset of severities, the sums run over the severities run
(AlexNet's too), so a severity-5-only score is E_{5,c} / E^AlexNet_{5,c}; `summary` says which were used, and
calls it mCE only when all 15 corruptions are there.

ALEXNET_ERRORS are AlexNet's published ImageNet-C top-1 errors per corruption and severity, as distributed with
the benchmark's evaluation code by its users (their per-corruption means are the CE denominators quoted
everywhere: Gaussian noise 0.886428, ...; tests/test_imagenet_c.py checks every mean); ALEXNET_CLEAN_ERROR is
the clean top-1 error of torchvision's pretrained AlexNet, the network those errors were measured with (43.45 %;
the paper prints it rounded, 43.5).
"""
from typing import Any, Dict, Mapping, Optional

import numpy as np

__all__ = ["CORRUPTIONS", "ALEXNET_ERRORS", "ALEXNET_CE", "ALEXNET_CLEAN_ERROR", "corruption_error",
           "relative_corruption_error", "summary"]

# The benchmark's 15 corruptions in its table order (the same list as zoomjax.data.corruptions.CORRUPTIONS;
# the analysis wing does not import the data wing).
CORRUPTIONS = ("gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "glass_blur", "motion_blur",
               "zoom_blur", "snow", "frost", "fog", "brightness", "contrast", "elastic_transform", "pixelate",
               "jpeg_compression")

# AlexNet's top-1 error at severities 1..5.
ALEXNET_ERRORS: Dict[str, tuple] = {
    "gaussian_noise": (0.69528, 0.82542, 0.93554, 0.98138, 0.99452),
    "shot_noise": (0.71224, 0.85108, 0.93574, 0.98182, 0.99146),
    "impulse_noise": (0.78374, 0.89808, 0.94870, 0.98720, 0.99548),
    "defocus_blur": (0.65624, 0.73202, 0.85036, 0.91364, 0.94714),
    "glass_blur": (0.64308, 0.75054, 0.88806, 0.91622, 0.93344),
    "motion_blur": (0.58430, 0.70048, 0.82108, 0.89750, 0.92638),
    "zoom_blur": (0.70008, 0.76992, 0.80784, 0.84198, 0.87198),
    "snow": (0.71726, 0.88392, 0.86468, 0.91870, 0.94952),
    "frost": (0.61390, 0.79734, 0.88790, 0.89942, 0.93430),
    "fog": (0.67474, 0.76050, 0.84378, 0.87260, 0.94500),
    "brightness": (0.45140, 0.48502, 0.54048, 0.62166, 0.72440),
    "contrast": (0.64548, 0.76150, 0.88874, 0.97760, 0.99270),
    "elastic_transform": (0.52596, 0.70116, 0.55686, 0.64076, 0.80554),
    "pixelate": (0.52218, 0.54620, 0.73728, 0.87092, 0.91262),
    "jpeg_compression": (0.51002, 0.54718, 0.57294, 0.65458, 0.74778),
}
# AlexNet's mean error over the 5 severities per corruption (the CE denominators over all severities).
ALEXNET_CE = {c: float(np.mean(e)) for c, e in ALEXNET_ERRORS.items()}
ALEXNET_CLEAN_ERROR = 0.4345


def _alexnet(corruption: str, severity: int) -> float:
  if corruption not in ALEXNET_ERRORS:
    raise ValueError(f"no AlexNet errors for {corruption!r} (the benchmark's 15: {', '.join(CORRUPTIONS)})")
  if int(severity) not in (1, 2, 3, 4, 5):
    raise ValueError(f"severity {severity}: must be 1-5")
  return ALEXNET_ERRORS[corruption][int(severity) - 1]


def corruption_error(corruption: str, errors: Mapping[int, float]) -> float:
  """CE_c: the summed errors over the severities in `errors` ({severity: error in [0, 1]}) over AlexNet's."""
  sev = sorted(int(s) for s in errors)
  return float(sum(errors[s] for s in sev) / sum(_alexnet(corruption, s) for s in sev))


def relative_corruption_error(corruption: str, errors: Mapping[int, float], clean_error: float) -> float:
  """Relative CE_c: the summed error increases over clean, over AlexNet's (its clean error ALEXNET_CLEAN_ERROR)."""
  sev = sorted(int(s) for s in errors)
  num = sum(errors[s] - clean_error for s in sev)
  den = sum(_alexnet(corruption, s) - ALEXNET_CLEAN_ERROR for s in sev)
  return float(num / den)


def summary(errors: Mapping[str, Mapping[int, float]], clean_error: Optional[float] = None) -> Dict[str, Any]:
  """The scores of a grid of errors {corruption: {severity: top-1 error in [0, 1]}}.

  Returns: corruptions and severities (as run, in the benchmark's order), `mean_error_by_severity` {s: mean
  over the corruptions run}, `mean_error`, `ce` / `relative_ce` {corruption: value} (only the benchmark's 15
  have AlexNet errors; the extra 4 get none), `mce` / `relative_mce` (mean over those with a CE; None when none),
  `complete` (all 15 corruptions at all 5 severities: the benchmark's mCE).
  """
  order = [c for c in CORRUPTIONS if c in errors] + sorted(c for c in errors if c not in CORRUPTIONS)
  severities = sorted({int(s) for c in order for s in errors[c]})
  by_sev = {s: float(np.mean([errors[c][s] for c in order if s in errors[c]])) for s in severities}
  ce = {c: corruption_error(c, errors[c]) for c in order if c in ALEXNET_ERRORS and errors[c]}
  rel = ({c: relative_corruption_error(c, errors[c], clean_error) for c in ce} if clean_error is not None else {})
  cells = [errors[c][s] for c in order for s in errors[c]]
  complete = all(c in errors and set(int(s) for s in errors[c]) == {1, 2, 3, 4, 5} for c in CORRUPTIONS)
  return {
      "corruptions": order,
      "severities": severities,
      "mean_error_by_severity": by_sev,
      "mean_error": float(np.mean(cells)) if cells else None,
      "ce": ce,
      "mce": float(np.mean(list(ce.values()))) if ce else None,
      "relative_ce": rel,
      "relative_mce": float(np.mean(list(rel.values()))) if rel else None,
      "clean_error": clean_error,
      "complete": complete,
  }

