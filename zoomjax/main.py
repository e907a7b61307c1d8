"""Entry point: `python -m zoomjax.main --config configs/<x>.py[:args] --workdir DIR`.

All logic lives in `zoomjax.jobs.<config.experiment>.run(config, workdir)`.
"""
import importlib
import os

from absl import app, flags, logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Where the run writes everything; rerunning resumes.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  del argv
  import jax  # Imported late so that --config overrides of XLA flags apply first.

  from zoomjax import parallel  # pylint: disable=g-import-not-at-top

  config = _CONFIG.value
  parallel.initialize_from_config(config)  # jax.distributed.initialize() when config/env ask for it.
  cache_dir = config.get("compilation_cache_dir") or os.path.expanduser("~/.cache/zoomjax/jax")
  jax.config.update("jax_compilation_cache_dir", cache_dir)
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
  logging.info("process %d/%d, devices: %s", jax.process_index(), jax.process_count(), jax.devices())
  job = importlib.import_module(f"zoomjax.jobs.{config.experiment}")
  job.run(config, _WORKDIR.value)


if __name__ == "__main__":
  app.run(main)
