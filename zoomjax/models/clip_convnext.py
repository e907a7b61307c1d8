"""OpenCLIP's ConvNeXt image towers (`convnext_base`, `convnext_base_w(_320)`, `convnext_large_d(_320)`,
`convnext_xxlarge`) as zero-shot classifiers: `openclip_convnext_*`.

open_clip builds these towers from a timm ConvNeXt trunk without its classifier (global average pool, then the
head LayerNorm) and a projection to the embedding: `linear` (no bias) or, for the `_d` towers, `mlp`
(Linear with bias -> GELU -> Linear without bias). The state dict stores them as `visual.trunk.*` and
`visual.head.{proj, mlp.fc1, mlp.fc2}`; the text tower is the usual open_clip transformer, from which the
zero-shot head is computed once and cached (`clip_head.text_head`), exactly as for the ViT CLIPs. The tower is
convolutional, so `image_size=` only changes the preprocessing.
"""
import dataclasses
import difflib
import functools
from typing import Any, Dict, Optional, Sequence, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from zoomjax.checkpoints import CheckpointError
from zoomjax.checkpoints.convert_backbones import convert_openclip_convnext, timm_convnext_stages
from zoomjax.checkpoints.convert_clip import strip_module_prefix
from zoomjax.errors import UnknownNameError
from zoomjax.models import registry
from zoomjax.models.clip import zero_shot_logits
from zoomjax.models.clip_head import attach_clip_text_head, tower_mismatch
from zoomjax.models.convnext import CONFIGS, ConvNeXt
from zoomjax.models.preprocessing import CLIP_PREPROCESSING, Preprocessing
from zoomjax.models.vit import preprocessing_at

__all__ = ["ARCHS", "ConvNeXtZeroShotClassifier", "FAMILIES", "NUM_PARAMS", "family_for"]

_LOAD_KWARGS = ("vocab", "class_names", "templates", "head_cache_dir", "image_size")
_XXLARGE = ((384, 3), (768, 4), (1536, 30), (3072, 3))


class ConvNeXtZeroShotClassifier(nn.Module):
  """timm ConvNeXt trunk -> projection -> L2 normalise -> 100 * cos with the zero-shot head (E, C)."""
  stages: Sequence[Tuple[int, int]] = CONFIGS["base"]
  embed_dim: int = 640
  proj: str = "linear"  # "linear" | "mlp" (open_clip's `timm_proj`)
  eps: float = 1e-6
  num_classes: int = 1000
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> Tuple[jax.Array, Dict[str, jax.Array]]:
    pooled, out = ConvNeXt(stages=tuple(self.stages), num_classes=0, eps=self.eps, dtype=self.dtype,
                           name="trunk")(x)
    dense = functools.partial(nn.Dense, dtype=self.dtype, param_dtype=jnp.float32)
    if self.proj == "linear":
      emb = dense(self.embed_dim, use_bias=False, name="proj")(pooled.astype(self.dtype))
    elif self.proj == "mlp":
      h = nn.gelu(dense(2 * self.embed_dim, name="mlp_fc1")(pooled.astype(self.dtype)), approximate=False)
      emb = dense(self.embed_dim, use_bias=False, name="mlp_fc2")(h)
    else:
      raise ValueError(f"OpenCLIP ConvNeXt: proj={self.proj!r}; use 'linear' or 'mlp'")
    return zero_shot_logits(self, emb, out, self.num_classes)


def _text(width: int, depth: int, heads: int, embed: int) -> Dict[str, Any]:
  """The text tower's sizes (`clip.TextTower` fields; what TPT builds a random tower from)."""
  return dict(vocab_size=49408, context_length=77, width=width, depth=depth, num_heads=heads, mlp_dim=4 * width,
              embed_dim=embed)


