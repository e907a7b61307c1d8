"""What every config shares, and where `--config NAME.py` is found.

Configs (`zoomjax/configs/*.py` once installed; `configs/` in a checkout) build their ConfigDicts from the
helpers here: `parse_arg` reads the `:args` part of `--config x.py:args`, `add_common` adds the fields every job
has, `model_config` / `data_config` / `distributed_config` are the blocks the dataset jobs share and
`grid_scales` reads a zoom grid's name.

`parse_arg("model=resnet50,limit=8,runlocal", model="efficientnet_lite0", limit=0, runlocal=False)` works like
big_vision's `parse_arg`: each key must be one of the given defaults, its value is converted to the default's
type (bool: a bare key, 1/0, true/false, yes/no), and a typo fails by name. Values may contain ':' and '/', not
','; use ';' inside a value for lists.

Every numeric field of a job's config has a declared range (`Range`; the table `RANGES` of its config module,
with `COMMON_RANGES` for the fields of `add_common`), and `validate` checks a built config against it before the
job writes anything: a NaN, an infinity, a negative count or a zero chunk ends the run with one line naming the
field, its value and the allowed range. `check_writable_dir` refuses a --workdir (or a cache folder) that is a
file, lies under a file, or cannot be written, before any work starts.

`resolve_config_path("zoom_sweep.py:runlocal")` turns the `--config` value into a path ml_collections can load:
a file that exists is used as given; a bare name (`zoom_sweep.py`, `zoom_sweep`) or `configs/<name>.py` that does
not exist here is the config installed with zoomjax, so the commands in the README work from any directory.
"""
import importlib.util
import math
import os
import pathlib
import sys
from typing import Any, Dict, Iterator, List, Mapping, NamedTuple, Optional, Sequence, Tuple, Union

import ml_collections
from ml_collections import config_dict

from zoomjax.errors import NotFoundError, UserError

__all__ = ["parse_arg", "add_common", "model_config", "data_config", "distributed_config", "grid_scales",
           "configs_dir", "bind_checkout_configs", "available_configs", "resolve_config_path",
           "resolve_config_flag", "Range", "OneOf", "WritableDir", "Spec", "COMMON_RANGES", "SHARDED_JOB_RANGES", "numeric_fields",
           "validate", "check_arg", "check_writable_dir"]

_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def _convert(key: str, value: str, default: Any) -> Any:
  kind = type(default)
  if kind is bool:
    v = value.lower()
    if v not in _TRUE + _FALSE:
      raise UserError(f"config arg {key}={value!r}: expected a boolean (1/0, true/false)")
    return v in _TRUE
  if kind in (int, float):
    try:
      return kind(value)
    except ValueError:
      raise UserError(f"config arg {key}={value!r}: expected {kind.__name__}") from None
  return value


def parse_arg(arg: Optional[str], **spec: Any) -> ml_collections.ConfigDict:
  """`'a=1,b=x,flag'` -> ConfigDict over `spec`'s keys with `spec`'s values as defaults (see module doc)."""
  out = dict(spec)
  for item in (arg or "").split(","):
    item = item.strip()
    if not item:
      continue
    key, sep, value = item.partition("=")
    key = key.strip()
    if key not in spec:
      raise UserError(f"unknown config arg {key!r}; known: {', '.join(sorted(spec))}")
    if not sep:
      if not isinstance(spec[key], bool):
        raise UserError(f"config arg {key!r} needs a value ({key}=...)")
      out[key] = True
    else:
      out[key] = _convert(key, value.strip(), spec[key])
  return ml_collections.ConfigDict(out)


