"""Evaluation preprocessing of each checkpoint family: one `Preprocessing` per family, never a global default.

Means and standard deviations are in pixel units (0..255), so `normalize` applies to zoom crops directly.
"""
import dataclasses
import math
from typing import Tuple, Union

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

from zoomjax import resample
from zoomjax.errors import UserError

# PIL filter and its support (Resample.c): it reads `support * max(in / out, 1)` input pixels either side.
_PIL_FILTERS = {"bicubic": (Image.Resampling.BICUBIC, 2.0), "bilinear": (Image.Resampling.BILINEAR, 1.0)}


@dataclasses.dataclass(frozen=True)
class Preprocessing:
  """Standard evaluation preprocessing of one checkpoint family; mean/std in pixel units (0..255).

  Validated when made (`UserError` naming the field): positive whole sizes, a known filter, 3 finite means and
  3 finite positive standard deviations."""
  input_size: int  # Side of the square input the model expects (e.g. 224).
  resize_size: int  # Short side before the centre crop in standard eval (e.g. 256).
  resize_method: str  # "bicubic" | "bilinear" (PIL filters).
  mean: Tuple[float, float, float]
  std: Tuple[float, float, float]
  # "center": the short side becomes resize_size (torchvision/timm default); "squash": both sides do, the
  # aspect ratio is not kept (timm's crop_mode='squash' of its 384/448/512 px fine-tunes). Then the centre crop.
  crop_mode: str = "center"
  # False (bilinear only): TensorFlow's `tf.image.resize(method="bilinear", antialias=False)`, the default of
  # big_vision's `resize` op (SigLIP's evaluation): 2 taps per axis at half-pixel centres whatever the scale, the
  # result truncated to uint8 by big_vision's cast back to the image's dtype. True: PIL's antialiased filters.
  antialias: bool = True

  def __post_init__(self):
    # Checked where it is made: a zero std or a negative size would otherwise surface as NaN logits or an
    # empty view deep inside a job, and be blamed on the checkpoint.
    for field in ("input_size", "resize_size"):
      value = getattr(self, field)
      if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise UserError(f"preprocessing.{field}={value!r}: must be a positive whole number of pixels")
    if self.crop_mode not in ("center", "squash"):
      raise UserError(f"preprocessing.crop_mode={self.crop_mode!r}: use 'center' or 'squash'")
    if self.resize_method not in _PIL_FILTERS:
      raise UserError(f"preprocessing.resize_method={self.resize_method!r}: use one of {sorted(_PIL_FILTERS)}")
    if not isinstance(self.antialias, (bool, np.bool_)) or (not self.antialias and self.resize_method != "bilinear"):
      raise UserError(f"preprocessing.antialias={self.antialias!r} with resize_method={self.resize_method!r}: "
                      "antialias is True or False, and False (TensorFlow's resize) only with 'bilinear'")
    for field, positive in (("mean", False), ("std", True)):
      value = getattr(self, field)
      try:
        numbers = [float(v) for v in value]
      except (TypeError, ValueError):
        numbers = []
      if len(numbers) != 3 or not all(math.isfinite(v) and (v > 0 or not positive) for v in numbers):
        rule = "finite and > 0" if positive else "finite"
        raise UserError(f"preprocessing.{field}={value!r}: need 3 values (R, G, B in pixel units 0..255), each "
                        f"{rule}")

  def normalize(self, pixels: jax.Array) -> jax.Array:
    """Float pixel values in [0, 255] (..., 3) -> model input."""
    mean = jnp.asarray(self.mean, jnp.float32)
    std = jnp.asarray(self.std, jnp.float32)
    return (pixels - mean) / std

  def pil_view(self, image: Union[np.ndarray, Image.Image]) -> np.ndarray:
    """uint8 (H, W, 3) or an RGB PIL image -> the standard eval view, uint8 (input_size, input_size, 3), with PIL.

    torchvision's `Resize(resize_size)` (short side; long side `int(resize_size * long / short)`; with
    `crop_mode="squash"` both sides) with this filter, then `CenterCrop(input_size)` (top = round((H' - size) /
    2)): what the checkpoints were scored with. With `antialias=False`, TensorFlow's bilinear resize instead of
    PIL's (big_vision's `resize` op, bit-exact with `tf.image.resize`), evaluated at the kept pixels only.
    PIL resizes in two separable passes through an 8-bit image, in the order `resample.pil_vertical_first`
    gives. Running them one at a time in that order gives the same bytes while skipping work the crop
    discards. The first pass reads only the input rows (or columns) that the kept outputs use. The second pass
    runs only on the kept ones; the lines it never reads stay black, since they get no weight.
    """
    im = image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image, np.uint8))
    w, h = im.size
    (s, size), (filt, support) = (self.resize_size, self.input_size), _PIL_FILTERS[self.resize_method]
    nh, nw = (int(s * h / w), s) if w <= h else (s, int(s * w / h))
    if self.crop_mode == "squash":
      nh = nw = s
    top, left = int(round((nh - size) / 2.0)), int(round((nw - size) / 2.0))
    if not self.antialias:
      rows, cols = _tf_bilinear_taps(h, nh, top, size), _tf_bilinear_taps(w, nw, left, size)
      return _tf_bilinear(np.asarray(im.convert("RGB"), np.float32), rows, cols)
    if resample.pil_vertical_first((h, w), (nh, nw)):
      c0, c1 = _lines_read(w, nw, left, left + size, support)
      cols = im.crop((c0, 0, c1, h)).resize((c1 - c0, nh), filt).crop((0, top, c1 - c0, top + size))
      im = _placed(cols, (w, size), (c0, 0))
      return np.asarray(im.resize((nw, size), filt).crop((left, 0, left + size, size)), np.uint8)
    r0, r1 = _lines_read(h, nh, top, top + size, support)
    rows = im.crop((0, r0, w, r1)).resize((nw, r1 - r0), filt).crop((left, 0, left + size, r1 - r0))
    im = _placed(rows, (size, h), (0, r0))
    return np.asarray(im.resize((size, nh), filt).crop((0, top, size, top + size)), np.uint8)


