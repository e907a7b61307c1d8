"""The command line behaves: overrides before or after `--config`, Ctrl-C and SIGTERM stop any job at once keeping
every finished image (the rerun's records equal an uninterrupted run's), a line before each compile, and no JAX
backend noise on CPU. The interruptions are real signals sent to real `python -m zoomjax.main` processes."""
import fcntl
import logging
import os
import pathlib
import re
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest
from PIL import Image

import conftest
from zoomjax.analysis import records as R
from zoomjax.configs import tta as tta_config
from zoomjax.configs import zoom_sweep as sweep_config
from zoomjax.jobs import tta as tta_job
from zoomjax.jobs import zoom_sweep as sweep_job
from zoomjax.runtime import cli
from zoomjax.runtime import shards

pytestmark = pytest.mark.usefixtures("fast_compile_module")  # Job plumbing only; no parity check here.

LINE = re.compile(r"^interrupted: (\d+) of (\d+) images kept; rerun the same command to resume$")
NUM_IMAGES = 16


def _folder(root: pathlib.Path, n: int = NUM_IMAGES) -> pathlib.Path:
  """n small noise photos of one size (one canvas, one compile) in two classes."""
  for i in range(n):
    path = root / ("n01440764" if i % 2 else "n01443537") / f"{i:03d}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(i).integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(path)
  return root


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> pathlib.Path:
  return _folder(tmp_path_factory.mktemp("photos"))


