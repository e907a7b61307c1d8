"""Writes tests/golden/clip_tta_tpt.npz: one TPT step of the official algorithm on a seeded tiny open_clip CLIP.

Runs ONLY in the throwaway torch venv (torch CPU, open_clip_torch 3.3.0):

  /tmp/torchenv/bin/python experiments/make_clip_tta_goldens.py

TPT as azshue/TPT runs it (tpt_classification.py + clip/custom_clip.py), written out here in float32 on CPU
(the official code runs under CUDA autocast): the prompt context initialised from the token embeddings of
"a photo of a" (n_ctx = its 4 words), prompts "<ctx> <name>." (SOS | ctx | class tokens, '.', EOS), the text
encoder fed those embeddings, logits = exp(logit_scale) * normalised image features @ normalised text features.
`select_confident_samples` keeps the int(V * 0.1) lowest-entropy views, `avg_entropy` is the loss, ONE
`torch.optim.AdamW(lr=5e-3)` step (torch defaults: weight decay 0.01), then the original view (view 0) is scored
with the tuned prompt. The views are seeded 32x32 inputs fed to the image tower as they are (no augmentation):
the test feeds zoomjax the same ones. Stored: the seeded model's spec, the class names, the selected views,
the initial and tuned context, the loss, the logits before and after. The synthetic BPE vocabulary of the
tokenizer golden makes "a photo of a" 4 tokens, as CLIP's own vocabulary does.
"""
import json
import pathlib
import sys
import tempfile

import numpy as np
import torch

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "experiments"))
from make_goldens import load_seeded, save, sw  # noqa: E402  (also disables grad and mkldnn)

CLASS_NAMES = ("goldfish", "great white shark", "tiger shark", "hen", "junco", "ostrich", "house finch")
CTX_INIT = "a photo of a"
NUM_VIEWS = 30  # int(30 * 0.1) = 3 views kept
SELECTION_P = 0.1
LR = 5e-3
LOGIT_SCALE = float(np.log(100.0))  # OpenAI's trained value (exp = 100)
CONFIG = dict(embed_dim=16, quick_gelu=True, image_size=32,
              vision=dict(layers=1, width=64, head_width=32, patch_size=8, mlp_ratio=2.0),
              text=dict(width=32, heads=2, layers=2, mlp_ratio=2.0))


def _build(vocab_size, cfg=CONFIG):
  import open_clip
  from open_clip.model import CLIPTextCfg, CLIPVisionCfg
  return open_clip.CLIP(embed_dim=cfg["embed_dim"], quick_gelu=cfg["quick_gelu"],
                        vision_cfg=CLIPVisionCfg(image_size=cfg["image_size"], **cfg["vision"]),
                        text_cfg=CLIPTextCfg(context_length=77, vocab_size=vocab_size, **cfg["text"]))


def select_confident_samples(logits, top):
  batch_entropy = -(logits.softmax(1) * logits.log_softmax(1)).sum(1)
  idx = torch.argsort(batch_entropy, descending=False)[:int(batch_entropy.size()[0] * top)]
  return logits[idx], idx


def avg_entropy(outputs):
  logits = outputs - outputs.logsumexp(dim=-1, keepdim=True)
  avg_logits = logits.logsumexp(dim=0) - np.log(logits.shape[0])
  avg_logits = torch.clamp(avg_logits, min=torch.finfo(avg_logits.dtype).min)
  return -(avg_logits * torch.exp(avg_logits)).sum(dim=-1)


def tpt_prepare(model, tok, class_names=CLASS_NAMES, ctx_init=CTX_INIT):
  """PromptLearner's once-per-dataset part: the context from the token embeddings of ctx_init, the tokenised
  prompts and their class-specific prefix (SOS) / suffix (class tokens, '.', EOS) embeddings."""
  n_ctx = len(ctx_init.split(" "))
  with torch.no_grad():
    ctx_vectors = model.token_embedding(tok([ctx_init]))[0, 1:1 + n_ctx].clone()
    tokenized = tok([f"{ctx_init} {name.replace('_', ' ')}." for name in class_names])
    embedding = model.token_embedding(tokenized)
  return dict(ctx_vectors=ctx_vectors, tokenized=tokenized, prefix=embedding[:, :1],
              suffix=embedding[:, 1 + n_ctx:])


