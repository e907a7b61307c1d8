"""Golden tests for CLIP: open_clip (OpenAI key names, QuickGELU) -> zoomjax CLIP, both towers."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from zoomjax.checkpoints import convert_clip
from zoomjax.models import clip, clip_archs, clip_head
from zoomjax.models.clip_zero_shot import OPENAI_IMAGENET_TEMPLATES
from goldens import GOLDEN, sw, rel_err  # pylint: disable=wrong-import-order


# The tiny open_clip model of experiments/make_goldens.py (head width 16 vision / 12 text).
VISION = dict(patch_size=8, width=32, depth=2, num_heads=2, mlp_dim=64, embed_dim=12)
TEXT = dict(vocab_size=1000, context_length=77, width=24, depth=2, num_heads=2, mlp_dim=48, embed_dim=12)




@pytest.fixture(scope="module")
def golden():
  g = dict(np.load(GOLDEN / "clip_tiny.npz"))
  state = sw.seeded_state_dict(sw.decode_spec(g["spec"]))
  x = sw.seeded_images(tuple(g["input_shape"])).transpose(0, 2, 3, 1)
  return g, state, x


@pytest.mark.parametrize("name,activation", [("clip_tiny", "quick_gelu"), ("clip_tiny_gelu", "gelu")])
def test_clip_towers_match_open_clip(name, activation):
  g = dict(np.load(GOLDEN / f"{name}.npz"))
  state = sw.seeded_state_dict(sw.decode_spec(g["spec"]))
  x = sw.seeded_images(tuple(g["input_shape"])).transpose(0, 2, 3, 1)
  variables = convert_clip.convert_clip(state, vision_heads=2, text_heads=2)
  model = clip.CLIP(VISION, TEXT, activation=activation)
  logits, out = jax.jit(model.apply)(variables, jnp.asarray(x), jnp.asarray(g["tokens"]))
  assert rel_err(out["image_embeddings"], g["image_features"]) < 1e-4
  assert rel_err(out["text_embeddings"], g["text_features"]) < 1e-4
  assert rel_err(logits, g["logits_per_image"]) < 1e-4


def test_zero_shot_classifier_is_100_cos(golden):
  g, state, x = golden
  # A head made of the golden text embeddings: logits must be 100 * cos(image, text).
  txt = g["text_features"] / np.linalg.norm(g["text_features"], axis=-1, keepdims=True)
  flat = {k: v for k, v in state.items()}
  flat["zeroshot_head"] = txt.T.astype(np.float32)
  variables = convert_clip.convert_clip_zero_shot(flat, vision_heads=2)
  assert "text" not in variables["params"]
  logits, inter = clip.ZeroShotClassifier(VISION, num_classes=3).apply(variables, jnp.asarray(x))
  img = g["image_features"] / np.linalg.norm(g["image_features"], axis=-1, keepdims=True)
  np.testing.assert_allclose(logits, 100.0 * img @ txt.T, rtol=1e-4, atol=1e-3)
  assert inter["feature_map"].shape == (2, 4, 4, 32)
  del flat["zeroshot_head"]
  with pytest.raises(KeyError, match="python -m zoomjax.models.clip_cli"):
    convert_clip.convert_clip_zero_shot(flat)


def test_zero_shot_head_averages_normalised_template_embeddings():
  """Known answer: class c's two templates embed to (b_c +- n_c) * s_t with n_c orthogonal to b_c.

  Normalising per template cancels the scales s_t and the mean cancels the noise, so the head is b_c/|b_c|;
  averaging unnormalised embeddings would not give that.
  """
  rng = np.random.default_rng(0)
  base = rng.standard_normal((3, 5))
  unit = base / np.linalg.norm(base, axis=1, keepdims=True)
  noise = rng.standard_normal((3, 5))
  noise -= np.sum(noise * unit, axis=1, keepdims=True) * unit

  def encode(tokens):  # tokens: (T, 1) = [class id * 10 + template id]
    c, t = tokens[:, 0] // 10, tokens[:, 0] % 10
    sign = np.where(t % 2 == 0, 1.0, -1.0)[:, None]
    return (base[c] + sign * noise[c]) * (1.0 + 3 * t)[:, None]

  names = ["0", "1", "2"]
  tok = lambda texts: np.array([[int(s.split("|")[0]) * 10 + int(s.split("|")[1])] for s in texts])
  head = clip_head.zero_shot_head(encode, tok, names, templates=("{}|0", "{}|1"))
  assert head.shape == (5, 3)
  np.testing.assert_allclose(head, unit.T, atol=1e-6)


def _toy_tokenize(texts):
  """CLIP-shaped ids without a vocabulary: sot, one id per character, eot (the largest id), zeros after."""
  vocab = TEXT["vocab_size"]
  out = np.zeros((len(texts), TEXT["context_length"]), np.int32)
  for i, text in enumerate(texts):
    ids = [vocab - 2] + [1 + ord(ch) % (vocab - 3) for ch in text][:TEXT["context_length"] - 2] + [vocab - 1]
    out[i, :len(ids)] = ids
  return out


def test_zero_shot_head_matches_numpy_oracle(golden):
  """The head and classifier of the tiny CLIP against CLIP's definition computed in float64 NumPy: per class,
  every template's text embedding on the unit sphere, their mean re-normalised; logits 100 * cos with the image.
  """
  g, state, x = golden
  variables = convert_clip.convert_clip(state, vision_heads=2, text_heads=2)
  model = clip.CLIP(VISION, TEXT)
  encode = jax.jit(lambda t: model.apply(variables, t, method=clip.CLIP.encode_text))
  classes = ["goldfish", "great white shark", "tiger shark", "hen"]
  templates = OPENAI_IMAGENET_TEMPLATES
  # Oracle: all prompts in one batch, then plain NumPy.
  prompts = [t.format(c) for c in classes for t in templates]
  emb = np.asarray(encode(_toy_tokenize(prompts)), np.float64).reshape(len(classes), len(templates), -1)
  emb = emb / np.sqrt(np.sum(emb ** 2, axis=-1, keepdims=True))
  centre = emb.mean(axis=1)
  want = (centre / np.sqrt(np.sum(centre ** 2, axis=-1, keepdims=True))).T  # (E, C)
  assert len(templates) == 80 and want.shape == (VISION["embed_dim"], len(classes))

  head = clip_head.zero_shot_head(encode, _toy_tokenize, classes)
  assert head.shape == want.shape
  np.testing.assert_allclose(head, want, rtol=1e-5, atol=1e-6)

  flat = dict(state)
  flat["zeroshot_head"] = head
  logits, _ = clip.ZeroShotClassifier(VISION, num_classes=len(classes)).apply(
      convert_clip.convert_clip_zero_shot(flat, vision_heads=2), jnp.asarray(x))
  img = g["image_features"].astype(np.float64)  # open_clip's image tower output (the golden).
  img = img / np.sqrt(np.sum(img ** 2, axis=-1, keepdims=True))
  np.testing.assert_allclose(logits, 100.0 * img @ want, rtol=1e-4, atol=1e-3)


def test_config_from_state_dict(golden):
  _, state, _ = golden
  cfg = clip_archs.config_from_state_dict(state, vision_head_width=16, text_head_width=12)
  assert cfg == {"vision": VISION, "text": TEXT}


def test_module_cli_runs_as_a_subprocess(tmp_path):
  """`python -m zoomjax.models.clip_cli` (the README's head builder) imports and runs as users start it."""
  import subprocess  # pylint: disable=import-outside-toplevel
  import sys  # pylint: disable=import-outside-toplevel
  run = lambda *a: subprocess.run([sys.executable, "-m", "zoomjax.models.clip_cli", *a], cwd=tmp_path,  # noqa: E731
                                  capture_output=True, text=True, timeout=300, check=False)
  ok = run("--help")
  assert ok.returncode == 0 and "--checkpoint" in ok.stdout and "--classnames" in ok.stdout, ok.stderr[-2000:]
  missing = run("--checkpoint", str(tmp_path / "ViT-L-14.pt"), "--vocab", "v.txt.gz", "--classnames", "c.txt",
                "--out", str(tmp_path / "out.safetensors"))
  assert missing.returncode == 2 and "ViT-L-14.pt" in missing.stderr
  assert missing.stderr.startswith("zoomjax: error: ") and missing.stderr.count("\n") == 1, missing.stderr[-2000:]
  assert "already registered" not in missing.stderr
