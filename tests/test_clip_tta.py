"""CLIP's test-time methods (zoomjax.tta.clip_tta): TPT against the official algorithm (golden), ZERO's vote and
MTA's mode against NumPy references, TDA's caches against a hand-computed stream, the views, and every method
through configs/tta.py on a tiny random CLIP with both view sources."""
import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import tta as tta_config
from zoomjax import models
from zoomjax.checkpoints import convert_clip
from zoomjax.errors import UserError
from zoomjax.jobs import tta as tta_job
from zoomjax.models import clip
from zoomjax.models.clip_tokenizer import ClipTokenizer
from zoomjax.tta import augment, clip_tta
from goldens import clip_tower_configs, load_golden, rel_err, sw  # pylint: disable=wrong-import-order


# ------------------------------------------------------------------------------------------- TPT golden

@pytest.fixture(scope="module")
def tpt_golden(tmp_path_factory):
  """The golden, zoomjax's towers on its seeded weights, the unit image features and the text side."""
  g, state, x = load_golden("clip_tta_tpt")
  vision, text, _ = clip_tower_configs(g)
  state["logit_scale"] = np.asarray(g["logit_scale"], np.float32).reshape(np.shape(state["logit_scale"]))
  variables = convert_clip.convert_clip(state, vision_heads=vision["num_heads"], text_heads=text["num_heads"])
  model = clip.CLIP(vision, text, activation="quick_gelu")
  emb = jax.jit(lambda v, x: model.apply(v, x, method=model.encode_image))(variables, jnp.asarray(x))
  features = emb / jnp.linalg.norm(emb, axis=-1, keepdims=True)
  path = tmp_path_factory.mktemp("vocab") / "vocab.txt.gz"
  sw.write_bpe_vocab(str(path), sw.synthetic_bpe_merges())
  tok = ClipTokenizer(str(path))
  side = clip_tta.make_text_side(clip.TextTower(**text, activation="quick_gelu"), tok,
                                 [str(n) for n in g["class_names"]], ctx_init=str(g["ctx_init"]),
                                 logit_scale=float(np.exp(g["logit_scale"])))
  return g, features, side, variables["params"]["text"], tok


def test_tpt_step_matches_the_official_algorithm(tpt_golden):
  g, features, side, params, _ = tpt_golden
  assert rel_err(features, g["image_features"]) < 1e-4 and side.n_ctx == 4
  ctx0, _ = clip_tta._prompt_parts(side, params)  # pylint: disable=protected-access
  np.testing.assert_array_equal(ctx0, g["ctx_before"])
  logits_fn = jax.jit(lambda ctx, f: clip_tta.tpt_logits(side, params, ctx, f))
  before = logits_fn(ctx0, features)
  assert rel_err(before, g["logits_before"]) < 1e-4
  k = clip_tta.kept_views(features.shape[0], clip_tta.TPT_KEEP)
  np.testing.assert_array_equal(clip_tta.confident_views(before, k), g["selected"])
  ctx1 = jax.jit(lambda f: clip_tta.tpt_adapt(side, params, f, keep=k))(features)
  assert rel_err(ctx1, g["ctx_after"]) < 1e-4
  assert rel_err(ctx1 - ctx0, g["ctx_after"] - g["ctx_before"]) < 1e-3  # the step itself, not just the start
  after = logits_fn(ctx1, features[:1])
  assert rel_err(after, g["logits_after"]) < 1e-4
  assert rel_err(after, g["logits_before"][:1]) > 1e-2  # the step moved the prediction


def test_tpt_masks_classes_and_scores_only_kept_prompts(tpt_golden):
  g, features, side, params, tok = tpt_golden
  mask = np.array([True, False, True, True, False, True, True])
  sub = clip_tta.make_text_side(side.tower, tok, [str(n) for n in g["class_names"]],
                                mask=mask, logit_scale=side.logit_scale)
  assert sub.tokens.shape[0] == 5 and list(sub.classes) == [0, 2, 3, 5, 6]
  ctx0, _ = clip_tta._prompt_parts(sub, params)  # pylint: disable=protected-access
  logits = jax.jit(lambda c, f: clip_tta.tpt_logits(sub, params, c, f))(ctx0, features[:2])
  assert np.all(np.isneginf(logits[:, ~mask]))
  np.testing.assert_allclose(logits[:, mask], g["logits_before"][:2][:, mask], rtol=1e-5)


