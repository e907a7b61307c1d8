"""Ctrl-C and SIGTERM: stop within a moment, keep every finished image, say so in one line.

`install()` (the first thing `zoomjax.main` does) routes SIGINT and SIGTERM to a watcher thread, woken by
`signal.set_wakeup_fd` from the C-level signal handler. It acts at once whatever the main thread is doing, even
inside a minutes-long XLA compile or a blocking device call, where a Python-level handler (and so
KeyboardInterrupt) would wait for that call to return. On the first signal the watcher
  1. takes `commit()`, the lock under which results are committed (a shard file being written is finished first),
  2. runs every registered saver (`saving(fn)`): `zoomjax.runtime.shards.run_shards` writes the finished images of
     the shard in progress to its partial file, which a rerun picks up (`shards.partial_path`),
  3. prints ONE line on stderr, `interrupted: N of M images kept; rerun the same command to resume`,
  4. ends the process with exit status 130 (`EXIT_INTERRUPTED`, for SIGTERM as for Ctrl-C: one status means
     "stopped, resumable" to scripts and schedulers), no traceback. Work still in
     flight (a compile, a device step, decode threads) is abandoned rather than awaited; the workdir lock is a
     `flock`, released with the process.
A second signal while that happens ends the process at once (files are written atomically, so nothing is torn).

N and M count images over the run's units of work (`account`: a sweep, a TTA seed, an evaluate pair), each
declared with its total (`expect`) and its images on disk. A SIGINT the parent ignores (`cmd &` in a script:
a Ctrl-C at the terminal is not for it) stays ignored; SIGTERM still stops it. Without `install()` (library
use) nothing changes: Python's KeyboardInterrupt stands, and `run_shards` still keeps the shard's finished images
when it passes through.
"""
import contextlib
import os
import signal
import sys
import threading
from typing import Callable, Dict, Iterator, List, Optional, Tuple

__all__ = ["install", "commit", "saving", "expect", "account", "summary", "SIGNALS", "EXIT_INTERRUPTED"]

SIGNALS = (signal.SIGINT, signal.SIGTERM)
EXIT_INTERRUPTED = 130  # 128 + SIGINT, the shell's status for a Ctrl-C; SIGTERM ends with it too.
SAVE_TIMEOUT_S = 30.0  # Longest wait for a commit in progress (a shard file being written) before exiting.
FLUSH_TIMEOUT_S = 2.0  # Longest wait for stdout / stderr to take what the job printed before the last line.

_lock = threading.RLock()  # Held while results are committed, and by the watcher while it saves and exits.
_savers: List[Callable[[], None]] = []
_units: Dict[str, Tuple[int, int]] = {}  # key -> (images kept on disk, images of the unit)
_installed = False


def commit() -> threading.RLock:
  """`with commit(): ...` around every change of what is kept (a shard file, the rows a saver would write), so
  that an interruption sees either the state before or after it."""
  return _lock


@contextlib.contextmanager
def saving(save: Callable[[], None]) -> Iterator[None]:
  """Registers `save` (writes the unfinished work worth keeping, and `account`s it) while the block runs; the
  watcher calls it, holding `commit()`, before the process ends."""
  with _lock:
    _savers.append(save)
  try:
    yield
  finally:
    with _lock:
      _savers.remove(save)


def expect(key: str, total: int, kept: int = 0) -> None:
  """Declares a unit of work the run will do (e.g. each seed of a TTA run), with the images it already has on
  disk, so that N and M count it before it starts (a unit already `account`ed keeps its numbers)."""
  with _lock:
    _units.setdefault(key, (int(kept), int(total)))


def account(key: str, kept: int, total: int) -> None:
  """Unit `key` has `kept` of its `total` images on disk (finished shards and partial files)."""
  with _lock:
    _units[key] = (int(kept), int(total))


def summary() -> str:
  """The line printed on interruption."""
  units = dict(_units)  # A copy made under the GIL: no lock, so a watcher that timed out on it can still say it.
  kept, total = sum(k for k, _ in units.values()), sum(t for _, t in units.values())
  if not units:
    return "interrupted: nothing new to keep; rerun the same command to run it again"
  return f"interrupted: {kept} of {total} images kept; rerun the same command to resume"


def install() -> None:
  """Routes SIGINT and SIGTERM to the watcher (see the module docstring). Call once, from the main thread,
  before the job starts threads of its own."""
  global _installed
  if _installed:
    return
  read_fd, write_fd = os.pipe()
  os.set_blocking(write_fd, False)
  handled = [s for s in SIGNALS if signal.getsignal(s) is not signal.SIG_IGN]
  for s in handled:
    signal.signal(s, _in_main_thread)
  signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
  threading.Thread(target=_watch, args=(read_fd, set(handled)), name="zoomjax-interrupt", daemon=True).start()
  _installed = True


def _in_main_thread(signum, frame) -> None:
  """The Python-level handler: the watcher does the work (this runs only when the main thread is free)."""
  del signum, frame


def _watch(read_fd: int, handled) -> None:
  first: Optional[int] = None
  while True:
    try:
      data = os.read(read_fd, 64)
    except InterruptedError:
      continue
    for signum in data:
      if signum not in handled:
        continue
      if first is None:
        first = signum
        threading.Thread(target=_stop, args=(signum,), name="zoomjax-stop", daemon=True).start()
      else:  # A second Ctrl-C: stop waiting for the save.
        _exit(signum, "interrupted again: stopped without waiting; rerun the same command to resume")


def _stop(signum: int) -> None:
  acquired = _lock.acquire(timeout=SAVE_TIMEOUT_S)
  problems = []
  if acquired:
    for save in list(_savers):
      try:
        save()
      except Exception as e:  # pylint: disable=broad-except  What could not be kept is said; the exit goes on.
        problems.append(f"{type(e).__name__}: {e}")
  line = summary()
  if problems:
    line += f" (the unfinished shard was not kept: {problems[0]})"
  elif not acquired:
    line += f" (a shard file still being written after {SAVE_TIMEOUT_S:.0f} s was not waited for)"
  _exit(signum, line)


def _exit(signum: int, line: str) -> None:
  def flush():
    for stream in (sys.stdout, sys.stderr):
      with contextlib.suppress(Exception):
        stream.flush()

  flusher = threading.Thread(target=flush, daemon=True)  # A reader that stopped reading must not hold the exit.
  flusher.start()
  flusher.join(timeout=FLUSH_TIMEOUT_S)
  with contextlib.suppress(Exception):
    os.write(2, (line + "\n").encode())
  del signum
  os._exit(EXIT_INTERRUPTED)  # pylint: disable=protected-access  Abandons work in flight (a compile, a device step).
