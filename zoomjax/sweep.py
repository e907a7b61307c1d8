"""The zoom sweep: stream a dataset through the zoom grid and a classifier, keep compact per-view records.

One step per batch of images does everything on the device that runs the model:
  (canvas uint8 (B, Hc, Wc, 3), hw (B, 2), labels (B, L))
    -> zoom crops (B, T, 224, 224, 3) [+ the 10 Krizhevsky crops: Resize(256) + TenCrop(224)]
    -> normalise -> model, in chunks of `view_chunk` views per image (bounds activation memory)
    -> masked softmax -> top-k ids and probabilities, entropy, true-label and max probability per view,
       plus, per aggregation set, the top-5 of the set's mean softmax (accumulated over chunks)
and only those compact arrays come back to the host (`zoomjax.analysis.records`).

Scale-out: the step takes an optional `jax.sharding.Mesh` with a 'data' axis; the image batch is sharded over
it and the variables are replicated. Shards, resumption and the merge are `zoomjax.runtime.shards`.
"""
import dataclasses
from typing import Any, Callable, Dict, List, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from zoomjax import resample
from zoomjax import zoom
from zoomjax.analysis import records as records_lib
from zoomjax.errors import NonFiniteError, UserError
from zoomjax.runtime import parallel
from zoomjax.runtime import progress

Array = jax.Array

AGG_SETS, CROP_NAMES, TOP_K = records_lib.AGG_SETS, records_lib.CROP_NAMES, records_lib.TOP_K
RECORD_K = records_lib.RECORD_K
# Compute dtypes a job may run its model (and zoom kernel) in; logits and softmax are always float32.
COMPUTE_DTYPES = ("float32", "bfloat16", "float16")


def compute_dtype(name: str) -> jnp.dtype:
  """`config.dtype` by name -> the jnp dtype every job computes in; a UserError naming the value otherwise."""
  if name not in COMPUTE_DTYPES:
    raise UserError(f"config.dtype={name!r}: use one of {', '.join(COMPUTE_DTYPES)}")
  return jnp.dtype(name)


@dataclasses.dataclass(frozen=True)
class ViewSpec:
  """Static description of every view a step computes (hashable; baked into the compiled step)."""
  transforms: Tuple[Tuple[int, int, int], ...]  # Zoom grid (S, row, col), the grid's own order.
  crop: int = 224
  extra_crops: bool = True  # Add the 10 Krizhevsky crops (Resize(256) + TenCrop(crop)).
  crop_resize: int = 256

  @property
  def view_names(self) -> List[str]:
    return [zoom.view_name(t) for t in self.transforms]

  @property
  def crop_names(self) -> List[str]:
    return list(CROP_NAMES) if self.extra_crops else []

  @property
  def num_views(self) -> int:
    return len(self.transforms) + len(self.crop_names)

  def membership(self) -> np.ndarray:
    """(num_views, len(AGG_SETS)) float32: 1 where a view belongs to an aggregation set."""
    m = np.zeros((self.num_views, len(AGG_SETS)), np.float32)
    for v, (s, _, _) in enumerate(self.transforms):
      m[v, AGG_SETS.index("zoom-in" if s > self.crop else "zoom-out" if s < self.crop else "zoom-224")] = 1
    t = len(self.transforms)
    if self.extra_crops:
      m[t:t + 5, AGG_SETS.index("5-crop")] = 1
      m[t:t + 10, AGG_SETS.index("10-crop")] = 1
    return m


def resized_hw(hw: Array, size: int) -> Array:
  """torchvision Resize(size) on PIL: short side -> size, long side -> int(size * long / short)."""
  return jnp.stack(resample.short_side_resize(hw[..., 0], hw[..., 1], size), -1)


