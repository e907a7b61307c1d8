"""CLIP's byte-level BPE tokenizer, without torch, ftfy or the `regex` package.

Reads the merges file `bpe_simple_vocab_16e6.txt.gz` (it ships with OpenAI's `clip` and with `open_clip`; pass
its path, nothing is downloaded). Output matches open_clip's `SimpleTokenizer` (clean="lower"): ids of
`<start_of_text>`, the BPE tokens and `<end_of_text>`, zero-padded (or truncated, eot kept last) to the
context length 77.

Differences by design: `ftfy.fix_text` is replaced by a small subset (NFC, curly quotes, ligatures, full-width
ASCII, control characters) and the `regex` pattern's \\p{L}/\\p{N} classes by `unicodedata` categories; both
agree with the reference on ordinary class names and prompts (see tests/test_golden_clip_tokenizer.py).
"""
import functools
import gzip
import html
import os
import unicodedata
from typing import Dict, List, Sequence, Tuple, Union

import numpy as np

SOT, EOT = "<start_of_text>", "<end_of_text>"
_CONTRACTIONS = ("'s", "'t", "'re", "'ve", "'m", "'ll", "'d")
# ftfy's "uncurl quotes", latin ligatures and character width fixes, restricted to what prompts contain.
_FIXES = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'", "\u2032": "'",
                        "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u201f": '"', "\u2033": '"',
                        "\ufb00": "ff", "\ufb01": "fi", "\ufb02": "fl", "\ufb03": "ffi", "\ufb04": "ffl",
                        "\u3000": " "})


@functools.lru_cache()
def bytes_to_unicode() -> Dict[int, str]:
  """GPT-2/CLIP reversible byte -> printable unicode character map (256 entries, in vocabulary order)."""
  keep = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("\xa1"), ord("\xac") + 1))
          + list(range(ord("\xae"), ord("\xff") + 1)))
  order, chars, extra = list(keep), list(keep), 0
  for b in range(256):
    if b not in keep:
      order.append(b)
      chars.append(256 + extra)
      extra += 1
  return {b: chr(c) for b, c in zip(order, chars)}


def basic_clean(text: str) -> str:
  """A dependency-free stand-in for `ftfy.fix_text` + double HTML unescape."""
  text = unicodedata.normalize("NFC", text.translate(_FIXES))
  text = "".join(chr(ord(c) - 0xFEE0) if 0xFF01 <= ord(c) <= 0xFF5E else c for c in text)
  text = "".join(c for c in text if c in "\t\n\r" or unicodedata.category(c) != "Cc")
  return html.unescape(html.unescape(text)).strip()


def whitespace_clean(text: str) -> str:
  return " ".join(text.split())


def _kind(c: str) -> str:
  cat = unicodedata.category(c)
  if cat[0] == "L":
    return "L"
  if cat[0] == "N":
    return "N"
  return "S" if c.isspace() else "P"


def pre_tokenize(text: str, specials: Sequence[str] = (SOT, EOT)) -> List[str]:
  """CLIP's pattern `specials|'s|'t|'re|'ve|'m|'ll|'d|\\p{L}+|\\p{N}|[^\\s\\p{L}\\p{N}]+`, scanned by hand."""
  out, i, n = [], 0, len(text)
  while i < n:
    low = text[i:i + 16].lower()
    hit = next((s for s in specials if low.startswith(s)), None) or next(
        (c for c in _CONTRACTIONS if low.startswith(c)), None)
    if hit:
      out.append(text[i:i + len(hit)])
      i += len(hit)
      continue
    k = _kind(text[i])
    if k == "S":
      i += 1
    elif k == "N":
      out.append(text[i])
      i += 1
    else:  # a run of letters, or a run of "other" characters
      j = i + 1
      while j < n and _kind(text[j]) == k:
        j += 1
      out.append(text[i:j])
      i = j
  return out