def _tf_bilinear_taps(in_size: int, out_size: int, start: int, count: int) -> Tuple[np.ndarray, ...]:
  """Output lines [start, start + count) of TensorFlow's bilinear resize from `in_size` to `out_size` lines
  (ResizeBilinear, half-pixel centres, float32 as its kernel computes them): (lower, upper, weight of upper)."""
  scale = np.float32(in_size) / np.float32(out_size)
  pos = (np.arange(start, start + count, dtype=np.float32) + np.float32(0.5)) * scale - np.float32(0.5)
  floor = np.floor(pos)
  lower = np.maximum(floor, 0).astype(np.int64)
  upper = np.minimum(np.ceil(pos), in_size - 1).astype(np.int64)
  return lower, upper, (pos - floor).astype(np.float32)


def _tf_bilinear(x: np.ndarray, rows: Tuple[np.ndarray, ...], cols: Tuple[np.ndarray, ...]) -> np.ndarray:
  """TensorFlow's bilinear interpolation of float32 (H, W, 3) at `rows` x `cols` (`_tf_bilinear_taps`), in its
  order of float32 operations, then big_vision's clip and cast to uint8 (truncation)."""
  (y0, y1, wy), (x0, x1, wx) = rows, cols
  wx, wy = wx[None, :, None], wy[:, None, None]
  top, bottom = x[y0], x[y1]
  top = top[:, x0] + (top[:, x1] - top[:, x0]) * wx
  bottom = bottom[:, x0] + (bottom[:, x1] - bottom[:, x0]) * wx
  return np.clip(top + (bottom - top) * wy, 0.0, 255.0).astype(np.uint8)


