"""open_clip's EVA-02 CLIP models (`EVA02-B-16`, `EVA02-L-14`, `EVA02-L-14-336`, `EVA02-E-14`, `EVA02-E-14-plus`)
as zero-shot classifiers: `openclip_eva02_*`.

open_clip builds their image tower from a timm `eva02_*_clip_*` trunk (`timm_pool="token"`, `timm_proj=null`): the
trunk's own classifier `head` (a Linear with bias) is the projection to the embedding, applied to the class token
after the final LayerNorm. B-16 and the L-14s are EVA-02 blocks (RoPE, split q/k/v, SwiGLU with a sub-LN) plus a
LayerNorm inside attention; the enormous E-14 towers use post-norm blocks, a fused qkv, a plain GELU MLP and no
RoPE (zoomjax.models.eva holds both). The state dict stores the tower as `visual.trunk.*` and the text tower,
open_clip's usual transformer with exact GELU, under `text.*` (open_clip's `CustomTextCLIP`); the zero-shot head
is computed from it once and cached (`clip_head.text_head`), exactly as for the ViT CLIPs. `image_size=S` runs
the tower at another input side (the position embedding resampled; RoPE follows the grid by itself).
"""
import dataclasses
import difflib
import functools
from typing import Any, Dict, Optional, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from zoomjax.checkpoints import CheckpointError
from zoomjax.checkpoints.convert_backbones import convert_openclip_eva, eva_sizes
from zoomjax.checkpoints.convert_clip import strip_module_prefix
from zoomjax.errors import UnknownNameError
from zoomjax.models import registry
from zoomjax.models.clip import zero_shot_logits
from zoomjax.models.clip_head import attach_clip_text_head, tower_mismatch
from zoomjax.models.eva import Eva
from zoomjax.models.preprocessing import CLIP_PREPROCESSING, Preprocessing
from zoomjax.models.vit import grid_for, preprocessing_at, resample_position_embedding

__all__ = ["ARCHS", "EvaZeroShotClassifier", "FAMILIES", "NUM_PARAMS", "family_for", "lift_text_tower"]

_LOAD_KWARGS = ("vocab", "class_names", "templates", "head_cache_dir", "image_size")


class EvaZeroShotClassifier(nn.Module):
  """timm EVA-02 CLIP trunk (class token -> `head` projection) -> L2 normalise -> 100 * cos with the zero-shot
  head (E, C). Returns (logits, intermediates) with the trunk's and `image_embeddings` / `image_features`."""
  patch_size: int = 16
  width: int = 768
  depth: int = 12
  num_heads: int = 12
  mlp_dim: int = 2048
  mlp: str = "swiglu"  # "swiglu" | "gelu"
  scale_mlp: bool = True
  scale_attn_inner: bool = True
  post_norm: bool = False
  rope: bool = True
  ref_grid: int = 16  # RoPE's reference grid (timm's ref_feat_shape)
  embed_dim: int = 512
  eps: float = 1e-6
  num_classes: int = 1000
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> Tuple[jax.Array, Dict[str, jax.Array]]:
    emb, out = Eva(patch_size=self.patch_size, width=self.width, depth=self.depth, num_heads=self.num_heads,
                   mlp_dim=self.mlp_dim, scale_mlp=self.scale_mlp, ref_grid=self.ref_grid,
                   num_classes=self.embed_dim, eps=self.eps, dtype=self.dtype, mlp=self.mlp,
                   scale_attn_inner=self.scale_attn_inner, post_norm=self.post_norm, rope=self.rope, pool="token",
                   name="trunk")(x)
    return zero_shot_logits(self, emb, out, self.num_classes)


def _text(width: int, depth: int, heads: int, embed: int) -> Dict[str, Any]:
  """The text tower's sizes (`clip.TextTower` fields; what TPT builds a random tower from)."""
  return dict(vocab_size=49408, context_length=77, width=width, depth=depth, num_heads=heads, mlp_dim=4 * width,
              embed_dim=embed)


# timm's eva02_*_clip_* model arguments (mlp_dim = int(width * mlp_ratio)) and open_clip's model_configs/<arch>.json
# (embed_dim, image_size; `text`: its text_cfg). The E-14 towers differ only in their text towers.
_B = dict(patch_size=16, width=768, depth=12, num_heads=12, mlp_dim=2048, mlp="swiglu", scale_mlp=True,
          scale_attn_inner=True, post_norm=False, rope=True, embed_dim=512, image_size=224, text=_text(512, 12, 8, 512))
_L = dict(_B, patch_size=14, width=1024, depth=24, num_heads=16, mlp_dim=2730, embed_dim=768,
          text=_text(768, 12, 12, 768))
_E = dict(patch_size=14, width=1792, depth=64, num_heads=16, mlp_dim=15360, mlp="gelu", scale_mlp=False,
          scale_attn_inner=False, post_norm=True, rope=False, embed_dim=1024, image_size=224,
          text=_text(1024, 24, 16, 1024))