class ClipTokenizer:
  """`tokenizer(texts) -> int32 (len(texts), context_length)` like open_clip's `tokenize`."""

  def __init__(self, vocab_path: str, context_length: int = 77):
    if not os.path.exists(vocab_path):
      raise FileNotFoundError(
          f"CLIP BPE vocabulary not found at {vocab_path!r}: pass the path of bpe_simple_vocab_16e6.txt.gz "
          "(shipped inside the `open_clip` and OpenAI `clip` packages)")
    with gzip.open(vocab_path, "rt", encoding="utf-8") as f:
      lines = f.read().split("\n")
    # Line 0 is a version header; the released file has more merges than CLIP uses (49152 - 256 - 2 kept).
    merges = [tuple(m.split()) for m in lines[1:49152 - 256 - 2 + 1]]
    merges = [m for m in merges if len(m) == 2]
    byte_chars = list(bytes_to_unicode().values())
    vocab = byte_chars + [c + "</w>" for c in byte_chars] + ["".join(m) for m in merges] + [SOT, EOT]
    self.encoder = {t: i for i, t in enumerate(vocab)}
    self.decoder = {i: t for t, i in self.encoder.items()}
    self.ranks = {m: i for i, m in enumerate(merges)}
    self.byte_encoder = bytes_to_unicode()
    self.byte_decoder = {v: k for k, v in self.byte_encoder.items()}
    self.sot_token_id, self.eot_token_id = self.encoder[SOT], self.encoder[EOT]
    self.vocab_size = len(vocab)
    self.context_length = context_length
    self._cache: Dict[str, Tuple[str, ...]] = {SOT: (SOT,), EOT: (EOT,)}

  def bpe(self, token: str) -> Tuple[str, ...]:
    """Greedy lowest-rank merging of one pre-token's byte characters (last one marked with '</w>')."""
    if token in self._cache:
      return self._cache[token]
    word = list(token[:-1]) + [token[-1] + "</w>"]
    while len(word) > 1:
      pairs = {(a, b) for a, b in zip(word, word[1:])}
      best = min(pairs, key=lambda p: self.ranks.get(p, float("inf")))
      if best not in self.ranks:
        break
      merged, i = [], 0
      while i < len(word):
        if i < len(word) - 1 and (word[i], word[i + 1]) == best:
          merged.append(word[i] + word[i + 1])
          i += 2
        else:
          merged.append(word[i])
          i += 1
      word = merged
    self._cache[token] = tuple(word)
    return self._cache[token]

  def encode(self, text: str) -> List[int]:
    """Token ids without sot/eot."""
    text = whitespace_clean(basic_clean(text)).lower()
    ids = []
    for tok in pre_tokenize(text):
      tok = "".join(self.byte_encoder[b] for b in tok.encode("utf-8"))
      ids.extend(self.encoder[t] for t in self.bpe(tok))
    return ids

  def decode(self, ids: Sequence[int]) -> str:
    """Text of one row of ids; stops at eot (padding 0 is also the id of '!')."""
    ids = [int(i) for i in ids]
    if self.eot_token_id in ids:
      ids = ids[:ids.index(self.eot_token_id)]
    text = "".join(self.decoder[i] for i in ids if i != self.sot_token_id)
    words = (bytearray(self.byte_decoder[c] for c in w).decode("utf-8", errors="replace")
             for w in text.split("</w>"))
    return " ".join(words).strip()

  def __call__(self, texts: Union[str, Sequence[str]], context_length: int = 0) -> np.ndarray:
    if isinstance(texts, str):
      texts = [texts]
    n = context_length or self.context_length
    out = np.zeros((len(texts), n), np.int32)
    for r, text in enumerate(texts):
      ids = [self.sot_token_id] + self.encode(text) + [self.eot_token_id]
      if len(ids) > n:
        ids = ids[:n]
        ids[-1] = self.eot_token_id
      out[r, :len(ids)] = ids
    return out
