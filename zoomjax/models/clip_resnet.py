"""CLIP's ResNet image towers (OpenAI's ModifiedResNet: RN50, RN101, RN50x4, RN50x16, RN50x64) as zero-shot
classifiers (`clip_rn50`, ...), loaded from OpenAI `.pt` files and open_clip state dicts.

ModifiedResNet differs from torchvision's ResNet in three places: a stem of three 3x3 convolutions followed by
a 2x2 average pool (no max pool); "anti-aliased" strides, where a stride-s block runs its 3x3 convolution at
stride 1 and then a sxs average pool (its shortcut too: average pool, then a stride-1 1x1 conv); and attention
pooling: the mean of the final feature map is prepended as a query token, a learned position embedding is added
and one multi-head attention (query: that token only) gives the embedding, projected by `c_proj`.

Parameter names mirror OpenAI's torch names (`conv1..3`, `bn1..3`, `layer{1..4}_{i}/{conv1..3, bn1..3,
downsample_0, downsample_1}`, `attnpool/{positional_embedding, q_proj, k_proj, v_proj, c_proj}`). The text
tower of these checkpoints is CLIP's usual one (QuickGELU in every released RN weight), so the zero-shot head
comes from `clip_head.text_head` and is cached like the ViT CLIPs'. The attention head count is not stored in
any tensor: every released tower uses 64-wide heads (`width * 32 // 64`).
"""
import dataclasses
import functools
import math
from typing import Any, Dict, Optional, Sequence, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from zoomjax.checkpoints import CheckpointError
from zoomjax.checkpoints.convert_clip import strip_module_prefix
from zoomjax.checkpoints.convert_torchvision import Flat, KeyTaker, count_blocks
from zoomjax.models import registry
from zoomjax.models.clip import zero_shot_logits
from zoomjax.models.clip_head import attach_clip_text_head, tower_mismatch
from zoomjax.models.layers import BatchNorm
from zoomjax.models.preprocessing import CLIP_PREPROCESSING
from zoomjax.models.vit import preprocessing_at, resample_position_embedding

__all__ = ["ARCHS", "AttentionPool2d", "FAMILIES", "ModifiedResNet", "NUM_PARAMS", "ResNetZeroShotClassifier",
           "config_from_state_dict", "convert_clip_resnet_zero_shot", "convert_modified_resnet"]

_HEAD_WIDTH = 64  # every released ModifiedResNet's attention-pool head width


