"""OpenAI CLIP / open_clip ViT state dicts -> zoomjax.models.clip variables.

Key names (OpenAI `.pt` and open_clip `open_clip_pytorch_model.bin` / `.safetensors` share them):
`visual.{conv1.weight (no bias), class_embedding (D,), positional_embedding (1+N, D), ln_pre, transformer.
resblocks.{i}.{ln_1, attn.in_proj_weight, attn.in_proj_bias, attn.out_proj, ln_2, mlp.c_fc, mlp.c_proj},
ln_post, proj (D, E)}` and top-level text keys `token_embedding.weight, positional_embedding, transformer.*,
ln_final, text_projection (D_t, E)`, `logit_scale`. `proj`/`text_projection` are already (in, out).

The packed `in_proj_weight (3D, D)` does not say how many heads split D, so the head width comes from the
architecture: 64 in OpenAI's models and most of open_clip's, but open_clip's ViT-H/14, g/14 and bigG/14 image
towers use 80, 88 and 104 (`head_width` in their model configs); `head_width_for` maps the released widths.
"""
from typing import Optional

from zoomjax.checkpoints.convert_torchvision import Flat, KeyTaker, count_blocks

# Scalars OpenAI's archives carry next to the weights; `attn_mask` is rebuilt from the context length.
_IGNORE = ("input_resolution", "context_length", "vocab_size", "attn_mask")
# Image-tower width -> head width of the released ViT CLIPs whose heads are not 64 wide (open_clip
# model_configs ViT-H-14, ViT-g-14, ViT-bigG-14); every text tower uses 64.
_VISION_HEAD_WIDTHS = {1280: 80, 1408: 88, 1664: 104}


def head_width_for(width: int, tower: str = "visual") -> int:
  """The head width of a released CLIP tower of this width (64 unless open_clip's configs say otherwise)."""
  return _VISION_HEAD_WIDTHS.get(int(width), 64) if tower == "visual" else 64


def strip_module_prefix(flat: Flat) -> dict:
  flat = dict(flat)
  if flat and all(k.startswith("module.") for k in flat):  # DDP-wrapped training checkpoints.
    flat = {k[len("module."):]: v for k, v in flat.items()}
  return flat


def _tower_blocks(t: KeyTaker, src: str, dst: str, num_heads: int) -> None:
  depth = count_blocks(t.flat, f"{src}transformer.resblocks.")
  if depth == 0:
    raise KeyError(f"{t.what}: no `{src}transformer.resblocks.0.*` keys")
  for i in range(depth):
    s, d = f"{src}transformer.resblocks.{i}", f"{dst + '/' if dst else ''}transformer/resblocks_{i}"
    t.norm(f"{s}.ln_1", f"{d}/ln_1")
    t.packed_attention(f"{s}.attn", f"{d}/attn", num_heads)
    t.norm(f"{s}.ln_2", f"{d}/ln_2")
    t.dense(f"{s}.mlp.c_fc", f"{d}/mlp/c_fc")
    t.dense(f"{s}.mlp.c_proj", f"{d}/mlp/c_proj")


