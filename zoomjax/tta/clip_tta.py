"""CLIP's test-time methods as pure JAX functions: TPT, ZERO, MTA (episodic per image) and TDA (over a stream).

Every episodic method sees the views of one image, `views_fn(image, hw, key) -> (V, S, S, 3)` pixels whose view 0
is the original image (Resize + CenterCrop), and returns `episode(variables, image, hw, key) -> logits (C,)`
like every other method of `zoomjax.tta`:

  tpt   Test-time prompt tuning (Shu et al., NeurIPS 2022): the prompt context ("a photo of a", one learnable
        vector per token) is tuned by ONE AdamW step (lr 5e-3) on the entropy of the mean softmax of the 10 %
        most confident views (lowest entropy), then the original view is classified with the tuned prompts.
        The text tower is differentiated (zoomjax's own `clip.TextTower`, or CoCa's `clip_coca.CocaTextTower`,
        fed token embeddings).
  zero  ZERO (Farina et al., NeurIPS 2024): the same views and filter, argmax per kept view, vote
        (`zoom_tta.aggregate(..., "zero")`); no gradients.
  mta   MeanShift for test-time augmentation (Zanella & Ben Ayed, CVPR 2024): the mode of the views' image
        embeddings, with inlierness weights from the views' softmax affinities, classified by the text head.
  tda   Training-free dynamic adapter (Karmanov et al., CVPR 2024): positive and negative caches of confident
        image embeddings per predicted class, kept over the test stream (`make_tda`: init / step).

The views: `augment_views` (the papers' ImageNet setting: the original + RandomResizedCrop + horizontal flip) or
`zoom_views` (the original + the views of a zoom grid). ZERO, MTA and TDA use the classifier's zero-shot head
(`variables["params"]["zeroshot_head"]`, (E, C), unit columns); TPT needs the text side too (`ClipText`,
stored in `variables["clip_text"]`, see `with_text`). Logits are masked to the dataset's label space (`mask`, e.g.
ImageNet-A/R's 200 classes): softmaxes, entropies, votes and caches only see those classes, as the papers' 200-way
heads do.
"""
import dataclasses
import functools
from typing import Any, Callable, Dict, NamedTuple, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from zoomjax.data.label_space import mask_logits
from zoomjax.errors import UserError
from zoomjax.models.bundle import ModelBundle
from zoomjax.models.clip import ZERO_SHOT_SCALE, TextTower, trim_to_eot
from zoomjax.tta import augment
from zoomjax.tta import online
from zoomjax.tta import zoom_tta
from zoomjax.tta.entropy import marginal_entropy
from zoomjax.tta.memo import EpisodeFn

__all__ = ["CLIP_METHODS", "ClipText", "MTA_ITERS", "MTA_LAMBDA_Q", "MTA_LAMBDA_Y", "TDA_IMAGENET", "TPT_CTX_INIT",
           "TPT_KEEP", "TPT_LR", "TPT_VIEWS", "TdaConfig", "TdaState", "VIEW_SOURCES", "ViewsFn",
           "augment_views", "check_model", "confident_views", "image_side", "job_bundle", "job_episode", "job_summary",
           "job_load_kwargs", "job_stream", "job_views",
           "kept_views", "make_mta", "make_tda", "make_text_side",
           "make_tpt", "make_zero", "mta_mode", "tda_init", "tda_update", "tpt_adapt", "tpt_logits",
           "with_text", "zoom_views"]

CLIP_METHODS = ("tpt", "zero", "mta", "tda")
VIEW_SOURCES = ("augment", "zoom")
TPT_VIEWS = 64  # The original image + 63 augmented views.
TPT_KEEP = 0.1  # Fraction of the views kept by the confidence filter (TPT's selection_p; ZERO's paper gamma).
TPT_LR = 5e-3  # AdamW (torch defaults: betas 0.9 / 0.999, eps 1e-8, weight decay 0.01), one step.
TPT_CTX_INIT = "a photo of a"  # Initial prompt context, one learnable vector per token (4 with CLIP's vocabulary).
MTA_LAMBDA_Y = 0.2  # Entropic term of the inlierness step.
MTA_LAMBDA_Q = 4.0  # Quadratic (affinity) term of the inlierness step.
MTA_ITERS = 5  # Outer iterations, and the cap of each inner loop.
_MTA_TOL = 1e-6  # Inner loops stop once an update moves less than this.

# (image (Hc, Wc, 3), hw (2,) int32, key) -> (V, S, S, 3) float32 pixels in [0, 255]; view 0 is the original.
ViewsFn = Callable[[jax.Array, jax.Array, jax.Array], jax.Array]


# ----------------------------------------------------------------------------------------------------- views

def augment_views(num_views: int = TPT_VIEWS, size: int = 224) -> ViewsFn:
  """TPT's views of an ImageNet-set image: view 0 is Resize(size, bicubic) + CenterCrop(size); views 1.. are
  RandomResizedCrop(size) (torchvision defaults: scale 0.08-1, bilinear) + RandomHorizontalFlip on the
  original image (TPT, ZERO and MTA share them; TPT mixes AugMix in only for its fine-grained sets)."""
  if num_views < 1:
    raise ValueError(f"augment_views needs num_views >= 1, got {num_views}")

  def one(image, hw, key):
    k_crop, k_flip = jax.random.split(key)
    view = augment.random_resized_crop(image, hw, k_crop, size, "bilinear")
    return jnp.where(jax.random.bernoulli(k_flip), view[:, ::-1], view)

  def views_fn(image, hw, key):
    hw = augment.as_hw(image, hw)
    first = augment.standard_view(image, hw, size, size, "bicubic")[None]
    if num_views == 1:
      return first
    rest = jax.vmap(one, in_axes=(None, None, 0))(image, hw, jax.random.split(key, num_views - 1))
    return jnp.concatenate([first, rest], axis=0)

  return views_fn


