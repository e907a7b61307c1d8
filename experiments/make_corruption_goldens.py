"""Expected outputs for tests/test_corruptions.py, computed once by an OpenCV-based ImageNet-C implementation.

Run in a throwaway venv that has `corrupt-tta` 0.1.7 with its own dependencies (OpenCV, scikit-image, SciPy);
zoomjax never imports it:

  python experiments/make_corruption_goldens.py tests/golden/corruptions.npz

corrupt-tta keeps the benchmark's constants and formulas (hendrycks/robustness,
ImageNet-C/create_c/make_imagenet_c.py) for the corruptions stored here: the deterministic ones (defocus blur
through OpenCV's filter2D and GaussianBlur as in the benchmark, zoom blur, Gaussian blur, brightness and
saturate through OpenCV's HSV, contrast, JPEG, pixelate) and the noises whose only randomness is one NumPy
draw (Gaussian, shot, speckle: the same values as zoomjax's RandomState(seed) after np.random.seed(seed)). Its
glass blur, motion blur, snow, fog, frost, elastic transform and spatter depart from the benchmark's, so they
are not stored. The input is a synthetic 40 x 40 picture (no third-party data).
"""
import sys

import numpy as np


def picture() -> np.ndarray:
  """A deterministic 40 x 40 RGB picture with smooth and sharp parts (tests/test_corruptions.py makes the same)."""
  i, j = np.mgrid[0:40, 0:40].astype(np.float64)
  r = 127 + 100 * np.sin(i / 5.0) * np.cos(j / 7.0)
  g = (i * 6 + j * 3) % 256
  b = np.where((i // 8 + j // 8) % 2 == 0, 200.0, 40.0)
  return np.clip(np.stack([r, g, b], -1), 0, 255).astype(np.uint8)


DETERMINISTIC = ("defocus_blur", "zoom_blur", "gaussian_blur", "brightness", "saturate", "contrast",
                 "jpeg_compression", "pixelate")
SEEDED = ("gaussian_noise", "shot_noise", "speckle_noise")
SEED = 1234


def main(out_path: str) -> None:
  from corrupt_tta import corrupt  # pylint: disable=import-outside-toplevel
  x = picture()
  out = {"input": x}
  for name in DETERMINISTIC + SEEDED:
    for severity in range(1, 6):
      np.random.seed(SEED)
      y = corrupt(x, severity=severity, corruption_name=name)
      out[f"{name}/{severity}"] = np.uint8(np.clip(np.asarray(y, np.float64), 0, 255))
  np.savez_compressed(out_path, **out)
  print(f"wrote {len(out) - 1} arrays to {out_path}")


if __name__ == "__main__":
  main(sys.argv[1])
