"""open_clip's CoCa (`coca_ViT-B-32`, `coca_ViT-L-14`) contrastive towers as zero-shot classifiers:
`openclip_coca_vit_b32`, `openclip_coca_vit_l14`.

CoCa's image tower is CLIP's ViT whose tokens go through an attentional pooler (`visual.attn_pool`: 256 learned
queries, LayerNorm'd, cross-attending to the LayerNorm'd tokens), then `ln_post` and `proj` (E, E). open_clip's
contrastive embedding is the FIRST query's output (`pool_type='tok'`; the other 255 feed the captioning decoder);
queries attend independently, so the classifier attends with that query alone (exact, and 256x less pooling work)
while keeping every stored query. The text tower (`text.*`) appends a learned `cls_emb` after the 76 tokens,
runs the causal transformer with open_clip's padding mask (its legacy layout: the key mask is shifted one place,
so the cls token also sees the first padding position) and takes the cls output through `ln_final` and
`text_projection`. The zero-shot head is computed once from that tower and cached on disk like the other CLIP
heads (`clip_zero_shot.cached_head`).

The captioning decoder (`text_decoder.*`) is not part of zero-shot classification: its tensors are ignored by
name (`convert_clip.COCA_NOT_IMAGE`), never read. Both released tags of each architecture
(`laion2b_s13b_b90k`, `mscoco_finetuned_laion2b_s13b_b90k`) load under its one name, with open_clip's evaluation
preprocessing (bicubic short-side resize to 224, centre crop, OpenAI mean/std).
"""
import dataclasses
import difflib
import functools
import time
from typing import Any, Callable, Dict, Optional, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from zoomjax.checkpoints import CheckpointError
from zoomjax.checkpoints.convert_clip import convert_coca_text, convert_coca_zero_shot, strip_module_prefix
from zoomjax.checkpoints.merge import check_fits
from zoomjax.errors import UnknownNameError
from zoomjax.models import clip_zero_shot as zs
from zoomjax.models import registry
from zoomjax.models.clip import Transformer, patch_tokens, zero_shot_logits
from zoomjax.models.clip_head import attach_zero_shot_head, clip_tokenizer, zero_shot_head
from zoomjax.models.preprocessing import CLIP_PREPROCESSING, Preprocessing
from zoomjax.models.vit import grid_for, preprocessing_at, resample_position_embedding

__all__ = ["ARCHS", "AttentionalPooler", "CocaTextTower", "CocaVisionTower", "CocaZeroShotClassifier", "FAMILIES",
           "NUM_PARAMS", "coca_text_head", "family_for", "text_config", "trim_tokens"]

_LOAD_KWARGS = ("vocab", "class_names", "templates", "head_cache_dir", "image_size")
_EPS = 1e-5  # open_clip's LayerNorm


def _ln(dtype: Any, name: str) -> nn.LayerNorm:
  return nn.LayerNorm(epsilon=_EPS, dtype=dtype, param_dtype=jnp.float32, name=name)


class AttentionalPooler(nn.Module):
  """open_clip's AttentionalPooler, answering its first query only: (B, N, width) tokens -> (B, E).

  `query` keeps all `num_queries` rows of the checkpoint; LayerNorm acts per row and each query attends on its
  own, so the first row alone gives exactly open_clip's first output."""
  embed_dim: int
  num_heads: int
  num_queries: int = 256
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    query = self.param("query", nn.initializers.normal(1.0), (self.num_queries, self.embed_dim), jnp.float32)
    q = _ln(self.dtype, "ln_q")(query[:1].astype(self.dtype))
    kv = _ln(self.dtype, "ln_k")(x)
    q = jnp.broadcast_to(q, (x.shape[0], 1, self.embed_dim))
    out = nn.MultiHeadDotProductAttention(num_heads=self.num_heads, qkv_features=self.embed_dim,
                                          out_features=self.embed_dim, dtype=self.dtype, param_dtype=jnp.float32,
                                          deterministic=True, name="attn")(q, kv, kv)
    return out[:, 0]


