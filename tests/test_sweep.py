"""The sweep: the jitted step with a fake model whose answers are known, shards, resume after a failure."""
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from zoomjax import sweep
from zoomjax.analysis import records as R
from zoomjax.errors import UserError
from zoomjax.runtime import parallel
from zoomjax.runtime import progress as progress_lib
from zoomjax.runtime import shards


# --- The step, with a fake zoom kernel and a fake model. ---

CROP = 8
TRANSFORMS = tuple((s, r, c) for s in (4, 8, 12) for r in range(3) for c in range(3))  # out, 224-like, in.


def fake_crops(canvas, hw):
  """View v of image b is a constant crop of value 10 * (b-th image's first pixel) + v % 7."""
  b = canvas.shape[0]
  base = canvas[:, 0, 0, 0].astype(jnp.float32) * 10
  v = jnp.arange(len(TRANSFORMS)) % 7
  val = base[:, None] + v[None, :]
  return jnp.broadcast_to(val[:, :, None, None, None], (b, len(TRANSFORMS), CROP, CROP, 3))


def fake_predict(variables, pixels):
  """Logits peaked at class round(mean pixel) (its probability set by variables['sharp'])."""
  cls = jnp.round(pixels.mean(axis=(1, 2, 3))).astype(jnp.int32)
  return variables["sharp"] * jax.nn.one_hot(cls % 1000, 1000)


def test_step_compact_records_match_the_fake_model():
  spec = sweep.ViewSpec(TRANSFORMS, crop=CROP, extra_crops=False)
  step = sweep.make_step(fake_predict, fake_crops, spec, view_chunk=10)  # 27 views -> 3 chunks of 9.
  canvas = np.zeros((2, 16, 16, 3), np.uint8)
  canvas[0, 0, 0, 0], canvas[1, 0, 0, 0] = 3, 5
  hw = np.array([[16, 16], [16, 16]], np.int32)
  labels = np.array([[31, -1], [52, 50]], np.int32)  # Image 1 multi-label.
  out = jax.device_get(step({"sharp": jnp.float32(5.0)}, canvas, hw, labels))
  v = np.arange(27) % 7
  np.testing.assert_array_equal(out["topk"][0, :, 0], 30 + v)
  np.testing.assert_array_equal(out["topk"][1, :, 0], 50 + v)
  p_top = np.exp(5) / (np.exp(5) + 999)
  np.testing.assert_allclose(out["p_max"], p_top, rtol=1e-5)
  # Top-k (k = 10 by default): the peak, then nine classes at the floor; the softmax entropy by hand.
  q = 1 / (np.exp(5) + 999)
  assert out["topk"].shape == out["topk_p"].shape == (2, 27, R.RECORD_K)
  np.testing.assert_allclose(out["topk_p"][..., 0], p_top, rtol=1e-5)
  np.testing.assert_allclose(out["topk_p"][..., 1:], q, rtol=1e-5)
  np.testing.assert_allclose(out["entropy"], -(p_top * np.log(p_top) + 999 * q * np.log(q)), rtol=1e-5)
  rows = sweep.split_outputs(out, 20)
  assert rows["topk_p"].dtype == np.float16 and rows["crop_topk"].shape == (2, 7, R.RECORD_K)
  assert rows["entropy"].dtype == rows["crop_entropy"].dtype == np.float32
  # True label probability: the peak where the view predicts a label, the floor elsewhere.
  floor = 1 / (np.exp(5) + 999)
  np.testing.assert_allclose(out["p_true"][0], np.where(v == 1, p_top, floor), rtol=1e-5)
  np.testing.assert_allclose(out["p_true"][1], np.where((v == 2) | (v == 0), p_top, floor), rtol=1e-5)
  # Mean softmax per set: zoom-out = S 4 (views 0..8), zoom-224 = S 8, zoom-in = S 12. Its argmax is the
  # most frequent class in the set (ties: lowest class id), here v%7 over 9 consecutive views.
  sets = list(sweep.AGG_SETS)
  for name, views in (("zoom-out", range(0, 9)), ("zoom-224", range(9, 18)), ("zoom-in", range(18, 27))):
    counts = np.bincount(np.arange(27)[list(views)] % 7, minlength=7)
    assert out["agg_top5"][0, sets.index(name), 0] == 30 + np.argmax(counts)
  # Empty sets (no extra crops) are -1.
  assert (out["agg_top5"][:, sets.index("5-crop")] == -1).all()


