"""TFDS-backed datasets with no network: our builder on small synthetic files, official builders through
`tfds.testing.mock_data`, and the official imagenet2012 builder on a tiny hand-made val tar."""
import io
import json
import os
import subprocess
import sys
import tarfile
import zipfile

import numpy as np
import pytest
from PIL import Image

import zoomjax.data as zd
from zoomjax.data import classes, subsets


def _jpeg(value: int, h: int = 12, w: int = 10) -> bytes:
  buf = io.BytesIO()
  Image.fromarray(np.full((h, w, 3), value, np.uint8)).save(buf, "JPEG")
  return buf.getvalue()


def _tar(path, members, mode="w"):
  with tarfile.open(path, mode) as tf:
    for name, data in members.items():
      info = tarfile.TarInfo(name)
      info.size = len(data)
      tf.addfile(info, io.BytesIO(data))


def test_imagenet_a_from_its_tar_then_from_data_dir(tmp_path):
  w = classes.wnids()
  a0, a1 = (w[i] for i in subsets.IMAGENET_A_200[:2])
  _tar(tmp_path / "imagenet-a.tar", {f"imagenet-a/{a1}/x.jpg": _jpeg(1), f"imagenet-a/{a0}/y.jpg": _jpeg(2, 7, 5),
                                     f"imagenet-a/{a0}/broken.jpg": _jpeg(3)[:40], "imagenet-a/README.txt": b"r"})
  ds = zd.get_dataset("imagenet_a", manual_dir=tmp_path, data_dir=tmp_path / "tfds")
  assert ds.label_space is zd.get_label_space("imagenet_a_200")
  assert ds.ids == [f"imagenet-a/{a0}/broken.jpg", f"imagenet-a/{a0}/y.jpg", f"imagenet-a/{a1}/x.jpg"]
  assert ds.labels[:, 0].tolist() == list(subsets.IMAGENET_A_200[:1]) * 2 + [subsets.IMAGENET_A_200[1]]
  assert ds.read(1)["image"].shape == (7, 5, 3)
  with pytest.raises(zd.DecodeError, match="broken.jpg"):
    ds.read(0)
  batches = list(zd.make_batches(ds, batch_size=2, canvas_fn=lambda h, w: (16, 16)))
  assert sum(int(b["mask"].sum()) for b in batches) == 2 and [s["id"] for s in ds.skipped] == [ds.ids[0]]
  again = zd.get_dataset("imagenet_a", data_dir=tmp_path / "tfds")  # The build is reused, no manual_dir needed.
  assert again.ids == ds.ids and again.size(2) == (12, 10)


def test_v2_sketch_objectnet_layouts(tmp_path):
  w = classes.wnids()
  _tar(tmp_path / "imagenetv2-top-images.tar.gz",
       {"imagenetv2-top-images-format-val/7/a.jpeg": _jpeg(5), "imagenetv2-top-images-format-val/999/b.jpeg": _jpeg(6)},
       mode="w:gz")
  v2 = zd.get_dataset("imagenet_v2", variant="top-images", manual_dir=tmp_path, data_dir=tmp_path / "tfds")
  assert v2.name == "imagenet_v2/top-images" and v2.labels[:, 0].tolist() == [7, 999]
  with zipfile.ZipFile(tmp_path / "ImageNet-Sketch.zip", "w") as zf:
    zf.writestr(f"sketch/{w[3]}/s.JPEG", _jpeg(7))
  sk = zd.get_dataset("imagenet_sketch", manual_dir=tmp_path, data_dir=tmp_path / "tfds")
  assert sk.labels.tolist() == [[3]] and sk.read(0)["image"].shape == (12, 10, 3)
  on = tmp_path / "on" / "objectnet"
  for idx in subsets.OBJECTNET_113[:2]:
    (on / w[idx]).mkdir(parents=True)
    (on / w[idx] / "p.png").write_bytes(_jpeg(idx % 255))
  obj = zd.get_dataset("objectnet", manual_dir=tmp_path / "on", data_dir=tmp_path / "tfds")
  assert obj.label_space.num_scored_classes == 113 and obj.labels[:, 0].tolist() == list(subsets.OBJECTNET_113[:2])
  (on / w[0]).mkdir()  # tench is not one of the 113 ObjectNet classes.
  (on / w[0] / "q.png").write_bytes(_jpeg(1))
  with pytest.raises(ValueError, match="outside the objectnet"):
    zd.get_dataset("objectnet", manual_dir=tmp_path / "on", data_dir=tmp_path / "tfds2")
  with pytest.raises(FileNotFoundError, match="imagenet-r.tar"):
    zd.get_dataset("imagenet_r", manual_dir=tmp_path / "on", data_dir=tmp_path / "tfds")


