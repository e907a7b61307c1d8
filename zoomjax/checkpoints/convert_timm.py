"""timm state dicts (`model.safetensors` / `pytorch_model.bin` from the HF hub) -> zoomjax Flax variables.

timm's ResNets use torchvision's key names, so `convert_resnet` is the torchvision converter.
"""
import re
from typing import Any, Dict

import numpy as np

from zoomjax.checkpoints.convert_efficientnet_pytorch import finish_lite, put_lite_head, put_lite_leaf
from zoomjax.checkpoints.convert_torchvision import (Flat, KeyTaker, convert_resnet, count_blocks,
                                                      put_squeeze_excite)

__all__ = ["convert_efficientnet", "convert_efficientnet_lite", "convert_resnet", "convert_vit"]


def convert_vit(flat: Flat, num_heads: int) -> dict:
  """timm VisionTransformer with a class token (`patch_embed.proj`, `cls_token`, `pos_embed`, `blocks.{i}`,
  `norm`, `head`, and `norm_pre` for CLIP-derived models) -> zoomjax.models.vit.VisionTransformer.

  `pos_embed` normally includes the cls slot (1, 1+N, D); models built with `no_embed_class=True` store
  (1, N, D) added before the cls token, which equals a zero cls slot.
  """
  t = KeyTaker(flat, "timm ViT")
  t.conv("patch_embed.proj", "embedding", bias=t.has("patch_embed.proj.bias"))
  cls = t.take("cls_token")
  pe = t.take("pos_embed")
  d = cls.shape[-1]
  if _is_square(pe.shape[1]):  # (1, N, D) for an N = g*g grid: no cls slot (1+N is never square).
    pe = np.concatenate([np.zeros((1, 1, d), pe.dtype), pe], axis=1)
  t.put("params/cls", cls)
  t.put("params/Transformer/posembed_input/pos_embedding", pe)
  if t.has("norm_pre.weight"):
    t.norm("norm_pre", "Transformer/ln_pre")
  depth = count_blocks(flat, "blocks.")
  if depth == 0:
    raise KeyError("timm ViT: no `blocks.0.*` keys in the checkpoint")
  for i in range(depth):
    src, dst = f"blocks.{i}", f"Transformer/encoderblock_{i}"
    t.norm(f"{src}.norm1", f"{dst}/LayerNorm_0")
    mha = f"{dst}/MultiHeadDotProductAttention_1"
    t.qkv(t.take(f"{src}.attn.qkv.weight"), t.take(f"{src}.attn.qkv.bias"), mha, num_heads)
    t.put(f"params/{mha}/out/kernel", t.take(f"{src}.attn.proj.weight").T.reshape(num_heads, d // num_heads, d))
    t.put(f"params/{mha}/out/bias", t.take(f"{src}.attn.proj.bias"))
    t.norm(f"{src}.norm2", f"{dst}/LayerNorm_2")
    t.dense(f"{src}.mlp.fc1", f"{dst}/MlpBlock_3/Dense_0")
    t.dense(f"{src}.mlp.fc2", f"{dst}/MlpBlock_3/Dense_1")
  t.norm("norm", "Transformer/encoder_norm")
  t.dense("head", "head")
  return t.finish()


def _is_square(n: int) -> bool:
  g = int(round(n ** 0.5))
  return g * g == n


# EfficientNet-Lite (`tf_efficientnet_lite*`): InvertedResidual (conv_pw, bn1, conv_dw, bn2, conv_pwl, bn3);
# the first stage is a DepthwiseSeparableConv (conv_dw, bn1, conv_pw, bn2).
_LITE_BLOCK = {"conv_pw": "expand_conv", "bn1": "expand_bn", "conv_dw": "dw_conv", "bn2": "dw_bn",
               "conv_pwl": "project_conv", "bn3": "project_bn"}
_LITE_DS_BLOCK = {"conv_dw": "dw_conv", "bn1": "dw_bn", "conv_pw": "project_conv", "bn2": "project_bn"}
_LITE_TOP = {"conv_stem": "stem_conv", "bn1": "stem_bn", "conv_head": "head_conv", "bn2": "head_bn"}


def convert_efficientnet_lite(flat: Flat) -> Dict[str, Any]:
  """timm `tf_efficientnet_lite*` (`conv_stem`, `blocks.{stage}.{i}.*`, `conv_head`, `classifier`) ->
  zoomjax.models.efficientnet_lite.EfficientNetLite variables (blocks renumbered 0..n-1 in order)."""
  pairs = sorted({tuple(map(int, m.groups())) for k in flat if (m := re.match(r"blocks\.(\d+)\.(\d+)\.", k))})
  flat_index = {p: i for i, p in enumerate(pairs)}
  out: Dict[str, np.ndarray] = {}
  unknown = []
  for key, value in flat.items():
    if key.endswith("num_batches_tracked"):
      continue
    value = np.asarray(value)
    parts = key.split(".")
    if key in ("classifier.weight", "classifier.bias"):
      put_lite_head(out, parts[1], value)
      continue
    if parts[0] == "blocks" and len(parts) == 5:
      i = flat_index[(int(parts[1]), int(parts[2]))]
      table = _LITE_DS_BLOCK if int(parts[1]) == 0 else _LITE_BLOCK
      if parts[3] in table:
        put_lite_leaf(out, f"blocks_{i}/{table[parts[3]]}", parts[4], value, key)
        continue
    elif len(parts) == 2 and parts[0] in _LITE_TOP:
      put_lite_leaf(out, _LITE_TOP[parts[0]], parts[1], value, key)
      continue
    unknown.append(key)
  return finish_lite(out, unknown)


# EfficientNet-B* / L2 (`tf_efficientnet_*`, and timm's own `efficientnet_b*`): the Lite blocks plus
# squeeze-excite (`se.conv_reduce`, `se.conv_expand`); a block without `conv_pwl` is a DepthwiseSeparableConv.
def convert_efficientnet(flat: Flat) -> Dict[str, Any]:
  """timm EfficientNet (`conv_stem`, `blocks.{stage}.{i}.*`, `conv_head`, `classifier`) ->
  zoomjax.models.efficientnet variables (blocks renumbered 0..n-1 in order)."""
  t = KeyTaker(flat, "timm EfficientNet")
  pairs = sorted({tuple(map(int, m.groups())) for k in flat if (m := re.match(r"blocks\.(\d+)\.(\d+)\.", k))})
  if not pairs:
    raise KeyError("timm EfficientNet: no `blocks.{stage}.{i}.*` keys in the checkpoint")
  t.conv("conv_stem", "stem_conv")
  t.bn("bn1", "stem_bn")
  for i, (s, b) in enumerate(pairs):
    src, dst = f"blocks.{s}.{b}", f"blocks_{i}"
    table = _LITE_BLOCK if t.has(f"{src}.conv_pwl.weight") else _LITE_DS_BLOCK
    for name, ours in table.items():
      if ours.endswith("conv"):
        t.conv(f"{src}.{name}", f"{dst}/{ours}")
      else:
        t.bn(f"{src}.{name}", f"{dst}/{ours}")
    put_squeeze_excite(t, f"{src}.se.conv_reduce", f"{src}.se.conv_expand", dst)
  t.conv("conv_head", "head_conv")
  t.bn("bn2", "head_bn")
  t.dense("classifier", "head")
  return t.finish()