ARCHS: Dict[str, Dict[str, Any]] = {"EVA02-B-16": _B, "EVA02-L-14": _L, "EVA02-L-14-336": dict(_L, image_size=336),
                                    "EVA02-E-14": _E, "EVA02-E-14-plus": dict(_E, text=_text(1280, 32, 20, 1024))}
# Exact 'params' counts: open_clip 3.3.0's `sum(p.numel() for p in model.visual.parameters())` + the (E, 1000)
# head (experiments/make_clip_eva_goldens.py; pinned by tests/test_clip_eva.py).
NUM_PARAMS = {"EVA02-B-16": 86_263_040 + 512_000, "EVA02-L-14": 304_105_152 + 768_000,
              "EVA02-L-14-336": 304_432_832 + 768_000, "EVA02-E-14": 4_350_556_928 + 1_024_000,
              "EVA02-E-14-plus": 4_350_556_928 + 1_024_000}
_MODULE_FIELDS = ("patch_size", "width", "depth", "num_heads", "mlp_dim", "mlp", "scale_mlp", "scale_attn_inner",
                  "post_norm", "rope", "ref_grid", "embed_dim", "eps")
_CHECKED = ("patch_size", "width", "depth", "mlp_dim", "mlp", "scale_mlp", "scale_attn_inner", "embed_dim")


@dataclasses.dataclass(frozen=True)
class EvaClipFamily:
  """One registered EVA-02 CLIP classifier: its open_clip arch (key of ARCHS) and preprocessing."""
  arch: str
  preprocessing: Preprocessing
  activation: str = "gelu"  # the text tower's (open_clip's EVA-02 CLIPs use exact GELU)

  @property
  def image_size(self) -> int:
    return ARCHS[self.arch]["image_size"]


FAMILIES: Dict[str, EvaClipFamily] = {}
_BY_ARCH: Dict[str, str] = {}  # lower-cased open_clip arch name -> registered name


def family_for(name: str) -> EvaClipFamily:
  """The family registered as `name` (`openclip_eva02_*`, or open_clip's own arch name such as `EVA02-L-14-336`);
  another name is an error naming the closest registered ones."""
  if name in FAMILIES:
    return FAMILIES[name]
  if name.lower() in _BY_ARCH:
    return FAMILIES[_BY_ARCH[name.lower()]]
  close = difflib.get_close_matches(name, list(FAMILIES) + list(ARCHS), n=3, cutoff=0.5)
  raise UnknownNameError(f"OpenCLIP EVA-02 {name!r} is not registered; " + (
      f"closest: {', '.join(close)}; " if close else "") + f"registered: {', '.join(sorted(FAMILIES))}")