def _lines_read(in_size: int, out_size: int, lo: int, hi: int, support: float) -> Tuple[int, int]:
  """The input lines [a, b) that PIL's resize from `in_size` to `out_size` reads for output lines [lo, hi).

  Pillow's own bounds (precompute_coeffs), widened by one line either side against rounding."""
  scale = in_size / out_size
  reach = support * max(scale, 1.0)
  first = int((lo + 0.5) * scale - reach + 0.5)
  last = int((hi - 0.5) * scale + reach + 0.5)
  return max(first - 1, 0), min(last + 1, in_size)


def _placed(part: Image.Image, size: Tuple[int, int], at: Tuple[int, int]) -> Image.Image:
  """`part` at `at` on a black image of `size` (w, h): the full-size input of PIL's second pass."""
  if part.size == size:
    return part
  out = Image.new(part.mode, size)
  out.paste(part, at)
  return out


IMAGENET_MEAN = (0.485 * 255, 0.456 * 255, 0.406 * 255)
IMAGENET_STD = (0.229 * 255, 0.224 * 255, 0.225 * 255)
# OpenAI CLIP's normalisation.
CLIP_MEAN = (0.48145466 * 255, 0.4578275 * 255, 0.40821073 * 255)
CLIP_STD = (0.26862954 * 255, 0.26130258 * 255, 0.27577711 * 255)
# Official EfficientNet-Lite: (x - 127) / 128 on RGB in [0, 255].
LITE_MEAN = (127.0, 127.0, 127.0)
LITE_STD = (128.0, 128.0, 128.0)
# Official EfficientNet eval crops size/(size + 32) of the short side, then resizes bicubically to size:
# the same framing as resizing the short side to size + 32 and centre-cropping size.
LITE_CROP_PADDING = 32

# torchvision's IMAGENET1K_V1 evaluation transform: Resize(256, bilinear) -> CenterCrop(224) -> ImageNet mean/std.
TORCHVISION_PREPROCESSING = Preprocessing(input_size=224, resize_size=256, resize_method="bilinear",
                                          mean=IMAGENET_MEAN, std=IMAGENET_STD)
# AugReg weights (vit_jax .npz or timm's `.augreg_in21k_ft_in1k` safetensors): timm's eval transform.
AUGREG_PREPROCESSING = Preprocessing(input_size=224, resize_size=248, resize_method="bicubic",
                                     mean=(127.5,) * 3, std=(127.5,) * 3)
# OpenAI CLIP (and timm's fine-tuned CLIP ViTs, crop_pct 1.0).
CLIP_PREPROCESSING = Preprocessing(input_size=224, resize_size=224, resize_method="bicubic", mean=CLIP_MEAN,
                                   std=CLIP_STD)
# The zoom study fed CLIP the ImageNet-normalised zoom crops, not CLIP's own normalisation.
ZOOM_PAPER_CLIP_PREPROCESSING = Preprocessing(input_size=224, resize_size=224, resize_method="bicubic",
                                              mean=IMAGENET_MEAN, std=IMAGENET_STD)


def lite_preprocessing(size: int) -> Preprocessing:
  """EfficientNet-Lite's official eval transform at input `size`."""
  return Preprocessing(input_size=size, resize_size=size + LITE_CROP_PADDING, resize_method="bicubic",
                       mean=LITE_MEAN, std=LITE_STD)


def torchvision_preprocessing(resize_size: int, resize_method: str = "bilinear") -> Preprocessing:
  """A torchvision weights entry's eval transform: Resize(resize_size) -> CenterCrop(224) -> ImageNet mean/std.

  Newer torchvision weights (ConvNeXt, Swin, MobileNetV3-Large V2) each publish their own resize size/filter.
  """
  return Preprocessing(input_size=224, resize_size=resize_size, resize_method=resize_method,
                       mean=IMAGENET_MEAN, std=IMAGENET_STD)
