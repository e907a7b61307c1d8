"""CLIP (ViT image tower + text transformer) and its zero-shot classifiers, OpenAI and open_clip families.

Names mirror OpenAI's torch names (as scenic's CLIP does): `visual/{conv1, class_embedding, positional_embedding,
ln_pre, transformer/resblocks_{i}/{ln_1, attn, ln_2, mlp/{c_fc, c_proj}}, ln_post, proj}`,
`text/{token_embedding, positional_embedding, transformer/..., ln_final, text_projection}`, `logit_scale`.
OpenAI CLIP uses QuickGELU and LayerNorm eps 1e-5; open_clip models without `-quickgelu` use exact GELU
(`activation="gelu"`).

Zero-shot head (paper.md §5): for each class, the 80 prompt templates are encoded, each embedding
L2-normalised, averaged and re-normalised; logits = 100 * cos(image embedding, class embedding).

The registered classifiers (`clip_vit_*` OpenAI, `openclip_vit_*` open_clip; `is_zero_shot(name)`) load either
a full OpenAI/open_clip state dict (`.pt`, `.bin`, `.safetensors`) or an already-built zero-shot file (image
tower + `zeroshot_head`, `python -m zoomjax.models.clip --out`). From a full state dict the head is computed
once from the text tower and cached on disk (zoomjax.models.clip_zero_shot), so
`load(name, ckpt, vocab=..., class_names=..., templates=..., head_cache_dir=..., image_size=..., dtype=...)`
is all a job passes. The image tower's geometry is read from the checkpoint and checked against the family
(width, depth, patch, MLP, embedding, position grid); the head count, which no tensor stores, comes from the
family (open_clip's H/14, g/14, bigG/14 use 80-, 88- and 104-wide heads).
"""
import argparse
import dataclasses
import functools
import hashlib
import math
import sys
import time
from typing import Any, Callable, Dict, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from zoomjax.runtime import console
from zoomjax.checkpoints import CheckpointError
from zoomjax.checkpoints.convert_clip import (convert_clip_text, convert_clip_zero_shot, head_width_for,
                                              strip_module_prefix)
from zoomjax.errors import UserError, one_line
from zoomjax.models import registry
from zoomjax.models import clip_zero_shot as zs
from zoomjax.models.clip_zero_shot import OPENAI_IMAGENET_TEMPLATES, read_class_names  # noqa: F401
from zoomjax.models.layers import Encoder1DBlock
from zoomjax.models.preprocessing import CLIP_PREPROCESSING, ZOOM_PAPER_CLIP_PREPROCESSING, Preprocessing
from zoomjax.models.vit import grid_for, preprocessing_at, resample_position_embedding

_CLIP_NAMES = ("ln_1", "attn", "ln_2", "mlp")

# Logit scale of the zero-shot classifier (OpenAI's learned scale is clamped at exactly 100).
ZERO_SHOT_SCALE = 100.0


