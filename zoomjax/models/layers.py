"""Layers shared by the model zoo."""
from typing import Any, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp


class BatchNorm(nn.Module):
  """Inference-only BatchNorm with an optional MEMO "prior" mode.

  Parameters follow flax: params `scale`/`bias`, batch_stats `mean`/`var`.
  `prior_strength=None` normalises with the running statistics (eval mode).
  `prior_strength=N` mixes them with the current batch's statistics (Schneider et al.; MEMO):
  stats = N/(N+1) * running + 1/(N+1) * batch, with the unbiased batch variance over every axis but
  the last, and no gradient through the batch statistics. Running statistics are never updated.
  """
  epsilon: float = 1e-5
  prior_strength: Optional[float] = None
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    c = x.shape[-1]
    scale = self.param("scale", nn.initializers.ones, (c,), jnp.float32)
    bias = self.param("bias", nn.initializers.zeros, (c,), jnp.float32)
    ra_mean = self.variable("batch_stats", "mean", lambda: jnp.zeros((c,), jnp.float32))
    ra_var = self.variable("batch_stats", "var", lambda: jnp.ones((c,), jnp.float32))
    mean, var = ra_mean.value, ra_var.value
    if self.prior_strength is not None:
      axes = tuple(range(x.ndim - 1))
      xf = jax.lax.stop_gradient(x.astype(jnp.float32))
      n = 1
      for a in axes:
        n *= x.shape[a]
      b_mean = jnp.mean(xf, axis=axes)
      b_var = jnp.sum(jnp.square(xf - b_mean), axis=axes) / max(n - 1, 1)
      rho = self.prior_strength / (self.prior_strength + 1.0)
      mean = rho * mean + (1.0 - rho) * b_mean
      var = rho * var + (1.0 - rho) * b_var
    mul = scale * jax.lax.rsqrt(var + self.epsilon)
    y = x.astype(jnp.float32) * mul + (bias - mean * mul)
    return y.astype(self.dtype)
