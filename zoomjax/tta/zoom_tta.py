"""Zoom aggregation at test time: predict from many zoom views without adaptation or an oracle.

`aggregate` holds every model-free aggregator of `zoomjax.analysis.aggregators`, under the same names and
definitions, as jittable functions of one image's (V, C) view logits:

  mean              log of the mean softmax (the paper's §2.8 "mean").
  max               the masked log-softmax of the view with the highest max probability (the paper's "max").
  vote              each view's argmax votes; ties go to the class whose most confident voter has the lowest
                    entropy (then the lower class id).
  geometric         the mean log-softmax (log of the geometric mean of the views' softmaxes), each probability
                    floored at 2**-24 (float16's smallest, as the records store them; masked classes stay out).
  entropy_weighted  log sum_v w_v p_v, w = softmax(-H) over the views' entropies H.
  tpt               TPT's confidence selection (Shu et al., 2022): the max(1, int(rho * V)) views of lowest
                    entropy, then their mean softmax.
  zero              ZERO (Farina et al., NeurIPS 2024): the same selection, then a vote of the kept views.

Every one applies the dataset's logit mask inside the softmax, like every other prediction in zoomjax, and
computes entropies on the full masked softmax, as the sweep records them, so a sweep's offline aggregate of the
same views gives the same answer (tests/test_aggregators.py).
"""
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np

from zoomjax import zoom
from zoomjax.analysis.aggregators import ONLINE, TPT_RHO, kept_count
from zoomjax.data.label_space import mask_logits
from zoomjax.models.bundle import ModelBundle
from zoomjax.tta import augment
from zoomjax.tta.memo import EpisodeFn, with_bn_prior

__all__ = ["AGGREGATIONS", "CropsFn", "aggregate", "aggregate_every", "view_entropy", "grid_views", "make_zoom_tta"]

# (canvas (Hc, Wc, 3), hw int32 (2,)) -> (V, crop, crop, 3) float32 pixels in [0, 255], e.g. the zoom-in grid.
CropsFn = Callable[[jax.Array, jax.Array], jax.Array]
AGGREGATIONS = ONLINE  # Every name `aggregate` takes.
GEOMETRIC_FLOOR_LOG = float(np.log(2.0 ** -24))  # log of float16's smallest positive value.


def grid_views(grid: zoom.ZoomGrid, **zoom_kwargs: Any) -> CropsFn:
  """The CropsFn of a zoom grid: every view of `grid` of one canvas, in grid order (keyword arguments as in
  `zoomjax.zoom.zoom_crops_batch`, e.g. impl or dtype)."""

  def crops_fn(canvas, hw):
    return zoom.zoom_crops_batch(canvas[None], jnp.asarray(hw, jnp.int32)[None], grid, **zoom_kwargs)[0]

  return crops_fn


def _check(how: str, rho: float) -> None:
  if how not in AGGREGATIONS:
    raise ValueError(f"aggregation {how!r} is not one of {AGGREGATIONS}")
  kept_count(1, rho)  # Validates rho.


def view_entropy(logp: jax.Array) -> jax.Array:
  """(..., C) log-softmax -> (...,) softmax entropy in nats; masked classes (p = 0) add nothing."""
  p = jnp.exp(logp)
  return -jnp.sum(jnp.where(p > 0, p * logp, 0.0), axis=-1)


def _vote(logp: jax.Array, ent: jax.Array, keep: jax.Array) -> jax.Array:
  """Votes of the kept views' argmaxes, +0.5 on the winner: ties go to the class whose most confident voter has
  the lowest entropy, then to the lower class id."""
  c = logp.shape[-1]
  onehot = jax.nn.one_hot(jnp.argmax(logp, axis=-1), c, dtype=jnp.float32) * keep[:, None]
  votes = onehot.sum(0)
  best_ent = jnp.min(jnp.where(onehot > 0, ent[:, None], jnp.inf), axis=0)
  tied = votes == votes.max()
  winner = jnp.argmin(jnp.where(tied, best_ent, jnp.inf))
  return votes + 0.5 * jax.nn.one_hot(winner, c, dtype=jnp.float32)