def test_step_logit_mask_and_mesh_path():
  spec = sweep.ViewSpec(TRANSFORMS, crop=CROP, extra_crops=False)
  mask = np.ones(1000, bool)
  mask[30] = False  # Class 30 is outside the dataset's label space.
  mesh = parallel.make_mesh()
  step = sweep.make_step(fake_predict, fake_crops, spec, logit_mask=mask, view_chunk=27, mesh=mesh)
  canvas = np.zeros((mesh.size, 16, 16, 3), np.uint8)
  canvas[:, 0, 0, 0] = 3
  out = jax.device_get(step({"sharp": jnp.float32(5.0)}, canvas, np.full((mesh.size, 2), 16, np.int32),
                            np.full((mesh.size, 1), 31, np.int32)))
  assert out["topk"][0, 0, 0] != 30  # View 0 peaks at class 30, masked away.
  assert 30 not in out["topk"][0, 0]


def test_record_k_is_checked_against_the_model():
  spec = sweep.ViewSpec(TRANSFORMS, crop=CROP, extra_crops=False)
  step = sweep.make_step(fake_predict, fake_crops, spec, view_chunk=27, record_k=1001)
  with pytest.raises(UserError, match=r"record_k=1001: the model has 1000 classes; use 1..1000"):
    step({"sharp": jnp.float32(5.0)}, np.zeros((1, 16, 16, 3), np.uint8), np.full((1, 2), 16, np.int32),
         np.zeros((1, 1), np.int32))


def test_chunking():
  assert sweep.chunking(334, 64) == (6, 56)
  assert sweep.chunking(27, 10) == (3, 9)
  assert sweep.chunking(5, 64) == (1, 5)


def test_ten_crops_match_torchvision_semantics_with_pil():
  rng = np.random.default_rng(0)
  h, w, size, crop = 30, 47, 20, 16
  img = rng.integers(0, 255, size=(h, w, 3), dtype=np.uint8)
  canvas = np.zeros((40, 64, 3), np.uint8)
  canvas[:h, :w] = img
  got = np.asarray(jax.jit(lambda c, s: sweep.ten_crops(c, s, crop=crop, size=size))(canvas, np.array([h, w])))
  # Reference: torchvision Resize(size, bicubic) + TenCrop(crop), written with PIL.
  nw = int(size * w / h)
  pil = Image.fromarray(img).resize((nw, size), Image.Resampling.BICUBIC)

  def five(p):
    W, H = p.size
    ct, cl = int(round((H - crop) / 2)), int(round((W - crop) / 2))
    boxes = [(0, 0), (W - crop, 0), (0, H - crop), (W - crop, H - crop), (cl, ct)]
    return [np.asarray(p.crop((x, y, x + crop, y + crop))) for x, y in boxes]

  ref = np.stack(five(pil) + five(pil.transpose(Image.Transpose.FLIP_LEFT_RIGHT)))
  assert got.shape == (10, crop, crop, 3)
  assert np.abs(got - ref.astype(np.float32)).max() <= 2


def test_resized_hw_matches_torchvision():
  hw = jnp.array([[375, 500], [500, 375], [333, 333]])
  np.testing.assert_array_equal(sweep.resized_hw(hw, 256), [[256, 341], [341, 256], [256, 256]])


# --- Shards and resume with a fake data stream and a fake compute. ---

class FakeData:
  """Images 0..n-1; batches group images by parity (like canvas buckets reorder them); image 5 unreadable."""

  def __init__(self, n, bad=(5,)):
    self.n, self.bad = n, set(bad)
    self.calls = []

  def batches_for(self, indices):
    self.calls.append(list(indices))
    order = [i for i in indices if i % 2 == 0] + [i for i in indices if i % 2 == 1]
    for s in range(0, len(order), 3):
      idx = np.array(order[s:s + 3] + [-1] * (3 - len(order[s:s + 3])))
      idx = np.where(np.isin(idx, list(self.bad)), -1, idx)
      yield {"index": idx, "labels": np.where(idx >= 0, idx % 4, -1)[:, None]}

  def skipped_in(self, rng):
    return [f"img{i}: corrupt" for i in sorted(self.bad) if i in rng]


