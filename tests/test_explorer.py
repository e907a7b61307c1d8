"""zoomjax.reports.explorer: the data it writes for a sweep with known answers, and the page in headless Chromium
(skipped without chromium locally, required under CI: `make browser`).

The sweep is written by hand in zoom_sweep's workdir layout (a fake model whose every answer is chosen here) over
synthetic gradient images, so that the crop the page draws on its <canvas> can be checked against zoomjax.zoom's
PIL reference block by block: a wrong anchor, scale or resize rule moves the gradient and fails the test.
"""
import json
import os
import shutil
import subprocess
import tempfile
import urllib.parse

import numpy as np
import pytest
from PIL import Image

from conftest import require
from zoomjax import data
from zoomjax import zoom
from zoomjax.analysis import metrics as A
from zoomjax.analysis import records as R
from zoomjax.errors import UserError
from zoomjax.reports import explorer
from zoomjax.runtime import atomic
from zoomjax.runtime import shards

SCALES = (64, 224, 256, 512)
GRID = zoom.ZoomGrid(SCALES, 3, 224)
NAMES = GRID.names
# (file, height, width): landscape, portrait, square, very wide.
IMAGES = (("img0.png", 300, 400), ("img1.png", 400, 300), ("img2.png", 200, 200), ("img3.png", 100, 500))
RESCUE_VIEW = "LOC:0_2_Size:512"  # The only view right on img1 (the 1-crop is wrong there).


def gradient(h: int, w: int) -> np.ndarray:
  """Red grows to the right, green downwards, blue constant: a crop's colours say where it was taken."""
  y, x = np.mgrid[0:h, 0:w]
  return np.stack([20 + 215 * x / (w - 1), 20 + 215 * y / (h - 1), np.full((h, w), 128.0)], -1).astype(np.uint8)


def fake_sweep(root) -> str:
  """A finished sweep workdir over 4 gradient images; the fake model's answers:
  img0: only the 1-crop right; img1: rescued by RESCUE_VIEW only; img2: never right (its label is 3rd in the
  1-crop's top-5); img3: every view right."""
  folder = os.path.join(root, "images")
  os.makedirs(folder)
  for name, h, w in IMAGES:
    Image.fromarray(gradient(h, w)).save(os.path.join(folder, name))
  with open(os.path.join(folder, "labels.csv"), "w") as f:
    f.write("file,label\n" + "".join(f"{name},{10 + i}\n" for i, (name, _, _) in enumerate(IMAGES)))
  ds = data.get_dataset(f"folder:{folder}")
  n, t = len(IMAGES), len(NAMES)
  rng = np.random.default_rng(0)
  labels = np.asarray(ds.labels, np.int32)
  top5 = np.tile(np.arange(500, 505, dtype=np.int16), (n, t, 1))
  one = NAMES.index(A.ONE_CROP_VIEW)
  right = np.zeros((n, t), bool)
  right[0, one] = True
  right[1, NAMES.index(RESCUE_VIEW)] = True
  right[3, :] = True
  top5[right, 0] = np.broadcast_to(labels[:, :1], (n, t))[right]
  top5[2, one, 2] = labels[2, 0]
  p_max = rng.uniform(0.3, 0.9, size=(n, t)).astype(np.float32)
  p_true = np.where(right, p_max, 0.001).astype(np.float32)
  p_true[2, one] = 0.05
  x = len(R.CROP_NAMES)
  rec = R.Records(
      index=np.arange(n, dtype=np.int64), ids=np.asarray(ds.ids), labels=labels, topk=top5, p_true=p_true,
      p_max=p_max, crop_topk=np.zeros((n, x, 5), np.int16), crop_p_true=np.zeros((n, x), np.float32),
      crop_p_max=np.zeros((n, x), np.float32), agg_top5=np.zeros((n, len(R.AGG_SETS), 5), np.int16),
      agg_p=np.zeros((n, len(R.AGG_SETS), 5), np.float32), view_names=np.asarray(NAMES),
      crop_names=np.asarray(R.CROP_NAMES), agg_names=np.asarray(R.AGG_SETS))
  work = os.path.join(root, "sweep")
  os.makedirs(os.path.join(work, shards.SHARD_DIR))
  R.save(shards.shard_path(work, 0), rec)
  R.save(os.path.join(work, R.FINAL_FILE), rec)
  atomic.write_json(os.path.join(work, shards.CONFIG_FILE), {
      "experiment": "zoom_sweep", "grid": {"scales": list(SCALES), "anchors": 3, "crop": 224}, "shard_size": 16,
      "model": {"name": "fake_model", "checkpoint": None, "random_init": False, "seed": 0, "overrides": {}},
      "data": {"name": f"folder:{folder}"}, "tie_order": "grid", "dtype": "float32"})
  atomic.write_json(os.path.join(work, shards.DATASET_FILE), {
      "name": ds.name, "num_images": n, "fingerprint": shards.fingerprint(ds.ids, ds.labels)})
  atomic.write_json(os.path.join(work, "metrics.json"), {"complete": True})
  return work