class CocaVisionTower(nn.Module):
  """CoCa's image encoder: CLIP's ViT -> attentional pooler (first query) -> ln_post -> proj. Returns
  (embedding (B, E), intermediates)."""
  patch_size: int = 32
  width: int = 768
  depth: int = 12
  num_heads: int = 12
  mlp_dim: int = 3072
  embed_dim: int = 512
  pool_heads: int = 8
  pool_queries: int = 256
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> Tuple[jax.Array, Dict[str, jax.Array]]:
    d, e = self.width, self.embed_dim
    x, (h, w) = patch_tokens(self, x, self.patch_size, d, _EPS, self.dtype)
    x = Transformer(d, self.depth, self.num_heads, self.mlp_dim, "gelu", _EPS, self.dtype, name="transformer")(x)
    pooled = AttentionalPooler(e, self.pool_heads, self.pool_queries, self.dtype, name="attn_pool")(x)
    pooled = _ln(self.dtype, "ln_post")(pooled)
    out = {"encoded": x, "feature_map": x[:, 1:].reshape(x.shape[0], h, w, d), "pre_logits": pooled}
    proj = self.param("proj", nn.initializers.normal(e ** -0.5), (e, e), jnp.float32)
    return (pooled @ proj.astype(pooled.dtype)).astype(jnp.float32), out


def trim_tokens(tokens: np.ndarray) -> np.ndarray:
  """Tokens (B, L) cut after the batch's first padding position past its last eot (each row's largest id), at
  most L: what `CocaTextTower(trimmed=True)` takes, the same features for a fraction of the work. The padding
  position stays because open_clip's shifted key mask lets the cls token see it."""
  tokens = np.asarray(tokens)
  return tokens[:, :min(int(tokens.argmax(-1).max()) + 2, tokens.shape[-1])]


class CocaTextTower(nn.Module):
  """CoCa's text encoder: tokens (B, context_length) + the appended `cls_emb` -> causal transformer with
  open_clip's padding mask -> the cls output through `ln_final` and `text_projection`. Returns (B, E)."""
  vocab_size: int = 49408
  context_length: int = 76
  width: int = 512
  depth: int = 12
  num_heads: int = 8
  mlp_dim: int = 2048
  embed_dim: int = 512
  pad_id: int = 0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, tokens: jax.Array, embeddings: Optional[jax.Array] = None, *, trimmed: bool = False
               ) -> jax.Array:
    """`embeddings` (B, L, width), when given, replace the token-embedding lookup (TPT learns some of them);
    `tokens` still make the padding mask.

    trimmed: the rows are cut by `trim_tokens` (L <= context_length) and the cls token keeps its position
    embedding (the last). Exact: every key cut off is masked for the cls token in the full layout (the token
    before it is padding), and the cls key's own mask reads the last token, padding in both layouts unless
    nothing was cut.
    """
    tokens = jnp.asarray(tokens, jnp.int32)
    b, length = tokens.shape
    if length > self.context_length or (length != self.context_length and not trimmed):
      raise ValueError(f"text tokens have length {length}, CoCa expects {self.context_length}")
    d = self.width
    embed = nn.Embed(self.vocab_size, d, dtype=self.dtype, param_dtype=jnp.float32, name="token_embedding")
    x = embed(tokens) if embeddings is None else jnp.asarray(embeddings, self.dtype)
    cls = self.param("cls_emb", nn.initializers.normal(0.01), (d,), jnp.float32)
    x = jnp.concatenate([x, jnp.broadcast_to(cls.astype(x.dtype), (b, 1, d))], axis=1)
    pe = self.param("positional_embedding", nn.initializers.normal(0.01), (self.context_length + 1, d),
                    jnp.float32)
    x = x + jnp.concatenate([pe[:length], pe[-1:]]).astype(x.dtype)
    # open_clip's key mask for the sequence + cls, laid out [cls, tokens] (its released weights' legacy order):
    # key j > 0 is kept when token j - 1 is not padding, key 0 always.
    keep = jnp.concatenate([jnp.ones((b, 1), bool), tokens != self.pad_id], axis=1)
    mask = nn.combine_masks(nn.make_causal_mask(keep), keep[:, None, None, :])
    x = Transformer(d, self.depth, self.num_heads, self.mlp_dim, "gelu", _EPS, self.dtype,
                    name="transformer")(x, mask)
    x = _ln(self.dtype, "ln_final")(x[:, -1])
    proj = self.param("text_projection", nn.initializers.normal(d ** -0.5), (d, self.embed_dim), jnp.float32)
    return (x @ proj.astype(x.dtype)).astype(jnp.float32)


