"""SigLIP's text tokenization (big_vision's `tokenize(..., eos="sticky")` / `tok(..., eos="sticky")` ops) with the
`sentencepiece` package.

A text is lowercased, encoded by the SentencePiece model the text tower was trained with, followed by its end
token; a sequence longer than the context is cut to `context_length - 1` tokens plus that end token ("sticky"
end, which the text tower pools), a shorter one is padded. SigLIP pads with the end token (`pad_value=1` of
its demo, c4_en's `</s>`), SigLIP 2 with the Gemma tokenizer's pad token (0). The SentencePiece model files do
not ship with zoomjax: an error names the one to pass (`SIGLIP_TOKENIZERS`).
"""
import os
from typing import Sequence

import numpy as np

from zoomjax.errors import NotFoundError, UserError

__all__ = ["SIGLIP_TOKENIZERS", "SigLipTokenizer"]

# Tokenizer name -> the file big_vision reads (pp/ops_text.py KNOWN_TOKENIZERS, paligemma's `gemma`).
SIGLIP_TOKENIZERS = {
    "c4_en": "gs://t5-data/vocabs/cc_en.32000/sentencepiece.model",
    "mc4": "gs://t5-data/vocabs/mc4.250000.100extra/sentencepiece.model",
    "gemma": "gs://big_vision/gemma_tokenizer.model",
}


class SigLipTokenizer:
  """`tokenizer(texts) -> (N, context_length) int32`, as big_vision tokenizes SigLIP's texts.

  `pad`: "eos" pads with the end token (SigLIP), "pad" with the model's pad token (SigLIP 2). `name` (a key of
  SIGLIP_TOKENIZERS) only improves the message when `model_file` is missing.
  """

  def __init__(self, model_file: str, context_length: int, pad: str = "eos", lower: bool = True, name: str = ""):
    where = f" ({SIGLIP_TOKENIZERS[name]})" if name in SIGLIP_TOKENIZERS else ""
    if not model_file or not os.path.isfile(model_file):
      raise NotFoundError(f"vocab={model_file!r}: SentencePiece model file not found; a SigLIP zero-shot head "
                          f"needs the tokenizer its text tower was trained with{where}: pass vocab=<that "
                          ".model file>, or load an already-built zero-shot file (python -m zoomjax.models.clip_cli)")
    try:
      import sentencepiece  # pylint: disable=import-outside-toplevel
    except ImportError:
      raise UserError("SigLIP tokenization needs the `sentencepiece` package (a zoomjax requirement): "
                      "pip install sentencepiece") from None
    if pad not in ("eos", "pad"):
      raise ValueError(f"pad={pad!r}: use 'eos' (SigLIP) or 'pad' (SigLIP 2)")
    self.sp = sentencepiece.SentencePieceProcessor()
    try:
      self.sp.Load(model_file)
    except (OSError, RuntimeError) as e:
      raise UserError(f"{model_file}: not a SentencePiece model ({e})") from None
    self.context_length = int(context_length)
    self.eos_id = int(self.sp.eos_id())
    self.pad_id = self.eos_id if pad == "eos" else int(self.sp.pad_id())
    if self.eos_id < 0 or self.pad_id < 0:
      raise UserError(f"{model_file}: the SentencePiece model defines no "
                      f"{'end' if self.eos_id < 0 else 'pad'} token, which SigLIP's tokenization needs")
    self.lower = bool(lower)

  @property
  def vocab_size(self) -> int:
    """Number of pieces of the SentencePiece model."""
    return int(self.sp.GetPieceSize())

  def encode(self, text: str) -> list:
    """One text's ids with the end token, before truncation or padding."""
    return list(self.sp.EncodeAsIds(text.lower() if self.lower else text)) + [self.eos_id]

  def __call__(self, texts: Sequence[str]) -> np.ndarray:
    n = self.context_length
    out = np.full((len(texts), n), self.pad_id, np.int32)
    for i, text in enumerate(texts):
      ids = self.encode(text)
      if len(ids) > n:  # sticky end: keep the end token the tower pools
        ids = ids[:n - 1] + ids[-1:]
      out[i, :len(ids)] = ids
    return out
