"""The evaluation job against a fake classifier whose answers are known exactly, on a fake ImageNet-Hard parquet
built here in the layout of docs/study.md §4.2, plus EfficientNet-Lite0's real accuracy on the 100 val photos."""
import csv
import io
import json
import os

import flax.linen as nn
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from configs import evaluate as evaluate_config
from zoomjax import data as zd
from zoomjax import errors
from zoomjax.data import classes
from zoomjax.data import view_cache
from zoomjax.jobs import evaluate
from zoomjax.models import registry
from zoomjax.models.preprocessing import Preprocessing
from test_report import chromium, render_page  # noqa: F401  (the headless-Chromium fixture and driver)

FAKE = "fake_mean_classifier"
TRACES = {"model": 0}


class MeanClassifier(nn.Module):
  """logits[c] = -(c - mean pixel)^2: top-1 is the image's (uniform) grey level v, top-5 is v-2..v+2."""
  nan: bool = False

  @nn.compact
  def __call__(self, x):
    TRACES["model"] += 1  # Python side effect: counts traces, not calls.
    m = jnp.mean(x, axis=(1, 2, 3))
    logits = -(jnp.arange(1000, dtype=jnp.float32)[None, :] - m[:, None]) ** 2
    if self.nan:
      logits = logits * jnp.nan
    return logits, {"pre_logits": m[:, None]}


@pytest.fixture
def fake_model():
  spec = registry.ModelSpec(
      name=FAKE, make_module=lambda **kw: MeanClassifier(**kw),
      preprocessing=Preprocessing(input_size=8, resize_size=8, resize_method="bilinear", mean=(0.0,) * 3,
                                  std=(1.0,) * 3),
      convert=lambda flat: {})
  registry.register(spec)
  yield FAKE
  registry._REGISTRY.pop(FAKE, None)  # pylint: disable=protected-access


def _png(v: int, h: int, w: int) -> bytes:
  buf = io.BytesIO()
  Image.fromarray(np.full((h, w, 3), v, np.uint8)).save(buf, "PNG")
  return buf.getvalue()


# (grey level = the fake model's top-1, labels, origin, image size): expected top-1 / top-5 hits by construction.
HARD_ROWS = [
    (10, [10], "imagenet_sketch", (12, 20)),        # top-1 hit
    (20, [22, 500], "imagenet_sketch", (20, 12)),   # top-5 hit only (22 is within 20 +- 2)
    (30, [100], "objectnet", (9, 9)),               # miss
    (40, [3, 40, 41], "objectnet", (30, 17)),       # top-1 hit (any label)
    (50, [60], "imagenet_a", (16, 300)),            # miss
]


def _write_hard_parquet(root):
  import pyarrow as pa
  import pyarrow.parquet as pq
  img = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
  table = pa.table({
      "image": pa.array([{"bytes": _png(v, *hw), "path": None} for v, _, _, hw in HARD_ROWS], img),
      "label": pa.array([lab for _, lab, _, _ in HARD_ROWS], pa.list_(pa.int64())),
      "origin": [o for _, _, o, _ in HARD_ROWS],
      "english_label": pa.array([["x"] * len(lab) for _, lab, _, _ in HARD_ROWS], pa.list_(pa.string()))})
  os.makedirs(root / "data", exist_ok=True)
  pq.write_table(table, root / "data" / "validation-00000-of-00001.parquet")


def _folder(root, rows):
  """A folder dataset with labels.csv (file,label): rows of (grey level, label)."""
  root.mkdir(parents=True, exist_ok=True)
  lines = ["file,label"]
  for k, (v, lab) in enumerate(rows):
    Image.fromarray(np.full((10 + k, 14, 3), v, np.uint8)).save(root / f"im{k}.png")
    lines.append(f"im{k}.png,{classes.wnids()[lab]}")
  (root / "labels.csv").write_text("\n".join(lines) + "\n")
  return root


def _config(models, data, **fields):
  c = evaluate_config.get_config(f"models={models},data={data}")
  c.random_init = True
  c.batch_size, c.shard_size, c.gallery_size = 2, 2, 3
  for k, v in fields.items():
    c[k] = v
  return c


