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


def _label(src: Source, name: str) -> str:
  """The name errors give an image: `name`, else the path, else '<bytes>' (only built on failure: str() of an
  encoded image costs as much as decoding it)."""
  return name or ("<bytes>" if isinstance(src, (bytes, bytearray, memoryview)) else str(src))


def _open(src: Source):
  return Image.open(io.BytesIO(src) if isinstance(src, (bytes, bytearray, memoryview)) else src)


def image_size(src: Source, name: str = "") -> Tuple[int, int]:
  """(height, width) from the header only (no pixel decode); DecodeError when unreadable."""
  try:
    with _open(src) as img:
      w, h = img.size
  except Exception as e:  # PIL raises many types (UnidentifiedImageError, OSError, SyntaxError, ...).
    raise DecodeError(_label(src, name), _reason(e)) from e
  if h <= 0 or w <= 0:
    raise DecodeError(_label(src, name), f"empty image of size {h}x{w}")
  return h, w


def _to_rgb(img: Image.Image) -> Image.Image:
  """A loaded image in any mode -> RGB with the module docstring's mode rules (an RGB image is returned as is)."""
  if img.mode == "RGB":
    return img
  if img.mode.startswith("I") or img.mode == "F":
    a = np.asarray(img).astype(np.float64)
    if a.ndim == 3:  # Multi-channel high-bit-depth modes of newer PIL.
      a = a[..., :3]
    a = np.clip(np.round(a / 257.0), 0, 255).astype(np.uint8)
    return Image.fromarray(np.repeat(a[..., None], 3, axis=-1) if a.ndim == 2 else np.ascontiguousarray(a))
  return img.convert("RGB")


def decode_pil(src: Source, name: str = "") -> Image.Image:
  """Decodes an encoded image (bytes or path) to a loaded RGB PIL image; DecodeError names the file.

  What `decode_rgb` returns, before the copy into NumPy: a PIL resize straight from it saves two full-size copies.
  """
  try:
    data = src
    if not isinstance(src, (bytes, bytearray, memoryview)):
      with open(src, "rb") as f:  # Read whole, so that no open file outlives the call (the image is not closed).
        data = f.read()
    img = _open(data)
    if getattr(img, "n_frames", 1) > 1:
      img.seek(0)
    img.load()  # Forces the full decode now so truncation is reported here, by name.
    rgb = _to_rgb(img)
  except DecodeError:
    raise
  except Exception as e:
    raise DecodeError(_label(src, name), _reason(e)) from e
  if rgb.mode != "RGB" or 0 in rgb.size:
    raise DecodeError(_label(src, name), f"decoded to a {rgb.mode} image of size {rgb.size}, not a non-empty RGB "
                      "image")
  return rgb


def decode_rgb(src: Source, name: str = "") -> np.ndarray:
  """Decodes an encoded image (bytes or path) to uint8 (H, W, 3) RGB; DecodeError names the file."""
  return np.ascontiguousarray(np.asarray(decode_pil(src, name)))  # RGB and non-empty: checked there.
