"""Faults a demanding user meets: changed datasets, corrupt shards and images, concurrent writers and processes,
kill -9, a full disk, NaN weights, tensor bombs, bad config values and label files, failed starts. Nothing computed
is lost, nothing wrong is merged, every error names its cause, and the command line says it in one line.
"""
import collections
import errno
import json
import os
import pathlib
import signal
import stat
import subprocess
import sys
import threading
import time

import jax
import numpy as np
import pytest
from PIL import Image

import conftest
from configs import tta as tta_config
from configs import zoom_sweep as config_lib
from test_checkpoints import FakeStorage, FakeTensor, write_torch_zip  # The torch-format writer without torch.
from zoomjax import data
from zoomjax import errors
from zoomjax import zoom
from zoomjax.analysis import records as R
from zoomjax.checkpoints import CheckpointError
from zoomjax.jobs import tta as tta_job
from zoomjax.jobs import zoom_sweep as job
from zoomjax.runtime import atomic
from zoomjax.runtime import cli
from zoomjax.runtime import shards

pytestmark = pytest.mark.usefixtures("fast_compile_module")  # Job plumbing only; no parity check here.

T, X, A = 4, 2, 5  # Fake records: 4 grid views, 2 crops, 5 aggregation sets.
META = {"view_names": [f"LOC:1_1_Size:{s}" for s in (100, 200, 256, 300)], "crop_names": ["a", "b"],
        "agg_names": ["zoom-in", "zoom-out", "zoom-224", "5-crop", "10-crop"]}


class FakeDataset:
  """ids/labels like a Dataset; batches of 2 in index order; compute records each image's label."""

  def __init__(self, ids, labels):
    self.ids, self.labels = list(ids), np.asarray(labels, np.int32).reshape(len(ids), 1)
    self.computed = []

  def batches_for(self, indices):
    for s in range(0, len(indices), 2):
      idx = np.array(list(indices[s:s + 2]) + [-1] * (2 - len(indices[s:s + 2])))
      yield {"index": idx, "labels": np.where(idx[:, None] >= 0, self.labels[np.maximum(idx, 0)], -1)}

  def compute(self, batch):
    self.computed += [int(i) for i in batch["index"] if i >= 0]
    lab = batch["labels"][:, 0]
    rows = R.empty_rows(T, X, A)
    return {f: np.zeros((len(lab),) + v.shape[1:], v.dtype) + (lab.reshape((-1,) + (1,) * (v.ndim - 1))
                                                               if f == "topk" else 0) for f, v in rows.items()}

  def run(self, workdir, shard_size=2):
    return shards.run_shards(
        str(workdir), num_images=len(self.ids), shard_size=shard_size, batches_for=self.batches_for,
        compute=self.compute, empty_rows=R.empty_rows(T, X, A), meta=META, ids_of=lambda i: self.ids[i],
        fingerprint_of=lambda r: shards.fingerprint(self.ids[r.start:r.stop], self.labels[r.start:r.stop]))


def test_resume_over_a_changed_dataset_recomputes_exactly_the_changed_shards(tmp_path, capsys):
  ids = [f"img{i}.jpg" for i in range(6)]
  ds = FakeDataset(ids, [1, 2, 3, 4, 5, 6])
  assert ds.run(tmp_path) == [0, 1, 2]
  # A relabelled image (shard 1) and, worse, an image whose path sorts first shifts every index.
  ds2 = FakeDataset(ids, [1, 2, 3, 9, 5, 6])
  assert ds2.run(tmp_path) == [1] and ds2.computed == [2, 3]
  assert "recomputing" in capsys.readouterr().out
  ds3 = FakeDataset(["aaa.jpg"] + ids, [7, 1, 2, 3, 9, 5, 6])
  assert ds3.run(tmp_path) == [0, 1, 2, 3]
  rec = R.merge_shards(str(tmp_path), 4, num_images=7)
  assert list(rec.ids) == ["aaa.jpg"] + ids and len(set(rec.ids)) == 7  # No stale or duplicate image.
  np.testing.assert_array_equal(rec.topk[:, 0, 0], [7, 1, 2, 3, 9, 5, 6])