def test_fake_imagenet_hard_top1_top5_and_per_origin(tmp_path, fake_model):
  _write_hard_parquet(tmp_path / "hard")
  folder = _folder(tmp_path / "folder", [(5, 5), (7, 9), (9, 300)])
  other = _folder(tmp_path / "other", [(3, 3)])  # Same label width as `folder`: same executable.
  c = _config(FAKE, f"imagenet_hard@{tmp_path / 'hard'};folder:{folder};folder:{other}",
              data_dir=str(tmp_path / "tfds"))
  TRACES["model"] = 0
  summary = evaluate.run(c, str(tmp_path / "run"))
  # One trace for the random init, then one per label width (ImageNet-Hard 10, the folder 1): the model program
  # is not retraced per batch, image size or class mask (views are made on the host; the mask is an argument).
  assert TRACES["model"] == 1 + 2
  pairs = {p["dataset"]: p for p in summary["pairs"]}
  hard = pairs["imagenet_hard"]
  assert hard["num_images"] == 5 and hard["label_space"] == "imagenet_hard"
  assert hard["top1"] == pytest.approx(2 / 5) and hard["top5"] == pytest.approx(3 / 5)
  per = {o: (v["num_images"], v["top1"], v["top5"]) for o, v in hard["per_origin"].items()}
  assert per == {"imagenet_a": (1, 0.0, 0.0), "imagenet_sketch": (2, 0.5, 1.0), "objectnet": (2, 0.5, 0.5)}
  lo, hi = hard["ci95"]["top1"]
  assert 0.0 <= lo <= 0.4 <= hi <= 1.0
  fold = pairs[f"folder:{folder}"]
  assert fold["top1"] == pytest.approx(1 / 3) and fold["top5"] == pytest.approx(2 / 3)
  assert fold["paper"] is None and hard["paper"] is None  # No paper number for a fake model.
  # The per-image record agrees with the construction.
  pair_dir = tmp_path / "run" / "pairs" / os.path.basename(evaluate.pair_dir(
      "", evaluate.ModelEntry(FAKE, None), evaluate.DataEntry("imagenet_hard")))
  with np.load(pair_dir / "predictions.npz") as z:
    assert z["top5"][:, 0].tolist() == sorted(v for v, _, _, _ in HARD_ROWS)
    assert z["correct"].tolist() == [True, False, False, True, False]
  m = json.loads((pair_dir / "metrics.json").read_text())
  assert m["complete"] is True and m["preprocessing"]["input_size"] == 8
  # results.csv / results.md hold one row per pair.
  assert pairs[f"folder:{other}"]["top1"] == 1.0
  rows = list(csv.DictReader(open(tmp_path / "run" / "results.csv")))
  assert [(r["model"], r["dataset"]) for r in rows] == [(FAKE, "imagenet_hard"), (FAKE, f"folder:{folder}"),
                                                         (FAKE, f"folder:{other}")]
  assert float(rows[0]["top1"]) == pytest.approx(0.4) and float(rows[0]["top5"]) == pytest.approx(0.6)
  md = (tmp_path / "run" / "results.md").read_text()
  assert md.splitlines()[0] == f"| model | imagenet_hard | folder:{folder} | folder:{other} |" and "40.0 % [" in md
  page = (tmp_path / "run" / "report.html").read_text()
  assert "Per origin" in page and "objectnet" in page and "most confident failures" in page


def test_resume_keeps_finished_pairs_and_refuses_another_config(tmp_path, fake_model, capsys):
  folder = _folder(tmp_path / "f", [(5, 5), (7, 7), (9, 1)])
  c = _config(FAKE, f"folder:{folder}")
  evaluate.run(c, str(tmp_path / "run"))
  pair = tmp_path / "run" / "pairs" / os.path.basename(evaluate.pair_dir(
      "", evaluate.ModelEntry(FAKE, None), evaluate.DataEntry(f"folder:{folder}")))
  before = (pair / "metrics.json").stat().st_mtime_ns
  capsys.readouterr()
  again = evaluate.run(c, str(tmp_path / "run"))
  assert "complete in" in capsys.readouterr().out and (pair / "metrics.json").stat().st_mtime_ns == before
  assert again["pairs"][0]["top1"] == pytest.approx(2 / 3)
  other = _config(FAKE, f"folder:{folder}", dtype="bfloat16")
  with pytest.raises(errors.UserError, match="dtype: 'float32' there, 'bfloat16' now"):
    evaluate.run(other, str(tmp_path / "run"))


