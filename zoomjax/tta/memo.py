"""MEMO (Zhang, Levine & Finn) and its zoom variant MEMO + RRC as pure, batched JAX functions.

One episode per image, `episode(variables, image, hw, key) -> logits`: start from the caller's variables, take
`steps` optimiser steps on the marginal entropy of `num_views` augmented views (BatchNorm in prior mode), then
predict on the standard view (Resize 256 + CenterCrop 224, prior-mode BatchNorm with that single view's
statistics). Nothing is reset because nothing is mutated: the adapted parameters live only inside the function,
and the optimiser state is created fresh for every image (the official AdamW path leaks moments across images;
this does not).
"""
import functools
import warnings
from typing import Any, Callable, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from zoomjax.data.label_space import mask_logits
from zoomjax.models.bundle import ModelBundle
from zoomjax.runtime import parallel
from zoomjax.tta import augment as augment_lib
from zoomjax.tta.entropy import marginal_entropy

__all__ = ["EpisodeFn", "MEMO_LR", "MEMO_PRIOR_STRENGTH", "MEMO_STEPS", "MEMO_VIEWS", "episode_keys",
           "make_baseline", "make_memo", "map_images", "map_images_sequential", "prior_mode_note", "with_bn_prior"]

MEMO_LR = 2.5e-4  # SGD, no momentum, no weight decay: MEMO's ResNet-50 setting (paper §3.2).
MEMO_VIEWS = 64
MEMO_STEPS = 1
MEMO_PRIOR_STRENGTH = 16.0

# (variables, image (Hc, Wc, 3), hw int32 (2,) or None, key or None) -> masked logits (C,). Every method of
# zoomjax.tta (MEMO, the baseline, zoom aggregation) returns one; `map_images` runs it over a batch.
EpisodeFn = Callable[[Any, jax.Array, Optional[jax.Array], Optional[jax.Array]], jax.Array]


def with_bn_prior(module, prior_strength: Optional[float]):
  """The module with its BatchNorm layers in MEMO prior mode (None: eval mode).

  A module without a `bn_prior_strength` field passes through unchanged (`prior_mode_note` says what that
  means for a given model).
  """
  if not hasattr(module, "bn_prior_strength"):
    return module
  return module.clone(bn_prior_strength=prior_strength)


def _has_batch_norm(bundle: ModelBundle) -> bool:
  return hasattr(bundle.variables, "keys") and "batch_stats" in bundle.variables


def prior_mode_note(bundle: ModelBundle, prior_strength: Optional[float]) -> Optional[str]:
  """One line on what MEMO's prior-mode BatchNorm does for this model, or None when it applies as asked.

  Prior mode needs a `bn_prior_strength` field on the module (`zoomjax.models.BatchNorm` layers read it). Without
  one, a model holding BatchNorm statistics (`batch_stats`) adapts with eval-mode BatchNorm: a different method
  than MEMO's, which `make_memo` warns about; a model without BatchNorm (ViT, CLIP) has nothing to switch.
  """
  if prior_strength is None or hasattr(bundle.module, "bn_prior_strength"):
    return None
  if _has_batch_norm(bundle):
    return (f"model {bundle.name!r} has BatchNorm statistics but its module has no `bn_prior_strength` field, "
            f"so MEMO adapts it with eval-mode BatchNorm, not prior mode (prior_strength={prior_strength}); "
            "give the module that field and use zoomjax.models.BatchNorm(prior_strength=...), or pass "
            "prior_strength=None (config: prior=0) to choose eval mode")
  return (f"model {bundle.name!r} has no BatchNorm: MEMO's prior-mode BatchNorm (prior_strength={prior_strength}) "
          "does not apply; its layers adapt as they are")


