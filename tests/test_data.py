"""zoomjax.data without TFDS builds: label spaces, class tables, decoding, folders, demo photos, the pipeline."""
import csv
import io
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import zoomjax.data as zd
from zoomjax import errors
from zoomjax.data import classes, decode, label_space as ls, subsets


# ---------------------------------------------------------------- label spaces and class tables

def test_class_tables_come_from_tfds_files():
  w = classes.wnids()
  assert len(w) == 1000 and w[0] == "n01440764" and list(w) == sorted(w)
  names = classes.class_names()
  assert len(names) == 1000 and names[0] == "tench"
  assert [names[i] for i in (285, 281, 282, 967, 968, 504, 657, 744, 812, 652)] == [
      "Egyptian cat", "tabby", "tiger cat", "espresso", "cup", "coffee mug", "missile", "projectile",
      "space shuttle", "military uniform"]
  assert classes.class_names(full=True)[0] == "tench, Tinca tinca"
  assert len(classes.validation_wnids()) == 50000 and classes.index_of("n01751748") == 65
  with pytest.raises(KeyError, match="n99999999"):
    classes.index_of("n99999999")


def test_declared_label_spaces():
  assert zd.get_label_space("imagenet_1k").logit_mask().all()
  for space, n in ((ls.IMAGENET_A_200, 200), (ls.IMAGENET_R_200, 200), (ls.OBJECTNET_113, 113)):
    sub = space.class_subset
    assert len(set(sub)) == n == space.num_scored_classes and list(sub) == sorted(sub)
    assert 0 <= min(sub) and max(sub) < 1000 and space.logit_mask().sum() == n
  # docs/study.md §1.4: ObjectNet's classes run from n02708093 (409 analog clock) to n15075141 (999 toilet tissue).
  assert classes.wnids()[subsets.OBJECTNET_113[0]] == "n02708093"
  assert classes.wnids()[subsets.OBJECTNET_113[-1]] == "n15075141"
  assert ls.REAL.multi_label and ls.IMAGENET_HARD.max_labels == 10
  with pytest.raises(KeyError, match="declared"):
    zd.get_label_space("nope")


def test_predict_and_is_correct_use_one_declaration():
  logits = np.zeros((2, 1000), np.float32)
  logits[:, 0] = 10.0  # Class 0 is outside the ImageNet-A mask, so the masked argmax must skip it.
  logits[:, 6] = 5.0
  pred = np.asarray(zd.predict(logits, ls.IMAGENET_A_200))
  assert pred.tolist() == [6, 6]
  assert np.asarray(zd.predict(logits, ls.IMAGENET_1K)).tolist() == [0, 0]
  labels = np.stack([zd.pad_labels([6], 3), zd.pad_labels([1, 2], 3)])
  assert zd.is_correct(pred, labels).tolist() == [True, False]
  assert zd.is_correct(np.array([2]), zd.pad_labels([1, 2], 3)[None]).tolist() == [True]
  assert zd.is_correct(np.array([-1]), np.full((1, 3), -1, np.int32)).tolist() == [False]
  top2 = np.array([[5, 2], [7, 8], [-1, 3]])  # Any of the top-k among the labels; -1 padding never matches.
  labels = np.array([[2, -1], [1, 9], [-1, -1]])
  assert ls.topk_correct(top2, labels).tolist() == [True, False, False]


# ---------------------------------------------------------------- decoding

def _encode(img: Image.Image, fmt: str, **kw) -> bytes:
  buf = io.BytesIO()
  img.save(buf, fmt, **kw)
  return buf.getvalue()


