"""The zoom grid of "Zoom is what you need" as one jit-compiled XLA computation per canvas shape.

A zoom transform (S, r, c) resizes an image like torchvision `Resize(S, BICUBIC)` on PIL (short side -> S,
long side -> (S * long) // short, PIL bicubic a=-0.5, antialiased when downscaling), then crops a `crop`^2
window centred on anchor (r, c) of an n x n grid of tiles (integer arithmetic of docs/study.md §1.1), black (0)
outside the resized image. The output matches PIL to 1-2 grey levels on a few pixels.

Images of any size share one executable: each image sits at the top-left of a zero-padded canvas whose shape
comes from a few buckets (`canvas_size`), and its true size `hw` is a traced argument. Two interchangeable
implementations compute the same numbers:
- 'dense': per scale two matmuls with (n*crop, canvas side) weight matrices (`resample.resample_matrix`).
  Maps onto matrix units; the default on GPU/TPU.
- 'sparse': per scale only the non-zero taps of each output pixel (`zoomjax.kernels.zoom_sparse`); the
  default on CPU, where XLA's dense matmuls cannot keep up with PIL.

uint8 images (PIL's 8-bit RGB) take PIL's path exactly, rounding to 8 bits between the two passes. Float images
take the same resampling weights without any rounding or clipping: the grid is then linear in the pixels, so
`jax.grad` flows through it to the image (the 'dense' form computes it, on every backend).
"""
import dataclasses
import functools
from typing import List, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from zoomjax.kernels import zoom_sparse
from zoomjax.resample import (FILTERS, IntLike, pil_fixed_point, pil_resize_crop_reference, pil_vertical_first,
                              resample_matrix, resize_crop, separable_apply, short_side_resize)

__all__ = [
    "PAPER_SCALES", "ZoomGrid", "zoom_geometry", "zoom_crops", "zoom_crops_batch", "canvas_size",
    "to_canvas", "resize_crop", "resample_matrix", "pil_zoom_reference", "DEFAULT_BUCKETS",
    "pil_resize_crop_reference", "pil_vertical_first", "view_name", "parse_view_name", "zoom_crop", "anchor_center",
]

Array = jax.Array

# docs/study.md §1.2: 27 hand-picked sizes + int(linspace(10, 1024, 10)), deduplicated (10 appears twice), sorted.
PAPER_SCALES = (10, 16, 32, 48, 64, 96, 122, 128, 192, 224, 235, 240, 256, 288, 320, 348, 384, 448, 460, 512,
                573, 576, 640, 664, 672, 680, 686, 690, 700, 720, 768, 798, 832, 896, 911, 1024)

# Canvas side buckets: each side independently rounds up to the next bucket; beyond the last one, to the next
# multiple of 512 (computed on demand, so any image works; each new size compiles once).
DEFAULT_BUCKETS = (256, 384, 512, 768, 1024, 1536, 2048)


def view_name(t: Tuple[int, int, int]) -> str:
  """(S, row, col) -> the authors' name 'LOC:<row>_<col>_Size:<S>'."""
  s, r, c = t
  return f"LOC:{r}_{c}_Size:{s}"


def parse_view_name(name: str) -> Tuple[int, int, int]:
  """'LOC:1_2_Size:256' -> (256, 1, 2)."""
  try:
    loc, size = name.split("_Size:")
    r, c = loc[len("LOC:"):].split("_")
    return int(size), int(r), int(c)
  except ValueError as e:
    raise ValueError(f"not a zoom view name: {name!r} (expected 'LOC:<row>_<col>_Size:<S>')") from e


