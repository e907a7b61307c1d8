"""timm ConvNeXt / ConvNeXt-V2, timm EVA-02 and OpenCLIP ConvNeXt / EVA-02 towers -> zoomjax Flax variables.

The files users bring are timm's `model.safetensors` (HF hub `timm/<model>.<tag>`) and open_clip's
`open_clip_pytorch_model.bin` / `open_clip_model.safetensors`, whose image tower is a timm trunk under
`visual.trunk.` plus a projection under `visual.head.`. Every converter consumes each key it understands and
fails naming the ones it did not use (`KeyTaker`), so a file of another family never loads half-way.
"""
from typing import Optional

import numpy as np

from zoomjax.checkpoints.convert_torchvision import Flat, KeyTaker, count_blocks

__all__ = ["convert_eva", "convert_openclip_convnext", "convert_openclip_eva", "convert_timm_convnext", "eva_sizes",
           "timm_convnext_stages"]


def timm_convnext_stages(flat: Flat, prefix: str = ""):
  """((width, blocks), ...) per stage of a timm ConvNeXt state dict (widths from each stage's first `conv_dw`)."""
  stages = []
  while n := count_blocks(flat, f"{prefix}stages.{len(stages)}.blocks."):
    stages.append((int(np.shape(flat[f"{prefix}stages.{len(stages)}.blocks.0.conv_dw.weight"])[0]), n))
  return tuple(stages)


def _linear_or_1x1(t: KeyTaker, src: str, dst: str) -> None:
  """A Linear (out, in) or, in `conv_mlp` variants (ConvNeXt-V2 atto..nano), a 1x1 conv (out, in, 1, 1)."""
  w = t.take(f"{src}.weight")
  t.put(f"params/{dst}/kernel", w.reshape(w.shape[0], -1).T)
  t.put(f"params/{dst}/bias", t.take(f"{src}.bias"))


def _timm_convnext(t: KeyTaker, dst: str, classifier: bool) -> None:
  """timm ConvNeXt (`stem.{0,1}`, `stages.{s}.downsample.{0,1}`, `stages.{s}.blocks.{b}.*`, `head.norm`,
  `head.fc`) under the taker's prefix -> zoomjax.models.convnext.ConvNeXt variables at `dst`."""
  stages = timm_convnext_stages(t.flat, t.prefix)
  if not stages:
    raise KeyError(f"{t.what}: no `{t.prefix}stages.0.blocks.0.*` keys (not a timm ConvNeXt)")
  p = dst + "/" if dst else ""
  t.conv("stem.0", f"{p}stem_conv", bias=True)
  t.norm("stem.1", f"{p}stem_norm")
  for s, (_, n) in enumerate(stages):
    if s > 0:
      t.norm(f"stages.{s}.downsample.0", f"{p}stages_{s}_downsample_norm")
      t.conv(f"stages.{s}.downsample.1", f"{p}stages_{s}_downsample_conv", bias=True)
    for b in range(n):
      src, blk = f"stages.{s}.blocks.{b}", f"{p}stages_{s}_blocks_{b}"
      t.conv(f"{src}.conv_dw", f"{blk}/conv_dw", bias=True)
      t.norm(f"{src}.norm", f"{blk}/norm")
      _linear_or_1x1(t, f"{src}.mlp.fc1", f"{blk}/fc1")
      if t.has(f"{src}.mlp.grn.weight"):  # ConvNeXt-V2
        t.put(f"params/{blk}/grn/gamma", t.take(f"{src}.mlp.grn.weight").reshape(-1))
        t.put(f"params/{blk}/grn/beta", t.take(f"{src}.mlp.grn.bias").reshape(-1))
      _linear_or_1x1(t, f"{src}.mlp.fc2", f"{blk}/fc2")
      if t.has(f"{src}.gamma"):  # ConvNeXt's layer scale (V2 has none)
        t.put(f"params/{blk}/gamma", t.take(f"{src}.gamma").reshape(-1))
  t.norm("head.norm", f"{p}head_norm")
  if classifier:
    t.dense("head.fc", f"{p}head")