class Transformer(nn.Module):
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
  return nn.LayerNorm(epsilon=eps, dtype=dtype, param_dtype=jnp.float32, name=name)


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
  def __call__(self, x: jax.Array):
    p, d = self.patch_size, self.width
    x = nn.Conv(d, (p, p), (p, p), padding="VALID", use_bias=False, dtype=self.dtype, param_dtype=jnp.float32,
                name="conv1")(x.astype(self.dtype))
    b, h, w, _ = x.shape
    x = x.reshape(b, h * w, d)
    cls = self.param("class_embedding", nn.initializers.normal(d ** -0.5), (d,), jnp.float32)
    x = jnp.concatenate([jnp.broadcast_to(cls.astype(x.dtype), (b, 1, d)), x], axis=1)
    shape = (1 + h * w, d)
    if self.has_variable("params", "positional_embedding"):
      have = tuple(self.get_variable("params", "positional_embedding").shape)
      if have != shape:
        raise ValueError(f"CLIP positional_embedding {have} does not fit a {h * p}x{w * p} input "
                         f"({1 + h * w} tokens); feed the checkpoint's input size (or load it with "
                         "image_size= to resample the position embedding)")
    pe = self.param("positional_embedding", nn.initializers.normal(d ** -0.5), shape, jnp.float32)
    x = x + pe.astype(x.dtype)
    x = _ln(self.layernorm_epsilon, self.dtype, "ln_pre")(x)
    x = Transformer(d, self.depth, self.num_heads, self.mlp_dim, self.activation, self.layernorm_epsilon,
                    self.dtype, name="transformer")(x)
    x = _ln(self.layernorm_epsilon, self.dtype, "ln_post")(x)
    out = {"encoded": x, "feature_map": x[:, 1:].reshape(b, h, w, d), "pre_logits": x[:, 0]}
    proj = self.param("proj", nn.initializers.normal(d ** -0.5), (d, self.embed_dim), jnp.float32)
    emb = x[:, 0] @ proj.astype(x.dtype)  # OpenAI stores proj as (in, out): x @ proj, no transpose.
    return emb.astype(jnp.float32), out


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
  def __call__(self, tokens: jax.Array) -> jax.Array:
    tokens = jnp.asarray(tokens, jnp.int32)
    if tokens.shape[-1] != self.context_length:
      raise ValueError(f"text tokens have length {tokens.shape[-1]}, CLIP expects {self.context_length}")
    x = nn.Embed(self.vocab_size, self.width, dtype=self.dtype, param_dtype=jnp.float32,
                 name="token_embedding")(tokens)
    pe = self.param("positional_embedding", nn.initializers.normal(0.01), (self.context_length, self.width),
                    jnp.float32)
    x = x + pe.astype(x.dtype)
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

  def setup(self):
    self.visual = VisionTower(**self.vision_cfg, activation=self.activation, dtype=self.dtype)
    self.text = TextTower(**self.text_cfg, activation=self.activation, dtype=self.dtype)
    self.logit_scale = self.param("logit_scale", nn.initializers.constant(np.log(1 / 0.07)), (), jnp.float32)

  def encode_image(self, images: jax.Array) -> jax.Array:
    return self.visual(images)[0]

  def encode_text(self, tokens: jax.Array) -> jax.Array:
    return self.text(tokens)

  def __call__(self, images: jax.Array, tokens: jax.Array):
    img_emb, txt_emb = self.encode_image(images), self.encode_text(tokens)
    img, txt = l2_normalize(img_emb), l2_normalize(txt_emb)
    return jnp.exp(self.logit_scale) * img @ txt.T, {
        "image_features": img, "text_features": txt, "image_embeddings": img_emb, "text_embeddings": txt_emb}


def l2_normalize(x: jax.Array, axis: int = -1) -> jax.Array:
  return x / jnp.linalg.norm(x, axis=axis, keepdims=True)


class ZeroShotClassifier(nn.Module):
  """Image tower + a fixed zero-shot head: logits = 100 * normalise(image embedding) @ head.

  `head` (E, C) holds the normalised per-class text embeddings (see `zero_shot_head`). This is what the zoom
  paper evaluates as "CLIP ViT-L/14"; intermediates are the image tower's plus `image_features`.
  """
  vision_cfg: Dict[str, Any]
  num_classes: int = 1000
  activation: str = "quick_gelu"  # OpenAI and open_clip `-quickgelu`; "gelu" for other open_clip models
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array):
    emb, out = VisionTower(**self.vision_cfg, activation=self.activation, dtype=self.dtype, name="visual")(x)
    emb = l2_normalize(emb)
    out["image_features"] = emb
    # Random heads (random_init) have unit-norm-ish columns, so smoke tests see varied logits.
    e = self.vision_cfg["embed_dim"]
    head = self.param("zeroshot_head", nn.initializers.normal(e ** -0.5), (e, self.num_classes), jnp.float32)
    return ZERO_SHOT_SCALE * emb @ head, out



# ---------------------------------------------------------------------------------------------- configs

def _arch(patch, width, depth, head_width, mlp_dim, embed_dim, text_width, text_depth, text_heads, image_size=224):
  vision = dict(patch_size=patch, width=width, depth=depth, num_heads=width // head_width, mlp_dim=mlp_dim,
                embed_dim=embed_dim)
  text = dict(vocab_size=49408, context_length=77, width=text_width, depth=text_depth, num_heads=text_heads,
              mlp_dim=4 * text_width, embed_dim=embed_dim)
  return {"vision": vision, "text": text, "image_size": image_size}


# open_clip's model_configs/<name>.json (vision layers/width/head_width/int(width * mlp_ratio)/patch, text
# width/layers/heads, embed_dim, image_size); OpenAI's released ViTs are the first four.
ARCHS: Dict[str, Dict[str, Any]] = {
    "ViT-B-32": _arch(32, 768, 12, 64, 3072, 512, 512, 12, 8),
    "ViT-B-16": _arch(16, 768, 12, 64, 3072, 512, 512, 12, 8),
    "ViT-L-14": _arch(14, 1024, 24, 64, 4096, 768, 768, 12, 12),
    "ViT-L-14-336": _arch(14, 1024, 24, 64, 4096, 768, 768, 12, 12, image_size=336),
    "ViT-H-14": _arch(14, 1280, 32, 80, 5120, 1024, 1024, 24, 16),
    "ViT-g-14": _arch(14, 1408, 40, 88, 6144, 1024, 1024, 24, 16),  # mlp_ratio 4.3637
    "ViT-bigG-14": _arch(14, 1664, 48, 104, 8192, 1280, 1280, 32, 20),  # mlp_ratio 4.9231
}
_OPENAI_NAMES = {"ViT-B/32": "ViT-B-32", "ViT-B/16": "ViT-B-16", "ViT-L/14": "ViT-L-14",
                 "ViT-L/14@336px": "ViT-L-14-336"}