def _arch(layers: Tuple[int, int, int, int], width: int, embed_dim: int, image_size: int) -> Dict[str, Any]:
  return {"vision": dict(layers=layers, width=width, embed_dim=embed_dim, num_heads=width * 32 // _HEAD_WIDTH),
          "image_size": image_size}


# open_clip's model_configs/RN*.json (vision layers, width, embed_dim, image_size).
ARCHS: Dict[str, Dict[str, Any]] = {
    "RN50": _arch((3, 4, 6, 3), 64, 1024, 224),
    "RN101": _arch((3, 4, 23, 3), 64, 512, 224),
    "RN50x4": _arch((4, 6, 10, 6), 80, 640, 288),
    "RN50x16": _arch((6, 8, 18, 8), 96, 768, 384),
    "RN50x64": _arch((3, 15, 36, 10), 128, 1024, 448),
}
# Exact 'params' counts: open_clip 3.3.0's `sum(p.numel() for p in model.visual.parameters())` + the (E, 1000)
# head (tests/test_golden_clip_resnet.py pins the modules' eval_shape to them).
NUM_PARAMS: Dict[str, int] = {"RN50": 38_316_896 + 1_024_000, "RN101": 56_259_936 + 512_000,
                              "RN50x4": 87_137_080 + 640_000, "RN50x16": 167_328_912 + 768_000,
                              "RN50x64": 420_380_352 + 1_024_000}


def _avg_pool(x: jax.Array, s: int) -> jax.Array:
  """torch's AvgPool2d(s): s x s windows at stride s, no padding (floor)."""
  return nn.avg_pool(x, (s, s), (s, s), padding="VALID") if s > 1 else x


class Bottleneck(nn.Module):
  """1x1, 3x3 (stride 1), avg-pool(stride), 1x1 x4; shortcut avg-pool(stride) + 1x1 conv + BN when needed."""
  planes: int
  stride: int = 1
  dtype: Any = jnp.float32
  bn_prior_strength: Optional[float] = None

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    conv = functools.partial(nn.Conv, use_bias=False, dtype=self.dtype, param_dtype=jnp.float32)
    bn = functools.partial(BatchNorm, epsilon=1e-5, prior_strength=self.bn_prior_strength, dtype=self.dtype)
    out_ch = self.planes * 4
    y = nn.relu(bn(name="bn1")(conv(self.planes, (1, 1), name="conv1")(x)))
    y = nn.relu(bn(name="bn2")(conv(self.planes, (3, 3), padding=((1, 1), (1, 1)), name="conv2")(y)))
    y = bn(name="bn3")(conv(out_ch, (1, 1), name="conv3")(_avg_pool(y, self.stride)))
    if self.stride > 1 or x.shape[-1] != out_ch:
      x = bn(name="downsample_1")(conv(out_ch, (1, 1), name="downsample_0")(_avg_pool(x, self.stride)))
    return nn.relu(y + x)


class AttentionPool2d(nn.Module):
  """Multi-head attention of the feature map's mean token (plus a learned position embedding) over all tokens.
  (B, H, W, C) -> (B, embed_dim)."""
  num_heads: int
  embed_dim: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    b, h, w, c = x.shape
    x = x.reshape(b, h * w, c)
    x = jnp.concatenate([x.mean(axis=1, keepdims=True), x], axis=1)
    shape = (1 + h * w, c)
    if self.has_variable("params", "positional_embedding"):
      have = tuple(self.get_variable("params", "positional_embedding").shape)
      if have != shape:
        raise ValueError(f"CLIP ResNet attnpool.positional_embedding {have} does not fit a {h}x{w} feature map "
                         f"({h * 32} px input); feed the checkpoint's input size (or load it with image_size= "
                         "to resample the position embedding)")
    pe = self.param("positional_embedding", nn.initializers.normal(c ** -0.5), shape, jnp.float32)
    x = x + pe.astype(x.dtype)
    dense = functools.partial(nn.Dense, dtype=self.dtype, param_dtype=jnp.float32)
    dh = c // self.num_heads
    q = dense(c, name="q_proj")(x[:, :1]).reshape(b, 1, self.num_heads, dh)
    k = dense(c, name="k_proj")(x).reshape(b, 1 + h * w, self.num_heads, dh)
    v = dense(c, name="v_proj")(x).reshape(b, 1 + h * w, self.num_heads, dh)
    logits = jnp.einsum("bqhd,bkhd->bhqk", q, k).astype(jnp.float32) / math.sqrt(dh)
    attn = jax.nn.softmax(logits, axis=-1).astype(v.dtype)
    y = jnp.einsum("bhqk,bkhd->bqhd", attn, v).reshape(b, c)
    return dense(self.embed_dim, name="c_proj")(y)


class ModifiedResNet(nn.Module):
  """OpenAI CLIP's ResNet image tower. (B, H, W, 3) -> (embedding (B, embed_dim) float32, intermediates)."""
  layers: Sequence[int] = (3, 4, 6, 3)
  width: int = 64
  embed_dim: int = 1024
  num_heads: int = 32
  dtype: Any = jnp.float32
  bn_prior_strength: Optional[float] = None

  @nn.compact
  def __call__(self, x: jax.Array) -> Tuple[jax.Array, Dict[str, jax.Array]]:
    conv = functools.partial(nn.Conv, use_bias=False, dtype=self.dtype, param_dtype=jnp.float32,
                             padding=((1, 1), (1, 1)))
    bn = functools.partial(BatchNorm, epsilon=1e-5, prior_strength=self.bn_prior_strength, dtype=self.dtype)
    w = self.width
    x = x.astype(self.dtype)
    x = nn.relu(bn(name="bn1")(conv(w // 2, (3, 3), (2, 2), name="conv1")(x)))
    x = nn.relu(bn(name="bn2")(conv(w // 2, (3, 3), name="conv2")(x)))
    x = nn.relu(bn(name="bn3")(conv(w, (3, 3), name="conv3")(x)))
    x = _avg_pool(x, 2)
    for s, blocks in enumerate(self.layers):
      for i in range(blocks):
        x = Bottleneck(w * 2 ** s, 2 if (s > 0 and i == 0) else 1, self.dtype, self.bn_prior_strength,
                       name=f"layer{s + 1}_{i}")(x)
    out = {"feature_map": x}
    emb = AttentionPool2d(self.num_heads, self.embed_dim, self.dtype, name="attnpool")(x)
    out["pre_logits"] = emb
    return emb.astype(jnp.float32), out


class ResNetZeroShotClassifier(nn.Module):
  """ModifiedResNet + a fixed zero-shot head: logits = 100 * normalise(image embedding) @ head (E, C)."""
  vision_cfg: Dict[str, Any]
  num_classes: int = 1000
  dtype: Any = jnp.float32
  bn_prior_strength: Optional[float] = None

  @nn.compact
  def __call__(self, x: jax.Array) -> Tuple[jax.Array, Dict[str, jax.Array]]:
    emb, out = ModifiedResNet(**self.vision_cfg, dtype=self.dtype, bn_prior_strength=self.bn_prior_strength,
                              name="visual")(x)
    return zero_shot_logits(self, emb, out, self.num_classes)


# ------------------------------------------------------------------------------------------ checkpoints

def config_from_state_dict(flat: Flat) -> Dict[str, Any]:
  """The image tower's sizes of an OpenAI/open_clip ResNet CLIP state dict ({layers, width, embed_dim,
  num_heads}; heads: the released 64-wide ones) and `image_size`, the input side of its position grid."""
  if "visual.attnpool.c_proj.weight" not in flat or "visual.layer1.0.conv1.weight" not in flat:
    vit = "visual.transformer.resblocks.0.ln_1.weight" in flat
    raise CheckpointError("not an OpenAI/open_clip ResNet CLIP state dict: no `visual.attnpool.c_proj.weight`"
                          + ("; it is a ViT CLIP: load it as clip_vit_* / openclip_vit_*" if vit else
                             f"; keys start with {sorted(flat)[:5]}"))
  width = int(flat["visual.conv3.weight"].shape[0])
  layers = tuple(count_blocks(flat, f"visual.layer{s}.") for s in range(1, 5))
  n = int(flat["visual.attnpool.positional_embedding"].shape[0]) - 1
  side = math.isqrt(n)
  if side * side != n:
    raise CheckpointError(f"visual.attnpool.positional_embedding has {n} feature-map tokens: not a square grid")
  vision = dict(layers=layers, width=width, embed_dim=int(flat["visual.attnpool.c_proj.weight"].shape[0]),
                num_heads=width * 32 // _HEAD_WIDTH)
  return {"vision": vision, "image_size": side * 32}


def _put_tower(t: KeyTaker, dst: str) -> None:
  """`visual.*` of an OpenAI/open_clip ResNet CLIP -> `dst` of `ModifiedResNet` (into KeyTaker `t`)."""
  pre = f"{dst}/" if dst else ""
  for i in (1, 2, 3):
    t.conv(f"visual.conv{i}", f"{pre}conv{i}")
    t.bn(f"visual.bn{i}", f"{pre}bn{i}")
  for s in range(1, 5):
    blocks = count_blocks(t.flat, f"visual.layer{s}.")
    if not blocks:
      raise KeyError(f"{t.what}: no `visual.layer{s}.0.*` keys")
    for i in range(blocks):
      src, d = f"visual.layer{s}.{i}", f"{pre}layer{s}_{i}"
      for j in (1, 2, 3):
        t.conv(f"{src}.conv{j}", f"{d}/conv{j}")
        t.bn(f"{src}.bn{j}", f"{d}/bn{j}")
      if t.has(f"{src}.downsample.0.weight"):
        t.conv(f"{src}.downsample.0", f"{d}/downsample_0")
        t.bn(f"{src}.downsample.1", f"{d}/downsample_1")
  t.put(f"params/{pre}attnpool/positional_embedding", t.take("visual.attnpool.positional_embedding"))
  for p in ("q_proj", "k_proj", "v_proj", "c_proj"):
    t.dense(f"visual.attnpool.{p}", f"{pre}attnpool/{p}")


def convert_modified_resnet(flat: Flat) -> dict:
  """The `visual.*` image tower of an OpenAI/open_clip ResNet CLIP -> variables of `ModifiedResNet` (other keys
  are ignored; a missing or unused `visual.` key is an error naming it)."""
  flat = strip_module_prefix(flat)
  t = KeyTaker(flat, "CLIP ResNet image tower")
  _put_tower(t, "")
  return t.finish(ignore=tuple(k for k in flat if not k.startswith("visual.")))


def convert_clip_resnet_zero_shot(flat: Flat) -> dict:
  """Image tower + `zeroshot_head` (E, C) -> variables of `ResNetZeroShotClassifier` (text keys ignored)."""
  flat = strip_module_prefix(flat)
  if "zeroshot_head" not in flat:
    raise KeyError("CLIP ResNet zero-shot classifier: the checkpoint has no `zeroshot_head` (and no text tower to "
                   "compute it from). Pass a full OpenAI/open_clip RN CLIP checkpoint, or build the classifier "
                   "file once with `python -m zoomjax.models.clip_cli --checkpoint RN50.pt --model clip_rn50 "
                   "--out clip_rn50.safetensors` and pass that file as the checkpoint")
  t = KeyTaker(flat, "CLIP ResNet zero-shot classifier")
  _put_tower(t, "visual")
  t.put("params/zeroshot_head", t.take("zeroshot_head"))
  text = [k for k in flat if not k.startswith("visual.") and k != "zeroshot_head"]
  return t.finish(ignore=tuple(text) + ("input_resolution", "context_length", "vocab_size"))


# ------------------------------------------------------------------------------------------ registered families

@dataclasses.dataclass(frozen=True)
class ResNetFamily:
  """One registered CLIP ResNet: an architecture of `ARCHS` and its preprocessing (at the arch's input size)."""
  arch: str
  preprocessing: Any
  activation: str = "quick_gelu"  # the text tower's (every released RN CLIP was trained with QuickGELU)

  @property
  def vision(self) -> Dict[str, Any]:
    """The image tower's sizes (a fresh dict)."""
    return dict(ARCHS[self.arch]["vision"])

  @property
  def image_size(self) -> int:
    """The input side the released weights were trained at."""
    return ARCHS[self.arch]["image_size"]


FAMILIES: Dict[str, ResNetFamily] = {}
VISION_FIELDS = ("layers", "width", "embed_dim", "num_heads")
LOAD_KWARGS = ("vocab", "class_names", "templates", "head_cache_dir", "image_size")


def _make(vision: Dict[str, Any], *, num_classes: int = 1000, dtype: Any = jnp.float32,
          bn_prior_strength: Optional[float] = None, **overrides: Any) -> ResNetZeroShotClassifier:
  """The classifier of one family; `overrides` may change the image tower's sizes (tiny test models)."""
  unknown = sorted(set(overrides) - set(VISION_FIELDS))
  if unknown:
    raise TypeError(f"CLIP ResNet zero-shot classifier: unknown overrides {unknown}; it takes "
                    f"{', '.join(VISION_FIELDS)}, num_classes, dtype, bn_prior_strength and the load options "
                    f"{', '.join(LOAD_KWARGS)}")
  vision = dict(vision, **overrides)
  vision["layers"] = tuple(int(n) for n in vision["layers"])
  return ResNetZeroShotClassifier(vision, num_classes=int(num_classes), dtype=jnp.dtype(dtype),
                                  bn_prior_strength=bn_prior_strength)


def _fits(vision: Dict[str, Any], image_size: int) -> list:
  return [n for n, f in sorted(FAMILIES.items()) if f.image_size == image_size
          and all(f.vision[k] == vision[k] for k in ("layers", "width", "embed_dim"))]


def _prepare(name: str, family: ResNetFamily, flat: Optional[Dict[str, np.ndarray]], overrides: Dict[str, Any], *,
             path: Optional[str] = None, vocab: Optional[str] = None, class_names: Optional[str] = None,
             templates: Optional[str] = None, head_cache_dir: Optional[str] = None,
             image_size: Optional[int] = None) -> registry.LoadPlan:
  """Checks the checkpoint's image tower against the family, resamples the attention pool's position grid for
  `image_size`, and, for a full CLIP state dict, replaces the text tower by its (cached) zero-shot head."""
  vision = dict(family.vision, **{k: overrides[k] for k in VISION_FIELDS if k in overrides})
  vision["layers"] = tuple(int(n) for n in vision["layers"])
  size = family.image_size if image_size is None else int(image_size)
  if size <= 0 or size % 32:
    raise CheckpointError(f"{name}: image_size={size} is not a positive multiple of 32 (the tower's stride)")
  pp = preprocessing_at(family.preprocessing, size)
  if flat is None:
    return registry.LoadPlan(overrides=overrides, preprocessing=pp)
  flat = strip_module_prefix(flat)
  got = config_from_state_dict(flat)
  stored = got.pop("image_size")
  got = got["vision"]
  diff = [f"{k}: model {vision[k]} vs checkpoint {got[k]}" for k in ("layers", "width", "embed_dim")
          if tuple(np.atleast_1d(got[k])) != tuple(np.atleast_1d(vision[k]))]
  if diff:
    fits = _fits(got, stored)
    raise tower_mismatch(name, family.arch, diff, fits)
  if stored != size:
    if image_size is None:
      raise CheckpointError(
          f"the checkpoint's attention-pool position embedding is a {stored // 32}^2 grid ({stored} px input) but "
          f"{name!r} runs at {size} px: pass image_size={size} (or another multiple of 32) to resample it")
    flat["visual.attnpool.positional_embedding"] = resample_position_embedding(
        flat["visual.attnpool.positional_embedding"], (size // 32, size // 32))
  flat = attach_clip_text_head(flat, path, overrides, family.activation, vocab=vocab, class_names=class_names,
                               templates=templates, head_cache_dir=head_cache_dir)
  return registry.LoadPlan(overrides=overrides, preprocessing=pp, flat=flat, convert=convert_clip_resnet_zero_shot)


_HINT = ("Pass OpenAI's `{arch}.pt` (what the `clip` package downloads; open_clip's `{arch}` pretrained='openai' "
         "is the same file) or open_clip's `{arch}` weights{tags} (open_clip_pytorch_model.bin of hf-hub "
         "timm/{hub}.*); the text head is computed once from it (pass vocab=bpe_simple_vocab_16e6.txt.gz unless "
         "open_clip is installed) and cached. An already-built zero-shot file (python -m zoomjax.models.clip_cli "
         "--out) also works.")
_ENTRIES = (("clip_rn50", "RN50", " (tags openai, yfcc15m, cc12m)", "resnet50_clip"),
            ("clip_rn101", "RN101", " (tags openai, yfcc15m)", "resnet101_clip"),
            ("clip_rn50x4", "RN50x4", "", "resnet50x4_clip"),
            ("clip_rn50x16", "RN50x16", "", "resnet50x16_clip"),
            ("clip_rn50x64", "RN50x64", "", "resnet50x64_clip"))

for _name, _arch_name, _tags, _hub in _ENTRIES:
  # OpenAI's transform: bicubic resize of the short side to the input size, centre crop, CLIP mean/std.
  _family = ResNetFamily(_arch_name, preprocessing_at(CLIP_PREPROCESSING, ARCHS[_arch_name]["image_size"]))
  FAMILIES[_name] = _family
  registry.register(registry.ModelSpec(
      name=_name,
      make_module=functools.partial(_make, _family.vision),
      preprocessing=_family.preprocessing,
      convert=convert_clip_resnet_zero_shot,
      checkpoint_hint=_HINT.format(arch=_arch_name, tags=_tags, hub=_hub),
      num_params=NUM_PARAMS[_arch_name],
      load_kwargs=LOAD_KWARGS,
      prepare=functools.partial(_prepare, _name, _family)))