def test_corrupt_empty_or_foreign_shards_are_recomputed_with_a_warning(tmp_path, capsys):
  ds = FakeDataset([f"img{i}.jpg" for i in range(6)], range(6))
  ds.run(tmp_path)
  with open(shards.shard_path(str(tmp_path), 0), "wb"):
    pass  # Empty file (disk full, kill during a non-atomic copy).
  with open(shards.shard_path(str(tmp_path), 1), "wb") as f:
    f.write(b"PK\x03\x04 truncated zip")
  os.replace(shards.shard_path(str(tmp_path), 2), shards.shard_path(str(tmp_path), 2) + ".bak")
  again = FakeDataset(ds.ids, range(6))
  assert again.run(tmp_path) == [0, 1, 2]
  out = capsys.readouterr().out
  assert out.count("recomputing") == 2 and "shard_000000.npz: unreadable" in out
  assert len(R.merge_shards(str(tmp_path), 3, num_images=6)) == 6


def test_merge_refuses_unreadable_missing_or_unaccounted_images(tmp_path):
  ds = FakeDataset([f"img{i}.jpg" for i in range(4)], range(4))
  ds.run(tmp_path)
  with pytest.raises(ValueError, match="account for 4 images .* not the dataset's 5"):
    R.merge_shards(str(tmp_path), 2, num_images=5)
  with open(shards.shard_path(str(tmp_path), 1), "wb") as f:
    f.write(b"not a zip")
  with pytest.raises(ValueError, match="cannot read results file .*shard_000001.npz.*delete it"):
    R.merge_shards(str(tmp_path), 2)


def test_outputs_are_world_readable_and_writers_never_collide(tmp_path):
  ds = FakeDataset(["a", "b"], [0, 1])
  ds.run(tmp_path)
  mode = stat.S_IMODE(os.stat(shards.shard_path(str(tmp_path), 0)).st_mode)
  assert mode == 0o666 & ~_umask(), oct(mode)
  path = str(tmp_path / "metrics.json")
  errors, bad_reads = [], []

  def writer(k):
    try:
      for j in range(30):
        atomic.write_json(path, {"writer": k, "j": j, "pad": "x" * 5000})
    except Exception as e:  # pylint: disable=broad-except
      errors.append(e)

  def reader():
    for _ in range(200):
      try:
        with open(path) as f:
          json.load(f)
      except FileNotFoundError:
        pass
      except json.JSONDecodeError as e:
        bad_reads.append(e)

  threads = [threading.Thread(target=writer, args=(k,)) for k in range(4)] + [threading.Thread(target=reader)]
  for t in threads:
    t.start()
  for t in threads:
    t.join()
  assert not errors and not bad_reads
  assert [f for f in os.listdir(tmp_path) if f.endswith(".tmp")] == []


def _umask():
  m = os.umask(0)
  os.umask(m)
  return m


def test_a_second_process_on_the_same_workdir_is_refused_by_name(tmp_path):
  with shards.workdir_lock(str(tmp_path), 0):
    with pytest.raises(RuntimeError, match=f"{tmp_path} is in use by another zoomjax process .pid {os.getpid()}"):
      with shards.workdir_lock(str(tmp_path), 0):
        pass
    with shards.workdir_lock(str(tmp_path), 1):  # A configured second process has its own index.
      pass
  with shards.workdir_lock(str(tmp_path), 0):  # Released with its holder.
    pass


def small_config(arg="", **overrides):
  c = config_lib.get_config("runlocal,data=demo_photos,limit=2,grid=224" + ("," + arg if arg else ""))
  c.report, c.tensorboard, c.extra_crops = False, False, False
  for k, v in overrides.items():
    setattr(c, k, v)
  return c


