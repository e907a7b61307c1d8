"""EVA-02 (Fang et al., 2023), timm's `eva02_*_patch14_*` ImageNet-1k classifiers, in timm's layout.

A ViT with a class token and a learnt absolute position embedding, plus what EVA-02 adds: 2-D rotary position
embeddings (RoPE) on the patch tokens' queries and keys in every block (the class token is not rotated), a SwiGLU
MLP (SiLU gate, with a sub-LayerNorm before its output projection in base/large) and a key projection without
bias. The classifier averages the patch tokens, normalises (`fc_norm`) and projects. LayerNorm epsilon 1e-6.
`load(name, ckpt, image_size=S)` runs it at another input side (the position embedding resampled, as for ViTs).

The same module is the trunk of open_clip's EVA-02 CLIP image towers (zoomjax.models.clip_eva), whose timm
`eva02_*_clip_*` models add a LayerNorm inside attention before its output projection (`scale_attn_inner`), pool
the class token after a final `norm` (`pool="token"`), and, in the enormous tower, use post-norm blocks
(`x + norm(attn(x))`), a plain GELU MLP and no RoPE.

RoPE follows timm's `RotaryEmbeddingCat(in_pixels=False, ref_feat_shape=(16, 16))`: per head, a quarter of the
head width in frequencies `1 / 10000 ** (i / (hd / 4))` for each of the row and column coordinates, which are
the patch indices rescaled to the 16x16 grid of pre-training (`index / grid * 16`), laid out [rows, columns]
with each frequency used for an interleaved pair of channels. It has no weights, so it follows the input grid.
"""
import functools
from typing import Any, Dict, Optional, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from zoomjax.checkpoints import CheckpointError
from zoomjax.checkpoints.convert_backbones import convert_eva, eva_sizes
from zoomjax.models import registry
from zoomjax.models.preprocessing import CLIP_MEAN, CLIP_STD, Preprocessing
from zoomjax.models.vit import grid_for, preprocessing_at, resample_position_embedding

__all__ = ["CONFIGS", "Eva", "NUM_PARAMS", "eva02", "rope_sin_cos"]


def rope_sin_cos(grid: Tuple[int, int], head_dim: int, ref_grid: Tuple[int, int] = (16, 16),
                 temperature: float = 10000.0) -> Tuple[np.ndarray, np.ndarray]:
  """(sin, cos), each (H * W, head_dim) float32, of EVA-02's rotary embedding on an H x W patch grid.

  Computed in float32 in timm's order of operations, so the angles round as the reference's do."""
  nb = head_dim // 4
  bands = np.float32(1.0) / (np.float32(temperature) ** (np.arange(nb, dtype=np.float32) / np.float32(nb)))
  axes = [np.arange(s, dtype=np.float32) / np.float32(s) * np.float32(r) for s, r in zip(grid, ref_grid)]
  coords = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1)  # (H, W, 2)
  pos = (coords[..., None] * bands).astype(np.float32)  # (H, W, 2, nb)
  sin = np.repeat(np.sin(pos).reshape(-1, 2 * nb), 2, axis=-1)
  cos = np.repeat(np.cos(pos).reshape(-1, 2 * nb), 2, axis=-1)
  return sin.astype(np.float32), cos.astype(np.float32)


def _rotate_pairs(x: jax.Array) -> jax.Array:
  """[x0, x1, x2, x3, ...] -> [-x1, x0, -x3, x2, ...] (timm's `rot`)."""
  pairs = x.reshape(x.shape[:-1] + (-1, 2))
  return jnp.stack([-pairs[..., 1], pairs[..., 0]], axis=-1).reshape(x.shape)


def _ln(name: str, dtype: Any, eps: float) -> nn.LayerNorm:
  return nn.LayerNorm(epsilon=eps, use_fast_variance=False, dtype=dtype, param_dtype=jnp.float32, name=name)