def read_data(out_dir) -> dict:
  text = open(os.path.join(out_dir, explorer.DATA_FILE), encoding="utf-8").read()
  prefix = "window.EXPLORER_DATA = "
  assert text.startswith(prefix) and text.rstrip().endswith(";")
  return json.loads(text[len(prefix):].rstrip().rstrip(";"))


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
  return fake_sweep(str(tmp_path_factory.mktemp("explorer")))


@pytest.fixture(scope="module")
def page(sweep, tmp_path_factory):
  out = str(tmp_path_factory.mktemp("explorer_out"))
  return explorer.write_explorer(sweep, out_dir=out, thumb_side=160)


def test_data_file(sweep, page):
  out = os.path.dirname(page)
  d = read_data(out)
  assert d["view_names"] == NAMES and d["grid"] == {"scales": list(SCALES), "anchors": 3, "crop": 224}
  assert d["one_crop_view"] == NAMES.index(A.ONE_CROP_VIEW) and len(d["classes"]) == 1000
  by = {im["id"]: im for im in d["images"]}
  assert list(by) == [f for f, _, _ in IMAGES]
  assert by["img0.png"]["correct"] == "".join("1" if v == A.ONE_CROP_VIEW else "0" for v in NAMES)
  assert by["img1.png"]["rescued"] and not by["img1.png"]["one_crop_correct"] and by["img1.png"]["n_correct"] == 1
  assert by["img2.png"]["never"] and by["img3.png"]["n_correct"] == len(NAMES)
  assert not by["img0.png"]["rescued"] and not by["img3.png"]["never"]
  for name, h, w in IMAGES:
    im = by[name]
    assert im["hw"] == [h, w] and len(im["p_true"]) == len(NAMES) and len(im["top5"]) == 5 * len(NAMES)
    with Image.open(os.path.join(out, im["thumb"])) as th:  # Downscaled to 160, proportions kept.
      assert max(th.size) == min(160, max(h, w)) and abs(th.size[0] / th.size[1] - w / h) < 0.03
  page_text = open(page, encoding="utf-8").read()
  assert explorer.DATA_FILE in page_text and "fake_model" in page_text
  assert not os.path.exists(os.path.join(sweep, "explorer"))  # Nothing written into the sweep unless asked.


def test_choose_rows_keeps_rescued_and_never_solved_first():
  C = np.zeros((6, 4), bool)
  C[0, 0] = True  # 1-crop (view 0) right.
  C[2, 3] = True  # Rescued.
  C[4, 1] = True  # Rescued.
  C[5, :] = True
  # Rescued 2, 4; never solved 1, 3; then 0, 5.
  np.testing.assert_array_equal(explorer.choose_rows(C, 0, 3), [1, 2, 4])
  np.testing.assert_array_equal(explorer.choose_rows(C, 0, 5), [0, 1, 2, 3, 4])
  np.testing.assert_array_equal(explorer.choose_rows(C, 0, 0), np.arange(6))


def test_cli_and_bad_workdir(sweep, tmp_path, capsys):
  assert explorer.main([sweep, "--out", str(tmp_path / "cli"), "--max-images", "2"]) == 0
  assert "explorer:" in capsys.readouterr().out
  assert len(read_data(str(tmp_path / "cli"))["images"]) == 2
  with pytest.raises(SystemExit) as e:  # A user error: one line on stderr, exit status 2.
    explorer.main([str(tmp_path)])
  assert e.value.code == 2
  err = capsys.readouterr().err
  assert len(err.strip().splitlines()) == 1
  assert err.startswith("zoomjax: error:") and str(tmp_path) in err and "not a zoom_sweep workdir" in err
  with pytest.raises(UserError, match="not marked complete"):
    broken = str(tmp_path / "broken")
    shutil.copytree(sweep, broken)
    atomic.write_json(os.path.join(broken, "metrics.json"), {"complete": False})
    explorer.write_explorer(broken)


# --- Headless Chromium: --dump-dom after the page's test hook has clicked a view. ---

def _chromium():
  for name in ("chromium", "chromium-browser", "google-chrome"):
    if shutil.which(name):
      return shutil.which(name)
  return None


@pytest.fixture(scope="module")
def chromium():
  exe = _chromium()
  require(exe is not None, "chromium not installed: apt-get install -y chromium (`make browser` does it as root)")
  return exe


