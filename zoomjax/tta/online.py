"""Online test-time adaptation over a stream of batches: source, BN-adapt, TENT, EATA, SAR as pure functions.

Each method is a `StreamMethod(name, init, step)`:
  init(variables) -> state          the model's variables plus what adapts (BatchNorm scale/bias, optimiser
                                    state, EATA's moving-average prediction, SAR's loss EMA, a step count);
  step(state, pixels) -> (state, logits)
                                    one test batch (B, crop, crop, 3) float32 in [0, 255] (the prediction view;
                                    the model's preprocessing normalises) -> the next state and (B, C) logits.
The logits are those the official code returns: the forward pass that the update is computed from, made before
the update (TENT, EATA and SAR all return `outputs` of their first forward). Every adapting method runs BatchNorm
as torch's train mode without running statistics (`zoomjax.models.BatchNorm(prior_strength=0)`): each batch is
normalised with its own mean and biased variance, and gradients flow through them. Only the affine parameters
of the BatchNorm layers adapt; everything else stays as loaded.

`run_stream` scans a fixed-shape stream (T, B, ...) with `lax.scan`; `sharded_step` jits `step` with the batch
split over a device mesh and the state replicated, so batch statistics and gradients are reduced over every
device by XLA and 8 devices give the 1-device result. The state is a pytree: `adapted_arrays` /
`restore_adapted` store and reload its adapted part (a resumed stream continues bit for bit).
"""
import math
from typing import Any, Callable, Dict, Iterable, NamedTuple, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import traverse_util

from zoomjax.data.label_space import mask_logits
from zoomjax.errors import UserError
from zoomjax.models.bundle import ModelBundle
from zoomjax.tta.memo import with_bn_prior

__all__ = ["BATCH_STAT_METHODS", "EATA_D_MARGIN", "EATA_FISHER_ALPHA", "EATA_FISHER_SIZE", "ONLINE_LR",
           "ONLINE_MOMENTUM", "SAR_RESET_CONSTANT", "SAR_RHO", "STREAM_METHODS", "StreamMethod", "adapted_arrays",
           "bn_param_paths", "entropy_margin", "fisher_information", "make_bn_adapt", "make_eata", "make_sar",
           "make_source", "make_stream_method", "make_tent", "restore_adapted", "run_stream", "sar_excluded",
           "sharded_step", "softmax_entropy"]

STREAM_METHODS = ("source", "bn_adapt", "tent", "eata", "sar")
BATCH_STAT_METHODS = ("bn_adapt", "tent", "eata", "sar")  # Need BatchNorm and batches of at least 2 images.
# ImageNet settings shared by the official TENT / EATA / SAR code for ResNet-50 at batch 64: SGD, momentum 0.9,
# no Nesterov, no weight decay, learning rate 0.00025.
ONLINE_LR = 0.00025
ONLINE_MOMENTUM = 0.9
EATA_D_MARGIN = 0.05  # Redundancy threshold on the cosine similarity (EATA main.py --d_margin).
EATA_FISHER_ALPHA = 2000.0  # Weight of the Fisher anti-forgetting term (EATA main.py --fisher_alpha).
EATA_FISHER_SIZE = 2000  # Source images for the Fisher information (EATA main.py --fisher_size).
SAR_RHO = 0.05  # SAM neighbourhood radius (SAR main.py, SAM's default).
SAR_RESET_CONSTANT = 0.2  # Model recovery when the loss EMA falls below this (SAR reset_constant_em).

Params = Dict[str, jax.Array]  # '/'-joined path in the `params` collection -> array.


class StreamMethod(NamedTuple):
  """An online adapter: `state = init(variables)`, then `state, logits = step(state, pixels)` per test batch."""
  name: str
  init: Callable[[Any], Any]
  step: Callable[[Any, jax.Array], Tuple[Any, jax.Array]]


def entropy_margin(num_classes: int) -> float:
  """EATA's and SAR's reliability margin E0 = 0.4 ln C (0.4 ln 1000 on ImageNet)."""
  return 0.4 * math.log(num_classes)


