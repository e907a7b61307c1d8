"""PIL-faithful separable resampling with traced sizes (dense weight matrices).

PIL's `Image.resize` (BICUBIC a=-0.5 / BILINEAR, "antialiased": the kernel support is widened by the scale
factor when downscaling) is a separable filter: every output pixel is a renormalised weighted sum of the input
pixels whose centres fall in the kernel's support. Writing those weights as an (n_out, n_in) matrix built from
*traced* sizes lets one compiled executable serve every image size, box and output size: the image sits at the
top-left of a zero-padded canvas and taps outside the true image (or the crop box) are masked out before the
renormalisation, so the padding never bleeds into the border (unlike `jax.image.scale_and_translate`, whose
weights renormalise over the whole canvas).

PIL resizes horizontally first and stores the intermediate as uint8; doing the same (round half up, clip to
[0, 255] between the passes) brings the difference to PIL down to its 22-bit fixed-point coefficients:
max 1-2 grey levels on a handful of pixels (tests/test_zoom_resample.py).

`short_side_resize` is the one definition of torchvision's `Resize(size)` output size (zoom grid, standard
views, RandomResizedCrop's callers).
"""
from typing import Callable, Dict, Optional, Sequence, Tuple, Union

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array
IntLike = Union[int, np.integer, Array]


