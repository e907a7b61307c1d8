"""The zoom sweep job scaled out: 8 fake devices, two processes on localhost, resumes on another process count.

Every run is a subprocess (`python tests/test_multiprocess.py --workdir ...`) because the device count and
`jax.distributed` are fixed when JAX starts. The reference is one process with one device. Every layout must
give the same records: class ids, labels, indices and names bit-identical, probabilities within 1e-6 relative
(a device's batch of 1 instead of 8, or XLA:CPU run to run, can move one by a rounding step). Loopback only.
"""
import argparse
import os
import shutil
import socket
import subprocess
import sys

if __name__ == "__main__":  # Worker: the device count must be in XLA_FLAGS before JAX is imported.
  _devices = next((a.split("=", 1)[1] for a in sys.argv if a.startswith("--devices=")), "1")
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                             f" --xla_force_host_platform_device_count={_devices}").strip()

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NUM_IMAGES, SHARD_SIZE = 8, 2  # 4 shards: process p of 2 owns shards p and p + 2.
SIZES = ((48, 64), (64, 48), (40, 70), (56, 56), (70, 40), (64, 64), (50, 60), (60, 52))


class StopAfterShards(Exception):
  """Raised by the worker's after_shard hook to simulate a run cut short after some shards."""


def _worker(argv) -> int:
  p = argparse.ArgumentParser()
  p.add_argument("--workdir", required=True)
  p.add_argument("--data", required=True)
  p.add_argument("--devices", default="1")
  p.add_argument("--num-processes", type=int, default=1)
  p.add_argument("--process-id", type=int, default=0)
  p.add_argument("--port", type=int, default=0)
  p.add_argument("--stop-after", type=int, default=0, help="raise after this many shards written (0: never)")
  a = p.parse_args(argv)
  import jax  # pylint: disable=g-import-not-at-top
  jax.config.update("jax_disable_most_optimizations", True)  # This worker only: job plumbing, compile-bound.
  jax.config.update("jax_compilation_cache_dir", os.path.expanduser("~/.cache/zoomjax/jax-tests"))
  sys.path.insert(0, REPO)
  from configs import zoom_sweep as cfg  # pylint: disable=g-import-not-at-top
  from zoomjax.runtime import parallel  # pylint: disable=g-import-not-at-top
  config = cfg.get_config(f"runlocal=1,data=folder:{a.data}")
  config.limit = 0
  config.shard_size = SHARD_SIZE
  # batch_size stays the default (1 image per device): every layout runs the same config, hence resumes.
  config.grid.scales = (224,)  # 9 zoom views + the 10 crops: enough to cover every code path.
  config.canvas = "max"  # One canvas for the run: one compile.
  config.report = False
  config.num_workers = 1
  config.merge_timeout_s = 120.0
  config.distributed = {"enabled": a.num_processes > 1, "coordinator_address": f"127.0.0.1:{a.port}",
                        "num_processes": a.num_processes, "process_id": a.process_id,
                        "initialization_timeout_s": 120}
  if parallel.initialize_from_config(config):
    assert (jax.process_index(), jax.process_count()) == (a.process_id, a.num_processes)
  assert jax.local_device_count() == int(a.devices), jax.local_devices()
  from zoomjax.jobs import zoom_sweep  # pylint: disable=g-import-not-at-top
  written = []

  def after_shard(k, path):
    written.append(k)
    if a.stop_after and len(written) >= a.stop_after:
      raise StopAfterShards(f"stopped after shards {written}")

  try:
    zoom_sweep.run(config, a.workdir, after_shard=after_shard)
  except StopAfterShards as e:
    print(f"WORKER STOPPED {e}", flush=True)
    return 3
  print(f"WORKER DONE shards {written}", flush=True)
  return 0


