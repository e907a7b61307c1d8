"""Writes tests/golden/clip_rn_tiny.npz and tests/golden/siglip_*.npz: open_clip's outputs for CLIP's ResNet towers
and for SigLIP / SigLIP 2.

Runs ONLY in the throwaway torch venv (open_clip_torch 3.3.0, timm 1.0.31, torch 2.13 for the committed files):

  /work/refvenv/bin/python experiments/make_clip_resnet_siglip_goldens.py          # all
  /work/refvenv/bin/python experiments/make_clip_resnet_siglip_goldens.py rn

Seeded weights come from tests/golden/seeded_weights.py (so the JAX tests rebuild the identical state dict):
- rn: a tiny open_clip CLIP with OpenAI's ModifiedResNet image tower (layers 1-2-1-1, width 8: 256 channels
  into a 4-head attention pool over a 3x3 grid at 96 px; a second block in layer 2 without a shortcut conv) and
  a QuickGELU text tower with the synthetic BPE vocabulary of the tokenizer golden. Stores both towers'
  embeddings on seeded images/tokens, open_clip's `build_zero_shot_classifier` head from a few class names with
  the 80 OpenAI templates, and its 100 * cos logits.
- siglip: a tiny SigLIP in open_clip's layout: timm's VisionTransformer with MAP pooling (`global_pool="map"`, no
  class token; its `attn_pool` is big_vision's MAPHead) and open_clip's bidirectional `TextTransformer` pooling
  the last token, with `logit_scale` / `logit_bias`. big_vision (which trained the released checkpoints) uses
  flax's tanh-approximated GELU everywhere, so both towers are built with it here (open_clip's SigLIP 1 configs
  use exact GELU in the text tower). The SentencePiece model is tests/golden/siglip_spm.py's, trained here as in
  the test; the class prompts are tokenized by an independent reading of big_vision's `tokenize(eos="sticky")`
  (lowercase, end token appended, cut to length - 1 + end, padded) and stored, with the zero-shot head
  (normalised template embeddings averaged, re-normalised) and the sigmoid logits exp(t) * cos + b.
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
RN = dict(embed_dim=16, quick_gelu=True, image_size=96, vision=dict(layers=[1, 2, 1, 1], width=8, head_width=64),
          text=dict(width=128, heads=2, layers=1, mlp_ratio=2.0))


def golden_rn():
  import open_clip
  from open_clip.model import CLIPTextCfg, CLIPVisionCfg
  from open_clip.tokenizer import SimpleTokenizer
  from open_clip.zero_shot_classifier import build_zero_shot_classifier
  from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES
  cfg = RN
  with tempfile.TemporaryDirectory() as tmp:
    path = os.path.join(tmp, "vocab.txt.gz")
    sw.write_bpe_vocab(path, sw.synthetic_bpe_merges())
    tok = SimpleTokenizer(path)
    model = open_clip.CLIP(embed_dim=cfg["embed_dim"], quick_gelu=cfg["quick_gelu"],
                           vision_cfg=CLIPVisionCfg(image_size=cfg["image_size"], **cfg["vision"]),
                           text_cfg=CLIPTextCfg(context_length=77, vocab_size=tok.vocab_size, **cfg["text"]))
    assert type(model.visual).__name__ == "ModifiedResNet" and model.visual.attnpool.num_heads == 4
    model, spec = load_seeded(model)
    s = cfg["image_size"]
    x = torch.from_numpy(sw.seeded_images((2, 3, s, s)))
    tokens = sw.seeded_tokens(3, 77, tok.vocab_size, lengths=(5, 12, 77))
    head = build_zero_shot_classifier(model, tok, CLASS_NAMES, OPENAI_IMAGENET_TEMPLATES, num_classes_per_batch=2)
    save("clip_rn_tiny", spec=sw.encode_spec(spec), input_shape=np.array(x.shape), tokens=tokens,
         image_features=model.encode_image(x).numpy(),
         text_features=model.encode_text(torch.from_numpy(tokens)).numpy(),
         class_names=np.array(CLASS_NAMES), zs_head=head.numpy(),
         zs_logits=(100.0 * model.encode_image(x, normalize=True) @ head).numpy(),
         config=np.array(json.dumps(cfg)), vocab_size=np.array(tok.vocab_size),
         open_clip_version=np.array(open_clip.__version__))


SIGLIP = dict(image_size=32, patch_size=8, width=64, depth=2, heads=4, mlp_ratio=1.5, text_depth=1, context=16)


def _sticky_tokens(sp, text, length, pad_id):
  ids = list(sp.EncodeAsIds(text.lower())) + [sp.eos_id()]
  ids = ids[:length - 1] + ids[-1:] if len(ids) > length else ids + [pad_id] * (length - len(ids))
  return ids


def golden_siglip():
  import functools
  import importlib.util
  import open_clip
  import sentencepiece
  import timm
  from open_clip.transformer import LayerNorm, TextTransformer
  from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES
  spec_ = importlib.util.spec_from_file_location("siglip_spm", REPO / "tests" / "golden" / "siglip_spm.py")
  spm_mod = importlib.util.module_from_spec(spec_)
  spec_.loader.exec_module(spm_mod)
  cfg = SIGLIP
  with tempfile.TemporaryDirectory() as tmp:
    sp = sentencepiece.SentencePieceProcessor()
    sp.Load(spm_mod.train(os.path.join(tmp, "spm.model")))
  vocab = sp.GetPieceSize()
  gelu_tanh = functools.partial(torch.nn.GELU, approximate="tanh")

  class Tiny(torch.nn.Module):
    def __init__(self):
      super().__init__()
      self.visual = timm.models.vision_transformer.VisionTransformer(
          img_size=cfg["image_size"], patch_size=cfg["patch_size"], embed_dim=cfg["width"], depth=cfg["depth"],
          num_heads=cfg["heads"], mlp_ratio=cfg["mlp_ratio"], class_token=False, global_pool="map", num_classes=0,
          act_layer=gelu_tanh)
      self.text = TextTransformer(
          context_length=cfg["context"], vocab_size=vocab, width=cfg["width"], heads=cfg["heads"],
          layers=cfg["text_depth"], mlp_ratio=cfg["mlp_ratio"], output_dim=cfg["width"], no_causal_mask=True,
          pool_type="last", proj_bias=True, act_layer=gelu_tanh, norm_layer=functools.partial(LayerNorm, eps=1e-6))
      self.logit_scale = torch.nn.Parameter(torch.zeros(1))
      self.logit_bias = torch.nn.Parameter(torch.zeros(1))

  model, spec = load_seeded(Tiny())
  assert model.text.attn_mask is None and model.visual.attn_pool is not None
  s = cfg["image_size"]
  x = torch.from_numpy(sw.seeded_images((2, 3, s, s)))
  tokens = sw.seeded_tokens(3, cfg["context"], vocab, lengths=(5, 12, 16))
  img, txt = model.visual(x), model.text(torch.from_numpy(tokens))
  norm = lambda v: v / v.norm(dim=-1, keepdim=True)
  logits = model.logit_scale.exp() * norm(img) @ norm(txt).T + model.logit_bias
  zs_tokens = np.array([[_sticky_tokens(sp, t(c), cfg["context"], sp.eos_id())
                         for t in OPENAI_IMAGENET_TEMPLATES] for c in CLASS_NAMES], np.int32)
  cols = []
  for per_class in zs_tokens:
    emb = norm(model.text(torch.from_numpy(per_class.astype(np.int64)))).mean(0)
    cols.append(emb / emb.norm())
  head = torch.stack(cols, 1)
  save("siglip_tiny", spec=sw.encode_spec(spec), input_shape=np.array(x.shape), tokens=tokens,
       image_features=img.numpy(), text_features=txt.numpy(), logits=logits.numpy(),
       class_names=np.array(CLASS_NAMES), zs_tokens=zs_tokens, zs_head=head.numpy(),
       zs_logits=(model.logit_scale.exp() * norm(img) @ head + model.logit_bias).numpy(),
       config=np.array(json.dumps(cfg)), vocab_size=np.array(vocab),
       versions=np.array(f"open_clip {open_clip.__version__}, timm {timm.__version__}, "
                         f"sentencepiece {sentencepiece.__version__}"))


def main(argv):
  jobs = {"rn": golden_rn, "siglip": golden_siglip}
  for name in argv or jobs:
    torch.manual_seed(0)
    jobs[name]()


if __name__ == "__main__":
  main(sys.argv[1:])