class CocaZeroShotClassifier(nn.Module):
  """CoCa image tower + a fixed zero-shot head (E, C): logits = 100 * normalise(image embedding) @ head;
  intermediates are the tower's plus `image_embeddings` and `image_features` (normalised)."""
  patch_size: int = 32
  width: int = 768
  depth: int = 12
  num_heads: int = 12
  mlp_dim: int = 3072
  embed_dim: int = 512
  pool_heads: int = 8
  pool_queries: int = 256
  num_classes: int = 1000
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> Tuple[jax.Array, Dict[str, jax.Array]]:
    emb, out = CocaVisionTower(self.patch_size, self.width, self.depth, self.num_heads, self.mlp_dim,
                               self.embed_dim, self.pool_heads, self.pool_queries, self.dtype, name="visual")(x)
    return zero_shot_logits(self, emb, out, self.num_classes)


_VISION_FIELDS = ("patch_size", "width", "depth", "num_heads", "mlp_dim", "embed_dim", "pool_heads", "pool_queries")
_CHECKED = ("patch_size", "width", "depth", "mlp_dim", "embed_dim", "pool_queries")  # what the tensors say


def _arch(patch: int, width: int, depth: int, embed: int, pool_heads: int, text_width: int, text_heads: int
          ) -> Dict[str, Any]:
  vision = dict(patch_size=patch, width=width, depth=depth, num_heads=width // 64, mlp_dim=4 * width,
                embed_dim=embed, pool_heads=pool_heads, pool_queries=256)
  text = dict(vocab_size=49408, context_length=76, width=text_width, depth=12, num_heads=text_heads,
              mlp_dim=4 * text_width, embed_dim=embed)
  return {"vision": vision, "text": text, "image_size": 224}


# open_clip's model_configs/coca_ViT-*.json (vision layers/width/patch/attn_pooler_heads, text width/heads).
ARCHS: Dict[str, Dict[str, Any]] = {
    "coca_ViT-B-32": _arch(32, 768, 12, 512, 8, 512, 8),
    "coca_ViT-L-14": _arch(14, 1024, 24, 768, 8, 768, 12),
}
# Exact 'params' counts: open_clip 3.3.0's `sum(p.numel() for p in model.visual.parameters())` + the (E, 1000)
# head (experiments/make_clip_coca_goldens.py; tests/test_clip_coca.py pins the modules' eval_shape to them).
NUM_PARAMS = {"coca_ViT-B-32": 89_164_032 + 512_000, "coca_ViT-L-14": 306_724_864 + 768_000}


@dataclasses.dataclass(frozen=True)
class CocaFamily:
  """One registered CoCa classifier: its arch (key of ARCHS) and preprocessing."""
  arch: str
  preprocessing: Preprocessing

  @property
  def vision(self) -> Dict[str, Any]:
    """The image tower's sizes (a fresh dict: callers may update it)."""
    return dict(ARCHS[self.arch]["vision"])

  @property
  def image_size(self) -> int:
    return ARCHS[self.arch]["image_size"]


