"""The zoom grid's sparse form (XLA:CPU): per scale only the K non-zero bicubic taps of each output pixel.

Taps are 1-D gathers of whole contiguous rows fused with FMAs (K unrolled, or a loop of traced length for strong
downscales), uint8 between the passes (PIL's values, exact), written in place into the float32 output. XLA:CPU's
dense matmuls cannot keep up with PIL here; this form does far fewer FLOPs and moves little memory. Geometry and
the dense fallback come from the caller (`zoomjax.zoom`). Figures: BENCHMARKS.md, "Zoom grid" and "Kernel
design notes".
"""
import math
from typing import Callable, Sequence, Tuple

import jax
import jax.numpy as jnp

from zoomjax.resample import FILTERS, to_uint8_range

Array = jax.Array
# traced scale -> (resized_h, resized_w, tops (n,), lefts (n,)) of the image being zoomed.
Geometry = Callable[[Array], Tuple[Array, Array, Array, Array]]
# traced scale -> its n*n crops (n*n, crop, crop, 3) as floats holding integers in [0, 255].
DenseCrops = Callable[[Array], Array]

_SUPPORT = FILTERS["bicubic"][1]
_KERNEL = FILTERS["bicubic"][0]
# Scales needing at most this many taps run the window path with unrolled gathers; the rest (strong
# downscales, mostly zoom-out) resize once into a small strip with a traced-length loop over taps.
_MAX_UNROLLED_TAPS = 12
# Tap-count tiers: scales are grouped by tier so one loop body serves many scales (bounds compile time).
_TAP_TIERS = (4, 5, 6, 8, 10, 12)
# Strip side = _STRIP_ASPECT * S + 1 covers images up to this aspect ratio; wider ones take a fallback.
_STRIP_ASPECT = 2
# Strip sides used by groups of small scales.
_STRIP_TIERS = (48, 160, 260, 400)


def _max_taps(scale: int, short_bound: int) -> int:
  """Static upper bound on the non-zero bicubic taps per output pixel at scale S.

  The filter scale is in_len / out_len <= short / (S - 1) on both axes (the long side is floored), and an
  open interval of length 2 * support * fs holds at most ceil(2 * support * fs) integers.
  """
  fs = max(1.0, short_bound / max(scale - 1, 1))
  return int(math.ceil(2 * _SUPPORT * fs - 1e-9))


