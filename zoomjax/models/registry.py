"""Model registry: a name -> how to build the module, read its checkpoint and preprocess its inputs.

`load(name, checkpoint)` is the one way a model gets weights: read the file (never executing code from it),
convert it to the module's variable tree, and pass it through the load-and-merge gate against
`jax.eval_shape(module.init)` (so loading does not pay for a real initialisation). Preprocessing lives in the
registry entry, never in a global default, because checkpoints of one architecture disagree on it.
"""
import dataclasses
import difflib
import functools
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from zoomjax.checkpoints import CheckpointError, merge_into, read_checkpoint
from zoomjax.errors import UnknownNameError, UserError
from zoomjax.models.bundle import ModelBundle, Preprocessing


@dataclasses.dataclass(frozen=True)
class ModelSpec:
  """One registered model: architecture, checkpoint conversion and the checkpoint's own preprocessing."""
  name: str
  # (**overrides) -> flax module, e.g. overrides dtype, bn_prior_strength, num_classes, tiny widths.
  make_module: Callable[..., nn.Module]
  preprocessing: Preprocessing
  # Flat checkpoint {original key: array} -> nested {'params': ..., 'batch_stats': ...} (numpy).
  convert: Callable[[Dict[str, np.ndarray]], Dict[str, Any]]
  # Path of weights that ship with an installed package; None: the user must pass a checkpoint.
  default_checkpoint: Optional[Callable[[], str]] = None
  # Which file to pass and where to get it (shown when no checkpoint is given).
  checkpoint_hint: str = ""
  # Exact number of parameters (the 'params' collection) of the default module; pinned by tests.
  num_params: Optional[int] = None
  # Keyword arguments of `load` that are options of `prepare`, not module fields (CLIP's `vocab`,
  # `class_names`, ...; `image_size`): `load` hands them to `prepare`, never to `make_module`.
  load_kwargs: Tuple[str, ...] = ()
  # Optional `(flat or None, overrides, *, path, **options) -> LoadPlan`, run by `load` before the module is
  # built (flat None: random_init): for families whose module, weights or preprocessing depend on the
  # checkpoint itself or on `load_kwargs` (CLIP derives and caches its zero-shot head from the text tower;
  # ViTs resample the position embedding to another `image_size`). None: `make_module(**overrides)`,
  # `convert(flat)` and `preprocessing`, as for every other family.
  prepare: Optional[Callable[..., "LoadPlan"]] = None


@dataclasses.dataclass(frozen=True)
class LoadPlan:
  """What a spec's `prepare` decided for one `load` call."""
  overrides: Dict[str, Any]  # for `make_module`
  preprocessing: Preprocessing  # the bundle's (and the dummy input's) preprocessing
  flat: Optional[Dict[str, np.ndarray]] = None  # the checkpoint as `convert` sees it (None with random_init)
  convert: Optional[Callable[[Dict[str, np.ndarray]], Dict[str, Any]]] = None  # None: the spec's `convert`


_REGISTRY: Dict[str, ModelSpec] = {}


def register(spec: ModelSpec) -> None:
  """Adds a model; a second registration under the same name is an error (usually a copy-paste slip)."""
  if spec.name in _REGISTRY and _REGISTRY[spec.name] is not spec:
    raise ValueError(f"model {spec.name!r} is already registered")
  _REGISTRY[spec.name] = spec


def list_models() -> List[str]:
  """Registered model names, sorted."""
  return sorted(_REGISTRY)


def get_spec(name: str) -> ModelSpec:
  if name not in _REGISTRY:
    # The closest names first: a timm/torchvision variant that is not registered (tf_efficientnet_b8).
    close = difflib.get_close_matches(name, list_models(), n=3, cutoff=0.6)
    raise UnknownNameError(f"unknown model {name!r}; " + (f"closest: {', '.join(close)}; " if close else "")
                           + f"registered models: {', '.join(list_models())}")
  return _REGISTRY[name]


def create(name: str, **overrides: Any) -> Tuple[nn.Module, ModelSpec]:
  """The module (no weights) and its spec."""
  spec = get_spec(name)
  return spec.make_module(**overrides), spec


def _dummy_input(spec: ModelSpec) -> jax.ShapeDtypeStruct:
  size = spec.preprocessing.input_size
  return jax.ShapeDtypeStruct((1, size, size, 3), jnp.float32)


def variable_shapes(module: nn.Module, spec: ModelSpec) -> Any:
  """The module's variables as ShapeDtypeStructs, without computing an initialisation."""
  return jax.eval_shape(module.init, jax.random.PRNGKey(0), _dummy_input(spec))


def count_params(variables: Mapping[str, Any]) -> int:
  """Number of scalars in the 'params' collection (batch statistics excluded)."""
  return int(sum(np.prod(x.shape) for x in jax.tree_util.tree_leaves(variables.get("params", {}))))


