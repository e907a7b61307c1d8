"""Test-time adaptation: entropy, prior-mode BatchNorm, RRC/AugMix views against PIL/torchvision rules, MEMO."""
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from PIL import Image

from zoomjax.models.bundle import ModelBundle, Preprocessing
from zoomjax.models.layers import BatchNorm
from zoomjax.resample import pil_resize_crop_reference
from zoomjax.tta import augment, memo
from zoomjax.tta.entropy import marginal_entropy

NUM_CLASSES = 10
SIZE = 32  # View side in the MEMO tests (224 in the paper).


class TinyBNNet(nn.Module):
  """Two conv + BatchNorm blocks and a linear head; exposes `bn_prior_strength` like every BN model of ours."""
  bn_prior_strength: float = None
  num_classes: int = NUM_CLASSES

  @nn.compact
  def __call__(self, x):
    for feat in (6, 8):
      x = nn.Conv(feat, (3, 3), strides=(2, 2))(x)
      x = BatchNorm(prior_strength=self.bn_prior_strength)(x)
      x = nn.relu(x)
    x = jnp.mean(x, axis=(1, 2))
    return nn.Dense(self.num_classes)(x), {}


def tiny_bundle(seed: int = 0) -> ModelBundle:
  module = TinyBNNet()
  variables = module.init(jax.random.PRNGKey(seed), jnp.zeros((1, SIZE, SIZE, 3)))
  rng = np.random.default_rng(seed)

  def stats(path, v):  # Non-trivial running statistics so that prior mode differs from eval mode.
    name = str(path[-1])
    if "var" in name:
      return jnp.asarray(rng.uniform(0.5, 2.0, v.shape), jnp.float32)
    if "mean" in name:
      return jnp.asarray(rng.normal(0, 0.3, v.shape), jnp.float32)
    return v

  variables = jax.tree_util.tree_map_with_path(stats, variables)
  pp = Preprocessing(input_size=SIZE, resize_size=36, resize_method="bilinear", mean=(120.0, 115.0, 100.0),
                     std=(60.0, 60.0, 60.0))
  return ModelBundle(name="tiny_bn", module=module, variables=variables, preprocessing=pp,
                     num_classes=NUM_CLASSES)


