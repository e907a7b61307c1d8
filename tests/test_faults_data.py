"""Fault cases of the datasets: stale local builds, ImageNet-Hard counts, partial archives, unsafe folder layouts.

Each test makes its own tiny files; each case once gave a silent wrong result, a hang or a traceback.
"""
import io
import os
import subprocess
import sys
import tarfile

import numpy as np
import pytest
from PIL import Image

import zoomjax.data as zd
from zoomjax.data import classes, files
from zoomjax.errors import UserError


def _jpeg(value: int, h: int = 6, w: int = 9) -> bytes:
  buf = io.BytesIO()
  Image.fromarray(np.full((h, w, 3), value, np.uint8)).save(buf, "JPEG")
  return buf.getvalue()


def _parquet(path, labels, values=None) -> None:
  import pyarrow as pa
  import pyarrow.parquet as pq
  values = values or [10 * (k + 1) for k in range(len(labels))]
  img = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
  table = pa.table({"image": pa.array([{"bytes": _jpeg(v), "path": None} for v in values], img),
                    "label": pa.array(labels, pa.list_(pa.int64())),
                    "origin": ["objectnet"] * len(labels)})
  path.parent.mkdir(parents=True, exist_ok=True)
  pq.write_table(table, path)


def _labels(ds) -> list:
  return [[x for x in row if x >= 0] for row in ds.labels.tolist()]


# (9) A symlink loop in a class-folder dataset: the scan ends and lists each image once.
def test_symlink_loops_end_the_scan_and_list_each_image_once(tmp_path):
  wnid = classes.wnids()[3]
  (tmp_path / wnid).mkdir()
  (tmp_path / wnid / "a.jpg").write_bytes(_jpeg(1))
  os.symlink("..", tmp_path / wnid / "up")  # Two links back up: 2**depth paths without a guard.
  os.symlink(".", tmp_path / wnid / "here")
  scan = subprocess.run([sys.executable, "-c", "import sys; from zoomjax.data import files; "
                         "print(files.list_images(sys.argv[1]))", str(tmp_path)],
                        capture_output=True, text=True, timeout=60)  # A hang fails here instead of hanging the suite.
  assert scan.returncode == 0, scan.stderr[-2000:]
  assert scan.stdout.strip() == repr([f"{wnid}/a.jpg"])
  ds = zd.get_dataset(f"folder:{tmp_path}")
  assert ds.ids == [f"{wnid}/a.jpg"] and _labels(ds) == [[3]]


@pytest.mark.parametrize("name", ["../outside.jpg", "ABS"])
def test_labels_csv_naming_files_outside_the_folder_is_refused(tmp_path, name):
  root = tmp_path / "set"
  root.mkdir()
  (tmp_path / "outside.jpg").write_bytes(_jpeg(2))
  (root / "in.jpg").write_bytes(_jpeg(3))
  name = str(tmp_path / "outside.jpg") if name == "ABS" else name
  (root / "labels.csv").write_text(f"file,label\nin.jpg,1\n{name},2\n")
  with pytest.raises(UserError, match=r"labels.csv:3: .*outside.jpg.* outside .*set"):
    zd.get_dataset(f"folder:{root}")


def test_a_parquet_that_is_not_parquet_is_one_clear_error(tmp_path):
  (tmp_path / "hard").mkdir()
  (tmp_path / "hard" / "validation.parquet").write_bytes(b"this is not parquet at all")
  with pytest.raises(UserError, match=r"validation.parquet: not a readable parquet file"):
    list(files.hard_rows(tmp_path / "hard"))
  with pytest.raises(UserError, match=r"validation.parquet: not a readable parquet file"):
    zd.get_dataset("imagenet_hard", manual_dir=tmp_path / "hard", data_dir=tmp_path / "tfds")
  assert not (tmp_path / "tfds").exists()  # Refused before a build was started.


# (4) ImageNet-Hard counts: a second copy of a parquet file; rows with no label.
def test_a_second_copy_of_a_parquet_file_is_refused_naming_both(tmp_path):
  hard = tmp_path / "hard"
  _parquet(hard / "data" / "validation-00000-of-00001.parquet", [[1], [2]])
  (hard / "backup").mkdir()
  (hard / "backup" / "copy.parquet").write_bytes((hard / "data" / "validation-00000-of-00001.parquet").read_bytes())
  with pytest.raises(UserError, match=r"backup/copy.parquet.*data/validation-00000-of-00001.parquet|"
                                      r"data/validation-00000-of-00001.parquet.*backup/copy.parquet"):
    files.parquet_files(hard)


def test_same_name_parquet_files_in_two_folders_are_refused(tmp_path):
  hard = tmp_path / "hard"
  _parquet(hard / "a" / "validation.parquet", [[1]])
  _parquet(hard / "b" / "validation.parquet", [[2]], values=[50])
  with pytest.raises(UserError, match=r"a/validation.parquet.*b/validation.parquet"):
    files.parquet_files(hard)


