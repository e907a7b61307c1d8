"""Faults a demanding user meets: changed datasets, corrupt shards, concurrent writers and processes, NaN weights,
bad config values, failed starts. Nothing computed is lost, nothing wrong is merged, every error names its cause.
"""
import json
import os
import stat
import threading

import jax
import numpy as np
import pytest

from configs import zoom_sweep as config_lib
from zoomjax import atomic
from zoomjax import records as R
from zoomjax import shards
from zoomjax.jobs import zoom_sweep as job

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
                                                               if f == "top5" else 0) for f, v in rows.items()}

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
  np.testing.assert_array_equal(rec.top5[:, 0, 0], [7, 1, 2, 3, 9, 5, 6])


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
    ("", {"shard_size": 0}, "shard_size must be positive, got 0"),
    ("", {"limit": -1}, "config.limit=-1"),
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
  with pytest.raises(ValueError, match="is a file, not a directory"):
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