def zoom_views(grid: Any, size: int = 224, **zoom_kwargs: Any) -> ViewsFn:
  """View 0 the original (Resize(size, bicubic) + CenterCrop(size)), then every view of the zoom grid `grid`
  (`zoomjax.zoom.ZoomGrid` with crop == size) in grid order; the key is unused."""
  if int(grid.crop) != int(size):
    raise ValueError(f"zoom grid crop {grid.crop} differs from the view size {size}")
  crops = zoom_tta.grid_views(grid, **zoom_kwargs)

  def views_fn(image, hw, key=None):
    del key
    hw = augment.as_hw(image, hw)
    first = augment.standard_view(image, hw, size, size, "bicubic")[None]
    return jnp.concatenate([first, crops(image, hw).astype(jnp.float32)], axis=0)

  return views_fn


# ------------------------------------------------------------------------------------------- shared pieces

def kept_views(num_views: int, keep: float, field: str = "keep") -> int:
  """int(num_views * keep), the confidence filter's count (TPT's rule); 0 is a one-line error naming `field`."""
  k = int(num_views * keep)
  if k < 1:
    raise UserError(f"{field}: {num_views} views x keep {keep} leaves int({num_views * keep:g}) = 0 views after the "
                    f"confidence filter; use at least {int(np.ceil(1 / keep))} views or a larger keep")
  return k


def confident_views(logits: jax.Array, k: int) -> jax.Array:
  """Indices of the `k` views with the lowest softmax entropy, most confident first (TPT's
  `select_confident_samples`: a stable ascending sort)."""
  logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
  return jnp.argsort(zoom_tta.view_entropy(logp), stable=True)[:k]


def _strip(variables: Dict[str, Any]) -> Dict[str, Any]:
  return {k: v for k, v in variables.items() if k != "clip_text"}


def image_side(bundle: ModelBundle) -> Callable[[Any, jax.Array], Tuple[jax.Array, jax.Array]]:
  """`fn(variables, pixels (V, S, S, 3)) -> (unit image embeddings (V, E), zero-shot logits (V, C))` of a CLIP
  zero-shot classifier (its intermediates' `image_features`)."""
  normalize = bundle.preprocessing.normalize

  def fn(variables, pixels):
    logits, inter = bundle.module.apply(_strip(variables), normalize(pixels))
    if "image_features" not in inter:
      raise UserError(f"model {bundle.name!r} returns no `image_features`: CLIP's test-time methods need a CLIP "
                      "zero-shot classifier (clip_*, openclip_*)")
    return inter["image_features"].astype(jnp.float32), logits.astype(jnp.float32)

  return fn


def _head(variables) -> jax.Array:
  """The (E, C) zero-shot head: unit class embeddings."""
  return jnp.asarray(variables["params"]["zeroshot_head"], jnp.float32)


# -------------------------------------------------------------------------------------------------------- TPT

@dataclasses.dataclass(frozen=True)
class ClipText:
  """The text side TPT tunes: the text tower, the tokenised prompts "<ctx_init> <class name>." of the classes
  scored, how many tokens of context are learnt and CLIP's logit scale (exp of the checkpoint's logit_scale).

  `classes` (C_kept,) are the label-space columns the prompts stand for (all C, or a dataset's mask): logits of
  the other classes are -inf. The tower's parameters travel in the episode's variables (`with_text`).
  """
  tower: Any  # clip.TextTower, or clip_coca.CocaTextTower (CoCa's cls-pooled tower)
  tokens: np.ndarray  # (C_kept, L) int32, cut after the last eot (`_trim`)
  classes: np.ndarray  # (C_kept,) int32 columns of the classifier's output
  num_classes: int  # C
  n_ctx: int
  logit_scale: float = 100.0


def _trim(tower: Any, tokens: np.ndarray) -> np.ndarray:
  """The prompts cut for `tower(..., trimmed=True)`: after the last eot (`clip.trim_to_eot`), or for CoCa's tower
  one padding position further (`clip_coca.trim_tokens`); both give the untrimmed features."""
  from zoomjax.models import clip_coca  # pylint: disable=import-outside-toplevel
  return clip_coca.trim_tokens(tokens) if isinstance(tower, clip_coca.CocaTextTower) else trim_to_eot(tokens)