def test_models_file_labels_and_bad_input(tmp_path, fake_model):
  f = tmp_path / "pairs.csv"
  f.write_text("# OpenCLIP-style batch list\nmodel,checkpoint,pretrained\nclip_vit_b32,/x/a.pt,\n"
               "openclip_vit_l14,/x/b.bin,datacomp_xl_s13b_b90k\n")
  c = evaluate_config.get_config(f"models_file={f}")
  entries = evaluate.model_entries(c)
  assert [e.row for e in entries] == ["clip_vit_b32", "openclip_vit_l14:datacomp_xl_s13b_b90k"]
  assert entries[1].checkpoint == "/x/b.bin"
  assert evaluate.paper_top1(entries[1], "imagenet_hard")["top1_percent"] == 15.60
  assert evaluate.paper_top1(evaluate.parse_model_entry("resnet50@r.pth"), "imagenet_hard")["top1_percent"] == 14.74
  assert evaluate.paper_top1(evaluate.parse_model_entry("resnet50"), "imagenet2012_real/union")["top1_percent"] == 82.97
  with pytest.raises(errors.UserError, match="more than once"):
    evaluate.model_entries(evaluate_config.get_config("models=resnet50;resnet50"))
  with pytest.raises(errors.NotFoundError, match="models_file .*missing.csv not found"):
    evaluate.model_entries(evaluate_config.get_config(f"models_file={tmp_path / 'missing.csv'}"))
  with pytest.raises(errors.UserError, match="dtype='half'"):
    evaluate_config.get_config("dtype=half")
  # An absent dataset names the files it expects and where.
  with pytest.raises(errors.NotFoundError, match=r"parquet.*manual_dir"):
    evaluate.run(_config(FAKE, "imagenet_hard", data_dir=str(tmp_path / "tfds")), str(tmp_path / "run"))
  assert not (tmp_path / "run").exists()  # Nothing claimed before the data is there.


def test_non_finite_logits_stop_with_model_and_image_named(tmp_path, fake_model):
  folder = _folder(tmp_path / "f", [(5, 5)])
  c = _config(FAKE, f"folder:{folder}")
  c.model_overrides = {"nan": True}
  with pytest.raises(errors.NonFiniteError, match=rf"model {FAKE} .*image im0.png"):
    evaluate.run(c, str(tmp_path / "run"))


def _count_reads(monkeypatch):
  """Counts the decodes that make views (make_batches' PIL reads; the report's gallery reads arrays) by dataset."""
  counts = {}
  read = zd.Dataset.read

  def counted(self, i, pil=False):
    if pil:
      counts[self.name] = counts.get(self.name, 0) + 1
    return read(self, i, pil=pil)

  monkeypatch.setattr(zd.Dataset, "read", counted)
  return counts


def test_later_models_with_the_same_view_copy_it_from_the_view_cache(tmp_path, fake_model, monkeypatch):
  other = "fake_mean_classifier_6px"  # Another view (6 px crop): its own table, its own decodes.
  registry.register(registry.ModelSpec(
      name=other, make_module=lambda **kw: MeanClassifier(**kw),
      preprocessing=Preprocessing(input_size=6, resize_size=6, resize_method="bilinear", mean=(0.0,) * 3,
                                  std=(1.0,) * 3), convert=lambda flat: {}))
  try:
    folder = _folder(tmp_path / "f", [(5, 5), (7, 9), (9, 300)])
    counts = _count_reads(monkeypatch)
    summary = evaluate.run(_config(f"{FAKE}#a;{other};{FAKE}#b", f"folder:{folder}"), str(tmp_path / "run"))
    (name,) = counts
    assert counts[name] == 3 + 3  # FAKE#a and the 6 px model decode; FAKE#b copies FAKE#a's views.
    by_row = {p["row"]: p for p in summary["pairs"]}
    assert [by_row[r]["views_from_cache"] for r in (f"{FAKE}:a", other, f"{FAKE}:b")] == [0, 0, 3]
    assert by_row[f"{FAKE}:b"]["top1"] == by_row[f"{FAKE}:a"]["top1"] == pytest.approx(1 / 3)
    # Models on the same images, paired against the first: the same weights agree image by image.
    assert [(p["a"], p["b"]) for p in summary["paired"]] == [(other, f"{FAKE}:a"), (f"{FAKE}:b", f"{FAKE}:a")]
    assert (summary["paired"][1]["diff"], summary["paired"][1]["p_value"], summary["paired"][1]["n"]) == (0.0, 1.0, 3)
    assert "Models compared on the same images (paired)" in open(summary["report"], encoding="utf-8").read()
    # A budget of one 8x8 view: the others are decoded again, with the same answers; 0 turns the cache off.
    for gb, reads in ((8 * 8 * 3 / 1e9, 3 + 2), (0.0, 3 + 3)):
      counts.clear()
      c = _config(f"{FAKE}#a;{FAKE}#b", f"folder:{folder}", view_cache_gb=gb)
      again = evaluate.run(c, str(tmp_path / f"run{gb}"))
      assert counts[name] == reads
      assert [p["top1"] for p in again["pairs"]] == [pytest.approx(1 / 3)] * 2
    with pytest.raises(errors.UserError, match="view_cache_gb=-1.0"):
      evaluate.run(_config(f"{FAKE}#a;{FAKE}#b", f"folder:{folder}", view_cache_gb=-1.0), str(tmp_path / "bad"))
  finally:
    registry._REGISTRY.pop(other, None)  # pylint: disable=protected-access


