"""Seeded weights and inputs shared by experiments/make_goldens.py (torch side) and the golden tests (JAX side).

Depends only on numpy, so the tests rebuild bit-identical state dicts without torch. Each array is drawn
from its own generator seeded by (seed, crc32(name)), so adding a key never changes the others. Values are
scaled by kind (fan-in weights, positive BN variances, LayerNorm scales near 1) so that deep random networks
stay in a numerically meaningful range and BatchNorm running statistics really matter.
"""
import zlib
from typing import Dict, Iterable, List, Sequence, Tuple

import numpy as np

Spec = List[Tuple[str, Tuple[int, ...], str]]  # (name, shape, dtype kind: 'f' or 'i')


def encode_spec(spec: Spec) -> np.ndarray:
  """Spec -> 1-D unicode array (stored in the golden .npz without pickles)."""
  return np.array([f"{n}|{','.join(map(str, s))}|{k}" for n, s, k in spec])


def decode_spec(arr: Iterable[str]) -> Spec:
  out = []
  for row in arr:
    name, shape, kind = str(row).split("|")
    out.append((name, tuple(int(v) for v in shape.split(",") if v), kind))
  return out


def _rng(seed: int, name: str) -> np.random.Generator:
  return np.random.default_rng([seed, zlib.crc32(name.encode())])


def seeded_array(name: str, shape: Sequence[int], kind: str = "f", seed: int = 0, norm: bool = False) -> np.ndarray:
  """One deterministic array whose distribution suits what `name` is (`norm`: a norm layer's, by its siblings)."""
  shape = tuple(shape)
  if kind == "i":
    return np.zeros(shape, np.int64)
  rng = _rng(seed, name)
  normal = lambda: rng.standard_normal(shape, dtype=np.float32)  # float32 draws: VGG-16 fc6 is 100M values
  leaf = name.rsplit(".", 1)[-1].rsplit("/", 1)[-1]
  low = name.lower()
  if leaf == "running_var" or leaf == "var":
    return rng.uniform(0.5, 2.0, shape).astype(np.float32)
  if leaf == "running_mean" or leaf == "mean":
    return np.float32(0.2) * normal()
  is_norm = norm or any(t in low for t in ("bn", "ln", "norm", "downsample.1")) or "layernorm" in low
  if is_norm and leaf in ("weight", "scale") and len(shape) == 1:
    return rng.uniform(0.5, 1.5, shape).astype(np.float32)
  if leaf == "logit_scale":
    return np.full(shape, np.log(1 / 0.07), np.float32)
  if leaf in ("bias",) or len(shape) <= 1:
    return np.float32(0.1) * normal()
  # Weight-like: scale by fan-in so activations stay O(1) through many layers.
  if "embedding" in low or "token" in low or "cls" in low or "pos_embed" in low:
    return np.float32(0.1) * normal()
  if len(shape) == 4 and leaf == "weight":  # torch conv (O, I, kh, kw)
    fan_in = shape[1] * shape[2] * shape[3]
  elif len(shape) == 4:  # flax conv (kh, kw, I, O)
    fan_in = shape[0] * shape[1] * shape[2]
  elif leaf == "weight":  # torch linear (out, in)
    fan_in = shape[-1]
  else:  # (in, out) or (in, H, Dh) kernels, CLIP proj (D, E)
    fan_in = shape[0]
  w = normal()
  w *= np.float32(np.sqrt(2.0 / fan_in))
  return w


def seeded_state_dict(spec: Spec, seed: int = 0) -> Dict[str, np.ndarray]:
  # BatchNorms named by index only (VGG-BN `features.1.*`) are recognised by their running statistics.
  bn = {name[:-len("running_var")] for name, _, _ in spec if name.endswith("running_var")}
  return {name: seeded_array(name, shape, kind, seed, norm=name.rsplit(".", 1)[0] + "." in bn)
          for name, shape, kind in spec}


def seeded_images(shape: Sequence[int], seed: int = 1234) -> np.ndarray:
  """Normalised-looking NCHW input (already normalised; the golden is about the network, not preprocessing)."""
  return np.random.default_rng(seed).standard_normal(tuple(shape)).astype(np.float32)


