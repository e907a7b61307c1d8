"""What every config shares: the typed arg-string parser and the common fields.

`parse_arg("model=resnet50,limit=8,runlocal", model="efficientnet_lite0", limit=0, runlocal=False)` reads the
`:args` part of `--config configs/x.py:args` like big_vision's `parse_arg`: each key must be one of the given
defaults, its value is converted to the default's type (bool: a bare key, 1/0, true/false, yes/no), and a typo
fails by name. Values may contain ':' and '/', not ','; use ';' inside a value for lists.
"""
from typing import Any

import ml_collections
from ml_collections import config_dict

from zoomjax.errors import UserError

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


def parse_arg(arg: str, **spec: Any) -> ml_collections.ConfigDict:
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
  m.name = name  # Registered model name (zoomjax.models.list_models()).
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