def softmax_entropy(logits: jax.Array, mask: Optional[np.ndarray] = None) -> jax.Array:
  """Per-example entropy of softmax(logits): (B, C) -> (B,); classes outside `mask` take no part."""
  logits = mask_logits(jnp.asarray(logits, jnp.float32), mask)
  logp = jax.nn.log_softmax(logits, axis=-1)
  p = jnp.exp(logp)
  return -jnp.sum(jnp.where(p > 0, p * logp, 0.0), axis=-1)


def bn_param_paths(variables: Any) -> Tuple[str, ...]:
  """'/'-joined paths of every BatchNorm `scale` and `bias` in `params` (the layers holding `batch_stats`)."""
  if not hasattr(variables, "keys") or "batch_stats" not in variables:
    return ()
  layers = sorted({k.rsplit("/", 1)[0] for k in traverse_util.flatten_dict(variables["batch_stats"], sep="/")})
  params = traverse_util.flatten_dict(variables["params"], sep="/")
  return tuple(p for layer in layers for p in (f"{layer}/scale", f"{layer}/bias") if p in params)


def _check_bn(bundle: ModelBundle, method: str) -> Tuple[str, ...]:
  paths = bn_param_paths(bundle.variables)
  if not paths or not hasattr(bundle.module, "bn_prior_strength"):
    raise UserError(f"model {bundle.name!r} has no zoomjax BatchNorm layers, so method={method!r} (test-batch "
                    "statistics) does not apply; use a BatchNorm model (ResNet, EfficientNet, VGG-BN, ...) or "
                    "method=source")
  return paths


def _merge(variables: Any, params: Params) -> Any:
  flat = traverse_util.flatten_dict(variables["params"], sep="/")
  flat.update(params)
  return {**variables, "params": traverse_util.unflatten_dict(flat, sep="/")}


def _source_params(variables: Any, paths: Sequence[str]) -> Params:
  flat = traverse_util.flatten_dict(variables["params"], sep="/")
  return {p: jnp.asarray(flat[p], jnp.float32) for p in paths}


def _masked_mean(values: jax.Array, keep: jax.Array) -> jax.Array:
  """Mean of `values` over `keep` (0 when none is kept: the gradient is then 0, as for torch's empty mean)."""
  keep = keep.astype(values.dtype)
  return jnp.sum(values * keep) / jnp.maximum(jnp.sum(keep), 1.0)


def _select(flag: jax.Array, new: Any, old: Any) -> Any:
  return jax.tree.map(lambda a, b: jnp.where(flag, a, b), new, old)


def make_source(bundle: ModelBundle, *, logit_mask: Optional[np.ndarray] = None) -> StreamMethod:
  """No adaptation: eval-mode BatchNorm with the running statistics (the floor every method is compared with)."""
  apply = bundle.predict_fn(with_bn_prior(bundle.module, None))

  def init(variables):
    return {"variables": variables, "step": jnp.zeros((), jnp.int32)}

  def step(state, pixels):
    logits = mask_logits(apply(state["variables"], pixels).astype(jnp.float32), logit_mask)
    return {**state, "step": state["step"] + 1}, logits

  return StreamMethod("source", init, step)


def make_bn_adapt(bundle: ModelBundle, *, logit_mask: Optional[np.ndarray] = None) -> StreamMethod:
  """BN-adapt (Schneider et al., NeurIPS 2020; Nado et al., 2020): every test batch normalised with its own
  statistics (TENT's "BN" baseline), no parameter update."""
  _check_bn(bundle, "bn_adapt")
  apply = bundle.predict_fn(with_bn_prior(bundle.module, 0.0))

  def init(variables):
    return {"variables": variables, "step": jnp.zeros((), jnp.int32)}

  def step(state, pixels):
    logits = mask_logits(apply(state["variables"], pixels).astype(jnp.float32), logit_mask)
    return {**state, "step": state["step"] + 1}, logits

  return StreamMethod("bn_adapt", init, step)


