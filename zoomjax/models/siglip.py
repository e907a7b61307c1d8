"""SigLIP and SigLIP 2 (big_vision's two-tower models) and their zero-shot classifiers (`siglip_*`, `siglip2_*`),
loaded from big_vision's own `.npz` checkpoints.

The modules carry big_vision's parameter names, so a checkpoint loads by name (models/vit.py with
`pool_type="map"`, models/proj/image_text/text_transformer.py and two_towers.py):
- image tower `img/`: `embedding` (patch conv), `pos_embedding` (1, N, D) with no class token,
  `Transformer/encoderblock_{i}/{LayerNorm_0, MultiHeadDotProductAttention_0, LayerNorm_1, MlpBlock_0}`,
  `Transformer/encoder_norm`, then multi-head attention pooling `MAPHead_0/{probe, MultiHeadDotProductAttention_0,
  LayerNorm_0, MlpBlock_0}` (a learned query attends over the tokens; released towers have no `head`);
- text tower `txt/`: `Embed_0`, `pos_embedding` (1, L, D), `Encoder_0/encoderblock_{i}/...`,
  `Encoder_0/encoder_norm`, the last token (the "sticky" end token) pooled, `head` to the embedding width (none
  in So400m/16-i18n, whose text width is the embedding's); bidirectional attention (no causal mask);
- `t` (log temperature) and `b` (bias): the sigmoid loss's logits are `exp(t) * cos(img, txt) + b`.
LayerNorm eps 1e-6 and tanh-approximated GELU throughout (flax's defaults, which big_vision uses). Scanned
checkpoints (SigLIP 2: `encoderblock/` stacked on axis 0) are unstacked on load; a `params/` prefix is dropped.

Zero-shot classifier: logits = exp(t) * cos(image embedding, class embedding) + b, i.e. SigLIP's sigmoid logits
(`sigmoid(logits)` is its per-class probability; the jobs' softmax over them is the classifier's distribution).
The class embeddings (`zeroshot_head`, (E, C)) come from the text tower like CLIP's (templates' normalised
embeddings averaged, re-normalised; `clip_head.zero_shot_head`), tokenized by `siglip_tokenizer`, and are cached
on disk like CLIP's heads.
"""
import dataclasses
import functools
import math
import re
import time
from typing import Any, Callable, Dict, Optional, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from flax import traverse_util

from zoomjax.checkpoints import CheckpointError
from zoomjax.models import clip_zero_shot as zs
from zoomjax.models import registry
from zoomjax.models.clip_head import attach_zero_shot_head, tower_mismatch, zero_shot_head
from zoomjax.models.layers import Encoder1DBlock, MlpBlock
from zoomjax.models.preprocessing import Preprocessing
from zoomjax.models.siglip_tokenizer import SIGLIP_TOKENIZERS, SigLipTokenizer
from zoomjax.models.vit import resample_position_embedding

__all__ = ["ARCHS", "Encoder", "FAMILIES", "ImageTower", "MAPHead", "NUM_PARAMS", "SigLIP", "SigLipFamily",
           "SigLipZeroShotClassifier", "TextTower", "attach_siglip_text_head", "big_vision_tree",
           "config_from_checkpoint", "convert_siglip", "convert_siglip_zero_shot", "default_pad",
           "is_siglip_checkpoint", "sigmoid_logits", "siglip_text_head", "zero_shot_tensors"]

_EPS = 1e-6
_BLOCK_NAMES = ("LayerNorm_0", "MultiHeadDotProductAttention_0", "LayerNorm_1", "MlpBlock_0")


class Encoder(nn.Module):
  """big_vision's `vit.Encoder`: `encoderblock_{i}` pre-LN blocks (tanh GELU, eps 1e-6), then `encoder_norm`.

  `mask` (B, 1, L, L): which tokens attend to which (NaFlex's padding); None: all to all."""
  depth: int
  num_heads: int
  mlp_dim: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, mask: Optional[jax.Array] = None) -> jax.Array:
    for i in range(self.depth):
      x = Encoder1DBlock(self.num_heads, self.mlp_dim, _EPS, gelu_approximate=True, dtype=self.dtype,
                         names=_BLOCK_NAMES, name=f"encoderblock_{i}")(x, mask)
    return nn.LayerNorm(epsilon=_EPS, dtype=self.dtype, param_dtype=jnp.float32, name="encoder_norm")(x)