def ten_crops(canvas: Array, hw: Array, *, crop: int = 224, size: int = 256,
              dtype: Optional[Any] = None) -> Array:
  """torchvision Resize(size, bicubic) + TenCrop(crop) of one image: (10, crop, crop, 3) float32 in [0, 255].

  Order as torchvision: tl, tr, bl, br, center, then the same five of the horizontally flipped image.
  The resize is bicubic like the zoom grid (the paper does not say which filter its 5/10-crop used).
  """
  rs = resized_hw(hw, size)
  h2, w2 = rs[0] - crop, rs[1] - crop
  # torchvision center_crop: int(round((H - crop) / 2)), Python rounds half to even as jnp.round does.
  ct = jnp.round(h2 / 2).astype(jnp.int32)
  cl = jnp.round(w2 / 2).astype(jnp.int32)
  # five_crop(hflip(img)) = hflip of img's crops tr, tl, br, bl and of the centre crop at the mirrored left
  # (w2 - cl, equal to cl unless w2 is odd): 6 resampled crops give all 10.
  tops = jnp.stack([0, 0, h2, h2, ct, ct]).astype(jnp.int32)
  lefts = jnp.stack([0, w2, 0, w2, cl, w2 - cl]).astype(jnp.int32)
  box = jnp.stack([0, 0, hw[0], hw[1]]).astype(jnp.int32)

  def one(top, left):
    return resample.resize_crop(canvas, hw, box, rs, jnp.stack([top, left]), (crop, crop), "bicubic",
                                dtype=dtype)

  crops = jax.vmap(one)(tops, lefts)  # tl, tr, bl, br, center, mirrored center.
  flipped = crops[jnp.array([1, 0, 3, 2, 5])][:, :, ::-1, :]
  return jnp.concatenate([crops[:5], flipped], 0)