def convert_timm_convnext(flat: Flat, what: str = "timm ConvNeXt") -> dict:
  """timm `convnext_*` / `convnextv2_*` classifier -> zoomjax.models.convnext.ConvNeXt variables."""
  t = KeyTaker(flat, what)
  _timm_convnext(t, "", classifier=True)
  return t.finish()


def convert_openclip_convnext(flat: Flat, what: str = "OpenCLIP ConvNeXt") -> dict:
  """open_clip ConvNeXt image tower (`visual.trunk.*` timm ConvNeXt without classifier; `visual.head.proj`
  or `visual.head.mlp.{fc1, fc2}`) + `zeroshot_head` (E, C) -> zoomjax.models.clip_convnext variables.

  Text-tower keys, if present, are ignored (the zero-shot head replaces them)."""
  if "zeroshot_head" not in flat:
    raise KeyError(f"{what}: the checkpoint has no `zeroshot_head` and no text tower to compute it from; pass "
                   "open_clip's full checkpoint or a zero-shot file of python -m zoomjax.models.clip_cli --out")
  t = KeyTaker(flat, what)
  t.prefix = "visual.trunk."
  _timm_convnext(t, "trunk", classifier=False)
  t.prefix = "visual.head."
  if t.has("proj.weight"):
    t.dense("proj", "proj", bias=False)
  else:
    t.dense("mlp.fc1", "mlp_fc1")
    t.dense("mlp.fc2", "mlp_fc2", bias=t.has("mlp.fc2.bias"))
  t.prefix = ""
  t.put("params/zeroshot_head", t.take("zeroshot_head"))
  return t.finish(ignore=tuple(sorted({k for k in flat if not k.startswith("visual.") and k != "zeroshot_head"})))


def convert_eva(flat: Flat, what: str = "timm EVA-02") -> dict:
  """timm `eva02_*` classifier (`patch_embed.proj`, `cls_token`, `pos_embed`, `blocks.{i}.{norm1, attn,
  norm2, mlp}`, `fc_norm` or `norm`, `head`) -> zoomjax.models.eva.Eva variables.

  Attention comes fused (`attn.qkv.weight` with `q_bias`, `v_bias`; tiny/small) or split (`q_proj`, `k_proj`,
  `v_proj`; base/large); the key projection has no bias in either. The SwiGLU MLP comes packed (`mlp.fc1`,
  gate half first) or split (`mlp.fc1_g`, `mlp.fc1_x`, with the sub-LN `mlp.norm`); a plain GELU MLP's `mlp.fc1`
  is as wide as `mlp.fc2`'s input. RoPE has no weights.
  """
  t = KeyTaker(flat, what)
  _timm_eva(t, "")
  return t.finish(ignore=("rope.",))


def convert_openclip_eva(flat: Flat, what: str = "OpenCLIP EVA-02") -> dict:
  """open_clip EVA-02 CLIP image tower (`visual.trunk.*`: a timm `eva02_*_clip_*` model whose `head` is the
  projection to the embedding) + `zeroshot_head` (E, C) -> zoomjax.models.clip_eva variables.

  Text-tower keys (`text.*`, `logit_scale`), if present, are ignored (the zero-shot head replaces them)."""
  if "zeroshot_head" not in flat:
    raise KeyError(f"{what}: the checkpoint has no `zeroshot_head` and no text tower to compute it from; pass "
                   "open_clip's full checkpoint or a zero-shot file of python -m zoomjax.models.clip_cli --out")
  t = KeyTaker(flat, what, prefix="visual.trunk.")
  _timm_eva(t, "trunk")
  t.finish(ignore=("rope.",))
  t.prefix = ""
  t.put("params/zeroshot_head", t.take("zeroshot_head"))
  text = {k for k in flat if not k.startswith("visual.") and k != "zeroshot_head"}
  return t.finish(ignore=("visual.trunk.rope.", *sorted(text)))


