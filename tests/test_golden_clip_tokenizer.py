"""zoomjax's CLIP tokenizer against open_clip's SimpleTokenizer (ids computed by experiments/make_goldens.py).

The synthetic vocabulary (BPE merges learned on a small corpus, written in the real file's format) makes the
main test independent of third-party files; the real-vocabulary test reads CLIP's bpe_simple_vocab_16e6.txt.gz
from ../shared/data/clip (the `clip_vocab` fixture; ZOOMJAX_CLIP_VOCAB overrides; required under CI).
"""

import numpy as np
import pytest

from zoomjax.models import clip_tokenizer
from zoomjax.models.clip_zero_shot import OPENAI_IMAGENET_TEMPLATES
from goldens import GOLDEN, sw  # pylint: disable=wrong-import-order



@pytest.fixture(scope="module")
def synthetic_tokenizer(tmp_path_factory):
  path = tmp_path_factory.mktemp("vocab") / "vocab.txt.gz"
  sw.write_bpe_vocab(str(path), sw.synthetic_bpe_merges())
  return clip_tokenizer.ClipTokenizer(str(path))


def test_matches_open_clip_on_synthetic_vocab(synthetic_tokenizer):
  want = np.load(GOLDEN / "clip_tokenizer.npz")["synthetic"]
  got = synthetic_tokenizer(list(sw.TOKENIZER_TEXTS))
  assert got.dtype == np.int32 and got.shape == (len(sw.TOKENIZER_TEXTS), 77)
  for text, g, w in zip(sw.TOKENIZER_TEXTS, got, want):
    np.testing.assert_array_equal(g, w, err_msg=text)


def test_structure_and_round_trip(synthetic_tokenizer):
  tok = synthetic_tokenizer
  ids = tok(["a photo of a goldfish.", " ".join(["tiger"] * 100)])
  assert ids[0, 0] == tok.sot_token_id and tok.eot_token_id in ids[0]
  assert tok.eot_token_id == tok.vocab_size - 1 == ids.max()  # the eot pooling relies on it
  assert ids[1, -1] == tok.eot_token_id and (ids[1] != 0).all()  # truncated, eot kept
  assert tok.decode(ids[0]) == "a photo of a goldfish ."
  assert clip_tokenizer.pre_tokenize("it's 12 o'clock!!") == ["it", "'s", "1", "2", "o", "'", "clock", "!!"]


def test_missing_vocab_names_the_file(tmp_path):
  with pytest.raises(FileNotFoundError, match="bpe_simple_vocab_16e6"):
    clip_tokenizer.ClipTokenizer(str(tmp_path / "nope.txt.gz"))


def test_templates_are_the_80_openai_prompts():
  t = OPENAI_IMAGENET_TEMPLATES
  assert len(t) == 80 == len(set(t)) and all(s.count("{}") == 1 for s in t)
  assert t[0] == "a bad photo of a {}." and t[-1] == "a tattoo of the {}."


def test_matches_open_clip_on_real_vocab(clip_vocab):
  want = np.load(GOLDEN / "clip_tokenizer.npz")["real"]
  tok = clip_tokenizer.ClipTokenizer(str(clip_vocab))
  # The real vocabulary: 256 bytes x 2 (with </w>) + 48894 merges + the two specials, as open_clip builds it.
  assert tok.vocab_size == 49408 and (tok.sot_token_id, tok.eot_token_id) == (49406, 49407)
  got = tok(list(sw.TOKENIZER_TEXTS))
  assert got.dtype == np.int32 and got.shape == want.shape == (len(sw.TOKENIZER_TEXTS), 77)
  for text, g, w in zip(sw.TOKENIZER_TEXTS, got, want):
    np.testing.assert_array_equal(g, w, err_msg=text)
  # The golden rows are real tokenizations, not the synthetic ones: whole words are single tokens
  # ("a photo of a goldfish." = sot a photo of a goldfish . eot); the long text fills the context, eot last.
  assert want[0, :8].tolist() == [49406, 320, 1125, 539, 320, 40293, 269, 49407]
  assert (want[-1] != 0).all() and want[-1, -1] == 49407
  assert not np.array_equal(want, np.load(GOLDEN / "clip_tokenizer.npz")["synthetic"])
  assert tok.decode(got[1]) == "a bad photo of the great white shark !"
