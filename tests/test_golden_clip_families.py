"""Golden tests of the CLIP/OpenCLIP families against open_clip (experiments/make_clip_goldens.py).

One tiny seeded open_clip model per family trait: 80/88/104-wide image heads (ViT-H/g/bigG-14), g/bigG's
non-4 MLP ratios, bigG's text tower as wide as its embedding, OpenAI's QuickGELU at a non-224 position grid
(and the same weights at another input size through open_clip's own `resize_pos_embed`). Each checks both
towers, then the whole `zoomjax.models.load` path from a full state dict: the zero-shot head computed from
the text tower (vs open_clip's `build_zero_shot_classifier` with the 80 templates), cached, and the 100 * cos
logits. Also timm's `resample_abs_pos_embed`.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from safetensors.numpy import save_file

import zoomjax.models as zm
from zoomjax.checkpoints import CheckpointError, convert_clip
from zoomjax.models import clip, vit
from goldens import GOLDEN, clip_tower_configs, load_golden, rel_err, sw  # pylint: disable=wrong-import-order

# golden -> registered family whose traits it has.
FAMILIES = {"h14": "openclip_vit_h14", "g14": "openclip_vit_g14", "bigg14": "openclip_vit_bigg14",
            "l14_336": "clip_vit_l14_336"}


@pytest.fixture(scope="module")
def vocab(tmp_path_factory):
  path = tmp_path_factory.mktemp("vocab") / "vocab.txt.gz"
  sw.write_bpe_vocab(str(path), sw.synthetic_bpe_merges())
  return str(path)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
  """golden name -> (golden arrays, .safetensors of its full seeded state dict, class-name file, NHWC input)."""
  out = {}
  for name in FAMILIES:
    g, state, x = load_golden(f"clip_{name}_tiny")
    d = tmp_path_factory.mktemp(name)
    save_file(state, str(d / "open_clip_model.safetensors"))
    (d / "names.txt").write_text("\n".join(str(n) for n in g["class_names"]) + "\n")
    out[name] = (g, str(d / "open_clip_model.safetensors"), str(d / "names.txt"), x)
  return out


def _tiny(g, **kw):
  """load() overrides that shrink a family to the golden's image tower (its own head width and grid)."""
  vision, _, cfg = clip_tower_configs(g)
  return dict(vision, image_size=cfg["image_size"], **kw)


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_towers_match_open_clip(name):
  g, state, x = load_golden(f"clip_{name}_tiny")
  vision, text, cfg = clip_tower_configs(g)
  activation = "quick_gelu" if cfg["quick_gelu"] else "gelu"
  variables = convert_clip.convert_clip(state, vision_heads=vision["num_heads"], text_heads=text["num_heads"])
  model = clip.CLIP(vision, text, activation=activation)
  _, out = jax.jit(model.apply)(variables, jnp.asarray(x), jnp.asarray(g["tokens"]))
  assert rel_err(out["image_embeddings"], g["image_features"]) < 1e-4
  assert rel_err(out["text_embeddings"], g["text_features"]) < 1e-4
  # The wrong activation is detectably wrong (the golden pins GELU vs QuickGELU, not just the layout).
  other = clip.CLIP(vision, text, activation="gelu" if cfg["quick_gelu"] else "quick_gelu")
  assert rel_err(jax.jit(other.apply)(variables, jnp.asarray(x), jnp.asarray(g["tokens"]))[1]["image_embeddings"],
                 g["image_features"]) > 1e-3
  if name != "l14_336":  # The head-width trap: 64-wide heads would split these towers differently.
    assert vision["width"] // 64 != vision["num_heads"]
    wrong = dict(vision, num_heads=vision["width"] // 64)
    if vision["width"] % wrong["num_heads"]:  # bigG's 208 = 2 x 104: 3 heads cannot even split it.
      with pytest.raises(ValueError, match="does not fit width 208 x 3 heads"):
        convert_clip.convert_clip(state, vision_heads=wrong["num_heads"], text_heads=text["num_heads"])
      return
    bad = convert_clip.convert_clip(state, vision_heads=wrong["num_heads"], text_heads=text["num_heads"])
    emb = jax.jit(clip.CLIP(wrong, text, activation=activation).apply)(bad, jnp.asarray(x),
                                                                      jnp.asarray(g["tokens"]))[1]
    assert rel_err(emb["image_embeddings"], g["image_features"]) > 1e-3


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_load_full_checkpoint_builds_open_clips_zero_shot_classifier(name, checkpoints, vocab, tmp_path):
  g, path, names, x = checkpoints[name]
  bundle = zm.load(FAMILIES[name], path, vocab=vocab, class_names=names, head_cache_dir=str(tmp_path),
                   **_tiny(g))
  assert bundle.num_classes == 5 and bundle.preprocessing.input_size == x.shape[1]
  head = bundle.variables["params"]["zeroshot_head"]
  assert head.dtype == jnp.float32 and rel_err(head, g["zs_head"]) < 1e-4
  logits, inter = jax.jit(bundle.module.apply)(bundle.variables, jnp.asarray(x))
  assert rel_err(logits, g["zs_logits"]) < 1e-4
  assert rel_err(inter["image_features"] * np.linalg.norm(g["image_features"], axis=-1, keepdims=True),
                 g["image_features"]) < 1e-4
  assert len(list(tmp_path.glob("*.npz"))) == 1 and len(list(tmp_path.glob("*.json"))) == 1


def test_position_grid_is_read_from_the_checkpoint(checkpoints, vocab, tmp_path):
  """The tiny L/14@336 tower stores a 5x5 grid: it loads at 70 px, is refused at another size unless
  image_size= asks for resampling, and at 98 px matches open_clip's own resize_pos_embed."""
  g, path, names, _ = checkpoints["l14_336"]
  kw = dict(vocab=vocab, class_names=names, head_cache_dir=str(tmp_path))
  tiny = _tiny(g)
  del tiny["image_size"]
  with pytest.raises(CheckpointError, match=r"5\^2 grid \(70 px input\).*runs at 336 px.*image_size=336"):
    zm.load("clip_vit_l14_336", path, **kw, **tiny)
  bundle = zm.load("clip_vit_l14_336", path, image_size=98, **kw, **tiny)
  pp = bundle.preprocessing
  assert (pp.input_size, pp.resize_size, pp.resize_method) == (98, 98, "bicubic")
  assert bundle.variables["params"]["visual"]["positional_embedding"].shape == (1 + 7 * 7, 128)
  xr = sw.seeded_images(tuple(g["resized_input_shape"])).transpose(0, 2, 3, 1)
  _, inter = jax.jit(bundle.module.apply)(bundle.variables, jnp.asarray(xr))
  want = g["resized_image_features"]
  assert rel_err(inter["image_features"], want / np.linalg.norm(want, axis=-1, keepdims=True)) < 1e-4
  with pytest.raises(ValueError, match="multiple of the patch size 14"):
    zm.load("clip_vit_l14_336", path, image_size=100, **kw, **tiny)


@pytest.mark.parametrize("key", ["up", "down", "rect", "l14_336"])
def test_position_embedding_resampling_matches_timm(key):
  g = np.load(GOLDEN / "clip_pos_embed_resample.npz")
  got = vit.resample_position_embedding(g[f"{key}_src"], tuple(g[f"{key}_grid"]))
  assert got.shape == g[f"{key}_out"].shape and got.dtype == np.float32
  np.testing.assert_array_equal(got[:, 0], g[f"{key}_src"][:, 0])  # the class token is kept as is
  assert rel_err(got, g[f"{key}_out"]) < 1e-5


def test_vit_image_size_resamples_and_rescales_preprocessing(tmp_path):
  """A ViT checkpoint at 224 loads for 64 px input only through image_size=, with timm's resampling."""
  from flax import traverse_util  # pylint: disable=import-outside-toplevel
  src = zm.load("vit_tiny", random_init=True, seed=3)
  flat = {k: np.asarray(v) for k, v in traverse_util.flatten_dict(jax.device_get(src.variables["params"]),
                                                                  sep="/").items()}
  np.savez(tmp_path / "vit.npz", **flat)  # big_vision .npz layout
  x = jnp.zeros((1, 64, 64, 3))
  plain = zm.load("vit_tiny", str(tmp_path / "vit.npz"))
  with pytest.raises(ValueError, match="does not fit a 5-token input"):
    plain.module.apply(plain.variables, x)
  b = zm.load("vit_tiny", str(tmp_path / "vit.npz"), image_size=64)
  assert (b.preprocessing.input_size, b.preprocessing.resize_size) == (64, 73)  # crop fraction 224/256 kept
  pos = b.variables["params"]["Transformer"]["posembed_input"]["pos_embedding"]
  np.testing.assert_allclose(pos, vit.resample_position_embedding(
      flat["Transformer/posembed_input/pos_embedding"], (2, 2)), rtol=1e-6)
  assert b.module.apply(b.variables, x)[0].shape == (1, 1000)
