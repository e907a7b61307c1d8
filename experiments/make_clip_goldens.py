"""Writes tests/golden/clip_*.npz: open_clip / timm outputs for the CLIP families (and timm position resampling).

Runs ONLY in the throwaway torch venv (open_clip_torch 3.3.0, timm 1.0.31, torch 2.14.1 for the committed files):

  /tmp/torchenv/bin/python experiments/make_clip_goldens.py          # all
  /tmp/torchenv/bin/python experiments/make_clip_goldens.py h14 resample

One tiny open_clip CLIP per family trait (image widths where 64-wide heads would give another head count),
with seeded weights (tests/golden/seeded_weights.py, so the JAX tests
rebuild the identical state dict) and the synthetic BPE vocabulary of the tokenizer golden:
- h14: 80-wide image heads (open_clip ViT-H/14's head_width), GELU;
- g14: 88-wide heads and ViT-g/14's mlp_ratio 4.3637 (int(width * ratio) hidden units), GELU;
- bigg14: 104-wide heads, mlp_ratio 4.9231 and a text tower as wide as the embedding (bigG's 1280 = 1280), GELU;
- l14_336: OpenAI's QuickGELU at a patch-14 position grid that is not 224's (5x5: 70 px, as 24x24 is 336 px),
  plus the same weights run at 98 px after open_clip's own `resize_pos_embed`.
Each stores both towers' embeddings on seeded images/tokens and the zero-shot classifier open_clip's
`build_zero_shot_classifier` makes from a few class names with the 80 OpenAI templates (100 * cos logits).
`resample`: timm's `resample_abs_pos_embed` on seeded position embeddings (up, down, non-square, 16 -> 24).
"""
import json
import os
import pathlib
import sys
import tempfile

import numpy as np
import torch

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "experiments"))
from make_goldens import load_seeded, save, sw  # noqa: E402  (also disables grad and mkldnn)

CLASS_NAMES = ("goldfish", "great white shark", "tiger shark", "hen", "junco")
# name -> open_clip tower configs (vision head_width / mlp_ratio are the family traits) and activation.
MODELS = {
    "h14": dict(embed_dim=16, quick_gelu=False, image_size=32,
                vision=dict(layers=2, width=320, head_width=80, patch_size=8, mlp_ratio=2.0),
                text=dict(width=128, heads=2, layers=1, mlp_ratio=2.0)),
    "g14": dict(embed_dim=16, quick_gelu=False, image_size=32,
                vision=dict(layers=1, width=264, head_width=88, patch_size=8, mlp_ratio=4.3637),
                text=dict(width=128, heads=2, layers=1, mlp_ratio=2.0)),
    "bigg14": dict(embed_dim=128, quick_gelu=False, image_size=32,
                   vision=dict(layers=1, width=208, head_width=104, patch_size=8, mlp_ratio=4.9231),
                   text=dict(width=128, heads=2, layers=1, mlp_ratio=2.0)),
    "l14_336": dict(embed_dim=16, quick_gelu=True, image_size=70, resized=98,
                    vision=dict(layers=1, width=128, head_width=64, patch_size=14, mlp_ratio=4.0),
                    text=dict(width=128, heads=2, layers=1, mlp_ratio=2.0)),
}


def _build(cfg, vocab_size, image_size):
  import open_clip
  from open_clip.model import CLIPTextCfg, CLIPVisionCfg
  return open_clip.CLIP(
      embed_dim=cfg["embed_dim"], quick_gelu=cfg["quick_gelu"],
      vision_cfg=CLIPVisionCfg(image_size=image_size, **cfg["vision"]),
      text_cfg=CLIPTextCfg(context_length=77, vocab_size=vocab_size, **cfg["text"]))


def golden_clip(name):
  import open_clip
  from open_clip.model import resize_pos_embed
  from open_clip.tokenizer import SimpleTokenizer
  from open_clip.zero_shot_classifier import build_zero_shot_classifier
  from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES
  cfg = MODELS[name]
  with tempfile.TemporaryDirectory() as tmp:
    path = os.path.join(tmp, "vocab.txt.gz")
    sw.write_bpe_vocab(path, sw.synthetic_bpe_merges())
    tok = SimpleTokenizer(path)
    model, spec = load_seeded(_build(cfg, tok.vocab_size, cfg["image_size"]))
    s = cfg["image_size"]
    x = torch.from_numpy(sw.seeded_images((2, 3, s, s)))
    tokens = sw.seeded_tokens(3, 77, tok.vocab_size, lengths=(5, 12, 77))
    head = build_zero_shot_classifier(model, tok, CLASS_NAMES, OPENAI_IMAGENET_TEMPLATES, num_classes_per_batch=2)
    img = model.encode_image(x)
    out = dict(spec=sw.encode_spec(spec), input_shape=np.array(x.shape), tokens=tokens,
               image_features=img.numpy(), text_features=model.encode_text(torch.from_numpy(tokens)).numpy(),
               class_names=np.array(CLASS_NAMES), zs_head=head.numpy(),
               zs_logits=(100.0 * model.encode_image(x, normalize=True) @ head).numpy(),
               config=np.array(json.dumps(cfg)), vocab_size=np.array(tok.vocab_size))
    if "resized" in cfg:  # The same weights at another input size, through open_clip's own resampling.
      r = cfg["resized"]
      big = _build(cfg, tok.vocab_size, r).eval()
      sd = {k: v.clone() for k, v in model.state_dict().items()}
      resize_pos_embed(sd, big)
      big.load_state_dict(sd, strict=True)
      xr = torch.from_numpy(sw.seeded_images((2, 3, r, r)))
      out.update(resized_input_shape=np.array(xr.shape), resized_image_features=big.encode_image(xr).numpy())
    assert isinstance(open_clip.__version__, str)
  save(f"clip_{name}_tiny", **out)


def golden_resample():
  from timm.layers import resample_abs_pos_embed
  cases = {"up": ((7, 7), (10, 10), 8), "down": ((7, 7), (4, 4), 8), "rect": ((7, 7), (5, 9), 8),
           "l14_336": ((16, 16), (24, 24), 4)}
  out = {}
  for key, (old, new, d) in cases.items():
    src = sw.seeded_array(f"pos_embed.{key}", (1, 1 + old[0] * old[1], d))
    got = resample_abs_pos_embed(torch.from_numpy(src), list(new), list(old), num_prefix_tokens=1)
    out[f"{key}_src"], out[f"{key}_out"], out[f"{key}_grid"] = src, got.numpy(), np.array(new)
  save("clip_pos_embed_resample", **out)


def main(argv):
  jobs = {**{k: (lambda k=k: golden_clip(k)) for k in MODELS}, "resample": golden_resample}
  for name in argv or jobs:
    torch.manual_seed(0)
    jobs[name]()


if __name__ == "__main__":
  main(sys.argv[1:])