# --- Test side. ---


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _launch(workdir, data, *, devices=1, processes=1, stop_after=0, expect=0):
  """Starts `processes` workers (one per process id) on one coordinator and waits for all of them."""
  port = _free_port() if processes > 1 else 0
  env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONUNBUFFERED="1",
             PYTHONPATH=os.pathsep.join([REPO] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
  procs = [subprocess.Popen(
      [sys.executable, os.path.abspath(__file__), f"--workdir={workdir}", f"--data={data}", f"--devices={devices}",
       f"--num-processes={processes}", f"--process-id={i}", f"--port={port}",
       f"--stop-after={stop_after}"], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
      text=True) for i in range(processes)]
  outs = []
  try:
    for proc in procs:
      outs.append(proc.communicate(timeout=900)[0])
  finally:
    for proc in procs:
      if proc.poll() is None:
        proc.kill()
  for i, (proc, out) in enumerate(zip(procs, outs)):
    assert proc.returncode == expect, f"process {i}/{processes} exited {proc.returncode}:\n{out[-6000:]}"
  return outs


def _records_of(rec):
  from zoomjax.analysis import records as R  # pylint: disable=g-import-not-at-top
  return {f: getattr(rec, f) for f in R.PER_IMAGE + R.NAMES + (R.SKIPPED,)}


def _records(workdir):
  from zoomjax.analysis import records as R  # pylint: disable=g-import-not-at-top
  return _records_of(R.load(os.path.join(workdir, R.FINAL_FILE)))


def _assert_identical(got, want, what):
  """Ids, labels, indices and names bit-identical; probabilities within 1e-6 relative: XLA:CPU under heavy
  load gave 1-ulp differences between two runs of the same executable on the same shard (seen once in ~6)."""
  _assert_same(got, want, what)


@pytest.fixture(scope="module")
def images(tmp_path_factory):
  from PIL import Image  # pylint: disable=g-import-not-at-top
  root = tmp_path_factory.mktemp("images")
  rng = np.random.default_rng(0)
  lines = ["file,label"]
  for i, (h, w) in enumerate(SIZES[:NUM_IMAGES]):
    small = rng.integers(0, 256, (h // 4 + 1, w // 4 + 1, 3), dtype=np.uint8)
    img = Image.fromarray(small).resize((w, h), Image.Resampling.BILINEAR)
    img.save(root / f"img_{i:02d}.png")
    lines.append(f"img_{i:02d}.png,{(37 * i) % 1000}")
  (root / "labels.csv").write_text("\n".join(lines) + "\n")
  return str(root)


@pytest.fixture(scope="module")
def reference(images, tmp_path_factory):
  """One process, one device: the records every other layout must reproduce."""
  wd = str(tmp_path_factory.mktemp("ref"))
  _launch(wd, images)
  rec = _records(wd)
  assert len(rec["index"]) == NUM_IMAGES and list(rec["index"]) == list(range(NUM_IMAGES))
  return wd, rec


def _assert_same(got, want, what):
  sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
  from test_parallel import assert_same_records  # pylint: disable=g-import-not-at-top
  assert_same_records(got, want, what)


def test_two_processes_cut_short_then_one_process_with_eight_devices_finishes(images, reference, tmp_path):
  from zoomjax.analysis import records as R  # pylint: disable=g-import-not-at-top
  from zoomjax.runtime.shards import shard_path  # pylint: disable=g-import-not-at-top
  wd = str(tmp_path / "two_then_one")
  outs = _launch(wd, images, processes=2, stop_after=1, expect=3)
  assert all("WORKER STOPPED" in o for o in outs)
  shards = sorted(os.listdir(os.path.join(wd, "shards")))
  assert shards == ["shard_000000.npz", "shard_000001.npz"], shards
  assert not os.path.exists(os.path.join(wd, "records.npz"))
  for k in (0, 1):  # What each process wrote is bit-identical to the one-process run's shard.
    _assert_identical(_records_of(R.load(shard_path(wd, k))), _records_of(R.load(shard_path(reference[0], k))),
                      f"shard {k} written by process {k} of 2")
  out = _launch(wd, images, devices=8)[0]
  assert "WORKER DONE shards [2, 3]" in out, out[-3000:]
  _assert_same(_records(wd), reference[1], "shards 0-1 by 2 processes, 2-3 by one process with 8 devices")


def test_two_processes_resume_a_one_process_run_and_merge(images, reference, tmp_path):
  # A one-process run interrupted after shards 0 and 3: its workdir holds exactly these files.
  wd = str(tmp_path / "one_then_two")
  os.makedirs(os.path.join(wd, "shards"))
  shutil.copy(os.path.join(reference[0], "config.json"), wd)
  for k in (0, 3):
    name = f"shard_{k:06d}.npz"
    shutil.copy(os.path.join(reference[0], "shards", name), os.path.join(wd, "shards", name))
  outs = _launch(wd, images, processes=2)
  assert "WORKER DONE shards [2]" in outs[0] and "WORKER DONE shards [1]" in outs[1], outs[0][-3000:]
  _assert_identical(_records(wd), reference[1], "1 process cut short, finished and merged by 2")


if __name__ == "__main__":
  sys.exit(_worker(sys.argv[1:]))
