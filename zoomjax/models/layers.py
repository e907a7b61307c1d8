"""Layers shared by the model zoo."""
import functools
from typing import Any, Optional, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np


class BatchNorm(nn.Module):
  """Inference-only BatchNorm with an optional MEMO "prior" mode.

  Parameters follow flax: params `scale`/`bias`, batch_stats `mean`/`var`.
  `prior_strength=None` normalises with the running statistics (eval mode).
  `prior_strength=N` mixes them with the current batch's statistics (Schneider et al.; MEMO):
  stats = N/(N+1) * running + 1/(N+1) * batch, with the unbiased batch variance over every axis but
  the last, and no gradient through the batch statistics. Running statistics are never updated.
  `prior_strength=0` is torch's train-mode BatchNorm without running statistics, as online test-time adaptation
  (BN-adapt, TENT, EATA, SAR) uses it: the current batch's mean and biased variance, with gradients through them.
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
    if self.prior_strength == 0:
      axes = tuple(range(x.ndim - 1))
      xf = x.astype(jnp.float32)
      mean = jnp.mean(xf, axis=axes)
      var = jnp.mean(jnp.square(xf - mean), axis=axes)
    elif self.prior_strength is not None:
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


def adaptive_pool_matrix(in_size: int, out_size: int) -> np.ndarray:
  """(out, in) averaging matrix of torch's AdaptiveAvgPool along one axis.

  torch's window i is [floor(i*in/out), ceil((i+1)*in/out)); windows overlap or repeat when in < out.
  Shapes are static, so this is a constant under jit.
  """
  m = np.zeros((out_size, in_size), np.float32)
  for i in range(out_size):
    start = (i * in_size) // out_size
    end = -((-(i + 1) * in_size) // out_size)
    m[i, start:end] = 1.0 / (end - start)
  return m


def adaptive_avg_pool(x: jax.Array, output_size: Tuple[int, int]) -> jax.Array:
  """torch.nn.AdaptiveAvgPool2d for NHWC inputs (identity when the size already matches)."""
  h, w = x.shape[1:3]
  oh, ow = output_size
  if (h, w) == (oh, ow):
    return x
  ph = jnp.asarray(adaptive_pool_matrix(h, oh))
  pw = jnp.asarray(adaptive_pool_matrix(w, ow))
  y = jnp.einsum("oh,bhwc->bowc", ph, x.astype(jnp.float32), precision=jax.lax.Precision.HIGHEST)
  y = jnp.einsum("pw,bowc->bopc", pw, y, precision=jax.lax.Precision.HIGHEST)
  return y.astype(x.dtype)


def classifier_head(x: jax.Array, num_classes: int, dtype: Any, hidden: int = 4096) -> Tuple[jax.Array, jax.Array]:
  """torchvision's AlexNet/VGG classifier fc6 -> ReLU -> fc7 -> ReLU -> fc8 (dropout is inert at eval).

  Call from inside a compact `__call__`: the Dense layers become `fc6`, `fc7`, `fc8` of the caller.
  Returns (logits, pre_logits = fc7 activations).
  """
  dense = lambda n, name: nn.Dense(n, dtype=dtype, param_dtype=jnp.float32, name=name)
  # NHWC flatten; the converter permutes torch's NCHW-flattened fc6 weight to match.
  x = x.reshape(x.shape[0], -1)
  x = nn.relu(dense(hidden, "fc6")(x))
  pre_logits = nn.relu(dense(hidden, "fc7")(x))
  return dense(num_classes, "fc8")(pre_logits), pre_logits


class MlpBlock(nn.Module):
  """Transformer MLP: Dense -> GELU (or OpenAI's QuickGELU) -> Dense back to the input width."""
  mlp_dim: int
  gelu_approximate: bool = False
  activation: str = "gelu"  # "gelu" | "quick_gelu" (OpenAI CLIP)
  dtype: Any = jnp.float32
  names: tuple = ("Dense_0", "Dense_1")  # CLIP: ("c_fc", "c_proj")

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    d = x.shape[-1]
    x = nn.Dense(self.mlp_dim, dtype=self.dtype, param_dtype=jnp.float32, name=self.names[0])(x)
    if self.activation == "quick_gelu":
      x = x * nn.sigmoid(1.702 * x)
    else:
      x = nn.gelu(x, approximate=self.gelu_approximate)
    return nn.Dense(d, dtype=self.dtype, param_dtype=jnp.float32, name=self.names[1])(x)


class Encoder1DBlock(nn.Module):
  """Pre-norm transformer block; `mask` (B, 1, L, L) is e.g. CLIP's causal text mask."""
  num_heads: int
  mlp_dim: int
  layernorm_epsilon: float = 1e-6
  gelu_approximate: bool = False
  activation: str = "gelu"
  dtype: Any = jnp.float32
  # Pre-Linen numbering (one counter per block), as in vit_jax .npz files and timm's npz loader.
  names: tuple = ("LayerNorm_0", "MultiHeadDotProductAttention_1", "LayerNorm_2", "MlpBlock_3")
  mlp_names: tuple = ("Dense_0", "Dense_1")

  @nn.compact
  def __call__(self, x: jax.Array, mask: Optional[jax.Array] = None) -> jax.Array:
    ln = functools.partial(nn.LayerNorm, epsilon=self.layernorm_epsilon, dtype=self.dtype,
                           param_dtype=jnp.float32)
    y = ln(name=self.names[0])(x)
    y = nn.MultiHeadDotProductAttention(num_heads=self.num_heads, dtype=self.dtype, param_dtype=jnp.float32,
                                        deterministic=True, name=self.names[1])(y, mask=mask)
    x = x + y
    y = ln(name=self.names[2])(x)
    y = MlpBlock(self.mlp_dim, self.gelu_approximate, self.activation, dtype=self.dtype, names=self.mlp_names,
                 name=self.names[3])(y)
    return x + y