def _visual(t: KeyTaker, dst: str, num_heads: Optional[int]) -> None:
  if t.has("visual.attnpool.c_proj.weight") or t.has("visual.layer1.0.conv1.weight"):
    raise ValueError("CLIP: a ResNet image tower (RN50, ...) is not a ViT CLIP: load it as clip_rn50, clip_rn101, "
                     "clip_rn50x4, clip_rn50x16 or clip_rn50x64")
  width = t.flat["visual.conv1.weight"].shape[0] if t.has("visual.conv1.weight") else 0
  t.conv("visual.conv1", f"{dst}/conv1")
  t.put(f"params/{dst}/class_embedding", t.take("visual.class_embedding"))
  t.put(f"params/{dst}/positional_embedding", t.take("visual.positional_embedding"))
  t.norm("visual.ln_pre", f"{dst}/ln_pre")
  _tower_blocks(t, "visual.", dst, num_heads or max(width // head_width_for(width), 1))
  t.norm("visual.ln_post", f"{dst}/ln_post")
  t.put(f"params/{dst}/proj", t.take("visual.proj"))


def _text(t: KeyTaker, dst: str, num_heads: Optional[int]) -> None:
  if not t.has("token_embedding.weight"):
    raise KeyError(f"{t.what}: no text tower (`token_embedding.weight`); keys start with {sorted(t.flat)[:5]}")
  t.put(f"params/{dst}token_embedding/embedding", t.take("token_embedding.weight"))
  t.put(f"params/{dst}positional_embedding", t.take("positional_embedding"))
  _tower_blocks(t, "", dst.rstrip("/"), num_heads or t.flat["token_embedding.weight"].shape[1] // 64)
  t.norm("ln_final", f"{dst}ln_final")
  t.put(f"params/{dst}text_projection", t.take("text_projection"))


def convert_clip(flat: Flat, vision_heads: Optional[int] = None, text_heads: Optional[int] = None) -> dict:
  """Full CLIP (both towers, logit_scale) -> variables of `zoomjax.models.clip.CLIP`."""
  t = KeyTaker(strip_module_prefix(flat), "CLIP")
  _visual(t, "visual", vision_heads)
  _text(t, "text/", text_heads)
  t.put("params/logit_scale", t.take("logit_scale").reshape(()))
  return t.finish(ignore=_IGNORE)


def convert_clip_text(flat: Flat, text_heads: Optional[int] = None) -> dict:
  """The text tower alone -> variables of `zoomjax.models.clip.TextTower` (image-tower keys are ignored)."""
  flat = strip_module_prefix(flat)
  t = KeyTaker(flat, "CLIP text tower")
  _text(t, "", text_heads)
  return t.finish(ignore=("visual.", "logit_scale") + _IGNORE)


def convert_clip_zero_shot(flat: Flat, vision_heads: Optional[int] = None) -> dict:
  """Image tower + `zeroshot_head` (E, C) -> variables of `zoomjax.models.clip.ZeroShotClassifier`.

  The head is written once by `python -m zoomjax.models.clip_cli` (text tower, vocabulary and class names);
  text-tower keys, if present, are ignored here.
  """
  flat = strip_module_prefix(flat)
  if "zeroshot_head" not in flat:
    raise KeyError("CLIP zero-shot classifier: the checkpoint has no `zeroshot_head` (and no text tower to "
                   "compute it from). Pass a full OpenAI/open_clip CLIP checkpoint, or build the classifier "
                   "file once with `python -m zoomjax.models.clip_cli --checkpoint CLIP.pt --vocab "
                   "bpe_simple_vocab_16e6.txt.gz --classnames classnames.txt --out clip_zeroshot.safetensors` "
                   "and pass that file as the checkpoint")
  t = KeyTaker(flat, "CLIP zero-shot classifier")
  _visual(t, "visual", vision_heads)
  t.put("params/zeroshot_head", t.take("zeroshot_head"))
  text = [k for k in flat if not k.startswith("visual.") and k != "zeroshot_head"]
  return t.finish(ignore=tuple(text) + _IGNORE)


# ------------------------------------------------------------------------ open_clip CoCa contrastive towers

# What a CoCa state dict holds beside the image tower: the text tower (`text.*`, read by `convert_coca_text` for
# the zero-shot head) and the captioning decoder (`text_decoder.*`), which zero-shot classification never runs.
COCA_NOT_IMAGE = ("text.", "text_decoder.", "logit_scale", "logit_bias")


def _pool_attention(t: KeyTaker, src: str, dst: str, num_heads: int) -> None:
  """torch nn.MultiheadAttention whose keys/values are wider than its queries (separate `{q,k,v}_proj_weight`
  (E, in)) or as wide (packed `in_proj_weight`) -> flax MultiHeadDotProductAttention."""
  if t.has(f"{src}.in_proj_weight"):
    t.packed_attention(src, dst, num_heads)
    return
  b = t.take(f"{src}.in_proj_bias")
  e = b.shape[0] // 3
  if e % num_heads:
    raise ValueError(f"{t.what}: attention width {e} does not split into {num_heads} heads")
  for i, name in enumerate(("query", "key", "value")):
    w = t.take(f"{src}.{name[0]}_proj_weight")
    t.put(f"params/{dst}/{name}/kernel", w.T.reshape(w.shape[1], num_heads, e // num_heads))
    t.put(f"params/{dst}/{name}/bias", b[i * e:(i + 1) * e].reshape(num_heads, e // num_heads))
  ow = t.take(f"{src}.out_proj.weight")
  t.put(f"params/{dst}/out/kernel", ow.T.reshape(num_heads, e // num_heads, ow.shape[0]))
  t.put(f"params/{dst}/out/bias", t.take(f"{src}.out_proj.bias"))


def convert_coca_zero_shot(flat: Flat, vision_heads: Optional[int] = None, pool_heads: int = 8) -> dict:
  """open_clip CoCa image tower + `zeroshot_head` (E, C) -> variables of `zoomjax.models.clip_coca`'s classifier.

  The tower is CLIP's ViT (`visual.conv1` ... `visual.transformer.*`) followed by the attentional pooler
  (`visual.attn_pool.{query, ln_q, ln_k, attn}`), `visual.ln_post` (E,) and `visual.proj` (E, E); `pool_heads`
  (no tensor stores it) splits the pooler's attention. The text tower and the captioning decoder
  (`COCA_NOT_IMAGE`: `text.*`, `text_decoder.*`) are not part of the classifier and are ignored by name. A file
  without the pooler converts what it has, so the load gate lists every difference (a plain CLIP ViT tower).
  """
  flat = strip_module_prefix(flat)
  if "zeroshot_head" not in flat:
    raise KeyError("CoCa zero-shot classifier: the checkpoint has no `zeroshot_head` and no text tower to compute "
                   "it from; pass open_clip's full CoCa checkpoint or a zero-shot file of python -m "
                   "zoomjax.models.clip_cli --out")
  t = KeyTaker(flat, "CoCa zero-shot classifier")
  _visual(t, "visual", vision_heads)
  if t.has("visual.attn_pool.query"):
    t.put("params/visual/attn_pool/query", t.take("visual.attn_pool.query"))
    t.norm("visual.attn_pool.ln_q", "visual/attn_pool/ln_q")
    t.norm("visual.attn_pool.ln_k", "visual/attn_pool/ln_k")
    _pool_attention(t, "visual.attn_pool.attn", "visual/attn_pool/attn", pool_heads)
  t.put("params/zeroshot_head", t.take("zeroshot_head"))
  return t.finish(ignore=COCA_NOT_IMAGE + _IGNORE)


def convert_coca_text(flat: Flat, text_heads: Optional[int] = None) -> dict:
  """open_clip CoCa text tower (`text.{token_embedding, positional_embedding (L + 1, W), cls_emb (W,),
  transformer.*, ln_final, text_projection}`) -> variables of `zoomjax.models.clip_coca.CocaTextTower`.
  The image tower and the captioning decoder (`text_decoder.*`) are ignored by name."""
  t = KeyTaker(strip_module_prefix(flat), "CoCa text tower")
  if not t.has("text.cls_emb"):
    raise KeyError(f"{t.what}: no `text.cls_emb` (not an open_clip CoCa text tower); keys start with "
                   f"{sorted(t.flat)[:5]}")
  t.put("params/token_embedding/embedding", t.take("text.token_embedding.weight"))
  t.put("params/positional_embedding", t.take("text.positional_embedding"))
  t.put("params/cls_emb", t.take("text.cls_emb"))
  _tower_blocks(t, "text.", "", text_heads or t.flat["text.token_embedding.weight"].shape[1] // 64)
  t.norm("text.ln_final", "ln_final")
  t.put("params/text_projection", t.take("text.text_projection"))
  return t.finish(ignore=("visual.", "text_decoder.", "logit_scale", "logit_bias", "zeroshot_head", "text.attn_mask")
                  + _IGNORE)