def make_text_side(tower: Any, tokenize: Callable[[Sequence[str]], np.ndarray], class_names: Sequence[str],
                   *, ctx_init: str = TPT_CTX_INIT, mask: Optional[np.ndarray] = None,
                   logit_scale: float = 100.0) -> ClipText:
  """TPT's prompts: "<ctx_init> <name>." per class (underscores read as spaces), the first `n_ctx` tokens after
  the start token being the learnable context (n_ctx = the tokens of `ctx_init`; 4 for "a photo of a").
  `tower`: `clip.TextTower` (OpenAI/open_clip ViT CLIPs, CLIP ResNets, OpenCLIP ConvNeXt and EVA-02 CLIPs) or
  `clip_coca.CocaTextTower` (CoCa)."""
  names = [str(n).replace("_", " ") for n in class_names]
  if mask is not None and len(mask) != len(names):
    raise ValueError(f"label mask has {len(mask)} classes, the class names {len(names)}")
  classes = np.arange(len(names)) if mask is None else np.flatnonzero(np.asarray(mask, bool))
  ctx = ctx_init.replace("_", " ")
  n_ctx = int(np.count_nonzero(tokenize([ctx])[0])) - 2  # minus the start and end tokens
  if n_ctx < 1:
    raise UserError(f"ctx_init={ctx_init!r}: no context tokens to learn")
  # Cut after the last eot: TPT encodes the prompts twice per image, and they are short (the same features).
  tokens = _trim(tower, np.asarray(tokenize([f"{ctx} {names[c]}." for c in classes]), np.int32))
  return ClipText(tower, tokens, classes.astype(np.int32), len(names), n_ctx, float(logit_scale))


def with_text(variables: Dict[str, Any], text_params: Any, text: Optional[ClipText] = None) -> Dict[str, Any]:
  """The classifier's variables with the text tower's parameters (and, from `text` made without a mask, every
  class's prompt tokens (C, L)) under `clip_text`, what TPT episodes read: as arguments rather than constants they
  are not folded into the compiled program (folding 1000 prompts costs seconds of compilation)."""
  out = {"params": text_params}
  if text is not None:
    if len(text.classes) != text.num_classes:
      raise ValueError("with_text stores every class's prompts: make the text side without a mask")
    out["tokens"] = np.asarray(text.tokens, np.int32)
  return {**variables, "clip_text": out}


def _prompt_parts(text: ClipText, text_params, tokens=None) -> Tuple[jax.Array, jax.Array]:
  """(initial context (n_ctx, W), every prompt's token embeddings (C_kept, L, W))."""
  table = jnp.asarray(text_params["token_embedding"]["embedding"], jnp.float32)
  emb = table[jnp.asarray(text.tokens if tokens is None else tokens)]
  return emb[0, 1:1 + text.n_ctx], emb


def _text_features(text: ClipText, text_params, ctx: jax.Array, emb: jax.Array, tokens=None) -> jax.Array:
  """Unit text embeddings (C_kept, E) of the prompts with `ctx` in the context slots."""
  emb = emb.at[:, 1:1 + text.n_ctx].set(jnp.broadcast_to(ctx, (emb.shape[0],) + ctx.shape))
  out = text.tower.apply({"params": text_params}, jnp.asarray(text.tokens if tokens is None else tokens), emb,
                         trimmed=True)
  return out / jnp.linalg.norm(out, axis=-1, keepdims=True)


def tpt_logits(text: ClipText, text_params, ctx: jax.Array, features: jax.Array, tokens=None) -> jax.Array:
  """(V, C) logits of unit image `features` (V, E) against the prompts with context `ctx`; -inf off the mask.
  tokens: `text.tokens` as a traced array (`with_text`), else the constant."""
  _, emb = _prompt_parts(text, text_params, tokens)
  kept = text.logit_scale * features @ _text_features(text, text_params, ctx, emb, tokens).T
  out = jnp.full((features.shape[0], text.num_classes), -jnp.inf, jnp.float32)
  return out.at[:, jnp.asarray(text.classes)].set(kept)


def tpt_adapt(text: ClipText, text_params, features: jax.Array, *, keep: int,
              optimizer: Optional[optax.GradientTransformation] = None, steps: int = 1, tokens=None) -> jax.Array:
  """TPT's tuned context (n_ctx, W): `steps` optimiser steps from "<ctx_init>" on the marginal entropy of the
  `keep` views (rows of unit `features` (V, E)) most confident under the initial prompts (chosen once, as TPT)."""
  optimizer = optimizer if optimizer is not None else optax.adamw(TPT_LR, weight_decay=0.01)
  ctx0, emb = _prompt_parts(text, text_params, tokens)
  features = jax.lax.stop_gradient(features)

  def view_logits(ctx):
    return text.logit_scale * features @ _text_features(text, text_params, ctx, emb, tokens).T

  def loss(ctx, idx):
    return marginal_entropy(view_logits(ctx)[idx])

  idx = None
  ctx, state = ctx0, optimizer.init(ctx0)
  for _ in range(steps):
    if idx is None:  # The first step's forward pass also picks the views.
      logits, vjp = jax.vjp(view_logits, ctx)
      idx = confident_views(logits, keep)
      g_logits = jax.grad(marginal_entropy)(logits[idx])
      grad = vjp(jnp.zeros_like(logits).at[idx].set(g_logits))[0]
    else:
      grad = jax.grad(loss)(ctx, idx)
    updates, state = optimizer.update(grad, state, ctx)
    ctx = optax.apply_updates(ctx, updates)
  return ctx


