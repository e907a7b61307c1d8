"""CLIP architectures: the released ViT CLIPs' tower sizes (`ARCHS`) and the sizes a state dict holds.

`ARCHS` follows open_clip's model_configs/<name>.json; OpenAI's released ViTs answer to both their own names
("ViT-L/14@336px") and open_clip's ("ViT-L-14-336"). `config_from_state_dict` reads the tower sizes of an
OpenAI/open_clip state dict; the attention head count, which no tensor stores, is that of the released model of
that width (`convert_clip.head_width_for`: 64, or 80/88/104 for open_clip's H/14, g/14, bigG/14 image towers).
"""
import math
from typing import Any, Dict, Optional

import numpy as np

from zoomjax.checkpoints import CheckpointError
from zoomjax.checkpoints.convert_clip import head_width_for
from zoomjax.errors import UnknownNameError

__all__ = ["ARCHS", "config_from_state_dict", "openai_config", "stored_image_size"]


def _arch(patch: int, width: int, depth: int, head_width: int, mlp_dim: int, embed_dim: int, text_width: int,
          text_depth: int, text_heads: int, image_size: int = 224) -> Dict[str, Any]:
  """One `ARCHS` entry: image and text tower sizes (open_clip's config fields) and the input side."""
  vision = dict(patch_size=patch, width=width, depth=depth, num_heads=width // head_width, mlp_dim=mlp_dim,
                embed_dim=embed_dim)
  text = dict(vocab_size=49408, context_length=77, width=text_width, depth=text_depth, num_heads=text_heads,
              mlp_dim=4 * text_width, embed_dim=embed_dim)
  return {"vision": vision, "text": text, "image_size": image_size}


# open_clip's model_configs/<name>.json (vision layers/width/head_width/int(width * mlp_ratio)/patch, text
# width/layers/heads, embed_dim, image_size); OpenAI's released ViTs are the first four.
ARCHS: Dict[str, Dict[str, Any]] = {
    "ViT-B-32": _arch(32, 768, 12, 64, 3072, 512, 512, 12, 8),
    "ViT-B-16": _arch(16, 768, 12, 64, 3072, 512, 512, 12, 8),
    "ViT-L-14": _arch(14, 1024, 24, 64, 4096, 768, 768, 12, 12),
    "ViT-L-14-336": _arch(14, 1024, 24, 64, 4096, 768, 768, 12, 12, image_size=336),
    "ViT-B-16-plus-240": _arch(16, 896, 12, 64, 3584, 640, 640, 12, 10, image_size=240),
    "ViT-H-14": _arch(14, 1280, 32, 80, 5120, 1024, 1024, 24, 16),
    "ViT-g-14": _arch(14, 1408, 40, 88, 6144, 1024, 1024, 24, 16),  # mlp_ratio 4.3637
    "ViT-bigG-14": _arch(14, 1664, 48, 104, 8192, 1280, 1280, 32, 20),  # mlp_ratio 4.9231
}
_OPENAI_NAMES = {"ViT-B/32": "ViT-B-32", "ViT-B/16": "ViT-B-16", "ViT-L/14": "ViT-L-14",
                 "ViT-L/14@336px": "ViT-L-14-336"}


def openai_config(name: str) -> Dict[str, Dict[str, Any]]:
  """Tower configs ({"vision", "text"}) of a released ViT CLIP: OpenAI's name ("ViT-L/14", "ViT-L/14@336px") or
  open_clip's ("ViT-H-14")."""
  arch = _OPENAI_NAMES.get(name, name)
  if arch not in ARCHS:
    raise UnknownNameError(f"unknown CLIP model {name!r}; choose one of {', '.join(list(_OPENAI_NAMES) + list(ARCHS))}")
  return {"vision": dict(ARCHS[arch]["vision"]), "text": dict(ARCHS[arch]["text"])}


def _depth(flat: Dict[str, np.ndarray], prefix: str) -> int:
  """Number of residual blocks under `prefix` (counted, since no tensor stores it)."""
  n = 0
  while f"{prefix}transformer.resblocks.{n}.ln_1.weight" in flat:
    n += 1
  return n


def config_from_state_dict(flat: Dict[str, np.ndarray], vision_head_width: Optional[int] = None,
                           text_head_width: Optional[int] = None, vision: bool = True) -> Dict[str, Dict[str, Any]]:
  """Tower sizes of an OpenAI/open_clip state dict. Head widths are not stored in any tensor: by default those
  of the released model of that width (`convert_clip.head_width_for`: 64, or open_clip's 80/88/104 for the
  H/14, g/14, bigG/14 image towers). `vision=False` reads the text tower alone (any image tower)."""
  if not vision:
    return _text_config(flat, text_head_width)
  if "visual.attnpool.c_proj.weight" in flat:
    raise CheckpointError("a ResNet CLIP image tower (OpenAI's ModifiedResNet), not a ViT: load it as clip_rn50, "
                          "clip_rn101, clip_rn50x4, clip_rn50x16 or clip_rn50x64")
  if "visual.attn_pool.query" in flat:
    raise CheckpointError("an open_clip CoCa image tower (attentional pooler `visual.attn_pool`), not a plain ViT "
                          "CLIP: load it as openclip_coca_vit_b32 or openclip_coca_vit_l14")
  if "visual.conv1.weight" not in flat:
    raise CheckpointError("not an OpenAI/open_clip ViT CLIP state dict: no `visual.conv1.weight`; keys start "
                          f"with {sorted(flat)[:5]}")
  conv = flat["visual.conv1.weight"]
  vw = int(conv.shape[0])
  vhw = vision_head_width or head_width_for(vw)
  vision = dict(patch_size=int(conv.shape[-1]), width=vw, depth=_depth(flat, "visual."),
                num_heads=max(vw // vhw, 1),
                mlp_dim=int(flat["visual.transformer.resblocks.0.mlp.c_fc.weight"].shape[0]),
                embed_dim=int(flat["visual.proj"].shape[1]))
  return {"vision": vision, **_text_config(flat, text_head_width)}


def _text_config(flat: Dict[str, np.ndarray], text_head_width: Optional[int]) -> Dict[str, Dict[str, Any]]:
  """{"text": sizes} of the state dict's text tower; {} without one."""
  out = {}
  if "token_embedding.weight" in flat:
    tw = int(flat["token_embedding.weight"].shape[1])
    out["text"] = dict(vocab_size=int(flat["token_embedding.weight"].shape[0]),
                       context_length=int(flat["positional_embedding"].shape[0]), width=tw,
                       depth=_depth(flat, ""), num_heads=max(tw // (text_head_width or head_width_for(tw, "text")), 1),
                       mlp_dim=int(flat["transformer.resblocks.0.mlp.c_fc.weight"].shape[0]),
                       embed_dim=int(flat["text_projection"].shape[1]))
  return out


def stored_image_size(flat: Dict[str, np.ndarray]) -> int:
  """Input side the image tower was trained at: patch size x the side of its square position grid."""
  n = int(flat["visual.positional_embedding"].shape[0]) - 1
  side = math.isqrt(n)
  if side * side != n:
    raise CheckpointError(f"visual.positional_embedding has {n} patch tokens: not a square grid")
  return side * int(flat["visual.conv1.weight"].shape[-1])