def click(chromium_exe: str, page_path: str, image_id: str, **params) -> tuple:
  """Opens the page with the test hook; returns (its JSON result, chromium's stderr)."""
  q = {"test-click": image_id, **params}
  url = "file://" + os.path.abspath(page_path) + "#" + "&".join(f"{k}={urllib.parse.quote(str(v))}"
                                                                 for k, v in q.items())
  user_dir = tempfile.mkdtemp(prefix="zoomjax-chromium-")
  try:
    # --allow-file-access-from-files: file:// thumbnails count as same-origin, so the hook may read the canvas back.
    proc = subprocess.run(
        [chromium_exe, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-sync",
         "--disable-background-networking", "--disable-component-update", "--allow-file-access-from-files",
         f"--user-data-dir={user_dir}", "--enable-logging=stderr", "--v=0", "--virtual-time-budget=10000",
         "--dump-dom", url], capture_output=True, text=True, timeout=90, check=False)
  finally:
    shutil.rmtree(user_dir, ignore_errors=True)
  dom = proc.stdout
  start = dom.find('<pre id="test-result"')
  assert start >= 0, (proc.returncode, proc.stderr[-2000:])
  body = dom[dom.index(">", start) + 1:dom.index("</pre>", start)]
  import html  # pylint: disable=import-outside-toplevel
  return json.loads(html.unescape(body)), proc.stderr


def _blocks(crop: np.ndarray, b: int = 8) -> np.ndarray:
  c = crop.shape[0] // b
  return crop.astype(np.float64).reshape(b, c, b, c, 3).mean((1, 3))


def test_click_renders_the_crop(page, chromium):
  res, stderr = click(chromium, page, "img1.png", view=RESCUE_VIEW, sort="never")
  assert res.get("hook_error") is None and res["errors"] == [], res
  assert "Uncaught" not in stderr
  assert res["selected"] == "img1.png" and res["list"][0] == "img2.png"  # Never-solved first.
  assert res["grid_cells"] == len(NAMES) and res["grid_rows"] == len(SCALES)
  assert res["correct_cells"] == [NAMES.index(RESCUE_VIEW)]
  assert res["view"] == RESCUE_VIEW and "correct" in res["view_meta"]
  assert len(res["top5"]) == 5 and res["top5"][0].startswith(data.class_names()[11])
  assert res["top5_true"] == [res["top5"][0]]
  # The canvas holds the crop: the same 8x8 block colours as zoomjax.zoom's PIL crop of the original (the browser
  # draws it from a 160-px thumbnail: within 5 grey levels, where a window shifted by 12 px is off by more); its
  # right edge is black (the window passes the resized image's side).
  h, w = IMAGES[1][1:]
  s, r, c = A.parse_view_name(RESCUE_VIEW)
  oh, ow, tops, lefts = zoom.zoom_geometry(h, w, s)
  assert res["geometry"] == {"oh": oh, "ow": ow, "tops": list(tops), "lefts": list(lefts)}
  want = _blocks(zoom.pil_zoom_reference(gradient(h, w), zoom.ZoomGrid((s,), 3, 224))[r * 3 + c])
  got = np.asarray(res["crop_blocks"], np.float64).reshape(8, 8, 3)
  assert np.abs(got - want)[:, :7].max() < 5, np.abs(got - want).max(axis=-1).round()
  assert got[:, 7].max() < 0.2 * want[:, 6].max()  # Last block column: mostly beyond the resized width.


def test_zoom_out_crop_is_black_outside_and_search(page, chromium):
  res, stderr = click(chromium, page, "img0.png", view="LOC:1_1_Size:64", search=data.class_names()[10])
  assert res["errors"] == [] and "Uncaught" not in stderr
  assert res["list"] == ["img0.png"]  # Searched by its class name.
  h, w = IMAGES[0][1:]
  oh, ow, _, _ = zoom.zoom_geometry(h, w, 64)
  assert abs(res["crop_lit_pixels"] - oh * ow) < 0.05 * oh * ow  # The 85 x 64 image, black around it.
  assert "wrong" in res["view_meta"]


def test_hook_reports_a_missing_thumbnail(page, tmp_path, chromium):
  broken = tmp_path / "broken"
  shutil.copytree(os.path.dirname(page), broken)
  d = read_data(str(broken))
  os.remove(broken / next(im["thumb"] for im in d["images"] if im["id"] == "img1.png"))
  res, _ = click(chromium, str(broken / explorer.PAGE_FILE), "img1.png", view=RESCUE_VIEW)
  assert any("failed to load" in e and "thumbs/" in e for e in res["errors"]), res
  assert res["geometry"] is None and res["crop_lit_pixels"] == 0  # No crop without its original.