def _adapting(bundle: ModelBundle, name: str, optimizer: Optional[optax.GradientTransformation],
              exclude: Sequence[str] = ()):
  """Shared pieces: the BatchNorm parameters that adapt, train-mode apply, the optimiser, a fresh state."""
  paths = tuple(p for p in _check_bn(bundle, name) if not any(e in p for e in exclude))
  apply = bundle.predict_fn(with_bn_prior(bundle.module, 0.0))
  optimizer = optimizer if optimizer is not None else optax.sgd(ONLINE_LR, momentum=ONLINE_MOMENTUM)

  def fresh(variables):
    params = _source_params(variables, paths)
    return {"params": params, "opt": optimizer.init(params)}

  def forward(variables, params, pixels):
    return apply(_merge(variables, params), pixels).astype(jnp.float32)

  return paths, forward, optimizer, fresh


def make_tent(bundle: ModelBundle, *, optimizer: Optional[optax.GradientTransformation] = None,
              episodic: bool = False, logit_mask: Optional[np.ndarray] = None) -> StreamMethod:
  """TENT (Wang et al., "Tent: Fully Test-Time Adaptation by Entropy Minimization", ICLR 2021).

  Per batch: forward with test-batch BatchNorm statistics, loss = mean softmax entropy, one optimiser step on
  the BatchNorm scale and bias (github.com/DequanWang/tent `forward_and_adapt`); returns the logits of that
  forward (before the update). Default optimiser: the ImageNet setting, SGD lr 0.00025, momentum 0.9, batch 64.
  episodic: restart from the source parameters and a fresh optimiser for every batch.
  """
  _, forward, optimizer, fresh = _adapting(bundle, "tent", optimizer)

  def init(variables):
    return {"variables": variables, "adapted": fresh(variables), "step": jnp.zeros((), jnp.int32)}

  def step(state, pixels):
    variables = state["variables"]
    adapted = fresh(variables) if episodic else state["adapted"]

    def loss_fn(params):
      logits = mask_logits(forward(variables, params, pixels), logit_mask)
      return jnp.mean(softmax_entropy(logits, logit_mask)), logits

    (_, logits), grads = jax.value_and_grad(loss_fn, has_aux=True)(adapted["params"])
    updates, opt = optimizer.update(grads, adapted["opt"], adapted["params"])
    new = {"params": optax.apply_updates(adapted["params"], updates), "opt": opt}
    return {**state, "adapted": new, "step": state["step"] + 1}, logits

  return StreamMethod("tent", init, step)


def fisher_information(bundle: ModelBundle, variables: Any, batches: Iterable[jax.Array], *,
                       logit_mask: Optional[np.ndarray] = None) -> Dict[str, Params]:
  """EATA's diagonal Fisher information of the BatchNorm parameters on source (clean) batches.

  As EATA's main.py: train-mode BatchNorm, the model's own argmax as the label, mean cross-entropy per batch,
  squared gradient summed over batches and divided by their number. Returns {"fisher": F, "anchor": θ0} keyed
  by `bn_param_paths` (θ0: the source parameters the penalty pulls towards).
  """
  _, forward, _, _ = _adapting(bundle, "eata", None)
  anchor = _source_params(variables, _check_bn(bundle, "eata"))

  @jax.jit
  def squared_grad(pixels):
    def loss_fn(params):
      logits = mask_logits(forward(variables, params, pixels), logit_mask)
      logp = jax.nn.log_softmax(logits, axis=-1)
      target = jax.lax.stop_gradient(jnp.argmax(logits, axis=-1))
      return -jnp.mean(jnp.take_along_axis(logp, target[:, None], axis=-1))
    return jax.tree.map(jnp.square, jax.grad(loss_fn)(anchor))

  total, n = None, 0
  for pixels in batches:
    sq = squared_grad(jnp.asarray(pixels, jnp.float32))
    total = sq if total is None else jax.tree.map(jnp.add, total, sq)
    n += 1
  if n == 0:
    raise UserError("EATA's Fisher information needs at least one source batch (config: online.fisher_size)")
  return {"fisher": jax.tree.map(lambda f: f / n, total), "anchor": anchor}


