"""Vision Transformer with a class token, big_vision/vit_jax parameter names.

One module serves torchvision, timm, vit_jax (AugReg .npz) and big_vision checkpoints; they differ only in
numerics that are attributes here: GELU (`gelu_approximate`: torchvision/timm exact erf, vit_jax/big_vision
Flax's default tanh approximation) and `layernorm_epsilon` (1e-6 for all four families).
Names: embedding, cls, Transformer/posembed_input/pos_embedding (1, 1+N, D, added after the cls token),
Transformer/encoderblock_{i}/{LayerNorm_0, MultiHeadDotProductAttention_1, LayerNorm_2, MlpBlock_3},
Transformer/encoder_norm, optional pre_logits, head.
"""
import functools
from typing import Any, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp


class MlpBlock(nn.Module):
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


class AddPositionEmbs(nn.Module):
  """Learned position embedding (1, L, D), checked against the sequence so a wrong input size is explicit."""

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    shape = (1,) + x.shape[1:]
    if self.has_variable("params", "pos_embedding"):
      have = self.get_variable("params", "pos_embedding").shape
      if tuple(have) != shape:
        raise ValueError(f"position embedding {tuple(have)} does not fit a {x.shape[1]}-token input; feed "
                         "the input size the checkpoint was trained at (or another patch size/width)")
    pe = self.param("pos_embedding", nn.initializers.normal(0.02), shape, jnp.float32)
    return x + pe.astype(x.dtype)


class Encoder(nn.Module):
  depth: int
  num_heads: int
  mlp_dim: int
  layernorm_epsilon: float = 1e-6
  gelu_approximate: bool = False
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    x = AddPositionEmbs(name="posembed_input")(x)
    for i in range(self.depth):
      x = Encoder1DBlock(self.num_heads, self.mlp_dim, self.layernorm_epsilon, self.gelu_approximate,
                         dtype=self.dtype, name=f"encoderblock_{i}")(x)
    return nn.LayerNorm(epsilon=self.layernorm_epsilon, dtype=self.dtype, param_dtype=jnp.float32,
                        name="encoder_norm")(x)


class VisionTransformer(nn.Module):
  """ViT with a class token. Input NHWC, normalised; returns (logits, intermediates).

  intermediates: `encoded` (B, 1+N, D) after the final norm, `feature_map` (patch tokens as (B, h, w, D)),
  `pre_logits` (class token, (B, D), after the optional representation layer).
  The position embedding fixes the input size (image_size = patch_size * grid); other sizes are an error.
  """
  num_classes: int = 1000
  patch_size: int = 16
  width: int = 768
  depth: int = 12
  num_heads: int = 12
  mlp_dim: int = 3072
  representation_size: Optional[int] = None
  layernorm_epsilon: float = 1e-6
  gelu_approximate: bool = False
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array):
    p = self.patch_size
    x = nn.Conv(self.width, (p, p), (p, p), padding="VALID", dtype=self.dtype, param_dtype=jnp.float32,
                name="embedding")(x.astype(self.dtype))
    b, h, w, d = x.shape
    x = x.reshape(b, h * w, d)
    cls = self.param("cls", nn.initializers.zeros, (1, 1, d), jnp.float32)
    x = jnp.concatenate([jnp.broadcast_to(cls.astype(x.dtype), (b, 1, d)), x], axis=1)
    x = Encoder(self.depth, self.num_heads, self.mlp_dim, self.layernorm_epsilon, self.gelu_approximate,
                dtype=self.dtype, name="Transformer")(x)
    out = {"encoded": x, "feature_map": x[:, 1:].reshape(b, h, w, d)}
    x = x[:, 0]
    if self.representation_size is not None:
      x = jnp.tanh(nn.Dense(self.representation_size, dtype=self.dtype, param_dtype=jnp.float32,
                            name="pre_logits")(x))
    out["pre_logits"] = x
    logits = nn.Dense(self.num_classes, dtype=self.dtype, param_dtype=jnp.float32, name="head")(x)
    return logits.astype(jnp.float32), out