def make_memo(bundle: ModelBundle, augmentation: augment_lib.Augmentation, *,
              optimizer: Optional[optax.GradientTransformation] = None, num_views: int = MEMO_VIEWS,
              steps: int = MEMO_STEPS, prior_strength: Optional[float] = MEMO_PRIOR_STRENGTH,
              logit_mask: Optional[np.ndarray] = None, resize_size: Optional[int] = 256,
              crop_size: Optional[int] = 224, view_method: str = "bilinear", pil_order: bool = False) -> EpisodeFn:
  """Returns `adapt_and_predict(variables, image, hw, key) -> logits` (C,), masked to the label space.

  image: an (Hc, Wc, 3) canvas of pixels in [0, 255] (uint8); hw: its true (h, w) (None: the whole canvas);
  key: the episode's `jax.random` key (required).

  bundle: the classifier (module, preprocessing); its variables are passed per call so the function stays pure.
  augmentation: e.g. `augment.rrc_augmentation()` (MEMO + RRC) or `augment.augmix_augmentation()` (MEMO).
  optimizer: any optax transformation on the `params` collection; default SGD(lr 2.5e-4).
  num_views, steps, prior_strength: B = 64, one step, N = 16 in the paper.
  logit_mask: (C,) bool of the dataset's classes; used for the entropy and the returned logits.
  resize_size, crop_size, view_method: the prediction view (torchvision Resize + CenterCrop, bilinear).
  pil_order: resize that view in Pillow >= 13's pass order (default: horizontal first, see `augment`).
  A module with BatchNorm statistics but no `bn_prior_strength` field cannot take prior mode: a warning says so
  (`prior_mode_note`) and the episode adapts with eval-mode BatchNorm.
  """
  if num_views < 2 and prior_strength is not None:
    raise ValueError(f"num_views={num_views}: prior-mode BatchNorm needs at least 2 views for a batch variance")
  if steps < 0:
    raise ValueError(f"steps must be >= 0, got {steps}")
  optimizer = optimizer if optimizer is not None else optax.sgd(MEMO_LR)
  note = prior_mode_note(bundle, prior_strength)
  if note is not None and _has_batch_norm(bundle):
    warnings.warn(note, UserWarning, stacklevel=2)
  apply = bundle.predict_fn(with_bn_prior(bundle.module, prior_strength))
  mask = None if logit_mask is None else np.asarray(logit_mask, bool)

  def loss_fn(params, variables, views):
    return marginal_entropy(apply({**variables, "params": params}, views), mask)

  def adapt_and_predict(variables, image, hw=None, key=None):
    if key is None:
      raise ValueError("a MEMO episode needs a jax.random key: adapt_and_predict(variables, image, hw, key)")
    image = jnp.asarray(image)
    hw = augment_lib.as_hw(image, hw)
    params = variables["params"]
    opt_state = optimizer.init(params)

    def step(carry, step_key):
      params, opt_state = carry
      views = jax.vmap(augmentation, in_axes=(None, None, 0))(
          image, hw, jax.random.split(step_key, num_views))
      loss, grads = jax.value_and_grad(loss_fn)(params, variables, views)
      updates, opt_state = optimizer.update(grads, opt_state, params)
      return (optax.apply_updates(params, updates), opt_state), loss

    if steps:
      (params, _), _ = jax.lax.scan(step, (params, opt_state), jax.random.split(key, steps))
    view = augment_lib.standard_view(image, hw, resize_size, crop_size, view_method, pil_order=pil_order)
    logits = apply({**variables, "params": params}, view[None])[0]
    return mask_logits(logits, mask)

  return adapt_and_predict


def make_baseline(bundle: ModelBundle, *, logit_mask: Optional[np.ndarray] = None, resize_size: int = 256,
                  crop_size: int = 224, view_method: str = "bilinear", pil_order: bool = False) -> EpisodeFn:
  """Table 5's baseline rows: `predict(variables, image, hw=None, key=None) -> logits` (C,) from eval-mode
  BatchNorm on one standard view, with the same mask as MEMO; the key is unused."""
  apply = bundle.predict_fn(with_bn_prior(bundle.module, None))
  mask = None if logit_mask is None else np.asarray(logit_mask, bool)

  def predict(variables, image, hw=None, key=None):
    del key
    image = jnp.asarray(image)
    hw = augment_lib.as_hw(image, hw)
    view = augment_lib.standard_view(image, hw, resize_size, crop_size, view_method, pil_order=pil_order)
    return mask_logits(apply(variables, view[None])[0], mask)

  return predict


def episode_keys(key: jax.Array, indices: Sequence[int]) -> jax.Array:
  """Per-image keys `fold_in(key, index)`: an image's episode does not depend on batching or order."""
  return jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.asarray(indices, jnp.uint32))


@functools.lru_cache(maxsize=None)
def _vmapped(fn: EpisodeFn):
  return jax.jit(jax.vmap(fn, in_axes=(None, 0, 0, 0)))


@functools.lru_cache(maxsize=None)
def _sharded(fn: EpisodeFn, mesh):
  return parallel.data_parallel_jit(jax.vmap(fn, in_axes=(None, 0, 0, 0)), mesh, num_args=4)


def map_images(fn: EpisodeFn, variables, images: jax.Array, hws: jax.Array, keys: jax.Array,
               chunk_size: int = 4, mesh: Optional[jax.sharding.Mesh] = None) -> np.ndarray:
  """Runs `fn` on every image with `vmap` (each image its own parameter copy), `chunk_size` images at a time.

  images: (N, Hc, Wc, 3) zero-padded canvases; hws: (N, 2) true sizes; keys: (N,) episode keys. The last chunk is
  padded by repeating its final image, so one executable serves every chunk. Returns (N, C) numpy logits.
  With a `mesh` (zoomjax.runtime.parallel.make_mesh()) each chunk is split over its devices with the variables
  replicated (a shard_map: `jit(in_shardings=...)` of this vmap returned wrong answers in jax 0.10.2).
  """
  n = images.shape[0]
  if hws.shape != (n, 2) or keys.shape[0] != n:
    raise ValueError(f"map_images: {n} images but hws {hws.shape} and keys {keys.shape}")
  run = _vmapped(fn)
  if mesh is not None:
    parallel.check_batch_size(chunk_size, mesh, "chunk_size")
    variables = parallel.replicate(variables, mesh)
    run = _sharded(fn, mesh)
  out = []
  for start in range(0, n, chunk_size):
    idx = np.minimum(np.arange(start, start + chunk_size), n - 1)
    args = (images[idx], hws[idx], keys[idx])
    logits = run(variables, *(args if mesh is None else parallel.shard_batch(args, mesh)))
    out.append(np.asarray(logits)[: min(chunk_size, n - start)])
  return np.concatenate(out, axis=0)


def map_images_sequential(fn: EpisodeFn, variables, images: jax.Array, hws: jax.Array,
                          keys: jax.Array) -> np.ndarray:
  """The same maths one image at a time (MEMO's reference loop); the baseline of the batching benchmark."""
  run = jax.jit(fn)
  return np.stack([np.asarray(run(variables, images[i], hws[i], keys[i])) for i in range(images.shape[0])])