def make_eata(bundle: ModelBundle, *, fisher: Optional[Dict[str, Params]] = None,
              fisher_alpha: float = EATA_FISHER_ALPHA, e_margin: Optional[float] = None,
              d_margin: float = EATA_D_MARGIN, optimizer: Optional[optax.GradientTransformation] = None,
              episodic: bool = False, logit_mask: Optional[np.ndarray] = None) -> StreamMethod:
  """EATA (Niu et al., "Efficient Test-Time Model Adaptation without Forgetting", ICML 2022).

  Per batch (github.com/mr-eggplant/EATA `forward_and_adapt_eata`): samples with entropy < e_margin are
  reliable; of those, once a moving-average prediction m exists, only samples whose softmax has |cos(m, p)| <
  d_margin are kept (non-redundant); loss = mean over kept samples of exp(e_margin - H) * H, plus
  fisher_alpha * sum F (θ - θ0)^2 when `fisher` (from `fisher_information`) is given (EATA; without it: ETA);
  one SGD step only when a sample is kept. m <- 0.9 m + 0.1 mean(kept softmax) (the first kept batch sets m).
  Defaults: e_margin 0.4 ln C, d_margin 0.05, fisher_alpha 2000, SGD lr 0.00025 momentum 0.9 (batch 64).
  Returns the logits of the forward before the update.
  """
  paths, forward, optimizer, fresh = _adapting(bundle, "eata", optimizer)
  if fisher is not None and set(fisher["fisher"]) != set(paths):
    raise ValueError("make_eata: the Fisher information is not over this model's BatchNorm parameters")
  margin = entropy_margin(int(bundle.num_classes) if logit_mask is None else int(np.sum(logit_mask))) \
      if e_margin is None else float(e_margin)
  num_classes = int(bundle.num_classes)

  def init(variables):
    return {"variables": variables, "adapted": fresh(variables), "probs": jnp.zeros((num_classes,), jnp.float32),
            "probs_set": jnp.zeros((), bool), "num_reliable": jnp.zeros((), jnp.int32),
            "num_updates": jnp.zeros((), jnp.int32), "step": jnp.zeros((), jnp.int32)}

  def step(state, pixels):
    variables = state["variables"]
    adapted = fresh(variables) if episodic else state["adapted"]
    probs_ma, probs_set = state["probs"], state["probs_set"]

    def loss_fn(params):
      logits = mask_logits(forward(variables, params, pixels), logit_mask)
      ent = softmax_entropy(logits, logit_mask)
      ent_c = jax.lax.stop_gradient(ent)
      reliable = ent_c < margin
      probs = jax.nn.softmax(jax.lax.stop_gradient(logits), axis=-1)
      dot = probs @ probs_ma
      norms = jnp.maximum(jnp.linalg.norm(probs, axis=-1) * jnp.linalg.norm(probs_ma), 1e-8)
      novel = jnp.abs(dot / norms) < d_margin
      keep = reliable & jnp.where(probs_set, novel, True)
      loss = _masked_mean(ent * jnp.exp(margin - ent_c), keep)
      if fisher is not None:
        loss = loss + fisher_alpha * sum(jnp.sum(fisher["fisher"][p] * jnp.square(params[p] - fisher["anchor"][p]))
                                         for p in paths)
      return loss, (logits, probs, reliable, keep)

    (_, (logits, probs, reliable, keep)), grads = jax.value_and_grad(loss_fn, has_aux=True)(adapted["params"])
    updates, opt = optimizer.update(grads, adapted["opt"], adapted["params"])
    n_keep = jnp.sum(keep)
    new = _select(n_keep > 0, {"params": optax.apply_updates(adapted["params"], updates), "opt": opt}, adapted)
    mean_kept = jnp.sum(probs * keep[:, None], axis=0) / jnp.maximum(n_keep, 1)
    probs_new = jnp.where(n_keep > 0, jnp.where(probs_set, 0.9 * probs_ma + 0.1 * mean_kept, mean_kept), probs_ma)
    return {**state, "adapted": new, "probs": probs_new, "probs_set": probs_set | (n_keep > 0),
            "num_reliable": state["num_reliable"] + jnp.sum(reliable).astype(jnp.int32),
            "num_updates": state["num_updates"] + n_keep.astype(jnp.int32), "step": state["step"] + 1}, logits

  return StreamMethod("eata", init, step)