def _timm_eva(t: KeyTaker, dst_root: str) -> None:
  """A timm EVA under the taker's prefix -> zoomjax.models.eva.Eva variables at `dst_root`."""
  depth = count_blocks(t.flat, f"{t.prefix}blocks.")
  if depth == 0 or not t.has("blocks.0.norm1.weight"):
    raise KeyError(f"{t.what}: no `{t.prefix}blocks.0.norm1.*` keys (not a timm EVA)")
  root = dst_root + "/" if dst_root else ""
  t.conv("patch_embed.proj", f"{root}embedding", bias=True)
  t.put(f"params/{root}cls", t.take("cls_token"))
  t.put(f"params/{root}pos_embedding", t.take("pos_embed"))
  for i in range(depth):
    src, dst = f"blocks.{i}", f"{root}blocks_{i}"
    t.norm(f"{src}.norm1", f"{dst}/norm1")
    a = f"{src}.attn"
    if t.has(f"{a}.qkv.weight"):
      q, k, v = np.split(t.take(f"{a}.qkv.weight"), 3, axis=0)
      for name, w in (("q", q), ("k", k), ("v", v)):
        t.put(f"params/{dst}/attn/{name}/kernel", w.T)
      t.put(f"params/{dst}/attn/q/bias", t.take(f"{a}.q_bias"))
      t.put(f"params/{dst}/attn/v/bias", t.take(f"{a}.v_bias"))
    else:
      t.dense(f"{a}.q_proj", f"{dst}/attn/q")
      t.dense(f"{a}.k_proj", f"{dst}/attn/k", bias=False)
      t.dense(f"{a}.v_proj", f"{dst}/attn/v")
    if t.has(f"{a}.norm.weight"):
      t.norm(f"{a}.norm", f"{dst}/attn/norm")
    t.dense(f"{a}.proj", f"{dst}/attn/proj")
    t.norm(f"{src}.norm2", f"{dst}/norm2")
    m = f"{src}.mlp"
    if t.has(f"{m}.fc1.weight") and t.flat[f"{t.prefix}{m}.fc1.weight"].shape[0] == t.flat[
        f"{t.prefix}{m}.fc2.weight"].shape[1]:  # plain Mlp: fc1 -> GELU -> fc2
      t.dense(f"{m}.fc1", f"{dst}/mlp/fc1")
    elif t.has(f"{m}.fc1.weight"):  # GluMlp: act(first half) * second half
      w_g, w_x = np.split(t.take(f"{m}.fc1.weight"), 2, axis=0)
      b_g, b_x = np.split(t.take(f"{m}.fc1.bias"), 2, axis=0)
      t.put(f"params/{dst}/mlp/fc1_g/kernel", w_g.T)
      t.put(f"params/{dst}/mlp/fc1_g/bias", b_g)
      t.put(f"params/{dst}/mlp/fc1_x/kernel", w_x.T)
      t.put(f"params/{dst}/mlp/fc1_x/bias", b_x)
    else:
      t.dense(f"{m}.fc1_g", f"{dst}/mlp/fc1_g")
      t.dense(f"{m}.fc1_x", f"{dst}/mlp/fc1_x")
    if t.has(f"{m}.norm.weight"):
      t.norm(f"{m}.norm", f"{dst}/mlp/norm")
    t.dense(f"{m}.fc2", f"{dst}/mlp/fc2")
    for g in ("gamma_1", "gamma_2"):
      if t.has(f"{src}.{g}"):
        t.put(f"params/{dst}/{g}", t.take(f"{src}.{g}"))
  for norm in ("norm", "fc_norm"):
    if t.has(f"{norm}.weight"):
      t.norm(norm, f"{root}{norm}")
  t.dense("head", f"{root}head")


def eva_sizes(flat: Flat) -> Optional[dict]:
  """Width, depth, MLP width and whether the MLP has a sub-LN, read from a timm EVA state dict (None: not one)."""
  if "patch_embed.proj.weight" not in flat or "blocks.0.norm1.weight" not in flat:
    return None
  w = np.shape(flat["patch_embed.proj.weight"])
  fc2 = np.shape(flat["blocks.0.mlp.fc2.weight"])
  return dict(width=int(w[0]), patch_size=int(w[-1]), depth=count_blocks(flat, "blocks."), mlp_dim=int(fc2[1]),
              scale_mlp="blocks.0.mlp.norm.weight" in flat,
              grid=int(round((np.shape(flat["pos_embed"])[1] - 1) ** 0.5)))
