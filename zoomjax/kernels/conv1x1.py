"""1x1 convolution as an einsum, with a cache-friendly kernel gradient (jax.custom_vjp).

As one einsum, the kernel gradient sum_{n,h,w} x^T g makes XLA:CPU copy a whole activation into channel-major
layout first; summing chunks of whole images (~32k positions) keeps each chunk's transpose in cache.
Figures: BENCHMARKS.md, "Kernel design notes".
"""
import jax
import jax.numpy as jnp

# Positions per kernel-gradient chunk (whole images; at least one image per chunk).
_CHUNK_POSITIONS = 32768


@jax.custom_vjp
def pointwise_conv(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """1x1 conv (N, H, W, C) x (C, D) -> (N, H, W, D) as an einsum, with a chunked kernel gradient."""
  return jnp.einsum("nhwc,cd->nhwd", x, kernel)


def _pointwise_fwd(x, kernel):
  return pointwise_conv(x, kernel), (x, kernel)


def _pointwise_bwd(residuals, g):
  x, kernel = residuals
  n, h, w, c = x.shape
  dx = jnp.einsum("nhwd,cd->nhwc", g, kernel).astype(x.dtype)
  chunk = max([d for d in range(1, n + 1) if n % d == 0 and d * h * w <= _CHUNK_POSITIONS] or [1])
  xs = x.reshape(n // chunk, chunk * h * w, c)
  gs = g.reshape(n // chunk, chunk * h * w, g.shape[-1])

  def one_chunk(i, acc):
    return acc + jnp.einsum("mc,md->cd", xs[i], gs[i], preferred_element_type=jnp.float32)

  dk = jax.lax.fori_loop(0, n // chunk, one_chunk, jnp.zeros(kernel.shape, jnp.float32))
  return dx, dk.astype(kernel.dtype)


pointwise_conv.defvjp(_pointwise_fwd, _pointwise_bwd)
