"""MEMO's loss: the entropy of the prediction averaged over augmented views."""
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["marginal_entropy"]


def marginal_entropy(logits: jax.Array, mask: Optional[np.ndarray] = None) -> jax.Array:
  """Entropy of the marginal p̄ = mean_b softmax(logits_b); logits (B, C) -> scalar.

  Follows MEMO: log p̄ = logsumexp_b(log_softmax(logits_b)) - log B, clamped at the dtype's most negative finite
  value (a class with zero probability contributes 0 instead of NaN). `mask` (C,) bool restricts the softmax to a
  dataset's label space (ImageNet-A/R: 200 classes), exactly like MEMO's column selection; masked classes get
  neither probability nor gradient.
  """
  logits = jnp.asarray(logits, jnp.float32)
  if logits.ndim != 2:
    raise ValueError(f"marginal_entropy expects (views, classes) logits, got shape {logits.shape}")
  if mask is None:
    mask = jnp.ones(logits.shape[-1], bool)
  mask = jnp.asarray(mask, bool)
  if mask.shape != logits.shape[-1:]:
    raise ValueError(f"logit mask shape {mask.shape} does not match {logits.shape[-1]} classes")
  logp = jax.nn.log_softmax(jnp.where(mask, logits, -jnp.inf), axis=-1)
  # Masked columns are -inf in every view; give them a finite stand-in so no NaN reaches the gradient.
  logp = jnp.where(mask, logp, 0.0)
  avg = jax.nn.logsumexp(logp, axis=0) - jnp.log(logits.shape[0])
  avg = jnp.maximum(avg, jnp.finfo(avg.dtype).min)
  return -jnp.sum(jnp.where(mask, jnp.exp(avg) * avg, 0.0))