def add_common(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The fields every config has, so every `--config.<field>` override works for every job."""
  c.compilation_cache_dir = ""  # XLA's persistent compilation cache ("" = ~/.cache/zoomjax/jax; "off" = none).
  c.distributed = distributed_config()  # Multi-host start-up (zoomjax.runtime.parallel.initialize_from_config).
  # Warn about images above this many pixels, with the memory they will take (0 = never); a 12000 x 9000 photo
  # takes about 7 GB in a sweep step. Not under `data`: it changes no result, so it is no part of the resume key.
  c.max_pixels_warning = 50_000_000
  return c


def model_config(name: str, checkpoint: str = "", random_init: bool = False) -> ml_collections.ConfigDict:
  """The classifier block of every dataset job (zoomjax.models.load)."""
  m = ml_collections.ConfigDict()
  # Registered model name (zoomjax.models.list_models()), or a model of your own: 'package.module:function', a
  # function of no arguments returning a zoomjax.models.ModelBundle, imported from PYTHONPATH (docs/own-model.md).
  m.name = name
  # Weights file (.pth / .safetensors / .npz / ...); None: the weights an installed package ships, if any.
  m.checkpoint = checkpoint or config_dict.placeholder(str)
  m.random_init = random_init  # Seeded random weights (smoke tests, benchmarks) instead of a checkpoint.
  m.seed = 0  # Seed of random_init.
  # make_module kwargs of the registered model (e.g. width=8, depths=(1, 1) for tiny smoke-test models); they
  # change the network, so they are part of `model` and of the resume key. Empty: the registered model as is.
  m.overrides = ml_collections.ConfigDict()
  return m


def data_config(name: str) -> ml_collections.ConfigDict:
  """The dataset block of every dataset job (zoomjax.data.get_dataset)."""
  d = ml_collections.ConfigDict()
  d.name = name  # See zoomjax.data.NAMES: folder:PATH, demo_photos, imagenet2012, imagenet_a, ...
  d.data_dir = config_dict.placeholder(str)  # TFDS data_dir / our builds (None: default).
  d.manual_dir = config_dict.placeholder(str)  # Where downloaded archives were placed by hand.
  d.split = config_dict.placeholder(str)  # None: the dataset's evaluation split; '[a:b]' slices it.
  d.variant = config_dict.placeholder(str)  # e.g. imagenet_v2 'threshold-0.7', ReaL 'union'.
  d.label_space = config_dict.placeholder(str)  # Override the label space of a folder dataset.
  d.real_json = config_dict.placeholder(str)  # ReaL labels file (imagenet2012_real; None: the TFDS build's).
  return d


def distributed_config() -> ml_collections.ConfigDict:
  """The multi-host block read by `zoomjax.runtime.parallel.initialize_from_config` (zoomjax.main)."""
  c = ml_collections.ConfigDict()
  c.enabled = False  # Multi-host: jax.distributed.initialize() first (zoomjax.runtime.parallel).
  c.coordinator_address = ""  # 'host:port' of process 0 ('' = auto / $ZOOMJAX_COORDINATOR_ADDRESS).
  c.num_processes = 0  # 0 = auto / $ZOOMJAX_NUM_PROCESSES.
  c.process_id = -1  # -1 = auto / $ZOOMJAX_PROCESS_ID.
  c.initialization_timeout_s = 300  # Seconds to wait for every process to join.
  return c


def grid_scales(name: str, named: Mapping[str, Sequence[int]]) -> Tuple[int, ...]:
  """A grid's name -> its scales (short sides S): one of `named` (e.g. the zoom_sweep config's paper / small /
  tiny) or 'S1/S2/...' spelt out."""
  if name in named:
    return tuple(int(s) for s in named[name])
  try:
    scales = tuple(int(s) for s in name.split("/") if s)
  except ValueError:
    raise UserError(f"grid={name!r}: use one of {sorted(named)} or scales like 128/256/512") from None
  bad = [s for s in scales if s <= 0]
  if not scales or bad:
    raise UserError(f"grid={name!r}: every scale must be a positive short side in pixels (got {list(scales)})")
  return scales


def _checkout_configs() -> Optional[pathlib.Path]:
  """The configs/ folder beside the zoomjax package imported, when it is a checkout's, or None."""
  import zoomjax  # pylint: disable=g-import-not-at-top
  folder = pathlib.Path(zoomjax.__file__).resolve().parents[1] / "configs"
  return folder if (folder / "__init__.py").is_file() else None


def configs_dir() -> Optional[pathlib.Path]:
  """The folder of the configs installed with zoomjax (the package `zoomjax.configs`; in an editable install
  the checkout's `configs/`), else the configs/ of the checkout zoomjax was imported from, else None."""
  try:
    spec = importlib.util.find_spec("zoomjax.configs")
  except ImportError:
    spec = None
  if spec is not None and spec.submodule_search_locations:
    return pathlib.Path(list(spec.submodule_search_locations)[0])
  return _checkout_configs()