_HARD_BUILD = r"""
import sys, io, numpy as np, pyarrow as pa, pyarrow.parquet as pq
from PIL import Image
import zoomjax.data as zd
root = sys.argv[1]
def jpg(v):
  b = io.BytesIO(); Image.fromarray(np.full((6, 9, 3), v, np.uint8)).save(b, "JPEG"); return b.getvalue()
img = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
table = pa.table({"image": pa.array([{"bytes": jpg(1), "path": None}, {"bytes": jpg(2), "path": None}], img),
                  "label": pa.array([[3, 4, 4], [999]], pa.list_(pa.int64())),
                  "origin": ["imagenet_sketch", "objectnet"],
                  "english_label": pa.array([["a"], ["b"]], pa.list_(pa.string()))})
import os; os.makedirs(root + "/hard/data", exist_ok=True)
pq.write_table(table, root + "/hard/data/validation-00000-of-00001.parquet")
ds = zd.get_dataset("imagenet_hard", manual_dir=root + "/hard", data_dir=root + "/tfds")
print(ds.labels.tolist(), ds.read(1)["image"].shape, ds.info.get("warning", ""))
print("TF imported:", "tensorflow" in sys.modules)
"""


def test_imagenet_hard_parquet_builds_and_reads_without_tensorflow(tmp_path):
  out = subprocess.run([sys.executable, "-c", _HARD_BUILD, str(tmp_path)], capture_output=True, text=True,
                       timeout=120, cwd=os.path.dirname(os.path.dirname(__file__)))
  assert out.returncode == 0, out.stderr[-3000:]
  lines = out.stdout.strip().splitlines()
  assert lines[-2].startswith("[[3, 4, -1, -1, -1, -1, -1, -1, -1, -1], [999, -1,") and "(6, 9, 3)" in lines[-2]
  assert "10,980" in lines[-2] and lines[-1] == "TF imported: False"


@pytest.mark.parametrize("name,kwargs,n", [("imagenet2012", {}, 5), ("imagenet_sketch", {}, 3),
                                           ("imagenet_v2", {"variant": "threshold-0.7"}, 4)])
def test_official_builders_through_mock_data(tmp_path, name, kwargs, n):
  import tensorflow_datasets as tfds
  with tfds.testing.mock_data(num_examples=n, policy=tfds.testing.MockPolicy.USE_CODE):
    ds = zd.get_dataset(name, data_dir=tmp_path, **kwargs)
    assert len(ds) == n and ds.labels.shape == (n, 1) and 0 <= ds.labels.min() and ds.labels.max() < 1000
    assert len(set(ds.ids)) == n
    batches = list(zd.make_batches(ds, batch_size=2, canvas_fn=lambda h, w: (64, 64), num_workers=1))
    assert sum(int(b["mask"].sum()) for b in batches) == n