@dataclasses.dataclass(frozen=True)
class ZoomGrid:
  """Scales x n x n anchors; transforms are ordered scale-major, then anchor row, then anchor column."""
  scales: Tuple[int, ...]
  anchors: int = 3
  crop: int = 224

  def __post_init__(self):
    try:
      scales = tuple(int(s) for s in self.scales)
    except TypeError as e:
      raise ValueError(f"ZoomGrid scales must be a sequence of ints, got {self.scales!r}") from e
    if not scales:
      raise ValueError("ZoomGrid needs at least one scale")
    if any(s != v for s, v in zip(scales, self.scales)):
      raise ValueError(f"ZoomGrid scales must be integers, got {self.scales!r}")
    bad = [s for s in scales if s <= 0]
    if bad:
      raise ValueError(f"ZoomGrid scales must be positive, got {bad}")
    dups = sorted({s for s in scales if scales.count(s) > 1})
    if dups:
      raise ValueError(f"ZoomGrid scales must be unique, duplicated: {dups}")
    if int(self.anchors) != self.anchors or self.anchors < 1:
      raise ValueError(f"ZoomGrid anchors must be an int >= 1, got {self.anchors!r}")
    if int(self.crop) != self.crop or self.crop <= 0:
      raise ValueError(f"ZoomGrid crop must be a positive int, got {self.crop!r}")
    object.__setattr__(self, "scales", scales)
    object.__setattr__(self, "anchors", int(self.anchors))
    object.__setattr__(self, "crop", int(self.crop))

  @classmethod
  def paper(cls) -> "ZoomGrid":
    """The paper's 36 scales x 3 x 3 anchors = 324 transforms of 224^2."""
    return cls(PAPER_SCALES, 3, 224)

  @property
  def transforms(self) -> List[Tuple[int, int, int]]:
    """(S, row, col) per transform, scale-major."""
    n = self.anchors
    return [(s, r, c) for s in self.scales for r in range(n) for c in range(n)]

  @property
  def names(self) -> List[str]:
    """The notebooks' names, e.g. 'LOC:1_1_Size:256' (row first, then column)."""
    return [view_name(t) for t in self.transforms]

  @property
  def num_transforms(self) -> int:
    return len(self.scales) * self.anchors**2

  def index(self, name: str) -> int:
    """Position of a transform name in `names` / in the T axis of the crops."""
    try:
      return self.names.index(name)
    except ValueError:
      raise ValueError(f"{name!r} is not a transform of {self}") from None

  def transform_indices(self, transforms) -> Tuple[int, ...]:
    """None | slice | int | names | ints -> a tuple of transform indices (validated)."""
    t = self.num_transforms
    if transforms is None:
      return tuple(range(t))
    if isinstance(transforms, slice):
      return tuple(range(t))[transforms]
    if isinstance(transforms, (int, np.integer, str)):
      transforms = [transforms]
    out = []
    for v in np.asarray(transforms, dtype=object).reshape(-1).tolist():
      i = self.index(v) if isinstance(v, str) else int(v)
      if not -t <= i < t:
        raise ValueError(f"transform index {v} out of range for {t} transforms")
      out.append(i % t)
    return tuple(out)


