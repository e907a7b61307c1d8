"""CLIP's Flax modules: the ViT image tower, the causal text tower, both together, and the zero-shot classifier.

Names mirror OpenAI's torch names (as scenic's CLIP does): `visual/{conv1, class_embedding, positional_embedding,
ln_pre, transformer/resblocks_{i}/{ln_1, attn, ln_2, mlp/{c_fc, c_proj}}, ln_post, proj}`,
`text/{token_embedding, positional_embedding, transformer/..., ln_final, text_projection}`, `logit_scale`.
OpenAI CLIP uses QuickGELU and LayerNorm eps 1e-5; open_clip models without `-quickgelu` use exact GELU
(`activation="gelu"`).

The released architectures and the sizes read from a state dict are in `zoomjax.models.clip_archs`; the
zero-shot head in `clip_head`; the registered classifiers (`clip_vit_*`, `openclip_vit_*`) in `clip_families`;
the head builder command in `clip_cli`.
"""
from typing import Any, Dict, Optional, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from zoomjax.models.layers import Encoder1DBlock

__all__ = ["CLIP", "TextTower", "Transformer", "VisionTower", "ZERO_SHOT_SCALE", "ZeroShotClassifier", "l2_normalize",
           "patch_tokens", "trim_to_eot", "zero_shot_logits"]

_CLIP_NAMES = ("ln_1", "attn", "ln_2", "mlp")

# Logit scale of the zero-shot classifier (OpenAI's learned scale is clamped at exactly 100).
ZERO_SHOT_SCALE = 100.0


class Transformer(nn.Module):
  """`depth` pre-LN residual blocks with OpenAI's parameter names (`resblocks_{i}/{ln_1, attn, ln_2, mlp}`);
  `mask` (causal for the text tower) is passed to every attention."""
  width: int
  depth: int
  num_heads: int
  mlp_dim: int
  activation: str = "quick_gelu"
  layernorm_epsilon: float = 1e-5
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, mask: Optional[jax.Array] = None) -> jax.Array:
    for i in range(self.depth):
      x = Encoder1DBlock(self.num_heads, self.mlp_dim, self.layernorm_epsilon, gelu_approximate=False,
                         activation=self.activation, dtype=self.dtype, names=_CLIP_NAMES,
                         mlp_names=("c_fc", "c_proj"), name=f"resblocks_{i}")(x, mask)
    return x


def _ln(eps: float, dtype: Any, name: str) -> nn.LayerNorm:
  """A LayerNorm computing in `dtype` with float32 parameters (what the checkpoints store)."""
  return nn.LayerNorm(epsilon=eps, dtype=dtype, param_dtype=jnp.float32, name=name)


def patch_tokens(module: nn.Module, x: jax.Array, patch_size: int, width: int, eps: float, dtype: Any
                 ) -> Tuple[jax.Array, Tuple[int, int]]:
  """CLIP's ViT stem, called inside `module`'s compact `__call__` (its `conv1`, `class_embedding`,
  `positional_embedding`, `ln_pre`): images (B, H, W, 3) -> ((B, 1 + h * w, width) tokens, (h, w) patch grid).
  Shared by every tower built on it (OpenAI/open_clip ViTs, open_clip's CoCa)."""
  p, d = patch_size, width
  x = nn.Conv(d, (p, p), (p, p), padding="VALID", use_bias=False, dtype=dtype, param_dtype=jnp.float32,
              name="conv1")(x.astype(dtype))
  b, h, w, _ = x.shape
  x = x.reshape(b, h * w, d)
  cls = module.param("class_embedding", nn.initializers.normal(d ** -0.5), (d,), jnp.float32)
  x = jnp.concatenate([jnp.broadcast_to(cls.astype(x.dtype), (b, 1, d)), x], axis=1)
  shape = (1 + h * w, d)
  if module.has_variable("params", "positional_embedding"):
    have = tuple(module.get_variable("params", "positional_embedding").shape)
    if have != shape:
      raise ValueError(f"CLIP positional_embedding {have} does not fit a {h * p}x{w * p} input "
                       f"({1 + h * w} tokens); feed the checkpoint's input size (or load it with "
                       "image_size= to resample the position embedding)")
  pe = module.param("positional_embedding", nn.initializers.normal(d ** -0.5), shape, jnp.float32)
  x = x + pe.astype(x.dtype)
  return _ln(eps, dtype, "ln_pre")(x), (h, w)