class MAPHead(nn.Module):
  """Multi-head attention pooling: a learned `probe` query attends over the tokens, plus a residual MLP.

  `mask` (B, 1, 1, L): the tokens pooled (NaFlex's real patches); None: all."""
  num_heads: int
  mlp_dim: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, mask: Optional[jax.Array] = None) -> jax.Array:
    b, _, d = x.shape
    probe = self.param("probe", nn.initializers.xavier_uniform(), (1, 1, d), jnp.float32)
    probe = jnp.broadcast_to(probe.astype(x.dtype), (b, 1, d))
    x = nn.MultiHeadDotProductAttention(num_heads=self.num_heads, dtype=self.dtype, param_dtype=jnp.float32,
                                        deterministic=True, name="MultiHeadDotProductAttention_0")(probe, x,
                                                                                                   mask=mask)
    y = nn.LayerNorm(epsilon=_EPS, dtype=self.dtype, param_dtype=jnp.float32, name="LayerNorm_0")(x)
    x = x + MlpBlock(self.mlp_dim, gelu_approximate=True, dtype=self.dtype, name="MlpBlock_0")(y)
    return x[:, 0]


class ImageTower(nn.Module):
  """SigLIP's ViT with MAP pooling (big_vision `vit.Model(pool_type="map")`). Returns (embedding (B, E), inter).

  `embed_dim` None: no `head` (the released towers; E = width)."""
  patch_size: int = 16
  width: int = 768
  depth: int = 12
  num_heads: int = 12
  mlp_dim: int = 3072
  embed_dim: Optional[int] = None
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> Tuple[jax.Array, Dict[str, jax.Array]]:
    p, d = self.patch_size, self.width
    x = nn.Conv(d, (p, p), (p, p), padding="VALID", dtype=self.dtype, param_dtype=jnp.float32,
                name="embedding")(x.astype(self.dtype))
    b, h, w, _ = x.shape
    x = x.reshape(b, h * w, d)
    shape = (1, h * w, d)
    if self.has_variable("params", "pos_embedding"):
      have = tuple(self.get_variable("params", "pos_embedding").shape)
      if have != shape:
        raise ValueError(f"SigLIP pos_embedding {have} does not fit a {h}x{w} patch grid ({h * p} px input); "
                         "feed the checkpoint's input size (or load it with image_size= to resample it)")
    pe = self.param("pos_embedding", nn.initializers.normal(d ** -0.5), shape, jnp.float32)
    x = Encoder(self.depth, self.num_heads, self.mlp_dim, self.dtype, name="Transformer")(x + pe.astype(x.dtype))
    out = {"encoded": x, "feature_map": x.reshape(b, h, w, d)}
    x = out["pre_logits"] = MAPHead(self.num_heads, self.mlp_dim, self.dtype, name="MAPHead_0")(x)
    if self.embed_dim:
      x = nn.Dense(self.embed_dim, dtype=self.dtype, param_dtype=jnp.float32, name="head")(x)
    return x.astype(jnp.float32), out


class TextTower(nn.Module):
  """SigLIP's text transformer (big_vision `text_transformer`): bidirectional, last token pooled. (B, E).

  `embed_dim` None: no `head` (So400m/16-i18n's text tower, whose width is already the image tower's; E = width)."""
  vocab_size: int = 32_000
  context_length: int = 64
  width: int = 768
  depth: int = 12
  num_heads: int = 12
  mlp_dim: int = 3072
  embed_dim: Optional[int] = 768
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, tokens: jax.Array) -> jax.Array:
    tokens = jnp.asarray(tokens, jnp.int32)
    if tokens.shape[-1] != self.context_length:
      raise ValueError(f"text tokens have length {tokens.shape[-1]}, this SigLIP text tower expects "
                       f"{self.context_length}")
    x = nn.Embed(self.vocab_size, self.width, dtype=self.dtype, param_dtype=jnp.float32, name="Embed_0")(tokens)
    pe = self.param("pos_embedding", nn.initializers.normal(self.width ** -0.5),
                    (1, self.context_length, self.width), jnp.float32)
    x = Encoder(self.depth, self.num_heads, self.mlp_dim, self.dtype, name="Encoder_0")(x + pe.astype(x.dtype))
    x = x[:, -1]
    if self.embed_dim:
      x = nn.Dense(self.embed_dim, dtype=self.dtype, param_dtype=jnp.float32, name="head")(x)
    return x.astype(jnp.float32)