# ------------------------------------------------------------------------------ ZERO, MTA, TDA: references

@pytest.fixture(scope="module")
def tiny_clip():
  """A tiny random CLIP zero-shot classifier (64 px, 16-d embeddings, 1000 classes)."""
  return models.load("clip_vit_b32", random_init=True, **tta_config._TINY_CLIP)  # pylint: disable=protected-access


def _numpy_zero(logits, keep):
  """ZERO by hand: the int(V keep) lowest-entropy views, each voting for its argmax."""
  p = np.exp(logits - logits.max(-1, keepdims=True))
  p /= p.sum(-1, keepdims=True)
  ent = -(p * np.log(p)).sum(-1)
  kept = np.argsort(ent, kind="stable")[:int(len(logits) * keep)]
  return np.bincount(logits[kept].argmax(-1), minlength=logits.shape[-1])


def test_zero_votes_like_numpy(tiny_clip):
  image = jax.random.uniform(jax.random.PRNGKey(3), (64, 64, 3), maxval=255.0)

  def views_fn(image, hw, key):  # cheap, varied views: the image blended with seeded noise
    del hw
    return 0.2 * image[None] + jax.random.uniform(key, (20, 64, 64, 3), maxval=200.0)

  key = jax.random.PRNGKey(5)
  got = jax.jit(clip_tta.make_zero(tiny_clip, views_fn, keep=0.25, num_views=20))(tiny_clip.variables, image, None,
                                                                                  key)
  _, logits = jax.jit(clip_tta.image_side(tiny_clip))(tiny_clip.variables, views_fn(image, None, key))
  votes = _numpy_zero(np.asarray(logits, np.float64), 0.25)
  assert votes.sum() == 5 and len(np.flatnonzero(votes)) > 1
  winners = np.flatnonzero(votes == votes.max())
  assert int(jnp.argmax(got)) in winners and np.array_equal(np.floor(np.asarray(got)).astype(int), votes)


def _numpy_mta(features, logits, lambda_y=0.2, lambda_q=4.0, max_iter=5, th=1e-6):
  """MTA's `solve_mta` (MaxZanella/MTA, mta.py) transcribed to NumPy, loop for loop."""
  v = features.shape[0]
  dist = np.sqrt(((features[:, None] - features[None]) ** 2).sum(-1))
  k = int(0.3 * (v - 1))
  bandwidth = np.sqrt(0.5 * np.mean(np.sort(dist, axis=1)[:, 1:k + 1] ** 2, axis=1))
  p = np.exp(logits - logits.max(1, keepdims=True))
  p /= p.sum(1, keepdims=True)
  affinity = p @ p.T
  kernel = lambda mode: np.exp(-np.linalg.norm(features - mode, axis=-1) ** 2 / (2 * bandwidth ** 2))
  y, mode = np.ones(v) / v, features[0]
  for _ in range(max_iter):
    density = kernel(mode)
    for i in range(1, max_iter + 1):
      old, z = y, (density + lambda_q * (affinity * y[None]).sum(1)) / lambda_y
      y = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
      if np.linalg.norm(old - y) < th or i >= max_iter:
        break
    for i in range(1, max_iter + 1):
      old = mode
      w = kernel(mode) * y
      mode = (w[:, None] * features).sum(0) / w.sum()
      mode = mode / np.linalg.norm(mode)
      if np.linalg.norm(old - mode) < th or i >= max_iter:
        break
  return mode, y