FAMILIES: Dict[str, CocaFamily] = {}


def family_for(name: str) -> CocaFamily:
  """The family registered as `name` (`openclip_coca_*`, or open_clip's arch name `coca_ViT-L-14`); another name
  is an error naming the closest registered ones."""
  if name in FAMILIES:
    return FAMILIES[name]
  by_arch = {f.arch: f for f in FAMILIES.values()}
  if name in by_arch:
    return by_arch[name]
  close = difflib.get_close_matches(name, list(FAMILIES) + list(ARCHS), n=3, cutoff=0.5)
  raise UnknownNameError(f"CoCa {name!r} is not registered; " + (f"closest: {', '.join(close)}; " if close else "")
                         + f"registered: {', '.join(sorted(FAMILIES))}")


def text_config(flat: Dict[str, np.ndarray]) -> Dict[str, Any]:
  """The CoCa text tower's sizes read from a state dict (`text.*`; 64-wide heads, as both released towers)."""
  if "text.cls_emb" not in flat:
    raise CheckpointError("no CoCa text tower (`text.cls_emb`) to build the zero-shot head from; keys start with "
                          f"{sorted(flat)[:5]}")
  emb = np.shape(flat["text.token_embedding.weight"])
  depth = 0
  while f"text.transformer.resblocks.{depth}.ln_1.weight" in flat:
    depth += 1
  return dict(vocab_size=int(emb[0]), context_length=int(np.shape(flat["text.positional_embedding"])[0]) - 1,
              width=int(emb[1]), depth=depth, num_heads=max(int(emb[1]) // 64, 1),
              mlp_dim=int(np.shape(flat["text.transformer.resblocks.0.mlp.c_fc.weight"])[0]),
              embed_dim=int(np.shape(flat["text.text_projection"])[1]))


def coca_text_head(flat: Dict[str, np.ndarray], *, vocab: Optional[str] = None, class_names: Optional[str] = None,
                   templates: Optional[str] = None, head_cache_dir: Optional[str] = None, use_cache: bool = True,
                   checkpoint: str = "", progress: Optional[Callable[[int, int], None]] = None) -> np.ndarray:
  """The (E, C) zero-shot head of a CoCa state dict's text tower (cls-token pooling), from the on-disk head cache
  when computed before; `vocab` etc. as `clip_head.text_head` (CoCa uses CLIP's BPE vocabulary, 76 tokens)."""
  flat = strip_module_prefix(flat)
  text_cfg = text_config(flat)
  names, temps = zs.resolve_class_names(class_names), zs.resolve_templates(templates)
  text = {k: v for k, v in flat.items() if k.startswith("text.")}
  info = {"checkpoint": str(checkpoint), "family": "coca", "text_config": text_cfg, "class_names": list(names),
          "templates": list(temps), "created": time.strftime("%Y-%m-%d %H:%M:%S")}

  def compute() -> np.ndarray:
    tok = clip_tokenizer(vocab, text_cfg, info)
    variables = convert_coca_text(text, text_heads=text_cfg["num_heads"])
    encode = jax.jit(CocaTextTower(**text_cfg).apply)
    logging.info("computing the CoCa zero-shot head: %d classes x %d templates", len(names), len(temps))
    return zero_shot_head(lambda t: encode(variables, t), tok, names, temps, progress=progress)

  if not use_cache:
    return compute()
  digest = zs.text_tower_digest(text)
  info["text_tower_sha256"] = digest
  key = zs.head_key(digest, text_cfg, "coca/gelu", names, temps)
  return zs.cached_head(head_cache_dir, key, (text_cfg["embed_dim"], len(names)), compute, info)


def _make(vision: Dict[str, Any], *, num_classes: int = 1000, dtype: Any = jnp.float32,
          **overrides: Any) -> CocaZeroShotClassifier:
  unknown = sorted(set(overrides) - set(_VISION_FIELDS))
  if unknown:
    raise TypeError(f"CoCa zero-shot classifier: unknown overrides {unknown}; it takes {', '.join(_VISION_FIELDS)}, "
                    f"num_classes, dtype and the load options {', '.join(_LOAD_KWARGS)}")
  return CocaZeroShotClassifier(**dict(vision, **overrides), num_classes=int(num_classes), dtype=jnp.dtype(dtype))


def _tower_of(flat: Dict[str, np.ndarray]) -> Dict[str, int]:
  """The sizes the image tower's tensors state (pool_queries 0: no attentional pooler)."""
  depth = 0
  while f"visual.transformer.resblocks.{depth}.ln_1.weight" in flat:
    depth += 1
  conv = np.shape(flat["visual.conv1.weight"])
  query = np.shape(flat.get("visual.attn_pool.query", np.zeros((0, 0))))
  return dict(patch_size=int(conv[-1]), width=int(conv[0]), depth=depth,
              mlp_dim=int(np.shape(flat["visual.transformer.resblocks.0.mlp.c_fc.weight"])[0]),
              embed_dim=int(np.shape(flat["visual.proj"])[1]), pool_queries=int(query[0]))


def _check_tower(name: str, family: CocaFamily, flat: Dict[str, np.ndarray], vision: Dict[str, Any], size: int,
                 path: Optional[str]) -> None:
  """The load gate on the image tower's shapes alone (no arrays built), before minutes go into a head: a file of
  another family gets the gate's two-sided difference, plus the CoCa family it fits where there is one."""
  shapes = {k: np.broadcast_to(np.float32(0), np.shape(v)) for k, v in flat.items() if k.startswith("visual.")}
  e = vision["embed_dim"]
  shapes["zeroshot_head"] = np.broadcast_to(np.float32(0), (e, 1))
  # Head counts no tensor stores: the model's where they split the file's widths, else one (the gate then lists
  # the attention kernels' shapes instead of the converter stopping at the first split).
  width = int(np.shape(flat.get("visual.conv1.weight", np.zeros(1)))[0])
  pool_width = int(np.shape(flat.get("visual.attn_pool.attn.in_proj_bias", np.zeros(3)))[0]) // 3
  heads = vision["num_heads"] if width % vision["num_heads"] == 0 else 1
  pool_heads = vision["pool_heads"] if pool_width % vision["pool_heads"] == 0 else 1
  try:
    converted = convert_coca_zero_shot(shapes, heads, pool_heads)
  except (KeyError, ValueError) as err:
    raise CheckpointError(f"cannot convert to {name!r}: {err.args[0] if err.args else err}") from None
  module = _make(vision, num_classes=1)
  ref = jax.eval_shape(module.init, jax.random.PRNGKey(0), jax.ShapeDtypeStruct((1, size, size, 3), jnp.float32))
  try:
    check_fits(ref, converted, path_for_errors=path or name)
  except CheckpointError as err:
    try:
      got = _tower_of(flat)
    except KeyError:  # not even a ViT tower: the gate's listing says it all
      got = {}
    fits = [n for n, f in sorted(FAMILIES.items()) if got and all(f.vision[k] == got[k] for k in _CHECKED)]
    hint = (f". It is the image tower of {', '.join(fits)}: load it under that name" if fits else
            ". The file has no attentional pooler (`visual.attn_pool.*`): a plain CLIP ViT image tower loads as "
            "clip_vit_* / openclip_vit_*" if "visual.attn_pool.query" not in flat else "")
    raise CheckpointError(f"{err} (model {name!r}, {family.arch} image tower){hint}") from None


def _prepare(name: str, family: CocaFamily, flat: Optional[Dict[str, np.ndarray]], overrides: Dict[str, Any], *,
             path: Optional[str] = None, vocab: Optional[str] = None, class_names: Optional[str] = None,
             templates: Optional[str] = None, head_cache_dir: Optional[str] = None,
             image_size: Optional[int] = None) -> registry.LoadPlan:
  """Checks the file's image tower with the load gate, resamples its position grid for `image_size`, and for a
  full open_clip CoCa state dict replaces the text tower (and the decoder) by its cached zero-shot head."""
  vision = dict(family.vision, **{k: overrides[k] for k in _VISION_FIELDS if k in overrides})
  size = family.image_size if image_size is None else int(image_size)
  grid = grid_for(size, vision["patch_size"], name)
  pp = preprocessing_at(family.preprocessing, size)
  if flat is None:  # random_init: a random head, no vocabulary or class names needed.
    return registry.LoadPlan(overrides=overrides, preprocessing=pp)
  flat = strip_module_prefix(flat)
  if "visual.positional_embedding" in flat and "visual.conv1.weight" in flat:
    n = int(np.shape(flat["visual.positional_embedding"])[0]) - 1
    stored = int(round(n ** 0.5)) * int(np.shape(flat["visual.conv1.weight"])[-1])
    if stored != size and image_size is not None:
      flat["visual.positional_embedding"] = resample_position_embedding(flat["visual.positional_embedding"],
                                                                        (grid, grid))
  build = None
  if "zeroshot_head" not in flat:  # A full state dict (or the image tower alone, as clip_cli --model checks it).
    _check_tower(name, family, flat, vision, size, path)
    if "text.cls_emb" in flat:
      build = functools.partial(coca_text_head, flat, vocab=vocab, class_names=class_names, templates=templates,
                                head_cache_dir=head_cache_dir, checkpoint=path or "")
  flat = attach_zero_shot_head(flat, path, overrides, build, lambda k: k.startswith("visual."),
                               class_names=class_names, templates=templates)
  return registry.LoadPlan(overrides=overrides, preprocessing=pp, flat=flat,
                           convert=functools.partial(convert_coca_zero_shot, vision_heads=vision["num_heads"],
                                                     pool_heads=vision["pool_heads"]))


_HINT = ("Pass open_clip's `{arch}` weights (open_clip_pytorch_model.bin or open_clip_model.safetensors of hf-hub "
         "laion/{hub} or laion/mscoco_finetuned_{hub}; tags laion2b_s13b_b90k, mscoco_finetuned_laion2b_s13b_b90k); "
         "the text head is computed once from its text tower (pass vocab=bpe_simple_vocab_16e6.txt.gz unless "
         "open_clip is installed) and cached; the captioning decoder's tensors are ignored. An already-built "
         "zero-shot file (python -m zoomjax.models.clip_cli --out) also works.")
_ENTRIES = (("openclip_coca_vit_b32", "coca_ViT-B-32", "CoCa-ViT-B-32-laion2B-s13B-b90k"),
            ("openclip_coca_vit_l14", "coca_ViT-L-14", "CoCa-ViT-L-14-laion2B-s13B-b90k"))

for _name, _arch_name, _hub in _ENTRIES:
  # open_clip's transform: bicubic resize of the short side to 224, centre crop, OpenAI mean/std.
  _family = CocaFamily(_arch_name, preprocessing_at(CLIP_PREPROCESSING, ARCHS[_arch_name]["image_size"]))
  FAMILIES[_name] = _family
  registry.register(registry.ModelSpec(
      name=_name,
      make_module=functools.partial(_make, _family.vision),
      preprocessing=_family.preprocessing,
      convert=functools.partial(convert_coca_zero_shot, vision_heads=_family.vision["num_heads"],
                                pool_heads=_family.vision["pool_heads"]),
      checkpoint_hint=_HINT.format(arch=_arch_name, hub=_hub),
      num_params=NUM_PARAMS[_arch_name],
      load_kwargs=_LOAD_KWARGS,
      prepare=functools.partial(_prepare, _name, _family)))