class EvaAttention(nn.Module):
  """Multi-head self-attention with RoPE on the patch tokens (the first `prefix` tokens are not rotated; no
  RoPE where `sin` is None) and, with `scale_norm`, a LayerNorm on the heads' output before the projection."""
  num_heads: int
  dtype: Any = jnp.float32
  prefix: int = 1
  scale_norm: bool = False
  eps: float = 1e-6

  @nn.compact
  def __call__(self, x: jax.Array, sin: Optional[jax.Array], cos: Optional[jax.Array]) -> jax.Array:
    b, n, d = x.shape
    hd = d // self.num_heads
    dense = functools.partial(nn.Dense, d, dtype=self.dtype, param_dtype=jnp.float32)
    q = dense(name="q")(x).reshape(b, n, self.num_heads, hd)
    k = dense(use_bias=False, name="k")(x).reshape(b, n, self.num_heads, hd)
    v = dense(name="v")(x).reshape(b, n, self.num_heads, hd)

    def rope(t: jax.Array) -> jax.Array:
      head, tail = t[:, :self.prefix], t[:, self.prefix:].astype(jnp.float32)
      tail = tail * cos[None, :, None] + _rotate_pairs(tail) * sin[None, :, None]
      return jnp.concatenate([head, tail.astype(t.dtype)], axis=1)

    if sin is not None:
      q, k = rope(q), rope(k)
    logits = jnp.einsum("bqhd,bkhd->bhqk", q * jnp.asarray(hd ** -0.5, q.dtype), k,
                        preferred_element_type=jnp.float32)
    attn = jax.nn.softmax(logits, axis=-1).astype(v.dtype)
    y = jnp.einsum("bhqk,bkhd->bqhd", attn, v).reshape(b, n, d)
    if self.scale_norm:
      y = _ln("norm", self.dtype, self.eps)(y)
    return nn.Dense(d, dtype=self.dtype, param_dtype=jnp.float32, name="proj")(y)


class SwiGLU(nn.Module):
  """silu(fc1_g(x)) * fc1_x(x) [-> sub-LayerNorm] -> fc2."""
  hidden: int
  scale_mlp: bool = False
  eps: float = 1e-6
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    dense = functools.partial(nn.Dense, dtype=self.dtype, param_dtype=jnp.float32)
    y = nn.silu(dense(self.hidden, name="fc1_g")(x)) * dense(self.hidden, name="fc1_x")(x)
    if self.scale_mlp:
      y = _ln("norm", self.dtype, self.eps)(y)
    return dense(x.shape[-1], name="fc2")(y)


class Mlp(nn.Module):
  """fc1 -> exact GELU -> fc2 (timm's `Mlp`: EVA-02 CLIP's enormous tower)."""
  hidden: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    dense = functools.partial(nn.Dense, dtype=self.dtype, param_dtype=jnp.float32)
    return dense(x.shape[-1], name="fc2")(nn.gelu(dense(self.hidden, name="fc1")(x), approximate=False))


class EvaBlock(nn.Module):
  """Pre-LN block: x + attn(norm1(x)); x + mlp(norm2(x)). With `post_norm` (timm's `EvaBlockPostNorm`):
  x + norm1(attn(x)); x + norm2(mlp(x))."""
  num_heads: int
  mlp_dim: int
  scale_mlp: bool = False
  eps: float = 1e-6
  dtype: Any = jnp.float32
  mlp: str = "swiglu"  # "swiglu" | "gelu"
  scale_attn_inner: bool = False
  post_norm: bool = False

  @nn.compact
  def __call__(self, x: jax.Array, sin: Optional[jax.Array], cos: Optional[jax.Array]) -> jax.Array:
    attn = EvaAttention(self.num_heads, self.dtype, scale_norm=self.scale_attn_inner, eps=self.eps, name="attn")
    if self.mlp == "swiglu":
      mlp = SwiGLU(self.mlp_dim, self.scale_mlp, self.eps, self.dtype, name="mlp")
    elif self.mlp == "gelu":
      mlp = Mlp(self.mlp_dim, self.dtype, name="mlp")
    else:
      raise ValueError(f"EVA block: mlp={self.mlp!r}; use 'swiglu' or 'gelu'")
    norm1, norm2 = _ln("norm1", self.dtype, self.eps), _ln("norm2", self.dtype, self.eps)
    if self.post_norm:
      x = x + norm1(attn(x, sin, cos))
      return x + norm2(mlp(x))
    x = x + attn(norm1(x), sin, cos)
    return x + mlp(norm2(x))