def test_views_on_disk_are_reused_by_later_runs_and_recomputed_when_stale(tmp_path, fake_model, monkeypatch, capsys):
  folder = _folder(tmp_path / "f", [(5, 5), (7, 9), (9, 300)])  # Shards of 2: images 0-1 and 2.
  store = tmp_path / "views"
  counts = _count_reads(monkeypatch)

  def run(name):
    counts.clear()
    out = evaluate.run(_config(FAKE, f"folder:{folder}", view_cache_dir=str(store)), str(tmp_path / name))
    return sum(counts.values()), out["pairs"][0]

  reads, first = run("a")
  (d,) = store.iterdir()
  assert reads == 3 and first["views_from_cache"] == 0
  assert sorted(p.name for p in d.glob("*.npz")) == ["0-2.npz", "2-3.npz"]
  assert json.loads((d / "key.json").read_text())["view"] == [8, 8, "bilinear"]
  reads, again = run("b")
  assert reads == 0 and again["views_from_cache"] == 3 and again["top1"] == first["top1"] == pytest.approx(1 / 3)
  # Image 1 now has grey level 9, its label (a top-1 hit); a corrupt file is not trusted either.
  Image.fromarray(np.full((11, 14, 3), 9, np.uint8)).save(folder / "im1.png")
  os.utime(folder / "im1.png", ns=(1, 1))
  (d / "2-3.npz").write_bytes(b"not a zip")
  capsys.readouterr()
  reads, fixed = run("c")
  out = capsys.readouterr().out
  assert reads == 3 and fixed["views_from_cache"] == 0 and fixed["top1"] == pytest.approx(2 / 3)
  assert f"recomputing the views in {d / '0-2.npz'}: its images changed" in out
  assert f"recomputing the views in {d / '2-3.npz'}: " in out
  reads, _ = run("d")
  assert reads == 0


def test_cached_views_are_the_bytes_make_batches_made(tmp_path, monkeypatch):
  rng = np.random.default_rng(0)
  (tmp_path / "p" / classes.wnids()[1]).mkdir(parents=True)
  for k, hw in enumerate([(37, 50), (61, 29), (40, 40)]):
    Image.fromarray(rng.integers(0, 256, (*hw, 3), np.uint8)).save(tmp_path / "p" / classes.wnids()[1] / f"{k}.png")
  ds = zd.get_dataset(f"folder:{tmp_path / 'p'}")
  pp = Preprocessing(input_size=24, resize_size=27, resize_method="bicubic", mean=(0.0,) * 3, std=(1.0,) * 3)
  kw = dict(batch_size=2, transform=pp.pil_view, transform_hw=(24, 24), num_workers=2)
  plain = list(zd.make_batches(ds, **kw))
  table = view_cache.ViewCache(10**6).table("k")
  filled = list(zd.make_batches(ds, view_table=table, **kw))
  store = view_cache.ViewStore(str(tmp_path / "store"), {"view": 24}, ds)
  store.save(range(3), table)
  counts = _count_reads(monkeypatch)
  copied = list(zd.make_batches(ds, view_table=table, **kw))
  stored = list(zd.make_batches(ds, view_table=store.open(range(3), (24, 24)), **kw))
  assert not counts and len(table) == 3 and table.hits == 3
  for a, b, c, d in zip(plain, filled, copied, stored):
    for key in a:
      for other in (b, c, d):
        np.testing.assert_array_equal(a[key], other[key])
  with pytest.raises(ValueError, match="view_table"):
    zd.make_batches(ds, batch_size=2, canvas_fn=lambda h, w: (64, 64), view_table=table)


