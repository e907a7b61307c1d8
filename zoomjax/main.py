"""Entry point: `python -m zoomjax.main --config configs/<x>.py[:args] --workdir DIR [--verbose]`.

All logic lives in `zoomjax.jobs.<config.experiment>.run(config, workdir)`. A user error (`zoomjax.errors`: a bad
config value, data file, checkpoint or workdir, a full disk, a permission problem) ends the run with one line,
`zoomjax: error: <what and how to fix it>`, on stderr and exit status 2; `--verbose` adds its traceback. Any other
exception is a bug and keeps its traceback.
"""
import importlib
import os
import sys
import traceback
from typing import List, Optional, Sequence

from absl import app, flags, logging
from ml_collections import config_flags

from zoomjax import errors

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Where the run writes everything; rerunning resumes.")
_VERBOSE = flags.DEFINE_bool("verbose", False, "Also print the traceback of a user error (bad config, data, "
                             "checkpoint or workdir), which otherwise ends the run with one line.")
flags.mark_flags_as_required(["config", "workdir"])

EXIT_USER_ERROR = 2


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


def exit_on_user_error(e: BaseException, verbose: bool, prefix: str = "") -> None:
  """Ends the process (one line on stderr, status 2; the traceback first when `verbose`) when `e` is a user
  error; returns otherwise, so that the caller re-raises a bug with its traceback."""
  message = errors.user_message(e)
  if message is None:
    return
  if verbose:
    traceback.print_exception(e)
  print(f"zoomjax: error: {prefix}{message}", file=sys.stderr, flush=True)
  sys.exit(EXIT_USER_ERROR)


def _user_error_in(e: BaseException) -> Optional[BaseException]:
  """The innermost user error among `e` and its causes (absl and ml_collections re-wrap a config's error, the
  second time with its traceback pasted into the message)."""
  found, seen = None, set()
  while e is not None and id(e) not in seen:
    seen.add(id(e))
    if errors.user_message(e) is not None:
      found = e
    e = e.__cause__ or e.__context__
  return found


def _verbose_in(argv: Sequence[str]) -> bool:
  """Whether argv asks for --verbose (read by hand: flag parsing failed, so FLAGS may not hold it)."""
  verbose = False
  for arg in argv[1:]:
    name, _, value = arg.lstrip("-").partition("=")
    if name == "verbose":
      verbose = not value or value.lower() in ("1", "true", "t", "yes", "y")
    elif name == "noverbose":
      verbose = False
  return verbose


def parse_flags(argv: List[str]) -> List[str]:
  """absl's flag parsing (which runs the config file's get_config), with errors the user can fix in one line.

  A config file that fails with a traceback that is not a user error is a bug: absl's own report keeps it.
  """
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    user = _user_error_in(e)
    if user is not None:
      exit_on_user_error(user, _verbose_in(argv), prefix="--config: ")
    if "Traceback (most recent call last)" in str(e):
      return app.parse_flags_with_usage(argv)  # Parses again to print absl's report, and exits.
    print(f"zoomjax: error: {errors.one_line(str(e))} (--helpshort lists the flags)", file=sys.stderr, flush=True)
    sys.exit(EXIT_USER_ERROR)


def main(argv):
  del argv
  try:
    _run_job()
  except Exception as e:  # pylint: disable=broad-except  Only user errors stop here; bugs are re-raised.
    exit_on_user_error(e, _VERBOSE.value)
    raise


def _run_job() -> None:
  import jax  # pylint: disable=g-import-not-at-top

  from zoomjax import parallel  # pylint: disable=g-import-not-at-top

  config = _CONFIG.value
  try:
    config.get("experiment")
  except OSError as e:  # ml_collections defers the error of a config file it cannot load to its first use.
    raise errors.UserError(f"--config: {e.__cause__ or e}") from e
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
  app.run(main, flags_parser=parse_flags)


if __name__ == "__main__":
  run()