def _tap_geometry(size, out_len, positions):
  """Filter scale, centres, first tap and validity of output positions along one axis (PIL's maths).

  The first tap is ceil(centre - support * fs - 0.5), computed in exact integer arithmetic: in float, XLA
  may duplicate it into several fusions that round differently (FMA contraction), so the gather and the
  weights could disagree by one tap whenever a centre lands on an integer boundary.
  """
  size = jnp.asarray(size, jnp.int32)
  out_len = jnp.maximum(jnp.asarray(out_len, jnp.int32), 1)
  scale = size.astype(jnp.float32) / out_len.astype(jnp.float32)
  fs = jnp.maximum(scale, 1.0)
  centre = (positions.astype(jnp.float32) + 0.5) * scale
  support = int(_SUPPORT)
  # 2 * out * (centre - support * fs - 0.5) is an integer: (2u + 1) * size - (2 * support * max(size, out) + out).
  num = (2 * positions + 1) * size - (2 * support * jnp.maximum(size, out_len) + out_len)
  start_int = -((-num) // (2 * out_len))
  start_float = jnp.ceil(centre - _SUPPORT * fs - 0.5).astype(jnp.int32)  # Huge outputs only (overflow).
  exact = (positions.astype(jnp.float32) + 2.0) * size.astype(jnp.float32) < 1e9
  start = jnp.where(exact, start_int, start_float)
  valid_out = (positions >= 0) & (positions < out_len)
  return fs, centre, start, valid_out


def _taps(size, out_len, positions, k):
  """Tap indices and renormalised weights (P, k) of output positions (traced) along one axis."""
  fs, centre, start, valid_out = _tap_geometry(size, out_len, positions)
  idx = start[:, None] + jnp.arange(k, dtype=jnp.int32)[None, :]
  w = _KERNEL((idx.astype(jnp.float32) + 0.5 - centre[:, None]) / fs)
  w = jnp.where((idx >= 0) & (idx < size) & valid_out[:, None], w, 0.0)
  total = jnp.sum(w, axis=1, keepdims=True)
  w = jnp.where(total != 0.0, w / jnp.where(total != 0.0, total, 1.0), 0.0)
  return idx, w


def _gather_pass(x, idx, w, axis, n_in):
  """sum_k take(x, idx[:, k], axis) * w[:, k] as K unrolled 1-D gathers (XLA fuses them with the FMAs).

  Fast on XLA:CPU only when every gathered slice is a long contiguous row (the dims after `axis`); the
  callers keep such layouts.
  """
  idx = jnp.clip(idx, 0, n_in - 1)
  shape = [1] * x.ndim
  shape[axis] = -1
  acc = None
  for k in range(idx.shape[1]):
    term = jnp.take(x, idx[:, k], axis=axis, mode="clip").astype(jnp.float32) * w[:, k].reshape(shape)
    acc = term if acc is None else acc + term
  return acc


def _loop_pass(x, idx, w):
  """sum_k take(x, idx[:, k], 0) * w[:, k] over a traced number of taps (a while loop, one small body).

  x: (n_in, R) with contiguous rows; idx, w: (P, K) -> (P, R) float32. Taps past the last non-zero weight
  column are skipped, so the cost follows the scale's real tap count, not the group's bound K.
  """
  n_in = x.shape[0]
  idx_t = jnp.clip(idx, 0, n_in - 1).T
  w_t = w.T
  used = jnp.any(w_t != 0.0, axis=1)
  count = jnp.max(jnp.where(used, jnp.arange(1, w_t.shape[0] + 1, dtype=jnp.int32), 0))

  def body(k, acc):
    i = jax.lax.dynamic_index_in_dim(idx_t, k, keepdims=False)
    wk = jax.lax.dynamic_index_in_dim(w_t, k, keepdims=False)
    return acc + jnp.take(x, i, axis=0, mode="clip").astype(jnp.float32) * wk[:, None]

  return jax.lax.fori_loop(0, count, body, jnp.zeros((idx.shape[0], x.shape[1]), jnp.float32))


def _rows_to_cols_u8(tmp, hc):
  """(U, hc * 3) horizontal-pass output (integers in [0, 255]) -> uint8 (hc, U * 3) for row gathers.

  uint8 makes this per-scale transpose cheaper than in float32 (the channel stays minor).
  """
  u = tmp.shape[0]
  return tmp.astype(jnp.uint8).reshape(u, hc, 3).transpose(1, 0, 2).reshape(hc, u * 3)


def _materialise(fn, hw):
  """fn() computed into its own buffer (it becomes the output of a `cond` XLA cannot see through).

  Without this XLA:CPU fuses a pass into every gather of the next one and recomputes it per tap;
  `optimization_barrier` does not prevent it (jax 0.10: gone from the compiled HLO). `hw` >= 1 always
  (checked by the caller), but XLA cannot know it.
  """
  shape = jax.eval_shape(fn)
  return jax.lax.cond(hw[0] > 0, fn, lambda: jnp.zeros(shape.shape, shape.dtype))


def _windows(xt, hc, hw, scale, n, crop, k, geometry):
  """All n*n crops of one traced scale: K static taps at the n*crop window positions of each axis.

  xt is the image transposed to (Wc, Hc * 3), so every gather copies whole contiguous rows: the horizontal
  pass gathers canvas columns, its uint8 result is transposed per anchor column to (n, Hc, crop * 3), and
  the vertical pass gathers rows of that, landing directly in (anchor column, v, u, c) order.
  """
  wc = xt.shape[0]
  out_h, out_w, tops, lefts = geometry(scale)
  ar = jnp.arange(crop, dtype=jnp.int32)
  cols = (lefts[:, None] + ar[None, :]).reshape(-1)
  rows = (tops[:, None] + ar[None, :]).reshape(-1)
  ci, cw = _taps(hw[1], out_w, cols, k)
  ri, rw = _taps(hw[0], out_h, rows, k)
  # Horizontal first, like PIL: (n * crop, Hc * 3), then uint8 (n, Hc, crop * 3). The transpose must not
  # fuse into the gathers (it would make them read scattered pixels again), hence its own step.
  tmp = _materialise(lambda: to_uint8_range(_gather_pass(xt, ci, cw, 0, wc)).astype(jnp.uint8), hw)
  tmp = tmp.reshape(n, crop, hc, 3).transpose(0, 2, 1, 3).reshape(n, hc, crop * 3)
  out = _materialise(lambda: to_uint8_range(_gather_pass(tmp, ri, rw, 1, hc)).astype(jnp.uint8), hw)
  return out.reshape(n, n, crop, crop, 3).transpose(1, 0, 2, 3, 4).reshape(n * n, crop, crop, 3)


def _strip(xt, hc, hw, scale, n, crop, r, k, geometry, dense_crops):
  """Strong downscales: resize the image once into an (r, r) strip, then cut the n*n windows from it.

  The strip is small (r ~ 2S) and the tap count large (~4 * short / S), so each pass is a traced-length
  loop over taps (`_loop_pass`, one body for every scale of the group; cost ~ 4 * Hc * Wc per pass).
  `scale` may be traced; when the resized long side exceeds r (aspect ratio > ~2, rare) the windows come
  from `dense_crops` instead (a real branch: images are processed one at a time here).
  """
  out_h, out_w, tops, lefts = geometry(scale)

  def strip():
    pos = jnp.arange(r, dtype=jnp.int32)
    ci, cw = _taps(hw[1], out_w, pos, k)
    ri, rw = _taps(hw[0], out_h, pos, k)
    tmp = _rows_to_cols_u8(to_uint8_range(_loop_pass(xt, ci, cw)), hc)  # A loop output: materialised.
    img = to_uint8_range(_loop_pass(tmp, ri, rw)).astype(jnp.uint8).reshape(r, r, 3)
    img = jnp.pad(img, ((crop, crop), (crop, crop), (0, 0)))
    return jnp.stack([jax.lax.dynamic_slice(img, (tops[i] + crop, lefts[j] + crop, 0), (crop, crop, 3))
                      for i in range(n) for j in range(n)])

  def windows():
    return dense_crops(scale).astype(jnp.uint8)  # Integers in [0, 255]: exact.

  if r >= n * crop:
    return windows()
  return jax.lax.cond(jnp.maximum(out_h, out_w) <= r, strip, windows)


def write_image_crops(buf: Array, b, canvas: Array, hw: Array, scales: Sequence[int], n: int, crop: int,
                      geometry: Geometry, dense_crops: DenseCrops) -> Array:
  """Writes the crops of `scales` (static) for image b into buf (B, len(scales), n*n, crop, crop, 3) f32.

  Each scale's intermediates stay uint8 and are written once, in place, into the shared float32 output (a
  loop carry): no per-group stacks to zero-fill, no concatenation or conversion copy afterwards.
  Scales are grouped so that one loop body serves a whole group (compile time grows with the number of
  distinct bodies, not of scales): window scales by tap tier (unrolled gathers), strip scales by side.
  """
  hc, wc = canvas.shape[:2]
  # Transposed once per image (used by every scale): rows of xt are canvas columns, contiguous.
  xt = jnp.transpose(canvas, (1, 0, 2)).reshape(wc, hc * 3).astype(jnp.float32)
  short_bound = min(canvas.shape[:2])
  groups = {}  # (kind, static size) -> scales, in order
  for s in scales:
    k = _max_taps(s, short_bound)
    if k > _MAX_UNROLLED_TAPS:
      r = min(n * crop, _STRIP_ASPECT * s + 1)
      side = next((t for t in _STRIP_TIERS if t >= r), n * crop)
      groups.setdefault(("strip", min(side, n * crop)), []).append(s)
    else:
      groups.setdefault(("windows", next(t for t in _TAP_TIERS if t >= k)), []).append(s)
  where = {s: i for i, s in enumerate(scales)}
  for (kind, size), group in groups.items():
    if kind == "strip":
      k = max(_max_taps(s, short_bound) for s in group) + 1
      fn = lambda s, size=size, k=k: _strip(xt, hc, hw, s, n, crop, size, k, geometry, dense_crops)
    else:
      fn = lambda s, size=size: _windows(xt, hc, hw, s, n, crop, size, geometry)
    group_scales = jnp.asarray(group, jnp.int32)
    slots = jnp.asarray([where[s] for s in group], jnp.int32)

    def body(i, buf, fn=fn, group_scales=group_scales, slots=slots):
      crops = fn(group_scales[i]).astype(buf.dtype)[None, None]
      return jax.lax.dynamic_update_slice(buf, crops, (b, slots[i], 0, 0, 0, 0))

    buf = jax.lax.fori_loop(0, len(group), body, buf)
  return buf