def test_preprocessing_overrides():
  own = Preprocessing(input_size=224, resize_size=256, resize_method="bilinear", mean=(1.0,) * 3, std=(2.0,) * 3)
  cfg = evaluate_config.get_config("").preprocessing
  assert evaluate.preprocessing_for(own, cfg) == own
  cfg.input_size, cfg.crop_fraction = 800, 1.0  # The paper's L2-NS on ImageNet-Hard: Resize(800) + CenterCrop(800).
  got = evaluate.preprocessing_for(own, cfg)
  assert (got.input_size, got.resize_size, got.resize_method) == (800, 800, "bilinear")
  cfg.crop_fraction, cfg.resize_method = 0.0, "bicubic"
  assert evaluate.preprocessing_for(own, cfg).resize_size == 914  # Same framing as 224 / 256.
  cfg.resize_method = "lanczos"
  with pytest.raises(errors.UserError, match="resize_method='lanczos'"):
    evaluate.preprocessing_for(own, cfg)


def test_efficientnet_lite0_on_val100_gives_its_centre_crop_accuracy(tmp_path, val100_dir):
  c = evaluate_config.get_config(f"models=efficientnet_lite0,data=folder:{val100_dir}")
  summary = evaluate.run(c, str(tmp_path / "run"))
  (pair,) = summary["pairs"]
  assert pair["num_images"] == 100 and pair["num_skipped"] == 0
  assert 0.72 <= pair["top1"] <= 0.73, pair["top1"]
  assert pair["preprocessing"] == {"input_size": 224, "resize_size": 256, "resize_method": "bicubic",
                                   "mean": [127.0] * 3, "std": [128.0] * 3, "crop_mode": "center",
                                   "antialias": True}


def test_report_renders_in_chromium(tmp_path, fake_model, chromium):
  folder = _folder(tmp_path / "f", [(5, 5), (7, 9), (9, 300)])
  evaluate.run(_config(FAKE, f"folder:{folder}"), str(tmp_path / "run"))
  images, console, shot = render_page((tmp_path / "run" / "report.html").as_uri())
  assert console == []
  assert len(images) == 2 and all(ok for _, ok in images), images  # The two failures' thumbnails loaded.
  pixels = np.asarray(Image.open(io.BytesIO(shot)).convert("L"), np.float32)
  assert pixels.std() > 10 and (pixels < 128).mean() > 0.005, "screenshot is blank"


def test_pil_view_matches_the_device_resampler():
  """Preprocessing.pil_view (PIL) against zoomjax's own resampler (an independent implementation of PIL's)."""
  from zoomjax.tta import augment  # pylint: disable=import-outside-toplevel
  rng = np.random.default_rng(0)
  for (h, w), method in (((37, 53), "bicubic"), ((61, 29), "bilinear")):
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    pp = Preprocessing(input_size=16, resize_size=20, resize_method=method, mean=(0.0,) * 3, std=(1.0,) * 3)
    ours = np.asarray(augment.standard_view(jnp.asarray(image), None, 20, 16, method, pil_order=True))
    assert pp.pil_view(image).shape == (16, 16, 3)
    assert np.abs(ours - pp.pil_view(image).astype(np.float32)).max() <= 2


def test_pil_view_is_byte_identical_to_torchvision_resize_then_centercrop():
  """The trimmed two-pass view against one `resize` + `crop`, as torchvision does, over landscape / portrait /
  square / upsampled / odd sizes and images over twice as tall as wide (which Pillow >= 13 resizes vertically
  first), both filters, arrays and PIL images alike."""
  rng = np.random.default_rng(1)
  for (h, w) in ((368, 496), (496, 368), (300, 300), (90, 170), (257, 1031), (233, 224), (1, 7), (1000, 300),
                 (691, 173), (3000, 256), (520, 257)):
    for method, filt in (("bicubic", Image.Resampling.BICUBIC), ("bilinear", Image.Resampling.BILINEAR)):
      image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
      pp = Preprocessing(input_size=224, resize_size=256, resize_method=method, mean=(0.0,) * 3, std=(1.0,) * 3)
      nh, nw = (int(256 * h / w), 256) if w <= h else (256, int(256 * w / h))
      top, left = int(round((nh - 224) / 2.0)), int(round((nw - 224) / 2.0))
      want = np.asarray(Image.fromarray(image).resize((nw, nh), filt).crop((left, top, left + 224, top + 224)))
      np.testing.assert_array_equal(pp.pil_view(image), want, err_msg=f"{h}x{w} {method}")
      np.testing.assert_array_equal(pp.pil_view(Image.fromarray(image)), want, err_msg=f"{h}x{w} {method} PIL")


