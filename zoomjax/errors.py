"""Errors the user can fix (a bad config value, data file, checkpoint or workdir), told apart from bugs.

`zoomjax.main` prints a `UserError` as one line, `zoomjax: error: <message>`, and exits with status 2 (the
traceback only with `--verbose`); any other exception is a bug and keeps its traceback. `UserError` is a
`ValueError`, and each subclass below is also the built-in type such an error had before it existed, so code
and tests that catch `ValueError`, `FileNotFoundError`, `KeyError`, `RuntimeError`, `TimeoutError` or
`FloatingPointError` keep working. A warning (the run goes on) is `zoomjax.runtime.console.warn`.
"""
import errno
import re
from typing import Optional


class UserError(ValueError):
  """A problem with what the user gave (config, data, checkpoint, workdir); the message says what and how to fix
  it."""

  __str__ = BaseException.__str__  # Not KeyError's repr-quoting in subclasses that are also KeyErrors.


class NotFoundError(UserError, FileNotFoundError):
  """A file or folder the user must provide is missing (the message names where to place what)."""


class UnknownNameError(UserError, KeyError):
  """An unknown name: model, dataset, label space, class."""


class StateError(UserError, RuntimeError):
  """The workdir or a prepared dataset is in a state the user must act on (in use, unreadable build)."""


class WaitTimeoutError(UserError, TimeoutError):
  """Waited in vain for other processes' results (rerun to resume)."""


class NonFiniteError(UserError, FloatingPointError):
  """A model gave NaN or infinite logits (broken weights, or an overflow in a low-precision dtype)."""


DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


def one_line(text: str) -> str:
  """A message on one line: line breaks (and the indentation after them) become single spaces."""
  return re.sub(r"\s*\n\s*", " ", str(text).strip())


def user_message(e: BaseException) -> Optional[str]:
  """The one-line message for an error the user can fix, or None for a bug (which keeps its traceback).

  User errors: `UserError`, disk full (ENOSPC / EDQUOT) and permission denied, each naming the path.
  """
  if isinstance(e, UserError):
    return one_line(str(e))
  if isinstance(e, OSError) and e.errno in DISK_FULL:
    where = f" while writing {e.filename}" if e.filename else ""
    return f"disk full{where} ({e.strerror or 'no space left'}): free space or use another --workdir"
  if isinstance(e, PermissionError):
    what = f"{e.filename}" if e.filename else one_line(str(e))
    return f"permission denied: {what}: fix its permissions or use another --workdir"
  return None
