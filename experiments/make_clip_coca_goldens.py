"""Writes tests/golden/clip_coca_*.npz: open_clip's CoCa contrastive towers at tiny widths, and the full-size counts.

Runs ONLY in the throwaway torch venv (torch 2.13 CPU, open_clip_torch 3.3.0 for the committed files):

  /work/refvenv/bin/python experiments/make_clip_coca_goldens.py            # all
  /work/refvenv/bin/python experiments/make_clip_coca_goldens.py separate   # some

Each golden is `open_clip.CoCa` built from the released `coca_ViT-B-32` config with the towers shrunk (a modified
config dict: depths, widths, 4 pooler queries), seeded weights from tests/golden/seeded_weights.py (so the JAX test
rebuilds the identical state dict, `text_decoder.*` included) and the synthetic BPE vocabulary of the tokenizer
golden at CoCa's 76-token context:
- separate: embedding narrower than the image tower (as in both released CoCas): the attentional pooler's
  `nn.MultiheadAttention` keeps separate q/k/v projection weights;
- packed: embedding as wide as the image tower: the pooler's projections come packed (`in_proj_weight`).
Each stores `encode_image` / `encode_text` (unnormalised) on seeded images and tokens (texts of 5, 12 and 76
tokens, so the padding mask and its legacy one-position shift matter), and the zero-shot head open_clip's
`build_zero_shot_classifier` makes from a few class names with the 80 OpenAI templates, with its 100 * cos logits.
`counts`: `sum(p.numel() for p in model.visual.parameters())` and the embedding width of the released configs.
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
# name -> (embed_dim, vision width): the pooler's projections are separate when they differ, packed when equal.
MODELS = {"separate": (16, 32), "packed": (32, 32)}


def _config(embed_dim: int, width: int, vocab_size: int) -> dict:
  """open_clip's coca_ViT-B-32 config dict with the towers shrunk to a few thousand weights."""
  import open_clip  # pylint: disable=import-outside-toplevel
  cfg = json.loads(json.dumps(open_clip.get_model_config("coca_ViT-B-32")))
  cfg["embed_dim"] = embed_dim
  cfg["vision_cfg"].update(image_size=32, layers=1, width=width, head_width=16, mlp_ratio=2.0, patch_size=8,
                           attn_pooler_heads=2, attn_pooler_queries=4)
  # Text heads 64 wide, as in both released towers (no tensor stores the head count).
  cfg["text_cfg"].update(vocab_size=vocab_size, width=128, heads=2, layers=1, mlp_ratio=2.0)
  cfg["multimodal_cfg"].update(vocab_size=vocab_size, width=128, heads=2, layers=1, attn_pooler_heads=2)
  cfg.pop("custom_text", None)
  return cfg


def golden_coca(name: str) -> None:
  import open_clip  # pylint: disable=import-outside-toplevel
  from open_clip.tokenizer import SimpleTokenizer  # pylint: disable=import-outside-toplevel
  from open_clip.zero_shot_classifier import build_zero_shot_classifier  # pylint: disable=import-outside-toplevel
  from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES  # pylint: disable=import-outside-toplevel
  embed_dim, width = MODELS[name]
  with tempfile.TemporaryDirectory() as tmp:
    path = os.path.join(tmp, "vocab.txt.gz")
    sw.write_bpe_vocab(path, sw.synthetic_bpe_merges())
    tok = SimpleTokenizer(path, context_length=76)
    cfg = _config(embed_dim, width, tok.vocab_size)
    model, spec = load_seeded(open_clip.CoCa(**cfg))
    assert any(k.startswith("text_decoder.") for k, _, _ in spec)
    s = cfg["vision_cfg"]["image_size"]
    x = torch.from_numpy(sw.seeded_images((2, 3, s, s)))
    tokens = sw.seeded_tokens(3, 76, tok.vocab_size, lengths=(5, 12, 76))
    head = build_zero_shot_classifier(model, tok, CLASS_NAMES, OPENAI_IMAGENET_TEMPLATES, num_classes_per_batch=2)
    save(f"clip_coca_{name}", spec=sw.encode_spec(spec), input_shape=np.array(x.shape), tokens=tokens,
         image_features=model.encode_image(x, normalize=False).numpy(),
         text_features=model.encode_text(torch.from_numpy(tokens), normalize=False).numpy(),
         class_names=np.array(CLASS_NAMES), zs_head=head.numpy(),
         zs_logits=(100.0 * model.encode_image(x, normalize=True) @ head).numpy(),
         config=np.array(json.dumps(cfg)), vocab_size=np.array(tok.vocab_size))


def golden_counts() -> None:
  import open_clip  # pylint: disable=import-outside-toplevel
  names, counts, embed = [], [], []
  for arch in ("coca_ViT-B-32", "coca_ViT-L-14"):
    model = open_clip.create_model(arch, pretrained=None, device="meta")
    names.append(arch)
    counts.append(sum(p.numel() for p in model.visual.parameters()))
    embed.append(int(model.visual.proj.shape[1]))
    print(arch, counts[-1], embed[-1], "text", sum(p.numel() for p in model.text.parameters()))
  save("clip_coca_counts", names=np.array(names), counts=np.array(counts, np.int64), embed_dim=np.array(embed))


def main(argv) -> None:
  jobs = {**{k: (lambda k=k: golden_coca(k)) for k in MODELS}, "counts": golden_counts}
  for name in argv or jobs:
    torch.manual_seed(0)
    jobs[name]()


if __name__ == "__main__":
  main(sys.argv[1:])