def test_cli_on_four_devices_gives_the_one_device_predictions(tmp_path):
  """`python -m zoomjax.main` with the batch split over 4 (fake) devices: the same predictions as 1 device here."""
  import subprocess  # pylint: disable=import-outside-toplevel
  import sys  # pylint: disable=import-outside-toplevel
  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  arg = "runlocal,limit=3"
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu")
  proc = subprocess.run([sys.executable, "-m", "zoomjax.main", "--config", f"configs/evaluate.py:{arg}",
                         "--config.batch_size=1", "--workdir", str(tmp_path / "d4")], cwd=repo, env=env,
                        capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "| efficientnet_lite_tiny | " in proc.stdout
  c = evaluate_config.get_config(arg)
  c.batch_size = 4  # 1 device: the same 4 images per step as 4 devices x 1.
  evaluate.run(c, str(tmp_path / "d1"))
  out = {}
  for d in ("d1", "d4"):
    pair = evaluate.pair_dir(str(tmp_path / d), evaluate.ModelEntry("efficientnet_lite_tiny", None),
                             evaluate.DataEntry("demo_photos"))
    with np.load(os.path.join(pair, "predictions.npz")) as z:
      out[d] = {k: z[k] for k in ("top5", "p_true")}
  np.testing.assert_array_equal(out["d1"]["top5"], out["d4"]["top5"])
  np.testing.assert_allclose(out["d1"]["p_true"], out["d4"]["p_true"], rtol=1e-5, atol=1e-7)


def test_openclip_zero_shot_classifier_through_the_evaluator(tmp_path):
  """A tiny seeded open_clip ViT-H/14-like checkpoint (the golden of test_golden_clip_families.py): the job
  passes the config's vocabulary, class names and head cache to the loader; the head is built once and cached."""
  from safetensors.numpy import save_file  # pylint: disable=import-outside-toplevel
  from goldens import load_golden, sw  # pylint: disable=import-outside-toplevel
  g, state, _ = load_golden("clip_h14_tiny")
  save_file(state, str(tmp_path / "model.safetensors"))
  (tmp_path / "names.txt").write_text("\n".join(str(n) for n in g["class_names"]) + "\n")
  sw.write_bpe_vocab(str(tmp_path / "vocab.txt.gz"), sw.synthetic_bpe_merges())
  folder = _folder(tmp_path / "f", [(5, 0), (200, 1)])
  c = evaluate_config.get_config(f"models=openclip_vit_h14@{tmp_path / 'model.safetensors'},data=folder:{folder},"
                                 f"clip_vocab={tmp_path / 'vocab.txt.gz'},clip_classnames={tmp_path / 'names.txt'}")
  c.model_overrides = dict(patch_size=8, width=320, depth=2, num_heads=4, mlp_dim=640, embed_dim=16, image_size=32)
  c.clip.head_cache_dir = str(tmp_path / "heads")
  c.batch_size = 2
  summary = evaluate.run(c, str(tmp_path / "run"))
  (pair,) = summary["pairs"]
  assert pair["num_images"] == 2 and pair["preprocessing"]["input_size"] == 32
  assert len(os.listdir(tmp_path / "heads")) >= 1  # The text head went to the cache.
  key = json.loads(open(os.path.join(evaluate.pair_dir(str(tmp_path / "run"), evaluate.ModelEntry(
      "openclip_vit_h14", str(tmp_path / "model.safetensors")), evaluate.DataEntry(f"folder:{folder}")),
      "config.json")).read())
  assert key["clip"]["class_names"] == str(tmp_path / "names.txt")
  c.clip.vocab = str(tmp_path / "absent.txt.gz")  # A new head (new workdir, new cache) needs the vocabulary.
  c.clip.head_cache_dir = str(tmp_path / "heads2")
  with pytest.raises(errors.UserError, match="absent.txt.gz"):
    evaluate.run(c, str(tmp_path / "run2"))


def test_every_imagenet_hard_paper_row_names_a_registered_model():
  import zoomjax.models as zm  # pylint: disable=import-outside-toplevel
  from zoomjax.analysis import paper_numbers as P  # pylint: disable=import-outside-toplevel
  names = set(zm.list_models())
  rows = list(P.IMAGENET_HARD) + [m for m, _ in P.IMAGENET_HARD_OPENCLIP]
  assert [m for m in rows if m not in names] == []
  assert P.imagenet_hard("openclip_vit_bigg14", "laion2b_s39b_b160k") == 15.93 and P.imagenet_hard("vgg19") == 11.985