def short_side_resize(h: IntLike, w: IntLike, size: IntLike) -> Tuple[IntLike, IntLike]:
  """torchvision `Resize(size)` on PIL: (new_h, new_w) with short side -> size, long -> (size * long) // short.

  Integer arithmetic, as Python's int(size * long / short); on ties the sides stay equal. Python/numpy ints give
  Python ints; jax arrays or tracers (any broadcastable shapes) give int32 arrays, jit/vmap friendly.
  """
  if all(isinstance(v, (int, np.integer)) for v in (h, w, size)):
    h, w, size = int(h), int(w), int(size)
    if w <= h:  # The width is the short side (ties too).
      return (size * h) // w, size
    return size, (size * w) // h
  h, w, size = (jnp.asarray(v, jnp.int32) for v in (h, w, size))
  portrait = w <= h
  new_h = jnp.where(portrait, (size * h) // jnp.maximum(w, 1), size)
  new_w = jnp.where(portrait, size, (size * w) // jnp.maximum(h, 1))
  return new_h, new_w


def _bicubic(x: Array) -> Array:
  """PIL's cubic convolution kernel with a = -0.5 (Keys), support 2."""
  a = -0.5
  x = jnp.abs(x)
  near = ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
  far = (((x - 5.0) * x + 8.0) * x - 4.0) * a
  return jnp.where(x < 1.0, near, jnp.where(x < 2.0, far, 0.0))


def _bilinear(x: Array) -> Array:
  """PIL's triangle kernel, support 1."""
  return jnp.maximum(1.0 - jnp.abs(x), 0.0)


# name -> (kernel, support at scale 1).
FILTERS: Dict[str, Tuple[Callable[[Array], Array], float]] = {
    "bicubic": (_bicubic, 2.0),
    "bilinear": (_bilinear, 1.0),
}


def _filter(method: str) -> Tuple[Callable[[Array], Array], float]:
  if method not in FILTERS:
    raise ValueError(f"resampling method {method!r} is not one of {sorted(FILTERS)}")
  return FILTERS[method]


def resample_matrix(n_in: int, size, box_start, box_len, out_len, offset, n_out: int,
                    method: str = "bicubic") -> Array:
  """Weights (n_out, n_in) of one PIL resampling pass along one axis, float32.

  Row i gives output pixel `offset + i` of the axis resized from `box_len` input pixels (starting at
  `box_start`) to `out_len` pixels, as PIL does for `img.crop(box).resize(...)`. Taps are restricted to the
  box intersected with the true image `[0, size)` and renormalised per row; rows outside `[0, out_len)` are
  all zero (black outside the resized image). `n_in`/`n_out` are static (canvas side, output window);
  `size`, `box_start`, `box_len`, `out_len`, `offset` may be traced integers.
  """
  kernel, _ = _filter(method)  # Kernels are zero beyond their support: PIL's tap window is implicit.
  box_start = jnp.asarray(box_start, jnp.int32)
  box_len = jnp.asarray(box_len, jnp.int32)
  out_len = jnp.asarray(out_len, jnp.int32)
  scale = box_len.astype(jnp.float32) / jnp.maximum(out_len, 1).astype(jnp.float32)
  inv_filterscale = 1.0 / jnp.maximum(scale, 1.0)
  u = jnp.asarray(offset, jnp.int32) + jnp.arange(n_out, dtype=jnp.int32)
  x = jnp.arange(n_in, dtype=jnp.int32)
  # Distance between input pixel centre and the output pixel's centre, in input pixels relative to the box
  # (integers kept exact so large offsets lose no precision).
  rel = (x - box_start).astype(jnp.float32)[None, :] + 0.5
  centre = (u.astype(jnp.float32) + 0.5)[:, None] * scale
  w = kernel((rel - centre) * inv_filterscale)
  lo = jnp.maximum(box_start, 0)
  hi = jnp.minimum(box_start + box_len, jnp.asarray(size, jnp.int32))
  inside = (x >= lo) & (x < hi)
  w = jnp.where(inside[None, :], w, 0.0)
  total = jnp.sum(w, axis=1, keepdims=True)
  w = jnp.where(total != 0.0, w / jnp.where(total != 0.0, total, 1.0), 0.0)
  w = pil_fixed_point(w)
  rows_ok = (u >= 0) & (u < out_len)
  return jnp.where(rows_ok[:, None], w, 0.0)


def pil_fixed_point(w: Array) -> Array:
  """Rounds weights to PIL's 22-bit fixed point (round half away from zero), exactly as PIL stores them.

  Decides exact .5 ties the way PIL does (frequent with bilinear and simple ratios: weights like 0.04).
  """
  scale = float(1 << 22)
  return jnp.trunc(w * scale + jnp.where(w >= 0, 0.5, -0.5)) / scale


def to_uint8_range(x: Array) -> Array:
  """PIL's fixed-point store: round half up, clip to [0, 255] (kept as float)."""
  return jnp.clip(jnp.floor(x + 0.5), 0.0, 255.0)


def separable_apply(image: Array, rows: Array, cols: Array, *, vertical_first=False,
                    dtype: Optional[jnp.dtype] = None, precision=jax.lax.Precision.HIGHEST) -> Array:
  """`rows @ image @ cols.T` per channel with PIL's uint8 rounding between the two passes.

  image: (H, W, C); rows: (H', H); cols: (W', W). Returns float32 (H', W', C) holding integers in [0, 255].
  PIL resizes horizontally first, except (Pillow >= 13) when the height shrinks much more than the width;
  `vertical_first` (a Python or traced bool) selects the order, which changes the rounding of the
  intermediate. `dtype` (e.g. jnp.bfloat16) is the compute dtype of the matmuls (accumulation in float32).
  """
  cdtype = jnp.float32 if dtype is None else dtype
  x = image.astype(cdtype)
  rows, cols = rows.astype(cdtype), cols.astype(cdtype)

  def horizontal(v):
    return jnp.einsum("wx,hxc->hwc", cols, v, precision=precision, preferred_element_type=jnp.float32)

  def vertical(v):
    return jnp.einsum("oh,hwc->owc", rows, v, precision=precision, preferred_element_type=jnp.float32)

  def h_first():
    return to_uint8_range(vertical(to_uint8_range(horizontal(x)).astype(cdtype)))

  def v_first():
    return to_uint8_range(horizontal(to_uint8_range(vertical(x)).astype(cdtype)))

  if isinstance(vertical_first, bool):
    return v_first() if vertical_first else h_first()
  return jax.lax.cond(vertical_first, v_first, h_first)


def pil_vertical_first(box_hw, out_hw):
  """Pillow >= 13's pass order: vertical first iff the height shrinks by > 2x the width's shrink (pixels).

  (python-pillow/Pillow#9549; measured against the installed Pillow 13.0 by probing noise images.)
  An aspect-preserving resize runs vertically first only for images more than about twice as tall as wide.
  """
  bh, bw = box_hw
  oh, ow = out_hw
  return (oh < bh) & ((bh - oh) > 2 * (bw - ow))


def resize_crop(canvas: Array, hw, box, out_size, offset, out_hw: Sequence[int],
                method: str = "bicubic", *, pil_order: bool = True,
                dtype: Optional[jnp.dtype] = None) -> Array:
  """Crop `box`, resize it like PIL to `out_size`, then take an `out_hw` window at `offset` (zero outside).

  Equivalent to `pil.crop(box).resize((out_w, out_h), filter)` followed by a zero-padded
  `Image.crop((left', top', left' + out_hw[1], top' + out_hw[0]))`, computed as two dense matmuls.

  canvas: (Hc, Wc, C) uint8 or float, the image at the top-left, anything beyond `hw` ignored.
  hw: (h, w) true image size; box: (top, left, height, width) in image pixels; out_size: (H', W') of the
  resized box; offset: (top', left') of the window in the resized box. All four may be traced int32.
  out_hw: static (rows, cols) of the output window. method: 'bicubic' (a=-0.5) or 'bilinear', both
  antialiased when downscaling as in PIL. pil_order: follow Pillow >= 13's choice of pass order (see
  `pil_vertical_first`); False always resizes horizontally first (Pillow < 13). dtype: optional matmul
  compute dtype (bf16 on accelerators). The box must lie inside the image (taps are clipped to both).
  Returns float32 (out_hw[0], out_hw[1], C) with integer values in [0, 255]. vmap it for batches.

  Tolerance: within 1 grey level of PIL, not bit-exact: about 1 value in 10^4 of a photo is 1 level off (at most
  1 in 10^3 on pure noise; tests/test_faults_checkpoints.py). float32 matmuls round sums that PIL accumulates
  exactly in integers, so a result within rounding error of a half level can land on the other side.
  """
  if canvas.ndim != 3:
    raise ValueError(f"resize_crop expects a (H, W, C) canvas, got shape {canvas.shape}")
  out_h, out_w = (int(v) for v in out_hw)
  if out_h <= 0 or out_w <= 0:
    raise ValueError(f"out_hw must be positive, got {out_hw}")
  hc, wc = canvas.shape[:2]
  hw = jnp.asarray(hw, jnp.int32)
  box = jnp.asarray(box, jnp.int32)
  out_size = jnp.asarray(out_size, jnp.int32)
  offset = jnp.asarray(offset, jnp.int32)
  rows = resample_matrix(hc, hw[0], box[0], box[2], out_size[0], offset[0], out_h, method)
  cols = resample_matrix(wc, hw[1], box[1], box[3], out_size[1], offset[1], out_w, method)
  vfirst = pil_vertical_first(box[2:], out_size) if pil_order else False
  return separable_apply(canvas, rows, cols, vertical_first=vfirst, dtype=dtype)


def pil_resize_crop_reference(image: np.ndarray, box, out_size, offset, out_hw, method="bicubic",
                              horizontal_first: bool = False) -> np.ndarray:
  """The PIL computation `resize_crop` reproduces (host-side, for tests and benchmarks).

  `horizontal_first` runs the two passes explicitly (width, then height), as every Pillow before 13 did
  (`resize_crop(..., pil_order=False)`); otherwise the installed Pillow picks the order.
  """
  from PIL import Image  # pylint: disable=g-import-not-at-top
  filters = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR}
  top, left, height, width = (int(v) for v in box)
  pil = Image.fromarray(np.asarray(image, np.uint8)).crop((left, top, left + width, top + height))
  if horizontal_first:
    pil = pil.resize((int(out_size[1]), height), filters[method])
  pil = pil.resize((int(out_size[1]), int(out_size[0])), filters[method])
  t, l = (int(v) for v in offset)
  return np.asarray(pil.crop((l, t, l + int(out_hw[1]), t + int(out_hw[0]))))
