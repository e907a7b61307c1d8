"""`python -m zoomjax.models.clip_cli`: a CLIP/OpenCLIP zero-shot head from a full checkpoint, once.

Computing a head encodes 1000 classes x 80 prompts with the text tower. This command does it ahead of a job:
without `--out` it fills the on-disk head cache that `zoomjax.models.load(NAME, checkpoint=CHECKPOINT)` reads;
with `--out` it writes a self-contained classifier file (the image tower's tensors + `zeroshot_head` (E, C),
.safetensors) that `load(NAME, checkpoint=OUT)` takes with no text tower, vocabulary or class names:

  python -m zoomjax.models.clip_cli --checkpoint ViT-L-14.pt --model clip_vit_l14 --out clip_vit_l14.safetensors

SigLIP / SigLIP 2 `.npz` files (big_vision; NaFlex included) work alike, with `--vocab` their SentencePiece
model; their file also keeps the checkpoint's `t` and `b` (zoomjax.models.siglip). open_clip CoCa files
(`text.cls_emb`) get the head of their own text tower (zoomjax.models.clip_coca); their captioning decoder is left out of the classifier file.
open_clip files with their standard text tower under `text.*` (the EVA-02 CLIPs, zoomjax.models.clip_eva) work as
the ViT ones.

A bad file or value ends the command with one line naming it (exit status 2; `--verbose` adds the traceback).
"""
import argparse
from typing import Optional, Sequence

import numpy as np
from safetensors.numpy import save as safetensors_bytes

from zoomjax.checkpoints import CheckpointError, read_checkpoint
from zoomjax.checkpoints.convert_clip import strip_module_prefix
from zoomjax.models import clip_zero_shot as zs
from zoomjax.models import registry
from zoomjax.models import clip_coca
from zoomjax.models import clip_eva
from zoomjax.models import siglip
from zoomjax.models import siglip_naflex
from zoomjax.models.clip_families import FAMILIES
from zoomjax.models.clip_head import text_head
from zoomjax.models.clip_convnext import FAMILIES as CONVNEXT_FAMILIES
from zoomjax.models.clip_resnet import FAMILIES as RESNET_FAMILIES
from zoomjax.runtime import atomic, cli

__all__ = ["build_zero_shot_checkpoint", "main"]

PROG = "python -m zoomjax.models.clip_cli"
# Registered zero-shot families whose head comes from a CLIP text tower: name -> family (its `.activation`).
_CLIP_FAMILIES = {**FAMILIES, **RESNET_FAMILIES, **CONVNEXT_FAMILIES, **clip_eva.FAMILIES}
# Every zero-shot family the command builds heads for (SigLIP's from big_vision .npz files, CoCa's from its own
# text tower).
_ZERO_SHOT = sorted({**_CLIP_FAMILIES, **siglip.FAMILIES, **siglip_naflex.FAMILIES, **clip_coca.FAMILIES})


