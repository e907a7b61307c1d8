"""Test-time views as pure functions of (image, hw, key): RandomResizedCrop, the standard eval view and AugMix.

Images enter as a zero-padded canvas (Hc, Wc, 3) plus the true size `hw` (traced; None: the whole canvas), so one
compiled function serves every image size and vmaps over a batch of images. Every function of `zoomjax.tta` takes
its arguments in one order: (variables,) image, hw, key, then options. Resampling is
`zoomjax.resample.resize_crop` (PIL semantics). Outputs are float32 pixels in [0, 255] holding whole numbers, like
the uint8 PIL images torchvision hands to ToTensor; the model bundle's `preprocessing.normalize` comes after.

Randomness comes only from `jax.random` keys, so a view is a pure function of (image, hw, key).

Pass order: every resize here runs horizontally first, as every Pillow before 13.0 did (MEMO's and the zoom
study's setup). `pil_order=True` follows the installed Pillow >= 13 instead (vertical first for strong vertical
downscales; <= 1 grey level apart). It is off by default because the choice depends on the traced crop box:
under `vmap` (views, images) XLA turns that branch into a select and computes both orders, doubling the cost of
every view.
"""
import math
from typing import Callable, Sequence, Tuple

import jax
import jax.numpy as jnp

from zoomjax.resample import resize_crop, short_side_resize

__all__ = ["AUGMIX_FILL", "AUGMIX_OPS", "Augmentation", "RRC_RATIO", "RRC_SCALE", "as_hw", "augmix",
           "augmix_augmentation", "augmix_chain", "augmix_op", "random_resized_crop", "rrc_augmentation",
           "sample_rrc_box", "standard_view"]

RRC_SCALE = (0.08, 1.0)
RRC_RATIO = (3.0 / 4.0, 4.0 / 3.0)
# MEMO passes `fillcolor=128` to PIL on RGB images, which PIL reads as the packed pixel (128, 0, 0): dark red.
AUGMIX_FILL = (128.0, 0.0, 0.0)
AUGMIX_OPS = ("autocontrast", "equalize", "rotate", "solarize", "shear_x", "shear_y", "translate_x",
              "translate_y", "posterize")

# An augmentation: (canvas (Hc, Wc, 3), hw int32 (2,), key) -> float32 (H', W', 3) pixels in [0, 255].
Augmentation = Callable[[jax.Array, jax.Array, jax.Array], jax.Array]


def as_hw(canvas: jax.Array, hw=None) -> jax.Array:
  """The true (h, w) of an image in a canvas: `hw` if given, else the canvas shape; int32 (2,)."""
  if hw is None:
    hw = canvas.shape[:2]
  return jnp.asarray(hw, jnp.int32)