@pytest.mark.parametrize("arg,overrides,message", [
    ("model=efficientnet_lite9", {}, "efficientnet_lite9"),
    ("data=folder:/no/such/dir", {}, "/no/such/dir"),
    ("", {"batch_size": 0}, "batch_size=0"),
    ("", {"shard_size": 0}, "--config.shard_size=0: must be an integer >= 1"),
    ("", {"limit": -1}, "config.limit=-1"),
    ("", {"tie_order": "nope"}, "--config.tie_order='nope': not one of paper, grid"),
    ("", {"canvas": "round"}, "--config.canvas='round': not one of square, buckets, max"),
])
def test_a_failed_start_names_the_value_and_leaves_the_workdir_reusable(tmp_path, arg, overrides, message):
  with pytest.raises((ValueError, KeyError, FileNotFoundError), match=message):
    job.run(small_config(arg, **overrides), str(tmp_path))
  assert not (tmp_path / "config.json").exists()


def test_bad_arg_values_are_named():
  with pytest.raises(ValueError, match="every scale must be a positive short side"):
    config_lib.get_config("grid=0/224")
  with pytest.raises(ValueError, match="limit='-x': expected int"):
    config_lib.get_config("limit=-x")


def test_workdir_that_is_a_file_is_refused(tmp_path):
  f = tmp_path / "file"
  f.write_text("")
  with pytest.raises(ValueError, match="is a file, not a folder"):
    job.run(small_config(), str(f))


def test_nan_weights_stop_the_sweep_naming_model_image_and_view(tmp_path):
  c = small_config()
  dataset, bundle, grid, spec, step, variables = job.build(c)
  nan = jax.tree.map(lambda x: np.full(np.shape(x), np.nan, np.asarray(x).dtype), variables)
  with pytest.raises(FloatingPointError, match=r"efficientnet_lite_tiny gave non-finite logits on image "
                                               r"chelsea.png \(index 0\), view LOC:0_0_Size:224"):
    job.run(c, str(tmp_path), built=(dataset, bundle, grid, spec, step, nan))
  assert not os.path.exists(shards.shard_path(str(tmp_path), 0))  # Nothing wrong was written.
  # The same workdir then runs with good weights.
  assert job.run(c, str(tmp_path), built=(dataset, bundle, grid, spec, step, variables))["num_images"] == 2


# ---------------------------------------------------------------- skipped images, completion, large images

def _folder(root, images):
  """A class-folder dataset: {relative path: (h, w) or bytes (written as is, e.g. a corrupt file)}."""
  for rel, spec in images.items():
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(spec, bytes):
      path.write_bytes(spec)
    else:
      rng = np.random.default_rng(len(rel))
      Image.fromarray(rng.integers(0, 255, spec + (3,), dtype=np.uint8)).save(path)
  return root


def test_a_skipped_image_is_reported_and_retried_once_its_file_is_fixed(tmp_path, capsys):
  root = _folder(tmp_path / "photos", {"n01440764/a.png": (40, 30), "n01440764/b.png": b"not a png",
                                       "n01443537/c.png": (30, 40)})
  c = small_config(f"data=folder:{root},limit=0", shard_size=1)
  _, bundle, grid, spec, step, variables = built = job.build(c)
  work = str(tmp_path / "work")
  metrics = job.run(c, work, built=built)
  assert metrics["num_images"] == 2 and metrics["skipped_files"][0].startswith("n01440764/b.png: ")
  out = capsys.readouterr().out
  assert "skipped 1 of 3 images (unreadable; all listed in metrics.json): n01440764/b.png: " in out
  assert "rerun with the same --workdir to retry them" in out
  # Unchanged, a rerun computes nothing; fixed, exactly the shard of that image is recomputed and scores it.
  fresh = lambda: (data.get_dataset(f"folder:{root}"), bundle, grid, spec, step, variables)  # noqa: E731
  written = []
  job.run(c, work, built=fresh(), after_shard=lambda k, p: written.append(k))
  assert written == [] and "skipped 1 of 3 images" in capsys.readouterr().out
  Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(root / "n01440764" / "b.png")
  metrics = job.run(c, work, built=fresh(), after_shard=lambda k, p: written.append(k))
  assert written == [1] and metrics["num_images"] == 3 and metrics["skipped_files"] == []
  out = capsys.readouterr().out
  assert "shard_000001.npz: the file of skipped image n01440764/b.png changed since it was skipped" in out
  assert "(unreadable; all listed in metrics.json)" not in out  # No skip line in the summary now.
  assert list(R.load(os.path.join(work, R.FINAL_FILE)).ids) == ["n01440764/a.png", "n01440764/b.png",
                                                                "n01443537/c.png"]