def fake_compute(batch, t=4, x=2, a=5):
  idx = np.maximum(batch["index"], 0)
  topk = (idx[:, None, None] * 7 + np.arange(t)[None, :, None] + np.arange(5)) % 1000
  n = len(idx)
  return {"topk": topk.astype(np.int16), "p_true": np.tile(idx[:, None] / 100, (1, t)).astype(np.float32),
          "topk_p": np.full((n, t, 5), 0.1, np.float16), "entropy": np.ones((n, t), np.float32),
          "crop_topk_p": np.full((n, x, 5), 0.1, np.float16), "crop_entropy": np.ones((n, x), np.float32),
          "p_max": np.full((len(idx), t), 0.5, np.float32), "crop_topk": np.zeros((len(idx), x, 5), np.int16),
          "crop_p_true": np.zeros((len(idx), x), np.float32), "crop_p_max": np.zeros((len(idx), x), np.float32),
          "agg_top5": np.zeros((len(idx), a, 5), np.int16), "agg_p": np.zeros((len(idx), a, 5), np.float32)}


NAMES = {"view_names": [f"LOC:1_1_Size:{s}" for s in (100, 200, 256, 300)], "crop_names": ["a", "b"],
         "agg_names": list(sweep.AGG_SETS)}


def run_fake(workdir, data, n=11, shard_size=4, **kw):
  return shards.run_shards(str(workdir), num_images=n, shard_size=shard_size, batches_for=data.batches_for,
                           compute=fake_compute, empty_rows=R.empty_rows(4, 2, 5), meta=NAMES,
                           ids_of=lambda i: f"img{i}", skipped_in=data.skipped_in, **kw)


class Boom(Exception):
  pass


def test_shards_resume_after_failure_identical_and_untouched(tmp_path):
  # Uninterrupted reference run.
  ref_dir = tmp_path / "ref"
  assert run_fake(ref_dir, FakeData(11)) == [0, 1, 2]
  ref = R.merge_shards(str(ref_dir), 3)
  assert list(ref.index) == [0, 1, 2, 3, 4, 6, 7, 8, 9, 10]  # Sorted; 5 skipped.
  assert list(ref.skipped) == ["img5: corrupt"]
  assert list(ref.ids[:2]) == ["img0", "img1"]
  # A run that dies after its first shard is written...
  work = tmp_path / "run"

  def die_after_first(k, path):
    raise Boom(k)

  with pytest.raises(Boom):
    run_fake(work, FakeData(11), on_shard_written=die_after_first)
  assert sorted(os.listdir(work / shards.SHARD_DIR)) == ["shard_000000.npz"]  # No temporary files left behind.
  stat0 = os.stat(work / shards.SHARD_DIR / "shard_000000.npz")
  # ... resumes: only the missing shards are computed, the written one is not rewritten.
  data = FakeData(11)
  assert run_fake(work, data) == [1, 2]
  assert data.calls == [[4, 5, 6, 7], [8, 9, 10]]
  stat1 = os.stat(work / shards.SHARD_DIR / "shard_000000.npz")
  assert (stat0.st_mtime_ns, stat0.st_ino) == (stat1.st_mtime_ns, stat1.st_ino)
  got = R.merge_shards(str(work), 3)
  for f in R.PER_IMAGE + R.NAMES + (R.SKIPPED,):
    np.testing.assert_array_equal(getattr(got, f), getattr(ref, f), err_msg=f)
  # Nothing left to do on a third run.
  assert run_fake(work, FakeData(11)) == []


