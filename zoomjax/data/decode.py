"""Robust image decoding to RGB uint8, matching the paper's `PIL.Image.open(f).convert('RGB')`.

Why PIL and not TFDS/TF decoding: the paper's pipeline is PIL (torchvision ImageFolder), TFDS's numpy decoder
switches to OpenCV when it is installed, and we want one decoder whose failures name the file.

Mode handling (what a real dataset throws at us):
- RGB: as is. Grayscale (L, 1), palette (P, PA), CMYK (PIL already undoes Adobe's inverted CMYK JPEGs), YCbCr, LAB:
  `convert('RGB')`, exactly as the reference pipeline.
- Alpha (RGBA, LA, PA): dropped, as `convert('RGB')` does in the reference (no compositing on white).
- 16-bit and 32-bit grayscale (I;16*, I, F): scaled to 8 bits (value / 257, rounded) before replication to 3
  channels. PIL's own `convert('RGB')` would clip everything above 255 to white; the reference never met such
  files (ImageNet has none), so the faithful scaling is the useful choice.
- Animated GIF/WebP/TIFF pages: the first frame.
- EXIF orientation is NOT applied (the reference does not either; a rotated phone photo stays rotated).
- A truncated or corrupt file raises `DecodeError` naming it (we never set LOAD_TRUNCATED_IMAGES).
"""
import io
import os
import re
from typing import Tuple, Union

import numpy as np
from PIL import Image

from zoomjax.errors import UserError

Source = Union[bytes, str, os.PathLike]


class DecodeError(UserError):
  """An image that could not be decoded; `.name` is the file or example id, `.reason` the cause (a `UserError`:
  under on_error='raise' it ends the run with one line)."""

  def __init__(self, name: str, reason: str):
    super().__init__(f"cannot decode image {name}: {reason}")
    self.name = name
    self.reason = reason


def _reason(e: Exception) -> str:
  return re.sub(r"<_io\.BytesIO object at 0x[0-9a-f]+>", "<bytes>", f"{type(e).__name__}: {e}")


def _open(src: Source):
  return Image.open(io.BytesIO(src) if isinstance(src, (bytes, bytearray, memoryview)) else src)


def image_size(src: Source, name: str = "") -> Tuple[int, int]:
  """(height, width) from the header only (no pixel decode); DecodeError when unreadable."""
  try:
    with _open(src) as img:
      w, h = img.size
  except Exception as e:  # PIL raises many types (UnidentifiedImageError, OSError, SyntaxError, ...).
    raise DecodeError(name or str(src)[:80], _reason(e)) from e
  if h <= 0 or w <= 0:
    raise DecodeError(name or str(src)[:80], f"empty image of size {h}x{w}")
  return h, w


def _to_rgb(img: Image.Image) -> np.ndarray:
  if img.mode == "RGB":
    return np.asarray(img)
  if img.mode.startswith("I") or img.mode == "F":
    a = np.asarray(img).astype(np.float64)
    if a.ndim == 3:  # Multi-channel high-bit-depth modes of newer PIL.
      a = a[..., :3]
    a = np.clip(np.round(a / 257.0), 0, 255).astype(np.uint8)
    return np.repeat(a[..., None], 3, axis=-1) if a.ndim == 2 else a
  return np.asarray(img.convert("RGB"))


def decode_rgb(src: Source, name: str = "") -> np.ndarray:
  """Decodes an encoded image (bytes or path) to uint8 (H, W, 3) RGB; DecodeError names the file."""
  name = name or str(src)[:80]
  try:
    with _open(src) as img:
      if getattr(img, "n_frames", 1) > 1:
        img.seek(0)
      img.load()  # Forces the full decode now so truncation is reported here, by name.
      arr = _to_rgb(img)
  except DecodeError:
    raise
  except Exception as e:
    raise DecodeError(name, _reason(e)) from e
  if arr.ndim != 3 or arr.shape[-1] != 3 or arr.dtype != np.uint8 or 0 in arr.shape:
    raise DecodeError(name, f"decoded to {arr.dtype}{arr.shape}, not a non-empty uint8 RGB image")
  return np.ascontiguousarray(arr)
