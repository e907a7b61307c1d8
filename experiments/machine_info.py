"""The line every benchmark prints last: its command, the machine, the date and the load it ran under.

BENCHMARKS.md gives each table with exactly these facts; printing them with the figures saves looking them up
(and getting them wrong) afterwards. The load average is read when the benchmark ends, so its 1- and 5-minute
values cover the timed runs (the benchmark's own work included: about 2.0 on a 2-core machine kept busy).
"""
import os
import platform
import sys
import time

__all__ = ["line"]


def _cpu_model() -> str:
  """The CPU's model name from /proc/cpuinfo (Linux), else the platform's processor string."""
  try:
    with open("/proc/cpuinfo", encoding="utf-8") as f:
      for row in f:
        if row.startswith("model name"):
          return row.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or "unknown CPU"


def _memory_gib() -> str:
  """Total memory in GiB from /proc/meminfo (Linux), else '?'."""
  try:
    with open("/proc/meminfo", encoding="utf-8") as f:
      for row in f:
        if row.startswith("MemTotal:"):
          return f"{int(row.split()[1]) / 2 ** 20:.1f}"
  except (OSError, ValueError, IndexError):
    pass
  return "?"


def _jax() -> str:
  """jax's version and device, when the benchmark imported jax (never imports it itself)."""
  jax = sys.modules.get("jax")
  if jax is None:
    return "jax not imported"
  device = jax.devices()[0]
  return f"jax {jax.__version__}, {jax.device_count()} x {device.platform} ({device.device_kind})"


def line() -> str:
  """`command: ...; machine: ...; <date> UTC; load average 1 / 5 / 15 min`, one line."""
  load = " / ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
  command = " ".join(["python", os.path.relpath(sys.argv[0])] + sys.argv[1:])
  return (f"command: {command}; machine: {_cpu_model()}, {platform.machine()}, {os.cpu_count()} CPUs, "
          f"{_memory_gib()} GiB, {_jax()}; finished {time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC; "
          f"load average {load} (1 / 5 / 15 min)")