def test_mta_mode_matches_numpy():
  rng = np.random.default_rng(0)
  centre = rng.normal(size=8)
  features = centre + 0.6 * rng.normal(size=(12, 8))
  features[9:] = rng.normal(size=(3, 8))  # outliers
  features /= np.linalg.norm(features, axis=1, keepdims=True)
  logits = 20 * features @ rng.normal(size=(8, 6))
  mode, y = jax.jit(clip_tta.mta_mode)(jnp.asarray(features, jnp.float32), jnp.asarray(logits, jnp.float32))
  want_mode, want_y = _numpy_mta(features, logits)
  np.testing.assert_allclose(mode, want_mode, atol=2e-5)
  np.testing.assert_allclose(y, want_y, atol=2e-5)
  assert abs(float(jnp.linalg.norm(mode)) - 1) < 1e-5 and abs(float(jnp.sum(y)) - 1) < 1e-5
  with pytest.raises(UserError, match="at least 5 views"):
    clip_tta.mta_mode(jnp.asarray(features[:4]), jnp.asarray(logits[:4]))


def test_tda_caches_follow_a_hand_computed_stream():
  cfg = clip_tta.TdaConfig(pos_capacity=2, pos_alpha=2.0, pos_beta=5.0, neg_capacity=1, neg_alpha=0.5, neg_beta=1.0,
                           neg_entropy=(0.5, 0.6), neg_mask=(0.03, 1.0))
  stream = [((1.0, 0.0), (2.0, 0.0, 0.0)), ((0.0, 1.0), (0.0, 3.0, 0.0)), ((0.6, 0.8), (1.0, 0.0, 0.0)),
            ((0.8, 0.6), (1.5, 0.0, 0.0)), ((0.96, 0.28), (1.0, 0.0, 0.0))]
  # Entropies (nats) of the softmaxes, and TDA's normalised ones H / log2(3): only image 4's lies in (0.5, 0.6).
  ent = [-sum(q * math.log(q) for q in np.exp(l) / np.exp(l).sum()) for _, l in [(0, np.array(s[1])) for s in stream]]
  assert [round(e / math.log2(3), 3) for e in ent] == [0.42, 0.231, 0.615, 0.525, 0.615]
  state = clip_tta.tda_init(3, 2, cfg)
  update = jax.jit(lambda st, f, l: clip_tta.tda_update(st, f, l, cfg))
  outs = []
  for f, l in stream:
    state, out = update(state, jnp.asarray([f]), jnp.asarray([l]))
    outs.append(np.asarray(out))
  # Positive cache: class 0 held image 1, then images 1 and 3, then 1 and 4 (4 beat 3's entropy); image 5 (as
  # uncertain as 3) found it full and better. Class 1: image 2. Class 2: empty.
  np.testing.assert_allclose(state.pos_keys[0], [[1.0, 0.0], [0.8, 0.6]], atol=1e-7)
  np.testing.assert_allclose(state.pos_loss[0], [ent[0], ent[3]], rtol=1e-6)
  np.testing.assert_allclose(state.pos_keys[1, 0], [0.0, 1.0]) and np.testing.assert_allclose(state.pos_loss[1, 0],
                                                                                              ent[1], rtol=1e-6)
  assert np.isinf(state.pos_loss[1, 1]) and np.all(np.isinf(state.pos_loss[2]))
  # Negative cache: image 4 alone, under class 0, with its softmax.
  np.testing.assert_allclose(state.neg_keys[0, 0], [0.8, 0.6]) and np.testing.assert_allclose(state.neg_loss[0, 0],
                                                                                              ent[3], rtol=1e-6)
  assert np.all(np.isinf(state.neg_loss[1:]))
  # Image 1's logits: its own cache entry (affinity 1) adds alpha to class 0.
  np.testing.assert_allclose(outs[0], [2.0 + 2.0, 0.0, 0.0], rtol=1e-6)
  # Image 4: positives f1 (cos 0.8) and f4 (cos 1) for class 0, f2 (cos 0.6) for class 1; the negative f4 (cos 1)
  # subtracts 0.5 from every class whose probability lies in (0.03, 1).
  want = np.array([1.5 + 2 * (math.exp(-5 * 0.2) + 1.0), 2 * math.exp(-5 * 0.4), 0.0]) - 0.5
  np.testing.assert_allclose(outs[3], want, rtol=1e-5)
  # Image 5 (0.96, 0.28): cos 0.96 with f1, 0.936 with f4, 0.28 with f2, 0.936 with the negative f4.
  want = np.array([1.0 + 2 * (math.exp(-5 * 0.04) + math.exp(-5 * 0.064)), 2 * math.exp(-5 * 0.72), 0.0])
  np.testing.assert_allclose(outs[4], want - 0.5 * math.exp(-0.064), rtol=1e-5)