def photo(h: int, w: int, seed: int = 0) -> np.ndarray:
  """A smooth random uint8 picture (structure at several scales, so crops and ops matter)."""
  rng = np.random.default_rng(seed)
  small = rng.integers(0, 256, (max(h // 8, 2), max(w // 8, 2), 3), dtype=np.uint8)
  img = np.asarray(Image.fromarray(small).resize((w, h), Image.Resampling.BICUBIC)).astype(np.int32)
  return np.clip(img + rng.integers(-20, 21, img.shape), 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------------------------- entropy


def _np_marginal_entropy(z: np.ndarray):
  """float64 value and analytic gradient of -sum p̄ log p̄, p̄ = mean_b softmax(z_b)."""
  z = z - z.max(axis=1, keepdims=True)
  p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
  pbar = p.mean(axis=0)
  value = -np.sum(pbar * np.log(pbar))
  g = -(np.log(pbar) + 1.0)  # dL/dp̄
  grad = p * (g[None] - (p * g[None]).sum(axis=1, keepdims=True)) / z.shape[0]
  return value, grad


def test_marginal_entropy_value_and_gradient_match_numpy():
  z = np.random.default_rng(0).normal(0, 2.0, (6, 7)).astype(np.float32)
  value, grad = jax.value_and_grad(marginal_entropy)(z)
  ref_value, ref_grad = _np_marginal_entropy(z.astype(np.float64))
  np.testing.assert_allclose(value, ref_value, rtol=1e-5)
  np.testing.assert_allclose(grad, ref_grad, atol=1e-6)
  # Uniform predictions have the maximal entropy log C.
  np.testing.assert_allclose(marginal_entropy(np.zeros((3, 7), np.float32)), math.log(7), rtol=1e-6)


def test_marginal_entropy_mask_selects_columns_without_nan():
  z = np.random.default_rng(1).normal(0, 2.0, (5, 9)).astype(np.float32)
  mask = np.zeros(9, bool)
  mask[[0, 3, 4, 8]] = True
  value, grad = jax.value_and_grad(marginal_entropy)(z, mask)
  ref_value, ref_grad = _np_marginal_entropy(z[:, mask].astype(np.float64))
  np.testing.assert_allclose(value, ref_value, rtol=1e-5)
  np.testing.assert_allclose(grad[:, mask], ref_grad, atol=1e-6)
  assert np.all(grad[:, ~mask] == 0)
  # A class with zero probability in every view: the clamp keeps value and gradient finite (0·log 0 = 0).
  extreme = np.array([[0.0, -1e4, 5.0], [1.0, -1e4, 2.0]], np.float32)
  value, grad = jax.value_and_grad(marginal_entropy)(extreme)
  assert np.isfinite(value) and np.all(np.isfinite(grad))
  np.testing.assert_allclose(value, _np_marginal_entropy(extreme[:, [0, 2]].astype(np.float64))[0], rtol=1e-5)


# ------------------------------------------------------------------------------------- prior BatchNorm


def _np_prior_bn(x, scale, bias, mean, var, n, eps=1e-5):
  x = x.astype(np.float64)
  axes = tuple(range(x.ndim - 1))
  b_mean = x.mean(axis=axes)
  b_var = x.var(axis=axes, ddof=1)  # unbiased, as torch's running-stat update
  rho = n / (n + 1.0)
  m = rho * mean + (1 - rho) * b_mean
  v = rho * var + (1 - rho) * b_var
  return (x - m) / np.sqrt(v + eps) * scale + bias


def test_prior_batchnorm_matches_numpy_and_stops_gradient():
  rng = np.random.default_rng(2)
  x = rng.normal(1.0, 3.0, (4, 5, 5, 3)).astype(np.float32)
  variables = {"params": {"scale": rng.uniform(0.5, 2, 3).astype(np.float32),
                          "bias": rng.normal(0, 1, 3).astype(np.float32)},
               "batch_stats": {"mean": rng.normal(0, 1, 3).astype(np.float32),
                               "var": rng.uniform(0.5, 2, 3).astype(np.float32)}}
  p, s = variables["params"], variables["batch_stats"]
  prior = BatchNorm(prior_strength=16.0)
  y, new_state = prior.apply(variables, x, mutable=["batch_stats"])
  np.testing.assert_allclose(y, _np_prior_bn(x, p["scale"], p["bias"], s["mean"], s["var"], 16.0),
                             rtol=1e-5, atol=1e-5)
  # Running statistics are never updated.
  np.testing.assert_array_equal(new_state["batch_stats"]["mean"], s["mean"])
  np.testing.assert_array_equal(new_state["batch_stats"]["var"], s["var"])
  # Eval mode is N -> infinity.
  y_eval = BatchNorm().apply(variables, x)
  np.testing.assert_allclose(y_eval, _np_prior_bn(x, p["scale"], p["bias"], s["mean"], s["var"], 1e12),
                             rtol=1e-4, atol=1e-4)
  # The batch statistics are constants for autodiff: d sum(w*y)/dx = w * scale / sqrt(v + eps).
  w = rng.normal(0, 1, x.shape).astype(np.float32)
  gx = jax.grad(lambda xx: jnp.sum(prior.apply(variables, xx) * w))(x)
  rho = 16.0 / 17.0
  v = rho * s["var"] + (1 - rho) * x.astype(np.float64).var(axis=(0, 1, 2), ddof=1)
  np.testing.assert_allclose(gx, w * p["scale"] / np.sqrt(v + 1e-5), rtol=1e-4, atol=1e-6)


def test_models_switch_to_prior_mode_by_clone():
  bundle = tiny_bundle()
  x = jnp.asarray(photo(SIZE, SIZE)[None].repeat(3, 0), jnp.float32) / 255.0
  eval_logits, _ = bundle.module.apply(bundle.variables, x)
  prior_module = memo.with_bn_prior(bundle.module, 16.0)
  assert prior_module.bn_prior_strength == 16.0 and bundle.module.bn_prior_strength is None
  prior_logits, _ = prior_module.apply(bundle.variables, x)
  assert not np.allclose(eval_logits, prior_logits)


# -------------------------------------------------------------------------------------------- RRC


def _torchvision_rrc_box(rng, h, w, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)):
  """torchvision RandomResizedCrop.get_params, with numpy's RNG standing in for torch's."""
  area = h * w
  log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
  for _ in range(10):
    target_area = area * rng.uniform(*scale)
    aspect = math.exp(rng.uniform(*log_ratio))
    cw = int(round(math.sqrt(target_area * aspect)))
    ch = int(round(math.sqrt(target_area / aspect)))
    if 0 < cw <= w and 0 < ch <= h:
      return rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1), ch, cw
  in_ratio = w / h
  if in_ratio < min(ratio):
    cw, ch = w, int(round(w / min(ratio)))
  elif in_ratio > max(ratio):
    ch, cw = h, int(round(h * max(ratio)))
  else:
    cw, ch = w, h
  return (h - ch) // 2, (w - cw) // 2, ch, cw


def _ks(a, b):
  """Two-sample Kolmogorov-Smirnov statistic."""
  grid = np.sort(np.concatenate([a, b]))
  ca = np.searchsorted(np.sort(a), grid, side="right") / len(a)
  cb = np.searchsorted(np.sort(b), grid, side="right") / len(b)
  return np.max(np.abs(ca - cb))


@pytest.mark.parametrize("hw", [(375, 500), (60, 300)])
def test_rrc_boxes_follow_the_torchvision_rule(hw):
  n = 4000
  h, w = hw
  boxes = np.asarray(jax.jit(jax.vmap(lambda k: augment.sample_rrc_box(jnp.asarray(hw), k)))(
      jax.random.split(jax.random.PRNGKey(0), n)))
  rng = np.random.default_rng(0)
  ref = np.array([_torchvision_rrc_box(rng, h, w) for _ in range(n)])
  top, left, bh, bw = boxes.T
  assert np.all((top >= 0) & (left >= 0) & (bh > 0) & (bw > 0) & (top + bh <= h) & (left + bw <= w))
  # Same distribution of area fraction, aspect ratio and relative position (KS, alpha ~ 1e-3: 1.95*sqrt(2/n)).
  crit = 1.95 * math.sqrt(2.0 / n)
  for name, f in [("area", lambda b: b[:, 2] * b[:, 3] / (h * w)), ("aspect", lambda b: b[:, 3] / b[:, 2]),
                  ("top", lambda b: (b[:, 0] + b[:, 2] / 2) / h),
                  ("left", lambda b: (b[:, 1] + b[:, 3] / 2) / w)]:
    assert _ks(f(boxes), f(ref)) < crit, name
  # The fallback (no fitting draw in 10 attempts) is the exact centre crop, with the same frequency.
  fallback = tuple(_torchvision_rrc_box(np.random.default_rng(1), h, w, scale=(2.0, 2.0)))
  fb = tuple(np.asarray(augment.sample_rrc_box(jnp.asarray(hw), jax.random.PRNGKey(1), scale=(2.0, 2.0))))
  assert fb == fallback
  is_fb = lambda b: np.all(b == np.array(fallback)[None], axis=1)
  assert abs(is_fb(boxes).mean() - is_fb(ref).mean()) < 0.02
  if w / h > 4 / 3:
    assert is_fb(ref).mean() > 0.01  # the wide image exercises the fallback


def test_rrc_view_is_pil_crop_then_resize():
  img = photo(45, 60)
  key = jax.random.PRNGKey(3)
  view = np.asarray(augment.random_resized_crop(jnp.asarray(img), None, key, SIZE, "bicubic"))
  box = np.asarray(augment.sample_rrc_box(jnp.asarray(img.shape[:2]), key))
  ref = pil_resize_crop_reference(img, box, (SIZE, SIZE), (0, 0), (SIZE, SIZE), "bicubic")
  assert np.abs(view - ref).max() <= 2
  # Same key, same view; a zero-padded canvas with the true size gives the same view.
  canvas = np.zeros((64, 64, 3), np.uint8)
  canvas[:45, :60] = img
  view2 = augment.random_resized_crop(jnp.asarray(canvas), jnp.asarray([45, 60]), key, SIZE, "bicubic")
  np.testing.assert_array_equal(view, view2)


def test_rrc_pass_order_default_is_horizontal_first_and_pil_order_follows_pillow():
  """A tall image makes Pillow >= 13 resize some boxes vertically first; the default keeps the old order."""
  img = photo(150, 40, seed=5)
  keys = jax.random.split(jax.random.PRNGKey(7), 24)
  default = jax.jit(jax.vmap(lambda k: augment.random_resized_crop(jnp.asarray(img), None, k, SIZE, "bicubic")))
  pillow13 = jax.jit(jax.vmap(lambda k: augment.random_resized_crop(jnp.asarray(img), None, k, SIZE, "bicubic",
                                                                     pil_order=True)))
  boxes = np.asarray(jax.vmap(lambda k: augment.sample_rrc_box(jnp.asarray(img.shape[:2]), k))(keys))
  got_default, got_13 = np.asarray(default(keys)), np.asarray(pillow13(keys))
  vertical_first = 0
  for box, a, b in zip(boxes, got_default, got_13):
    ref = lambda **kw: pil_resize_crop_reference(img, box, (SIZE, SIZE), (0, 0), (SIZE, SIZE), "bicubic", **kw)
    np.testing.assert_array_less(np.abs(a - ref(horizontal_first=True)), 1.5)
    np.testing.assert_array_less(np.abs(b - ref()), 2.5)
    vertical_first += int(np.any(a != b))
  assert vertical_first >= 3  # the two orders really differ on some of these boxes


def test_standard_view_is_resize_then_center_crop():
  img = photo(45, 60, seed=3)
  view = np.asarray(augment.standard_view(jnp.asarray(img), None, 36, SIZE, "bilinear"))
  # torchvision: Resize(36) -> 48x36 (w x h), CenterCrop(32): top round(2.0)=2, left round(8.0)=8.
  pil = Image.fromarray(img).resize((48, 36), Image.Resampling.BILINEAR)
  ref = np.asarray(pil.crop((8, 2, 8 + SIZE, 2 + SIZE)))
  assert np.abs(view - ref).max() <= 2


# ---------------------------------------------------------------------------------------- AugMix ops


def _pil_ops(img: Image.Image, op: str, level: float, sign: float) -> Image.Image:
  """MEMO's third_party.py operations at a given level and sign (size 224)."""
  from PIL import ImageOps  # pylint: disable=import-outside-toplevel
  flip = sign < 0
  if op == "autocontrast":
    return ImageOps.autocontrast(img)
  if op == "equalize":
    return ImageOps.equalize(img)
  if op == "rotate":
    deg = int(level * 30 / 10)
    return img.rotate(-deg if flip else deg, resample=Image.BILINEAR, fillcolor=128)
  if op == "solarize":
    return ImageOps.solarize(img, 256 - int(level * 256 / 10))
  if op == "posterize":
    return ImageOps.posterize(img, 4 - int(level * 4 / 10))
  if op in ("shear_x", "shear_y"):
    v = level * 0.3 / 10 * (-1 if flip else 1)
    mat = (1, v, 0, 0, 1, 0) if op == "shear_x" else (1, 0, 0, v, 1, 0)
  else:
    t = int(level * (224 / 3) / 10) * (-1 if flip else 1)
    mat = (1, 0, t, 0, 1, 0) if op == "translate_x" else (1, 0, 0, 0, 1, t)
  return img.transform((224, 224), Image.AFFINE, mat, resample=Image.BILINEAR, fillcolor=128)


@pytest.mark.parametrize("level,sign", [(0.97, 1.0), (0.55, -1.0)])
def test_augmix_ops_match_pil(level, sign):
  img = photo(224, 224, seed=5)
  # A low-contrast copy so that autocontrast and equalize have work to do.
  img = (img // 2 + 40).astype(np.uint8)
  op_fn = jax.jit(augment.augmix_op)
  for index, name in enumerate(augment.AUGMIX_OPS):
    ours = np.asarray(op_fn(jnp.asarray(img, jnp.float32), index, level, sign))
    ref = np.asarray(_pil_ops(Image.fromarray(img), name, level, sign)).astype(np.float32)
    diff = np.abs(ours - ref)
    # LUT ops are exact; warps differ only by float32 vs double at truncation boundaries.
    assert diff.mean() < 0.02 and np.mean(diff > 1) < 1e-3, (name, diff.mean(), diff.max())
  # op = -1 is the identity.
  np.testing.assert_array_equal(op_fn(jnp.asarray(img, jnp.float32), -1, level, sign), img)


def test_augmix_view_mixes_whole_number_ops_and_is_deterministic_per_key():
  img = jnp.asarray(photo(40, 50, seed=7))
  f = jax.jit(lambda k: augment.augmix(img, None, k, SIZE))
  a, b, c = f(jax.random.PRNGKey(0)), f(jax.random.PRNGKey(0)), f(jax.random.PRNGKey(1))
  np.testing.assert_array_equal(a, b)
  assert not np.allclose(a, c)
  assert a.shape == (SIZE, SIZE, 3) and float(a.min()) >= 0 and float(a.max()) <= 255
  # Each chain is a sequence of 8-bit ops on the pre-augmented crop.
  x = augment.random_resized_crop(img, None, jax.random.PRNGKey(2), SIZE, "bilinear")
  chain = np.asarray(augment.augmix_chain(x, jax.random.PRNGKey(3)))
  np.testing.assert_array_equal(chain, np.round(chain))


# ----------------------------------------------------------------------------------------------- MEMO


def _canvases(sizes, side=48, seed=0):
  canvases = np.zeros((len(sizes), side, side, 3), np.uint8)
  for i, (h, w) in enumerate(sizes):
    canvases[i, :h, :w] = photo(h, w, seed=seed + i)
  return jnp.asarray(canvases), jnp.asarray(sizes, jnp.int32)


def _memo(bundle, augmentation=None, **kw):
  kw.setdefault("num_views", 4)
  kw.setdefault("optimizer", optax.sgd(0.05))
  augmentation = augmentation or augment.rrc_augmentation(SIZE)
  return memo.make_memo(bundle, augmentation, resize_size=36, crop_size=SIZE, **kw)


def test_memo_adapts_without_touching_the_callers_variables():
  bundle = tiny_bundle()
  canvases, hws = _canvases([(40, 44)])
  before = jax.tree.map(np.array, bundle.variables)
  mask = np.zeros(NUM_CLASSES, bool)
  mask[:6] = True
  aug = augment.augmix_augmentation(SIZE)  # MEMO's own views here; the batched test below uses RRC
  adapt = jax.jit(_memo(bundle, aug, logit_mask=mask))
  key = jax.random.PRNGKey(0)
  logits = adapt(bundle.variables, canvases[0], hws[0], key)
  jax.tree.map(np.testing.assert_array_equal, before, jax.tree.map(np.asarray, bundle.variables))
  np.testing.assert_array_equal(logits, adapt(bundle.variables, canvases[0], hws[0], key))  # same key, same result
  assert np.all(np.isneginf(logits[~mask])) and np.all(np.isfinite(logits[mask]))
  # steps=0 is prior-mode prediction on the standard view; the adapted prediction differs from it.
  no_step = jax.jit(_memo(bundle, logit_mask=mask, steps=0))(bundle.variables, canvases[0], hws[0], key)
  view = augment.standard_view(canvases[0], hws[0], 36, SIZE)
  manual, _ = memo.with_bn_prior(bundle.module, 16.0).apply(bundle.variables,
                                                             bundle.preprocessing.normalize(view[None]))
  np.testing.assert_allclose(no_step[mask], manual[0][mask], rtol=1e-5, atol=1e-5)
  assert not np.allclose(no_step[mask], logits[mask])
  # The episode by hand: the step's views (key -> step key -> view keys), one SGD step, predict.
  views = jax.jit(jax.vmap(aug, in_axes=(None, None, 0)))(
      canvases[0], hws[0], jax.random.split(jax.random.split(key, 1)[0], 4))
  prior = memo.with_bn_prior(bundle.module, 16.0)
  loss = lambda p: marginal_entropy(prior.apply({**bundle.variables, "params": p},
                                                bundle.preprocessing.normalize(views))[0], mask)
  params = bundle.variables["params"]
  stepped = jax.tree.map(lambda p, g: p - 0.05 * g, params, jax.grad(loss)(params))
  assert float(loss(stepped)) < float(loss(params))  # the step lowers the marginal entropy
  by_hand, _ = prior.apply({**bundle.variables, "params": stepped}, bundle.preprocessing.normalize(view[None]))
  np.testing.assert_allclose(logits[mask], by_hand[0][mask], rtol=1e-4, atol=1e-4)


def test_memo_batched_equals_one_at_a_time():
  bundle = tiny_bundle(seed=1)
  canvases, hws = _canvases([(40, 44), (48, 30), (33, 48)], seed=10)
  keys = memo.episode_keys(jax.random.PRNGKey(4), range(3))
  # Two steps and a stateful optimiser: everything a per-image episode carries.
  adapt = _memo(bundle, num_views=3, steps=2, optimizer=optax.sgd(0.05, momentum=0.9))
  batched = memo.map_images(adapt, bundle.variables, canvases, hws, keys, chunk_size=2)
  sequential = memo.map_images_sequential(adapt, bundle.variables, canvases, hws, keys)
  np.testing.assert_allclose(batched, sequential, rtol=1e-4, atol=1e-4)
  assert batched.shape == (3, NUM_CLASSES)
  assert not np.allclose(batched[0], batched[1])
