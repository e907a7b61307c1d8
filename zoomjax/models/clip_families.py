"""The registered CLIP zero-shot classifiers (`clip_vit_*` OpenAI, `openclip_vit_*` open_clip) and their loading.

Each family is an architecture of `clip_archs.ARCHS`, an activation and a preprocessing. `load(name, ckpt)` takes
either a full OpenAI/open_clip state dict (`.pt`, `.bin`, `.safetensors`) or an already-built zero-shot file
(image tower + `zeroshot_head`, `python -m zoomjax.models.clip_cli --out`). From a full state dict the head is
computed once from the text tower and cached on disk (`clip_head.text_head`), so
`load(name, ckpt, vocab=..., class_names=..., templates=..., head_cache_dir=..., image_size=..., dtype=...)`
is all a job passes. The image tower's geometry is read from the checkpoint and checked against the family
(width, depth, patch, MLP, embedding, position grid); the head count, which no tensor stores, comes from the
family (open_clip's H/14, g/14, bigG/14 use 80-, 88- and 104-wide heads).
"""
import dataclasses
import functools
from typing import Any, Dict, List, Optional

import jax.numpy as jnp
import numpy as np

from zoomjax.checkpoints import CheckpointError
from zoomjax.checkpoints.convert_clip import convert_clip_zero_shot, strip_module_prefix
from zoomjax.models import registry
from zoomjax.models.clip import ZeroShotClassifier
from zoomjax.models.clip_archs import ARCHS, config_from_state_dict, stored_image_size
from zoomjax.models.clip_head import attach_clip_text_head, tower_mismatch
from zoomjax.models.preprocessing import CLIP_PREPROCESSING, ZOOM_PAPER_CLIP_PREPROCESSING, Preprocessing
from zoomjax.models.vit import grid_for, preprocessing_at, resample_position_embedding

__all__ = ["FAMILIES", "LOAD_KWARGS", "NUM_PARAMS", "VISION_FIELDS", "ZeroShotFamily", "is_zero_shot"]


@dataclasses.dataclass(frozen=True)
class ZeroShotFamily:
  """One registered zero-shot classifier: an architecture of `ARCHS`, its activation and preprocessing."""
  arch: str  # key of ARCHS (open_clip's config name)
  activation: str  # "quick_gelu" (OpenAI, open_clip *-quickgelu tags) | "gelu"
  preprocessing: Preprocessing  # at ARCHS[arch]["image_size"]

  @property
  def vision(self) -> Dict[str, Any]:
    """The image tower's sizes (a fresh dict: callers may update it)."""
    return dict(ARCHS[self.arch]["vision"])

  @property
  def image_size(self) -> int:
    """The input side the released weights were trained at."""
    return ARCHS[self.arch]["image_size"]


VISION_FIELDS = ("patch_size", "width", "depth", "num_heads", "mlp_dim", "embed_dim")
_CHECKED = ("patch_size", "width", "depth", "mlp_dim", "embed_dim")  # what the tensors say (heads they do not)
LOAD_KWARGS = ("vocab", "class_names", "templates", "head_cache_dir", "image_size")
FAMILIES: Dict[str, ZeroShotFamily] = {}  # registered name -> family (filled below, at import)


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


def _fits(vision: Dict[str, Any], image_size: int) -> List[str]:
  """Registered zero-shot names whose default image tower has this geometry (heads aside) and input size."""
  return [n for n, f in sorted(FAMILIES.items()) if f.image_size == image_size
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
    raise tower_mismatch(name, family.arch, diff, _fits(got, stored))
  if stored != size:
    if image_size is None:
      fits = _fits(got, stored)
      raise CheckpointError(
          f"the checkpoint's position embedding is a {stored // vision['patch_size']}^2 grid ({stored} px input) "
          f"but {name!r} runs at {size} px: " + (f"load it as {', '.join(fits)}, or " if fits else "")
          + f"pass image_size={size} (or another multiple of {vision['patch_size']}) to resample it")
    flat["visual.positional_embedding"] = resample_position_embedding(flat["visual.positional_embedding"],
                                                                      (grid, grid))
  flat = attach_clip_text_head(flat, path, overrides, activation, vocab=vocab, class_names=class_names,
                               templates=templates, head_cache_dir=head_cache_dir)
  return registry.LoadPlan(overrides=overrides, preprocessing=pp, flat=flat,
                           convert=functools.partial(convert_clip_zero_shot, vision_heads=vision["num_heads"]))


# Exact 'params' counts: open_clip 3.3.0's `sum(p.numel() for p in model.visual.parameters())` for each
# architecture + the (E, 1000) head (tests/test_clip_zero_shot.py pins the modules' eval_shape to them).
NUM_PARAMS: Dict[str, int] = {"ViT-B-32": 87_849_216 + 512_000, "ViT-B-16": 86_192_640 + 512_000,
                              "ViT-B-16-plus-240": 117_213_824 + 640_000, "ViT-L-14": 303_966_208 + 768_000,
                              "ViT-L-14-336": 304_293_888 + 768_000,
                              "ViT-H-14": 632_076_800 + 1_024_000, "ViT-g-14": 1_012_645_632 + 1_024_000,
                              "ViT-bigG-14": 1_844_907_264 + 1_280_000}

_OPENAI_HINT = ("Pass OpenAI's `{file}` (what the `clip` package downloads from openaipublic.azureedge.net; "
                "open_clip's `{arch}` pretrained='openai' is the same file) or open_clip's "
                "open_clip_pytorch_model.bin / "
                "open_clip_model.safetensors of hf-hub {hub}; the text head is computed once from it (pass "
                "vocab=bpe_simple_vocab_16e6.txt.gz unless open_clip is installed) and cached. An already-built "
                "zero-shot file (python -m zoomjax.models.clip_cli --out) also works.")
_OPENCLIP_HINT = ("Pass open_clip's `{arch}` weights (open_clip_pytorch_model.bin or open_clip_model.safetensors "
                  "of hf-hub {hub}, tags {tags}); the text head is computed once from them (pass "
                  "vocab=bpe_simple_vocab_16e6.txt.gz unless open_clip is installed) and cached. An already-built "
                  "zero-shot file (python -m zoomjax.models.clip_cli --out) also works.")
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
    # The zoom study fed OpenAI's L/14 ImageNet-normalised crops (docs/study.md §5).
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
    ("openclip_vit_b16_plus_240", "ViT-B-16-plus-240", "gelu", CLIP_PREPROCESSING,
     _OPENCLIP_HINT.format(arch="ViT-B-16-plus-240", hub="timm/vit_base_patch16_plus_clip_240.laion400m_e31",
                           tags="laion400m_e31, laion400m_e32")),
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

for _name, _arch_name, _act, _pp, _hint in _ENTRIES:
  _family = ZeroShotFamily(_arch_name, _act, preprocessing_at(_pp, ARCHS[_arch_name]["image_size"]))
  FAMILIES[_name] = _family
  registry.register(registry.ModelSpec(
      name=_name,
      make_module=functools.partial(_make_zero_shot, _family.vision, _act),
      preprocessing=_family.preprocessing,
      convert=functools.partial(convert_clip_zero_shot, vision_heads=_family.vision["num_heads"]),
      checkpoint_hint=_hint,
      num_params=NUM_PARAMS[_arch_name],
      load_kwargs=LOAD_KWARGS,
      prepare=functools.partial(_prepare_zero_shot, _name, _family)))