def chunking(num_views: int, max_chunk: int) -> Tuple[int, int]:
  """(number of chunks, chunk size) covering num_views with the least padding and chunks <= max_chunk."""
  n = -(-num_views // max(1, max_chunk))
  return n, -(-num_views // n)


def compact_outputs(probs: Array, labels: Array, k: int = TOP_K) -> Dict[str, Array]:
  """probs (..., K) masked softmax, labels (..., L) -1 padded -> top-k ids/probs, p_true, p_max."""
  top_p, top_i = jax.lax.top_k(probs, k)
  valid = labels >= 0
  p_lab = jnp.take_along_axis(probs, jnp.where(valid, labels, 0), axis=-1)
  p_true = jnp.max(jnp.where(valid, p_lab, 0.0), axis=-1)
  return {"topk": top_i.astype(jnp.int32), "topk_p": top_p, "p_true": p_true, "p_max": top_p[..., 0]}


def top5_outputs(probs: Array, labels: Array) -> Dict[str, Array]:
  """One prediction per image (the evaluate and tta jobs): top5 ids, top5_p, p_true, p_max."""
  out = compact_outputs(probs, labels, TOP_K)
  out["top5"], out["top5_p"] = out.pop("topk"), out.pop("topk_p")
  return out


def softmax_entropy(logp: Array) -> Array:
  """(..., K) masked log-softmax -> (...,) entropy of the softmax in nats (masked classes add nothing); the same
  formula as `zoomjax.tta.zoom_tta.view_entropy`, so offline and online aggregators rank views alike."""
  p = jnp.exp(logp)
  return -jnp.sum(jnp.where(p > 0, p * logp, 0.0), axis=-1)


def make_step(predict_fn: Callable[[Any, Array], Array], crops_fn: Callable[[Array, Array], Array],
              spec: ViewSpec, *, logit_mask: Optional[np.ndarray] = None, view_chunk: int = 64,
              dtype: Any = jnp.float32, mesh: Optional[jax.sharding.Mesh] = None,
              say: Optional[Callable[[str], None]] = None, record_k: int = RECORD_K):
  """Builds the sweep step `step(variables, canvas, hw, labels) -> dict of compact arrays`.

  Two jitted programs: `views` (canvas -> every view, chunked for the model) compiles once per canvas shape;
  `model` (views -> compact records) has the same shapes for every canvas, so it compiles once per run however
  many canvas buckets the images fall into. Both run on the model's device; only the records come back.
  predict_fn(variables, float32 pixels in [0, 255] (n, crop, crop, 3)) -> logits (n, K); it normalises
  and casts to the compute dtype itself (normalising in bfloat16 would cost precision for nothing).
  dtype: compute dtype of the extra crops' resampling matmuls (the zoom kernel gets it through crops_fn).
  crops_fn(canvas (B, Hc, Wc, 3), hw (B, 2)) -> zoom crops (B, T, crop, crop, 3) in the order of
  `spec.transforms`.
  Outputs (B first): topk (B, V, k) int32, topk_p (B, V, k) f32, entropy/p_true/p_max (B, V) f32, finite
  (B, V) bool (all logits finite), k = record_k (<= the model's classes),
  agg_top5 (B, A, 5) int32, agg_p (B, A, 5) f32, with V = grid views followed by the extra crops and
  A = len(AGG_SETS). `step.views` and `step.model` are the two jitted programs.
  say: where to announce each compile (`compiling the views program for 512x512 canvases...`); None: silent.
  """
  membership = jnp.asarray(spec.membership())
  set_sizes = jnp.maximum(membership.sum(0), 1.0)
  num_views = spec.num_views
  n_chunks, chunk = chunking(num_views, view_chunk)
  pad = n_chunks * chunk - num_views
  mask = None if logit_mask is None else jnp.asarray(np.asarray(logit_mask, bool))
  member_padded = jnp.pad(membership, ((0, pad), (0, 0))).reshape(n_chunks, chunk, -1)

  def views_fn(canvas, hw):
    """(B, n_chunks * chunk, crop, crop, 3): every view of every image, padded to whole model chunks."""
    views = crops_fn(canvas, hw)
    if spec.extra_crops:
      extra = jax.vmap(lambda c, s: ten_crops(c, s, crop=spec.crop, size=spec.crop_resize, dtype=dtype))(
          canvas, hw)
      views = jnp.concatenate([views, extra], axis=1)
    return jnp.pad(views, ((0, 0), (0, pad), (0, 0), (0, 0), (0, 0)))

  def model_fn(variables, views, labels):
    b = views.shape[0]
    # (n_chunks, B * chunk, crop, crop, 3): each model call sees `chunk` views of every image of the batch.
    views = views.reshape((b, n_chunks, chunk) + views.shape[2:]).swapaxes(0, 1)
    views = views.reshape((n_chunks, b * chunk) + views.shape[3:])
    lab = jnp.repeat(labels, chunk, axis=0)

    def body(acc, xs):
      pixels, member = xs
      logits = predict_fn(variables, pixels).astype(jnp.float32)
      finite = jnp.all(jnp.isfinite(logits), axis=-1)
      if mask is not None:
        logits = jnp.where(mask, logits, -jnp.inf)
      logp = jax.nn.log_softmax(logits, axis=-1)
      probs = jnp.exp(logp)
      out = compact_outputs(probs, lab, record_k)
      out["entropy"] = softmax_entropy(logp)
      out["finite"] = finite
      acc = acc + jnp.einsum("bkc,ka->bac", probs.reshape(b, chunk, -1), member,
                             precision=jax.lax.Precision.HIGHEST)
      return acc, out

    num_classes = jax.eval_shape(lambda v, x: predict_fn(v, x), variables,
                                 jax.ShapeDtypeStruct((1,) + views.shape[2:], jnp.float32)).shape[-1]
    if not 1 <= record_k <= num_classes:
      raise UserError(f"config.record_k={record_k}: the model has {num_classes} classes; use 1..{num_classes}")
    acc0 = jnp.zeros((b, len(AGG_SETS), num_classes), jnp.float32)
    acc, outs = jax.lax.scan(body, acc0, (views, member_padded))
    res = {}
    for k, v in outs.items():  # (n_chunks, B * chunk, ...) -> (B, V, ...)
      v = v.reshape((n_chunks, b, chunk) + v.shape[2:]).swapaxes(0, 1)
      res[k] = v.reshape((b, n_chunks * chunk) + v.shape[3:])[:, :num_views]
    agg = compact_outputs(acc / set_sizes[None, :, None], jnp.full((b, len(AGG_SETS), 1), -1, jnp.int32))
    empty = (membership.sum(0) == 0)[None, :, None]
    res["agg_top5"] = jnp.where(empty, -1, agg["topk"])
    res["agg_p"] = jnp.where(empty, 0.0, agg["topk_p"])
    return res

  if mesh is None:
    views_step, model_step = jax.jit(views_fn), jax.jit(model_fn)
  else:  # Variables replicated, image batch (and every output) split over the mesh's 'data' axis.
    views_step = parallel.data_parallel_jit(views_fn, mesh, num_args=2, replicated_argnums=())
    model_step = parallel.data_parallel_jit(model_fn, mesh, num_args=3)

  views_call, model_call = views_step, model_step
  if say is not None:  # A line before each compile: a paper grid's first one takes minutes.
    views_call = progress.announcing(views_step, lambda canvas, hw: (
        canvas.shape, f"the views program for {canvas.shape[1]}x{canvas.shape[2]} canvases"), say)
    model_call = progress.announcing(model_step, lambda variables, views, labels: (
        views.shape, f"the model program for {views.shape[0]} image{'s' if views.shape[0] > 1 else ''} x "
                     f"{num_views} views per step"), say)

  def step(variables, canvas, hw, labels):
    return model_call(variables, views_call(canvas, hw), labels)

  step.views, step.model = views_step, model_step
  return step


def check_finite(out: Dict[str, np.ndarray], index: np.ndarray, ids_of: Callable[[int], str],
                 view_names: List[str], model: str) -> None:
  """Stops with the model, image and view named when a real image's logits are not finite (NaN weights or
  an overflow would otherwise score as class 0 with NaN probabilities: a silent 0 %)."""
  bad = ~np.asarray(out["finite"]) & (np.asarray(index) >= 0)[:, None]
  if bad.any():
    b, v = (int(x[0]) for x in np.nonzero(bad))
    raise NonFiniteError(
        f"model {model} gave non-finite logits on image {ids_of(int(index[b]))} (index {int(index[b])}), view "
        f"{view_names[v]}, and on {int(bad.sum()) - 1} more (image, view) pairs of this batch; check the "
        "checkpoint (NaN weights?) and the compute dtype")


def split_outputs(out: Dict[str, np.ndarray], num_grid: int) -> Dict[str, np.ndarray]:
  """Step outputs -> record fields (grid vs extra crops, compact dtypes: ids int16, top-k probabilities float16)."""
  topk = np.asarray(out["topk"]).astype(np.int16)
  topk_p = np.asarray(out["topk_p"]).astype(np.float16)
  entropy = np.asarray(out["entropy"], np.float32)
  p_true = np.asarray(out["p_true"], np.float32)
  p_max = np.asarray(out["p_max"], np.float32)
  g = num_grid
  return {
      "topk": topk[:, :g], "topk_p": topk_p[:, :g], "entropy": entropy[:, :g], "p_true": p_true[:, :g],
      "p_max": p_max[:, :g], "crop_topk": topk[:, g:], "crop_topk_p": topk_p[:, g:], "crop_entropy": entropy[:, g:],
      "crop_p_true": p_true[:, g:], "crop_p_max": p_max[:, g:],
      "agg_top5": np.asarray(out["agg_top5"]).astype(np.int16), "agg_p": np.asarray(out["agg_p"], np.float32),
  }