def test_hard_rows_without_labels_are_skipped_with_a_counted_warning(tmp_path, capsys):
  _parquet(tmp_path / "hard" / "v.parquet", [[1], [], [-1, -1], [7, -1]])
  rows = list(files.hard_rows(tmp_path / "hard"))
  assert [(r[0], r[2]) for r in rows] == [("v.parquet:000000", [1]), ("v.parquet:000003", [7])]
  out = capsys.readouterr().out
  assert "warning:" in out and "v.parquet" in out and "2 rows" in out and "no label" in out


# (3) + (4) through the dataset: the 10,980 note is printed; a changed parquet rebuilds our TFDS build.
def test_imagenet_hard_build_follows_its_parquet_and_prints_its_count(tmp_path, capsys):
  pq_path = tmp_path / "hard" / "data" / "validation-00000-of-00001.parquet"
  _parquet(pq_path, [[1], [2]])
  kw = dict(manual_dir=tmp_path / "hard", data_dir=tmp_path / "tfds")
  ds = zd.get_dataset("imagenet_hard", **kw)
  assert _labels(ds) == [[1], [2]]
  out = capsys.readouterr().out
  assert "warning:" in out and "2 examples" in out and "10,980" in out
  again = zd.get_dataset("imagenet_hard", **kw)  # Unchanged: reused, no rebuild.
  assert _labels(again) == [[1], [2]] and "rebuilding" not in capsys.readouterr().out
  _parquet(pq_path, [[5], [6], [7]])  # Relabelled and grown after the build.
  fresh = zd.get_dataset("imagenet_hard", **kw)
  assert _labels(fresh) == [[5], [6], [7]]
  out = capsys.readouterr().out
  assert "warning:" in out and "validation-00000-of-00001.parquet" in out and "rebuilding" in out
  st = pq_path.stat()
  _parquet(pq_path, [[8], [9], [4]])  # Same size, mtime restored (as `cp -p` does).
  os.utime(pq_path, ns=(st.st_atime_ns, st.st_mtime_ns))
  assert pq_path.stat().st_size == st.st_size
  assert _labels(zd.get_dataset("imagenet_hard", **kw)) == [[8], [9], [4]]
  # Without manual_dir the build remembers where its source is and still checks it.
  _parquet(pq_path, [[11], [12]])
  assert _labels(zd.get_dataset("imagenet_hard", data_dir=tmp_path / "tfds")) == [[11], [12]]


def test_a_changed_local_archive_rebuilds_its_dataset(tmp_path, capsys):
  wnid = classes.wnids()[0]
  other = classes.wnids()[5]
  tar = tmp_path / "ImageNet-Sketch.zip"
  import zipfile
  with zipfile.ZipFile(tar, "w") as zf:
    zf.writestr(f"sketch/{wnid}/s.JPEG", _jpeg(7))
  kw = dict(manual_dir=tmp_path, data_dir=tmp_path / "tfds")
  assert _labels(zd.get_dataset("imagenet_sketch", **kw)) == [[0]]
  with zipfile.ZipFile(tar, "w") as zf:
    zf.writestr(f"sketch/{other}/s.JPEG", _jpeg(7))
    zf.writestr(f"sketch/{other}/t.JPEG", _jpeg(8))
  capsys.readouterr()
  assert _labels(zd.get_dataset("imagenet_sketch", **kw)) == [[5], [5]]
  assert "ImageNet-Sketch.zip" in capsys.readouterr().out


# (8) A partial ImageNet validation archive: refused before TFDS assigns labels by position.
def _tar(path, names):
  with tarfile.open(path, "w") as tf:
    for name in names:
      data = _jpeg(3)
      info = tarfile.TarInfo(name)
      info.size = len(data)
      tf.addfile(info, io.BytesIO(data))


def test_a_partial_imagenet_val_archive_is_refused_naming_what_is_missing(tmp_path):
  _tar(tmp_path / "ILSVRC2012_img_val.tar", [f"ILSVRC2012_val_{k:08d}.JPEG" for k in (2, 3, 5)])
  with pytest.raises(UserError, match=r"ILSVRC2012_img_val.tar: .*49,997 of the 50,000 .*ILSVRC2012_val_00000001"):
    zd.get_dataset("imagenet2012", manual_dir=tmp_path, data_dir=tmp_path / "tfds")
  assert not (tmp_path / "tfds").exists()


def test_an_imagenet_val_archive_with_foreign_files_is_refused(tmp_path):
  _tar(tmp_path / "ILSVRC2012_img_val.tar", ["ILSVRC2012_val_00000001.JPEG", "holiday.jpg"])
  with pytest.raises(UserError, match=r"ILSVRC2012_img_val.tar: .*holiday.jpg"):
    zd.get_dataset("imagenet2012", manual_dir=tmp_path, data_dir=tmp_path / "tfds")