def test_tta_reports_skips_retries_fixed_files_and_marks_completion(tmp_path, capsys):
  root = _folder(tmp_path / "photos", {"n01440764/a.png": (40, 30), "n01440764/b.png": b""})
  c = tta_config.get_config(f"runlocal=1,method=baseline,data=folder:{root},limit=0")
  c.shard_size = 1
  metrics = tta_job.run(c, str(tmp_path / "work"))
  assert metrics["complete"] is True and metrics["num_skipped"] == 1
  assert json.loads((tmp_path / "work" / "metrics.json").read_text())["complete"] is True
  assert "skipped 1 of 2 images (unreadable; all listed in metrics.json): n01440764/b.png: " in \
      capsys.readouterr().out
  Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(root / "n01440764" / "b.png")
  again = tta_job.run(c, str(tmp_path / "work"))
  assert again["images_this_run"] == 1 and again["num_images"] == 2 and again["num_skipped"] == 0


def test_a_kill_during_the_report_is_visible_and_the_rerun_redoes_it(tmp_path, monkeypatch, capsys):
  from zoomjax.reports import sweep as report
  c = small_config(report=True)
  work = tmp_path / "work"
  seen = []

  def killed(workdir, rec, metrics, **kw):
    seen.append(json.loads((work / "metrics.json").read_text())["complete"])
    raise KeyboardInterrupt  # What a kill or Ctrl-C in the report stage leaves behind.

  monkeypatch.setattr(report, "write_report", killed)
  with pytest.raises(KeyboardInterrupt):
    job.run(c, str(work))
  assert seen == [False] and json.loads((work / "metrics.json").read_text())["complete"] is False

  def writes(workdir, rec, metrics, **kw):
    (work / "report.html").write_text("<html></html>")
    return str(work / "report.html")

  monkeypatch.setattr(report, "write_report", writes)
  metrics = job.run(c, str(work))
  assert "interrupted before its report was written: redoing the analysis and report" in capsys.readouterr().out
  on_disk = json.loads((work / "metrics.json").read_text())
  assert metrics["complete"] is on_disk["complete"] is True and on_disk["report"] == str(work / "report.html")


def test_images_above_the_pixel_limit_warn_with_the_memory_they_need(tmp_path, capsys):
  root = _folder(tmp_path / "photos", {"n01440764/big.png": (300, 400), "n01440764/small.png": (30, 40)})
  ds = data.get_dataset(f"folder:{root}")
  batches = list(data.make_batches(ds, batch_size=1, canvas_fn=zoom.canvas_size, max_pixels_warning=100_000))
  assert len(batches) == 2  # A warning, not a refusal.
  out = capsys.readouterr().out
  assert out.count("warning: image ") == 1
  assert ("warning: image n01440764/big.png is 400x300 (0.12 Mpx, above max_pixels_warning=100000): its steps "
          "need about 0.0 GB of memory (canvas 512x384, batch of 1)") in out
  # A 12000 x 9000 photo (a sweep step took 7.3 GB): the estimate says so.
  assert abs(data.pipeline.memory_estimate(zoom.canvas_size(9000, 12000), 1) / 1e9 - 7.3) < 0.1
  assert config_lib.get_config("runlocal").max_pixels_warning == data.pipeline.MAX_PIXELS_WARNING


