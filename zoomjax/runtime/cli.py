"""Command-line plumbing of `zoomjax.main`: flag parsing, one-line user errors, a quiet backend start.

`--config.<field>=VALUE` overrides may stand before or after `--config` (`config_fields_after_config`); the open
blocks (`--config.model.overrides.KEY=VALUE`) may add keys.

A user error (`zoomjax.errors`: a bad config value, data file, checkpoint or workdir, a full disk, a permission
problem) ends the run with one line, `zoomjax: error: <what and how to fix it>`, on stderr and exit status 2;
`--verbose` adds its traceback. Any other exception is a bug and keeps its traceback.
"""
import ast
import contextlib
import logging as std_logging
import re
import sys
import traceback
from typing import Iterator, List, Optional, Sequence

from absl import app, flags

from zoomjax import errors

__all__ = ["EXIT_USER_ERROR", "BACKEND_LOGGER", "OPEN_BLOCKS", "quiet_backend_probe", "exit_on_user_error",
           "parse_flags", "config_fields_after_config"]

EXIT_USER_ERROR = 2
BACKEND_LOGGER = "jax._src.xla_bridge"


class _OptionalBackendFilter(std_logging.Filter):
  """Drops JAX's INFO record `Unable to initialize backend '<x>': ...`, which JAX logs for every optional backend
  it probes and does not find (libtpu on a CPU machine, a CUDA or ROCm plugin without its hardware). A backend
  the user asked for (JAX_PLATFORMS) raises instead, and a GPU or TPU that is present but failed is a WARNING:
  both still show."""

  def filter(self, record: std_logging.LogRecord) -> bool:
    return not (record.levelno <= std_logging.INFO and str(record.msg).startswith("Unable to initialize backend"))


@contextlib.contextmanager
def quiet_backend_probe(verbose: bool = False) -> Iterator[None]:
  """Starting JAX's backends inside this block logs no line about optional backends that are absent (all of
  them are shown with `verbose`)."""
  if verbose:
    yield
    return
  logger, quiet = std_logging.getLogger(BACKEND_LOGGER), _OptionalBackendFilter()
  logger.addFilter(quiet)
  try:
    yield
  finally:
    logger.removeFilter(quiet)


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
  argv, added = _split_open_overrides(config_fields_after_config(argv))
  saved, sys.argv = sys.argv, list(argv)  # ml_collections reads its overrides from sys.argv.
  try:
    rest = flags.FLAGS(argv)
  except (AttributeError, KeyError) as e:
    if not any(f.filename.endswith("config_path.py") for f in traceback.extract_tb(e.__traceback__)):
      raise  # Not an override path: a bug in the config file keeps its traceback.
    missing = str(e).strip("\"'")
    looked_up = re.search(r"Attempting to lookup: (\S+)", missing)
    if looked_up:  # A field under a value that is no block (`--config.memo.lr.x`): name the path, not the message.
      missing = looked_up.group(1)
    named = [a.split("=", 1)[0] for a in argv if a.startswith("--config.") and missing in a.split("=", 1)[0]]
    hint = (f" (a model constructor argument goes in --config.model.overrides.{missing}=VALUE, or "
            f"--config.model_overrides.{missing}=VALUE in configs/evaluate.py)"
            if any(a.startswith("--config.model") for a in named) else "")
    print(f"zoomjax: error: {' '.join(named) or '--config.<field>'}: the config has no field {missing!r}{hint}",
          file=sys.stderr, flush=True)
    sys.exit(EXIT_USER_ERROR)
  except flags.Error as e:
    user = _user_error_in(e)
    if user is not None:
      exit_on_user_error(user, _verbose_in(argv), prefix="--config: ")
    if "Traceback (most recent call last)" in str(e):
      return app.parse_flags_with_usage(argv)  # Parses again to print absl's report, and exits.
    print(f"zoomjax: error: {errors.one_line(str(e))} (--helpshort lists the flags)", file=sys.stderr, flush=True)
    sys.exit(EXIT_USER_ERROR)
  finally:
    sys.argv = saved
  if added:
    _add_open_overrides(flags.FLAGS["config"].value, added)
  return rest


def _flag_name(arg: str) -> str:
  """'--config.limit=3' -> 'config.limit'; '' for an arg that is not a flag."""
  return arg.lstrip("-").split("=", 1)[0] if arg.startswith("-") and arg not in ("-", "--") else ""


def config_fields_after_config(argv: List[str]) -> List[str]:
  """argv with the `--config.<field>` overrides given before `--config` moved to just after it (and its value).

  absl meets flags in order and refuses an override met before the config file it overrides ("Found
  --config.shard_size=10 in argv before a value for --config was specified"); the order of the overrides among
  themselves is kept. An override's value given as the next arg (`--config.limit 3`) moves with it.
  """
  argv = list(argv)
  end = argv.index("--") if "--" in argv else len(argv)
  at = next((i for i in range(1, end) if _flag_name(argv[i]) == "config"), None)
  if at is None:
    return argv
  moved, kept, i = [], argv[:1], 1
  while i < at:
    name = _flag_name(argv[i])
    if name.startswith(("config.", "noconfig.")):
      moved.append(argv[i])
      if "=" not in argv[i] and i + 1 < at and not argv[i + 1].startswith("--"):
        moved.append(argv[i + 1])  # Its value (or a positional arg, which may stand anywhere).
        i += 1
    else:
      kept.append(argv[i])
    i += 1
  if not moved:
    return argv
  after = at + (2 if "=" not in argv[at] and at + 1 < end else 1)
  return kept + argv[at:after] + moved + argv[after:]


# Config blocks whose keys are free (make_module kwargs): `--config.<...>.overrides.KEY=VALUE` adds KEY, which
# ml_collections' flags cannot do (they only set fields the config already has).
OPEN_BLOCKS = ("overrides", "model_overrides")


def _split_open_overrides(argv: List[str]):
  """argv without its `--config.<block>.KEY=VALUE` args for an OPEN_BLOCKS block, and those as (path, key, value)."""
  kept, added, i = [], [], 0
  while i < len(argv):
    arg = argv[i]
    name, sep, value = arg.partition("=")
    parts = name[len("--config."):].split(".") if name.startswith("--config.") else []
    if len(parts) >= 2 and parts[-2] in OPEN_BLOCKS:
      if not sep:  # `--config.model.overrides.width 8`
        if i + 1 >= len(argv):
          print(f"zoomjax: error: {name} needs a value ({name}=VALUE)", file=sys.stderr, flush=True)
          sys.exit(EXIT_USER_ERROR)
        value, i = argv[i + 1], i + 1
      added.append((parts[:-1], parts[-1], _literal(value)))
    else:
      kept.append(arg)
    i += 1
  return kept, added


def _literal(text: str):
  """A Python literal (8, 0.5, (1, 1), True) or, failing that, the text itself (gelu)."""
  try:
    return ast.literal_eval(text)
  except (ValueError, SyntaxError):
    return text


def _add_open_overrides(config, added) -> None:
  for path, key, value in added:
    block = config
    for part in path:
      block = block.get(part) if hasattr(block, "get") else None
      if block is None:
        break
    if not hasattr(block, "unlocked"):
      print(f"zoomjax: error: --config.{'.'.join(path)}.{key}: the config has no block {'.'.join(path)!r}",
            file=sys.stderr, flush=True)
      sys.exit(EXIT_USER_ERROR)
    with config.unlocked():
      block[key] = value
