"""SigLIP 2 NaFlex (`siglip2_b16_naflex`, `siglip2_so400m16_naflex`): the image tower that keeps an image's
native aspect ratio with a variable number of patches, loaded from big_vision's `.npz` checkpoints.

big_vision's `models/proj/image_text/naflex_vit.py` with its preprocessing `pp/proj/image_text/ops_naflex.py`:
- patch grid: `resize_to_sequence(patch, max_num_patches)` searches (binary search on the scale, float32) the
  largest scale whose grid `ceil(side * scale / patch)` per side (at least 1) has at most `max_num_patches`
  patches; the image is resized to that grid x patch (bilinear, antialiased, in float after `value_range(-1, 1)`;
  the aspect ratio bends only by the rounding up). A square image gets a `isqrt(max_num_patches)` square grid (256
  patches: 16 x 16, 256 px at patch 16);
- patches: row-major, each flattened as (row, column, channel), embedded by a Dense layer `embedding`
  (p * p * 3 -> width), zero-padded to `max_num_patches` tokens with their type 0 (real patches: 1);
- `pos_embedding` (G, G, width) (G = 16 in the releases) resized to each image's grid (h, w) bilinearly with
  antialiasing (`jax.image.scale_and_translate`, half-pixel centres, triangle kernel widened by the shrink
  factor, weights renormalised) and added to each patch at its (row, column);
- the encoder and the MAP head attend over the real patches only; then as SigLIP's image tower (`siglip.py`).
The text tower, `t`, `b` and the zero-shot head are SigLIP 2's (Gemma tokenizer, 256k pieces).

zoomjax's views are square: `NaFlexImageTower` on a (B, S, S, 3) batch picks the grid for S x S, resizes the views
to it when S differs (the zoom sweep's 224 px crops become 256 px at 256 patches) and runs without padding when
the grid fills the sequence. Its standard view squashes the whole image to the square (`preprocessing`); NaFlex's
own aspect-keeping input is `naflex_patches` of one image at its size, fed to the tower as the tuple
(patches, type, row, column), as big_vision feeds it.
"""
import dataclasses
import functools
import math
from typing import Any, Dict, Optional, Sequence, Tuple, Union

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from zoomjax.checkpoints import CheckpointError
from zoomjax.errors import UserError
from zoomjax.models import registry
from zoomjax.models.clip_head import tower_mismatch
from zoomjax.models.preprocessing import Preprocessing
from zoomjax.models.siglip import (_VARIANTS, LOAD_KWARGS, Encoder, MAPHead, _tower, _tower_sizes, big_vision_tree,
                                   attach_siglip_text_head, convert_siglip_zero_shot, sigmoid_logits)
from zoomjax.models.siglip_tokenizer import SIGLIP_TOKENIZERS

__all__ = ["FAMILIES", "NUM_PARAMS", "NaFlexFamily", "NaFlexImageTower", "NaFlexZeroShotClassifier",
           "config_from_checkpoint", "naflex_grid", "naflex_patches"]

NaFlexInput = Tuple[jax.Array, jax.Array, jax.Array, jax.Array]  # (patches, type, row, column), each (B, N, ...)


def naflex_grid(height: int, width: int, patch_size: int, max_num_patches: int, eps: float = 1e-5) -> Tuple[int, int]:
  """The patch grid (rows, columns) of an image of `height` x `width` pixels: big_vision's `resize_to_sequence`
  search (float32 as TensorFlow runs it; the largest scale whose rounded-up grid has at most `max_num_patches`)."""
  if min(height, width, patch_size, max_num_patches) < 1:
    raise ValueError(f"naflex_grid: sizes must be positive, got {height}x{width}, patch {patch_size}, "
                     f"max_num_patches {max_num_patches}")
  hw, p = np.asarray((height, width), np.float32), np.float32(patch_size)

  def grid(scale: np.float32) -> np.ndarray:
    return np.maximum(np.ceil(hw * scale / p), 1).astype(np.int64)

  lo, hi = np.float32(eps / 10), np.float32(100.0)
  while hi - lo >= eps:
    mid = (lo + hi) / np.float32(2)
    lo, hi = (mid, hi) if np.prod(grid(mid)) <= max_num_patches else (lo, mid)
  rows, cols = (int(v) for v in grid(lo))
  return rows, cols