def test_messages_and_warnings_show_once_on_the_console_under_absl(tmp_path):
  """absl's handler writes to stderr: `say` / `warn` print on stdout and log only when absl logs to a file."""
  code = ("import sys\nfrom absl import app, logging\nfrom zoomjax.runtime import console\n"
          "def main(argv):\n  if len(argv) > 1:\n    logging.get_absl_handler().use_absl_log_file('z', argv[1])\n"
          "  console.say('3/3 images'); console.warn('the photo is big')\n"
          "app.run(main)\n")
  proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=conftest.REPO,
                        timeout=120, check=True)
  assert proc.stdout == "3/3 images\nwarning: the photo is big\n" and "images" not in proc.stderr
  assert "photo" not in proc.stderr
  proc = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True,
                        cwd=conftest.REPO, timeout=120, check=True)
  assert proc.stdout == "3/3 images\nwarning: the photo is big\n"
  logged = "".join(p.read_text() for p in tmp_path.glob("z.*INFO*") if not p.is_symlink())
  assert "] 3/3 images" in logged and "] the photo is big" in logged


# ---------------------------------------------------------------- labels.csv

def test_labels_csv_from_excel_with_a_bom_is_read_and_a_bad_wnid_names_file_and_line(tmp_path):
  root = _folder(tmp_path / "c", {"images/0.png": (8, 8), "images/1.png": (8, 8)})
  (root / "labels.csv").write_bytes("file,label,wnid\r\n0.png,0,n01440764\r\n1.png,1,n01443537\r\n"
                                    .encode("utf-8-sig"))
  ds = data.get_dataset(f"folder:{root}")
  assert ds.ids == ["0.png", "1.png"] and ds.labels[:, 0].tolist() == [0, 1]
  (root / "labels.csv").write_text("file,label,wnid\n0.png,0,n01440764\n1.png,1,n0144353\n")
  with pytest.raises(errors.UserError, match=rf"{root}/labels.csv:3: column wnid: 'n0144353' is not one of the "
                                             "1000 ImageNet-1k WNIDs"):
    data.get_dataset(f"folder:{root}")
  (root / "labels.csv").write_bytes("file,label\n0.png,0\n1.png,1 caf\xe9\n".encode("latin-1"))
  with pytest.raises(errors.UserError, match=rf"{root}/labels.csv: not UTF-8 text"):
    data.get_dataset(f"folder:{root}")


# ---------------------------------------------------------------- checkpoints, disk full

def test_a_tensor_bomb_checkpoint_is_refused_by_name_before_the_workdir_is_claimed(tmp_path):
  bomb = tmp_path / "bomb.pth"
  write_torch_zip(bomb, collections.OrderedDict(
      [("stem.weight", FakeTensor(FakeStorage("0", np.ones(1, np.float32)), 0, (10**6, 10**6), (0, 0)))]))
  c = small_config(f"checkpoint={bomb}")
  c.model.random_init = False
  with pytest.raises(CheckpointError, match=rf"{bomb}: key 'stem.weight': tensor of shape \(1000000, 1000000\) "
                                            r".*refused before allocating it") as err:
    job.run(c, str(tmp_path / "work"))
  assert errors.user_message(err.value).startswith(f"{bomb}: key 'stem.weight'")
  assert not (tmp_path / "work").exists()


