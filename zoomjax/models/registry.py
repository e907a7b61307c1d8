"""Model registry: a name -> how to build the module, read its checkpoint and preprocess its inputs.

`load(name, checkpoint)` is the one way a model gets weights: read the file (never executing code from it),
convert it to the module's variable tree, and pass it through the load-and-merge gate against
`jax.eval_shape(module.init)` (so loading does not pay for a real initialisation). Preprocessing lives in the
registry entry, never in a global default, because checkpoints of one architecture disagree on it.

A model of the user's own is a factory: a function of no arguments returning a `ModelBundle`. It is named either
by registering it (`register("my_cnn", make_my_cnn)`) or, where no Python code runs first (a job's config), by
its import path `package.module:function`, which `load` imports. Either way `load`, `from_config` and every job
treat it like a registered family.
"""
import dataclasses
import difflib
import functools
import importlib
import inspect
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from zoomjax.checkpoints import CheckpointError, merge_into, read_checkpoint
from zoomjax.errors import UnknownNameError, UserError
from zoomjax.models.bundle import ModelBundle, Preprocessing

__all__ = ["Factory", "LoadPlan", "ModelSpec", "count_params", "create", "from_config", "get_spec", "is_factory",
           "list_models", "load", "register", "variable_shapes"]

# A model of the user's own: no arguments -> a ready ModelBundle (module, variables, preprocessing).
Factory = Callable[[], ModelBundle]


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
_FACTORIES: Dict[str, Factory] = {}


def register(spec: Union[ModelSpec, str], factory: Optional[Factory] = None) -> None:
  """Adds a model under a name: `register(ModelSpec(...))` for a family with checkpoint conversion, or
  `register("my_cnn", make_my_cnn)` for a model of your own, a function of no arguments returning a ModelBundle.

  Registered, a name works wherever a model name does: `load("my_cnn")`, a job config's `model.name`, a row
  of the evaluation's models file (in this process: a job started from the command line imports a
  `package.module:function` name instead). A second registration under one name is an error (usually a
  copy-paste slip); registering the very same spec or factory again is harmless.
  """
  if isinstance(spec, ModelSpec):
    if factory is not None:
      raise ValueError("register(spec) takes no factory: the spec says how to build the model")
    name, entry = spec.name, spec
  else:
    name, entry = spec, factory
    if not isinstance(name, str) or not name or ":" in name:
      raise ValueError(f"model name {name!r}: use a non-empty name without ':' (':' marks 'module:function' "
                       "import paths)")
    if not callable(factory):
      raise ValueError(f"register({name!r}, factory): the factory must be a function of no arguments returning "
                       f"a zoomjax.models.ModelBundle, got {type(factory).__name__}")
    _check_no_arguments(name, factory)
  current = _REGISTRY.get(name, _FACTORIES.get(name))
  if current is not None and current is not entry:
    raise ValueError(f"model {name!r} is already registered")
  (_REGISTRY if isinstance(entry, ModelSpec) else _FACTORIES)[name] = entry


def list_models() -> List[str]:
  """Registered model names (families and factories), sorted."""
  return sorted(set(_REGISTRY) | set(_FACTORIES))


def is_factory(name: str) -> bool:
  """Whether `name` is a model of the user's own: a registered factory or a `package.module:function` path."""
  return name in _FACTORIES or (name not in _REGISTRY and ":" in name)