# open_clip's model_configs/<arch>.json: timm trunk (stages), `timm_proj`, embed_dim, image_size, LayerNorm eps;
# `text`: its text_cfg (width, layers, heads).
ARCHS: Dict[str, Dict[str, Any]] = {
    "convnext_base": dict(stages=CONFIGS["base"], proj="linear", embed_dim=512, image_size=224, eps=1e-6,
                          text=_text(512, 12, 8, 512)),
    "convnext_base_w": dict(stages=CONFIGS["base"], proj="linear", embed_dim=640, image_size=256, eps=1e-6,
                            text=_text(640, 12, 10, 640)),
    "convnext_base_w_320": dict(stages=CONFIGS["base"], proj="linear", embed_dim=640, image_size=320, eps=1e-6,
                                text=_text(640, 12, 10, 640)),
    "convnext_large_d": dict(stages=CONFIGS["large"], proj="mlp", embed_dim=768, image_size=256, eps=1e-6,
                             text=_text(768, 16, 12, 768)),
    "convnext_large_d_320": dict(stages=CONFIGS["large"], proj="mlp", embed_dim=768, image_size=320, eps=1e-6,
                                 text=_text(768, 16, 12, 768)),
    "convnext_xxlarge": dict(stages=_XXLARGE, proj="linear", embed_dim=1024, image_size=256, eps=1e-5,
                             text=_text(1024, 24, 16, 1024)),
}
# Exact 'params' counts: open_clip 3.3.0's `sum(p.numel() for p in model.visual.parameters())` + the (E, 1000)
# head (experiments/make_backbone_goldens.py; pinned by tests/test_golden_backbones.py).
NUM_PARAMS = {"convnext_base": 88_090_752 + 512_000, "convnext_base_w": 88_221_824 + 640_000,
              "convnext_base_w_320": 88_221_824 + 640_000, "convnext_large_d": 199_770_816 + 768_000,
              "convnext_large_d_320": 199_770_816 + 768_000, "convnext_xxlarge": 846_543_744 + 1_024_000}
_MODULE_FIELDS = ("stages", "embed_dim", "proj", "eps")


@dataclasses.dataclass(frozen=True)
class ConvNeXtFamily:
  """One registered OpenCLIP ConvNeXt classifier: its arch (key of ARCHS) and preprocessing."""
  arch: str
  preprocessing: Preprocessing
  activation: str = "gelu"  # the text tower's (open_clip ConvNeXt models use exact GELU)

  @property
  def image_size(self) -> int:
    return ARCHS[self.arch]["image_size"]


FAMILIES: Dict[str, ConvNeXtFamily] = {}


def family_for(name: str) -> ConvNeXtFamily:
  """The family registered as `name` (`openclip_convnext_*`, or open_clip's own arch name such as
  `convnext_large_d_320`); another name is an error naming the closest registered ones."""
  if name in FAMILIES:
    return FAMILIES[name]
  if f"openclip_{name}" in FAMILIES:
    return FAMILIES[f"openclip_{name}"]
  close = difflib.get_close_matches(name, list(FAMILIES) + list(ARCHS), n=3, cutoff=0.5)
  raise UnknownNameError(f"OpenCLIP ConvNeXt {name!r} is not registered; " + (
      f"closest: {', '.join(close)}; " if close else "") + f"registered: {', '.join(sorted(FAMILIES))}")


def _make(arch: Dict[str, Any], *, num_classes: int = 1000, dtype: Any = jnp.float32,
          **overrides: Any) -> ConvNeXtZeroShotClassifier:
  unknown = sorted(set(overrides) - set(_MODULE_FIELDS))
  if unknown:
    raise TypeError(f"OpenCLIP ConvNeXt classifier: unknown overrides {unknown}; it takes "
                    f"{', '.join(_MODULE_FIELDS)}, num_classes, dtype and the load options {', '.join(_LOAD_KWARGS)}")
  fields = {k: arch[k] for k in _MODULE_FIELDS}
  fields.update(overrides)
  fields["stages"] = tuple(tuple(int(v) for v in s) for s in fields["stages"])
  return ConvNeXtZeroShotClassifier(num_classes=int(num_classes), dtype=jnp.dtype(dtype), **fields)


def _tower_of(flat: Dict[str, np.ndarray]) -> Optional[Dict[str, Any]]:
  """stages / proj / embed_dim of an open_clip ConvNeXt image tower (None: the file has none)."""
  stages = timm_convnext_stages(flat, "visual.trunk.")
  if not stages:
    return None
  if "visual.head.proj.weight" in flat:
    proj, emb = "linear", int(np.shape(flat["visual.head.proj.weight"])[0])
  elif "visual.head.mlp.fc2.weight" in flat:
    proj, emb = "mlp", int(np.shape(flat["visual.head.mlp.fc2.weight"])[0])
  else:
    proj, emb = "none", 0
  return dict(stages=stages, proj=proj, embed_dim=emb)