def test_tda_with_views_uses_the_confident_mean():
  cfg = clip_tta.TdaConfig(keep=0.5)
  features = jnp.asarray([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8], [0.8, 0.6]])
  logits = jnp.asarray([[4.0, 0.0], [0.0, 0.5], [3.0, 0.0], [0.1, 0.0]])
  state, out = jax.jit(lambda s, f, l: clip_tta.tda_update(s, f, l, cfg))(clip_tta.tda_init(2, 2, cfg), features,
                                                                          logits)
  mean = np.array([0.8, 0.4])  # views 0 and 2 are the two most confident
  np.testing.assert_allclose(state.pos_keys[0, 0], mean, rtol=1e-6)
  np.testing.assert_allclose(out, np.array([3.5, 0.0]) + [cfg.pos_alpha * math.exp(-cfg.pos_beta * (1 - 0.8)), 0],
                             rtol=1e-5)


def test_views():
  image = jax.random.randint(jax.random.PRNGKey(1), (50, 70, 3), 0, 256).astype(jnp.uint8)
  views = jax.jit(clip_tta.augment_views(3, 32))(image, None, jax.random.PRNGKey(0))
  assert views.shape == (3, 32, 32, 3) and not np.array_equal(views[1], views[2])
  np.testing.assert_array_equal(views[0], jax.jit(augment.standard_view, static_argnums=(2, 3, 4))(
      image, None, 32, 32, "bicubic"))
  from zoomjax import zoom  # pylint: disable=import-outside-toplevel
  grid = zoom.ZoomGrid((40, 64), anchors=2, crop=32)
  zv = jax.jit(clip_tta.zoom_views(grid, 32))(image, None, None)
  assert zv.shape == (9, 32, 32, 3)
  np.testing.assert_array_equal(zv[0], views[0])
  with pytest.raises(UserError, match="clip.num_views: 9 views x keep 0.1 leaves"):
    clip_tta.kept_views(9, 0.1, "clip.num_views")


# ------------------------------------------------------------------------------------------ through the job

def _job(tmp_path, args):
  return tta_job.run(tta_config.get_config(f"runlocal=1,limit=1,{args}"), str(tmp_path))


# (method, view source): every method through configs/tta.py with zoom views here (TPT's on an OpenCLIP ConvNeXt
# in tests/test_clip_tta_families.py); with augmented views (the default) tests/test_tta_job.py runs every method
# of configs/tta.METHODS, the CLIP ones included. MTA runs both here, so that both sources are seen in
# metrics.json.
JOB_CASES = (("zero", "zoom"), ("mta", "zoom"), ("mta", "augment"), ("tda", "zoom"))


@pytest.mark.parametrize("method,views", JOB_CASES)
def test_every_clip_method_runs_through_the_job(method, views, tmp_path, fast_compile):
  metrics = _job(tmp_path, f"method={method},views={views}")
  assert metrics["method"] == method and metrics["num_images"] == 1 and metrics["accuracy"] in (0.0, 1.0)
  saved = json.loads((tmp_path / "metrics.json").read_text())
  assert saved["clip"]["views"] == views and saved["clip"]["num_views"] == (10 if views == "augment" else 19)
  rows = np.load(tmp_path / "seed_0" / tta_job.RECORDS_FILE)
  assert rows["top5"].shape == (1, 5) and np.all(np.diff(rows["top5_p"][0]) <= 0)


