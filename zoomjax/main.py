"""Entry point: `python -m zoomjax.main --config configs/<x>.py[:args] --workdir DIR`.

All logic lives in `zoomjax.jobs.<config.experiment>.run(config, workdir)`.
"""
import importlib
import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Where the run writes everything; rerunning resumes.")
flags.mark_flags_as_required(["config", "workdir"])


def config_root(argv) -> str:
  """The directory holding the `configs/` package of `--config .../configs/x.py`, or "".

  Config files import their siblings as `configs.<name>`; putting that directory first on sys.path makes
  `--config /any/path/configs/x.py` work from any working directory.
  """
  for i, arg in enumerate(argv):
    path = None
    if arg.startswith("--config="):
      path = arg[len("--config="):]
    elif arg == "--config" and i + 1 < len(argv):
      path = argv[i + 1]
    if path:
      folder = os.path.dirname(os.path.abspath(path.split(":", 1)[0]))
      if os.path.basename(folder) == "configs":
        return os.path.dirname(folder)
  return ""


def main(argv):
  del argv
  import jax  # pylint: disable=g-import-not-at-top

  from zoomjax import parallel  # pylint: disable=g-import-not-at-top

  config = _CONFIG.value
  parallel.initialize_from_config(config)  # jax.distributed.initialize() when config/env ask for it.
  cache_dir = config.get("compilation_cache_dir") or os.path.expanduser("~/.cache/zoomjax/jax")
  if cache_dir != "off":
    jax.config.update("jax_compilation_cache_dir", cache_dir)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
  logging.info("process %d/%d, devices: %s", jax.process_index(), jax.process_count(), jax.devices())
  job = importlib.import_module(f"zoomjax.jobs.{config.experiment}")
  job.run(config, _WORKDIR.value)


def run() -> None:
  root = config_root(sys.argv)
  if root and root not in sys.path:
    sys.path.insert(0, root)
  app.run(main)


if __name__ == "__main__":
  run()