def test_imagenet2012_from_val_tar_and_real_json(tmp_path):
  import tensorflow  # noqa: F401  The `tfds` extra (make test installs it): the official builder uses tf.io.gfile.
  names = {k: f"ILSVRC2012_val_{k:08d}.JPEG" for k in (1, 2, 3)}
  _tar(tmp_path / "ILSVRC2012_img_val.tar", {names[k]: _jpeg(k * 40, 10 + k, 9) for k in names})
  with pytest.raises(FileNotFoundError, match="ILSVRC2012_img_val.tar"):
    zd.get_dataset("imagenet2012", manual_dir=tmp_path / "elsewhere", data_dir=tmp_path / "tfds")
  ds = zd.get_dataset("imagenet2012", manual_dir=tmp_path, data_dir=tmp_path / "tfds")
  val = classes.validation_wnids()
  assert ds.ids == [names[k] for k in (1, 2, 3)]
  assert ds.labels[:, 0].tolist() == [classes.index_of(val[k - 1]) for k in (1, 2, 3)]
  assert ds.read(2)["image"].shape == (13, 9, 3)
  real = [[] for _ in range(50000)]
  real[0], real[2] = [65, 7], [1]
  (tmp_path / "real.json").write_text(json.dumps(real))
  kw = dict(real_json=tmp_path / "real.json", data_dir=tmp_path / "tfds")
  r = zd.get_dataset("imagenet2012_real", **kw)
  assert r.ids == [names[1], names[3]] and r.info["dropped_empty"] == 1
  assert [[x for x in row if x >= 0] for row in r.labels.tolist()] == [[7, 65], [1]]
  u = zd.get_dataset("imagenet2012_real", variant="union", **kw)
  orig = ds.labels[:, 0].tolist()
  assert len(u) == 3 and [[x for x in row if x >= 0] for row in u.labels.tolist()] == [
      list(dict.fromkeys([orig[0], 7, 65])), [orig[1]], list(dict.fromkeys([orig[2], 1]))]
  assert u.label_space.name == "imagenet_real_union" and r.label_space.name == "real"


def test_official_builds_with_known_records(tmp_path):
  """Prepared official imagenet2012_real / imagenet_a builds (records stand in via mock_data's hook)."""
  import tensorflow_datasets as tfds
  real = [("ILSVRC2012_val_00000003.JPEG", 5, [9, 5]), ("ILSVRC2012_val_00000001.JPEG", 7, []),
          ("ILSVRC2012_val_00000002.JPEG", 8, [8])]
  recs = [{"image": _jpeg(k), "file_name": np.array(f.encode(), object), "original_label": np.int64(o),
           "real_label": np.array(r, np.int64)} for k, (f, o, r) in enumerate(real)]
  hook = lambda builder, split, decoders=None, **kw: recs
  with tfds.testing.mock_data(policy=tfds.testing.MockPolicy.USE_CODE, as_data_source_fn=hook):
    r = zd.get_dataset("imagenet2012_real", data_dir=tmp_path)
    u = zd.get_dataset("imagenet2012_real/union", data_dir=tmp_path)
  assert r.ids == ["ILSVRC2012_val_00000002.JPEG", "ILSVRC2012_val_00000003.JPEG"] and r.info["dropped_empty"] == 1
  assert r.labels[:, :2].tolist() == [[8, -1], [5, 9]] and r.read(1)["image"][0, 0, 0] < 10
  assert len(u) == 3 and u.labels[:, :3].tolist() == [[7, -1, -1], [8, -1, -1], [5, 9, -1]]
  a_label = subsets.IMAGENET_A_200[5]
  recs_a = [{"image": _jpeg(1), "file_name": np.array(b"b.jpg", object), "label": np.int64(a_label)},
            {"image": _jpeg(2), "file_name": np.array(b"a.jpg", object), "label": np.int64(0)}]
  hook = lambda builder, split, decoders=None, **kw: recs_a
  with tfds.testing.mock_data(policy=tfds.testing.MockPolicy.USE_CODE, as_data_source_fn=hook):
    with pytest.raises(ValueError, match="a.jpg.*outside the imagenet_a_200"):
      zd.get_dataset("imagenet_a", data_dir=tmp_path)  # Label 0 (tench) is not an ImageNet-A class.
    recs_a[1]["label"] = np.int64(a_label)
    a = zd.get_dataset("imagenet_a", data_dir=tmp_path, split="test[1:]")
  assert a.ids == ["b.jpg"] and a.labels.tolist() == [[a_label]]