def make_tpt(bundle: ModelBundle, text: ClipText, views_fn: ViewsFn, *, keep: float = TPT_KEEP,
             num_views: int = TPT_VIEWS, lr: float = TPT_LR, steps: int = 1,
             logit_mask: Optional[np.ndarray] = None) -> EpisodeFn:
  """TPT episode `(variables, image, hw, key) -> logits (C,)`; `variables = with_text(classifier variables, text
  params, text)`. The context starts from `text`'s "<ctx_init>" for every image (nothing carries over)."""
  k = kept_views(num_views, keep)
  features_fn = image_side(bundle)
  mask = None if logit_mask is None else np.asarray(logit_mask, bool)

  def episode(variables, image, hw=None, key=None):
    if key is None and num_views > 1:
      raise ValueError("a TPT episode needs a jax.random key")
    image = jnp.asarray(image)
    views = views_fn(image, augment.as_hw(image, hw), key)
    if views.shape[0] != num_views:
      raise ValueError(f"the views function gave {views.shape[0]} views, not num_views={num_views}")
    features, _ = features_fn(variables, views)
    text_params, tokens = variables["clip_text"]["params"], variables["clip_text"].get("tokens")
    if tokens is not None:
      tokens = jnp.asarray(tokens)[jnp.asarray(text.classes)]
    ctx = tpt_adapt(text, text_params, features, keep=k, optimizer=optax.adamw(lr, weight_decay=0.01),
                    steps=steps, tokens=tokens)
    return mask_logits(tpt_logits(text, text_params, ctx, features[:1], tokens)[0], mask)

  return episode


# ------------------------------------------------------------------------------------------------------- ZERO

def make_zero(bundle: ModelBundle, views_fn: ViewsFn, *, keep: float = TPT_KEEP, num_views: int = TPT_VIEWS,
              logit_mask: Optional[np.ndarray] = None) -> EpisodeFn:
  """ZERO episode: the zero-shot logits of every view, the `keep` fraction most confident kept, one vote each
  for its argmax (`zoom_tta.aggregate(..., "zero")`)."""
  kept_views(num_views, keep)
  features_fn = image_side(bundle)
  mask = None if logit_mask is None else np.asarray(logit_mask, bool)

  def episode(variables, image, hw=None, key=None):
    image = jnp.asarray(image)
    views = views_fn(image, augment.as_hw(image, hw), key)
    _, logits = features_fn(variables, views)
    return zoom_tta.aggregate(logits, "zero", mask, rho=keep)

  return episode


# -------------------------------------------------------------------------------------------------------- MTA

def _gaussian(mode, bandwidth, features):
  d2 = jnp.sum((features - mode) ** 2, axis=-1)
  return jnp.exp(-d2 / (2 * bandwidth ** 2))


def mta_mode(features: jax.Array, logits: jax.Array, *, lambda_y: float = MTA_LAMBDA_Y,
             lambda_q: float = MTA_LAMBDA_Q, iters: int = MTA_ITERS) -> Tuple[jax.Array, jax.Array]:
  """MTA's (unit mode (E,), inlierness weights (V,)) of unit view embeddings `features` (V, E).

  Per-view bandwidth: sqrt(0.5 * mean squared distance to the int(0.3 (V - 1)) nearest other views); affinity:
  softmax(logits) @ softmax(logits).T; weights start uniform, the mode at view 0. `iters` rounds of: weights
  y <- softmax((density + lambda_q * A y) / lambda_y) and mode <- normalise(sum density * y * f / sum
  density * y), each inner loop repeated until it moves less than 1e-6, at most `iters` times.
  """
  features = features.astype(jnp.float32)
  v = features.shape[0]
  knn = int(0.3 * (v - 1))
  if knn < 1:
    raise UserError(f"MTA needs at least 5 views for its bandwidth (int(0.3 x (views - 1)) >= 1 neighbours), "
                    f"got {v}")
  d2 = jnp.sum((features[:, None] - features[None]) ** 2, axis=-1)
  nearest = jnp.sort(d2, axis=1)[:, 1:knn + 1]
  bandwidth = jnp.sqrt(0.5 * jnp.mean(nearest, axis=1))
  p = jax.nn.softmax(logits.astype(jnp.float32), axis=-1)
  affinity = p @ p.T

  def loop(fn, x):
    def body(_, carry):
      x, done = carry
      new = fn(x)
      return jnp.where(done, x, new), done | (jnp.linalg.norm(x - new) < _MTA_TOL)
    return jax.lax.fori_loop(0, iters, body, (x, jnp.bool_(False)))[0]

  def outer(_, carry):
    y, mode = carry
    density = _gaussian(mode, bandwidth, features)
    y = loop(lambda y: jax.nn.softmax((density + lambda_q * affinity @ y) / lambda_y), y)

    def mode_step(m):
      w = _gaussian(m, bandwidth, features) * y
      m = jnp.sum(w[:, None] * features, axis=0) / jnp.sum(w)
      return m / jnp.linalg.norm(m)

    return y, loop(mode_step, mode)

  y, mode = jax.lax.fori_loop(0, iters, outer, (jnp.full((v,), 1.0 / v), features[0]))
  return mode, y


def make_mta(bundle: ModelBundle, views_fn: ViewsFn, *, lambda_y: float = MTA_LAMBDA_Y,
             lambda_q: float = MTA_LAMBDA_Q, iters: int = MTA_ITERS,
             logit_mask: Optional[np.ndarray] = None) -> EpisodeFn:
  """MTA episode: the MeanShift mode of the views' embeddings (`mta_mode`) scored by the zero-shot head
  (100 x cosine, CLIP's scale)."""
  features_fn = image_side(bundle)
  mask = None if logit_mask is None else np.asarray(logit_mask, bool)

  def episode(variables, image, hw=None, key=None):
    image = jnp.asarray(image)
    views = views_fn(image, augment.as_hw(image, hw), key)
    features, logits = features_fn(variables, views)
    mode, _ = mta_mode(features, mask_logits(logits, mask), lambda_y=lambda_y, lambda_q=lambda_q, iters=iters)
    return mask_logits(ZERO_SHOT_SCALE * mode @ _head(variables), mask)

  return episode