def _normalize(x: jax.Array) -> jax.Array:
  return x / (jnp.linalg.norm(x, axis=-1, keepdims=True) + 1e-8)  # two_towers' normalisation


def sigmoid_logits(module: nn.Module, emb: jax.Array, out: Dict[str, jax.Array],
                   num_classes: int) -> Tuple[jax.Array, Dict[str, jax.Array]]:
  """The end of every SigLIP zero-shot classifier, called inside its compact `__call__`: records the normalised
  `image_features` in `out` and returns (exp(t) * image_features @ zeroshot_head + b, out), with `module`'s
  (E, C) `zeroshot_head` and the checkpoint's scalars `t`, `b` (SigLIP's sigmoid scores, as logits)."""
  emb = out["image_features"] = _normalize(emb)
  e = emb.shape[-1]
  head = module.param("zeroshot_head", nn.initializers.normal(e ** -0.5), (e, num_classes), jnp.float32)
  t = module.param("t", nn.initializers.constant(math.log(10.0)), (1,), jnp.float32)
  b = module.param("b", nn.initializers.constant(-10.0), (1,), jnp.float32)
  return jnp.exp(t[0]) * emb @ head + b[0], out


class SigLIP(nn.Module):
  """Both towers + `t`, `b`. `__call__(images, tokens)` -> (sigmoid logits (B_img, B_txt), intermediates with
  the normalised `image_features` / `text_features`). `encode_image` / `encode_text`: unnormalised embeddings."""
  image_cfg: Dict[str, Any]
  text_cfg: Dict[str, Any]
  dtype: Any = jnp.float32

  def setup(self) -> None:
    self.img = ImageTower(**self.image_cfg, dtype=self.dtype)
    self.txt = TextTower(**self.text_cfg, dtype=self.dtype)
    self.t = self.param("t", nn.initializers.constant(math.log(10.0)), (1,), jnp.float32)
    self.b = self.param("b", nn.initializers.constant(-10.0), (1,), jnp.float32)

  def encode_image(self, images: jax.Array) -> jax.Array:
    """Unnormalised image embeddings (B, E)."""
    return self.img(images)[0]

  def encode_text(self, tokens: jax.Array) -> jax.Array:
    """Unnormalised text embeddings (B, E)."""
    return self.txt(tokens)

  def __call__(self, images: jax.Array, tokens: jax.Array) -> Tuple[jax.Array, Dict[str, jax.Array]]:
    img, txt = _normalize(self.encode_image(images)), _normalize(self.encode_text(tokens))
    return jnp.exp(self.t[0]) * img @ txt.T + self.b[0], {"image_features": img, "text_features": txt}


class SigLipZeroShotClassifier(nn.Module):
  """Image tower + fixed class embeddings: logits = exp(t) * normalise(image embedding) @ zeroshot_head + b."""
  image_cfg: Dict[str, Any]
  num_classes: int = 1000
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> Tuple[jax.Array, Dict[str, jax.Array]]:
    emb, out = ImageTower(**self.image_cfg, dtype=self.dtype, name="img")(x)
    return sigmoid_logits(self, emb, out, self.num_classes)


# ------------------------------------------------------------------------------------------ checkpoints

_SCANNED = re.compile(r"^(img/Transformer|txt/Encoder_0)/encoderblock/(.*)$")