def bind_checkout_configs() -> None:
  """Makes the checkout's configs/ the package `zoomjax.configs` when zoomjax was imported from a checkout that
  has none: a non-editable `pip install .` run from the checkout's root, where ./zoomjax shadows the installed
  package. Configs import their siblings as `zoomjax.configs.<name>` (demo.py builds on zoom_sweep.py), so
  `--config configs/demo.py` works there too. Does nothing when `zoomjax.configs` can be imported."""
  if "zoomjax.configs" in sys.modules:
    return
  try:
    if importlib.util.find_spec("zoomjax.configs") is not None:
      return
  except ImportError:
    pass
  folder = _checkout_configs()
  if folder is None:
    return
  spec = importlib.util.spec_from_file_location("zoomjax.configs", folder / "__init__.py",
                                                submodule_search_locations=[str(folder)])
  module = importlib.util.module_from_spec(spec)
  sys.modules["zoomjax.configs"] = module
  spec.loader.exec_module(module)
  setattr(sys.modules["zoomjax"], "configs", module)


def available_configs(folder: Optional[pathlib.Path] = None) -> List[str]:
  """The file names of the installed configs (`demo.py`, `zoom_sweep.py`, ...), sorted."""
  folder = configs_dir() if folder is None else folder
  if folder is None or not folder.is_dir():
    return []
  return sorted(p.name for p in folder.glob("*.py") if not p.name.startswith("_"))


def resolve_config_path(value: str, folder: Optional[pathlib.Path] = None) -> str:
  """`--config`'s value `PATH[:args]` with PATH made loadable (see the module doc); `:args` is kept as given.

  `folder` is where the installed configs lie (default: `configs_dir()`). Raises NotFoundError, listing the
  installed configs, for a name that is neither a file here nor an installed config.
  """
  path, sep, args = value.partition(":")
  if not path or os.path.exists(os.path.expanduser(path)):
    return value
  head, name = os.path.split(path)
  if head in ("", "configs") and name and not name.startswith("_"):
    folder = configs_dir() if folder is None else folder
    stem = name[:-3] if name.endswith(".py") else name
    candidate = None if folder is None else folder / f"{stem}.py"
    if candidate is not None and candidate.is_file():
      return f"{candidate}{sep}{args}"
  known = available_configs(folder)
  listed = ", ".join(known) if known else "none (zoomjax's configs are not installed; reinstall zoomjax)"
  raise NotFoundError(f"--config {path}: no such file here and no installed config of that name; give the path "
                      f"of a config file or one of the installed configs: {listed}")


def resolve_config_flag(argv: Sequence[str], folder: Optional[pathlib.Path] = None) -> List[str]:
  """`argv` with the value of `--config` (`--config=V` or `--config V`) passed through `resolve_config_path`;
  `--config.<field>` overrides and every other argument are kept as they are."""
  out = list(argv)
  for i, arg in enumerate(out):
    if arg == "--":  # absl: what follows is no flag.
      break
    dashes = "--" if arg.startswith("--") else "-"  # absl takes -config too.
    if arg.startswith(f"{dashes}config="):
      out[i] = f"{dashes}config=" + resolve_config_path(arg[len(dashes) + len("config="):], folder)
    elif arg == f"{dashes}config" and i + 1 < len(out):
      out[i + 1] = resolve_config_path(out[i + 1], folder)
  return out