def naflex_patches(images: jax.Array, patch_size: int, max_num_patches: int) -> NaFlexInput:
  """NaFlex's input of normalised images (B, H, W, 3) of one size: resized (bilinear, antialiased) to their patch
  grid, cut into row-major patches (B, N, p * p * 3) padded with zeros to N = `max_num_patches`, with their type
  (1 patch, 0 padding) and (row, column) (B, N) int32. Shapes are static: jit/vmap friendly."""
  b, h, w, c = images.shape
  rows, cols = naflex_grid(h, w, patch_size, max_num_patches)
  p = patch_size
  x = images.astype(jnp.float32)
  if (rows * p, cols * p) != (h, w):
    x = jax.image.resize(x, (b, rows * p, cols * p, c), "bilinear", antialias=True)
  x = x.reshape(b, rows, p, cols, p, c).transpose(0, 1, 3, 2, 4, 5).reshape(b, rows * cols, p * p * c)
  pad = max_num_patches - rows * cols
  yidx, xidx = (jnp.asarray(v.reshape(-1), jnp.int32) for v in np.meshgrid(np.arange(rows), np.arange(cols),
                                                                            indexing="ij"))
  tile = lambda v: jnp.broadcast_to(jnp.pad(v, (0, pad)), (b, max_num_patches))
  return (jnp.pad(x, ((0, 0), (0, pad), (0, 0))), tile(jnp.ones(rows * cols, jnp.int32)), tile(yidx), tile(xidx))


def _resize_weights(index: jax.Array, size: jax.Array, grid: int) -> jax.Array:
  """(..., grid) weights of output line `index` of a `grid` -> `size` lines bilinear antialiased resize
  (`jax.image.scale_and_translate`'s: triangle kernel widened by the shrink factor, renormalised)."""
  scale = grid / size.astype(jnp.float32)[..., None]
  centre = (index.astype(jnp.float32) + 0.5) * scale - 0.5
  w = jnp.maximum(1.0 - jnp.abs(jnp.arange(grid, dtype=jnp.float32) - centre[..., None])
                  / jnp.maximum(scale, 1.0)[..., None], 0.0)
  return w / jnp.sum(w, axis=-1, keepdims=True)


class NaFlexImageTower(nn.Module):
  """SigLIP 2 NaFlex's image tower. Input: normalised square-or-not images (B, H, W, 3) of one size, or the tuple
  (patches, type, row, column) of `naflex_patches`. Returns (embedding (B, width), intermediates)."""
  patch_size: int = 16
  width: int = 768
  depth: int = 12
  num_heads: int = 12
  mlp_dim: int = 3072
  posemb_grid: int = 16  # side of the learned position grid
  max_num_patches: int = 256
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: Union[jax.Array, Sequence[jax.Array]]) -> Tuple[jax.Array, Dict[str, jax.Array]]:
    grid = None
    if not isinstance(x, (tuple, list)):
      grid = naflex_grid(x.shape[1], x.shape[2], self.patch_size, self.max_num_patches)
      x = naflex_patches(x, self.patch_size, self.max_num_patches)
    patches, ptype, yidx, xidx = x
    tokens = nn.Dense(self.width, dtype=self.dtype, param_dtype=jnp.float32, name="embedding")(
        patches.astype(self.dtype))
    g = self.posemb_grid
    pe = self.param("pos_embedding", nn.initializers.normal(self.width ** -0.5), (g, g, self.width), jnp.float32)
    # Each image's grid is its largest row / column + 1 (big_vision: padding sits at (0, 0)).
    wy = _resize_weights(yidx, jnp.max(yidx, axis=1) + 1, g)
    wx = _resize_weights(xidx, jnp.max(xidx, axis=1) + 1, g)
    pos = jnp.einsum("bni,bnj,ijd->bnd", wy, wx, pe, precision=jax.lax.Precision.HIGHEST)
    x = tokens + pos.astype(tokens.dtype)
    valid = ptype == 1
    x = Encoder(self.depth, self.num_heads, self.mlp_dim, self.dtype, name="Transformer")(
        x, valid[:, None, :, None] & valid[:, None, None, :])
    out = {"encoded": x}
    if grid is not None:
      out["feature_map"] = x[:, :grid[0] * grid[1]].reshape(x.shape[0], grid[0], grid[1], self.width)
    x = out["pre_logits"] = MAPHead(self.num_heads, self.mlp_dim, self.dtype, name="MAPHead_0")(
        x, valid[:, None, None, :])
    return x.astype(jnp.float32), out


