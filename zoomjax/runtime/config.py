"""What every config shares, and where `--config NAME.py` is found.

Configs (`zoomjax/configs/*.py` once installed; `configs/` in a checkout) build their ConfigDicts from the
helpers here: `parse_arg` reads the `:args` part of `--config x.py:args`, `add_common` adds the fields every job
has, `model_config` / `data_config` / `distributed_config` are the blocks the dataset jobs share and
`grid_scales` reads a zoom grid's name.

`parse_arg("model=resnet50,limit=8,runlocal", model="efficientnet_lite0", limit=0, runlocal=False)` works like
big_vision's `parse_arg`: each key must be one of the given defaults, its value is converted to the default's
type (bool: a bare key, 1/0, true/false, yes/no), and a typo fails by name. Values may contain ':' and '/', not
','; use ';' inside a value for lists.

Every field of a job's config is declared in the table `RANGES` of its config module (with `COMMON_RANGES` for
the fields of `add_common`, and shared tables for the blocks the jobs share): a number by its range (`Range`), a
word by its set of values (`OneOf`), a path by its kind (`WritableDir`, `InputDir`, `InputFile`), and other text
knowingly as `FreeText`. `validate` checks a built config against it: a NaN, an infinity, a negative count, a zero
chunk, a misspelt word or a file where a folder belongs ends the run with one line naming the field, its value
and what it may be. `check_job` is what `zoomjax.main` and every job's `run` do first, before anything is loaded
or written: `validate`, then `check_writable_dir` (a --workdir that is a file, lies under a file or cannot be
written) and `check_outside_datasets` (a workdir or cache folder inside a class-folder dataset the job reads).

`resolve_config_path("zoom_sweep.py:runlocal")` turns the `--config` value into a path ml_collections can load:
a file that exists is used as given; a bare name (`zoom_sweep.py`, `zoom_sweep`) or `configs/<name>.py` that does
not exist here is the config installed with zoomjax, so the commands in the README work from any directory.
"""
import importlib.util
import math
import os
import pathlib
import re
import sys
from typing import Any, Dict, Iterator, List, Mapping, NamedTuple, Optional, Sequence, Tuple, Union

import ml_collections
from ml_collections import config_dict

from zoomjax.errors import NotFoundError, UserError

__all__ = ["parse_arg", "add_common", "model_config", "data_config", "distributed_config", "grid_scales",
           "configs_dir", "bind_checkout_configs", "available_configs", "resolve_config_path",
           "resolve_config_flag", "Range", "OneOf", "WritableDir", "InputDir", "InputFile", "FreeText", "Spec",
           "ON_ERROR", "COMMON_RANGES", "SHARDED_JOB_RANGES", "MODEL_RANGES", "DATA_RANGES", "numeric_fields",
           "text_fields", "validate", "check_arg", "check_writable_dir", "dataset_folders", "check_outside_datasets",
           "check_job"]

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
  # ImageNet-C corruption 'NAME/SEVERITY' (e.g. gaussian_noise/5) made on the fly from each image, or 'clean'
  # (the benchmark's Resize 256 + CenterCrop 224 view only); None: the images as they are.
  d.corruption = config_dict.placeholder(str)
  d.corruption_size = config_dict.placeholder(int)  # Side of the corrupted images (None: 224, the benchmark's).
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
  """A folder field the job writes into ('' = the default): refused up front when it is a file, lies under a
  file or cannot be written. `off` lists words that are no path (e.g. 'off')."""
  off: Tuple[str, ...] = ()


class InputDir(NamedTuple):
  """A folder field the job reads from ('' / None = the default): refused up front when it is a file or lies
  under one, and, when `must_exist`, when it does not exist. Read-only folders are fine."""
  must_exist: bool = True


class InputFile(NamedTuple):
  """A file field the job reads ('' / None = none): refused up front when it does not exist or is a folder.
  `words` lists values that name no file (e.g. 'openai', the packaged class names)."""
  words: Tuple[str, ...] = ()


class FreeText(NamedTuple):
  """A text field with no fixed set of values (a name, a command, an address); `why` says what it holds. Declared
  so that every text field of every config is either checked or knowingly free (tests/test_config_validation.py)."""
  why: str = ""