class Range(NamedTuple):
  """The allowed values of a numeric field (or of every item of a tuple field): finite, `low <= v <= high`
  (None = unbounded), an integer when `integer`. `note` says what a special value means (e.g. '0 = all')."""
  low: Optional[float] = None
  high: Optional[float] = None
  integer: bool = False
  note: str = ""

  def describe(self) -> str:
    """'an integer >= 1', 'a finite number in [0, 1]', ..."""
    what = "an integer" if self.integer else "a finite number"
    fmt = lambda x: f"{x:g}" if isinstance(x, float) else str(x)
    if self.low is not None and self.high is not None:
      bound = f" in [{fmt(self.low)}, {fmt(self.high)}]"
    elif self.low is not None:
      bound = f" >= {fmt(self.low)}"
    elif self.high is not None:
      bound = f" <= {fmt(self.high)}"
    else:
      bound = ""
    return what + bound + (f" ({self.note})" if self.note else "")

  def allows(self, value: Any) -> bool:
    """Whether `value` (a number, not a bool) is in range."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
      return False
    if not math.isfinite(value) or (self.integer and value != int(value)):
      return False
    return (self.low is None or value >= self.low) and (self.high is None or value <= self.high)


class OneOf(NamedTuple):
  """A text field that must be one of `choices` ('' allowed when `empty_ok`)."""
  choices: Tuple[str, ...]
  empty_ok: bool = True


class WritableDir(NamedTuple):
  """A folder field the job writes into ('' = off): refused up front when it is a file or cannot be written."""


Spec = Union[Range, OneOf, WritableDir]

# The fields of `add_common` and `distributed_config`, which every config has.
COMMON_RANGES: Dict[str, Spec] = {
    "max_pixels_warning": Range(0, integer=True, note="0 = never"),
    "distributed.num_processes": Range(0, integer=True, note="0 = auto"),
    "distributed.process_id": Range(-1, integer=True, note="-1 = auto"),
    "distributed.initialization_timeout_s": Range(1),
}

# The fields every job over a dataset's shards has (zoom_sweep, tta, evaluate); each config adds its own.
SHARDED_JOB_RANGES: Dict[str, Spec] = {
    "limit": Range(0, integer=True, note="0 = all"),
    "batch_size": Range(1, integer=True),
    "shard_size": Range(1, integer=True),
    "num_workers": Range(0, integer=True, note="0 = one per core"),
    "progress_every_secs": Range(0),
    "merge_timeout_s": Range(0),
}


def _leaves(config: Any, prefix: str = "") -> Iterator[Tuple[str, Any]]:
  """(dotted path, value) of every field of a ConfigDict; the open blocks (free make_module kwargs) are left
  out: their keys belong to the model, not to the job."""
  for key, value in config.items():
    path = prefix + key
    if hasattr(value, "items"):
      if key not in ("overrides", "model_overrides"):
        yield from _leaves(value, path + ".")
    else:
      yield path, value


def _is_number(value: Any) -> bool:
  return isinstance(value, (int, float)) and not isinstance(value, bool)


def numeric_fields(config: Any) -> List[str]:
  """The dotted paths of the config's numeric fields: numbers and non-empty tuples of numbers."""
  return [p for p, v in _leaves(config)
          if _is_number(v) or (isinstance(v, (tuple, list)) and v and all(_is_number(x) for x in v))]


def _bad(path: str, value: Any, spec: Spec) -> Optional[str]:
  """The one-line complaint about `value` of field `path`, or None when it is allowed."""
  if value is None:
    return None  # An unset placeholder: the job's own default.
  if isinstance(spec, Range):
    items = value if isinstance(value, (tuple, list)) else (value,)
    for v in items:
      if not spec.allows(v):
        each = " every item" if isinstance(value, (tuple, list)) else ""
        return f"--config.{path}={value!r}: must be{each} {spec.describe()}"
    return None
  if isinstance(spec, OneOf):
    if (value == "" and spec.empty_ok) or value in spec.choices:
      return None
    empty = " ('' = none)" if spec.empty_ok else ""
    return f"--config.{path}={value!r}: not one of {', '.join(spec.choices)}{empty}"
  if value:
    check_writable_dir(str(value), f"--config.{path}")
  return None


def validate(config: Any, ranges: Mapping[str, Spec]) -> None:
  """Checks every field of `config` that `ranges` (and COMMON_RANGES) declare; raises UserError naming the first
  bad field, its value and the allowed range. Writes nothing. Fields the tables do not declare are not checked
  (tests/test_config_validation.py keeps every numeric field of every config declared)."""
  table = {**COMMON_RANGES, **ranges}
  values = dict(_leaves(config))
  for path, spec in table.items():
    if path in values:
      message = _bad(path, values[path], spec)
      if message:
        raise UserError(message)


def check_arg(key: str, value: Any, spec: Range) -> Any:
  """A `parse_arg` value checked against `spec` (e.g. `limit=-5`); returns it, raises UserError otherwise."""
  if not spec.allows(value):
    raise UserError(f"config arg {key}={value!r}: must be {spec.describe()}")
  return value


def check_writable_dir(path: str, what: str = "--workdir") -> None:
  """Refuses (UserError, one line naming the path) a folder the job would write into that is a file, lies under
  a file, or cannot be written (the folder, or the nearest existing folder above a path to create). Creates
  nothing."""
  full = os.path.abspath(os.path.expanduser(path))
  probe = full
  while not os.path.exists(probe):
    parent = os.path.dirname(probe)
    if parent == probe:
      break
    probe = parent
  if not os.path.isdir(probe):
    where = "is a file" if probe == full else f"lies under {probe}, which is a file"
    raise UserError(f"{what} {path}: {where}, not a folder; give a folder path")
  if not os.access(probe, os.W_OK | os.X_OK):
    where = "" if probe == full else f" (in {probe})"
    raise UserError(f"{what} {path}: cannot write there{where}; give a folder you may write to")