class Job:
  """`python -m zoomjax.main ARGS` with stdout read line by line and stderr in a file."""

  def __init__(self, args, log: pathlib.Path):
    # The module runs with fast_compile: the subprocess compiles the same executables.
    env = dict(os.environ, JAX_DISABLE_MOST_OPTIMIZATIONS="1")
    self.err_path = log
    self._err = open(log, "w")
    # As started from a terminal: SIGINT at its default, even when the test runner itself was started in the
    # background (`make test &`, a CI runner), where the shell hands SIGINT down ignored.
    self.proc = subprocess.Popen([sys.executable, "-m", "zoomjax.main", *args], cwd=conftest.REPO, env=env,
                                 stdout=subprocess.PIPE, stderr=self._err, text=True,
                                 preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    self.out = []

  def wait_for(self, pattern: str, timeout: float = 240) -> re.Match:
    """Reads stdout until a line matches; fails (with the logs) when the job ends or the time is up first."""
    deadline = time.monotonic() + timeout
    for line in self.proc.stdout:
      self.out.append(line)
      m = re.search(pattern, line)
      if m:
        return m
      assert time.monotonic() < deadline, f"no line matching {pattern!r} after {timeout} s"
    pytest.fail(f"the job ended before printing {pattern!r}: {''.join(self.out)[-2000:]} {self.stderr()[-2000:]}")

  def interrupt(self, sig: int, timeout: float = 10.0) -> float:
    """Freezes the job where it is, sends `sig`, lets it go on: the signal lands in the middle of its work.
    Returns the seconds it took to exit."""
    self.proc.send_signal(signal.SIGSTOP)
    self.proc.send_signal(sig)
    t0 = time.monotonic()
    self.proc.send_signal(signal.SIGCONT)
    self.out += self.proc.stdout.readlines()
    self.proc.wait(timeout=timeout)
    return time.monotonic() - t0

  def finish(self, timeout: float = 300) -> int:
    self.out += self.proc.stdout.readlines()
    return self.proc.wait(timeout=timeout)

  def stderr(self) -> str:
    return self.err_path.read_text()  # The job writes it; this process never does.

  def close(self):
    if self.proc.poll() is None:
      self.proc.kill()
      self.proc.wait()
    self._err.close()


def _interrupted(job: Job, sig: int):
  """Asserts the one-line interruption (exit 130 for either signal, no traceback) and returns (kept, total)."""
  seconds = job.interrupt(sig)
  err = job.stderr()
  assert job.proc.returncode == 130, err[-3000:]
  assert seconds < 5, f"{seconds:.1f} s to stop"
  assert "Traceback" not in err and "KeyboardInterrupt" not in err, err[-3000:]
  lines = [line for line in err.splitlines() if line.startswith("interrupted")]
  assert len(lines) == 1 and err.splitlines()[-1] == lines[0], err[-3000:]
  m = LINE.match(lines[0])
  assert m, lines[0]
  return int(m.group(1)), int(m.group(2))


def _lock_is_free(workdir: pathlib.Path) -> bool:
  fd = os.open(workdir / ".lock-process-0", os.O_RDWR)
  try:
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return True
  except OSError:
    return False
  finally:
    os.close(fd)


def _partial_count(workdir: pathlib.Path, k: int = 0) -> int:
  with np.load(shards.partial_path(str(workdir), k)) as z:
    return len(z["index"])


SWEEP_ARG = "runlocal,grid=224,limit=0"
SWEEP_FLAGS = ("--config.report=False", "--config.tensorboard=False", "--config.extra_crops=False",
               "--config.canvas=max", "--config.progress_every_secs=0")


def test_sweep_ctrl_c_then_sigterm_keep_finished_images_and_the_rerun_equals_an_uninterrupted_run(photos, tmp_path):
  """A sweep in one shard of 16 images is stopped by SIGINT, its rerun by SIGTERM, each after some images: each
  stops at once with one line, exit 130, its lock free and its finished images in the shard's partial file;
  a third run completes only the rest and its records equal an uninterrupted run's. The overrides stand before
  `--config` (absl alone refuses that order); compiles are announced; no backend noise on stderr."""
  work = tmp_path / "work"
  cmd = ["--config.shard_size=100", "--config", f"configs/zoom_sweep.py:{SWEEP_ARG},data=folder:{photos}",
         "--workdir", str(work), *SWEEP_FLAGS, f"--config.compilation_cache_dir={jax.config.jax_compilation_cache_dir}"]
  first = Job(cmd, tmp_path / "a.log")
  try:
    first.wait_for(r"^sweep: [2-9]/16 images")
    kept_a, total = _interrupted(first, signal.SIGINT)
  finally:
    first.close()
  out = "".join(first.out)
  assert "compiling the views program for 256x256 canvases...\ncompiling the model program" in out, out
  assert "Unable to initialize backend" not in first.stderr()
  assert 2 <= kept_a < total == NUM_IMAGES
  assert _partial_count(work) == kept_a and not os.path.exists(shards.shard_path(str(work), 0))
  assert _lock_is_free(work)

  second = Job(cmd, tmp_path / "b.log")
  try:
    second.wait_for(rf"^sweep: {kept_a + 2}/16 images")  # Resumed: it counts from the kept images.
    kept_b, _ = _interrupted(second, signal.SIGTERM)
  finally:
    second.close()
  assert kept_a + 2 <= kept_b < total and _partial_count(work) == kept_b and _lock_is_free(work)

  c = sweep_config.get_config(f"{SWEEP_ARG},data=folder:{photos}")
  c.shard_size, c.report, c.tensorboard, c.extra_crops, c.canvas = 100, False, False, False, "max"
  built = sweep_job.build(c)
  computed = []
  compute = built[4]

  def counting_step(variables, image, hw, labels):
    computed.append(int(image.shape[0]))
    return compute(variables, image, hw, labels)

  counting_step.batch_size = compute.batch_size
  assert sweep_job.run(c, str(work), built=built[:4] + (counting_step,) + built[5:])["num_images"] == NUM_IMAGES
  assert sum(computed) == NUM_IMAGES - kept_b  # Only what the partial file lacked.
  assert not os.path.exists(shards.partial_path(str(work), 0))
  ref = tmp_path / "ref"
  sweep_job.run(c, str(ref), built=built)
  got, want = R.load(str(work / R.FINAL_FILE)), R.load(str(ref / R.FINAL_FILE))
  for f in R.PER_IMAGE + R.NAMES:
    np.testing.assert_array_equal(getattr(got, f), getattr(want, f), err_msg=f)


def test_tta_ctrl_c_keeps_finished_images_and_the_rerun_equals_an_uninterrupted_run(photos, tmp_path):
  work = tmp_path / "work"
  arg = f"runlocal,method=memo_rrc,data=folder:{photos},limit=0"
  cmd = ["--config", f"configs/tta.py:{arg}", "--workdir", str(work), "--config.shard_size=100",
         "--config.progress_every_secs=0", f"--config.compilation_cache_dir={jax.config.jax_compilation_cache_dir}"]
  job = Job(cmd, tmp_path / "a.log")
  try:
    job.wait_for(r"^compiling the memo_rrc step for batches of 1 on 256x256 canvases\.\.\.$")
    job.wait_for(r"^tta memo_rrc seed 0: [1-9]/16 images")
    kept, total = _interrupted(job, signal.SIGINT)
  finally:
    job.close()
  seed_dir = work / "seed_0"
  assert 1 <= kept < total == NUM_IMAGES and _partial_count(seed_dir) == kept and _lock_is_free(work)
  c = tta_config.get_config(arg)
  c.shard_size = 100
  tta_job.run(c, str(work))
  assert not os.path.exists(shards.partial_path(str(seed_dir), 0))
  tta_job.run(c, str(tmp_path / "ref"))
  got = np.load(seed_dir / tta_job.RECORDS_FILE)
  want = np.load(tmp_path / "ref" / "seed_0" / tta_job.RECORDS_FILE)
  assert sorted(got.files) == sorted(want.files)
  for f in got.files:
    np.testing.assert_array_equal(got[f], want[f], err_msg=f)


def _ctrl_c_with_nothing_to_keep(job: Job, when: str) -> None:
  """Ctrl-C once stdout shows `when`: exit 130, no traceback, the one line of a job with nothing to keep."""
  try:
    job.wait_for(when)
    job.interrupt(signal.SIGINT)
  finally:
    job.close()
  err = job.stderr()
  assert job.proc.returncode == 130 and "Traceback" not in err, err
  assert err.splitlines()[-1] == "interrupted: nothing new to keep; rerun the same command to run it again"


def test_ctrl_c_during_a_long_compile_stops_at_once(tmp_path):
  """The zoom preview compiles the paper grid (324 views, seconds): a Ctrl-C in the middle of that blocking XLA
  call stops the job at once with one line (nothing per-image to keep)."""
  job = Job(["--config", "configs/zoom_preview.py", "--workdir", str(tmp_path / "preview"),
             "--config.compilation_cache_dir=off"], tmp_path / "a.log")
  _ctrl_c_with_nothing_to_keep(job, r"^compiling the zoom grid \(324 views\) for a 451x300 image\.\.\.$")
  assert not (tmp_path / "preview" / "zoom_grid.png").exists()


def test_ctrl_c_in_a_study_ends_in_one_line(photos, tmp_path):
  c = sweep_config.get_config(f"{SWEEP_ARG},data=folder:{photos},limit=2")
  c.report, c.tensorboard, c.extra_crops, c.canvas = False, False, False, "max"
  sweep_job.run(c, str(tmp_path / "sweep"))
  job = Job(["--config", f"configs/study.py:runs={tmp_path / 'sweep'},runlocal", "--workdir", str(tmp_path / "study")],
            tmp_path / "a.log")
  _ctrl_c_with_nothing_to_keep(job, r"^study: reading ")


# ---------------------------------------------------------------------------------------------------------------
# In-process pieces.


def test_overrides_before_config_move_after_it_in_order():
  move = cli.config_fields_after_config
  assert move(["p", "--config.shard_size=10", "--config", "c.py:x", "--workdir", "w"]) == [
      "p", "--config", "c.py:x", "--config.shard_size=10", "--workdir", "w"]
  assert move(["p", "--config.limit", "-1", "--noconfig.report", "--workdir=w", "--config=c.py", "--config.a=1"]) == [
      "p", "--workdir=w", "--config=c.py", "--config.limit", "-1", "--noconfig.report", "--config.a=1"]
  assert move(["p", "--config.model.overrides.width=8", "--config", "c.py"]) == [
      "p", "--config", "c.py", "--config.model.overrides.width=8"]
  unchanged = ["p", "--config", "c.py", "--config.a=1", "--", "--config.b=2"]
  assert move(unchanged) == unchanged
  assert move(["p", "--config.a=1"]) == ["p", "--config.a=1"]  # No --config: absl names what is missing.


def test_only_the_optional_backend_probe_lines_are_dropped(caplog):
  logger = logging.getLogger(cli.BACKEND_LOGGER)
  with caplog.at_level(logging.INFO, logger=cli.BACKEND_LOGGER):
    with cli.quiet_backend_probe():
      logger.info("Unable to initialize backend 'tpu': INTERNAL: Failed to open libtpu.so")
      logger.warning("CUDA backend failed to initialize: no supported devices found.")  # A real problem: shown.
    with cli.quiet_backend_probe(verbose=True):
      logger.info("Unable to initialize backend 'rocm': no ROCm devices")
    logger.info("Unable to initialize backend 'cuda': outside the block")
  assert [r.getMessage() for r in caplog.records] == [
      "CUDA backend failed to initialize: no supported devices found.",
      "Unable to initialize backend 'rocm': no ROCm devices", "Unable to initialize backend 'cuda': outside the block"]


class _Rows:
  """A fake job over n images: batches of 2 in index order; each row records its image's index."""

  def __init__(self, n: int, stop_after: int = -1):
    self.n, self.stop_after, self.computed = n, stop_after, []

  def batches_for(self, indices):
    for s in range(0, len(indices), 2):
      idx = np.array(list(indices[s:s + 2]) + [-1] * (2 - len(indices[s:s + 2])))
      yield {"index": idx, "labels": np.where(idx >= 0, idx % 3, -1)[:, None]}

  def compute(self, batch):
    if len(self.computed) == self.stop_after:
      raise KeyboardInterrupt  # What Ctrl-C raises in a process without zoomjax.runtime.interrupt.
    self.computed += [int(i) for i in batch["index"] if i >= 0]
    return {"value": np.asarray(batch["index"], np.float32) * 2}

  def run(self, workdir, meta=("a",)):
    return shards.run_shards(
        str(workdir), num_images=self.n, shard_size=8, batches_for=self.batches_for, compute=self.compute,
        empty_rows={"value": np.zeros(0, np.float32)}, meta={"names": list(meta)}, ids_of=lambda i: f"img{i}",
        fingerprint_of=lambda r: shards.fingerprint([f"img{i}" for i in r], np.arange(r.start, r.stop)[:, None] % 3))


def test_a_shard_left_early_keeps_its_finished_images_and_the_rerun_computes_only_the_rest(tmp_path):
  job = _Rows(10, stop_after=4)
  with pytest.raises(KeyboardInterrupt):
    job.run(tmp_path)
  assert _partial_count(tmp_path) == 4 and not os.path.exists(shards.shard_path(str(tmp_path), 0))
  rest = _Rows(10)
  assert rest.run(tmp_path) == [0, 1]
  assert rest.computed == [4, 5, 6, 7, 8, 9]  # Shard 0's last four, then shard 1.
  assert not os.path.exists(shards.partial_path(str(tmp_path), 0))
  merged = shards.merge(str(tmp_path), 2, ("value",), ("names",), num_images=10)
  np.testing.assert_array_equal(merged["index"], np.arange(10))
  np.testing.assert_array_equal(merged["value"], np.arange(10) * 2.0)


def test_a_partial_file_of_other_images_or_another_run_is_dropped_with_a_warning(tmp_path, capsys):
  with pytest.raises(KeyboardInterrupt):
    _Rows(10, stop_after=4).run(tmp_path)
  again = _Rows(10)
  again.run(tmp_path, meta=("b",))  # Another run's meta: its images are computed again.
  assert again.computed == list(range(10))
  assert capsys.readouterr().out == (f"warning: dropping {shards.partial_path(str(tmp_path), 0)} and computing its "
                                     "images again: its names differ from this run's\n")
  assert not os.path.exists(shards.partial_path(str(tmp_path), 0))