def test_index_sidecar_is_not_reused_for_a_rebuild_of_the_same_size(tmp_path):
  """The sidecar is stamped with the build's files: a relabelled rebuild with as many records gets a fresh scan."""
  from zoomjax.data import builders
  (tmp_path / "data.array_record-00000-of-00001").write_bytes(b"a" * 10)
  index = {"ids": ["x", "y"], "labels": [[1], [2]], "hw": [[3, 4], [5, 6]], "origin": ["", ""]}
  assert builders.write_index(tmp_path, "test", index)
  got = builders.read_index(tmp_path, "test")
  assert got["ids"] == ["x", "y"] and got["labels"] == [[1], [2]] and got["hw"].shape == (2, 2)
  os.utime(tmp_path / "data.array_record-00000-of-00001", ns=(1, 1))  # Same size, rewritten.
  assert builders.read_index(tmp_path, "test") is None


def test_prepare_cli_ends_a_user_error_in_one_line(tmp_path):
  out = subprocess.run([sys.executable, "-m", "zoomjax.data.prepare", "--dataset", "imagenet_a",
                        f"--manual_dir={tmp_path / 'absent'}", f"--data_dir={tmp_path / 'tfds'}"],
                       capture_output=True, text=True, timeout=120, cwd=os.path.dirname(os.path.dirname(__file__)))
  assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr[-2000:]
  assert "zoomjax: error: dataset 'imagenet_a' not found. Pass manual_dir=DIR holding imagenet-a.tar" in out.stderr


def test_imagenet_c_from_a_prepared_tfds_build(tmp_path):
  """data=imagenet_c/NAME/SEVERITY reads TFDS's imagenet2012_corrupted/<NAME>_<SEVERITY> (records stand in)."""
  import tensorflow_datasets as tfds
  recs = [{"image": _jpeg(k), "file_name": np.array(f"ILSVRC2012_val_0000000{k}.JPEG".encode(), object),
           "label": np.int64(label)} for k, label in ((2, 7), (1, 999))]
  asked = []

  def hook(builder, split, decoders=None, **kw):
    asked.append((builder.name, builder.builder_config.name, split))
    return recs

  with tfds.testing.mock_data(policy=tfds.testing.MockPolicy.USE_CODE, as_data_source_fn=hook):
    ds = zd.get_dataset("imagenet_c/fog/3", data_dir=tmp_path)
  assert asked == [("imagenet2012_corrupted", "fog_3", "validation")]
  assert ds.name == "imagenet_c/fog/3" and len(ds) == 2
  assert sorted(zip(ds.ids, ds.labels[:, 0].tolist())) == [("ILSVRC2012_val_00000001.JPEG", 999),
                                                           ("ILSVRC2012_val_00000002.JPEG", 7)]
  assert ds.read(0)["image"].dtype == np.uint8


def test_a_missing_build_leaves_no_tfds_scratch_folder(tmp_path, monkeypatch):
  """TFDS makes an empty `tmp*tfds` folder for each builder of an unprepared dataset and leaves it; a dataset
  lookup removes the ones it caused, and nobody else's."""
  import tempfile  # pylint: disable=import-outside-toplevel
  import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
  from zoomjax.errors import NotFoundError  # pylint: disable=import-outside-toplevel
  scratch = tmp_path / "tmp"
  scratch.mkdir()
  monkeypatch.setattr(tempfile, "tempdir", str(scratch))
  tfds.builder("imagenet2012_corrupted/fog_3", data_dir=tmp_path / "tfds")
  left = os.listdir(scratch)
  assert len(left) == 1 and left[0].endswith("tfds")  # TFDS's own behaviour, which the lookup tidies after.
  with pytest.raises(NotFoundError, match="imagenet2012_corrupted/fog_3"):
    zd.get_dataset("imagenet_c/fog/3", data_dir=tmp_path / "tfds")
  assert os.listdir(scratch) == left