# -------------------------------------------------------------------------------------------------------- TDA

@dataclasses.dataclass(frozen=True)
class TdaConfig:
  """TDA's caches (the official ImageNet configuration by default: `TDA_IMAGENET`).

  Positive cache: `pos_capacity` embeddings per predicted class, the lowest-entropy ones; logits + pos_alpha *
  exp(-pos_beta (1 - cos)) @ one-hot. Negative cache: only images whose normalised entropy (entropy / log2 C)
  lies in `neg_entropy`; logits - neg_alpha * exp(-neg_beta (1 - cos)) @ [neg_mask[0] < p < neg_mask[1]].
  """
  pos_capacity: int = 3
  pos_alpha: float = 2.0
  pos_beta: float = 5.0
  neg_capacity: int = 2
  neg_alpha: float = 0.117
  neg_beta: float = 1.0
  neg_entropy: Tuple[float, float] = (0.2, 0.5)
  neg_mask: Tuple[float, float] = (0.03, 1.0)
  keep: float = TPT_KEEP  # Confidence filter over an image's views (with more than one view).


TDA_IMAGENET = TdaConfig()


class TdaState(NamedTuple):
  """TDA's caches, per class a few slots sorted by entropy (+inf = empty).

  pos_keys (C, Kp, E), pos_loss (C, Kp); neg_keys (C, Kn, E), neg_loss (C, Kn), neg_prob (C, Kn, C)."""
  pos_keys: jax.Array
  pos_loss: jax.Array
  neg_keys: jax.Array
  neg_loss: jax.Array
  neg_prob: jax.Array


def tda_init(num_classes: int, embed_dim: int, config: TdaConfig = TDA_IMAGENET) -> TdaState:
  """Empty caches."""
  c, e = int(num_classes), int(embed_dim)
  return TdaState(jnp.zeros((c, config.pos_capacity, e)), jnp.full((c, config.pos_capacity), jnp.inf),
                  jnp.zeros((c, config.neg_capacity, e)), jnp.full((c, config.neg_capacity), jnp.inf),
                  jnp.zeros((c, config.neg_capacity, c)))


def _insert(keys, loss, extra, cls, key, value, extra_value):
  """TDA's `update_cache` on one class's slots: a free slot, else the worst (last) one if `value` is lower;
  then a stable sort by loss."""
  row_loss = loss[cls]
  put = row_loss[-1] > value  # an empty slot is +inf
  row_loss = row_loss.at[-1].set(jnp.where(put, value, row_loss[-1]))
  row_keys = keys[cls].at[-1].set(jnp.where(put, key, keys[cls][-1]))
  order = jnp.argsort(row_loss, stable=True)
  keys = keys.at[cls].set(row_keys[order])
  loss = loss.at[cls].set(row_loss[order])
  if extra is not None:
    row_extra = extra[cls].at[-1].set(jnp.where(put, extra_value, extra[cls][-1]))
    extra = extra.at[cls].set(row_extra[order])
  return keys, loss, extra


def _cache_logits(feature, keys, loss, values, alpha, beta):
  """alpha * exp(-beta (1 - feature . key)) @ values over the filled slots."""
  filled = jnp.isfinite(loss).reshape(-1)
  affinity = keys.reshape(-1, keys.shape[-1]) @ feature
  weight = jnp.where(filled, jnp.exp(-beta * (1.0 - affinity)), 0.0)
  return alpha * weight @ values.reshape(weight.shape[0], -1)


def tda_update(state: TdaState, features: jax.Array, logits: jax.Array, config: TdaConfig = TDA_IMAGENET,
               mask: Optional[np.ndarray] = None) -> Tuple[TdaState, jax.Array]:
  """One test image: its views' unit embeddings (V, E) and zero-shot logits (V, C) -> (caches, final logits (C,)).

  With several views, the `config.keep` most confident are kept: feature = their mean embedding (not
  re-normalised), logits = their mean, entropy = that of their mean softmax (TDA's `get_clip_logits`); with one,
  that view's. The image enters the caches before its own logits are computed, as in TDA.
  """
  logits = mask_logits(logits.astype(jnp.float32), mask)
  c = logits.shape[-1]
  n_classes = c if mask is None else int(np.count_nonzero(mask))
  v = features.shape[0]
  if v > 1:
    idx = confident_views(logits, kept_views(v, config.keep, "TDA keep"))
    sel = logits[idx]
    feature = jnp.mean(features[idx], axis=0)
    clip_logits = jnp.mean(sel, axis=0)
    loss = marginal_entropy(sel, mask)
    prob = jnp.mean(jax.nn.softmax(sel, axis=-1), axis=0)
  else:
    feature, clip_logits = features[0], logits[0]
    loss = zoom_tta.view_entropy(jax.nn.log_softmax(logits[0]))
    prob = jax.nn.softmax(logits[0])
  pred = jnp.argmax(clip_logits)
  pos_keys, pos_loss, _ = _insert(state.pos_keys, state.pos_loss, None, pred, feature, loss, None)
  neg_keys, neg_loss, neg_prob = _insert(state.neg_keys, state.neg_loss, state.neg_prob, pred, feature, loss, prob)
  h = loss / np.log2(n_classes)  # TDA's normalised entropy: nats over log2(C).
  into_neg = (config.neg_entropy[0] < h) & (h < config.neg_entropy[1])
  neg_keys = jnp.where(into_neg, neg_keys, state.neg_keys)
  neg_loss = jnp.where(into_neg, neg_loss, state.neg_loss)
  neg_prob = jnp.where(into_neg, neg_prob, state.neg_prob)
  new = TdaState(pos_keys, pos_loss, neg_keys, neg_loss, neg_prob)
  one_hot = jnp.broadcast_to(jnp.eye(c, dtype=jnp.float32)[:, None], pos_keys.shape[:2] + (c,))
  out = clip_logits + _cache_logits(feature, pos_keys, pos_loss, one_hot, config.pos_alpha, config.pos_beta)
  lo, hi = config.neg_mask
  neg_values = ((neg_prob > lo) & (neg_prob < hi)).astype(jnp.float32)
  out = out - _cache_logits(feature, neg_keys, neg_loss, neg_values, config.neg_alpha, config.neg_beta)
  return new, mask_logits(out, mask)


