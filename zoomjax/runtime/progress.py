"""Progress of a long job: a line before each compile (`announcing`), seconds spent compiling (`CompileClock`)
and the images/s, views/s, ETA line (`Progress`).

A paper-grid sweep compiles for minutes before its first image; `announcing` wraps a jitted step so that
`compiling the views program for 512x512 canvases...` is said (`zoomjax.runtime.console.say`) the first time the
step meets a new input shape, i.e. just before JAX compiles it (or reads it from the persistent cache).

Hand-written rather than clu's PeriodicAction, whose import loads TensorFlow.
"""
import time
from typing import Any, Callable, Dict, Hashable, Optional, Tuple

import jax
from absl import logging

from zoomjax.runtime import console

__all__ = ["announcing", "CompileClock", "Progress"]


def announcing(fn: Callable[..., Any], describe: Callable[..., Tuple[Hashable, str]],
               say: Callable[[str], None] = console.say) -> Callable[..., Any]:
  """`fn` (a jitted step), saying `compiling <what>...` before each call whose key is new.

  describe(*args) -> (key, what): key is what selects the executable (the input shapes that vary, e.g. the
  canvas shape); `what` names the program for the user. Keys are remembered per wrapper, like jit's own cache
  per function, so a step reused across runs announces each shape once.
  """
  seen = set()

  def call(*args, **kwargs):
    key, what = describe(*args, **kwargs)
    if key not in seen:
      seen.add(key)
      say(f"compiling {what}...")
    return fn(*args, **kwargs)

  call.__wrapped__ = fn
  for name in ("lower", "trace", "eval_shape"):  # jit's AOT entry points stay reachable.
    if hasattr(fn, name):
      setattr(call, name, getattr(fn, name))
  return call


class CompileClock:
  """Seconds spent turning jitted functions into executables while active: tracing, lowering and XLA
  compilation (or reading the executable from the persistent cache), from `jax.monitoring`'s events.

  `with CompileClock() as clock: ...` then `clock.seconds`, `clock.count` (executables), `clock.cache_hits`.
  """

  EVENTS = ("/jax/core/compile/jaxpr_trace_duration", "/jax/core/compile/jaxpr_to_mlir_module_duration",
            "/jax/core/compile/backend_compile_duration")
  CACHE_HIT = "/jax/compilation_cache/cache_hits"

  def __init__(self):
    self.seconds, self.count, self.cache_hits = 0.0, 0, 0

  def _on_duration(self, event: str, duration: float, **kwargs) -> None:
    del kwargs
    if event in self.EVENTS:
      self.seconds += duration
      self.count += event == self.EVENTS[-1]

  def _on_event(self, event: str, **kwargs) -> None:
    del kwargs
    self.cache_hits += event == self.CACHE_HIT

  def __enter__(self) -> "CompileClock":
    jax.monitoring.register_event_duration_secs_listener(self._on_duration)
    jax.monitoring.register_event_listener(self._on_event)
    return self

  def __exit__(self, *exc) -> None:
    jax.monitoring.unregister_event_duration_listener(self._on_duration)
    jax.monitoring.unregister_event_listener(self._on_event)


class Progress:
  """Logs (and hands to `write`) images/s, views/s and the ETA at most every `every_secs` and at the end.

  Hand-written rather than clu's PeriodicAction, whose import loads TensorFlow (docs/index.md, Design notes).
  """

  def __init__(self, *, total_images: int, views_per_image: int, every_secs: float = 30.0,
               log_fn: Callable[[str], None] = logging.info,
               write: Optional[Callable[[int, Dict[str, float]], None]] = None, what: str = "sweep",
               compile_clock: Optional[CompileClock] = None):
    self._total, self._vpi, self._every, self._log, self._write = total_images, views_per_image, every_secs, \
        log_fn, write
    self._what, self._clock = what, compile_clock
    self._start: Optional[Tuple[int, float]] = None
    self._previous: Optional[Tuple[int, float]] = None
    self.last: Dict[str, float] = {}

  def __call__(self, step: int, t: Optional[float] = None) -> bool:
    """Reports when due; the first call starts the clock (resumed work is not "done now")."""
    t = time.monotonic() if t is None else t
    if self._start is None:
      self._start = self._previous = (step, t)
      return False
    if t - self._previous[1] < self._every and step < self._total:
      return False
    if step == self._previous[0]:
      return False
    self._report(step, t)
    return True

  def _report(self, step: int, t: float):
    (s0, t0), (sp, tp) = self._start, self._previous
    ips = (step - sp) / max(t - tp, 1e-9)
    mean_ips = (step - s0) / max(t - t0, 1e-9)
    eta = (self._total - step) / mean_ips if mean_ips > 0 else float("inf")
    self._previous = (step, t)
    self.last = {"images_per_sec": ips, "views_per_sec": ips * self._vpi, "eta_secs": eta,
                 "images_done": float(step)}
    compiled = ""
    if self._clock is not None:
      self.last["compile_secs"] = self._clock.seconds
      compiled = f", compiling {self._clock.seconds:.1f} s so far ({self._clock.count} executables)"
    self._log(f"{self._what}: {step}/{self._total} images, {ips:.2f} images/s, {ips * self._vpi:.1f} views/s, "
              f"ETA {eta / 60:.1f} min{compiled}")
    if self._write is not None:
      self._write(step, self.last)