def sar_excluded(bundle: ModelBundle) -> Tuple[str, ...]:
  """SAR's rule for the layers it leaves fixed, as parameter path pieces: ResNet's last stage (torchvision's
  `layer4`: zoomjax's last `stage_sizes[-1]` ResidualBlocks) and any path naming `layer4`."""
  sizes = tuple(getattr(bundle.module, "stage_sizes", ()) or ())
  last = tuple(f"ResidualBlock_{k}/" for k in range(sum(sizes[:-1]), sum(sizes))) if sizes else ()
  return ("layer4",) + last


def make_sar(bundle: ModelBundle, *, e_margin: Optional[float] = None, rho: float = SAR_RHO,
             reset_constant: float = SAR_RESET_CONSTANT, exclude: Optional[Sequence[str]] = None,
             optimizer: Optional[optax.GradientTransformation] = None, episodic: bool = False,
             logit_mask: Optional[np.ndarray] = None) -> StreamMethod:
  """SAR (Niu et al., "Towards Stable Test-Time Adaptation in Dynamic Wild World", ICLR 2023).

  Per batch (github.com/mr-eggplant/SAR `forward_and_adapt_sar`): reliable samples (entropy < e_margin) give
  the entropy gradient g; SAM moves to θ + rho g / ||g||; the samples reliable at θ and again there give the
  gradient of the update, which the optimiser applies at θ. The EMA of that second loss (0.9 / 0.1; the first
  value sets it) below `reset_constant` restores the source parameters and optimiser (model recovery; as in the
  official code the EMA itself is kept). Defaults: e_margin 0.4 ln C, rho 0.05, reset at 0.2, SGD lr 0.00025
  momentum 0.9 (batch 64); BatchNorm layers whose path contains an `exclude` entry stay fixed (None:
  `sar_excluded`, SAR's rule: ResNet's last stage). Returns the logits of the first forward (before the update).
  """
  exclude = sar_excluded(bundle) if exclude is None else tuple(exclude)
  paths, forward, optimizer, fresh = _adapting(bundle, "sar", optimizer, exclude)
  if not paths:
    raise UserError(f"model {bundle.name!r}: every BatchNorm layer matches sar exclude={tuple(exclude)}")
  margin = entropy_margin(int(bundle.num_classes) if logit_mask is None else int(np.sum(logit_mask))) \
      if e_margin is None else float(e_margin)

  def init(variables):
    return {"variables": variables, "adapted": fresh(variables), "ema": jnp.zeros((), jnp.float32),
            "ema_set": jnp.zeros((), bool), "num_resets": jnp.zeros((), jnp.int32),
            "step": jnp.zeros((), jnp.int32)}

  def step(state, pixels):
    variables = state["variables"]
    source = fresh(variables)
    adapted = source if episodic else state["adapted"]
    ema, ema_set = (jnp.zeros((), jnp.float32), jnp.zeros((), bool)) if episodic else (state["ema"],
                                                                                        state["ema_set"])
    params = adapted["params"]

    def loss1(params):
      logits = mask_logits(forward(variables, params, pixels), logit_mask)
      ent = softmax_entropy(logits, logit_mask)
      reliable = jax.lax.stop_gradient(ent) < margin
      return _masked_mean(ent, reliable), (logits, reliable)

    (_, (logits, reliable)), g1 = jax.value_and_grad(loss1, has_aux=True)(params)
    norm = jnp.sqrt(sum(jnp.sum(jnp.square(g)) for g in jax.tree.leaves(g1)))
    scale = rho / (norm + 1e-12)
    perturbed = jax.tree.map(lambda p, g: p + g * scale, params, g1)

    def loss2(params):
      ent = softmax_entropy(mask_logits(forward(variables, params, pixels), logit_mask), logit_mask)
      keep = reliable & (jax.lax.stop_gradient(ent) < margin)
      return _masked_mean(ent, keep), keep

    (value2, keep2), g2 = jax.value_and_grad(loss2, has_aux=True)(perturbed)
    updates, opt = optimizer.update(g2, adapted["opt"], params)
    new = {"params": optax.apply_updates(params, updates), "opt": opt}
    has2 = jnp.any(keep2)
    ema = jnp.where(has2, jnp.where(ema_set, 0.9 * ema + 0.1 * value2, value2), ema)
    ema_set = ema_set | has2
    reset = ema_set & (ema < reset_constant)
    new = _select(reset, source, new)
    return {**state, "adapted": new, "ema": ema, "ema_set": ema_set,
            "num_resets": state["num_resets"] + reset.astype(jnp.int32), "step": state["step"] + 1}, logits

  return StreamMethod("sar", init, step)