def make_tda(bundle: ModelBundle, views_fn: Optional[ViewsFn] = None, config: TdaConfig = TDA_IMAGENET, *,
             logit_mask: Optional[np.ndarray] = None, seed: int = 0) -> online.StreamMethod:
  """TDA as a `zoomjax.tta.online.StreamMethod`: `init(variables) -> state`, `step(state, pixels (B, S, S, 3)) ->
  (state, logits (B, C))`, the B images taken in order (each enters the caches before the next is scored).
  `views_fn` (None: the crop alone, TDA's ImageNet setting) makes each image's views from its crop, with keys
  drawn from the state's key (`seed`)."""
  features_fn = image_side(bundle)
  mask = None if logit_mask is None else np.asarray(logit_mask, bool)
  e = int(np.shape(bundle.variables["params"]["zeroshot_head"])[0])

  def init(variables):
    return {"variables": variables, "caches": tda_init(bundle.num_classes, e, config),
            "key": jax.random.PRNGKey(seed)}

  def step(state, pixels):
    pixels = jnp.asarray(pixels, jnp.float32)
    key, sub = jax.random.split(state["key"])

    def one(caches, args):
      image, k = args
      if views_fn is None:
        views = image[None]
      else:
        views = views_fn(image, jnp.asarray(image.shape[:2], jnp.int32), k)
      features, logits = features_fn(state["variables"], views)
      return tda_update(caches, features, logits, config, mask)

    caches, logits = jax.lax.scan(one, state["caches"], (pixels, jax.random.split(sub, pixels.shape[0])))
    return {"variables": state["variables"], "caches": caches, "key": key}, logits

  return online.StreamMethod("tda", init, step)


# ------------------------------------------------------------------------------------ in the tta job (configs/tta.py)

class _TextFamily(NamedTuple):
  """What TPT needs of a registered family: its text tower's activation and sizes (the released model's; a
  random tower starts from them), and whether it is CoCa's cls-pooled tower (`clip_coca.CocaTextTower`)."""
  activation: str
  text: Dict[str, Any]
  coca: bool = False


def _families() -> Dict[str, _TextFamily]:
  """Registered families whose text tower TPT tunes: OpenAI/open_clip ViT CLIPs, OpenAI's CLIP ResNets, OpenCLIP
  ConvNeXt and EVA-02 CLIPs (all `clip.TextTower`) and CoCa (`clip_coca.CocaTextTower`)."""
  # pylint: disable-next=import-outside-toplevel
  from zoomjax.models import clip_archs, clip_coca, clip_convnext, clip_eva, clip_families, clip_resnet
  fams = {n: _TextFamily(f.activation, clip_archs.ARCHS[f.arch]["text"]) for n, f in clip_families.FAMILIES.items()}
  # OpenAI's RN CLIPs share ViT-B/32's text tower layout (the embedding width comes from the head).
  rn_text = clip_archs.ARCHS["ViT-B-32"]["text"]
  fams.update({n: _TextFamily(f.activation, clip_resnet.ARCHS[f.arch].get("text", rn_text))
               for n, f in clip_resnet.FAMILIES.items()})
  for module in (clip_convnext, clip_eva):  # open_clip's text transformer, exact GELU.
    fams.update({n: _TextFamily(f.activation, module.ARCHS[f.arch]["text"]) for n, f in module.FAMILIES.items()})
  fams.update({n: _TextFamily("gelu", clip_coca.ARCHS[f.arch]["text"], coca=True)
               for n, f in clip_coca.FAMILIES.items()})
  return fams


def check_model(name: str, method: str) -> None:
  """A one-line error unless `name` is a registered CLIP zero-shot classifier (what every CLIP method needs)."""
  from zoomjax.models import clip_families  # pylint: disable=import-outside-toplevel
  try:
    ok = clip_families.is_zero_shot(name)
  except (KeyError, ValueError):
    ok = False
  if not ok:
    raise UserError(f"method={method} needs a CLIP zero-shot classifier (clip_*, openclip_*), not model {name!r}")
  if method == "tpt" and name not in _families():
    from zoomjax.models import siglip, siglip_naflex  # pylint: disable=import-outside-toplevel
    if name in siglip.FAMILIES or name in siglip_naflex.FAMILIES:
      raise UserError(f"method=tpt: model {name!r} is SigLIP, not CLIP (a sigmoid head over independent class "
                      "scores and a SentencePiece tokenizer, not a softmax over BPE prompts); TPT's prompt tuning "
                      "is CLIP's: use method=zero, mta or tda on it")
    raise UserError(f"method=tpt tunes the prompt through a CLIP text tower; model {name!r} has none zoomjax can "
                    "differentiate: use method=zero, mta or tda on it")


