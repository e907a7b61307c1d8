"""Zoom aggregation at test time (paper §2.8): predict from many zoom views without adaptation or an oracle.

"mean": argmax of the softmax averaged over the views; "max": the label of the single most confident view
(highest max-softmax). The paper does not define the two; these are its most plausible reading (docs/study.md §2.8).
Both use the dataset's logit mask inside the softmax, like every other prediction in zoomjax.
"""
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np

from zoomjax import zoom
from zoomjax.data.label_space import mask_logits
from zoomjax.models.bundle import ModelBundle
from zoomjax.tta import augment
from zoomjax.tta.memo import EpisodeFn, with_bn_prior

__all__ = ["AGGREGATIONS", "CropsFn", "aggregate", "grid_views", "make_zoom_tta"]

# (canvas (Hc, Wc, 3), hw int32 (2,)) -> (V, crop, crop, 3) float32 pixels in [0, 255], e.g. the zoom-in grid.
CropsFn = Callable[[jax.Array, jax.Array], jax.Array]
AGGREGATIONS = ("mean", "max")


def grid_views(grid: zoom.ZoomGrid, **zoom_kwargs: Any) -> CropsFn:
  """The CropsFn of a zoom grid: every view of `grid` of one canvas, in grid order (keyword arguments as in
  `zoomjax.zoom.zoom_crops_batch`, e.g. impl or dtype)."""

  def crops_fn(canvas, hw):
    return zoom.zoom_crops_batch(canvas[None], jnp.asarray(hw, jnp.int32)[None], grid, **zoom_kwargs)[0]

  return crops_fn


def aggregate(view_logits: jax.Array, how: str, mask: Optional[np.ndarray] = None) -> jax.Array:
  """(V, C) per-view logits -> (C,) scores whose argmax is the aggregated prediction.

  mean: log of the mean masked softmax; max: the masked logits of the most confident view.
  """
  if how not in AGGREGATIONS:
    raise ValueError(f"aggregation {how!r} is not one of {AGGREGATIONS}")
  logp = jax.nn.log_softmax(mask_logits(view_logits.astype(jnp.float32), mask), axis=-1)
  if how == "mean":
    return jax.nn.logsumexp(logp, axis=0) - jnp.log(view_logits.shape[0])
  best = jnp.argmax(jnp.max(logp, axis=-1))
  return logp[best]


def make_zoom_tta(bundle: ModelBundle, crops_fn: CropsFn, how: str = "mean", *,
                  logit_mask: Optional[np.ndarray] = None, view_chunk: int = 32) -> EpisodeFn:
  """`predict(variables, image, hw=None, key=None) -> (C,)` aggregated over `crops_fn`'s views (key unused).

  Views go through the model `view_chunk` at a time (lax.map), bounding activation memory; BatchNorm is in eval
  mode as in the zoom study.
  """
  if how not in AGGREGATIONS:
    raise ValueError(f"aggregation {how!r} is not one of {AGGREGATIONS}")
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
    return aggregate(logits, how, mask)

  return predict