def test_disk_full_names_the_file_and_loses_nothing_already_written(tmp_path, monkeypatch):
  ds = FakeDataset([f"img{i}.jpg" for i in range(4)], range(4))
  real_replace = os.replace
  full = {"on": True}

  def replace(src, dst):
    if full["on"] and (str(dst).endswith("shard_000001.npz") or str(dst).endswith("metrics.json")):
      raise OSError(errno.ENOSPC, "No space left on device")
    return real_replace(src, dst)

  atomic.write_json(str(tmp_path / "metrics.json"), {"before": 1})
  monkeypatch.setattr(atomic.os, "replace", replace)
  with pytest.raises(OSError) as err:
    ds.run(tmp_path)
  target = shards.shard_path(str(tmp_path), 1)
  assert err.value.errno == errno.ENOSPC and err.value.filename == target and target in str(err.value)
  assert errors.user_message(err.value) == (f"disk full while writing {target} (No space left on device): free "
                                            "space or use another --workdir")
  with pytest.raises(OSError, match="metrics.json"):
    atomic.write_json(str(tmp_path / "metrics.json"), {"after": 2})
  assert json.loads((tmp_path / "metrics.json").read_text()) == {"before": 1}  # The old file is intact.
  leftovers = [f for d in (tmp_path, tmp_path / shards.SHARD_DIR) for f in os.listdir(d) if f.endswith(".tmp")]
  assert leftovers == []
  before = os.stat(shards.shard_path(str(tmp_path), 0)).st_mtime_ns
  full["on"] = False
  again = FakeDataset(ds.ids, range(4))
  assert again.run(tmp_path) == [1] and again.computed == [2, 3]  # Space freed: only the lost shard is redone.
  assert os.stat(shards.shard_path(str(tmp_path), 0)).st_mtime_ns == before
  assert len(R.merge_shards(str(tmp_path), 2, num_images=4)) == 4


# ---------------------------------------------------------------- the command line

def test_user_errors_end_in_one_line_and_bugs_keep_their_traceback(capsys):
  for e, line in ((errors.UserError("config.limit=-1: use 0 for all\n  images"),
                   "zoomjax: error: config.limit=-1: use 0 for all images"),
                  (PermissionError(errno.EACCES, "Permission denied", "/w/metrics.json"),
                   "zoomjax: error: permission denied: /w/metrics.json: fix its permissions or use another --workdir"),
                  (OSError(errno.EDQUOT, "Disk quota exceeded", "/w/x"),
                   "zoomjax: error: disk full while writing /w/x (Disk quota exceeded): free space or use another "
                   "--workdir")):
    with pytest.raises(SystemExit) as exit_:
      cli.exit_on_user_error(e, verbose=False)
    assert exit_.value.code == 2 and capsys.readouterr().err == line + "\n"
  with pytest.raises(SystemExit):
    try:
      raise errors.NotFoundError("no images found under /x")
    except errors.UserError as e:
      cli.exit_on_user_error(e, verbose=True)
  err = capsys.readouterr().err
  assert err.startswith("Traceback (most recent call last):") and err.endswith(
      "zoomjax: error: no images found under /x\n")
  for bug in (ValueError("a bug"), KeyError("a bug"), RuntimeError("a bug"), OSError(errno.EIO, "I/O error")):
    cli.exit_on_user_error(bug, verbose=False)  # Returns: the caller re-raises it.
  assert capsys.readouterr().err == ""


def _cli(*args, **kw) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, "-m", "zoomjax.main", *args], capture_output=True, text=True,
                        cwd=conftest.REPO, timeout=300, check=False, **kw)


def test_cli_config_errors_are_one_line_without_traceback_unless_verbose(tmp_path):
  proc = _cli("--config", "configs/zoom_sweep.py:modle=x", "--workdir", str(tmp_path))
  assert proc.returncode == 2 and "Traceback" not in proc.stderr
  assert proc.stderr == ("zoomjax: error: --config: unknown config arg 'modle'; known: checkpoint, data, grid, limit, "
                         "model, paper, runlocal\n")
  proc = _cli("--config", "configs/zoom_sweep.py:grid=0/224", "--workdir", str(tmp_path), "--verbose")
  assert proc.returncode == 2 and proc.stderr.startswith("Traceback (most recent call last):")
  assert proc.stderr.endswith("zoomjax: error: --config: grid='0/224': every scale must be a positive short side in "
                              "pixels (got [0, 224])\n")
  proc = _cli("--config", "configs/zoom_sweep.py")
  assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "--workdir must have a value" in proc.stderr
  assert os.listdir(tmp_path) == []


