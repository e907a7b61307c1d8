"""Writes tests/golden/clip_eva02_*.npz and clip_eva02_counts.npz: open_clip's EVA-02 CLIP models (a timm
`eva02_*_clip_*` image trunk + open_clip's text tower) on seeded tiny weights, and the full-size parameter counts.

Runs ONLY in a throwaway venv with torch (CPU), timm and open_clip (never a zoomjax dependency):

  /work/refvenv/bin/python experiments/make_clip_eva_goldens.py            # all
  /work/refvenv/bin/python experiments/make_clip_eva_goldens.py b16 counts # some

Versions used for the committed files: torch 2.13.0+cpu, timm 1.0.31, open_clip_torch 3.3.0. Each golden is
open_clip's `CustomTextCLIP` built from the arch's own model config (timm_model_name, timm_pool, timm_proj) with
the timm trunk shrunk (embed_dim / depth / num_heads / img_size overridden in `timm.create_model`), a 16-d
embedding and a one-layer 128-wide text tower over the synthetic BPE vocabulary of the tokenizer golden:
- b16: EVA02-B-16's trunk (split q/k/v, a LayerNorm inside attention, SwiGLU with a sub-LN, RoPE rescaled from
  a 4x4 grid to the 16x16 reference), patch 16 at 64 px; the L-14 towers share every block trait;
- e14: EVA02-E-14's trunk (post-norm blocks, fused qkv with q/v biases, a GELU MLP of 15360/1792 x the width,
  no RoPE), patch 14 at 56 px.
Each stores the spec of the full state dict (tests/golden/seeded_weights.py rebuilds it with numpy), the image
embeddings (`encode_image`, before normalisation), and the zero-shot head that open_clip's
`build_zero_shot_classifier` makes from five class names and three OpenAI templates with its logits.
"""
import json
import os
import pathlib
import sys
import tempfile

import numpy as np
import open_clip
import timm
import torch

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "golden"))
import seeded_weights as sw  # noqa: E402

OUT = REPO / "tests" / "golden"
torch.set_grad_enabled(False)
torch.backends.mkldnn.enabled = False  # Plain fp32 kernels for the reference numbers.

CLASS_NAMES = ("goldfish", "great white shark", "tiger shark", "hen", "junco")
TEMPLATES = ("a bad photo of a {}.", "a photo of many {}.", "itap of a {}.")
# golden -> (open_clip arch, trunk overrides for timm.create_model).
MODELS = {
    "b16": ("EVA02-B-16", dict(embed_dim=32, depth=2, num_heads=2, img_size=64)),
    "e14": ("EVA02-E-14", dict(embed_dim=32, depth=2, num_heads=2, img_size=56)),
}
EMBED_DIM = 16
TEXT = dict(width=128, heads=2, layers=1, mlp_ratio=2.0)
COUNTED = ["EVA02-B-16", "EVA02-L-14", "EVA02-L-14-336", "EVA02-E-14", "EVA02-E-14-plus"]


def save(name, **arrays):
  path = OUT / f"{name}.npz"
  np.savez_compressed(path, **arrays)
  print(f"wrote {path} ({path.stat().st_size / 1024:.1f} KiB)")


def golden(key):
  from open_clip.model import CLIPTextCfg, CLIPVisionCfg, CustomTextCLIP
  from open_clip.tokenizer import SimpleTokenizer
  from open_clip.zero_shot_classifier import build_zero_shot_classifier
  arch, trunk = MODELS[key]
  cfg = open_clip.get_model_config(arch)
  create = timm.create_model
  timm.create_model = lambda name, **kw: create(name, **dict(kw, **trunk))
  try:
    with tempfile.TemporaryDirectory() as tmp:
      path = os.path.join(tmp, "vocab.txt.gz")
      sw.write_bpe_vocab(path, sw.synthetic_bpe_merges())
      tok = SimpleTokenizer(path)
      vision = CLIPVisionCfg(**dict(cfg["vision_cfg"], image_size=trunk["img_size"]))
      model = CustomTextCLIP(EMBED_DIM, vision, CLIPTextCfg(context_length=77, vocab_size=tok.vocab_size, **TEXT))
      spec = [(k, tuple(v.shape), "i" if not v.dtype.is_floating_point else "f")
              for k, v in model.state_dict().items()]
      sd = sw.seeded_state_dict(spec)
      model.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()}, strict=True)
      model.eval()
      s = trunk["img_size"]
      x = torch.from_numpy(sw.seeded_images((2, 3, s, s)))
      head = build_zero_shot_classifier(model, tok, CLASS_NAMES, TEMPLATES, num_classes_per_batch=2)
      emb = model.encode_image(x)
      logits = 100.0 * model.encode_image(x, normalize=True) @ head
  finally:
    timm.create_model = create
  config = dict(arch=arch, trunk=trunk, embed_dim=EMBED_DIM, text=TEXT, timm=cfg["vision_cfg"]["timm_model_name"])
  save(f"clip_eva02_{key}", spec=sw.encode_spec(spec), input_shape=np.array(x.shape), image_embeddings=emb.numpy(),
       zs_head=head.numpy(), zs_logits=logits.numpy(), class_names=np.array(CLASS_NAMES),
       templates=np.array(TEMPLATES), config=np.array(json.dumps(config)), vocab_size=np.array(tok.vocab_size))


def golden_counts():
  """{arch: parameter count of `model.visual`} and each arch's embedding width (the head adds E x 1000)."""
  names, counts, embed = [], [], []
  for arch in COUNTED:
    model = open_clip.create_model(arch, pretrained=None, device="meta")
    names.append(arch)
    counts.append(sum(p.numel() for p in model.visual.parameters()))
    embed.append(int(open_clip.get_model_config(arch)["embed_dim"]))
    print(arch, counts[-1], embed[-1])
  save("clip_eva02_counts", names=np.array(names), counts=np.array(counts, np.int64), embed_dim=np.array(embed))


GOLDENS = {**{k: (lambda k=k: golden(k)) for k in MODELS}, "counts": golden_counts}

if __name__ == "__main__":
  for name in sys.argv[1:] or list(GOLDENS):
    torch.manual_seed(0)
    GOLDENS[name]()