Spec = Union[Range, OneOf, WritableDir, InputDir, InputFile, FreeText]

# `on_error` of the jobs that decode images (zoomjax.data.make_batches).
ON_ERROR = ("skip", "raise")

# The fields of `add_common` and `distributed_config`, which every config has.
COMMON_RANGES: Dict[str, Spec] = {
    "experiment": FreeText("the job; checked against the installed configs"),
    "compilation_cache_dir": WritableDir(off=("off",)),
    "distributed.coordinator_address": FreeText("host:port"),
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
    "on_error": OneOf(ON_ERROR, empty_ok=False),
}

# The `model` block of `model_config` (zoom_sweep, tta).
MODEL_RANGES: Dict[str, Spec] = {
    "model.name": FreeText("a registered model or package.module:function; checked when loaded"),
    "model.checkpoint": InputFile(),
    "model.seed": Range(0, integer=True),
}

# The `data` block of `data_config` (zoom_sweep, tta): the roots must be folders (`folder:PATH` is checked by
# `check_job`), the labels file a file; the other fields are the dataset's own words, checked when it is built.
DATA_RANGES: Dict[str, Spec] = {
    "data.name": FreeText("a dataset name (zoomjax.data.NAMES) or folder:PATH; checked when built"),
    "data.data_dir": InputDir(must_exist=False),
    "data.manual_dir": InputDir(),
    "data.real_json": InputFile(),
    "data.split": FreeText("a split name and/or [a:b]; checked when built"),
    "data.variant": FreeText("the dataset's own variants; checked when built"),
    "data.label_space": FreeText("a label space name; checked when built"),
    "data.corruption": FreeText("NAME/SEVERITY of zoomjax.data.corruptions; checked before any image is read"),
    "data.corruption_size": Range(8, integer=True, note="None = 224, the benchmark's"),
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


def text_fields(config: Any, prefix: str = "") -> List[str]:
  """The dotted paths of the config's text fields: strings, unset string placeholders and tuples of strings."""
  out = []
  for key, value in config.items():
    path = prefix + key
    if hasattr(value, "items"):
      if key not in ("overrides", "model_overrides"):
        out += text_fields(value, path + ".")
      continue
    if value is None:
      try:
        kind = config.get_ref(key).get_type()
      except (AttributeError, KeyError):
        kind = None
      if kind is str:
        out.append(path)
    elif isinstance(value, str) or (isinstance(value, (tuple, list)) and value
                                    and all(isinstance(x, str) for x in value)):
      out.append(path)
  return out


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
  if isinstance(spec, FreeText) or not value:
    return None
  if isinstance(value, (tuple, list)):
    for v in value:
      message = _bad(path, v, spec)
      if message:
        return message
    return None
  if not isinstance(value, str):
    return f"--config.{path}={value!r}: expected a path"
  if isinstance(spec, WritableDir):
    if value not in spec.off:
      check_writable_dir(value, f"--config.{path}")
  elif isinstance(spec, InputDir):
    _check_input_dir(value, f"--config.{path}", spec.must_exist)
  elif isinstance(spec, InputFile) and value not in spec.words:
    full = os.path.expanduser(value)
    if os.path.isdir(full):
      return f"--config.{path} {value}: is a folder, not a file; give the file's path"
    if not os.path.isfile(full):
      raise NotFoundError(f"--config.{path} {value} not found; give the path of an existing file")
  return None


def _check_input_dir(path: str, what: str, must_exist: bool = True) -> None:
  """Refuses (UserError, one line) a folder to read from that is a file, lies under a file or, when
  `must_exist`, does not exist."""
  full = os.path.abspath(os.path.expanduser(path))
  probe = full
  while not os.path.exists(probe) and os.path.dirname(probe) != probe:
    probe = os.path.dirname(probe)
  if not os.path.isdir(probe):
    where = "is a file" if probe == full else f"lies under {probe}, which is a file"
    raise UserError(f"{what} {path}: {where}, not a folder; give a folder path")
  if must_exist and probe != full:
    raise NotFoundError(f"{what} {path} not found; give the path of an existing folder")


def validate(config: Any, ranges: Mapping[str, Spec]) -> None:
  """Checks every field of `config` that `ranges` (and COMMON_RANGES) declare; raises UserError naming the first
  bad field, its value and what it may be. Writes nothing. Fields the tables do not declare are not checked
  (tests/test_config_validation.py keeps every numeric and text field of every config declared)."""
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


def _config_module(experiment: Any):
  """The installed config module of job `experiment` (`zoomjax.configs.<experiment>`), whose RANGES declare the
  allowed values of its fields."""
  bind_checkout_configs()
  names = [c[:-3] for c in available_configs()]
  if not isinstance(experiment, str) or experiment not in names:
    raise UserError(f"--config: experiment={experiment!r} is no job; use one of {', '.join(names)}")
  return importlib.import_module(f"zoomjax.configs.{experiment}")


_WNID = re.compile(r"^n\d{8}$")


def dataset_folders(config: Any) -> List[Tuple[str, str]]:
  """(what, folder) of every image folder the job reads by class sub-folders: a `folder:PATH` dataset without a
  labels.csv (the `data.name` of a job's data block, at any depth, e.g. the sweep's, TTA's or ImageNet-C's
  `tta.data.name`; each entry of the evaluation's `data` list), and for the preview the folder above its image's
  WNID class folder. Every file under such a folder becomes an image of the dataset."""
  names = []
  for path, value in _leaves(config):
    if (path == "data.name" or path.endswith(".data.name")) and isinstance(value, str):
      names.append(value)
    elif path == "data" and isinstance(value, (tuple, list)):
      names += [str(d).strip().partition("@")[0].strip() for d in value]  # dataset[@manual_dir]
  out = []
  for name in names:
    if name.startswith("folder:"):
      root = os.path.expanduser(name[len("folder:"):])
      if os.path.isfile(root):
        raise UserError(f"{name}: {root} is a file, not a folder; give the dataset's folder")
      if os.path.isdir(root) and not os.path.exists(os.path.join(root, "labels.csv")):
        out.append((name, root))
  image = config.get("image")
  if isinstance(image, str) and image:
    folder = os.path.dirname(os.path.abspath(os.path.expanduser(image)))
    if _WNID.match(os.path.basename(folder)):
      out.append((f"the class folders of config.image {image}", os.path.dirname(folder)))
  return out


def _inside(path: str, folder: str) -> bool:
  path, folder = os.path.realpath(os.path.expanduser(path)), os.path.realpath(folder)
  return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def check_outside_datasets(config: Any, workdir: str, ranges: Mapping[str, Spec] = ()) -> None:
  """Refuses (UserError, one line naming both paths) a workdir, or a folder field the job writes into (the
  `WritableDir` fields of `ranges`, e.g. view_cache_dir), that lies inside a class-folder dataset the job reads:
  its files would become images of that dataset (and break its class folders) for this run and every later one."""
  targets = [("--workdir", workdir)]
  values = dict(_leaves(config))
  for path, spec in {**COMMON_RANGES, **dict(ranges)}.items():
    value = values.get(path)
    if isinstance(spec, WritableDir) and isinstance(value, str) and value and value not in spec.off:
      targets.append((f"--config.{path}", value))
  for what, folder in dataset_folders(config):
    for field, value in targets:
      if _inside(value, folder):
        raise UserError(f"{field} {value}: lies inside {what} ({folder}), whose files are all read as images; "
                        "give a folder outside it")


def check_job(config: Any, workdir: str) -> None:
  """Everything a job checks before it loads, compiles or writes anything; `zoomjax.main` and every job's `run`
  call it. The job is `config.experiment`; its fields are checked against the `RANGES` of its installed config
  module (`validate`), `workdir` must be a folder that can be written (`check_writable_dir`) and neither it nor a
  cache folder may lie inside a class-folder dataset the job reads (`check_outside_datasets`). Raises UserError,
  one line; writes nothing."""
  ranges = getattr(_config_module(config.get("experiment")), "RANGES", {})
  validate(config, ranges)
  check_writable_dir(workdir, "--workdir")
  check_outside_datasets(config, workdir, ranges)