def test_cli_second_process_is_refused_then_kill_9_mid_shard_resumes_to_the_same_records(tmp_path):
  """A real sweep (A) is frozen right after its first shard file appears; a second command on the same workdir
  (B) is refused in one line naming A; then A is killed with SIGKILL (in its second shard, whose canvas bucket is
  new) and an in-process rerun completes the workdir: its records equal an uninterrupted run's."""
  root = _folder(tmp_path / "photos", {"n01440764/a.png": (40, 30), "n01440764/b.png": (300, 260),
                                       "n01443537/c.png": (30, 40)})
  arg = f"runlocal,grid=224,data=folder:{root},limit=0"
  work = tmp_path / "work"
  cmd = ["--config", f"configs/zoom_sweep.py:{arg}", "--workdir", str(work), "--config.report=False",
         "--config.tensorboard=False", "--config.extra_crops=False", "--config.shard_size=1",
         f"--config.compilation_cache_dir={jax.config.jax_compilation_cache_dir}"]
  # The module runs with fast_compile: the subprocess compiles the same executables.
  env = dict(os.environ, JAX_DISABLE_MOST_OPTIMIZATIONS="1")
  log = open(tmp_path / "a.log", "w")
  a = subprocess.Popen([sys.executable, "-m", "zoomjax.main", *cmd], cwd=conftest.REPO, env=env, stdout=log,
                       stderr=subprocess.STDOUT)
  try:
    first = pathlib.Path(shards.shard_path(str(work), 0))
    deadline = time.monotonic() + 240
    while not first.exists():
      assert a.poll() is None, (tmp_path / "a.log").read_text()[-3000:]
      assert time.monotonic() < deadline, "no shard after 240 s"
      time.sleep(0.02)
    a.send_signal(signal.SIGSTOP)
    b = _cli(*cmd, env=env)
    assert b.returncode == 2 and "Traceback" not in b.stderr, b.stderr[-3000:]
    assert b.stderr.splitlines()[-1] == (f"zoomjax: error: {work} is in use by another zoomjax process (pid {a.pid}, "
                                         "process index 0); wait for it to finish or use another --workdir")
  finally:
    a.kill()  # SIGKILL, also for a stopped process.
    a.wait()
    log.close()
  assert a.returncode == -signal.SIGKILL
  c = small_config(arg, shard_size=1)
  built = job.build(c)
  written = []
  assert job.run(c, str(work), built=built, after_shard=lambda k, p: written.append(k))["num_images"] == 3
  assert 0 not in written  # Shard 0 survived the kill; what A had not written was computed now.
  ref = tmp_path / "ref"
  job.run(c, str(ref), built=built)
  got, want = R.load(str(work / R.FINAL_FILE)), R.load(str(ref / R.FINAL_FILE))
  for f in R.PER_IMAGE + R.NAMES:
    np.testing.assert_array_equal(getattr(got, f), getattr(want, f), err_msg=f)


def test_a_new_empty_config_block_does_not_block_resuming(tmp_path):
  """A workdir written before `model.overrides` existed resumes; a non-empty override is still a difference."""
  from zoomjax.errors import UserError  # pylint: disable=import-outside-toplevel
  old = {"model": {"name": "resnet50", "checkpoint": None}}
  shards.check_or_write_config(str(tmp_path), old, ("model",))
  shards.check_or_write_config(str(tmp_path), {"model": {**old["model"], "overrides": {}}}, ("model",))
  with pytest.raises(UserError, match=r"model.overrides.width: None there, 8 now"):
    shards.check_or_write_config(str(tmp_path), {"model": {**old["model"], "overrides": {"width": 8}}}, ("model",))