def openai_config(name: str) -> Dict[str, Dict[str, Any]]:
  """Tower configs ({"vision", "text"}) of a released ViT CLIP: OpenAI's name ("ViT-L/14", "ViT-L/14@336px") or
  open_clip's ("ViT-H-14")."""
  arch = _OPENAI_NAMES.get(name, name)
  if arch not in ARCHS:
    raise ValueError(f"unknown CLIP model {name!r}; choose one of {', '.join(list(_OPENAI_NAMES) + list(ARCHS))}")
  return {"vision": dict(ARCHS[arch]["vision"]), "text": dict(ARCHS[arch]["text"])}


def _depth(flat: Dict[str, np.ndarray], prefix: str) -> int:
  n = 0
  while f"{prefix}transformer.resblocks.{n}.ln_1.weight" in flat:
    n += 1
  return n


def config_from_state_dict(flat: Dict[str, np.ndarray], vision_head_width: Optional[int] = None,
                           text_head_width: Optional[int] = None) -> Dict[str, Dict[str, Any]]:
  """Tower sizes of an OpenAI/open_clip state dict. Head widths are not stored in any tensor: by default those
  of the released model of that width (`convert_clip.head_width_for`: 64, or open_clip's 80/88/104 for the
  H/14, g/14, bigG/14 image towers)."""
  if "visual.conv1.weight" not in flat:
    raise CheckpointError("not an OpenAI/open_clip ViT CLIP state dict: no `visual.conv1.weight`; keys start "
                          f"with {sorted(flat)[:5]}")
  conv = flat["visual.conv1.weight"]
  vw = int(conv.shape[0])
  vhw = vision_head_width or head_width_for(vw)
  vision = dict(patch_size=int(conv.shape[-1]), width=vw, depth=_depth(flat, "visual."),
                num_heads=max(vw // vhw, 1),
                mlp_dim=int(flat["visual.transformer.resblocks.0.mlp.c_fc.weight"].shape[0]),
                embed_dim=int(flat["visual.proj"].shape[1]))
  out = {"vision": vision}
  if "token_embedding.weight" in flat:
    tw = int(flat["token_embedding.weight"].shape[1])
    out["text"] = dict(vocab_size=int(flat["token_embedding.weight"].shape[0]),
                       context_length=int(flat["positional_embedding"].shape[0]), width=tw,
                       depth=_depth(flat, ""), num_heads=max(tw // (text_head_width or head_width_for(tw, "text")), 1),
                       mlp_dim=int(flat["transformer.resblocks.0.mlp.c_fc.weight"].shape[0]),
                       embed_dim=int(flat["text_projection"].shape[1]))
  return out


def stored_image_size(flat: Dict[str, np.ndarray]) -> int:
  """Input side the image tower was trained at: patch size x the side of its square position grid."""
  n = int(flat["visual.positional_embedding"].shape[0]) - 1
  side = math.isqrt(n)
  if side * side != n:
    raise CheckpointError(f"visual.positional_embedding has {n} patch tokens: not a square grid")
  return side * int(flat["visual.conv1.weight"].shape[-1])


# ------------------------------------------------------------------------------------------ zero-shot

def zero_shot_head(encode_text: Callable[[np.ndarray], jax.Array], tokenize: Callable[[Sequence[str]], np.ndarray],
                   class_names: Sequence[str], templates: Sequence[str] = OPENAI_IMAGENET_TEMPLATES,
                   progress: Optional[Callable[[int, int], None]] = None) -> np.ndarray:
  """(E, C) zero-shot weights: per class, mean of the normalised template embeddings, re-normalised.

  `encode_text` maps (T, context) token ids to (T, E) embeddings (e.g. a jitted `CLIP.encode_text`);
  it is called once per class with all templates, so one compile serves every class.
  """
  cols = []
  for c, name in enumerate(class_names):
    emb = np.asarray(encode_text(tokenize([t.format(name) for t in templates])), np.float32)
    emb = emb / np.linalg.norm(emb, axis=-1, keepdims=True)
    mean = emb.mean(axis=0)
    cols.append(mean / np.linalg.norm(mean))
    if progress is not None:
      progress(c + 1, len(class_names))
  return np.stack(cols, axis=1)


_NOT_TEXT = ("visual.", "logit_scale", "zeroshot_head", "input_resolution", "context_length", "vocab_size",
             "attn_mask")


def _file_sha256(path: str) -> str:
  h = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      h.update(block)
  return h.hexdigest()


def text_head(flat: Dict[str, np.ndarray], activation: str = "quick_gelu", *, vocab: Optional[str] = None,
              class_names: Optional[str] = None, templates: Optional[str] = None,
              head_cache_dir: Optional[str] = None, use_cache: bool = True, checkpoint: str = "",
              progress: Optional[Callable[[int, int], None]] = None) -> np.ndarray:
  """The (E, C) zero-shot head of a full CLIP state dict, from the on-disk cache when it was computed before.

  `class_names` / `templates` / `vocab`: see `clip_zero_shot.resolve_*` (None: OpenAI's curated names, the 80
  templates, the vocabulary of an installed open_clip). The text tower runs in float32 whatever the image
  tower's dtype, so one cached head serves every compute dtype.
  """
  flat = strip_module_prefix(flat)
  if "token_embedding.weight" not in flat:
    raise CheckpointError("no text tower (`token_embedding.weight`) to build the zero-shot head from")
  names, temps = zs.resolve_class_names(class_names), zs.resolve_templates(templates)
  text_cfg = config_from_state_dict(flat)["text"]
  info = {"checkpoint": str(checkpoint), "activation": activation, "text_config": text_cfg,
          "class_names": list(names), "templates": list(temps), "created": time.strftime("%Y-%m-%d %H:%M:%S")}

  def compute() -> np.ndarray:
    from zoomjax.models.clip_tokenizer import ClipTokenizer  # pylint: disable=import-outside-toplevel
    vocab_path = zs.resolve_vocab(vocab)
    tok = ClipTokenizer(vocab_path, context_length=text_cfg["context_length"])
    if tok.vocab_size != text_cfg["vocab_size"]:
      raise UserError(f"vocabulary {vocab_path} has {tok.vocab_size} tokens but the checkpoint's text tower "
                      f"embeds {text_cfg['vocab_size']}: pass the vocabulary the model was trained with")
    info.update(vocab=vocab_path, vocab_sha256=_file_sha256(vocab_path))
    model = TextTower(**text_cfg, activation=activation)
    variables = convert_clip_text(flat, text_heads=text_cfg["num_heads"])
    encode = jax.jit(model.apply)
    logging.info("computing the CLIP zero-shot head: %d classes x %d templates", len(names), len(temps))
    return zero_shot_head(lambda t: encode(variables, t), tok, names, temps, progress=progress)

  if not use_cache:
    return compute()
  digest = zs.text_tower_digest(flat, ignore=_NOT_TEXT)
  info["text_tower_sha256"] = digest
  key = zs.head_key(digest, text_cfg, activation, names, temps)
  return zs.cached_head(head_cache_dir, key, (text_cfg["embed_dim"], len(names)), compute, info)


def build_zero_shot_checkpoint(checkpoint: str, vocab: Optional[str], class_names: Optional[str],
                               out: Optional[str], activation: str = "quick_gelu", *,
                               templates: Optional[str] = None, head_cache_dir: Optional[str] = None,
                               model: Optional[str] = None) -> np.ndarray:
  """Writes `out` (.safetensors): the image-tower weights of `checkpoint` plus `zeroshot_head` (E, C).

  Without `out`, only computes the head into the cache (`head_cache_dir`, default ~/.cache/zoomjax/clip_heads);
  with `out`, the cache is used only when `head_cache_dir` is given. `model` (a registered zero-shot name)
  checks the image tower's geometry first. Returns the head.
  """
  from zoomjax.checkpoints import read_checkpoint  # pylint: disable=import-outside-toplevel

  flat = strip_module_prefix(read_checkpoint(checkpoint))
  if model is not None:  # The geometry check alone (no text keys: no head computed here).
    _prepare_zero_shot(model, _FAMILIES[model], {k: v for k, v in flat.items() if k.startswith("visual.")}, {},
                       path=checkpoint)
  if "token_embedding.weight" not in flat:
    raise CheckpointError(f"{checkpoint}: no text tower (token_embedding.weight) to build the zero-shot head from")
  head = text_head(flat, activation, vocab=vocab, class_names=class_names, templates=templates,
                   head_cache_dir=head_cache_dir, use_cache=out is None or head_cache_dir is not None,
                   checkpoint=checkpoint, progress=lambda i, n: print(f"\r{i}/{n} classes", end="", flush=True))
  print()
  if out is None:
    print(f"cached the zero-shot head {head.shape} of {checkpoint} in {head_cache_dir or zs.default_cache_dir()}")
    return head
  from safetensors.numpy import save_file  # pylint: disable=import-outside-toplevel
  tensors = {k: np.ascontiguousarray(v, np.float32) for k, v in flat.items() if k.startswith("visual.")}
  tensors["zeroshot_head"] = head.astype(np.float32)
  save_file(tensors, out)
  print(f"wrote {out}: image tower of {checkpoint} + zero-shot head {head.shape}")
  return head


# --------------------------------------------------------------------------------------------- registry

@dataclasses.dataclass(frozen=True)
class ZeroShotFamily:
  """One registered zero-shot classifier: an architecture of `ARCHS`, its activation and preprocessing."""
  arch: str  # key of ARCHS (open_clip's config name)
  activation: str  # "quick_gelu" (OpenAI, open_clip *-quickgelu tags) | "gelu"
  preprocessing: Preprocessing  # at ARCHS[arch]["image_size"]

  @property
  def vision(self) -> Dict[str, Any]:
    return dict(ARCHS[self.arch]["vision"])

  @property
  def image_size(self) -> int:
    return ARCHS[self.arch]["image_size"]


VISION_FIELDS = ("patch_size", "width", "depth", "num_heads", "mlp_dim", "embed_dim")
_CHECKED = ("patch_size", "width", "depth", "mlp_dim", "embed_dim")  # what the tensors say (heads they do not)
LOAD_KWARGS = ("vocab", "class_names", "templates", "head_cache_dir", "image_size")
_FAMILIES: Dict[str, ZeroShotFamily] = {}


def is_zero_shot(name: str) -> bool:
  """Whether registered model `name` is a CLIP-style zero-shot classifier, i.e. takes `vocab`, `class_names`,
  `templates` and `head_cache_dir` in `load` (unknown names raise, listing the registered ones)."""
  return "class_names" in registry.get_spec(name).load_kwargs


def _make_zero_shot(vision: Dict[str, Any], family_activation: str, *, num_classes: int = 1000,
                    dtype: Any = jnp.float32, activation: Optional[str] = None,
                    **overrides: Any) -> ZeroShotClassifier:
  """The classifier of one family; `overrides` may change the image tower's sizes (tiny test models)."""
  activation = activation or family_activation
  unknown = sorted(set(overrides) - set(VISION_FIELDS))
  if unknown:
    raise TypeError(f"CLIP zero-shot classifier: unknown overrides {unknown}; it takes {', '.join(VISION_FIELDS)}, "
                    f"num_classes, dtype, activation and the load options {', '.join(LOAD_KWARGS)}")
  return ZeroShotClassifier(dict(vision, **overrides), num_classes=int(num_classes), activation=activation,
                            dtype=jnp.dtype(dtype))


def _fits(vision: Dict[str, Any], image_size: int) -> list:
  """Registered zero-shot names whose default image tower has this geometry (heads aside) and input size."""
  return [n for n, f in sorted(_FAMILIES.items()) if f.image_size == image_size
          and all(f.vision[k] == vision[k] for k in _CHECKED)]


def _prepare_zero_shot(name: str, family: ZeroShotFamily, flat: Optional[Dict[str, np.ndarray]],
                       overrides: Dict[str, Any], *, path: Optional[str] = None, vocab: Optional[str] = None,
                       class_names: Optional[str] = None, templates: Optional[str] = None,
                       head_cache_dir: Optional[str] = None, image_size: Optional[int] = None) -> registry.LoadPlan:
  """Checks the checkpoint's image tower against the family, resamples its position grid for `image_size`,
  and, for a full CLIP state dict, replaces the text tower by its (cached) zero-shot head."""
  vision = dict(family.vision, **{k: overrides[k] for k in VISION_FIELDS if k in overrides})
  activation = overrides.get("activation", family.activation)
  size = family.image_size if image_size is None else int(image_size)
  grid = grid_for(size, vision["patch_size"], name)
  pp = preprocessing_at(family.preprocessing, size)
  if flat is None:  # random_init: a random head, no vocabulary or class names needed.
    return registry.LoadPlan(overrides=overrides, preprocessing=pp)
  flat = strip_module_prefix(flat)
  got = config_from_state_dict(flat, vision_head_width=vision["width"] // vision["num_heads"])["vision"]
  stored = stored_image_size(flat)
  diff = [f"{k}: model {vision[k]} vs checkpoint {got[k]}" for k in _CHECKED if got[k] != vision[k]]
  if diff:
    fits = _fits(got, stored)
    raise CheckpointError(
        f"checkpoint does not fit the model {name!r} ({family.arch} image tower): " + "; ".join(diff)
        + (f". It is the image tower of {', '.join(fits)}: load it under that name" if fits else ""))
  if stored != size:
    if image_size is None:
      fits = _fits(got, stored)
      raise CheckpointError(
          f"the checkpoint's position embedding is a {stored // vision['patch_size']}^2 grid ({stored} px input) "
          f"but {name!r} runs at {size} px: " + (f"load it as {', '.join(fits)}, or " if fits else "")
          + f"pass image_size={size} (or another multiple of {vision['patch_size']}) to resample it")
    flat["visual.positional_embedding"] = resample_position_embedding(flat["visual.positional_embedding"],
                                                                      (grid, grid))
  if "zeroshot_head" in flat:
    # Jobs pass the defaults to every CLIP model; only other text data would be silently ignored.
    if class_names not in (None, "", *zs.CLASS_NAME_SETS) or templates not in (None, "", *zs.TEMPLATE_SETS):
      console.warn(f"{path}: the checkpoint already holds a zero-shot head {flat['zeroshot_head'].shape}; "
                   "class_names / templates apply only to full CLIP state dicts and are ignored")
  elif "token_embedding.weight" in flat:
    head = text_head(flat, activation, vocab=vocab, class_names=class_names, templates=templates,
                     head_cache_dir=head_cache_dir, checkpoint=path or "")
    flat = {k: v for k, v in flat.items() if k.startswith("visual.")}
    flat["zeroshot_head"] = head
  if "zeroshot_head" in flat:
    classes = int(flat["zeroshot_head"].shape[-1])
    if overrides.setdefault("num_classes", classes) != classes:
      raise CheckpointError(f"the zero-shot head has {classes} classes, not num_classes={overrides['num_classes']}")
  return registry.LoadPlan(overrides=overrides, preprocessing=pp, flat=flat,
                           convert=functools.partial(convert_clip_zero_shot, vision_heads=vision["num_heads"]))


def _num_params(arch: str) -> int:
  """Image tower (= open_clip's `visual`) + the (E, 1000) head, from the config alone."""
  v, size = ARCHS[arch]["vision"], ARCHS[arch]["image_size"]
  d, p, e = v["width"], v["patch_size"], v["embed_dim"]
  block = 4 * d + (3 * d * d + 3 * d) + (d * d + d) + (d * v["mlp_dim"] + v["mlp_dim"]) + (v["mlp_dim"] * d + d)
  return 3 * p * p * d + d + (1 + (size // p) ** 2) * d + 4 * d + v["depth"] * block + d * e + e * 1000


# Exact 'params' counts: open_clip 3.3.0's `sum(p.numel() for p in model.visual.parameters())` for each
# architecture + the (E, 1000) head (tests/test_clip_families.py pins `_num_params` and eval_shape to them).
NUM_PARAMS = {"ViT-B-32": 87_849_216 + 512_000, "ViT-B-16": 86_192_640 + 512_000,
              "ViT-L-14": 303_966_208 + 768_000, "ViT-L-14-336": 304_293_888 + 768_000,
              "ViT-H-14": 632_076_800 + 1_024_000, "ViT-g-14": 1_012_645_632 + 1_024_000,
              "ViT-bigG-14": 1_844_907_264 + 1_280_000}

_OPENAI_HINT = ("Pass OpenAI's `{file}` (what the `clip` package downloads from openaipublic.azureedge.net; "
                "open_clip's `{arch}` pretrained='openai' is the same file) or open_clip's "
                "open_clip_pytorch_model.bin / "
                "open_clip_model.safetensors of hf-hub {hub}; the text head is computed once from it (pass "
                "vocab=bpe_simple_vocab_16e6.txt.gz unless open_clip is installed) and cached. An already-built "
                "zero-shot file (python -m zoomjax.models.clip --out) also works.")
_OPENCLIP_HINT = ("Pass open_clip's `{arch}` weights (open_clip_pytorch_model.bin or open_clip_model.safetensors "
                  "of hf-hub {hub}, tags {tags}); the text head is computed once from them (pass "
                  "vocab=bpe_simple_vocab_16e6.txt.gz unless open_clip is installed) and cached. An already-built "
                  "zero-shot file (python -m zoomjax.models.clip --out) also works.")
_INCEPTION = dataclasses.replace(CLIP_PREPROCESSING, mean=(127.5,) * 3, std=(127.5,) * 3)
# name, arch, activation, preprocessing (at 224; rescaled to the arch's size), hint
_ENTRIES = (
    ("clip_vit_b32", "ViT-B-32", "quick_gelu", CLIP_PREPROCESSING,
     _OPENAI_HINT.format(file="ViT-B-32.pt", arch="ViT-B-32", hub="timm/vit_base_patch32_clip_224.openai")),
    ("clip_vit_b16", "ViT-B-16", "quick_gelu", CLIP_PREPROCESSING,
     _OPENAI_HINT.format(file="ViT-B-16.pt", arch="ViT-B-16", hub="timm/vit_base_patch16_clip_224.openai")),
    ("clip_vit_l14", "ViT-L-14", "quick_gelu", CLIP_PREPROCESSING,
     _OPENAI_HINT.format(file="ViT-L-14.pt", arch="ViT-L-14", hub="timm/vit_large_patch14_clip_224.openai")),
    ("clip_vit_l14_336", "ViT-L-14-336", "quick_gelu", CLIP_PREPROCESSING,
     _OPENAI_HINT.format(file="ViT-L-14-336px.pt", arch="ViT-L-14-336", hub="timm/vit_large_patch14_clip_336.openai")),
    # The zoom study fed OpenAI's L/14 ImageNet-normalised crops (paper.md §5).
    ("clip_vit_l14_zoompaper", "ViT-L-14", "quick_gelu", ZOOM_PAPER_CLIP_PREPROCESSING,
     _OPENAI_HINT.format(file="ViT-L-14.pt", arch="ViT-L-14", hub="timm/vit_large_patch14_clip_224.openai")),
    ("openclip_vit_b32", "ViT-B-32", "gelu", CLIP_PREPROCESSING,
     _OPENCLIP_HINT.format(arch="ViT-B-32", hub="laion/CLIP-ViT-B-32-laion2B-s34B-b79K",
                           tags="laion2b_s34b_b79k, laion2b_e16, datacomp_*, commonpool_*")),
    ("openclip_vit_b32_quickgelu", "ViT-B-32", "quick_gelu", CLIP_PREPROCESSING,
     _OPENCLIP_HINT.format(arch="ViT-B-32-quickgelu", hub="(github release vit_b_32-quickgelu-laion400m_e32)",
                           tags="laion400m_e31, laion400m_e32, metaclip_400m, metaclip_fullcc")),
    ("openclip_vit_b16", "ViT-B-16", "gelu", CLIP_PREPROCESSING,
     _OPENCLIP_HINT.format(arch="ViT-B-16", hub="laion/CLIP-ViT-B-16-laion2B-s34B-b88K",
                           tags="laion400m_e31/e32, laion2b_s34b_b88k, datacomp_xl_s13b_b90k, datacomp_l_s1b_b8k, "
                                "commonpool_l_*")),
    ("openclip_vit_b16_quickgelu", "ViT-B-16", "quick_gelu", CLIP_PREPROCESSING,
     _OPENCLIP_HINT.format(arch="ViT-B-16-quickgelu", hub="apple/DFN2B-CLIP-ViT-B-16",
                           tags="dfn2b, metaclip_400m, metaclip_fullcc")),
    ("openclip_vit_l14", "ViT-L-14", "gelu", CLIP_PREPROCESSING,
     _OPENCLIP_HINT.format(arch="ViT-L-14", hub="laion/CLIP-ViT-L-14-DataComp.XL-s13B-b90K",
                           tags="datacomp_xl_s13b_b90k, commonpool_xl_*, laion400m_e31/e32, dfn2b_s39b; "
                                "laion2b_s32b_b82k normalises with 0.5: use openclip_vit_l14_laion2b")),
    # laion2b_s32b_b82k was trained with mean = std = 0.5 (open_clip's pretrained config).
    ("openclip_vit_l14_laion2b", "ViT-L-14", "gelu", _INCEPTION,
     _OPENCLIP_HINT.format(arch="ViT-L-14", hub="laion/CLIP-ViT-L-14-laion2B-s32B-b82K", tags="laion2b_s32b_b82k")),
    ("openclip_vit_l14_quickgelu", "ViT-L-14", "quick_gelu", CLIP_PREPROCESSING,
     _OPENCLIP_HINT.format(arch="ViT-L-14-quickgelu", hub="apple/DFN2B-CLIP-ViT-L-14",
                           tags="dfn2b, metaclip_400m, metaclip_fullcc")),
    ("openclip_vit_h14", "ViT-H-14", "gelu", CLIP_PREPROCESSING,
     _OPENCLIP_HINT.format(arch="ViT-H-14", hub="laion/CLIP-ViT-H-14-laion2B-s32B-b79K",
                           tags="laion2b_s32b_b79k, metaclip_altogether")),
    ("openclip_vit_h14_quickgelu", "ViT-H-14", "quick_gelu", CLIP_PREPROCESSING,
     _OPENCLIP_HINT.format(arch="ViT-H-14-quickgelu", hub="(metaclip_fullcc)", tags="metaclip_fullcc")),
    ("openclip_vit_g14", "ViT-g-14", "gelu", CLIP_PREPROCESSING,
     _OPENCLIP_HINT.format(arch="ViT-g-14", hub="laion/CLIP-ViT-g-14-laion2B-s34B-b88K",
                           tags="laion2b_s12b_b42k, laion2b_s34b_b88k")),
    ("openclip_vit_bigg14", "ViT-bigG-14", "gelu", CLIP_PREPROCESSING,
     _OPENCLIP_HINT.format(arch="ViT-bigG-14", hub="laion/CLIP-ViT-bigG-14-laion2B-39B-b160k",
                           tags="laion2b_s39b_b160k")),
    ("openclip_vit_bigg14_quickgelu", "ViT-bigG-14", "quick_gelu", CLIP_PREPROCESSING,
     _OPENCLIP_HINT.format(arch="ViT-bigG-14-quickgelu", hub="(metaclip_fullcc)", tags="metaclip_fullcc")),
)

if __name__ == "__main__":
  # `python -m zoomjax.models.clip`: importing the package has already registered the models of the module
  # `zoomjax.models.clip`; this second copy of it (runpy's `__main__`) runs that module's CLI instead of
  # registering them twice.
  from zoomjax.models import clip as _package_module  # pylint: disable=import-self
  raise SystemExit(_package_module.main())

for _name, _arch_name, _act, _pp, _hint in _ENTRIES:
  _family = ZeroShotFamily(_arch_name, _act, preprocessing_at(_pp, ARCHS[_arch_name]["image_size"]))
  _FAMILIES[_name] = _family
  registry.register(registry.ModelSpec(
      name=_name,
      make_module=functools.partial(_make_zero_shot, _family.vision, _act),
      preprocessing=_family.preprocessing,
      convert=functools.partial(convert_clip_zero_shot, vision_heads=_family.vision["num_heads"]),
      checkpoint_hint=_hint,
      num_params=NUM_PARAMS[_arch_name],
      load_kwargs=LOAD_KWARGS,
      prepare=functools.partial(_prepare_zero_shot, _name, _family)))


def main(argv: Optional[Sequence[str]] = None) -> int:
  p = argparse.ArgumentParser(
      prog="python -m zoomjax.models.clip",
      description="Compute a CLIP/OpenCLIP zero-shot ImageNet head (100*cos over the 80 OpenAI templates) from a "
                  "full OpenAI/open_clip checkpoint: either write a classifier file (image tower + head, --out) for "
                  "zoomjax.models.load(NAME, checkpoint=OUT), or just warm the on-disk head cache that "
                  "zoomjax.models.load(NAME, checkpoint=CHECKPOINT) reads.")
  p.add_argument("--checkpoint", required=True, help="OpenAI/open_clip CLIP weights (e.g. ViT-L-14.pt)")
  p.add_argument("--model", default=None, choices=sorted(_FAMILIES),
                 help="registered name: sets the activation and checks the checkpoint's geometry")
  p.add_argument("--vocab", default=None,
                 help="bpe_simple_vocab_16e6.txt.gz (ships with open_clip/CLIP; default: an installed open_clip's)")
  p.add_argument("--classnames", default="openai",
                 help="'openai' / 'zoom_paper' (OpenAI's curated 1000 names, from an installed open_clip), a text "
                      "file with one class name per line, or a zero_shot_metadata.py")
  p.add_argument("--templates", default="openai80",
                 help="'openai80' (the 80 OpenAI templates), a text file with one '{}' template per line, or a "
                      "zero_shot_metadata.py")
  p.add_argument("--out", default=None, help="output .safetensors; without it only the head cache is filled")
  p.add_argument("--head-cache-dir", default=None,
                 help="head cache folder (default $ZOOMJAX_CLIP_HEADS or ~/.cache/zoomjax/clip_heads)")
  p.add_argument("--activation", default=None, choices=("quick_gelu", "gelu"),
                 help="quick_gelu: OpenAI and open_clip *-quickgelu models; gelu: other open_clip models "
                      "(default: --model's, else quick_gelu)")
  a = p.parse_args(argv)
  activation = a.activation or (_FAMILIES[a.model].activation if a.model else "quick_gelu")
  try:
    build_zero_shot_checkpoint(a.checkpoint, a.vocab, a.classnames, a.out, activation, templates=a.templates,
                               head_cache_dir=a.head_cache_dir, model=a.model)
  except UserError as e:
    print(f"{p.prog}: error: {one_line(e)}", file=sys.stderr)
    return 2
  return 0
