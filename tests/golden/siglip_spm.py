"""A tiny SentencePiece model for SigLIP's tokenizer tests, trained from a fixed corpus (numpy-free; only the
`sentencepiece` package). experiments/make_clip_resnet_siglip_goldens.py and tests/test_siglip.py train it
alike: sentencepiece's BPE trainer on one thread is deterministic (same bytes in both venvs, version 0.2.3).
Ids follow c4_en's and Gemma's conventions for the specials: pad 0, end 1, unknown 2, no begin token.
"""
import io

CORPUS = (
    "a photo of a goldfish.", "a bad photo of the great white shark.", "a sculpture of a tiger shark.",
    "a low resolution photo of the hen.", "a rendering of a junco.", "graffiti of a hen.",
    "the quick brown fox jumps over the lazy dog", "itap of the junco.", "a plushie goldfish.",
    "art of the tiger shark.", "a close-up photo of a great white shark.",
)


def train(path: str, vocab_size: int = 64) -> str:
  """Writes the model to `path` and returns it."""
  import sentencepiece as spm  # pylint: disable=import-outside-toplevel
  buf = io.BytesIO()
  spm.SentencePieceTrainer.train(sentence_iterator=iter(CORPUS), model_writer=buf, vocab_size=vocab_size,
                                 model_type="bpe", pad_id=0, eos_id=1, unk_id=2, bos_id=-1,
                                 character_coverage=1.0, num_threads=1, minloglevel=2)
  with open(path, "wb") as f:
    f.write(buf.getvalue())
  return path