def sample_rrc_box(hw, key: jax.Array, scale: Tuple[float, float] = RRC_SCALE,
                   ratio: Tuple[float, float] = RRC_RATIO, attempts: int = 10) -> jax.Array:
  """torchvision `RandomResizedCrop.get_params`: int32 (top, left, height, width) of a crop of an (h, w) image.

  Up to `attempts` draws of (area fraction ~ U(scale), log aspect ~ U(log ratio)); the first whose rounded box fits
  is used, at a uniform integer position. If none fits: the centre crop of the whole image with the aspect ratio
  clamped into `ratio`. All attempts are drawn at once (vmap/jit friendly); the first valid one wins, as in the loop.
  """
  h, w = hw[0], hw[1]
  hf, wf = h.astype(jnp.float32), w.astype(jnp.float32)
  k_area, k_ratio, k_top, k_left = jax.random.split(key, 4)
  area = hf * wf * jax.random.uniform(k_area, (attempts,), minval=scale[0], maxval=scale[1])
  log_ratio = jax.random.uniform(k_ratio, (attempts,), minval=math.log(ratio[0]), maxval=math.log(ratio[1]))
  aspect = jnp.exp(log_ratio)
  cw = jnp.round(jnp.sqrt(area * aspect)).astype(jnp.int32)
  ch = jnp.round(jnp.sqrt(area / aspect)).astype(jnp.int32)
  valid = (cw > 0) & (cw <= w) & (ch > 0) & (ch <= h)
  first = jnp.argmax(valid)
  ch, cw = ch[first], cw[first]
  # torch.randint(0, n): a uniform integer in [0, n).
  top = jnp.floor(jax.random.uniform(k_top, ()) * (h - ch + 1).astype(jnp.float32)).astype(jnp.int32)
  left = jnp.floor(jax.random.uniform(k_left, ()) * (w - cw + 1).astype(jnp.float32)).astype(jnp.int32)
  top, left = jnp.minimum(top, h - ch), jnp.minimum(left, w - cw)
  # Fallback: whole image, aspect clamped to the allowed range, centred.
  in_ratio = wf / hf
  fb_w = jnp.where(in_ratio > ratio[1], jnp.round(hf * ratio[1]).astype(jnp.int32), w)
  fb_h = jnp.where(in_ratio < ratio[0], jnp.round(wf / ratio[0]).astype(jnp.int32), h)
  fb = jnp.stack([(h - fb_h) // 2, (w - fb_w) // 2, fb_h, fb_w])
  return jnp.where(jnp.any(valid), jnp.stack([top, left, ch, cw]), fb).astype(jnp.int32)


def random_resized_crop(canvas: jax.Array, hw, key: jax.Array, size: int = 224, method: str = "bicubic",
                        scale: Tuple[float, float] = RRC_SCALE, ratio: Tuple[float, float] = RRC_RATIO, *,
                        pil_order: bool = False) -> jax.Array:
  """torchvision `RandomResizedCrop(size, scale, ratio, interpolation=method)` on a PIL image -> (size, size, 3).

  The zoom-in view of MEMO + RRC (bicubic, the paper) and AugMix's pre-augmentation (bilinear): PIL's
  `img.crop(box).resize((size, size), method)`, antialiased when downscaling.
  """
  hw = as_hw(canvas, hw)
  box = sample_rrc_box(hw, key, scale, ratio)
  return resize_crop(canvas, hw, box, (size, size), (0, 0), (size, size), method=method, pil_order=pil_order)


def standard_view(canvas: jax.Array, hw=None, resize_size: int = 256, crop_size: int = 224,
                  method: str = "bilinear", *, pil_order: bool = False) -> jax.Array:
  """torchvision `Resize(resize_size)` + `CenterCrop(crop_size)` on a PIL image: MEMO's prediction view.

  Resize: the short side becomes `resize_size`, the long side `int(resize_size * long / short)`. CenterCrop: top =
  round((H' - crop) / 2) (half to even, as Python's round).
  """
  hw = as_hw(canvas, hw)
  h, w = hw[0], hw[1]
  new_h, new_w = short_side_resize(h, w, resize_size)
  top = jnp.round((new_h - crop_size) / 2.0).astype(jnp.int32)
  left = jnp.round((new_w - crop_size) / 2.0).astype(jnp.int32)
  box = jnp.stack([jnp.int32(0), jnp.int32(0), h, w])
  return resize_crop(canvas, hw, box, jnp.stack([new_h, new_w]), jnp.stack([top, left]), (crop_size, crop_size),
                     method=method, pil_order=pil_order)


def rrc_augmentation(size: int = 224, method: str = "bicubic", scale: Tuple[float, float] = RRC_SCALE,
                     ratio: Tuple[float, float] = RRC_RATIO, *, pil_order: bool = False) -> Augmentation:
  """MEMO + RRC's view distribution (paper §3.3): RandomResizedCrop(224, bicubic), no flip, no mixing."""

  def augment(canvas, hw, key):
    return random_resized_crop(canvas, hw, key, size, method, scale, ratio, pil_order=pil_order)

  return augment


# ---------------------------------------------------------------------------------------------------------------
# AugMix operations on 8-bit images (values are whole numbers in float32), PIL semantics.


def _histograms(img: jax.Array) -> jax.Array:
  """(H, W, 3) whole-number pixels -> (3, 256) int32 per-channel histograms."""
  idx = img.reshape(-1, img.shape[-1]).astype(jnp.int32).T  # (3, N)
  return jax.vmap(lambda v: jnp.zeros(256, jnp.int32).at[v].add(1))(idx)


def autocontrast_lut(hist: jax.Array) -> jax.Array:
  """`ImageOps.autocontrast(img)` (cutoff 0): per channel, stretch [lo, hi] to [0, 255]; (3, 256) -> (3, 256).

  PIL computes int(i * 255/(hi-lo) - lo*255/(hi-lo)) in doubles; this uses the exact floor((i-lo)*255/(hi-lo)),
  which differs only where PIL's double rounding lands just below a whole number.
  """
  i = jnp.arange(256, dtype=jnp.int32)
  present = hist > 0
  lo = jnp.argmax(present, axis=-1)[:, None]
  hi = (255 - jnp.argmax(present[:, ::-1], axis=-1))[:, None]
  span = jnp.maximum(hi - lo, 1)
  stretched = jnp.clip(jnp.floor_divide(jnp.maximum(i - lo, 0) * 255, span), 0, 255)
  return jnp.where(hi <= lo, i, jnp.where(i < lo, 0, stretched))


def equalize_lut(hist: jax.Array) -> jax.Array:
  """`ImageOps.equalize(img)`: per channel, integer cumulative-histogram LUT; (3, 256) -> (3, 256)."""
  i = jnp.arange(256, dtype=jnp.int32)
  nonzero = hist > 0
  last = 255 - jnp.argmax(nonzero[:, ::-1], axis=-1)
  last_count = jnp.take_along_axis(hist, last[:, None], axis=-1)[:, 0]
  step = (jnp.sum(hist, axis=-1) - last_count) // 255
  safe_step = jnp.maximum(step, 1)[:, None]
  before = jnp.cumsum(hist, axis=-1) - hist  # pixels strictly below level i
  lut = jnp.minimum((safe_step // 2 + before) // safe_step, 255)
  identity = (jnp.sum(nonzero, axis=-1) <= 1) | (step == 0)
  return jnp.where(identity[:, None], i, lut)


def solarize_lut(threshold: jax.Array) -> jax.Array:
  """`ImageOps.solarize(img, threshold)`: invert levels >= threshold; (256,)."""
  i = jnp.arange(256, dtype=jnp.int32)
  return jnp.where(i < threshold, i, 255 - i)


def posterize_lut(bits: jax.Array) -> jax.Array:
  """`ImageOps.posterize(img, bits)`: keep the top `bits` bits; (256,)."""
  i = jnp.arange(256, dtype=jnp.int32)
  q = jnp.left_shift(1, 8 - bits)
  return i - i % q


def apply_lut(img: jax.Array, lut: jax.Array) -> jax.Array:
  """Per-channel LUT (3, 256) on whole-number pixels (H, W, 3)."""
  idx = img.astype(jnp.int32)
  out = jax.vmap(lambda l, v: l[v], in_axes=(0, -1), out_axes=-1)(lut, idx)
  return out.astype(jnp.float32)


def affine_bilinear(img: jax.Array, matrix: jax.Array, fill: Sequence[float] = AUGMIX_FILL) -> jax.Array:
  """PIL `img.transform(size, Image.AFFINE, matrix, resample=BILINEAR, fillcolor=fill)` on an 8-bit image.

  `matrix` (a, b, c, d, e, f) maps output pixel centres (x+.5, y+.5) to input coordinates, as PIL's. A source point
  outside the image gives `fill`; otherwise bilinear taps at (x-.5, y-.5) with edge clamping, truncated to an
  integer as PIL's 8-bit bilinear filter does.
  """
  h, w = img.shape[0], img.shape[1]
  a, b, c, d, e, f = (matrix[k] for k in range(6))
  ys = jnp.arange(h, dtype=jnp.float32)[:, None] + 0.5
  xs = jnp.arange(w, dtype=jnp.float32)[None, :] + 0.5
  xin = a * xs + b * ys + c
  yin = d * xs + e * ys + f
  inside = (xin >= 0) & (xin < w) & (yin >= 0) & (yin < h)
  xf, yf = xin - 0.5, yin - 0.5
  x0, y0 = jnp.floor(xf), jnp.floor(yf)
  dx, dy = (xf - x0)[..., None], (yf - y0)[..., None]
  x0 = x0.astype(jnp.int32)
  y0 = y0.astype(jnp.int32)
  xa, xb = jnp.clip(x0, 0, w - 1), jnp.clip(x0 + 1, 0, w - 1)
  ya = jnp.clip(y0, 0, h - 1)
  has_b = (y0 + 1 >= 0) & (y0 + 1 < h)
  yb = jnp.clip(y0 + 1, 0, h - 1)
  flat = img.reshape(h * w, -1)
  tap = lambda yy, xx: flat[(yy * w + xx).reshape(-1)].reshape(h, w, -1)
  v1 = tap(ya, xa) + (tap(ya, xb) - tap(ya, xa)) * dx
  v2 = tap(yb, xa) + (tap(yb, xb) - tap(yb, xa)) * dx
  v2 = jnp.where(has_b[..., None], v2, v1)
  v = jnp.floor(v1 + (v2 - v1) * dy)
  return jnp.where(inside[..., None], jnp.clip(v, 0, 255), jnp.asarray(fill, jnp.float32))


def _rotate_matrix(degrees: jax.Array, h: int, w: int) -> jax.Array:
  """PIL `Image.rotate(degrees)` about the image centre, as its inverse affine matrix."""
  angle = -jnp.deg2rad(degrees.astype(jnp.float32))
  cos, sin = jnp.cos(angle), jnp.sin(angle)
  cx, cy = w / 2.0, h / 2.0
  return jnp.stack([cos, sin, cos * -cx + sin * -cy + cx, -sin, cos, -sin * -cx + cos * -cy + cy])


def augmix_op(img: jax.Array, op: jax.Array, level: jax.Array, sign: jax.Array,
              fill: Sequence[float] = AUGMIX_FILL) -> jax.Array:
  """One AugMix operation `AUGMIX_OPS[op]` (op = -1: identity) at level in [0.1, severity], sign ±1.

  Parameters as MEMO's third_party.py: rotate ±int(l*30/10)°, solarize threshold 256 - int(l*256/10),
  shear ±l*0.3/10, translate ±int(l*(W/3)/10) px, posterize 4 - int(l*4/10) bits; affine ops bilinear with fill.
  Every op is a LUT followed by an affine warp (identity LUT for geometric ops, identity matrix for the others), so
  vmapped chains cost one LUT and one warp per step rather than nine ops.
  """
  h, w = img.shape[0], img.shape[1]
  hist = _histograms(img)
  ident = jnp.broadcast_to(jnp.arange(256, dtype=jnp.int32), (3, 256))
  sol = jnp.broadcast_to(solarize_lut(256 - jnp.floor(level * 256 / 10).astype(jnp.int32)), (3, 256))
  post = jnp.broadcast_to(posterize_lut(4 - jnp.floor(level * 4 / 10).astype(jnp.int32)), (3, 256))
  luts = jnp.stack([ident, autocontrast_lut(hist), equalize_lut(hist), sol, post])
  lut_index = jnp.select([op == 0, op == 1, op == 3, op == 8], [1, 2, 3, 4], 0)
  img = apply_lut(img, luts[lut_index])

  shear = sign * level * 0.3 / 10
  shift = sign * jnp.floor(level * (w / 3) / 10)
  shift_y = sign * jnp.floor(level * (h / 3) / 10)
  degrees = sign * jnp.floor(level * 30 / 10)
  one, zero = jnp.float32(1), jnp.float32(0)
  mats = jnp.stack([
      jnp.stack([one, zero, zero, zero, one, zero]),
      _rotate_matrix(degrees, h, w),
      jnp.stack([one, shear, zero, zero, one, zero]),
      jnp.stack([one, zero, zero, shear, one, zero]),
      jnp.stack([one, zero, shift, zero, one, zero]),
      jnp.stack([one, zero, zero, zero, one, shift_y]),
  ])
  mat_index = jnp.select([op == 2, op == 4, op == 5, op == 6, op == 7], [1, 2, 3, 4, 5], 0)
  # PIL returns a copy for a 0° rotation; the identity matrix reproduces pixels exactly, so no special case.
  return affine_bilinear(img, mats[mat_index], fill)


def augmix_chain(img: jax.Array, key: jax.Array, severity: float = 1.0, max_depth: int = 3,
                 fill: Sequence[float] = AUGMIX_FILL) -> jax.Array:
  """One AugMix chain: depth ~ randint(1, max_depth + 1) ops drawn uniformly with replacement."""
  k_depth, k_ops = jax.random.split(key)
  depth = jax.random.randint(k_depth, (), 1, max_depth + 1)

  def step(img, inputs):
    index, k = inputs
    k_op, k_level, k_sign = jax.random.split(k, 3)
    op = jax.random.randint(k_op, (), 0, len(AUGMIX_OPS))
    level = jax.random.uniform(k_level, (), minval=0.1, maxval=severity)
    sign = jnp.where(jax.random.bernoulli(k_sign), -1.0, 1.0)
    return augmix_op(img, jnp.where(index < depth, op, -1), level, sign, fill), None

  img, _ = jax.lax.scan(step, img, (jnp.arange(max_depth), jax.random.split(k_ops, max_depth)))
  return img


def augmix(canvas: jax.Array, hw, key: jax.Array, size: int = 224, severity: float = 1.0, width: int = 3,
           max_depth: int = 3, alpha: float = 1.0, fill: Sequence[float] = AUGMIX_FILL, *,
           pil_order: bool = False) -> jax.Array:
  """MEMO's AugMix view (paper §3.3) -> float32 (size, size, 3) in [0, 255].

  Pre-augment RandomResizedCrop(size, bilinear) + horizontal flip (p=0.5); `width` chains; mix weights
  w ~ Dirichlet(alpha), m ~ Beta(alpha, alpha); out = m*x + (1-m)*sum_i w_i*chain_i. MEMO mixes normalised
  tensors; normalisation is affine and the weights sum to one, so mixing pixels first is the same view.
  """
  hw = as_hw(canvas, hw)
  k_rrc, k_flip, k_w, k_m, k_chains = jax.random.split(key, 5)
  x = random_resized_crop(canvas, hw, k_rrc, size, "bilinear", pil_order=pil_order)
  x = jnp.where(jax.random.bernoulli(k_flip), x[:, ::-1], x)
  if alpha == 1.0:  # The paper's case, in closed form: gamma samplers cost seconds of compile time on CPU.
    e = jax.random.exponential(k_w, (width,))
    ws = e / jnp.sum(e)  # Dirichlet(1, ..., 1) = normalised Exp(1) draws
    m = jax.random.uniform(k_m, ())  # Beta(1, 1) = U(0, 1)
  else:
    ws = jax.random.dirichlet(k_w, jnp.full((width,), alpha, jnp.float32))
    m = jax.random.beta(k_m, alpha, alpha)
  chains = jax.vmap(lambda k: augmix_chain(x, k, severity, max_depth, fill))(jax.random.split(k_chains, width))
  mix = jnp.tensordot(ws, chains, axes=1)
  return m * x + (1.0 - m) * mix


def augmix_augmentation(size: int = 224, severity: float = 1.0, width: int = 3, max_depth: int = 3,
                        alpha: float = 1.0, *, pil_order: bool = False) -> Augmentation:
  """MEMO + AugMix's view distribution with the paper's hyper-parameters by default."""

  def augment(canvas, hw, key):
    return augmix(canvas, hw, key, size, severity, width, max_depth, alpha, pil_order=pil_order)

  return augment