def aggregate(view_logits: jax.Array, how: str, mask: Optional[np.ndarray] = None, *,
              rho: float = TPT_RHO) -> jax.Array:
  """(V, C) per-view logits -> (C,) scores whose argmax is the aggregated prediction (see the module docstring).

  Scores: mean / entropy_weighted / tpt: log of the (weighted) mean softmax; max: the chosen view's log-softmax;
  geometric: the mean log-softmax; vote / zero: the vote counts, +0.5 on the tie-broken winner. mask: the
  dataset's logit mask (C,) bool; rho: the fraction of views tpt and zero keep.
  """
  _check(how, rho)
  v = view_logits.shape[0]
  logp = jax.nn.log_softmax(mask_logits(view_logits.astype(jnp.float32), mask), axis=-1)
  ent = view_entropy(logp)
  if how == "mean":
    return jax.nn.logsumexp(logp, axis=0) - jnp.log(v)
  if how == "max":
    return logp[jnp.argmax(jnp.max(logp, axis=-1))]
  if how == "geometric":  # Each probability floored at 2**-24, as the float16 records (zero stays -inf).
    return jnp.mean(jnp.where(jnp.isfinite(logp), jnp.maximum(logp, GEOMETRIC_FLOOR_LOG), logp), axis=0)
  if how == "entropy_weighted":
    w = jax.nn.log_softmax(-ent)
    return jax.nn.logsumexp(logp + w[:, None], axis=0)
  if how == "vote":
    return _vote(logp, ent, jnp.ones(v, jnp.float32))
  m = kept_count(v, rho)
  order = jnp.argsort(ent, stable=True)  # Lowest entropy first; equal entropies: the earlier view.
  keep = jnp.zeros(v, jnp.float32).at[order[:m]].set(1.0)
  if how == "tpt":
    return jax.nn.logsumexp(jnp.where(keep[:, None] > 0, logp, -jnp.inf), axis=0) - jnp.log(m)
  return _vote(logp, ent, keep)  # zero


def aggregate_every(view_logits: jax.Array, mask: Optional[np.ndarray] = None, *,
                    rho: float = TPT_RHO) -> jax.Array:
  """(V, C) per-view logits -> (len(AGGREGATIONS),) int32: the prediction of every aggregator, in the order of
  AGGREGATIONS. The views' forward pass is the whole cost of zoom TTA; this reads every rule off one pass, so a
  run compares them on the same views (and the same images) at no extra model cost."""
  return jnp.stack([jnp.argmax(aggregate(view_logits, how, mask, rho=rho)) for how in AGGREGATIONS]).astype(
      jnp.int32)


def make_zoom_tta(bundle: ModelBundle, crops_fn: CropsFn, how: str = "mean", *,
                  logit_mask: Optional[np.ndarray] = None, view_chunk: int = 32, rho: float = TPT_RHO,
                  every: bool = False) -> EpisodeFn:
  """`predict(variables, image, hw=None, key=None) -> (C,)` aggregated over `crops_fn`'s views (key unused).

  Views go through the model `view_chunk` at a time (lax.map), bounding activation memory; BatchNorm is in eval
  mode as in the zoom study. how: any name of AGGREGATIONS; rho: the fraction of views tpt and zero keep.
  every: predict returns `(scores (C,), aggregate_every(...) (A,))`, `how`'s scores and every aggregator's
  prediction over the same views (the `tta` job records both).
  """
  _check(how, rho)
  apply = bundle.predict_fn(with_bn_prior(bundle.module, None))
  mask = None if logit_mask is None else np.asarray(logit_mask, bool)

  def predict(variables, image, hw=None, key=None):
    del key
    image = jnp.asarray(image)
    hw = augment.as_hw(image, hw)
    views = crops_fn(image, hw)
    v = views.shape[0]
    chunk = min(view_chunk, v)
    n = -(-v // chunk)
    idx = np.minimum(np.arange(n * chunk), v - 1).reshape(n, chunk)
    logits = jax.lax.map(lambda i: apply(variables, views[i]), jnp.asarray(idx))
    logits = logits.reshape(n * chunk, -1)[:v]
    scores = aggregate(logits, how, mask, rho=rho)
    return (scores, aggregate_every(logits, mask, rho=rho)) if every else scores

  return predict