def _byte_tokenize(texts: Sequence[str], context_length: int) -> np.ndarray:
  """Start token, UTF-8 bytes, end token (the largest id): prompts for a random text tower, which has no
  vocabulary to match."""
  out = np.zeros((len(texts), context_length), np.int32)
  for i, t in enumerate(texts):
    ids = [256] + list(t.encode("utf-8"))[:context_length - 2] + [257]
    out[i, :len(ids)] = ids
  return out


def _text_for_job(config, bundle: ModelBundle, params: bool = True
                  ) -> Tuple[Any, Any, Callable, Tuple[str, ...], float]:
  """(text tower, its params, tokenize, class names, logit scale) of the job's CLIP model (TPT): a random tower
  of the family's layout (random_init), else the checkpoint's own, at the top level of the state dict (OpenAI,
  open_clip's CLIP) or under `text.*` (open_clip's CustomTextCLIP: EVA-02, CoCa). params=False: None for the
  params (the episode's come with the bundle; a random tower is not initialised twice)."""
  from zoomjax.checkpoints import read_checkpoint  # pylint: disable=import-outside-toplevel
  from zoomjax.checkpoints import convert_clip  # pylint: disable=import-outside-toplevel
  from zoomjax.models import clip_coca, clip_eva  # pylint: disable=import-outside-toplevel
  from zoomjax.models import clip_zero_shot as zs  # pylint: disable=import-outside-toplevel
  from zoomjax.models.clip_archs import config_from_state_dict  # pylint: disable=import-outside-toplevel
  from zoomjax.models.clip_tokenizer import ClipTokenizer  # pylint: disable=import-outside-toplevel
  m, c = config.model, config.clip
  family = _families()[m.name]
  activation = dict(m.overrides).get("activation", family.activation)

  def make_tower(text_cfg):
    return clip_coca.CocaTextTower(**text_cfg) if family.coca else TextTower(**text_cfg, activation=activation)

  random_init = bool(m.random_init)
  explicit = c.class_names not in ("", None, "openai", "zoom_paper")
  if random_init and not explicit and zs.installed_package_file(zs.METADATA_FILE) is None:
    names = tuple(f"class {i}" for i in range(bundle.num_classes))  # A random tower: any names do.
  else:
    names = zs.resolve_class_names(c.class_names)
  if len(names) != bundle.num_classes:
    raise UserError(f"clip.class_names={c.class_names!r}: {len(names)} names for a {bundle.num_classes}-class "
                    "classifier; give one name per output class")
  if random_init:
    embed_dim = int(np.shape(bundle.variables["params"]["zeroshot_head"])[0])
    text_cfg = dict(family.text, **{k: v for k, v in dict(c.text).items() if v}, embed_dim=embed_dim)
    if c.vocab or zs.installed_package_file(zs.VOCAB_FILE):
      tok = ClipTokenizer(zs.resolve_vocab(c.vocab), context_length=text_cfg["context_length"])
      text_cfg["vocab_size"], tokenize = tok.vocab_size, tok
    else:
      text_cfg["vocab_size"] = 258
      tokenize = functools.partial(_byte_tokenize, context_length=text_cfg["context_length"])
    tower = make_tower(text_cfg)
    weights = None
    if params:  # Jitted: one compilation instead of one per initialiser op.
      tokens = jnp.zeros((1, text_cfg["context_length"]), jnp.int32)
      weights = jax.jit(tower.init)(jax.random.PRNGKey(int(m.seed) + 1), tokens)["params"]
    return tower, weights, tokenize, names, 100.0
  flat = convert_clip.strip_module_prefix(read_checkpoint(m.checkpoint))
  if not family.coca:
    flat = clip_eva.lift_text_tower(flat)  # `text.*` (CustomTextCLIP) to the top level, as OpenAI's layout
  want = "text.cls_emb" if family.coca else "token_embedding.weight"
  if want not in flat:
    raise UserError(f"{m.checkpoint}: no text tower (`{want}`); method=tpt tunes the prompt through it: pass "
                    f"the full OpenAI/open_clip checkpoint of {m.name}, not a built zero-shot file")
  if family.coca:
    text_cfg = clip_coca.text_config(flat)
  else:
    text_cfg = config_from_state_dict(flat, vision=False)["text"]
  tok = ClipTokenizer(zs.resolve_vocab(c.vocab), context_length=text_cfg["context_length"])
  if tok.vocab_size != text_cfg["vocab_size"]:
    raise UserError(f"clip.vocab: {tok.vocab_size} tokens but the checkpoint's text tower embeds "
                    f"{text_cfg['vocab_size']}: pass the vocabulary the model was trained with")
  convert = convert_clip.convert_coca_text if family.coca else convert_clip.convert_clip_text
  scale = float(np.exp(np.asarray(flat["logit_scale"], np.float64))) if "logit_scale" in flat else 100.0
  converted = convert(flat, text_heads=text_cfg["num_heads"])["params"] if params else None
  return make_tower(text_cfg), converted, tok, names, scale


