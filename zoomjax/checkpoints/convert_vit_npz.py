"""vit_jax (AugReg) and big_vision ViT `.npz` files -> zoomjax.models.vit.VisionTransformer variables.

Handles, by inspecting the keys (ecosystem.md §3a):
- prefixes `opt/target/` (old vit_jax) and `params/` (big_vision);
- position embedding `Transformer/posembed_input/pos_embedding` (1, 1+N, D) with the cls slot (vit_jax) or a
  top-level `pos_embedding` (1, N, D) added before the cls token (big_vision) -> a zero cls slot;
- block numbering pre-Linen (`MultiHeadDotProductAttention_1`, `LayerNorm_2`, `MlpBlock_3`), Linen
  (`_0`, `LayerNorm_1`, `MlpBlock_0`) and big_vision's scanned `Transformer/encoderblock/` (stacked on axis 0);
- an optional `pre_logits` representation layer. MAP-head (`MAPHead_0`) and GAP models are rejected clearly.
"""
import re

import numpy as np

from zoomjax.checkpoints.convert_torchvision import Flat, KeyTaker

_PREFIXES = ("opt/target/", "params/img/", "params/")
_PRE_LINEN = ("LayerNorm_0", "MultiHeadDotProductAttention_1", "LayerNorm_2", "MlpBlock_3")
_LINEN = ("LayerNorm_0", "MultiHeadDotProductAttention_0", "LayerNorm_1", "MlpBlock_0")
_LEAVES = ("{0}/scale", "{0}/bias", "{1}/query/kernel", "{1}/query/bias", "{1}/key/kernel", "{1}/key/bias",
           "{1}/value/kernel", "{1}/value/bias", "{1}/out/kernel", "{1}/out/bias", "{2}/scale", "{2}/bias",
           "{3}/Dense_0/kernel", "{3}/Dense_0/bias", "{3}/Dense_1/kernel", "{3}/Dense_1/bias")


def convert_vit_npz(flat: Flat) -> dict:
  prefix = next((p for p in _PREFIXES if f"{p}embedding/kernel" in flat), "")
  t = KeyTaker(flat, "ViT .npz", prefix=prefix)
  if not t.has("embedding/kernel"):
    raise KeyError(f"ViT .npz: no `embedding/kernel` (also tried prefixes {_PREFIXES}); "
                   f"keys start with {sorted(flat)[:5]}")
  if t.has("MAPHead_0/probe"):
    raise ValueError("ViT .npz: MAP-head (SigLIP-style) models are not supported; zoomjax's ViT uses the "
                     "class token")
  if not t.has("cls"):
    raise ValueError("ViT .npz: no `cls` token; global-average-pool ViTs are not supported")
  for leaf in ("embedding/kernel", "embedding/bias", "cls", "Transformer/encoder_norm/scale",
               "Transformer/encoder_norm/bias", "head/kernel", "head/bias"):
    t.put(f"params/{leaf}", t.take(leaf))
  if t.has("Transformer/posembed_input/pos_embedding"):
    pe = t.take("Transformer/posembed_input/pos_embedding")
  else:  # big_vision: added to the patches only.
    pe = t.take("pos_embedding")
    pe = np.concatenate([np.zeros((1, 1, pe.shape[-1]), pe.dtype), pe.reshape(1, -1, pe.shape[-1])], axis=1)
  t.put("params/Transformer/posembed_input/pos_embedding", pe)
  if t.has("pre_logits/kernel"):
    t.put("params/pre_logits/kernel", t.take("pre_logits/kernel"))
    t.put("params/pre_logits/bias", t.take("pre_logits/bias"))

  if t.has("Transformer/encoderblock/LayerNorm_0/scale"):  # scanned: stacked blocks
    depth = t.flat[prefix + "Transformer/encoderblock/LayerNorm_0/scale"].shape[0]
    for leaf in _LEAVES:
      stacked = t.take("Transformer/encoderblock/" + leaf.format(*_LINEN))
      for i in range(depth):
        t.put(f"params/Transformer/encoderblock_{i}/" + leaf.format(*_PRE_LINEN), stacked[i])
  else:
    ids = {int(m.group(1)) for k in flat for m in [re.match(re.escape(prefix) + r"Transformer/encoderblock_(\d+)/", k)]
           if m}
    if not ids or ids != set(range(len(ids))):
      raise KeyError(f"ViT .npz: encoder blocks missing or not numbered 0..N-1 (found {sorted(ids)[:5]}...)")
    for i in range(len(ids)):
      src = f"Transformer/encoderblock_{i}/"
      names = _PRE_LINEN if t.has(src + "MultiHeadDotProductAttention_1/query/kernel") else _LINEN
      for leaf in _LEAVES:
        t.put(f"params/Transformer/encoderblock_{i}/" + leaf.format(*_PRE_LINEN), t.take(src + leaf.format(*names)))
  return t.finish()


def vit_npz_config(flat: Flat) -> dict:
  """Architecture read off an npz (width, depth, heads, mlp_dim, patch, classes, grid) for building the module."""
  prefix = next((p for p in _PREFIXES if f"{p}embedding/kernel" in flat), "")
  k = flat[prefix + "embedding/kernel"]
  conv = convert_vit_npz(flat)["params"]
  blocks = [n for n in conv["Transformer"] if n.startswith("encoderblock_")]
  q = conv["Transformer"]["encoderblock_0"]["MultiHeadDotProductAttention_1"]["query"]["kernel"]
  mlp = conv["Transformer"]["encoderblock_0"]["MlpBlock_3"]["Dense_0"]["kernel"]
  return dict(patch_size=int(k.shape[0]), width=int(k.shape[-1]), depth=len(blocks), num_heads=int(q.shape[1]),
              mlp_dim=int(mlp.shape[1]), num_classes=int(conv["head"]["bias"].shape[0]),
              representation_size=(int(conv["pre_logits"]["bias"].shape[0]) if "pre_logits" in conv else None))
