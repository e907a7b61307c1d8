"""timm state dicts (`model.safetensors` / `pytorch_model.bin` from the HF hub) -> zoomjax Flax variables.

timm's ResNets use torchvision's key names, so `convert_resnet` is the torchvision converter.
"""
import numpy as np

from zoomjax.checkpoints.convert_torchvision import Flat, KeyTaker, convert_resnet, count_blocks

__all__ = ["convert_resnet", "convert_vit"]


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
