"""Depthwise k x k convolution with TF 'SAME' padding, two forms with one kernel layout (k, k, C).

'shift': a sum of k*k strided slices times per-channel weights, with a hand-written VJP; XLA:CPU runs it much
faster than a grouped convolution, and autodiff of the slices is slow. 'grouped': `feature_group_count=C`,
the fast form on GPU/TPU. Figures: BENCHMARKS.md, "Kernel design notes".
"""
import functools
from typing import Optional, Tuple

import jax
import jax.numpy as jnp


def same_padding(size: int, k: int, s: int) -> Tuple[int, int]:
  """TF 'SAME' padding of one spatial axis: total max((ceil(n/s)-1)*s + k - n, 0), extra at the end."""
  out = -(-size // s)
  total = max((out - 1) * s + k - size, 0)
  return total // 2, total - total // 2


def strided_window(xp: jax.Array, a: int, b: int, oh: int, ow: int, stride: int) -> jax.Array:
  """xp[:, a::stride, b::stride] limited to (oh, ow) positions: the input of kernel tap (a, b)."""
  n, _, _, c = xp.shape
  return jax.lax.slice(xp, (0, a, b, 0), (n, a + (oh - 1) * stride + 1, b + (ow - 1) * stride + 1, c),
                       (1, stride, stride, 1))


def _shift_sum(xp: jax.Array, kernel: jax.Array, stride: int, oh: int, ow: int) -> jax.Array:
  """sum_{a,b} window(a, b) * kernel[a, b]: XLA fuses the k*k terms into one loop over the output."""
  k = kernel.shape[0]
  out = None
  for a in range(k):
    for b in range(k):
      term = strided_window(xp, a, b, oh, ow, stride) * kernel[a, b]
      out = term if out is None else out + term
  return out


Padding = Optional[Tuple[Tuple[int, int], Tuple[int, int]]]  # ((top, bottom), (left, right)); None: TF 'SAME'.


def resolve_padding(h: int, w: int, k: int, stride: int, padding: Padding) -> Tuple[Tuple[int, int], ...]:
  """Explicit ((top, bottom), (left, right)) padding; None is TF 'SAME'."""
  if padding is None:
    return same_padding(h, k, stride), same_padding(w, k, stride)
  return tuple(tuple(p) for p in padding)


def _pad(x: jax.Array, k: int, stride: int, padding: Padding) -> jax.Array:
  ph, pw = resolve_padding(x.shape[1], x.shape[2], k, stride, padding)
  return jnp.pad(x, ((0, 0), ph, pw, (0, 0)))


def _out_size(size: int, pad: Tuple[int, int], k: int, stride: int) -> int:
  return (size + pad[0] + pad[1] - k) // stride + 1


def depthwise_conv_shift_autodiff(x: jax.Array, kernel: jax.Array, stride: int,
                                  padding: Padding = None) -> jax.Array:
  """`depthwise_conv_shift` with JAX's own gradient (the benchmark's baseline)."""
  k = kernel.shape[0]
  _, h, w, _ = x.shape
  ph, pw = resolve_padding(h, w, k, stride, padding)
  return _shift_sum(_pad(x, k, stride, padding), kernel, stride, _out_size(h, ph, k, stride),
                    _out_size(w, pw, k, stride))


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def depthwise_conv_shift(x: jax.Array, kernel: jax.Array, stride: int, padding: Padding = None) -> jax.Array:
  """Depthwise conv as a sum of k*k strided slices times per-channel weights; TF 'SAME' unless `padding`.

  x: (N, H, W, C); kernel: (k, k, C). Equal to the grouped convolution to float rounding; the gradient is
  hand-written (`_depthwise_bwd`) because autodiff of the slices is much slower than the forward.
  `padding` ((top, bottom), (left, right)) serves torch-layout models (symmetric k // 2).
  """
  return depthwise_conv_shift_autodiff(x, kernel, stride, padding)


def _depthwise_fwd(x, kernel, stride, padding):
  return depthwise_conv_shift(x, kernel, stride, padding), (x, kernel)


def _depthwise_bwd(stride, padding, residuals, g):
  """Input gradient: JAX's transpose of the slices for 3x3 kernels (faster there); for 5x5 one more
  shift-sum (g dilated by the stride, kernel flipped).

  Kernel gradient: k*k sums over (N, H, W) of window(a, b) * g, looping over images so each image's slices
  stay in cache (whole-tensor reductions make k*k passes over memory).
  """
  x, kernel = residuals
  k = kernel.shape[0]
  n, h, w, c = x.shape
  oh, ow = g.shape[1:3]
  if k <= 3:
    dx = jax.vjp(lambda x: depthwise_conv_shift_autodiff(x, kernel, stride, padding), x)[1](g)[0]
  else:
    # dx_padded[j] = sum_a g_dilated[j - a] kernel[a]; only the rows/cols of the unpadded input are kept.
    (top, _), (left, _) = resolve_padding(h, w, k, stride, padding)
    lh, lw = stride * (oh - 1) + 1, stride * (ow - 1) + 1
    gp = jax.lax.pad(g, jnp.zeros((), g.dtype), ((0, 0, 0), (k - 1 - top, top + h - lh, stride - 1),
                                                 (k - 1 - left, left + w - lw, stride - 1), (0, 0, 0)))
    dx = _shift_sum(gp, kernel[::-1, ::-1], 1, h, w).astype(x.dtype)
  xp = _pad(x, k, stride, padding)

  def one_image(i, acc):
    xi = jax.lax.dynamic_slice_in_dim(xp, i, 1, 0).astype(jnp.float32)
    gi = jax.lax.dynamic_slice_in_dim(g, i, 1, 0).astype(jnp.float32)
    return acc + jnp.stack([jnp.sum(strided_window(xi, a, b, oh, ow, stride) * gi, axis=(0, 1, 2))
                            for a in range(k) for b in range(k)])

  dk = jax.lax.fori_loop(0, n, one_image, jnp.zeros((k * k, c), jnp.float32))
  return dx, dk.reshape(k, k, c).astype(kernel.dtype)


depthwise_conv_shift.defvjp(_depthwise_fwd, _depthwise_bwd)


def depthwise_conv_grouped(x: jax.Array, kernel: jax.Array, stride: int, padding: Padding = None) -> jax.Array:
  """Depthwise conv as a grouped convolution; kernel (k, k, C); TF 'SAME' unless `padding`."""
  c = x.shape[-1]
  return jax.lax.conv_general_dilated(
      x, kernel[:, :, None, :], (stride, stride), "SAME" if padding is None else padding,
      dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=c)