def seeded_tokens(batch: int, context: int, vocab: int, lengths: Sequence[int], seed: int = 4321) -> np.ndarray:
  """Token ids shaped like CLIP's: sot first, eot (the largest id) ending each text, zeros after."""
  rng = np.random.default_rng(seed)
  out = np.zeros((batch, context), np.int64)
  for b, n in enumerate(lengths):
    out[b, 0] = vocab - 2
    out[b, 1:n - 1] = rng.integers(1, vocab - 2, n - 2)
    out[b, n - 1] = vocab - 1
  return out


# ----------------------------------------------------------------------- a tiny synthetic BPE vocabulary

TOKENIZER_CORPUS = (
    "a photo of a {} . a bad photo of the {} . a sculpture of a {} . a rendering of a {} . "
    "graffiti of the {} . a cropped photo of the {} . a tattoo of a {} . the embroidered {} . "
    "a bright photo of a {} . a photo of a clean {} . a photo of a dirty {} . a dark photo of the {} . "
    "a drawing of a {} . a photo of my {} . the plastic {} . a photo of the cool {} . "
    "a close-up photo of a {} . a black and white photo of the {} . a painting of the {} . "
    "goldfish great white shark tiger shark hammerhead electric ray stingray cock hen ostrich "
    "brambling goldfinch house finch junco indigo bunting robin bulbul jay magpie chickadee "
    "it's the dog's bowl we're they've i'm you'll he'd 2023 3.14 100% cats & dogs "
)


def synthetic_bpe_merges(num_merges: int = 300, corpus: str = TOKENIZER_CORPUS) -> List[Tuple[str, str]]:
  """Learns `num_merges` BPE merges on `corpus` in CLIP's byte-to-unicode symbol space (with '</w>')."""
  # Symbols for the ASCII corpus: printable ASCII maps to itself in CLIP's byte encoder.
  words: Dict[Tuple[str, ...], int] = {}
  for w in corpus.lower().split():
    sym = tuple(w[:-1]) + (w[-1] + "</w>",)
    words[sym] = words.get(sym, 0) + 1
  merges = []
  for _ in range(num_merges):
    counts: Dict[Tuple[str, str], int] = {}
    for sym, c in words.items():
      for a, b in zip(sym, sym[1:]):
        counts[(a, b)] = counts.get((a, b), 0) + c
    if not counts:
      break
    best = max(sorted(counts), key=lambda p: counts[p])
    merges.append(best)
    new = {}
    for sym, c in words.items():
      out, i = [], 0
      while i < len(sym):
        if i < len(sym) - 1 and (sym[i], sym[i + 1]) == best:
          out.append(sym[i] + sym[i + 1])
          i += 2
        else:
          out.append(sym[i])
          i += 1
      new[tuple(out)] = new.get(tuple(out), 0) + c
    words = new
  return merges


def write_bpe_vocab(path: str, merges: Sequence[Tuple[str, str]]) -> None:
  """Writes merges in the format of `bpe_simple_vocab_16e6.txt.gz` (gzip, a header line, 'a b' per line).

  No trailing newline: the reference keeps every line up to its fixed cut-off, which a short file never reaches.
  """
  import gzip
  lines = ["#version: 0.2 synthetic zoomjax test vocabulary"] + [f"{a} {b}" for a, b in merges]
  with gzip.open(path, "wt", encoding="utf-8") as f:
    f.write("\n".join(lines))


TOKENIZER_TEXTS = (
    "a photo of a goldfish.",
    "A Bad Photo of the Great White Shark!",
    "it's the dog's bowl; we're here   (they've gone)",
    "cats & dogs: 100% 3.14 in 2023",
    "  graffiti of the  &amp; hammerhead\n\tray ",
    "café naïve über — 東京 ½",
    "an unseenword zzqx",
    "the dog\u2019s \u201cbowl\u201d \ufb01sh \uff21\uff22",
    " ".join(["a photo of a tiger shark"] * 20),  # longer than the context: truncated, ends with eot
)