def get_spec(name: str) -> ModelSpec:
  """The registered family `name`; an unknown name is an error listing the closest registered ones."""
  if name in _FACTORIES or (name not in _REGISTRY and ":" in name):
    raise UnknownNameError(f"model {name!r} is a factory of your own, not a registered family: it has no "
                           "ModelSpec (zoomjax.models.load builds it)")
  if name not in _REGISTRY:
    # The closest names first: a timm/torchvision variant that is not registered (tf_efficientnet_b8).
    close = difflib.get_close_matches(name, list_models(), n=3, cutoff=0.6)
    raise UnknownNameError(f"unknown model {name!r}; " + (f"closest: {', '.join(close)}; " if close else "")
                           + f"registered models: {', '.join(list_models())}; a model of your own: "
                           "'package.module:function' (docs/own-model.md)")
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
    name: a registered name (`list_models()`), or `package.module:function` naming a factory of your own (a
      function of no arguments returning a ModelBundle), imported from sys.path (PYTHONPATH).
    checkpoint: a checkpoint file; None uses the weights shipped with an installed package, if any. A factory
      builds its own variables: passing it a checkpoint is an error.
    random_init: seeded random weights instead of a checkpoint (benchmarks, shape checks). Factories ignore
      it and `seed` (their variables are their own).
    seed: the random_init seed (and of leaves re-initialised through `dont_load`).
    dont_load: regexes of '/'-joined variable paths (e.g. 'params/head/.*') that keep a fresh init
      instead of the checkpoint's values, e.g. when `num_classes` is overridden.
    **overrides: passed to the spec's `make_module` (dtype, bn_prior_strength, num_classes, ...), except the
      spec's `load_kwargs` (e.g. CLIP's vocab, class_names, templates, head_cache_dir; image_size), which go
      to its `prepare` hook. For a factory: `module.clone(**overrides)`, so each must be a field of its module.
  """
  if is_factory(name):
    return _load_factory(name, checkpoint, dont_load, overrides)
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


def from_config(block: Mapping[str, Any], **overrides: Any) -> ModelBundle:
  """The model a job's `model` config block names: `load(name, checkpoint, random_init=, seed=, **overrides)`.

  The one reading of a `model` block (fields name, checkpoint, random_init, seed, overrides; others such as
  paper_row are the job's). `overrides` (e.g. dtype) are added to the block's and win over them. `name` may be
  a registered model or a `package.module:function` factory.
  """
  fields = block.to_dict() if hasattr(block, "to_dict") else dict(block)
  name = fields.get("name")
  if not name:
    raise UserError("model block: no model name (model.name=...; see zoomjax.models.list_models())")
  kw = dict(fields.get("overrides") or {})
  kw.update(overrides)
  return load(str(name), fields.get("checkpoint") or None, random_init=bool(fields.get("random_init", False)),
              seed=int(fields.get("seed", 0) or 0), **kw)


# ------------------------------------------------------------------------------------- models of your own


def _check_no_arguments(name: str, factory: Callable[..., Any]) -> None:
  """A factory is called with no arguments: one that needs some is an error naming them."""
  try:
    params = inspect.signature(factory).parameters.values()
  except (TypeError, ValueError):  # Builtins without a signature: let the call decide.
    return
  needed = [p.name for p in params if p.default is inspect.Parameter.empty
            and p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)]
  if needed:
    raise UserError(f"model {name!r}: the factory takes arguments ({', '.join(needed)}); a model factory takes "
                    f"none: wrap it, e.g. `def make(): return {getattr(factory, '__name__', 'factory')}(...)`")


def _where(module: Any) -> str:
  path = getattr(module, "__file__", None)
  return f" ({path})" if path else ""


def _import_factory(name: str) -> Factory:
  """`package.module:function` -> the function (dotted attributes such as `module:Class.make` work too)."""
  module_name, sep, attr = name.partition(":")
  if not sep or not module_name.strip() or not attr.strip() or ":" in attr:
    raise UserError(f"model {name!r}: a model of your own is named `package.module:function` (one ':'), or "
                    "registered under a plain name with zoomjax.models.register")
  module_name, attr = module_name.strip(), attr.strip()
  try:
    module = importlib.import_module(module_name)
  except ModuleNotFoundError as e:
    missing = e.name or ""
    if missing and (module_name == missing or module_name.startswith(missing + ".")):
      raise UserError(f"model {name!r}: cannot import module {module_name!r} ({e}); put the folder that holds it "
                      "on PYTHONPATH, or check its spelling") from e
    raise UserError(f"model {name!r}: importing module {module_name!r} failed: {type(e).__name__}: {e}") from e
  except Exception as e:  # pylint: disable=broad-except  The user's module raised while importing.
    raise UserError(f"model {name!r}: importing module {module_name!r} failed: {type(e).__name__}: {e}") from e
  obj = module
  for part in attr.split("."):
    if not hasattr(obj, part):
      public = sorted(k for k, v in vars(module).items() if callable(v) and not k.startswith("_")
                      and getattr(v, "__module__", None) == module.__name__)
      raise UserError(f"model {name!r}: module {module_name!r}{_where(module)} has no attribute {attr!r}; its "
                      f"functions: {', '.join(public) or 'none'}")
    obj = getattr(obj, part)
  if not callable(obj):
    raise UserError(f"model {name!r}: {attr!r} of module {module_name!r} is a {type(obj).__name__}, not a "
                    "function returning a zoomjax.models.ModelBundle")
  return obj


def _check_outputs(name: str, bundle: ModelBundle) -> None:
  """The bundle's module applied to its variables gives `(logits (N, num_classes), intermediates)` (traced
  abstractly with `jax.eval_shape`: nothing is computed)."""
  size = bundle.preprocessing.input_size
  x = jax.ShapeDtypeStruct((2, size, size, 3), jnp.float32)
  try:
    out = jax.eval_shape(bundle.module.apply, bundle.variables, x)
  except Exception as e:  # pylint: disable=broad-except  Any failure of the user's module.
    raise UserError(f"model {name!r}: module.apply(variables, x) fails on a (2, {size}, {size}, 3) input "
                    f"(preprocessing.input_size {size}): {type(e).__name__}: {e}") from e
  logits = out[0] if isinstance(out, (tuple, list)) and len(out) == 2 else None
  if not hasattr(logits, "shape") or tuple(logits.shape) != (2, bundle.num_classes):
    if logits is not None:
      got = f"logits of shape {tuple(getattr(logits, 'shape', ()))}"
    elif hasattr(out, "shape"):
      got = f"one array of shape {tuple(out.shape)}, no (logits, intermediates) pair"
    else:
      got = f"a {type(out).__name__}"
    raise UserError(f"model {name!r}: module.apply(variables, x) must return (logits (batch, num_classes="
                    f"{bundle.num_classes}), intermediates); got {got}")


def _load_factory(name: str, checkpoint: Optional[str], dont_load: Sequence[str],
                  overrides: Dict[str, Any]) -> ModelBundle:
  """Calls the factory `name` (registered or `package.module:function`) and checks what it returns."""
  if checkpoint is not None:
    raise UserError(f"model {name!r} is a factory of your own: it builds its own variables, so checkpoint="
                    f"{checkpoint} does not apply (load the file inside the factory)")
  if dont_load:
    raise UserError(f"model {name!r} is a factory of your own: dont_load applies to checkpoints only")
  factory = _FACTORIES[name] if name in _FACTORIES else _import_factory(name)
  _check_no_arguments(name, factory)
  try:
    bundle = factory()
  except Exception as e:  # pylint: disable=broad-except  The user's code; --verbose shows its traceback.
    raise UserError(f"model {name!r}: the factory raised {type(e).__name__}: {e}") from e
  if not isinstance(bundle, ModelBundle):
    raise UserError(f"model {name!r}: the factory returned a {type(bundle).__name__}, not a "
                    "zoomjax.models.ModelBundle(name, module, variables, preprocessing, num_classes)")
  if overrides:
    fields = {f.name for f in dataclasses.fields(bundle.module)} - {"parent", "name"}
    unknown = sorted(k for k in overrides if k not in fields)
    if unknown:
      raise UserError(f"model {name!r}: override(s) {', '.join(unknown)} are not fields of its module "
                      f"{type(bundle.module).__name__} (fields: {', '.join(sorted(fields)) or 'none'})")
    bundle = dataclasses.replace(bundle, module=bundle.module.clone(**overrides))
  _check_outputs(name, bundle)
  return bundle
