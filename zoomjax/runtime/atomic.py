"""Atomic file writers: a reader sees the old file or the complete new one, never a partial one.

Each write goes to a uniquely named temporary file in the target's directory (so concurrent writers never share
a temporary name), is flushed to disk, gets the permissions of an ordinary new file (0666 & ~umask, where
`tempfile.mkstemp` would leave 0600), and then replaces the target with `os.replace`. A full disk (or quota)
leaves the target as it was and raises an OSError naming the target, not the temporary file.
"""
import contextlib
import errno
import json
import os
import re
import tempfile
from typing import Any, BinaryIO, Dict, Iterator, Optional

import numpy as np

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def slug(text: str, max_len: Optional[int] = None) -> str:
  """A file-name-safe form of `text` (a model row, a dataset name, a run label): each run of characters other
  than letters, digits, '.', '_' and '-' becomes one '_', at most `max_len` characters, never empty ("x")."""
  out = _UNSAFE.sub("_", text).strip("_")
  return (out[:max_len] if max_len else out) or "x"


def _umask() -> int:
  mask = os.umask(0)
  os.umask(mask)
  return mask


@contextlib.contextmanager
def open_atomic(path: str) -> Iterator[BinaryIO]:
  """`with open_atomic(path) as f: f.write(...)`: `path` appears only if the block completes."""
  directory = os.path.dirname(os.path.abspath(path))
  try:
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
  except OSError as e:
    _raise_naming(e, path)
    raise
  try:
    os.fchmod(fd, 0o666 & ~_umask())
    with os.fdopen(fd, "wb") as f:
      yield f
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException as e:
    with contextlib.suppress(OSError):
      os.remove(tmp)
    if isinstance(e, OSError):
      _raise_naming(e, path)
    raise


def _raise_naming(e: OSError, path: str) -> None:
  """Disk full or quota exceeded: re-raised naming the target (the temporary file's name would mislead)."""
  if e.errno in (errno.ENOSPC, errno.EDQUOT):
    raise OSError(e.errno, e.strerror or os.strerror(e.errno), path) from e


def write_bytes(path: str, data: bytes) -> None:
  with open_atomic(path) as f:
    f.write(data)


def write_text(path: str, text: str) -> None:
  write_bytes(path, text.encode("utf-8"))


def _json_default(x):
  if isinstance(x, np.generic):
    return x.item()
  if isinstance(x, np.ndarray):
    return x.tolist()
  raise TypeError(f"not JSON serialisable: {type(x)}")


def write_json(path: str, obj: Any) -> None:
  """Strict JSON (NaN refused: callers map missing values to null), numpy scalars and arrays allowed."""
  write_text(path, json.dumps(obj, indent=2, sort_keys=True, allow_nan=False, default=_json_default) + "\n")


def savez(path: str, arrays: Dict[str, np.ndarray]) -> None:
  """`np.savez` (uncompressed; string arrays as fixed-width unicode, never pickled objects)."""
  with open_atomic(path) as f:
    np.savez(f, **arrays)