def test_decode_modes_become_rgb():
  rgb = np.random.default_rng(0).integers(0, 256, (9, 7, 3), dtype=np.uint8)
  gray = Image.fromarray(rgb[..., 0])
  cases = {
      "gray.png": _encode(gray, "PNG"),
      "rgba.png": _encode(Image.fromarray(rgb).convert("RGBA"), "PNG"),
      "palette.png": _encode(Image.fromarray(rgb).convert("P"), "PNG"),
      "cmyk.jpg": _encode(Image.fromarray(rgb).convert("CMYK"), "JPEG"),
      "bw.bmp": _encode(gray.convert("1"), "BMP"),
  }
  for name, data in cases.items():
    out = decode.decode_rgb(data, name)
    assert out.dtype == np.uint8 and out.shape == (9, 7, 3), name
    pil = decode.decode_pil(data, name)  # The evaluator's PIL path: the same pixels, RGB, loaded.
    assert pil.mode == "RGB" and pil.size == (7, 9), name
    np.testing.assert_array_equal(np.asarray(pil), out, err_msg=name)
  np.testing.assert_array_equal(decode.decode_rgb(cases["rgba.png"]), rgb)  # Alpha dropped, as convert('RGB').
  np.testing.assert_array_equal(decode.decode_rgb(cases["gray.png"]), np.repeat(rgb[..., :1], 3, -1))
  # 16-bit grayscale is scaled to 8 bits (PIL's convert('RGB') would clip it to white).
  a16 = np.array([[0, 257 * 100, 65535]], np.uint16)
  out = decode.decode_rgb(_encode(Image.fromarray(a16), "PNG"), "g16.png")
  assert out[0, :, 0].tolist() == [0, 100, 255] and (out[..., 0] == out[..., 2]).all()
  np.testing.assert_array_equal(np.asarray(decode.decode_pil(_encode(Image.fromarray(a16), "PNG"))), out)
  assert decode.image_size(cases["cmyk.jpg"]) == (9, 7)