def zoom_geometry(h: IntLike, w: IntLike, scale: IntLike, anchors: int = 3, crop: int = 224) -> tuple:
  """(resized_h, resized_w, tops, lefts) of docs/study.md §1.1 for an h x w image at scale S.

  Works on Python ints (returns ints and tuples) and on traced jnp ints (returns arrays).
  resized = `resample.short_side_resize`; tile = side // n; anchor = i * tile + tile // 2; window start =
  anchor - crop // 2.
  """
  out_h, out_w = short_side_resize(h, w, scale)
  if isinstance(out_h, int):
    th, tw = out_h // anchors, out_w // anchors
    tops = tuple(r * th + th // 2 - crop // 2 for r in range(anchors))
    lefts = tuple(c * tw + tw // 2 - crop // 2 for c in range(anchors))
    return out_h, out_w, tops, lefts
  i = jnp.arange(anchors, dtype=jnp.int32)
  th, tw = out_h // anchors, out_w // anchors
  return out_h, out_w, i * th + th // 2 - crop // 2, i * tw + tw // 2 - crop // 2


# ----------------------------------------------------------------------------------------------- canvases


def canvas_size(h: int, w: int, buckets: Sequence[int] = DEFAULT_BUCKETS) -> Tuple[int, int]:
  """The canvas (Hc, Wc) an h x w image is padded to: each side rounds up to a bucket independently.

  Sides beyond the largest bucket round up to a multiple of 512, so every image gets a canvas (e.g. a
  1 x 2000 image -> (256, 2048), 3000 x 5000 -> (3072, 5120)); each distinct canvas compiles once.
  """
  h, w = int(h), int(w)
  if h < 1 or w < 1:
    raise ValueError(f"image size must be positive, got {h} x {w}")
  buckets = sorted(int(b) for b in buckets)
  if not buckets or buckets[0] < 1:
    raise ValueError(f"canvas buckets must be positive ints, got {buckets}")

  def side(n):
    for b in buckets:
      if n <= b:
        return b
    return -(-n // 512) * 512

  return side(h), side(w)


def _is_float(dtype) -> bool:
  return bool(jnp.issubdtype(dtype, jnp.floating))


def _check_image(image, allow_float: bool = False):
  """The image as an array (numpy, or jax where it is one already: a traced image stays traced), checked."""
  image = image if allow_float and isinstance(image, jax.Array) else np.asarray(image)
  if image.ndim != 3 or image.shape[-1] != 3:
    raise ValueError(f"expected an RGB image of shape (H, W, 3), got shape {image.shape}")
  if image.shape[0] < 1 or image.shape[1] < 1:
    raise ValueError(f"image is empty: shape {image.shape}")
  if image.dtype != np.uint8 and not (allow_float and _is_float(image.dtype)):
    raise ValueError(f"expected a uint8 image (PIL's 8-bit RGB){' or a float one' if allow_float else ''}, got "
                     f"dtype {image.dtype}")
  return image


def to_canvas(image, canvas_hw: Optional[Tuple[int, int]] = None) -> Tuple[np.ndarray, np.ndarray]:
  """Pads an (h, w, 3) uint8 image at the top-left of a zero canvas -> (canvas, hw int32 [h, w])."""
  image = _check_image(image)
  h, w = image.shape[:2]
  hc, wc = canvas_size(h, w) if canvas_hw is None else (int(canvas_hw[0]), int(canvas_hw[1]))
  if h > hc or w > wc:
    raise ValueError(f"image {h} x {w} does not fit the canvas {hc} x {wc}")
  canvas = np.zeros((hc, wc, 3), np.uint8)
  canvas[:h, :w] = image
  return canvas, np.array([h, w], np.int32)


# ------------------------------------------------------------------------------------------ dense kernel


def _window_matrix(n_in, size, out_len, starts, crop):
  """Stacked resample matrices of the n windows [start, start + crop) of one axis: (n * crop, n_in)."""
  mats = jax.vmap(lambda s: resample_matrix(n_in, size, 0, size, out_len, s, crop, "bicubic"))(starts)
  return mats.reshape(-1, n_in)


def _blocks_to_crops(x, n, crop):
  """(n*crop, n*crop, C) -> (n*n, crop, crop, C), anchor row-major."""
  c = x.shape[-1]
  return x.reshape(n, crop, n, crop, c).transpose(0, 2, 1, 3, 4).reshape(n * n, crop, crop, c)


def _linear_apply(image, rows, cols, dtype):
  """`rows @ image @ cols.T` per channel without rounding or clipping: linear (differentiable) in the pixels."""
  cdtype = jnp.float32 if dtype is None else dtype
  hi = jax.lax.Precision.HIGHEST
  x = jnp.einsum("wx,hxc->hwc", cols.astype(cdtype), image.astype(cdtype), precision=hi,
                 preferred_element_type=jnp.float32)
  return jnp.einsum("oh,hwc->owc", rows.astype(cdtype), x.astype(cdtype), precision=hi,
                    preferred_element_type=jnp.float32)


def _dense_scale(canvas, hw, scale, n, crop, dtype, linear=False):
  """All n*n crops of one (traced) scale of one image with two dense matmuls (PIL's 8-bit rounding between
  and after them unless `linear`)."""
  hc, wc = canvas.shape[:2]
  out_h, out_w, tops, lefts = zoom_geometry(hw[0], hw[1], scale, n, crop)
  rows = _window_matrix(hc, hw[0], out_h, tops, crop)
  cols = _window_matrix(wc, hw[1], out_w, lefts, crop)
  out = _linear_apply(canvas, rows, cols, dtype) if linear else separable_apply(canvas, rows, cols, dtype=dtype)
  return _blocks_to_crops(out, n, crop)


def _dense_image(canvas, hw, scales, n, crop, dtype, scale_batch):
  linear = _is_float(canvas.dtype)
  fn = lambda s: _dense_scale(canvas, hw, s, n, crop, dtype, linear)
  out = jax.lax.map(fn, jnp.asarray(scales, jnp.int32), batch_size=scale_batch)
  return out.reshape((-1,) + out.shape[2:])


def _sparse_image(buf, b, canvas, hw, scales, n, crop):
  """Writes image b's crops into buf with the sparse CPU kernel (dense windows as its wide-image fallback)."""
  x = canvas.astype(jnp.float32)
  return zoom_sparse.write_image_crops(
      buf, b, canvas, hw, scales, n, crop, geometry=lambda s: zoom_geometry(hw[0], hw[1], s, n, crop),
      dense_crops=lambda s: _dense_scale(x, hw, s, n, crop, None))


# -------------------------------------------------------------------------------------------- public API


# Trace counter (tests prove one executable per canvas shape with it).
_TRACES = [0]


def _default_impl() -> str:
  return "sparse" if jax.default_backend() == "cpu" else "dense"


@functools.partial(jax.jit, static_argnames=("grid", "transforms", "impl", "dtype", "scale_batch"))
def _zoom_batch(canvas, hw, grid, transforms, impl, dtype, scale_batch):
  _TRACES[0] += 1
  idx = np.asarray(transforms)
  per_scale = grid.anchors**2
  needed = sorted(set((idx // per_scale).tolist()))
  scales = tuple(grid.scales[i] for i in needed)
  n, crop = grid.anchors, grid.crop
  if impl == "dense":
    batch = scale_batch or len(scales)
    out = jax.vmap(lambda c, s: _dense_image(c, s, scales, n, crop, dtype, batch))(canvas, hw)
  else:
    # One image at a time (the strip fallback is a real branch), all writing into one output buffer.
    out = jnp.zeros((canvas.shape[0], len(scales), n * n, crop, crop, 3), jnp.float32)
    out = jax.lax.fori_loop(0, canvas.shape[0],
                            lambda b, o: _sparse_image(o, b, canvas[b], hw[b], scales, n, crop), out)
    out = out.reshape(out.shape[:1] + (-1, crop, crop, 3))
  local = np.array([needed.index(i // per_scale) * per_scale + i % per_scale for i in idx.tolist()])
  if not np.array_equal(local, np.arange(out.shape[1])):
    out = out[:, local]
  return out


def zoom_crops_batch(canvas, hw, grid: ZoomGrid, *, transforms=None, impl: Optional[str] = None,
                     dtype=None, scale_batch: Optional[int] = None) -> Array:
  """Zoom crops of a batch of images on a shared canvas: (B, Hc, Wc, 3) uint8, hw (B, 2) -> (B, T, c, c, 3).

  Each image sits at the top-left of its canvas; `hw` holds the true (height, width) and is traced, so one
  executable serves every image size that fits the canvas shape. Output: float32 in [0, 255] (integer
  values, like PIL's uint8), transforms in `grid` order, black outside the image.
  A float canvas (any float dtype, pixels on any scale) gives the same resampling without 8-bit rounding or
  clipping, linear in the pixels so that gradients flow to them (float32 output; bicubic ringing may leave
  [0, 255]); it always takes the 'dense' form.

  transforms: None (all), a slice, indices or names: compute only those (and only their scales), e.g. to
    bound memory in a sweep (`range(i, j)` chunks of whole scales cost nothing extra). Static: each distinct
    subset compiles once.
  impl: 'dense' (two matmuls per scale; default off CPU and for float canvases), 'sparse' (K-tap gathers;
    default on CPU for uint8 canvases).
  dtype: compute dtype of the dense matmuls (e.g. jnp.bfloat16); ignored by 'sparse'.
  scale_batch: dense only, how many scales are computed at once (default all; lower it to bound memory).
  """
  if not isinstance(grid, ZoomGrid):
    raise ValueError(f"grid must be a ZoomGrid, got {type(grid).__name__}")
  # Works on tracers too: zoom_crops_batch may be called inside the caller's jit (no host conversion).
  if not hasattr(canvas, "dtype"):
    canvas = np.asarray(canvas)
  shape, dt = np.shape(canvas), canvas.dtype
  if len(shape) != 4 or shape[-1] != 3:
    raise ValueError(f"canvas must be (B, Hc, Wc, 3), got shape {shape}")
  if min(shape) < 1:
    raise ValueError(f"canvas is empty: shape {shape}")
  if dt != np.uint8 and not _is_float(dt):
    raise ValueError(f"canvas must be uint8 (PIL's 8-bit RGB) or float, got {dt}")
  if np.shape(hw) != (shape[0], 2):
    raise ValueError(f"hw must be (B, 2) = ({shape[0]}, 2), got {np.shape(hw)}")
  if not isinstance(hw, jax.core.Tracer) and not isinstance(canvas, jax.core.Tracer):
    hw_np = np.asarray(hw)
    if np.any(hw_np < 1) or np.any(hw_np > np.array(shape[1:3])):
      raise ValueError(f"hw {hw_np.tolist()} must be >= 1 and fit the canvas {shape[1:3]}")
  impl = impl or ("dense" if _is_float(dt) else _default_impl())
  if impl not in ("dense", "sparse"):
    raise ValueError(f"impl must be 'dense' or 'sparse', got {impl!r}")
  if impl == "sparse" and _is_float(dt):
    raise ValueError(f"impl='sparse' keeps PIL's 8-bit intermediates, so it takes uint8 canvases; a {dt} canvas "
                     "takes impl='dense' (the default for float canvases)")
  if dtype is not None:
    dtype = jnp.dtype(dtype).name
  idx = grid.transform_indices(transforms)
  if not idx:
    raise ValueError("no transforms selected")
  return _zoom_batch(jnp.asarray(canvas), jnp.asarray(hw, jnp.int32), grid, idx, impl, dtype, scale_batch)


def zoom_crops(image, grid: ZoomGrid, **kwargs) -> Array:
  """All zoom crops of one (H, W, 3) image -> float32 (T, crop, crop, 3).

  uint8 images follow PIL exactly (values in [0, 255], whole numbers). Float images (numpy or jax, traced too)
  give the same resampling without rounding or clipping, so `jax.grad` of a function of the crops flows back
  to the pixels (see `zoom_crops_batch`). The image is padded to its `canvas_size` bucket, so images of similar
  size reuse one executable. Keyword arguments as in `zoom_crops_batch`.
  """
  image = _check_image(image, allow_float=True)
  if image.dtype == np.uint8:
    canvas, hw = to_canvas(image)
    return _first(zoom_crops_batch(canvas[None], hw[None], grid, **kwargs))
  h, w = image.shape[:2]
  hc, wc = canvas_size(h, w)
  canvas = jnp.pad(jnp.asarray(image, jnp.float32), ((0, hc - h), (0, wc - w), (0, 0)))
  return zoom_crops_batch(canvas[None], np.array([[h, w]], np.int32), grid, **kwargs)[0]


# ------------------------------------------------------------------------------ continuous zoom (research op)

LONG_SIDES = ("exact", "floor")


def anchor_center(h: int, w: int, scale: int, row: int, col: int, *, anchors: int = 3,
                  crop: int = 224) -> Tuple[float, float]:
  """The normalised centre (y, x) of the grid view (scale, row, col) of an h x w image, for `zoom_crop`.

  The window of `zoom_geometry` covers resized pixels [top, top + crop): its centre is top + crop / 2, divided by
  the resized side. `zoom_crop(image, scale, anchor_center(...), crop=crop, long_side="floor")` is that view.
  """
  out_h, out_w, tops, lefts = zoom_geometry(int(h), int(w), int(scale), anchors, crop)
  return (tops[row] + crop / 2) / out_h, (lefts[col] + crop / 2) / out_w


def _crop_axis(n_in: int, out_len, start, crop: int) -> Array:
  """(crop, n_in) weights of one axis of `zoom_crop`: the grid's antialiased bicubic (a = -0.5) at real-valued
  positions, smooth in `out_len` and `start`.

  Output pixel i covers resized coordinates [start + i, start + i + 1); its centre maps to input coordinate
  (start + i + 0.5) * n_in / out_len. Weights as `resample.resample_matrix`: kernel widened by the downscale
  factor, taps inside the image, rows renormalised, PIL's 22-bit rounding of the values (its gradient is taken
  as the identity's). Outside the resized image [0, out_len) a pixel is black, and a pixel straddling the border
  is weighted by the fraction of it inside: 1 or 0 at integer positions (the grid's rule), continuous between.
  """
  kernel = FILTERS["bicubic"][0]
  factor = n_in / out_len
  u = start + jnp.arange(crop, dtype=jnp.float32)
  centre = (u + 0.5)[:, None] * factor
  x = jnp.arange(n_in, dtype=jnp.float32)[None, :] + 0.5
  w = kernel((x - centre) / jnp.maximum(factor, 1.0))
  total = jnp.sum(w, axis=1, keepdims=True)
  nonzero = total != 0.0
  w = jnp.where(nonzero, w / jnp.where(nonzero, total, 1.0), 0.0)
  w = w + jax.lax.stop_gradient(pil_fixed_point(w) - w)
  inside = jnp.clip(jnp.minimum(u + 1.0, out_len) - jnp.maximum(u, 0.0), 0.0, 1.0)
  return w * inside[:, None]


@functools.partial(jax.jit, static_argnames=("crop", "long_side"))
def _zoom_crop(image, scale, center, crop, long_side):
  h, w = image.shape[:2]
  scale = jnp.asarray(scale, jnp.float32)
  center = jnp.asarray(center, jnp.float32)
  # torchvision's Resize(S): the short side becomes S, the long one S * long / short (floored by torchvision).
  long_len = scale * max(h, w) / min(h, w)
  if long_side == "floor":
    long_len = jnp.floor(long_len)
  out_h, out_w = (long_len, scale) if w <= h else (scale, long_len)
  rows = _crop_axis(h, out_h, center[0] * out_h - crop / 2, crop)
  cols = _crop_axis(w, out_w, center[1] * out_w - crop / 2, crop)
  return _linear_apply(image, rows, cols, None)


def zoom_crop(image, scale, center, *, crop: int = 224, long_side: str = "exact") -> Array:
  """One zoom view at a real-valued scale and centre, differentiable w.r.t. the pixels, the scale and the centre.

  image: (H, W, 3) float (any scale of values; uint8 is taken as float, without PIL's 8-bit rounding).
  scale: the resized short side S in pixels (> 0, any real). center: (y, x) of the window's centre as fractions
    of the resized image (its top-left corner is (0, 0), its bottom-right (1, 1); values outside show black).
    Both may be traced: `jax.grad`, `jax.vmap` and `jax.jit` go through them.
  crop: the output side (static). long_side: 'exact' resizes the long side to S * long / short (smooth in S);
    'floor' floors it as torchvision's Resize (and the grid) does, piecewise constant in S.
  Returns float32 (crop, crop, 3), black outside the resized image.

  The resampling is the grid's (bicubic a = -0.5, antialiased when downscaling) with its kernel evaluated at real
  positions; Keys' kernel is continuously differentiable, so the weights are differentiable in the scale and
  the centre. At an integer scale and a grid anchor's centre (`anchor_center`) with long_side='floor' the view
  equals the grid's float view (`zoom_crops` of a float image) to float32 rounding (tests/test_zoom_crop.py);
  'exact' gives the same view whenever S * long / short is whole (square images, for one).
  """
  image = _check_image(image, allow_float=True)
  if long_side not in LONG_SIDES:
    raise ValueError(f"long_side must be one of {LONG_SIDES}, got {long_side!r}")
  if int(crop) != crop or crop <= 0:
    raise ValueError(f"crop must be a positive int, got {crop!r}")
  if np.shape(center) != (2,):
    raise ValueError(f"center must be (y, x), got shape {np.shape(center)}")
  if np.shape(scale) != ():
    raise ValueError(f"scale must be a scalar, got shape {np.shape(scale)}")
  return _zoom_crop(jnp.asarray(image, jnp.float32), scale, center, int(crop), long_side)


# x[0] of a fresh batch we own: donating it lets XLA reuse the buffer (an eager x[0] copies ~200 MB per image).
_first = jax.jit(lambda x: x[0], donate_argnums=0)


def pil_zoom_reference(image: np.ndarray, grid: ZoomGrid, horizontal_first: bool = True) -> np.ndarray:
  """The authors' pipeline in PIL (host-side, for tests and benchmarks): (T, crop, crop, 3) uint8.

  Resizes once per scale then crops every anchor (identical to re-resizing per view). With
  `horizontal_first` the two passes are run explicitly (width, then height), which is what every Pillow did
  before 13.0 (the authors' setup); Pillow >= 13 runs the height first for strong downscales of images
  taller than twice their width (see `resample.pil_vertical_first`).
  """
  from PIL import Image  # pylint: disable=g-import-not-at-top
  image = _check_image(image)
  pil = Image.fromarray(image)
  h, w = image.shape[:2]
  out = []
  for s in grid.scales:
    oh, ow, tops, lefts = zoom_geometry(h, w, s, grid.anchors, grid.crop)
    if horizontal_first:
      resized = pil.resize((ow, h), Image.Resampling.BICUBIC).resize((ow, oh), Image.Resampling.BICUBIC)
    else:
      resized = pil.resize((ow, oh), Image.Resampling.BICUBIC)
    for t in tops:
      for l in lefts:
        out.append(np.asarray(resized.crop((l, t, l + grid.crop, t + grid.crop))))
  return np.stack(out)