class NaFlexZeroShotClassifier(nn.Module):
  """NaFlex image tower + fixed class embeddings: logits = exp(t) * normalise(image embedding) @ zeroshot_head + b
  (SigLIP's sigmoid logits, as `siglip.SigLipZeroShotClassifier`)."""
  image_cfg: Dict[str, Any]
  num_classes: int = 1000
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: Union[jax.Array, Sequence[jax.Array]]) -> Tuple[jax.Array, Dict[str, jax.Array]]:
    emb, out = NaFlexImageTower(**self.image_cfg, dtype=self.dtype, name="img")(x)
    return sigmoid_logits(self, emb, out, self.num_classes)


def _position_grid(pe: np.ndarray, width: int) -> int:
  """Side G of a learned G x G position grid stored as (G, G, width) or flat ((1,) G * G, width); 0: neither."""
  n = int(np.size(pe)) // max(width, 1)
  side = math.isqrt(n)
  return side if side * side == n and n * width == np.size(pe) and np.shape(pe)[-1] == width else 0


def config_from_checkpoint(tree: Dict[str, np.ndarray]) -> Dict[str, Any]:
  """The image tower's sizes of a NaFlex `big_vision_tree` (Dense `embedding` (p * p * 3, width), position grid
  (G, G, width)); another file is an error naming what it lacks."""
  kernel, pe = tree.get("img/embedding/kernel"), tree.get("img/pos_embedding")
  grid = 0 if kernel is None or pe is None or np.ndim(kernel) != 2 else _position_grid(pe, int(kernel.shape[1]))
  if not grid or "img/MAPHead_0/probe" not in tree:
    shapes = {k: tuple(np.shape(tree[k])) for k in ("img/embedding/kernel", "img/pos_embedding") if k in tree}
    raise CheckpointError("not a big_vision SigLIP 2 NaFlex checkpoint: it needs a Dense `img/embedding/kernel` "
                          f"(p*p*3, width), `img/pos_embedding` (G, G, width) and `img/MAPHead_0/probe`; got {shapes}")
  p = math.isqrt(int(kernel.shape[0]) // 3)
  return dict(patch_size=p, width=int(kernel.shape[1]), **_tower_sizes(tree, "img/Transformer/"), posemb_grid=grid)


@dataclasses.dataclass(frozen=True)
class NaFlexFamily:
  """One released NaFlex checkpoint (big_vision's SigLIP 2 table)."""
  variant: str  # image and text towers: B, So400m
  file: str
  patch_size: int = 16
  posemb_grid: int = 16
  max_num_patches: int = 256  # the sequence length the release's table reports (overridable in `load`)

  @property
  def image(self) -> Dict[str, Any]:
    """The image tower's sizes (a fresh dict)."""
    return _tower(self.variant, patch_size=self.patch_size, posemb_grid=self.posemb_grid,
                  max_num_patches=self.max_num_patches)

  def preprocessing(self, max_num_patches: Optional[int] = None, patch_size: Optional[int] = None) -> Preprocessing:
    """The standard view: the whole image squashed to the square grid's side (`isqrt(max_num_patches)` patches;
    256 px at 256 patches of 16), PIL's antialiased bilinear (NaFlex's resize is antialiased bilinear, in float
    and keeping the aspect ratio: `naflex_patches`), pixels scaled to [-1, 1]."""
    side = math.isqrt(int(max_num_patches or self.max_num_patches)) * int(patch_size or self.patch_size)
    return Preprocessing(input_size=side, resize_size=side, resize_method="bilinear", mean=(127.5,) * 3,
                         std=(127.5,) * 3, crop_mode="squash")


FAMILIES: Dict[str, NaFlexFamily] = {
    "siglip2_b16_naflex": NaFlexFamily("B", "siglip2_b16_naflex.npz"),
    "siglip2_so400m16_naflex": NaFlexFamily("So400m", "siglip2_so400m16_naflex.npz"),
}
# timm 1.0.31's `naflexvit_base_patch16_siglip` / `naflexvit_so400m_patch16_siglip` (num_classes=0) parameter
# counts + the (E, 1000) head + t + b (pinned by tests/test_siglip_naflex.py).
_TIMM_TOWER_PARAMS = {"B": 92_930_304, "So400m": 427_888_064}
NUM_PARAMS = {name: _TIMM_TOWER_PARAMS[f.variant] + _VARIANTS[f.variant][0] * 1000 + 2 for name, f in FAMILIES.items()}

IMAGE_FIELDS = ("patch_size", "width", "depth", "num_heads", "mlp_dim", "posemb_grid", "max_num_patches")


def _make(image: Dict[str, Any], *, num_classes: int = 1000, dtype: Any = jnp.float32,
          **overrides: Any) -> NaFlexZeroShotClassifier:
  """The classifier of one family; `overrides` may change the image tower's sizes and `max_num_patches`."""
  unknown = sorted(set(overrides) - set(IMAGE_FIELDS))
  if unknown:
    raise TypeError(f"SigLIP 2 NaFlex zero-shot classifier: unknown overrides {unknown}; it takes "
                    f"{', '.join(IMAGE_FIELDS)}, num_classes, dtype and the load options {', '.join(_LOAD_KWARGS)}")
  image = dict(image, **overrides)
  if int(image["max_num_patches"]) < 1:
    raise UserError(f"max_num_patches={image['max_num_patches']}: must be a positive number of patches")
  return NaFlexZeroShotClassifier(image, num_classes=int(num_classes), dtype=jnp.dtype(dtype))


_LOAD_KWARGS = tuple(k for k in LOAD_KWARGS if k != "image_size")  # The grid follows max_num_patches instead.


def _prepare(name: str, family: NaFlexFamily, flat: Optional[Dict[str, np.ndarray]], overrides: Dict[str, Any], *,
             path: Optional[str] = None, vocab: Optional[str] = None, class_names: Optional[str] = None,
             templates: Optional[str] = None, head_cache_dir: Optional[str] = None) -> registry.LoadPlan:
  """Checks a NaFlex checkpoint's image tower against the family and replaces the text tower by its (cached)
  zero-shot head; the standard view follows `max_num_patches`. Another family's file is left to the load gate."""
  image = dict(family.image, **{k: overrides[k] for k in IMAGE_FIELDS if k in overrides})
  if int(image["max_num_patches"]) < 1:
    raise UserError(f"max_num_patches={image['max_num_patches']}: must be a positive number of patches")
  pp = family.preprocessing(image["max_num_patches"], image["patch_size"])
  if flat is None:
    return registry.LoadPlan(overrides=overrides, preprocessing=pp)
  tree = big_vision_tree(flat)
  if "img/embedding/kernel" not in tree:
    return registry.LoadPlan(overrides=overrides, preprocessing=pp, flat=flat, convert=convert_siglip_zero_shot)
  if np.ndim(tree["img/embedding/kernel"]) == 4:
    raise CheckpointError(f"{path or 'checkpoint'}: a fixed-resolution SigLIP checkpoint (patch conv, square position "
                          f"embedding), not NaFlex: load it under its siglip_* / siglip2_* name, not {name!r}")
  cfg = config_from_checkpoint(tree)
  tree["img/pos_embedding"] = np.reshape(tree["img/pos_embedding"], (cfg["posemb_grid"],) * 2 + (cfg["width"],))
  diff = [f"{k}: model {image[k]} vs checkpoint {cfg[k]}" for k in cfg if cfg[k] != image[k]]
  if diff:
    raise tower_mismatch(name, f"SigLIP 2 NaFlex {family.variant}/{family.patch_size}", diff)
  tree = attach_siglip_text_head(tree, path, overrides, pad="pad", tokenizer_name="gemma", vocab=vocab,
                                 class_names=class_names, templates=templates, head_cache_dir=head_cache_dir)
  return registry.LoadPlan(overrides=overrides, preprocessing=pp, flat=tree, convert=convert_siglip_zero_shot)


_HINT = ("Pass big_vision's `{file}` (gs://big_vision/siglip2/{file}); the zero-shot head is computed once from its "
         "text tower and cached: pass vocab= the Gemma SentencePiece model (gemma: {url}). max_num_patches= sets "
         "the sequence length (default 256). An already-built zero-shot file (python -m zoomjax.models.clip_cli "
         "--out) also works.")

for _name, _family in FAMILIES.items():
  registry.register(registry.ModelSpec(
      name=_name,
      make_module=functools.partial(_make, _family.image),
      preprocessing=_family.preprocessing(),
      convert=convert_siglip_zero_shot,
      checkpoint_hint=_HINT.format(file=_family.file, url=SIGLIP_TOKENIZERS["gemma"]),
      num_params=NUM_PARAMS[_name],
      load_kwargs=_LOAD_KWARGS,
      prepare=functools.partial(_prepare, _name, _family)))