def lift_text_tower(flat: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
  """An open_clip `CustomTextCLIP` state dict (text tower under `text.*`) with the text tower's keys at the top
  level, as in OpenAI's layout that `clip_head.text_head` reads; other state dicts are returned unchanged."""
  if "text.token_embedding.weight" not in flat or "token_embedding.weight" in flat:
    return flat
  return {k[len("text."):] if k.startswith("text.") else k: v for k, v in flat.items()}


def _make(arch: Dict[str, Any], *, num_classes: int = 1000, dtype: Any = jnp.float32,
          **overrides: Any) -> EvaZeroShotClassifier:
  unknown = sorted(set(overrides) - set(_MODULE_FIELDS))
  if unknown:
    raise TypeError(f"OpenCLIP EVA-02 classifier: unknown overrides {unknown}; it takes "
                    f"{', '.join(_MODULE_FIELDS)}, num_classes, dtype and the load options {', '.join(_LOAD_KWARGS)}")
  fields = {k: arch[k] for k in _MODULE_FIELDS if k in arch}
  fields.update(overrides)
  return EvaZeroShotClassifier(num_classes=int(num_classes), dtype=jnp.dtype(dtype), **fields)


def _tower_of(flat: Dict[str, np.ndarray]) -> Optional[Dict[str, Any]]:
  """The geometry of an open_clip EVA image tower (`visual.trunk.*`), None where the file has none."""
  p = "visual.trunk."
  trunk = {k[len(p):]: v for k, v in flat.items() if k.startswith(p)}
  sizes = eva_sizes(trunk)
  if sizes is None or "head.weight" not in trunk:
    return None
  fc1 = trunk.get("blocks.0.mlp.fc1.weight")
  plain = fc1 is not None and np.shape(fc1)[0] == sizes["mlp_dim"]
  return dict(sizes, mlp="gelu" if plain else "swiglu", scale_attn_inner="blocks.0.attn.norm.weight" in trunk,
              embed_dim=int(np.shape(trunk["head.weight"])[0]))


def _resampled(flat: Dict[str, np.ndarray], grid: int, what: str) -> dict:
  variables = convert_openclip_eva(flat, what=what)
  trunk = variables["params"]["trunk"]
  if int(round((trunk["pos_embedding"].shape[1] - 1) ** 0.5)) != grid:
    trunk["pos_embedding"] = resample_position_embedding(trunk["pos_embedding"], (grid, grid))
  return variables


def _prepare(name: str, family: EvaClipFamily, flat: Optional[Dict[str, np.ndarray]], overrides: Dict[str, Any],
             *, path: Optional[str] = None, vocab: Optional[str] = None, class_names: Optional[str] = None,
             templates: Optional[str] = None, head_cache_dir: Optional[str] = None,
             image_size: Optional[int] = None) -> registry.LoadPlan:
  """Checks the file's image tower against the family (naming the family it is, if another), and for a full
  open_clip state dict replaces the text tower by its (cached) zero-shot head. `image_size=S` resamples the
  position embedding to the S / patch grid and scales the preprocessing (e.g. the zoom grid's 224 px crops)."""
  arch = ARCHS[family.arch]
  patch = int(overrides.get("patch_size", arch["patch_size"]))
  size = family.image_size if image_size is None else int(image_size)
  grid = grid_for(size, patch, name)
  pp = preprocessing_at(family.preprocessing, size)
  what = f"OpenCLIP {family.arch}"
  if flat is None:
    return registry.LoadPlan(overrides=overrides, preprocessing=pp)
  flat = lift_text_tower(strip_module_prefix(flat))
  got = _tower_of(flat)
  if got is None:
    raise CheckpointError(f"not an open_clip EVA-02 checkpoint for {name!r}: no `visual.trunk.blocks.0.*` / "
                          f"`visual.trunk.head.*` keys; keys start with {sorted(flat)[:5]}")
  want = {k: overrides.get(k, arch[k]) for k in _CHECKED}
  want["grid"] = got["grid"] if image_size is not None else grid  # resampled: any stored grid will do
  diff = [f"{k}: model {want[k]} vs checkpoint {got[k]}" for k in want if want[k] != got[k]]
  if diff:
    fits = sorted(n for n, f in FAMILIES.items()
                  if all(ARCHS[f.arch][k] == got[k] for k in _CHECKED)
                  and (image_size is not None or ARCHS[f.arch]["image_size"] // ARCHS[f.arch]["patch_size"]
                       == got["grid"]))
    raise tower_mismatch(name, family.arch, diff, fits)
  flat = attach_clip_text_head(flat, path, overrides, family.activation, vocab=vocab, class_names=class_names,
                               templates=templates, head_cache_dir=head_cache_dir)
  return registry.LoadPlan(overrides=overrides, preprocessing=pp, flat=flat,
                           convert=functools.partial(_resampled, grid=grid, what=what))


_HINT = ("Pass open_clip's `{arch}` weights (open_clip_pytorch_model.bin or open_clip_model.safetensors of hf-hub "
         "{hub}; tag {tag}); the text head is computed once from them (pass vocab=bpe_simple_vocab_16e6.txt.gz "
         "unless open_clip is installed) and cached. An already-built zero-shot file (python -m "
         "zoomjax.models.clip_cli --out) also works.")
# registered name, open_clip arch, hf-hub repository, open_clip pretrained tag.
_ENTRIES = (
    ("openclip_eva02_b16", "EVA02-B-16", "timm/eva02_base_patch16_clip_224.merged2b_s8b_b131k", "merged2b_s8b_b131k"),
    ("openclip_eva02_l14", "EVA02-L-14", "timm/eva02_large_patch14_clip_224.merged2b_s4b_b131k", "merged2b_s4b_b131k"),
    ("openclip_eva02_l14_336", "EVA02-L-14-336", "timm/eva02_large_patch14_clip_336.merged2b_s6b_b61k",
     "merged2b_s6b_b61k"),
    ("openclip_eva02_e14", "EVA02-E-14", "timm/eva02_enormous_patch14_clip_224.laion2b_s4b_b115k", "laion2b_s4b_b115k"),
    ("openclip_eva02_e14_plus", "EVA02-E-14-plus", "timm/eva02_enormous_patch14_plus_clip_224.laion2b_s9b_b144k",
     "laion2b_s9b_b144k"),
)

for _name, _arch_name, _hub, _tag in _ENTRIES:
  # open_clip's transform (pretrained cfg `_pcfg`): bicubic resize of the short side to the input size, centre
  # crop, OpenAI mean/std.
  _family = EvaClipFamily(_arch_name, preprocessing_at(CLIP_PREPROCESSING, ARCHS[_arch_name]["image_size"]))
  FAMILIES[_name] = _family
  _BY_ARCH[_arch_name.lower()] = _name
  registry.register(registry.ModelSpec(
      name=_name,
      make_module=functools.partial(_make, ARCHS[_arch_name]),
      preprocessing=_family.preprocessing,
      convert=functools.partial(convert_openclip_eva, what=f"OpenCLIP {_arch_name}"),
      checkpoint_hint=_HINT.format(arch=_arch_name, hub=_hub, tag=_tag),
      num_params=NUM_PARAMS[_arch_name],
      load_kwargs=_LOAD_KWARGS,
      prepare=functools.partial(_prepare, _name, _family)))