def tpt_episode(model, prep, x, lr=LR, selection_p=SELECTION_P):
  """One image of `test_time_adapt_eval`: reset the context and the optimiser, `test_time_tuning` on the views
  `x` (V, 3, S, S), then `model(image)` on view 0 with the tuned prompt."""
  tokenized, prefix, suffix = prep["tokenized"], prep["prefix"], prep["suffix"]
  with torch.enable_grad():
    ctx = torch.nn.Parameter(prep["ctx_vectors"].clone())
    optimizer = torch.optim.AdamW([ctx], lr)

    def text_features():
      prompts = torch.cat([prefix, ctx.unsqueeze(0).expand(prefix.shape[0], -1, -1), suffix], dim=1)
      t = prompts + model.positional_embedding
      t = model.transformer(t, attn_mask=model.attn_mask)
      t = model.ln_final(t)
      t = t[torch.arange(t.shape[0]), tokenized.argmax(dim=-1)] @ model.text_projection
      return t / t.norm(dim=-1, keepdim=True)

    def logits_of(images):  # ClipTestTimeTuning.inference
      with torch.no_grad():
        features = model.encode_image(images)
      features = features / features.norm(dim=-1, keepdim=True)
      return model.logit_scale.exp() * features @ text_features().t(), features

    logits_before, image_features = logits_of(x)
    output, idx = select_confident_samples(logits_before, selection_p)
    loss = avg_entropy(output)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    with torch.no_grad():
      logits_after, _ = logits_of(x[:1])
  return dict(image_features=image_features.numpy(), logits_before=logits_before.detach().numpy(),
              selected=idx.numpy(), loss=np.array(float(loss)), ctx_before=prep["ctx_vectors"].numpy(),
              ctx_after=ctx.detach().numpy(), logits_after=logits_after.numpy())


def tpt_step(model, tok, x, class_names=CLASS_NAMES, ctx_init=CTX_INIT, lr=LR, selection_p=SELECTION_P):
  """One TPT episode of the official algorithm on views `x` (V, 3, S, S), view 0 the original: the arrays the
  golden stores."""
  return tpt_episode(model, tpt_prepare(model, tok, class_names, ctx_init), x, lr, selection_p)


def seeded_model(config=CONFIG):
  """(seeded tiny open_clip CLIP with logit scale 100, its spec, the synthetic-vocabulary tokenizer)."""
  from open_clip.tokenizer import SimpleTokenizer
  with tempfile.TemporaryDirectory() as tmp:
    path = f"{tmp}/vocab.txt.gz"
    sw.write_bpe_vocab(path, sw.synthetic_bpe_merges())
    tok = SimpleTokenizer(path)
    model, spec = load_seeded(_build(tok.vocab_size, config))
  with torch.no_grad():
    model.logit_scale.fill_(LOGIT_SCALE)
  return model, spec, tok


def golden_tpt():
  model, spec, tok = seeded_model()
  s = CONFIG["image_size"]
  x = torch.from_numpy(sw.seeded_images((NUM_VIEWS, 3, s, s)))
  out = tpt_step(model, tok, x)
  save("clip_tta_tpt", spec=sw.encode_spec(spec), input_shape=np.array(x.shape), config=np.array(json.dumps(CONFIG)),
       vocab_size=np.array(tok.vocab_size), class_names=np.array(CLASS_NAMES), ctx_init=np.array(CTX_INIT),
       logit_scale=np.array(LOGIT_SCALE, np.float32), **out)


if __name__ == "__main__":
  torch.manual_seed(0)
  golden_tpt()
