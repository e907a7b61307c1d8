"""What a run tells the user: each message once on the console (stdout), and in absl's log file if it has one.

absl's handler writes to stderr unless a log file was set up (`logging.get_absl_handler().use_absl_log_file()`);
printing and logging both would show every line twice there.
"""
import sys

from absl import logging


def _logs_to_file() -> bool:
  return getattr(logging.get_absl_handler().python_handler, "stream", None) not in (sys.stderr, sys.__stderr__)


def say(message: str) -> None:
  """Progress and results: printed on stdout (and logged at INFO when absl logs to a file)."""
  print(message, flush=True)
  if _logs_to_file():
    logging.info(message)


def warn(message: str) -> None:
  """Something went wrong but the run goes on: `warning: ...` on stdout whatever the logging settings (and
  logged at WARNING when absl logs to a file)."""
  print(f"warning: {message}", flush=True)
  if _logs_to_file():
    logging.warning(message)