def job_load_kwargs(config) -> Dict[str, Any]:
  """`zoomjax.models.load` options of a CLIP method's classifier: the vocabulary, class names and templates its
  zero-shot head is built from (`config.clip`); none for other methods or models."""
  from zoomjax.models import clip_families  # pylint: disable=import-outside-toplevel
  if str(config.method) not in CLIP_METHODS:
    return {}
  try:
    if not clip_families.is_zero_shot(str(config.model.name)):
      return {}
  except (KeyError, ValueError):
    return {}
  c = config.clip
  return {"vocab": c.vocab or None, "class_names": c.class_names or None, "templates": c.templates or None}


def job_views(config) -> Tuple[ViewsFn, int]:
  """(views function, view count) of `config.clip.views`: 'augment' (num_views) or 'zoom' (1 + the grid)."""
  from zoomjax import zoom  # pylint: disable=import-outside-toplevel
  from zoomjax.analysis import paper_numbers  # pylint: disable=import-outside-toplevel
  size = int(config.view.crop)
  if config.clip.views == "augment":
    return augment_views(int(config.clip.num_views), size), int(config.clip.num_views)
  if config.clip.views != "zoom":
    raise UserError(f"clip.views={config.clip.views!r}: use one of {', '.join(VIEW_SOURCES)}")
  scales = tuple(int(s) for s in config.zoom.scales) or paper_numbers.ZOOM_IN_SCALES
  try:
    grid = zoom.ZoomGrid(scales, anchors=int(config.zoom.anchors), crop=size)
  except (TypeError, ValueError) as e:
    raise UserError(f"config.zoom: {e}") from None
  return zoom_views(grid, size), 1 + len(scales) * int(config.zoom.anchors) ** 2


def job_bundle(config, bundle: ModelBundle) -> ModelBundle:
  """The job's classifier, checked to be a CLIP one, with TPT's text tower attached (`with_text`); the view
  count is checked against the confidence filter here, before the workdir is claimed."""
  method = str(config.method)
  check_model(str(config.model.name), method)
  _, num_views = job_views(config)
  if method in ("tpt", "zero") or (method == "tda" and num_views > 1):
    kept_views(num_views, float(config.clip.keep), "clip.num_views" if config.clip.views == "augment"
               else "zoom.scales / zoom.anchors")
  if method == "mta" and int(0.3 * (num_views - 1)) < 1:
    raise UserError(f"clip.num_views={num_views}: MTA needs at least 5 views (int(0.3 x (views - 1)) neighbours)")
  if method != "tpt":
    return bundle
  tower, params, tokenize, names, scale = _text_for_job(config, bundle)
  text = make_text_side(tower, tokenize, names, ctx_init=str(config.clip.ctx_init), logit_scale=scale)
  return dataclasses.replace(bundle, variables=with_text(bundle.variables, params, text))


def job_episode(config, bundle: ModelBundle, logit_mask: np.ndarray) -> EpisodeFn:
  """The episode of `config.method` in tpt | zero | mta (bundle: `job_bundle`'s)."""
  method = str(config.method)
  c = config.clip
  views_fn, num_views = job_views(config)
  if method == "zero":
    return make_zero(bundle, views_fn, keep=float(c.keep), num_views=num_views, logit_mask=logit_mask)
  if method == "mta":
    return make_mta(bundle, views_fn, lambda_y=float(c.mta_lambda_y), lambda_q=float(c.mta_lambda_q),
                    logit_mask=logit_mask)
  if method == "tpt":
    if "clip_text" not in bundle.variables:
      raise ValueError("method=tpt: pass the bundle through clip_tta.job_bundle first (it attaches the text tower)")
    tower, _, tokenize, names, scale = _text_for_job(config, bundle, params=False)
    text = make_text_side(tower, tokenize, names, ctx_init=str(c.ctx_init), mask=logit_mask, logit_scale=scale)
    return make_tpt(bundle, text, views_fn, keep=float(c.keep), num_views=num_views, lr=float(c.lr),
                    steps=int(c.steps), logit_mask=logit_mask)
  raise UserError(f"method={method!r} is not an episodic CLIP method (tpt, zero, mta)")


def job_summary(config) -> Dict[str, Any]:
  """What metrics.json records of a CLIP method's setting: the view source and count, the filter, TPT's step."""
  c = config.clip
  _, num_views = job_views(config)
  out = {"views": str(c.views), "num_views": num_views, "keep": float(c.keep)}
  if config.method == "tpt":
    out.update(optimizer=f"adamw(lr={float(c.lr)}, weight_decay=0.01)", steps=int(c.steps), ctx_init=str(c.ctx_init))
  if config.method == "mta":
    out.update(lambda_y=float(c.mta_lambda_y), lambda_q=float(c.mta_lambda_q), iters=MTA_ITERS)
  if config.method == "tda":
    out.update(dataclasses.asdict(dataclasses.replace(TDA_IMAGENET, keep=float(c.keep))))
  return out


def job_stream(config, bundle: ModelBundle, logit_mask: np.ndarray) -> online.StreamMethod:
  """TDA for the job's stream: each prediction-view crop's views from `config.clip` (augment with num_views=1:
  the crop alone, TDA's own ImageNet setting), TDA's ImageNet caches, the filter's `keep`."""
  views_fn, num_views = job_views(config)
  cfg = dataclasses.replace(TDA_IMAGENET, keep=float(config.clip.keep))
  return make_tda(bundle, None if num_views == 1 else views_fn, cfg, logit_mask=logit_mask)