def big_vision_tree(flat: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
  """A big_vision two-tower `.npz` as '/'-joined names without the `params/` prefix, scanned blocks unstacked
  (`encoderblock/x` (depth, ...) -> `encoderblock_{i}/x`)."""
  if flat and all(k.startswith("params/") for k in flat):
    flat = {k[len("params/"):]: v for k, v in flat.items()}
  out = {}
  for k, v in flat.items():
    m = _SCANNED.match(k)
    if m:
      for i in range(np.shape(v)[0]):
        out[f"{m.group(1)}/encoderblock_{i}/{m.group(2)}"] = np.asarray(v)[i]
    else:
      out[k] = v
  return out


def _count(tree: Dict[str, np.ndarray], prefix: str) -> int:
  n = 0
  while f"{prefix}encoderblock_{n}/LayerNorm_0/scale" in tree:
    n += 1
  return n


def _tower_sizes(tree: Dict[str, np.ndarray], prefix: str) -> Dict[str, int]:
  q = tree[f"{prefix}encoderblock_0/MultiHeadDotProductAttention_0/query/kernel"]  # (D, H, Dh)
  return dict(depth=_count(tree, prefix), num_heads=int(q.shape[1]),
              mlp_dim=int(tree[f"{prefix}encoderblock_0/MlpBlock_0/Dense_0/kernel"].shape[1]))


def config_from_checkpoint(tree: Dict[str, np.ndarray]) -> Dict[str, Any]:
  """{"image": tower sizes, "grid": position grid side, "text": sizes (when the text tower is there)} of a
  `big_vision_tree`; a file that is not a SigLIP checkpoint is an error naming what it lacks."""
  if "img/embedding/kernel" not in tree or "img/MAPHead_0/probe" not in tree:
    raise CheckpointError("not a big_vision SigLIP checkpoint: no `img/embedding/kernel` / `img/MAPHead_0/probe` "
                          f"(keys start with {sorted(tree)[:5]})")
  kernel = tree["img/embedding/kernel"]  # (p, p, 3, D)
  image = dict(patch_size=int(kernel.shape[0]), width=int(kernel.shape[-1]),
               **_tower_sizes(tree, "img/Transformer/"),
               embed_dim=int(tree["img/head/kernel"].shape[1]) if "img/head/kernel" in tree else None)
  n = int(tree["img/pos_embedding"].shape[1])
  side = math.isqrt(n)
  if side * side != n:
    raise CheckpointError(f"img/pos_embedding has {n} patch tokens: not a square grid")
  out = {"image": image, "grid": side}
  if "txt/Embed_0/embedding" in tree:
    vocab, width = tree["txt/Embed_0/embedding"].shape
    out["text"] = dict(vocab_size=int(vocab), context_length=int(tree["txt/pos_embedding"].shape[1]),
                       width=int(width), **_tower_sizes(tree, "txt/Encoder_0/"),
                       embed_dim=int(tree["txt/head/kernel"].shape[1]) if "txt/head/kernel" in tree else None)
  return out


def convert_siglip(flat: Dict[str, np.ndarray]) -> dict:
  """A big_vision SigLIP `.npz` (both towers, t, b) -> variables of `SigLIP` (a pure renaming: the load gate
  compares every name and shape with the module's)."""
  return {"params": traverse_util.unflatten_dict(big_vision_tree(flat), sep="/")}


def convert_siglip_zero_shot(flat: Dict[str, np.ndarray]) -> dict:
  """Image tower + `zeroshot_head` + `t`, `b` -> variables of `SigLipZeroShotClassifier`; the text tower's
  keys are dropped, anything else is kept so that the load gate names it."""
  tree = {k: v for k, v in big_vision_tree(flat).items() if not k.startswith("txt/")}
  return {"params": traverse_util.unflatten_dict(tree, sep="/")}


def attach_siglip_text_head(tree: Dict[str, Any], path: Optional[str], overrides: Dict[str, Any], *, pad: str,
                            tokenizer_name: str, vocab: Optional[str] = None, class_names: Optional[str] = None,
                            templates: Optional[str] = None, head_cache_dir: Optional[str] = None) -> Dict[str, Any]:
  """`attach_zero_shot_head` for a big_vision SigLIP tree: the head comes from its text tower (`siglip_text_head`,
  cached) when it has one, and every weight but the text tower's (`txt/*`) stays beside it."""
  build = (functools.partial(siglip_text_head, tree, vocab=vocab, pad=pad, tokenizer_name=tokenizer_name,
                             class_names=class_names, templates=templates, head_cache_dir=head_cache_dir,
                             checkpoint=path or "")
           if "txt/Embed_0/embedding" in tree else None)
  return attach_zero_shot_head(tree, path, overrides, build, lambda k: not k.startswith("txt/"),
                               class_names=class_names, templates=templates)


def siglip_text_head(tree: Dict[str, np.ndarray], *, vocab: Optional[str], pad: str, tokenizer_name: str = "",
                     class_names: Optional[str] = None, templates: Optional[str] = None,
                     head_cache_dir: Optional[str] = None, use_cache: bool = True, checkpoint: str = "",
                     progress: Optional[Callable[[int, int], None]] = None) -> np.ndarray:
  """The (E, C) class embeddings of a SigLIP checkpoint's text tower (`big_vision_tree`), from the on-disk cache
  when computed before. `vocab`: its SentencePiece model file; `pad`: "eos" (SigLIP) | "pad" (SigLIP 2)."""
  if "txt/Embed_0/embedding" not in tree:
    raise CheckpointError(f"{checkpoint or 'checkpoint'}: no SigLIP text tower (`txt/Embed_0/embedding`) to build "
                          "the zero-shot head from")
  names, temps = zs.resolve_class_names(class_names), zs.resolve_templates(templates)
  text_cfg = config_from_checkpoint(tree)["text"]
  text = {k: v for k, v in tree.items() if k.startswith("txt/")}
  info = {"checkpoint": str(checkpoint), "family": "siglip", "pad": pad, "text_config": text_cfg,
          "class_names": list(names), "templates": list(temps), "created": time.strftime("%Y-%m-%d %H:%M:%S")}

  def compute() -> np.ndarray:
    tok = SigLipTokenizer(vocab, text_cfg["context_length"], pad=pad, name=tokenizer_name)
    if tok.vocab_size > text_cfg["vocab_size"]:
      raise CheckpointError(f"vocab={vocab}: the SentencePiece model has {tok.vocab_size} pieces but the text "
                            f"tower embeds {text_cfg['vocab_size']}: pass the tokenizer the model was trained with")
    model = TextTower(**text_cfg)
    variables = {"params": traverse_util.unflatten_dict({k[len("txt/"):]: v for k, v in text.items()}, sep="/")}
    encode = jax.jit(model.apply)
    logging.info("computing the SigLIP zero-shot head: %d classes x %d templates", len(names), len(temps))
    return zero_shot_head(lambda t: encode(variables, t), tok, names, temps, progress=progress)

  if not use_cache:
    return compute()
  digest = zs.text_tower_digest(text)
  info["text_tower_sha256"] = digest
  key = zs.head_key(digest, text_cfg, f"siglip/pad={pad}", names, temps)
  return zs.cached_head(head_cache_dir, key, (text_cfg["embed_dim"] or text_cfg["width"], len(names)), compute, info)


# ------------------------------------------------------------------------------------------ registered families

# big_vision's `decode_variant` widths (width, depth, mlp_dim, heads).
_VARIANTS = {"B": (768, 12, 3072, 12), "L": (1024, 24, 4096, 16), "So400m": (1152, 27, 4304, 16),
             "g-opt": (1536, 40, 6144, 16)}


def _tower(variant: str, **kw: Any) -> Dict[str, Any]:
  width, depth, mlp, heads = _VARIANTS[variant]
  return dict(width=width, depth=depth, mlp_dim=mlp, num_heads=heads, **kw)


@dataclasses.dataclass(frozen=True)
class SigLipFamily:
  """One released SigLIP / SigLIP 2 checkpoint (big_vision's SigLIP demo colabs' table)."""
  variant: str  # image tower: B, L, So400m, g-opt
  patch_size: int
  image_size: int
  text_variant: str
  vocab_size: int
  context_length: int
  tokenizer: str  # key of siglip_tokenizer.SIGLIP_TOKENIZERS
  pad: str  # "eos" (SigLIP) | "pad" (SigLIP 2)
  file: str  # the released checkpoint's file name
  text_head: bool = True  # False: the text tower has no `head` (So400m/16-i18n: its width is the embedding's)

  @property
  def image(self) -> Dict[str, Any]:
    """The image tower's sizes (a fresh dict)."""
    return _tower(self.variant, patch_size=self.patch_size, embed_dim=None)

  @property
  def text(self) -> Dict[str, Any]:
    """The text tower's sizes (its head maps to the image tower's width; no head: `embed_dim` None)."""
    return _tower(self.text_variant, vocab_size=self.vocab_size, context_length=self.context_length,
                  embed_dim=_VARIANTS[self.variant][0] if self.text_head else None)

  @property
  def preprocessing(self) -> Preprocessing:
    """big_vision's evaluation `resize(S)|value_range(-1, 1)`: the whole image squashed to S x S (no crop, the
    aspect ratio not kept) by `tf.image.resize`'s default bilinear without antialiasing, truncated to uint8, then
    pixels scaled to [-1, 1]. This is the standard view (`Preprocessing.pil_view`, the evaluation job); the zoom
    sweep's views are square crops of its own zoom grid and are unaffected."""
    return Preprocessing(input_size=self.image_size, resize_size=self.image_size, resize_method="bilinear",
                         mean=(127.5,) * 3, std=(127.5,) * 3, crop_mode="squash", antialias=False)


_V1 = dict(vocab_size=32_000, tokenizer="c4_en", pad="eos")
_V2 = dict(vocab_size=256_000, context_length=64, tokenizer="gemma", pad="pad")
FAMILIES: Dict[str, SigLipFamily] = {
    "siglip_b16_224": SigLipFamily("B", 16, 224, "B", context_length=64, file="webli_en_b16_224_63724782.npz", **_V1),
    "siglip_b16_256": SigLipFamily("B", 16, 256, "B", context_length=64, file="webli_en_b16_256_60500360.npz", **_V1),
    "siglip_b16_384": SigLipFamily("B", 16, 384, "B", context_length=64, file="webli_en_b16_384_68578854.npz", **_V1),
    "siglip_b16_512": SigLipFamily("B", 16, 512, "B", context_length=64, file="webli_en_b16_512_68580893.npz", **_V1),
    "siglip_l16_256": SigLipFamily("L", 16, 256, "L", context_length=64, file="webli_en_l16_256_60552751.npz", **_V1),
    "siglip_l16_384": SigLipFamily("L", 16, 384, "L", context_length=64, file="webli_en_l16_384_63634585.npz", **_V1),
    "siglip_so400m14_224": SigLipFamily("So400m", 14, 224, "So400m", context_length=16,
                                        file="webli_en_so400m_224_57633886.npz", **_V1),
    "siglip_so400m14_384": SigLipFamily("So400m", 14, 384, "So400m", context_length=64,
                                        file="webli_en_so400m_384_58765454.npz", **_V1),
    "siglip_b16_i18n_256": SigLipFamily("B", 16, 256, "B", vocab_size=250_000, context_length=64, tokenizer="mc4",
                                        pad="eos", file="webli_i18n_b16_256_66117334.npz"),
    # The SigLIP demo colab's So400m/16-i18n: mc4 vocabulary, a So400m text tower without a head (out_dim None).
    "siglip_so400m16_i18n_256": SigLipFamily("So400m", 16, 256, "So400m", vocab_size=250_000, context_length=64,
                                             tokenizer="mc4", pad="eos", file="webli_i18n_so400m_16_256_78061115.npz",
                                             text_head=False),
    "siglip2_b32_256": SigLipFamily("B", 32, 256, "B", file="siglip2_b32_256.npz", **_V2),
    **{f"siglip2_b16_{s}": SigLipFamily("B", 16, s, "B", file=f"siglip2_b16_{s}.npz", **_V2)
       for s in (224, 256, 384, 512)},
    **{f"siglip2_l16_{s}": SigLipFamily("L", 16, s, "L", file=f"siglip2_l16_{s}.npz", **_V2) for s in (256, 384, 512)},
    **{f"siglip2_so400m14_{s}": SigLipFamily("So400m", 14, s, "So400m", file=f"siglip2_so400m14_{s}.npz", **_V2)
       for s in (224, 384)},
    **{f"siglip2_so400m16_{s}": SigLipFamily("So400m", 16, s, "So400m", file=f"siglip2_so400m16_{s}.npz", **_V2)
       for s in (256, 384, 512)},
    # g-opt's image tower is paired with a So400m text tower (SigLIP 2 demo colab).
    **{f"siglip2_gopt16_{s}": SigLipFamily("g-opt", 16, s, "So400m", file=f"siglip2_g-opt16_{s}.npz", **_V2)
       for s in (256, 384)},
}
ARCHS = {name: {"image": f.image, "text": f.text, "image_size": f.image_size} for name, f in FAMILIES.items()}

# Exact 'params' counts: timm 1.0.31's `sum(p.numel() for p in timm.create_model(<its siglip name>,
# num_classes=0).parameters())` for the image tower + the (E, 1000) head + t + b (pinned by tests/test_siglip.py).
_TIMM_TOWER_PARAMS = {("B", 16, 224): 92_884_224, ("B", 16, 256): 92_930_304, ("B", 16, 384): 93_176_064,
                      ("B", 16, 512): 93_520_128, ("L", 16, 256): 315_956_224, ("L", 16, 384): 316_283_904,
                      ("L", 16, 512): 316_742_656, ("So400m", 14, 224): 427_680_704,
                      ("So400m", 14, 384): 428_225_600, ("B", 32, 256): 94_552_320,
                      ("So400m", 16, 256): 427_888_064, ("So400m", 16, 384): 428_256_704,
                      ("So400m", 16, 512): 428_772_800, ("g-opt", 16, 256): 1_163_168_256,
                      ("g-opt", 16, 384): 1_163_659_776}
NUM_PARAMS = {name: _TIMM_TOWER_PARAMS[(f.variant, f.patch_size, f.image_size)] + _VARIANTS[f.variant][0] * 1000 + 2
              for name, f in FAMILIES.items()}

IMAGE_FIELDS = ("patch_size", "width", "depth", "num_heads", "mlp_dim", "embed_dim")
LOAD_KWARGS = ("vocab", "class_names", "templates", "head_cache_dir", "image_size")


def _make(image: Dict[str, Any], *, num_classes: int = 1000, dtype: Any = jnp.float32,
          **overrides: Any) -> SigLipZeroShotClassifier:
  """The classifier of one family; `overrides` may change the image tower's sizes (tiny test models)."""
  unknown = sorted(set(overrides) - set(IMAGE_FIELDS))
  if unknown:
    raise TypeError(f"SigLIP zero-shot classifier: unknown overrides {unknown}; it takes {', '.join(IMAGE_FIELDS)}, "
                    f"num_classes, dtype and the load options {', '.join(LOAD_KWARGS)}")
  return SigLipZeroShotClassifier(dict(image, **overrides), num_classes=int(num_classes), dtype=jnp.dtype(dtype))


def _fits(image: Dict[str, Any], size: int) -> list:
  return [n for n, f in sorted(FAMILIES.items()) if f.image == image and f.image_size // f.patch_size == size]


def _prepare(name: str, family: SigLipFamily, flat: Optional[Dict[str, np.ndarray]], overrides: Dict[str, Any], *,
             path: Optional[str] = None, vocab: Optional[str] = None, class_names: Optional[str] = None,
             templates: Optional[str] = None, head_cache_dir: Optional[str] = None,
             image_size: Optional[int] = None) -> registry.LoadPlan:
  """Checks a SigLIP checkpoint's image tower against the family, resamples its position grid for `image_size`
  and replaces the text tower by its (cached) zero-shot head. A file of another family is left to the load gate,
  whose two-sided difference names what does not fit."""
  image = dict(family.image, **{k: overrides[k] for k in IMAGE_FIELDS if k in overrides})
  size = family.image_size if image_size is None else int(image_size)
  if size < image["patch_size"]:
    raise CheckpointError(f"{name}: image_size={size} is smaller than the patch size {image['patch_size']}")
  grid = size // image["patch_size"]
  pp = dataclasses.replace(family.preprocessing, input_size=size, resize_size=size)
  if flat is None:
    return registry.LoadPlan(overrides=overrides, preprocessing=pp)
  tree = big_vision_tree(flat)
  if "img/embedding/kernel" not in tree and "zeroshot_head" not in tree:
    return registry.LoadPlan(overrides=overrides, preprocessing=pp, flat=flat, convert=convert_siglip_zero_shot)
  cfg = config_from_checkpoint(tree)
  diff = [f"{k}: model {image[k]} vs checkpoint {cfg['image'][k]}" for k in IMAGE_FIELDS
          if cfg["image"][k] != image[k]]
  if diff:
    fits = _fits(cfg["image"], cfg["grid"])
    raise tower_mismatch(name, f"SigLIP {family.variant}/{family.patch_size}", diff, fits)
  if cfg["grid"] != grid:
    if image_size is None:
      raise CheckpointError(
          f"the checkpoint's position embedding is a {cfg['grid']}^2 grid ({cfg['grid'] * image['patch_size']} px "
          f"input) but {name!r} runs at {size} px: load it under the name of its resolution, or pass "
          f"image_size={size} to resample it")
    tree["img/pos_embedding"] = resample_position_embedding(tree["img/pos_embedding"], (grid, grid),
                                                            num_prefix_tokens=0)
  tree = attach_siglip_text_head(tree, path, overrides, pad=family.pad, tokenizer_name=family.tokenizer, vocab=vocab,
                                 class_names=class_names, templates=templates, head_cache_dir=head_cache_dir)
  return registry.LoadPlan(overrides=overrides, preprocessing=pp, flat=tree, convert=convert_siglip_zero_shot)


_HINT = ("Pass big_vision's `{file}` (gs://big_vision/{folder}/{file}); the zero-shot head is computed once from "
         "its text tower and cached: pass vocab= the SentencePiece model it was trained with ({tokenizer}: {url}). "
         "An already-built zero-shot file (python -m zoomjax.models.clip_cli --out) also works.")

for _name, _family in FAMILIES.items():
  registry.register(registry.ModelSpec(
      name=_name,
      make_module=functools.partial(_make, _family.image),
      preprocessing=_family.preprocessing,
      convert=convert_siglip_zero_shot,
      checkpoint_hint=_HINT.format(file=_family.file, folder="siglip2" if _family.pad == "pad" else "siglip",
                                   tokenizer=_family.tokenizer, url=SIGLIP_TOKENIZERS[_family.tokenizer]),
      num_params=NUM_PARAMS[_name],
      load_kwargs=LOAD_KWARGS,
      prepare=functools.partial(_prepare, _name, _family)))


def is_siglip_checkpoint(flat: Dict[str, np.ndarray]) -> bool:
  """Whether a read checkpoint is a big_vision SigLIP file (either tower) or a SigLIP zero-shot file."""
  tree = big_vision_tree(flat)
  return "img/MAPHead_0/probe" in tree or "txt/Embed_0/embedding" in tree


def default_pad(tree: Dict[str, np.ndarray]) -> str:
  """The padding of the tokenizer a text tower was trained with, for a file no family names: SigLIP 2's Gemma
  vocabulary (256k pieces) pads with its pad token, SigLIP's c4_en / mc4 with the end token."""
  return "pad" if int(tree["txt/Embed_0/embedding"].shape[0]) == 256_000 else "eos"


def zero_shot_tensors(tree: Dict[str, np.ndarray], head: np.ndarray) -> Dict[str, np.ndarray]:
  """What a SigLIP zero-shot file holds: the image tower, `t`, `b` and `zeroshot_head` (float32)."""
  out = {k: np.ascontiguousarray(v, np.float32) for k, v in tree.items()
         if k.startswith("img/") or k in ("t", "b")}
  out["zeroshot_head"] = np.asarray(head, np.float32)
  return out