def test_decode_errors_name_the_file():
  good = _encode(Image.fromarray(np.zeros((64, 64, 3), np.uint8) + 90), "JPEG")
  with pytest.raises(decode.DecodeError, match="cut.jpg") as e:
    decode.decode_rgb(good[: len(good) // 2], "cut.jpg")
  assert "truncated" in e.value.reason.lower() and "0x" not in e.value.reason
  with pytest.raises(decode.DecodeError, match="junk.jpg"):
    decode.decode_rgb(b"not an image", "junk.jpg")
  with pytest.raises(decode.DecodeError, match="junk.jpg"):
    decode.image_size(b"not an image", "junk.jpg")
  with pytest.raises(decode.DecodeError, match="cut.jpg"):
    decode.decode_pil(good[: len(good) // 2], "cut.jpg")
  with pytest.raises(decode.DecodeError, match="<bytes>"):  # Unnamed bytes: never str() of the whole buffer.
    decode.decode_rgb(b"not an image")
  with pytest.raises(decode.DecodeError, match="no-such.png"):
    decode.decode_pil("/nonexistent/no-such.png")


# ---------------------------------------------------------------- folders, csv, demo photos

def _write_folder(root, sizes, wnids, bad=()):
  for k, (h, w) in enumerate(sizes):
    d = root / wnids[k % len(wnids)]
    d.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((h, w, 3), 10 + k, np.uint8)).save(d / f"img{k:02d}.png")
  for name in bad:
    (root / wnids[0] / name).write_bytes(b"\xff\xd8\xff garbage")
  return root


def test_folder_of_wnid_subfolders(tmp_path):
  w = classes.wnids()
  root = _write_folder(tmp_path / "f", [(5, 6), (7, 8), (9, 4)], [w[3], w[1]])
  (root / "README.txt").write_text("ignored")
  ds = zd.get_dataset(f"folder:{root}")
  assert len(ds) == 3 and ds.label_space.name == "imagenet_1k"
  assert ds.ids == sorted(ds.ids) and ds.ids[0].startswith(w[1] + "/")
  ex = ds.read(ds.ids.index(f"{w[3]}/img00.png"))
  assert ex["image"].shape == (5, 6, 3) and ex["labels"].tolist() == [3] and ex["image"][0, 0, 0] == 10
  assert len(ds.class_names) == 1000
  with pytest.raises(ValueError, match="outside the imagenet_a_200"):
    zd.get_dataset(f"folder:{root}", label_space="imagenet_a_200")
  (root / "not_a_wnid").mkdir()
  Image.fromarray(np.zeros((2, 2, 3), np.uint8)).save(root / "not_a_wnid" / "x.png")
  with pytest.raises(ValueError, match="not_a_wnid"):
    zd.get_dataset(f"folder:{root}")


def test_folder_labels_csv_multi_label_and_errors(tmp_path):
  root = tmp_path / "c"
  (root / "images").mkdir(parents=True)
  for k in range(3):
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(root / "images" / f"{k}.png")
  (root / "labels.csv").write_text("file,label\n0.png,5\n1.png,n01440764\n2.png,7;9\n")
  ds = zd.get_dataset(f"folder:{root}")
  assert ds.label_space.multi_label and ds.labels.tolist() == [[5, -1], [0, -1], [7, 9]]
  (root / "labels.csv").write_text("file,label\n0.png,5\nmissing.png,3\n")
  with pytest.raises(FileNotFoundError, match="missing.png"):
    zd.get_dataset(f"folder:{root}")
  with pytest.raises(FileNotFoundError, match="not a directory"):
    zd.get_dataset(f"folder:{tmp_path / 'nowhere'}")
  (tmp_path / "empty").mkdir()
  with pytest.raises(FileNotFoundError, match="no images"):
    zd.get_dataset(f"folder:{tmp_path / 'empty'}")


def test_val100_folder_matches_its_csv(val100_dir):
  ds = zd.get_dataset(f"folder:{val100_dir}")
  with open(val100_dir / "labels.csv") as f:
    rows = list(csv.DictReader(f))
  assert len(ds) == 100 == len(rows)
  assert ds.ids == [r["file"] for r in rows]
  assert ds.labels[:, 0].tolist() == [int(r["label"]) for r in rows]
  assert [classes.wnids()[int(r["label"])] for r in rows] == [r["wnid"] for r in rows]
  # The csv labels agree with TFDS's own val ground truth for these files.
  val = classes.validation_wnids()
  assert all(val[int(r["file"][15:23]) - 1] == r["wnid"] for r in rows)
  ex = ds.read(0)
  assert ex["image"].dtype == np.uint8 and ex["image"].ndim == 3 and ex["id"] == rows[0]["file"]


def test_demo_photos_are_packaged_and_labelled():
  ds = zd.get_dataset("demo_photos")
  assert ds.ids == ["chelsea.png", "coffee.png", "rocket.jpg", "grace_hopper.jpg"]
  assert [[x for x in row if x >= 0] for row in ds.labels.tolist()] == [
      [285, 281, 282], [967, 968], [657, 744, 812], [652]]
  for i in range(len(ds)):
    assert ds.read(i)["image"].shape[2] == 3


def test_split_slices_after_sorting_by_id(val100_dir):
  full = zd.get_dataset(f"folder:{val100_dir}")
  part = zd.get_dataset(f"folder:{val100_dir}", split="[10:13]")
  assert part.ids == full.ids[10:13] and part.labels.tolist() == full.labels[10:13].tolist()
  np.testing.assert_array_equal(part.read(2)["image"], full.read(12)["image"])
  with pytest.raises(ValueError, match="selects no examples"):
    zd.get_dataset(f"folder:{val100_dir}", split="[200:]")
  with pytest.raises(ValueError, match="integer bounds"):
    zd.get_dataset(f"folder:{val100_dir}", split="[10%:]")


def test_unknown_dataset_and_missing_files(tmp_path):
  with pytest.raises(KeyError, match="known:"):
    zd.get_dataset("imagenet_zz")
  with pytest.raises(ValueError, match="variant"):
    zd.get_dataset("imagenet_v2", variant="bogus", data_dir=tmp_path)


# ---------------------------------------------------------------- the pipeline

def _canvas(h, w):
  return (-(-h // 8) * 8, -(-w // 8) * 8)


@pytest.fixture(scope="module")
def varied(tmp_path_factory):
  rng = np.random.default_rng(1)
  sizes = [tuple(int(v) for v in rng.integers(3, 20, 2)) for _ in range(23)]
  root = _write_folder(tmp_path_factory.mktemp("v") / "d", sizes, list(classes.wnids()[:4]), bad=("zz_bad.jpg",))
  return root


def _collect(ds, **kw):
  return list(zd.make_batches(ds, canvas_fn=_canvas, **kw))


def test_batches_place_images_on_canvas_and_skip_bad_files(varied):
  ds = zd.get_dataset(f"folder:{varied}")
  batches = _collect(ds, batch_size=4, num_workers=2)
  seen = []
  for b in batches:
    assert b["image"].dtype == np.uint8 and b["image"].shape[0] == 4 and b["labels"].shape == (4, 1)
    for k in range(4):
      if not b["mask"][k]:
        assert b["index"][k] == -1 and (b["image"][k] == 0).all() and b["labels"][k, 0] == -1
        continue
      i = int(b["index"][k])
      seen.append(i)
      h, w = b["hw"][k]
      assert _canvas(h, w) == b["image"].shape[1:3]
      np.testing.assert_array_equal(b["image"][k, :h, :w], ds.read(i)["image"])
      assert (b["image"][k, h:] == 0).all() and (b["image"][k, :, w:] == 0).all()
      assert b["labels"][k, 0] == ds.labels[i, 0]
  bad = ds.ids.index(next(x for x in ds.ids if x.endswith("zz_bad.jpg")))
  assert sorted(seen) == [i for i in range(len(ds)) if i != bad]
  assert [s["id"] for s in ds.skipped] == [ds.ids[bad]] and ds.skipped[0]["reason"]
  again = _collect(zd.get_dataset(f"folder:{varied}"), batch_size=4, num_workers=1, prefetch=1)
  assert len(again) == len(batches)
  for a, b in zip(batches, again):
    for key in a:
      np.testing.assert_array_equal(a[key], b[key])
  with pytest.raises(zd.DecodeError, match="zz_bad.jpg"):
    _collect(zd.get_dataset(f"folder:{varied}"), batch_size=4, on_error="raise")


def test_canvas_fn_must_hold_the_image(varied):
  ds = zd.get_dataset(f"folder:{varied}")
  with pytest.raises(ValueError, match="does not hold"):
    list(zd.make_batches(ds, batch_size=4, canvas_fn=lambda h, w: (4, 4)))


def test_device_prefetch_moves_batches(varied):
  import jax
  ds = zd.get_dataset(f"folder:{varied}")
  host = _collect(ds, batch_size=8)
  dev = list(zd.device_prefetch(iter(host), size=2))
  assert len(dev) == len(host) and isinstance(dev[0]["image"], jax.Array)
  np.testing.assert_array_equal(np.asarray(dev[-1]["image"]), host[-1]["image"])


def test_import_does_not_pull_tensorflow():
  code = "import sys, zoomjax.data; assert 'tensorflow' not in sys.modules; print('ok')"
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
  assert out.returncode == 0 and "ok" in out.stdout, out.stderr[-2000:]


def test_prepare_command_reports_unreadable_files(varied):
  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  out = subprocess.run([sys.executable, "-m", "zoomjax.data.prepare", f"--dataset=folder:{varied}"],
                       capture_output=True, text=True, timeout=120, cwd=repo)
  assert out.returncode == 0, out.stderr[-2000:]
  assert "24 examples" in out.stdout and "zz_bad.jpg" in out.stdout and "1 unreadable" in out.stdout


def test_decode_threads_default_to_one_per_usable_core(monkeypatch):
  monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(6)), raising=False)
  assert zd.decode_threads(0) == 6 and zd.decode_threads(3) == 3
  monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(200)), raising=False)
  assert zd.decode_threads(0) == zd.pipeline.MAX_AUTO_DECODE_THREADS
  with pytest.raises(errors.UserError, match="num_workers=-1"):
    zd.decode_threads(-1)