def build_zero_shot_checkpoint(checkpoint: str, vocab: Optional[str], class_names: Optional[str],
                               out: Optional[str], activation: str = "quick_gelu", *,
                               templates: Optional[str] = None, head_cache_dir: Optional[str] = None,
                               model: Optional[str] = None) -> np.ndarray:
  """Writes `out` (.safetensors, atomically): the image-tower weights of `checkpoint` plus `zeroshot_head` (E, C).

  Without `out`, only computes the head into the cache (`head_cache_dir`, default ~/.cache/zoomjax/clip_heads);
  with `out`, the cache is used only when `head_cache_dir` is given. `model` (a registered zero-shot name)
  checks the image tower's geometry first, before minutes go into the head. Returns the head.
  """
  flat = strip_module_prefix(read_checkpoint(checkpoint))
  if siglip.is_siglip_checkpoint(flat):
    return _siglip(checkpoint, flat, vocab, class_names, out, templates=templates, head_cache_dir=head_cache_dir,
                   model=model)
  if "text.cls_emb" in flat:
    return _coca(checkpoint, flat, vocab, class_names, out, templates=templates, head_cache_dir=head_cache_dir,
                 model=model)
  flat = clip_eva.lift_text_tower(flat)  # open_clip's `text.*` text towers (EVA-02 CLIPs) at the top level
  if model is not None:  # The geometry check alone (no text keys: no head computed here).
    registry.get_spec(model).prepare({k: v for k, v in flat.items() if k.startswith("visual.")}, {},
                                     path=checkpoint)
  if "token_embedding.weight" not in flat:
    raise CheckpointError(f"{checkpoint}: no text tower (token_embedding.weight) to build the zero-shot head from")
  head = text_head(flat, activation, vocab=vocab, class_names=class_names, templates=templates,
                   head_cache_dir=head_cache_dir, use_cache=out is None or head_cache_dir is not None,
                   checkpoint=checkpoint, progress=lambda i, n: print(f"\r{i}/{n} classes", end="", flush=True))
  return _finish(checkpoint, flat, head, out, head_cache_dir, "image tower")


def _siglip(checkpoint: str, flat: dict, vocab: Optional[str], class_names: Optional[str], out: Optional[str], *,
            templates: Optional[str], head_cache_dir: Optional[str], model: Optional[str]) -> np.ndarray:
  """`build_zero_shot_checkpoint` for a big_vision SigLIP file: the head from its text tower (SentencePiece
  `vocab`; padding from `model`'s family, else from the vocabulary size), the file = image tower + t, b + head."""
  tree = siglip.big_vision_tree(flat)
  if model is not None:  # The geometry check alone.
    registry.get_spec(model).prepare({k: v for k, v in tree.items() if k.startswith("img/")}, {}, path=checkpoint)
  if "txt/Embed_0/embedding" not in tree:
    raise CheckpointError(f"{checkpoint}: no SigLIP text tower (txt/Embed_0/embedding) to build the zero-shot head "
                          "from")
  family = siglip.FAMILIES.get(model)
  head = siglip.siglip_text_head(
      tree, vocab=vocab, pad=family.pad if family else siglip.default_pad(tree),
      tokenizer_name=family.tokenizer if family else "", class_names=class_names, templates=templates,
      head_cache_dir=head_cache_dir, use_cache=out is None or head_cache_dir is not None, checkpoint=checkpoint,
      progress=lambda i, n: print(f"\r{i}/{n} classes", end="", flush=True))
  print()
  if out is None:
    print(f"cached the zero-shot head {head.shape} of {checkpoint} in {head_cache_dir or zs.default_cache_dir()}")
    return head
  atomic.write_bytes(out, safetensors_bytes(siglip.zero_shot_tensors(tree, head)))
  print(f"wrote {out}: image tower, t, b of {checkpoint} + zero-shot head {head.shape}")
  return head


def _coca(checkpoint: str, flat: dict, vocab: Optional[str], class_names: Optional[str], out: Optional[str], *,
          templates: Optional[str], head_cache_dir: Optional[str], model: Optional[str]) -> np.ndarray:
  """`build_zero_shot_checkpoint` for an open_clip CoCa file: the head from its text tower (cls-token pooling),
  the file = image tower + head (the captioning decoder `text_decoder.*` is not part of the classifier)."""
  if model is not None:  # The load gate on the image tower alone.
    registry.get_spec(model).prepare({k: v for k, v in flat.items() if k.startswith("visual.")}, {},
                                     path=checkpoint)
  head = clip_coca.coca_text_head(
      flat, vocab=vocab, class_names=class_names, templates=templates, head_cache_dir=head_cache_dir,
      use_cache=out is None or head_cache_dir is not None, checkpoint=checkpoint,
      progress=lambda i, n: print(f"\r{i}/{n} classes", end="", flush=True))
  return _finish(checkpoint, flat, head, out, head_cache_dir, "CoCa image tower")