class Eva(nn.Module):
  """EVA-02 classifier. Returns (logits, intermediates) with `encoded` tokens, `feature_map` (patch tokens on
  their grid) and `pre_logits`: with `pool="avg"` the normalised (`fc_norm`) mean of the patch tokens, with
  `pool="token"` the class token after the final `norm` of every token (`encoded` is then normalised)."""
  patch_size: int = 14
  width: int = 192
  depth: int = 12
  num_heads: int = 3
  mlp_dim: int = 512
  scale_mlp: bool = False
  ref_grid: int = 16  # the pre-training grid (224 / 14) that RoPE coordinates are rescaled to
  num_classes: int = 1000
  eps: float = 1e-6
  dtype: Any = jnp.float32
  mlp: str = "swiglu"  # "swiglu" | "gelu" (timm's plain Mlp)
  scale_attn_inner: bool = False  # LayerNorm before the attention's output projection (EVA-02 CLIP)
  post_norm: bool = False  # timm's EvaBlockPostNorm
  rope: bool = True
  pool: str = "avg"  # "avg" (fc_norm of the patch-token mean) | "token" (class token after `norm`)

  @nn.compact
  def __call__(self, x: jax.Array) -> Tuple[jax.Array, Dict[str, jax.Array]]:
    if self.pool not in ("avg", "token"):
      raise ValueError(f"EVA: pool={self.pool!r}; use 'avg' or 'token'")
    p, d = self.patch_size, self.width
    x = nn.Conv(d, (p, p), (p, p), padding="VALID", dtype=self.dtype, param_dtype=jnp.float32,
                name="embedding")(x.astype(self.dtype))
    b, h, w, _ = x.shape
    x = x.reshape(b, h * w, d)
    cls = self.param("cls", nn.initializers.normal(0.02), (1, 1, d), jnp.float32)
    x = jnp.concatenate([jnp.broadcast_to(cls.astype(x.dtype), (b, 1, d)), x], axis=1)
    shape = (1, 1 + h * w, d)
    if self.has_variable("params", "pos_embedding"):
      have = tuple(self.get_variable("params", "pos_embedding").shape)
      if have != shape:
        raise ValueError(f"EVA position embedding {have} does not fit a {h * p}x{w * p} input ({1 + h * w} "
                         "tokens); feed the input size the checkpoint was trained at")
    x = x + self.param("pos_embedding", nn.initializers.normal(0.02), shape, jnp.float32).astype(x.dtype)
    sin = cos = None
    if self.rope:
      sin, cos = (jnp.asarray(a) for a in rope_sin_cos((h, w), d // self.num_heads, (self.ref_grid,) * 2))
    for i in range(self.depth):
      x = EvaBlock(self.num_heads, self.mlp_dim, self.scale_mlp, self.eps, self.dtype, self.mlp,
                   self.scale_attn_inner, self.post_norm, name=f"blocks_{i}")(x, sin, cos)
    if self.pool == "token":
      x = _ln("norm", self.dtype, self.eps)(x)
    out = {"encoded": x, "feature_map": x[:, 1:].reshape(b, h, w, d)}
    if self.pool == "token":
      out["pre_logits"] = pooled = x[:, 0]
    else:
      pooled = jnp.mean(x[:, 1:].astype(jnp.float32), axis=1).astype(self.dtype)
      out["pre_logits"] = pooled = _ln("fc_norm", self.dtype, self.eps)(pooled)
    logits = nn.Dense(self.num_classes, dtype=self.dtype, param_dtype=jnp.float32, name="head")(pooled)
    return logits.astype(jnp.float32), out


# timm's eva02_*_patch14_* model arguments: mlp_ratio 4 * 2 / 3 (the SwiGLU hidden width int(width * 8 / 3)),
# SwiGLU with a sub-LN (`scale_mlp`) in base/large, trained at `image_size`.
CONFIGS: Dict[str, Dict[str, Any]] = {
    "tiny": dict(width=192, depth=12, num_heads=3, mlp_dim=512, scale_mlp=False),
    "small": dict(width=384, depth=12, num_heads=6, mlp_dim=1024, scale_mlp=False),
    "base": dict(width=768, depth=12, num_heads=12, mlp_dim=2048, scale_mlp=True),
    "large": dict(width=1024, depth=24, num_heads=16, mlp_dim=2730, scale_mlp=True),
}


def eva02(variant: str, **kw: Any) -> Eva:
  """EVA-02 `variant` (tiny/small/base/large); `kw` overrides fields (tiny test widths, dtype, num_classes)."""
  if variant not in CONFIGS:
    raise ValueError(f"EVA-02 variant {variant!r} not supported; choose one of {sorted(CONFIGS)}")
  return Eva(**dict(CONFIGS[variant], **kw))


# --------------------------------------------------------------------------------------------- registry

# Exact 'params' counts: timm 1.0.31's `sum(p.numel() for p in model.parameters())` (experiments/
# make_backbone_goldens.py computes them; tests/test_golden_backbones.py pins eval_shape to them).
NUM_PARAMS = {"tiny": 5_756_584, "small": 22_129_000, "base": 87_117_544, "large": 305_080_232}
_CLIP_PP = dict(resize_method="bicubic", mean=CLIP_MEAN, std=CLIP_STD)
# timm name (model.tag), variant, input size. timm evaluates every one at crop_pct 1.0 (the whole image);
# the `_in22k_in1k` tags squash it to the square (crop_mode='squash').
CHECKPOINTS = (
    ("eva02_tiny_patch14_336.mim_in22k_ft_in1k", "tiny", 336),
    ("eva02_small_patch14_336.mim_in22k_ft_in1k", "small", 336),
    ("eva02_base_patch14_448.mim_in22k_ft_in1k", "base", 448),
    ("eva02_base_patch14_448.mim_in22k_ft_in22k_in1k", "base", 448),
    ("eva02_large_patch14_448.mim_in22k_ft_in1k", "large", 448),
    ("eva02_large_patch14_448.mim_m38m_ft_in1k", "large", 448),
    ("eva02_large_patch14_448.mim_in22k_ft_in22k_in1k", "large", 448),
    ("eva02_large_patch14_448.mim_m38m_ft_in22k_in1k", "large", 448),
)


def _resampled(flat: Dict[str, np.ndarray], grid: int, what: str) -> dict:
  variables = convert_eva(flat, what=what)
  variables["params"]["pos_embedding"] = resample_position_embedding(variables["params"]["pos_embedding"],
                                                                     (grid, grid))
  return variables


def _prepare(name: str, variant: str, pp: Preprocessing, flat: Optional[Dict[str, np.ndarray]],
             overrides: Dict[str, Any], *, path: Optional[str] = None,
             image_size: Optional[int] = None) -> registry.LoadPlan:
  """A timm EVA file of another size is named as such (the merge gate would only list shapes). `image_size=S`
  resamples the position embedding to the S / 14 grid (timm's `resample_abs_pos_embed`; RoPE follows the grid
  by itself) and scales the preprocessing: e.g. the zoom grid's 224 px crops."""
  del path
  convert = None
  if image_size is not None and int(image_size) != pp.input_size:
    grid = grid_for(int(image_size), overrides.get("patch_size", 14), name)
    pp = preprocessing_at(pp, int(image_size))
    convert = functools.partial(_resampled, grid=grid, what=f"timm {name}")
  sizes = eva_sizes(flat) if flat is not None else None
  if sizes is not None and not set(overrides) & {*CONFIGS[variant], "patch_size"}:
    want = dict(CONFIGS[variant], patch_size=14, grid=pp.input_size // 14)
    keys = ("width", "depth", "mlp_dim", "scale_mlp", "patch_size", "grid")
    want["grid"] = sizes["grid"] if convert else want["grid"]  # resampled: any stored grid will do
    diff = [f"{k}: model {want[k]} vs checkpoint {sizes[k]}" for k in keys if sizes[k] != want[k]]
    if diff:
      fits = [n for n, v, s in CHECKPOINTS
              if all(dict(CONFIGS[v], patch_size=14, grid=s // 14)[k] == sizes[k] for k in keys)]
      raise CheckpointError(f"checkpoint does not fit {name!r}: " + "; ".join(diff)
                            + (f". It fits {', '.join(sorted(set(fits)))}: load it under that name" if fits else ""))
  return registry.LoadPlan(overrides=overrides, preprocessing=pp, flat=flat, convert=convert)


for _name, _variant, _size in CHECKPOINTS:
  _squash = "in22k_in1k" in _name  # timm's crop_mode of the tags fine-tuned through ImageNet-22k
  _pp = Preprocessing(input_size=_size, resize_size=_size, crop_mode="squash" if _squash else "center", **_CLIP_PP)
  registry.register(registry.ModelSpec(
      name=_name,
      make_module=functools.partial(eva02, _variant),
      preprocessing=_pp,
      convert=functools.partial(convert_eva, what=f"timm {_name}"),
      checkpoint_hint=(f"Pass timm's `{_name}` weights: model.safetensors of HF hub timm/{_name} (or "
                       "pytorch_model.bin)."),
      num_params=NUM_PARAMS[_variant],
      load_kwargs=("image_size",),
      prepare=functools.partial(_prepare, _name, _variant, _pp)))