class VisionTower(nn.Module):
  """CLIP's ViT image encoder. Returns (embedding (B, E), intermediates)."""
  patch_size: int = 32
  width: int = 768
  depth: int = 12
  num_heads: int = 12
  mlp_dim: int = 3072
  embed_dim: int = 512
  activation: str = "quick_gelu"
  layernorm_epsilon: float = 1e-5
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> Tuple[jax.Array, Dict[str, jax.Array]]:
    d = self.width
    x, (h, w) = patch_tokens(self, x, self.patch_size, d, self.layernorm_epsilon, self.dtype)
    b = x.shape[0]
    x = Transformer(d, self.depth, self.num_heads, self.mlp_dim, self.activation, self.layernorm_epsilon,
                    self.dtype, name="transformer")(x)
    x = _ln(self.layernorm_epsilon, self.dtype, "ln_post")(x)
    out = {"encoded": x, "feature_map": x[:, 1:].reshape(b, h, w, d), "pre_logits": x[:, 0]}
    proj = self.param("proj", nn.initializers.normal(d ** -0.5), (d, self.embed_dim), jnp.float32)
    emb = x[:, 0] @ proj.astype(x.dtype)  # OpenAI stores proj as (in, out): x @ proj, no transpose.
    return emb.astype(jnp.float32), out


def trim_to_eot(tokens: np.ndarray) -> np.ndarray:
  """Tokens (B, L) cut after the batch's last eot (each row's largest id): what `TextTower(trimmed=True)` takes.
  Prompts are short, so this is most of the text tower's work saved where prompts are encoded again and again
  (TPT's prompt tuning)."""
  tokens = np.asarray(tokens)
  return tokens[:, :int(tokens.argmax(-1).max()) + 1]


class TextTower(nn.Module):
  """CLIP's causal text transformer; pools the eot token (the largest id in each row). Returns (B, E)."""
  vocab_size: int = 49408
  context_length: int = 77
  width: int = 512
  depth: int = 12
  num_heads: int = 8
  mlp_dim: int = 2048
  embed_dim: int = 512
  activation: str = "quick_gelu"
  layernorm_epsilon: float = 1e-5
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, tokens: jax.Array, embeddings: Optional[jax.Array] = None, *, trimmed: bool = False
               ) -> jax.Array:
    """`embeddings` (B, L, width), when given, replace the token-embedding lookup (prompt tuning learns some of
    them, e.g. TPT's context); `tokens` still place the eot token that is pooled.

    trimmed: the rows are cut after the last eot of the batch (`trim_to_eot`), L <= context_length. The result is
    the same, since causal attention never lets a later position reach the eot; the tower does L / 77 of the work.
    """
    tokens = jnp.asarray(tokens, jnp.int32)
    length = tokens.shape[-1]
    if length > self.context_length or (length != self.context_length and not trimmed):
      raise ValueError(f"text tokens have length {length}, CLIP expects {self.context_length}")
    embed = nn.Embed(self.vocab_size, self.width, dtype=self.dtype, param_dtype=jnp.float32, name="token_embedding")
    x = embed(tokens) if embeddings is None else jnp.asarray(embeddings, self.dtype)
    pe = self.param("positional_embedding", nn.initializers.normal(0.01), (self.context_length, self.width),
                    jnp.float32)
    x = x + pe[:length].astype(x.dtype)
    mask = nn.make_causal_mask(tokens)
    x = Transformer(self.width, self.depth, self.num_heads, self.mlp_dim, self.activation,
                    self.layernorm_epsilon, self.dtype, name="transformer")(x, mask)
    x = _ln(self.layernorm_epsilon, self.dtype, "ln_final")(x)
    x = x[jnp.arange(x.shape[0]), jnp.argmax(tokens, axis=-1)]
    proj = self.param("text_projection", nn.initializers.normal(self.width ** -0.5),
                      (self.width, self.embed_dim), jnp.float32)
    return (x @ proj.astype(x.dtype)).astype(jnp.float32)