# An initialisation runs once, so optimising its (random-number heavy) program only costs compile time
# (BENCHMARKS.md, "Kernel design notes").
_ONE_SHOT_COMPILER_OPTIONS = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}


@functools.lru_cache(maxsize=32)
def _compiled_init(module: nn.Module, input_shape: Tuple[int, ...]) -> Callable[..., Any]:
  lowered = jax.jit(module.init).lower(jax.random.PRNGKey(0), jax.ShapeDtypeStruct(input_shape, jnp.float32))
  try:
    return lowered.compile(compiler_options=_ONE_SHOT_COMPILER_OPTIONS)
  except Exception:  # pylint: disable=broad-except  A backend that rejects the options: compile normally.
    return lowered.compile()


def _init(module: nn.Module, spec: ModelSpec, seed: int) -> Any:
  """`module.init(PRNGKey(seed), zeros)` (to float rounding), compiled once per module configuration."""
  shape = _dummy_input(spec).shape
  try:
    hash(module)
    compile_fn = _compiled_init
  except TypeError:  # A module with unhashable fields: compile without the cache.
    compile_fn = _compiled_init.__wrapped__
  return compile_fn(module, shape)(jax.random.PRNGKey(seed), jnp.zeros(shape, jnp.float32))


def resolve_checkpoint(spec: ModelSpec, checkpoint: Optional[str]) -> str:
  """The file to read: the argument, else the packaged default, else an error saying what to pass."""
  if checkpoint is not None:
    return str(checkpoint)
  if spec.default_checkpoint is not None:
    try:
      return spec.default_checkpoint()
    except ImportError as e:
      raise CheckpointError(f"model {spec.name!r}: its packaged weights are not installed ({e}). "
                            f"{spec.checkpoint_hint}") from None
  raise CheckpointError(f"model {spec.name!r} has no packaged weights: pass checkpoint=<file>. "
                        f"{spec.checkpoint_hint or 'No checkpoint hint registered.'} "
                        "(random_init=True gives seeded random weights for benchmarks.)")


def load(name: str, checkpoint: Optional[str] = None, *, random_init: bool = False, seed: int = 0,
         dont_load: Sequence[str] = (), **overrides: Any) -> ModelBundle:
  """Builds model `name` with real weights from `checkpoint` (or its packaged default).

  Args:
    name: a registered name (`list_models()`).
    checkpoint: a checkpoint file; None uses the weights shipped with an installed package, if any.
    random_init: seeded random weights instead of a checkpoint (benchmarks, shape checks).
    seed: the random_init seed (and of leaves re-initialised through `dont_load`).
    dont_load: regexes of '/'-joined variable paths (e.g. 'params/head/.*') that keep a fresh init
      instead of the checkpoint's values, e.g. when `num_classes` is overridden.
    **overrides: passed to the spec's `make_module` (dtype, bn_prior_strength, num_classes, ...), except the
      spec's `load_kwargs` (e.g. CLIP's vocab, class_names, templates, head_cache_dir; image_size), which go
      to its `prepare` hook.
  """
  spec = get_spec(name)
  options = {k: overrides.pop(k) for k in spec.load_kwargs if k in overrides}
  if random_init and checkpoint is not None:
    raise UserError(f"model {name!r}: pass either a checkpoint or random_init=True, not both")
  path = flat = None
  if not random_init:
    path = resolve_checkpoint(spec, checkpoint)
    flat = read_checkpoint(path)
  convert = spec.convert
  if spec.prepare is not None:
    try:
      plan = spec.prepare(flat, dict(overrides), path=path, **options)
    except CheckpointError as e:
      raise CheckpointError(f"{path}: {e}" if path and path not in str(e) else str(e)) from None
    overrides, flat, convert = plan.overrides, plan.flat, plan.convert or spec.convert
    # This load's preprocessing: the dummy input of the shape check and the bundle follow it.
    spec = dataclasses.replace(spec, preprocessing=plan.preprocessing)
  try:
    module = spec.make_module(**overrides)
  except TypeError as e:
    if "unexpected keyword argument" not in str(e):
      raise
    raise UserError(f"model {name!r}: an override it does not take ({e}); overrides given: "
                    f"{', '.join(sorted(overrides)) or 'none'}") from None
  if random_init:
    variables = _init(module, spec, seed)
  else:
    try:
      converted = convert(flat)
    except CheckpointError as e:
      raise CheckpointError(f"{path}: {e}" if path not in str(e) else str(e)) from None
    except (KeyError, ValueError) as e:
      msg = e.args[0] if isinstance(e, KeyError) and e.args else e
      raise CheckpointError(f"{path}: cannot convert to {name!r}: {msg}") from None
    variables = merge_into(variable_shapes(module, spec), converted, path_for_errors=path,
                           dont_load=dont_load, init=lambda: _init(module, spec, seed))
  num_classes = getattr(module, "num_classes", 1000)
  return ModelBundle(name=name, module=module, variables=variables, preprocessing=spec.preprocessing,
                     num_classes=int(num_classes))
