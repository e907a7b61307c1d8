"""torchvision state dicts (ResNet, AlexNet, VGG, ViT) -> Flax variables of zoomjax's modules.

Every converter takes the flat `{torch_name: np.ndarray}` dict a checkpoint reader returns and gives back
`{"params": ..., "batch_stats": ...}` (nested). Each one consumes every source key it understands and fails
naming the keys it did not use, so a checkpoint of the wrong architecture never loads half-way.
"""
from typing import Dict, Iterable, List, Mapping, Optional, Sequence

import numpy as np
from flax import traverse_util

Flat = Mapping[str, np.ndarray]

# Buffers torch keeps that have no meaning at inference.
_IGNORED_SUFFIXES = ("num_batches_tracked",)


class KeyTaker:
  """Reads source arrays by name, remembers which were used, and reports the rest.

  Why: a silent partial conversion (wrong depth, wrong variant) is the worst loading bug; this makes the
  converter itself fail with the exact missing/unused names.
  """

  def __init__(self, flat: Flat, what: str, prefix: str = ""):
    self.flat = {k: v for k, v in flat.items()}
    self.what = what
    self.prefix = prefix
    self.used = set()
    self.out: Dict[str, np.ndarray] = {}

  def has(self, key: str) -> bool:
    return self.prefix + key in self.flat

  def take(self, key: str) -> np.ndarray:
    full = self.prefix + key
    if full not in self.flat:
      near = sorted(k for k in self.flat if k.rsplit(".", 1)[0] == full.rsplit(".", 1)[0])[:5]
      raise KeyError(f"{self.what}: checkpoint has no key {full!r}"
                     + (f" (similar keys: {near})" if near else "")
                     + f"; it has {len(self.flat)} keys, e.g. {sorted(self.flat)[:5]}")
    self.used.add(full)
    return np.asarray(self.flat[full])

  def put(self, path: str, value: np.ndarray) -> None:
    """Stores `value` at 'collection/a/b' in the output tree (float32 unless integer).

    fp16 (OpenAI CLIP) and bf16 (ml_dtypes) weights become float32: params stay float32 in zoomjax.
    """
    value = np.asarray(value)
    if value.dtype.kind not in "iub":
      value = value.astype(np.float32, copy=False)  # float32 sources stay views (VGG-16 is 0.5 GB)
    self.out[path] = value

  def finish(self, ignore: Iterable[str] = ()) -> dict:
    ignore = tuple(ignore)
    left = sorted(k for k in self.flat if k not in self.used and k.startswith(self.prefix)
                  and not k.endswith(_IGNORED_SUFFIXES) and not any(k.startswith(self.prefix + i)
                                                                    for i in ignore))
    if left:
      raise ValueError(f"{self.what}: {len(left)} checkpoint keys were not used (wrong architecture or "
                       f"variant?): {left[:10]}{' ...' if len(left) > 10 else ''}")
    return traverse_util.unflatten_dict(self.out, sep="/")

  # Layout helpers shared by the torch-family converters.
  def conv(self, src: str, dst: str, bias: bool = False) -> None:
    """torch Conv2d weight (O, I, kh, kw) -> flax kernel (kh, kw, I, O)."""
    self.put(f"params/{dst}/kernel", self.take(f"{src}.weight").transpose(2, 3, 1, 0))
    if bias:
      self.put(f"params/{dst}/bias", self.take(f"{src}.bias"))

  def dense(self, src: str, dst: str, bias: bool = True) -> None:
    """torch Linear weight (out, in) -> flax kernel (in, out)."""
    self.put(f"params/{dst}/kernel", self.take(f"{src}.weight").T)
    if bias:
      self.put(f"params/{dst}/bias", self.take(f"{src}.bias"))

  def norm(self, src: str, dst: str) -> None:
    """LayerNorm weight/bias -> scale/bias."""
    self.put(f"params/{dst}/scale", self.take(f"{src}.weight"))
    self.put(f"params/{dst}/bias", self.take(f"{src}.bias"))

  def bn(self, src: str, dst: str) -> None:
    """BatchNorm2d -> params scale/bias + batch_stats mean/var."""
    self.norm(src, dst)
    self.put(f"batch_stats/{dst}/mean", self.take(f"{src}.running_mean"))
    self.put(f"batch_stats/{dst}/var", self.take(f"{src}.running_var"))

  def packed_attention(self, src: str, dst: str, num_heads: int) -> None:
    """torch nn.MultiheadAttention (packed q;k;v) -> flax MultiHeadDotProductAttention."""
    w = self.take(f"{src}.in_proj_weight")  # (3D, D)
    b = self.take(f"{src}.in_proj_bias")  # (3D,)
    d = w.shape[1]
    self.qkv(w, b, dst, num_heads)
    ow = self.take(f"{src}.out_proj.weight")  # (D, D): (out, in)
    self.put(f"params/{dst}/out/kernel", ow.T.reshape(num_heads, d // num_heads, d))
    self.put(f"params/{dst}/out/bias", self.take(f"{src}.out_proj.bias"))

  def qkv(self, w: np.ndarray, b: np.ndarray, dst: str, num_heads: int) -> None:
    """Packed (3D, D) weight / (3D,) bias -> query/key/value kernels (D, H, Dh), biases (H, Dh)."""
    three_d, d = w.shape
    if three_d != 3 * d or d % num_heads:
      raise ValueError(f"{self.what}: packed qkv weight {w.shape} does not fit width {d} x {num_heads} heads")
    dh = d // num_heads
    w = w.reshape(3, num_heads, dh, d).transpose(0, 3, 1, 2)
    b = b.reshape(3, num_heads, dh)
    for i, name in enumerate(("query", "key", "value")):
      self.put(f"params/{dst}/{name}/kernel", w[i])
      self.put(f"params/{dst}/{name}/bias", b[i])


def count_blocks(flat: Flat, prefix: str) -> int:
  """Number of consecutive integer-indexed children `prefix{i}.` present in the checkpoint."""
  n = 0
  while any(k.startswith(f"{prefix}{n}.") for k in flat):
    n += 1
  return n


def odd_feature_stages(flat: Flat) -> List[int]:
  """Blocks per stage of torchvision's ConvNeXt / Swin `features` list, where stage s is `features.{2s+1}`."""
  sizes = []
  while n := count_blocks(flat, f"features.{2 * len(sizes) + 1}."):
    sizes.append(n)
  return sizes


def flatten_torch_fc(w: np.ndarray, channels: int, height: int, width: int) -> np.ndarray:
  """First Linear after a torch NCHW flatten (out, C*H*W) -> flax kernel for an NHWC flatten (H*W*C, out)."""
  out = w.shape[0]
  if w.shape[1] != channels * height * width:
    raise ValueError(f"linear weight {w.shape} does not match a {channels}x{height}x{width} feature map")
  return w.reshape(out, channels, height, width).transpose(2, 3, 1, 0).reshape(height * width * channels, out)


# ----------------------------------------------------------------------------------------------- ResNet

def convert_resnet(flat: Flat, stage_sizes: Optional[Sequence[int]] = None, bottleneck: Optional[bool] = None,
                   what: str = "torchvision ResNet") -> dict:
  """torchvision/timm ResNet v1.5 (`conv1`, `bn1`, `layer{s}.{b}.*`, `fc`) -> zoomjax.models.resnet.ResNet.

  Flax names follow scenic's ResNet: `stem_conv`, `init_bn`, `ResidualBlock_{k}` (k counts over all stages)
  with `conv{1,2,3}`/`bn{1,2,3}` and `proj_conv`/`proj_bn`, and `output_projection`.
  """
  t = KeyTaker(flat, what)
  if stage_sizes is None:
    stage_sizes = [count_blocks(flat, f"layer{s}.") for s in range(1, 5)]
  if bottleneck is None:
    bottleneck = t.has("layer1.0.conv3.weight")
  t.conv("conv1", "stem_conv")
  t.bn("bn1", "init_bn")
  k = 0
  for s, n in enumerate(stage_sizes, start=1):
    for b in range(n):
      src, dst = f"layer{s}.{b}", f"ResidualBlock_{k}"
      for i in (1, 2, 3) if bottleneck else (1, 2):
        t.conv(f"{src}.conv{i}", f"{dst}/conv{i}")
        t.bn(f"{src}.bn{i}", f"{dst}/bn{i}")
      if t.has(f"{src}.downsample.0.weight"):
        t.conv(f"{src}.downsample.0", f"{dst}/proj_conv")
        t.bn(f"{src}.downsample.1", f"{dst}/proj_bn")
      k += 1
  t.dense("fc", "output_projection")
  return t.finish()


# --------------------------------------------------------------------------------------- AlexNet / VGG

# torchvision `features.{i}` indices of the convolutions, in order.
ALEXNET_CONVS = (0, 3, 6, 8, 10)


def convert_alexnet(flat: Flat) -> dict:
  """torchvision AlexNet -> zoomjax.models.alexnet.AlexNet (conv1..5, fc6..8)."""
  t = KeyTaker(flat, "torchvision AlexNet")
  channels = t.take(f"features.{ALEXNET_CONVS[-1]}.weight").shape[0]  # conv5's width (256 in the real model).
  for i, idx in enumerate(ALEXNET_CONVS, start=1):
    t.conv(f"features.{idx}", f"conv{i}", bias=True)
  _classifier(t, (1, 4, 6), channels=channels, pool=6)
  return t.finish()


def vgg_layer_names(cfg: Sequence) -> List[str]:
  """Flax conv names `conv{stage}_{i}` (Caffe/Simonyan style) of zoomjax's VGG, one per int in cfg."""
  names, stage, i = [], 1, 1
  for v in cfg:
    if v == "M":
      stage, i = stage + 1, 1
    else:
      names.append(f"conv{stage}_{i}")
      i += 1
  return names


def vgg_conv_indices(cfg: Sequence, batch_norm: bool = False) -> list:
  """torchvision `features.{i}` indices of the convolutions of a VGG config (ints = conv widths, 'M' = pool).

  The BatchNorm of a `_bn` variant is at index + 1.
  """
  idx, out = 0, []
  for v in cfg:
    if v == "M":
      idx += 1
    else:
      out.append(idx)
      idx += 3 if batch_norm else 2  # conv, [BN,] ReLU
  return out


def convert_vgg(flat: Flat, cfg: Sequence, batch_norm: bool = False) -> dict:
  """torchvision VGG / VGG-BN -> zoomjax.models.vgg.VGG (conv{stage}_{i}, [bn{stage}_{i},] fc6..8)."""
  t = KeyTaker(flat, f"torchvision VGG{'-BN' if batch_norm else ''}")
  names = vgg_layer_names(cfg)
  for idx, name in zip(vgg_conv_indices(cfg, batch_norm), names):
    t.conv(f"features.{idx}", name, bias=True)
    if batch_norm:
      t.bn(f"features.{idx + 1}", name.replace("conv", "bn", 1))
  channels = [v for v in cfg if v != "M"][-1]
  _classifier(t, (0, 3, 6), channels=channels, pool=7)
  return t.finish()


def _classifier(t: KeyTaker, indices: Sequence[int], channels: int, pool: int) -> None:
  first, second, third = indices
  t.put("params/fc6/kernel", flatten_torch_fc(t.take(f"classifier.{first}.weight"), channels, pool, pool))
  t.put("params/fc6/bias", t.take(f"classifier.{first}.bias"))
  t.dense(f"classifier.{second}", "fc7")
  t.dense(f"classifier.{third}", "fc8")


# -------------------------------------------------------------------------------------------- ConvNeXt

def convert_convnext(flat: Flat, stage_sizes: Optional[Sequence[int]] = None,
                     what: str = "torchvision ConvNeXt") -> dict:
  """torchvision ConvNeXt (`features.{i}`, `classifier.{0,2}`) -> zoomjax.models.convnext.ConvNeXt.

  `features.0` is the stem (conv, LayerNorm2d); stage s's blocks are `features.{2s+1}.{b}` (`block.{0,2,3,5}`,
  `layer_scale` (C, 1, 1)) and the downsample before it `features.{2s}` (LayerNorm2d, 2x2/2 conv).
  """
  t = KeyTaker(flat, what)
  if stage_sizes is None:
    stage_sizes = odd_feature_stages(flat)
  t.conv("features.0.0", "stem_conv", bias=True)
  t.norm("features.0.1", "stem_norm")
  for s, n in enumerate(stage_sizes):
    if s > 0:
      t.norm(f"features.{2 * s}.0", f"stages_{s}_downsample_norm")
      t.conv(f"features.{2 * s}.1", f"stages_{s}_downsample_conv", bias=True)
    for b in range(n):
      src, dst = f"features.{2 * s + 1}.{b}", f"stages_{s}_blocks_{b}"
      t.conv(f"{src}.block.0", f"{dst}/conv_dw", bias=True)  # depthwise (C, 1, 7, 7) -> (7, 7, 1, C)
      t.norm(f"{src}.block.2", f"{dst}/norm")
      t.dense(f"{src}.block.3", f"{dst}/fc1")
      t.dense(f"{src}.block.5", f"{dst}/fc2")
      t.put(f"params/{dst}/gamma", t.take(f"{src}.layer_scale").reshape(-1))
  t.norm("classifier.0", "head_norm")
  t.dense("classifier.2", "head")
  return t.finish()


# ----------------------------------------------------------------------------------------- MobileNetV3

def convert_mobilenet_v3(flat: Flat, what: str = "torchvision MobileNetV3") -> dict:
  """torchvision MobileNetV3 (`features.{i}`, `classifier.{0,3}`) -> zoomjax.models.mobilenet_v3.MobileNetV3.

  The block structure is read from the keys: `features.0` is the stem, the last `features.{i}` the 1x1 head
  conv; each inverted residual's `block.{j}` is [expand,] depthwise, [SE `fc1`/`fc2`,] project, in that order.
  """
  t = KeyTaker(flat, what)

  def conv_bn(src: str, dst: str) -> None:  # Conv2dNormActivation: `.0` conv (no bias), `.1` BatchNorm
    t.conv(f"{src}.0", f"{dst}/conv")
    t.bn(f"{src}.1", f"{dst}/bn")

  n = count_blocks(flat, "features.")
  if n < 3:
    raise KeyError(f"{what}: expected `features.0..N` (stem, inverted residuals, head conv); found {n} of them")
  conv_bn("features.0", "stem")
  for i in range(1, n - 1):
    src, dst = f"features.{i}.block", f"blocks_{i - 1}"
    parts = range(count_blocks(flat, f"{src}."))
    convs = [j for j in parts if not t.has(f"{src}.{j}.fc1.weight")]
    names = ("expand", "depthwise", "project") if len(convs) == 3 else ("depthwise", "project")
    if len(convs) not in (2, 3):
      raise KeyError(f"{what}: `{src}` has {len(convs)} conv layers; an inverted residual has 2 or 3")
    for j, name in zip(convs, names):
      conv_bn(f"{src}.{j}", f"{dst}/{name}")
    for j in parts:
      if j not in convs:
        t.conv(f"{src}.{j}.fc1", f"{dst}/se_fc1", bias=True)
        t.conv(f"{src}.{j}.fc2", f"{dst}/se_fc2", bias=True)
  conv_bn(f"features.{n - 1}", "last_conv")
  t.dense("classifier.0", "pre_head")
  t.dense("classifier.3", "head")
  return t.finish()


# ------------------------------------------------------------------------------------------------ Swin

def convert_swin(flat: Flat, depths: Optional[Sequence[int]] = None, what: str = "torchvision Swin") -> dict:
  """torchvision Swin v1 (`features.{i}`, `norm`, `head`) -> zoomjax.models.swin.Swin.

  `features.0` is the patch embedding (conv, `.2` LayerNorm); stage s's blocks are `features.{2s+1}.{i}`
  (`norm1`, `attn.qkv`/`proj`/`relative_position_bias_table`, `norm2`, `mlp.{0,3}`), the patch merging before
  it `features.{2s}` (`norm`, bias-free `reduction`). `relative_position_index` is a fixed function of the window
  size that the module recomputes, so it is consumed without being copied. Swin v2 files (`logit_scale`,
  `cpb_mlp`) are refused by the unused-key check.
  """
  t = KeyTaker(flat, what)
  if depths is None:
    depths = odd_feature_stages(flat)
  t.conv("features.0.0", "patch_embed_conv", bias=True)
  t.norm("features.0.2", "patch_embed_norm")
  for s, n in enumerate(depths):
    if s > 0:
      t.norm(f"features.{2 * s}.norm", f"stages_{s}_merge_norm")
      t.dense(f"features.{2 * s}.reduction", f"stages_{s}_merge_reduction", bias=False)
    for i in range(n):
      src, dst = f"features.{2 * s + 1}.{i}", f"stages_{s}_blocks_{i}"
      t.norm(f"{src}.norm1", f"{dst}/norm1")
      t.dense(f"{src}.attn.qkv", f"{dst}/attn/qkv")
      t.dense(f"{src}.attn.proj", f"{dst}/attn/proj")
      t.put(f"params/{dst}/attn/relative_position_bias_table", t.take(f"{src}.attn.relative_position_bias_table"))
      t.take(f"{src}.attn.relative_position_index")
      t.norm(f"{src}.norm2", f"{dst}/norm2")
      t.dense(f"{src}.mlp.0", f"{dst}/mlp_fc1")
      t.dense(f"{src}.mlp.3", f"{dst}/mlp_fc2")
  t.norm("norm", "norm")
  t.dense("head", "head")
  return t.finish()


# ---------------------------------------------------------------------------------------------- MaxViT

def convert_maxvit(flat: Flat, block_layers: Optional[Sequence[int]] = None,
                   what: str = "torchvision MaxViT") -> dict:
  """torchvision MaxVit (`stem.{0,1}`, `blocks.{s}.layers.{i}.layers.*`, `classifier.{2,3,5}`) ->
  zoomjax.models.maxvit.MaxViT.

  Each layer is `MBconv` (`proj.{0|1}` 1x1 shortcut after an optional avg pool, `layers.pre_norm`, `conv_a`,
  `conv_b` (Conv2dNormActivation), `squeeze_excitation.fc1/fc2`, `conv_c`), then `window_attention` and
  `grid_attention` (`attn_layer.0` LayerNorm, `attn_layer.1` to_qkv / merge / bias table, `mlp_layer.{0,1,3}`).
  1x1 convs become Dense kernels; `relative_position_index` is recomputed by the module and only consumed.
  """
  t = KeyTaker(flat, what)
  if block_layers is None:
    block_layers = [count_blocks(flat, f"blocks.{s}.layers.") for s in range(count_blocks(flat, "blocks."))]

  def pointwise(src: str, dst: str, bias: bool = True) -> None:  # Conv2d (O, I, 1, 1) -> Dense (I, O)
    t.put(f"params/{dst}/kernel", t.take(f"{src}.weight")[:, :, 0, 0].T)
    if bias:
      t.put(f"params/{dst}/bias", t.take(f"{src}.bias"))

  t.conv("stem.0.0", "stem_conv")
  t.bn("stem.0.1", "stem_bn")
  t.conv("stem.1.0", "stem_conv2", bias=True)
  for s, n in enumerate(block_layers):
    for i in range(n):
      src, dst = f"blocks.{s}.layers.{i}.layers", f"blocks_{s}_layers_{i}"
      mb, mbd = f"{src}.MBconv", f"{dst}_mbconv"
      for j in (0, 1):  # `proj.1` after the stride-2 average pool, `proj.0` without it
        if t.has(f"{mb}.proj.{j}.weight"):
          pointwise(f"{mb}.proj.{j}", f"{mbd}/proj")
      t.bn(f"{mb}.layers.pre_norm", f"{mbd}/pre_norm")
      pointwise(f"{mb}.layers.conv_a.0", f"{mbd}/conv_a", bias=False)
      t.bn(f"{mb}.layers.conv_a.1", f"{mbd}/conv_a_bn")
      t.conv(f"{mb}.layers.conv_b.0", f"{mbd}/conv_b")  # depthwise (C, 1, 3, 3) -> (3, 3, 1, C)
      t.bn(f"{mb}.layers.conv_b.1", f"{mbd}/conv_b_bn")
      put_squeeze_excite(t, f"{mb}.layers.squeeze_excitation.fc1", f"{mb}.layers.squeeze_excitation.fc2", mbd)
      pointwise(f"{mb}.layers.conv_c", f"{mbd}/conv_c")
      for kind in ("window_attention", "grid_attention"):
        a, ad = f"{src}.{kind}", f"{dst}_{kind}"
        t.norm(f"{a}.attn_layer.0", f"{ad}/attn_norm")
        t.dense(f"{a}.attn_layer.1.to_qkv", f"{ad}/attn/to_qkv")
        t.dense(f"{a}.attn_layer.1.merge", f"{ad}/attn/merge")
        t.put(f"params/{ad}/attn/relative_position_bias_table",
              t.take(f"{a}.attn_layer.1.relative_position_bias_table"))
        t.take(f"{a}.attn_layer.1.relative_position_index")
        t.norm(f"{a}.mlp_layer.0", f"{ad}/mlp_norm")
        t.dense(f"{a}.mlp_layer.1", f"{ad}/mlp_fc1")
        t.dense(f"{a}.mlp_layer.3", f"{ad}/mlp_fc2")
  t.norm("classifier.2", "head_norm")
  t.dense("classifier.3", "pre_head")
  t.dense("classifier.5", "head", bias=False)
  return t.finish()


# ------------------------------------------------------------------------------------------------- ViT

def convert_vit(flat: Flat, num_heads: int) -> dict:
  """torchvision VisionTransformer (`conv_proj`, `class_token`, `encoder.*`, `heads.head`) -> zoomjax ViT.

  torchvision adds `encoder.pos_embedding` (1, 1+N, D) after the class token is concatenated, exactly
  like vit_jax's `Transformer/posembed_input/pos_embedding`.
  """
  t = KeyTaker(flat, "torchvision ViT")
  t.conv("conv_proj", "embedding", bias=True)
  t.put("params/cls", t.take("class_token"))
  t.put("params/Transformer/posembed_input/pos_embedding", t.take("encoder.pos_embedding"))
  depth = count_blocks(flat, "encoder.layers.encoder_layer_")
  if depth == 0:
    raise KeyError("torchvision ViT: no `encoder.layers.encoder_layer_0.*` keys in the checkpoint")
  for i in range(depth):
    src, dst = f"encoder.layers.encoder_layer_{i}", f"Transformer/encoderblock_{i}"
    t.norm(f"{src}.ln_1", f"{dst}/LayerNorm_0")
    t.packed_attention(f"{src}.self_attention", f"{dst}/MultiHeadDotProductAttention_1", num_heads)
    t.norm(f"{src}.ln_2", f"{dst}/LayerNorm_2")
    # Older torchvision files name the MLP linears linear_1/linear_2.
    fc1, fc2 = ("mlp.0", "mlp.3") if t.has(f"{src}.mlp.0.weight") else ("mlp.linear_1", "mlp.linear_2")
    t.dense(f"{src}.{fc1}", f"{dst}/MlpBlock_3/Dense_0")
    t.dense(f"{src}.{fc2}", f"{dst}/MlpBlock_3/Dense_1")
  t.norm("encoder.ln", "Transformer/encoder_norm")
  t.dense("heads.head", "head")
  return t.finish()


# -------------------------------------------------------------------------------------- EfficientNet

def put_squeeze_excite(t: KeyTaker, reduce: str, expand: str, dst: str) -> None:
  """Squeeze-excite 1x1 convs with bias (R, C, 1, 1) -> Dense `se_reduce` / `se_expand` kernels (C, R)."""
  for src, name in ((reduce, "se_reduce"), (expand, "se_expand")):
    t.put(f"params/{dst}/{name}/kernel", t.take(f"{src}.weight")[:, :, 0, 0].T)
    t.put(f"params/{dst}/{name}/bias", t.take(f"{src}.bias"))


def convert_efficientnet(flat: Flat) -> dict:
  """torchvision EfficientNet-B* (`features.0` stem, `features.{s}.{b}.block.*`, last `features` = head conv,
  `classifier.1`) -> zoomjax.models.efficientnet (EfficientNetLite module names, blocks numbered 0..n-1)."""
  t = KeyTaker(flat, "torchvision EfficientNet")
  n = count_blocks(flat, "features.")
  if n < 3:
    raise KeyError("torchvision EfficientNet: no `features.{0..}` stem / stages / head keys in the checkpoint")
  t.conv("features.0.0", "stem_conv")
  t.bn("features.0.1", "stem_bn")
  i = 0
  for s in range(1, n - 1):
    for b in range(count_blocks(flat, f"features.{s}.")):
      src, dst = f"features.{s}.{b}.block", f"blocks_{i}"
      layers = count_blocks(flat, f"{src}.")  # 4: expand, dw, SE, project; 3: no expansion.
      names = ("expand", "dw", "se", "project") if layers == 4 else ("dw", "se", "project")
      for j, name in enumerate(names):
        if name == "se":
          put_squeeze_excite(t, f"{src}.{j}.fc1", f"{src}.{j}.fc2", dst)
        else:
          t.conv(f"{src}.{j}.0", f"{dst}/{name}_conv")
          t.bn(f"{src}.{j}.1", f"{dst}/{name}_bn")
      i += 1
  t.conv(f"features.{n - 1}.0", "head_conv")
  t.bn(f"features.{n - 1}.1", "head_bn")
  t.dense("classifier.1", "head")
  return t.finish()