def make_stream_method(name: str, bundle: ModelBundle, **kwargs: Any) -> StreamMethod:
  """The StreamMethod `name` (one of STREAM_METHODS) with keyword arguments of its constructor."""
  makers = {"source": make_source, "bn_adapt": make_bn_adapt, "tent": make_tent, "eata": make_eata,
            "sar": make_sar}
  if name not in makers:
    raise UserError(f"online method {name!r} is not one of {', '.join(STREAM_METHODS)}")
  return makers[name](bundle, **kwargs)


def run_stream(method: StreamMethod, variables: Any, batches: jax.Array, state: Any = None) -> Tuple[Any, jax.Array]:
  """Adapts over a fixed-shape stream (T, B, crop, crop, 3) with `lax.scan`: -> (final state, (T, B, C) logits).

  state: continue from it instead of `method.init(variables)`.
  """
  state = method.init(variables) if state is None else state
  return jax.lax.scan(method.step, state, jnp.asarray(batches, jnp.float32))


def sharded_step(method: StreamMethod, mesh: jax.sharding.Mesh) -> Callable[[Any, jax.Array], Tuple[Any, jax.Array]]:
  """`method.step` jitted with the batch split over `mesh`'s 'data' axis and the state replicated.

  XLA reduces the batch statistics and the gradients over every device, so the result is the 1-device one
  (up to summation order). Pass the state through `zoomjax.runtime.parallel.replicate` and the pixels through
  `shard_batch`.
  """
  rep = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
  data = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(mesh.axis_names[0]))
  return jax.jit(method.step, in_shardings=(rep, data), out_shardings=(rep, data))


def adapted_arrays(state: Any) -> Dict[str, np.ndarray]:
  """The part of a state that adaptation changes as {key path: numpy array} (the model variables left out)."""
  rest = {k: v for k, v in state.items() if k != "variables"}
  return {jax.tree_util.keystr(path): np.asarray(leaf)
          for path, leaf in jax.tree_util.tree_flatten_with_path(rest)[0]}


def restore_adapted(state: Any, arrays: Dict[str, np.ndarray]) -> Any:
  """`state` (e.g. `method.init(variables)`) with its adapted part replaced by `adapted_arrays`' output.

  Raises ValueError when `arrays` holds other keys or shapes (a state of another method or model).
  """
  rest = {k: v for k, v in state.items() if k != "variables"}
  leaves, treedef = jax.tree_util.tree_flatten_with_path(rest)
  keys = [jax.tree_util.keystr(path) for path, _ in leaves]
  if set(keys) != set(arrays):
    raise ValueError(f"stored state has {len(arrays)} arrays, this method's state {len(keys)} (other keys)")
  new = []
  for key, (_, old) in zip(keys, leaves):
    value = np.asarray(arrays[key])
    if value.shape != np.shape(old):
      raise ValueError(f"stored state {key}: shape {value.shape}, expected {np.shape(old)}")
    new.append(jnp.asarray(value, jnp.asarray(old).dtype))
  return {**jax.tree_util.tree_unflatten(treedef, new), "variables": state["variables"]}