class CLIP(nn.Module):
  """Both towers. `__call__(images, tokens)` -> (logits_per_image (B_img, B_txt), intermediates) with
  normalised `image_features`/`text_features` and unnormalised `image_embeddings`/`text_embeddings`.

  `encode_image` / `encode_text` give unnormalised embeddings (apply with `method=`).
  """
  vision_cfg: Dict[str, Any]
  text_cfg: Dict[str, Any]
  activation: str = "quick_gelu"  # OpenAI and open_clip `-quickgelu`; "gelu" for other open_clip models
  dtype: Any = jnp.float32

  def setup(self) -> None:
    self.visual = VisionTower(**self.vision_cfg, activation=self.activation, dtype=self.dtype)
    self.text = TextTower(**self.text_cfg, activation=self.activation, dtype=self.dtype)
    self.logit_scale = self.param("logit_scale", nn.initializers.constant(np.log(1 / 0.07)), (), jnp.float32)

  def encode_image(self, images: jax.Array) -> jax.Array:
    """Unnormalised image embeddings (B, E)."""
    return self.visual(images)[0]

  def encode_text(self, tokens: jax.Array) -> jax.Array:
    """Unnormalised text embeddings (B, E) of (B, context_length) token ids."""
    return self.text(tokens)

  def __call__(self, images: jax.Array, tokens: jax.Array) -> Tuple[jax.Array, Dict[str, jax.Array]]:
    img_emb, txt_emb = self.encode_image(images), self.encode_text(tokens)
    img, txt = l2_normalize(img_emb), l2_normalize(txt_emb)
    return jnp.exp(self.logit_scale) * img @ txt.T, {
        "image_features": img, "text_features": txt, "image_embeddings": img_emb, "text_embeddings": txt_emb}


def l2_normalize(x: jax.Array, axis: int = -1) -> jax.Array:
  """`x` scaled to unit L2 norm along `axis` (CLIP compares embeddings by cosine)."""
  return x / jnp.linalg.norm(x, axis=axis, keepdims=True)


def zero_shot_logits(module: nn.Module, emb: jax.Array, out: Dict[str, jax.Array],
                     num_classes: int) -> Tuple[jax.Array, Dict[str, jax.Array]]:
  """The end every CLIP-style zero-shot classifier shares, called inside its compact `__call__`: records the
  image embedding (`image_embeddings`, float32) and its L2-normalised `image_features` in `out`, and returns
  (100 * image_features @ zeroshot_head, out), the (E, C) head being `module`'s `zeroshot_head` parameter.
  A random head (random_init) has unit-norm-ish columns, so smoke tests see varied logits."""
  out["image_embeddings"] = emb = emb.astype(jnp.float32)
  out["image_features"] = emb = l2_normalize(emb)
  e = emb.shape[-1]
  head = module.param("zeroshot_head", nn.initializers.normal(e ** -0.5), (e, num_classes), jnp.float32)
  return ZERO_SHOT_SCALE * emb @ head, out


class ZeroShotClassifier(nn.Module):
  """Image tower + a fixed zero-shot head: logits = 100 * normalise(image embedding) @ head.

  `head` (E, C) holds the normalised per-class text embeddings (see `clip_head.zero_shot_head`). This is what the zoom
  paper evaluates as "CLIP ViT-L/14"; intermediates are the image tower's plus `image_features`.
  """
  vision_cfg: Dict[str, Any]
  num_classes: int = 1000
  activation: str = "quick_gelu"  # OpenAI and open_clip `-quickgelu`; "gelu" for other open_clip models
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> Tuple[jax.Array, Dict[str, jax.Array]]:
    emb, out = VisionTower(**self.vision_cfg, activation=self.activation, dtype=self.dtype, name="visual")(x)
    return zero_shot_logits(self, emb, out, self.num_classes)