def test_bad_input_is_one_line_naming_model_file_or_field(tmp_path):
  def error(args, **clip_fields):
    config = tta_config.get_config(f"runlocal=1,limit=1,{args}")
    for name, value in clip_fields.items():
      setattr(config.clip, name, value)
    with pytest.raises(UserError) as e:
      tta_job.run(config, str(tmp_path / "w"))
    message = str(e.value)
    assert "\n" not in message and not (tmp_path / "w").exists()
    return message

  assert "method=zero needs a CLIP zero-shot classifier" in error("method=zero,model=efficientnet_lite_tiny")
  assert "'efficientnet_lite_tiny'" in error("method=tda,model=efficientnet_lite_tiny")
  missing = str(tmp_path / "nowhere" / "bpe_simple_vocab_16e6.txt.gz")
  assert missing in error("method=tpt", vocab=missing)
  names = str(tmp_path / "nowhere" / "classnames.txt")
  assert names in error("method=tpt", class_names=names)
  (tmp_path / "five.txt").write_text("a\nb\nc\nd\ne\n")
  assert "5 names for a 1000-class classifier" in error("method=tpt", class_names=str(tmp_path / "five.txt"))
  assert error("method=zero,views=9").startswith("clip.num_views: 9 views x keep 0.1 leaves")
  assert "zoom.scales / zoom.anchors" in error("method=tpt,views=zoom", keep=0.01)
  assert "at least 5 views" in error("method=mta,views=4")
  assert "views='crops'" in str(pytest.raises(UserError, tta_config.get_config, "views=crops").value)


def test_tpt_text_side_from_a_full_checkpoint(tpt_golden, tmp_path):
  """The job's path from a full open_clip state dict: text tower, vocabulary, class names and logit scale."""
  from types import SimpleNamespace  # pylint: disable=import-outside-toplevel
  from safetensors.numpy import save_file  # pylint: disable=import-outside-toplevel
  g, features, side, _, _ = tpt_golden
  _, state, _ = load_golden("clip_tta_tpt")
  state["logit_scale"] = np.asarray(g["logit_scale"], np.float32).reshape(np.shape(state["logit_scale"]))
  save_file(state, str(tmp_path / "clip.safetensors"))
  (tmp_path / "names.txt").write_text("\n".join(str(n) for n in g["class_names"]) + "\n")
  vocab = tmp_path / "vocab.txt.gz"
  sw.write_bpe_vocab(str(vocab), sw.synthetic_bpe_merges())
  config = tta_config.get_config("method=tpt,model=clip_vit_b32,checkpoint=" + str(tmp_path / "clip.safetensors"))
  config.clip.vocab, config.clip.class_names = str(vocab), str(tmp_path / "names.txt")
  bundle = SimpleNamespace(num_classes=len(g["class_names"]), variables={"params": {}})
  tower, params, tokenize, names, scale = clip_tta._text_for_job(config, bundle)  # pylint: disable=protected-access
  assert scale == pytest.approx(100.0, rel=1e-6) and list(names) == [str(n) for n in g["class_names"]]
  # No tensor stores the head count: a checkpoint's text tower gets 64-wide heads (every released CLIP's); this
  # tiny tower has 16-wide ones.
  # tiny tower has 16-wide ones. Splitting the one head's matrices in two is the golden's tower again.
  heads = side.tower.num_heads
  assert tower.num_heads == 1

  def split(path, x):
    name = jax.tree_util.keystr(path)
    if "attn" not in name or ("out" in name and "bias" in name):
      return x
    if "out" in name and "kernel" in name:
      return x.reshape(heads, -1, x.shape[-1])
    return x.reshape(x.shape[:-2] + (heads, -1))

  params = jax.tree_util.tree_map_with_path(split, params)
  text = clip_tta.make_text_side(tower.clone(num_heads=heads), tokenize, names, logit_scale=scale)
  np.testing.assert_array_equal(text.tokens, side.tokens)
  ctx0, _ = clip_tta._prompt_parts(text, params)  # pylint: disable=protected-access
  logits = jax.jit(lambda c, f: clip_tta.tpt_logits(text, params, c, f))(ctx0, features)
  assert rel_err(logits, g["logits_before"]) < 1e-4
  bundle.num_classes = 1000
  with pytest.raises(UserError, match="7 names for a 1000-class classifier"):
    clip_tta._text_for_job(config, bundle)  # pylint: disable=protected-access
