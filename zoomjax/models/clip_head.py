"""CLIP's zero-shot head (docs/study.md §5) and the head of a full CLIP state dict, computed once and cached.

For each class, the prompt templates (OpenAI's 80 by default) are encoded by the text tower, each embedding
L2-normalised, averaged and re-normalised: the head is the (E, C) matrix of those class embeddings, and the
classifier's logits are 100 * cos(image embedding, class embedding) (`clip.ZeroShotClassifier`). The named text
data, the vocabulary and the on-disk head cache are `zoomjax.models.clip_zero_shot`.
"""
import functools
import hashlib
import time
from typing import TYPE_CHECKING, Any, Callable, Dict, Optional, Sequence

import jax
import numpy as np
from absl import logging

from zoomjax.checkpoints import CheckpointError
from zoomjax.checkpoints.convert_clip import convert_clip_text, strip_module_prefix
from zoomjax.errors import UserError
from zoomjax.models import clip_zero_shot as zs
from zoomjax.models.clip import TextTower
from zoomjax.models.clip_archs import config_from_state_dict
from zoomjax.models.clip_zero_shot import OPENAI_IMAGENET_TEMPLATES
from zoomjax.runtime import console

if TYPE_CHECKING:  # Imported where used: the tokenizer's modules load only when a head is computed.
  from zoomjax.models.clip_tokenizer import ClipTokenizer

__all__ = ["attach_clip_text_head", "attach_zero_shot_head", "clip_tokenizer", "text_head", "tower_mismatch",
           "zero_shot_head"]


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


# State-dict keys that are not the text tower's: the head's cache key hashes all the others.
_NOT_TEXT = ("visual.", "logit_scale", "zeroshot_head", "input_resolution", "context_length", "vocab_size",
             "attn_mask")


def _file_sha256(path: str) -> str:
  """Hex SHA-256 of a file's bytes, read in 1 MiB blocks (recorded beside a cached head: which vocabulary)."""
  h = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      h.update(block)
  return h.hexdigest()


def clip_tokenizer(vocab: Optional[str], text_cfg: Dict[str, Any], info: Dict[str, Any]) -> "ClipTokenizer":
  """CLIP's BPE tokenizer for a text tower of config `text_cfg` (its context length), refused in one line when
  the vocabulary's size is not the tower's embedding count; records the vocabulary's path and SHA-256 in `info`
  (the head cache's description of how the head was made). `vocab`: see `clip_zero_shot.resolve_vocab`."""
  from zoomjax.models.clip_tokenizer import ClipTokenizer  # pylint: disable=import-outside-toplevel
  vocab_path = zs.resolve_vocab(vocab)
  tok = ClipTokenizer(vocab_path, context_length=text_cfg["context_length"])
  if tok.vocab_size != text_cfg["vocab_size"]:
    raise UserError(f"vocabulary {vocab_path} has {tok.vocab_size} tokens but the checkpoint's text tower "
                    f"embeds {text_cfg['vocab_size']}: pass the vocabulary the model was trained with")
  info.update(vocab=vocab_path, vocab_sha256=_file_sha256(vocab_path))
  return tok


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
  if "cls_emb" in flat or "text.cls_emb" in flat:
    raise CheckpointError("a CoCa text tower (`cls_emb`), whose head pools its cls token: load the file as "
                          "openclip_coca_vit_b32 / openclip_coca_vit_l14 (zoomjax.models.clip_coca)")
  if "token_embedding.weight" not in flat:
    raise CheckpointError("no text tower (`token_embedding.weight`) to build the zero-shot head from")
  names, temps = zs.resolve_class_names(class_names), zs.resolve_templates(templates)
  text_cfg = config_from_state_dict(flat, vision=False)["text"]  # any image tower (ViT, ConvNeXt)
  info = {"checkpoint": str(checkpoint), "activation": activation, "text_config": text_cfg,
          "class_names": list(names), "templates": list(temps), "created": time.strftime("%Y-%m-%d %H:%M:%S")}

  def compute() -> np.ndarray:
    tok = clip_tokenizer(vocab, text_cfg, info)
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


def attach_zero_shot_head(flat: Dict[str, Any], path: Optional[str], overrides: Dict[str, Any],
                          build_head: Optional[Callable[[], np.ndarray]], keep: Callable[[str], bool], *,
                          class_names: Optional[str] = None, templates: Optional[str] = None) -> Dict[str, Any]:
  """The image-tower weights of a contrastive checkpoint with its `zeroshot_head`, for every CLIP-like family.

  A file that already holds a head keeps it (class_names / templates cannot apply: said once); otherwise
  `build_head()` (None: the file has no text tower) computes it from the text tower and only the names `keep`
  accepts stay beside it. The head's class count sets `overrides["num_classes"]`, or must equal it.
  """
  if "zeroshot_head" in flat:
    if class_names not in (None, "", *zs.CLASS_NAME_SETS) or templates not in (None, "", *zs.TEMPLATE_SETS):
      console.warn(f"{path}: the checkpoint already holds a zero-shot head {flat['zeroshot_head'].shape}; "
                   "class_names / templates apply only to full CLIP state dicts and are ignored")
  elif build_head is not None:
    head = build_head()
    flat = {k: v for k, v in flat.items() if keep(k)}
    flat["zeroshot_head"] = head
  if "zeroshot_head" in flat:
    classes = int(flat["zeroshot_head"].shape[-1])
    if overrides.setdefault("num_classes", classes) != classes:
      raise CheckpointError(f"the zero-shot head has {classes} classes, not num_classes={overrides['num_classes']}")
  return flat


def attach_clip_text_head(flat: Dict[str, Any], path: Optional[str], overrides: Dict[str, Any], activation: str, *,
                          vocab: Optional[str] = None, class_names: Optional[str] = None,
                          templates: Optional[str] = None, head_cache_dir: Optional[str] = None) -> Dict[str, Any]:
  """`attach_zero_shot_head` for an OpenAI / open_clip state dict: the head comes from its CLIP text tower
  (`text_head` with `activation`, cached) when it has one, and its `visual.*` weights stay beside it."""
  build = (functools.partial(text_head, flat, activation, vocab=vocab, class_names=class_names, templates=templates,
                             head_cache_dir=head_cache_dir, checkpoint=path or "")
           if "token_embedding.weight" in flat else None)
  return attach_zero_shot_head(flat, path, overrides, build, lambda k: k.startswith("visual."),
                               class_names=class_names, templates=templates)


def tower_mismatch(name: str, tower: str, diff: Sequence[str], fits: Sequence[str] = ()) -> CheckpointError:
  """The error for a checkpoint whose image tower is not model `name`'s (`tower` describes the model's): the
  sizes that differ, and the registered models whose tower it is, if any, to load it under."""
  return CheckpointError(f"checkpoint does not fit the model {name!r} ({tower} image tower): " + "; ".join(diff)
                         + (f". It is the image tower of {', '.join(fits)}: load it under that name" if fits else ""))
