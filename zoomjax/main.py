"""Entry point: `python -m zoomjax.main --config configs/<x>.py[:args] --workdir DIR [--verbose]`.

All logic lives in `zoomjax.jobs.<config.experiment>.run(config, workdir)`; user errors end in one line
(`zoomjax.runtime.cli`). Ctrl-C or SIGTERM ends any job within a moment, keeping every finished image, with one
line `interrupted: N of M images kept; rerun the same command to resume` and exit status 130 (SIGTERM: 143)
(`zoomjax.runtime.interrupt`). `--config.<field>=VALUE` overrides may come before or after `--config`. JAX's
INFO lines about optional backends it did not find (libtpu, CUDA/ROCm plugins) are not shown unless --verbose.
"""
import importlib
import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from zoomjax import errors
from zoomjax.runtime import cli
from zoomjax.runtime import interrupt

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Where the run writes everything; rerunning resumes.")
_VERBOSE = flags.DEFINE_bool("verbose", False, "Also print the traceback of a user error (bad config, data, "
                             "checkpoint or workdir), which otherwise ends the run with one line.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  del argv
  try:
    _run_job()
  except Exception as e:  # pylint: disable=broad-except  Only user errors stop here; bugs are re-raised.
    cli.exit_on_user_error(e, _VERBOSE.value)
    raise


def _run_job() -> None:
  import jax  # pylint: disable=g-import-not-at-top

  from zoomjax.runtime import parallel  # pylint: disable=g-import-not-at-top

  config = _CONFIG.value
  try:
    config.get("experiment")
  except OSError as e:  # ml_collections defers the error of a config file it cannot load to its first use.
    raise errors.UserError(f"--config: {e.__cause__ or e}") from e
  check_config(config, _WORKDIR.value)
  parallel.initialize_from_config(config)  # jax.distributed.initialize() when config/env ask for it.
  cache_dir = config.get("compilation_cache_dir") or os.path.expanduser("~/.cache/zoomjax/jax")
  if cache_dir != "off":
    jax.config.update("jax_compilation_cache_dir", cache_dir)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
  with cli.quiet_backend_probe(_VERBOSE.value):
    devices = jax.devices()  # Starts the backends: CPU runs would otherwise log a missing libtpu.so.
  logging.info("process %d/%d, devices: %s", jax.process_index(), jax.process_count(), devices)
  job = importlib.import_module(f"zoomjax.jobs.{config.experiment}")
  job.run(config, _WORKDIR.value)


def check_config(config, workdir: str) -> None:
  """Every field of `config` as its job declares (RANGES), `workdir` a folder that can be written and outside
  the datasets the job reads (UserError, one line, otherwise), before anything is loaded or written: the check
  every job's `run` also starts with (zoomjax.runtime.config.check_job)."""
  from zoomjax.runtime import config as config_lib  # pylint: disable=g-import-not-at-top

  config_lib.check_job(config, workdir)


def run() -> None:
  """`python -m zoomjax.main` and the `zoomjax` command: `--config` may name an installed config (`zoom_sweep.py`,
  see zoomjax.runtime.config.resolve_config_path) from any directory."""
  interrupt.install()  # First: a Ctrl-C from here on ends in one line, keeping what is finished.
  from zoomjax.runtime import config as config_lib  # pylint: disable=g-import-not-at-top

  config_lib.bind_checkout_configs()
  try:
    sys.argv = config_lib.resolve_config_flag(sys.argv)
  except errors.UserError as e:
    cli.exit_on_user_error(e, verbose=False)
  app.run(main, flags_parser=cli.parse_flags)


if __name__ == "__main__":
  run()