def test_shards_round_robin_over_processes_merge_to_the_same(tmp_path):
  ref = tmp_path / "one"
  run_fake(ref, FakeData(11), shard_size=2)
  two = tmp_path / "two"
  d0, d1 = FakeData(11), FakeData(11)
  assert run_fake(two, d0, shard_size=2, process_index=0, process_count=2) == [0, 2, 4]
  assert run_fake(two, d1, shard_size=2, process_index=1, process_count=2) == [1, 3, 5]
  a, b = R.merge_shards(str(ref), 6), R.merge_shards(str(two), 6)
  np.testing.assert_array_equal(a.topk, b.topk)
  np.testing.assert_array_equal(a.index, b.index)


def test_merge_refuses_missing_or_mixed_shards(tmp_path):
  run_fake(tmp_path, FakeData(11))
  os.remove(shards.shard_path(str(tmp_path), 1))
  with pytest.raises(FileNotFoundError, match="shard_000001"):
    R.merge_shards(str(tmp_path), 3)
  rec = R.load(shards.shard_path(str(tmp_path), 0))
  rec.view_names = np.array(["LOC:0_0_Size:1"] * 4)
  R.save(shards.shard_path(str(tmp_path), 1), rec)
  with pytest.raises(ValueError, match="different runs"):
    R.merge_shards(str(tmp_path), 3)
  with open(shards.shard_path(str(tmp_path), 2), "wb") as f:
    f.write(b"truncated")
  with pytest.raises(ValueError, match="delete it"):
    R.load(shards.shard_path(str(tmp_path), 2))


def test_compile_clock_counts_compilation_and_progress_reports_it():
  f = jax.jit(lambda x: jnp.tanh(x) * 3.0 + x.sum())
  a, b, c = np.ones((3, 7), np.float32), np.ones((3, 7), np.float32), np.ones((4, 7), np.float32)
  with progress_lib.CompileClock() as clock:
    f(a).block_until_ready()
    f(b).block_until_ready()  # Cached in memory: no second executable.
    f(c).block_until_ready()
  assert clock.count == 2 and clock.seconds > 0
  after = clock.seconds
  jax.jit(lambda x: x - 1)(c)  # Not counted once the block is left.
  assert clock.seconds == after
  logs = []
  p = progress_lib.Progress(total_images=4, views_per_image=10, every_secs=0.0, log_fn=logs.append, compile_clock=clock)
  p(0, t=1.0)
  p(2, t=2.0)
  assert f"compiling {after:.1f} s so far (2 executables)" in logs[-1] and p.last["compile_secs"] == after


def test_progress_reports_images_views_eta():
  logs = []
  p = progress_lib.Progress(total_images=10, views_per_image=334, every_secs=0.0, log_fn=logs.append)
  p(0, t=100.0)
  p(4, t=102.0)
  assert p.last["images_per_sec"] == pytest.approx(2.0)
  assert p.last["views_per_sec"] == pytest.approx(668.0)
  assert p.last["eta_secs"] == pytest.approx(3.0)  # 6 images left at 2 images/s.
  assert "views/s" in logs[-1] and "ETA" in logs[-1]


def test_model_program_compiles_once_for_every_canvas_shape():
  """The views program is per canvas shape; the model program sees the same shapes whatever the canvas."""
  traces = {"crops": 0, "model": 0}

  def crops(canvas, hw):
    traces["crops"] += 1
    return fake_crops(canvas, hw)

  def predict(variables, pixels):
    traces["model"] += 1
    return fake_predict(variables, pixels)

  step = sweep.make_step(predict, crops, sweep.ViewSpec(TRANSFORMS, crop=CROP, extra_crops=False), view_chunk=9)
  variables = {"sharp": jnp.float32(5.0)}
  labels = np.full((1, 1), 3, np.int32)
  outs = []
  for side in (16, 24, 40):
    canvas = np.zeros((1, side, side, 3), np.uint8)
    canvas[:, 0, 0, 0] = 3
    outs.append(step(variables, canvas, np.full((1, 2), side, np.int32), labels))
    if side == 16:
      model_traces = traces["model"]
  assert traces["crops"] == 3 and traces["model"] == model_traces  # One model trace for three canvases.
  np.testing.assert_array_equal(outs[0]["topk"], outs[2]["topk"])