def _prepare(name: str, family: ConvNeXtFamily, flat: Optional[Dict[str, np.ndarray]], overrides: Dict[str, Any],
             *, path: Optional[str] = None, vocab: Optional[str] = None, class_names: Optional[str] = None,
             templates: Optional[str] = None, head_cache_dir: Optional[str] = None,
             image_size: Optional[int] = None) -> registry.LoadPlan:
  """Checks the file's image tower against the family (naming the family it is, if another), and for a full
  open_clip state dict replaces the text tower by its (cached) zero-shot head."""
  size = family.image_size if image_size is None else int(image_size)
  if size <= 0 or size % 32:
    raise CheckpointError(f"{name}: image_size={size} is not a positive multiple of 32 (the tower's stride)")
  pp = preprocessing_at(family.preprocessing, size)
  if flat is None:
    return registry.LoadPlan(overrides=overrides, preprocessing=pp)
  flat = strip_module_prefix(flat)
  got = _tower_of(flat)
  if got is None:
    raise CheckpointError(f"not an open_clip ConvNeXt checkpoint for {name!r}: no `visual.trunk.stages.0."
                          f"blocks.0.*` keys; keys start with {sorted(flat)[:5]}")
  want = {k: overrides.get(k, ARCHS[family.arch][k]) for k in ("stages", "proj", "embed_dim")}
  want["stages"] = tuple(tuple(int(v) for v in s) for s in want["stages"])
  diff = [f"{k}: model {want[k]} vs checkpoint {got[k]}" for k in want if want[k] != got[k]]
  if diff:
    fits = sorted({n for n, f in FAMILIES.items() if all(ARCHS[f.arch][k] == got[k] for k in got)})
    raise tower_mismatch(name, family.arch, diff, fits)
  flat = attach_clip_text_head(flat, path, overrides, family.activation, vocab=vocab, class_names=class_names,
                               templates=templates, head_cache_dir=head_cache_dir)
  return registry.LoadPlan(overrides=overrides, preprocessing=pp, flat=flat,
                           convert=functools.partial(convert_openclip_convnext, what=f"OpenCLIP {family.arch}"))


_HINT = ("Pass open_clip's `{arch}` weights (open_clip_pytorch_model.bin or open_clip_model.safetensors of hf-hub "
         "{hub}; tags {tags}); the text head is computed once from them (pass vocab=bpe_simple_vocab_16e6.txt.gz "
         "unless open_clip is installed) and cached. An already-built zero-shot file (python -m "
         "zoomjax.models.clip_cli --out) also works.")
_ENTRIES = (
    ("convnext_base", "laion/CLIP-convnext_base-laion400M-s13B-b51K", "laion400m_s13b_b51k"),
    ("convnext_base_w", "laion/CLIP-convnext_base_w-laion2B-s13B-b82K",
     "laion2b_s13b_b82k, laion2b_s13b_b82k_augreg, laion_aesthetic_s13b_b82k"),
    ("convnext_base_w_320", "laion/CLIP-convnext_base_w_320-laion_aesthetic-s13B-b82K",
     "laion_aesthetic_s13b_b82k, laion_aesthetic_s13b_b82k_augreg"),
    ("convnext_large_d", "laion/CLIP-convnext_large_d.laion2B-s26B-b102K-augreg", "laion2b_s26b_b102k_augreg"),
    ("convnext_large_d_320", "laion/CLIP-convnext_large_d_320.laion2B-s29B-b131K-ft",
     "laion2b_s29b_b131k_ft, laion2b_s29b_b131k_ft_soup"),
    ("convnext_xxlarge", "laion/CLIP-convnext_xxlarge-laion2B-s34B-b82K-augreg",
     "laion2b_s34b_b82k_augreg, laion2b_s34b_b82k_augreg_rewind, laion2b_s34b_b82k_augreg_soup"),
)

for _arch_name, _hub, _tags in _ENTRIES:
  _name = f"openclip_{_arch_name}"
  # open_clip's transform: bicubic resize of the short side to the input size, centre crop, OpenAI mean/std.
  _family = ConvNeXtFamily(_arch_name, preprocessing_at(CLIP_PREPROCESSING, ARCHS[_arch_name]["image_size"]))
  FAMILIES[_name] = _family
  registry.register(registry.ModelSpec(
      name=_name,
      make_module=functools.partial(_make, ARCHS[_arch_name]),
      preprocessing=_family.preprocessing,
      convert=functools.partial(convert_openclip_convnext, what=f"OpenCLIP {_arch_name}"),
      checkpoint_hint=_HINT.format(arch=_arch_name, hub=_hub, tags=_tags),
      num_params=NUM_PARAMS[_arch_name],
      load_kwargs=_LOAD_KWARGS,
      prepare=functools.partial(_prepare, _name, _family)))