def _finish(checkpoint: str, flat: dict, head: np.ndarray, out: Optional[str], head_cache_dir: Optional[str],
            tower: str) -> np.ndarray:
  """Says where the head went: the cache (no `out`), or `out` = the `visual.*` tensors + `zeroshot_head`."""
  print()
  if out is None:
    print(f"cached the zero-shot head {head.shape} of {checkpoint} in {head_cache_dir or zs.default_cache_dir()}")
    return head
  tensors = {k: np.ascontiguousarray(v, np.float32) for k, v in flat.items() if k.startswith("visual.")}
  tensors["zeroshot_head"] = head.astype(np.float32)
  atomic.write_bytes(out, safetensors_bytes(tensors))
  print(f"wrote {out}: {tower} of {checkpoint} + zero-shot head {head.shape}")
  return head


def _parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(
      prog=PROG,
      description="Compute a CLIP/OpenCLIP zero-shot ImageNet head (100*cos over the 80 OpenAI templates) from a "
                  "full OpenAI/open_clip checkpoint: either write a classifier file (image tower + head, --out) for "
                  "zoomjax.models.load(NAME, checkpoint=OUT), or just warm the on-disk head cache that "
                  "zoomjax.models.load(NAME, checkpoint=CHECKPOINT) reads.")
  p.add_argument("--checkpoint", required=True, help="OpenAI/open_clip CLIP weights (e.g. ViT-L-14.pt)")
  p.add_argument("--model", default=None, choices=_ZERO_SHOT, metavar="NAME",
                 help="registered name, sets the activation and checks the checkpoint's geometry: "
                      + ", ".join(_ZERO_SHOT))
  p.add_argument("--vocab", default=None,
                 help="bpe_simple_vocab_16e6.txt.gz (ships with open_clip/CLIP; default: an installed open_clip's); "
                      "for SigLIP, its SentencePiece model (c4_en / Gemma tokenizer .model)")
  p.add_argument("--classnames", default="openai",
                 help="'openai' / 'zoom_paper' (OpenAI's curated 1000 names, from an installed open_clip), a text "
                      "file with one class name per line, or a zero_shot_metadata.py")
  p.add_argument("--templates", default="openai80",
                 help="'openai80' (the 80 OpenAI templates), a text file with one '{}' template per line, or a "
                      "zero_shot_metadata.py")
  p.add_argument("--out", default=None, help="output .safetensors; without it only the head cache is filled")
  p.add_argument("--head-cache-dir", default=None,
                 help="head cache folder (default $ZOOMJAX_CLIP_HEADS or ~/.cache/zoomjax/clip_heads)")
  p.add_argument("--activation", default=None, choices=("quick_gelu", "gelu"),
                 help="quick_gelu: OpenAI and open_clip *-quickgelu models; gelu: other open_clip models "
                      "(default: --model's, else quick_gelu)")
  p.add_argument("--verbose", action="store_true", help="print the traceback of an error, not just its line")
  return p


def main(argv: Optional[Sequence[str]] = None) -> int:
  """Runs the command on `argv` (default sys.argv[1:]); returns 0, or exits with status 2 and one line on stderr
  for a bad file or value (argparse does the same for a bad flag)."""
  a = _parser().parse_args(argv)
  activation = a.activation or (_CLIP_FAMILIES[a.model].activation if a.model in _CLIP_FAMILIES else "quick_gelu")
  try:
    build_zero_shot_checkpoint(a.checkpoint, a.vocab, a.classnames, a.out, activation, templates=a.templates,
                               head_cache_dir=a.head_cache_dir, model=a.model)
  except Exception as e:  # pylint: disable=broad-except  User errors end in one line; bugs are re-raised.
    cli.exit_on_user_error(e, a.verbose)
    raise
  return 0


if __name__ == "__main__":
  raise SystemExit(main())
