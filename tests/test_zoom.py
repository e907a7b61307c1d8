"""The zoom grid: paper geometry, PIL parity, one executable per canvas, both implementations agree."""
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from zoomjax import zoom
from zoomjax.zoom import (PAPER_SCALES, ZoomGrid, canvas_size, pil_zoom_reference, to_canvas, zoom_crops,
                          zoom_crops_batch, zoom_geometry)

# Small grids keep compiles short: zoom-out (strip path), scales near the image size and zoom-in.
SMALL = ZoomGrid((4, 10, 33, 64, 200), anchors=3, crop=32)


def _noise(h, w, seed=0):
  """Smooth-ish random image (PIL-like content, not pure noise) of shape (h, w, 3) uint8."""
  rng = np.random.default_rng(seed)
  base = rng.integers(0, 256, (max(h // 4, 1) + 1, max(w // 4, 1) + 1, 3), dtype=np.uint8)
  img = np.asarray(Image.fromarray(base).resize((w, h), Image.Resampling.BILINEAR))
  return np.clip(img.astype(np.int32) + rng.integers(-20, 21, img.shape), 0, 255).astype(np.uint8)


def _photos(val100_dir, n):
  paths = sorted((val100_dir / "images").iterdir())
  return [np.asarray(Image.open(p).convert("RGB")) for p in paths[:n * 4:4]]


def _assert_pil_parity(got, ref, max_diff=2, mean_diff=0.02):
  diff = np.abs(np.asarray(got, np.float32) - ref.astype(np.float32))
  assert got.shape == ref.shape
  assert diff.max() <= max_diff, diff.reshape(diff.shape[0], -1).max(1)
  assert diff.mean() <= mean_diff, diff.mean()


# ---------------------------------------------------------------------------------------------- the grid


def test_paper_grid():
  grid = ZoomGrid.paper()
  assert len(PAPER_SCALES) == 36 and grid.num_transforms == 324
  assert grid.scales == tuple(sorted(set(
      [10, 16, 32, 48, 64, 96, 128, 192, 224, 240, 256, 288, 320, 384, 448, 512, 576, 640, 664, 672, 680,
       690, 700, 720, 768, 832, 896] + [int(v) for v in np.linspace(10, 1024, 10)])))
  assert grid.transforms[:4] == [(10, 0, 0), (10, 0, 1), (10, 0, 2), (10, 1, 0)]
  assert grid.names[0] == "LOC:0_0_Size:10" and grid.names[-1] == "LOC:2_2_Size:1024"
  assert grid.index("LOC:1_1_Size:256") == 12 * 9 + 4
  assert grid.transforms[grid.index("LOC:2_0_Size:768")] == (768, 2, 0)
  assert ZoomGrid((5,), anchors=2).names == ["LOC:0_0_Size:5", "LOC:0_1_Size:5", "LOC:1_0_Size:5",
                                             "LOC:1_1_Size:5"]
  assert hash(grid) == hash(ZoomGrid.paper())  # Usable as a static jit argument.


@pytest.mark.parametrize("kwargs, match", [
    (dict(scales=(10, 0)), "positive"), (dict(scales=(10, -3)), "positive"), (dict(scales=(10, 10)), "unique"),
    (dict(scales=()), "at least one"), (dict(scales=(10,), crop=0), "crop"),
    (dict(scales=(10,), anchors=0), "anchors"), (dict(scales=(10.5,)), "integers")])
def test_invalid_grids(kwargs, match):
  with pytest.raises(ValueError, match=match):
    ZoomGrid(**kwargs)


def test_unknown_name():
  with pytest.raises(ValueError, match="LOC:9_9"):
    SMALL.index("LOC:9_9_Size:4")


@pytest.mark.parametrize("s, size, ax, ay, left, top", [
    (10, (13, 10), (2, 6, 10), (1, 4, 7), (-110, -106, -102), (-111, -108, -105)),
    (224, (298, 224), (49, 148, 247), (37, 111, 185), (-63, 36, 135), (-75, -1, 73)),
    (256, (341, 256), (56, 169, 282), (42, 127, 212), (-56, 57, 170), (-70, 15, 100)),
    (1024, (1365, 1024), (227, 682, 1137), (170, 511, 852), (115, 570, 1025), (58, 399, 740))])
def test_worked_examples(s, size, ax, ay, left, top):
  """docs/study.md §1.1 table, W x H = 500 x 375; the portrait image swaps the roles; traced form agrees."""
  out_h, out_w, tops, lefts = zoom_geometry(375, 500, s)
  assert (out_w, out_h) == size and lefts == left and tops == top
  assert tuple(v + 112 for v in lefts) == ax and tuple(v + 112 for v in tops) == ay
  p_h, p_w, p_tops, p_lefts = zoom_geometry(500, 375, s)
  assert (p_h, p_w, p_tops, p_lefts) == (out_w, out_h, lefts, tops)
  t_h, t_w, t_tops, t_lefts = zoom_geometry(jnp.int32(375), jnp.int32(500), jnp.int32(s))
  assert (int(t_h), int(t_w), tuple(np.asarray(t_tops)), tuple(np.asarray(t_lefts))) == (out_h, out_w, tops,
                                                                                          lefts)


def test_canvas_buckets():
  assert canvas_size(375, 500) == (384, 512)
  assert canvas_size(1, 1) == (256, 256)
  assert canvas_size(1, 2000) == (256, 2048)
  assert canvas_size(3000, 5000) == (3072, 5120)  # Beyond the buckets: multiples of 512, on demand.
  assert canvas_size(100, 100, buckets=(128,)) == (128, 128)
  with pytest.raises(ValueError, match="positive"):
    canvas_size(0, 5)
  canvas, hw = to_canvas(np.full((3, 5, 3), 7, np.uint8))
  assert canvas.shape == (256, 256, 3) and hw.tolist() == [3, 5]
  assert canvas[:3, :5].min() == 7 and canvas[3:].max() == 0 and canvas[:, 5:].max() == 0
  with pytest.raises(ValueError, match="does not fit"):
    to_canvas(np.zeros((300, 5, 3), np.uint8), (256, 256))


@pytest.mark.parametrize("image, match", [
    (np.zeros((8, 8), np.uint8), "shape"), (np.zeros((8, 8, 4), np.uint8), "shape"),
    (np.zeros((0, 8, 3), np.uint8), "empty"), (np.zeros((8, 8, 3), np.int32), "uint8"),
    (np.zeros((2, 8, 8, 3), np.uint8), "shape")])
def test_invalid_images(image, match):
  with pytest.raises(ValueError, match=match):
    zoom_crops(image, SMALL)


def test_invalid_batches():
  canvas = np.zeros((2, 256, 256, 3), np.uint8)
  with pytest.raises(ValueError, match="hw"):
    zoom_crops_batch(canvas, np.array([[10, 10]], np.int32), SMALL)
  with pytest.raises(ValueError, match="fit the canvas"):
    zoom_crops_batch(canvas, np.array([[10, 10], [300, 10]], np.int32), SMALL)
  with pytest.raises(ValueError, match="uint8"):
    zoom_crops_batch(canvas.astype(np.int16), np.array([[10, 10], [10, 10]], np.int32), SMALL)
  with pytest.raises(ValueError, match="takes uint8 canvases"):
    zoom_crops_batch(canvas.astype(np.float32), np.array([[10, 10], [10, 10]], np.int32), SMALL, impl="sparse")
  with pytest.raises(ValueError, match="impl"):
    zoom_crops_batch(canvas, np.array([[10, 10], [10, 10]], np.int32), SMALL, impl="fast")
  with pytest.raises(ValueError, match="out of range"):
    zoom_crops_batch(canvas, np.array([[10, 10], [10, 10]], np.int32), SMALL, transforms=[99])


# ------------------------------------------------------------------------------------------ PIL parity


@pytest.mark.parametrize("h, w", [(60, 90), (90, 61), (64, 64), (1, 1), (2, 3), (100, 301), (1, 2000),
                                  (2000, 1), (37, 250)])
def test_pil_parity_generated(h, w):
  """Portrait, landscape, square, tiny, sides not divisible by 3, extreme aspect ratios (strip fallback)."""
  img = _noise(h, w, seed=h * 7 + w)
  grid = SMALL if max(h, w) < 1000 else ZoomGrid((4, 10, 33), anchors=3, crop=32)
  _assert_pil_parity(zoom_crops(img, grid), pil_zoom_reference(img, grid))


def test_pil_parity_real_photos_and_batch(val100_dir):
  """Real photos, a grid crossing every code path, batched on one canvas == one by one == PIL."""
  grid = ZoomGrid((16, 192, 460, 1024), anchors=3, crop=224)  # Strip, 2 tap tiers, upscaling.
  photos = _photos(val100_dir, 3)
  hc = max(canvas_size(*p.shape[:2])[0] for p in photos)
  wc = max(canvas_size(*p.shape[:2])[1] for p in photos)
  pairs = [to_canvas(p, (hc, wc)) for p in photos]
  canvas, hw = np.stack([c for c, _ in pairs]), np.stack([h for _, h in pairs])
  batch = np.asarray(zoom_crops_batch(canvas, hw, grid))
  for img, got in zip(photos, batch):
    ref = pil_zoom_reference(img, grid)
    _assert_pil_parity(got, ref)
  # Each image's crops do not depend on its neighbours in the batch (same executable, permuted batch).
  swapped = np.asarray(zoom_crops_batch(canvas[::-1], hw[::-1], grid))
  np.testing.assert_array_equal(batch, swapped[::-1])


def test_full_paper_grid_on_a_photo(val100_dir):
  """The acceptance criterion on all 324 views of one real photo (default implementation)."""
  img = _photos(val100_dir, 1)[0]
  grid = ZoomGrid.paper()
  _assert_pil_parity(zoom_crops(img, grid), pil_zoom_reference(img, grid))


# ----------------------------------------------------------------------------- compile once, subsets, impls


@pytest.mark.parametrize("impl", ["sparse", "dense"])
def test_one_executable_for_all_sizes(impl):
  grid = ZoomGrid((5, 40, 90), anchors=2, crop=24)  # Used by no other test: nothing cached yet.
  before = zoom._TRACES[0]
  for h, w in [(17, 250), (250, 17), (1, 1), (200, 200), (256, 256)]:
    canvas, hw = to_canvas(_noise(h, w), (256, 256))
    zoom_crops_batch(canvas[None], hw[None], grid, impl=impl)
  assert zoom._TRACES[0] - before == 1


def test_sparse_equals_dense_and_subsets():
  imgs = [_noise(120, 170, 1), _noise(170, 99, 2)]
  pairs = [to_canvas(i, (256, 256)) for i in imgs]
  canvas, hw = np.stack([c for c, _ in pairs]), np.stack([h for _, h in pairs])
  sparse = np.asarray(zoom_crops_batch(canvas, hw, SMALL, impl="sparse"))
  dense = np.asarray(zoom_crops_batch(canvas, hw, SMALL, impl="dense", scale_batch=2))
  assert sparse.shape == (2, SMALL.num_transforms, 32, 32, 3) and sparse.dtype == np.float32
  # Both round to integers; the float32 sums may land on either side of a .5 tie on a few pixels.
  assert np.abs(sparse - dense).max() <= 1 and np.mean(sparse != dense) < 1e-4
  names = ["LOC:2_1_Size:33", "LOC:0_0_Size:4"]
  sub = np.asarray(zoom_crops_batch(canvas, hw, SMALL, transforms=names, impl="sparse"))
  np.testing.assert_array_equal(sub, sparse[:, [SMALL.index(n) for n in names]])
  assert SMALL.transform_indices(slice(9, 27)) == tuple(range(9, 27))
  bf16 = np.asarray(zoom_crops_batch(canvas, hw, SMALL, impl="dense", dtype=jnp.bfloat16))
  assert np.abs(bf16 - dense).mean() < 2.0


def test_black_outside_the_image():
  img = np.full((40, 40, 3), 200, np.uint8)
  crops = np.asarray(zoom_crops(img, ZoomGrid((20,), anchors=1, crop=32)))
  # A 20x20 resized image centred in a 32x32 window: 6-pixel black margins, flat grey inside.
  assert crops.shape == (1, 32, 32, 3)
  assert crops[0, :6].max() == 0 and crops[0, 26:].max() == 0 and crops[0, :, :6].max() == 0
  assert np.all(crops[0, 6:26, 6:26] == 200)


# ------------------------------------------------------------------------------------------ float images

# Tiny: a gradient test differentiates the whole grid (zoom-out, near-size and zoom-in scales, 2 x 2 anchors).
TINY = ZoomGrid((5, 9, 14), anchors=2, crop=6)


def test_float_image_is_the_uint8_grid_without_rounding():
  """The same resampling as the PIL path: on a uint8 image cast to float, at most the 8-bit rounding apart."""
  img = (60 + _noise(23, 31, seed=3).astype(np.int32) // 2).astype(np.uint8)  # In [60, 188]: nothing to clip.
  ref = np.asarray(zoom_crops(img, SMALL))
  got = zoom_crops(img.astype(np.float32), SMALL)
  assert got.dtype == jnp.float32 and got.shape == ref.shape
  got = np.asarray(got)
  assert np.any(got != np.round(got))  # Not rounded to whole grey levels ...
  inside = (ref > 0) & (ref < 255)  # ... nor clipped (the uint8 path clips bicubic overshoot at 0 and 255).
  diff = np.abs(got[inside] - ref[inside])  # PIL rounds the first pass to 8 bits: <= 0.5 times the second's gain.
  assert diff.max() <= 1.5 and diff.mean() < 0.35, (diff.max(), diff.mean())
  np.testing.assert_array_equal(got[ref == 0] == 0, ref[ref == 0] == 0)  # Black outside the image stays black.
  batch = zoom_crops_batch(jnp.asarray(to_canvas(img)[0], jnp.bfloat16)[None], to_canvas(img)[1][None], SMALL)
  assert batch.dtype == jnp.float32 and np.abs(np.asarray(batch[0]) - got).max() < 2.0  # bf16 pixels in


def test_grad_flows_through_the_grid_to_the_pixels():
  import jax  # pylint: disable=import-outside-toplevel
  rng = np.random.default_rng(0)
  img = rng.uniform(30, 220, (7, 10, 3)).astype(np.float32)
  weights = jnp.asarray(rng.normal(size=(TINY.num_transforms, 6, 6, 3)), jnp.float32)
  loss = jax.jit(lambda x: jnp.sum(zoom_crops(x, TINY) * weights))
  grad = np.asarray(jax.jit(jax.grad(lambda x: jnp.sum(zoom_crops(x, TINY) * weights)))(jnp.asarray(img)))
  assert grad.shape == img.shape and np.all(np.isfinite(grad))
  assert np.count_nonzero(grad) > 0.9 * grad.size  # Every pixel feeds some view of this grid.
  # Central differences: the grid is linear in float pixels, so they match the gradient up to float32 rounding.
  for i, j, c in [(0, 0, 0), (3, 4, 1), (6, 9, 2), (2, 7, 0), (5, 1, 1)]:
    step = np.zeros_like(img)
    step[i, j, c] = 1.0
    fd = (float(loss(jnp.asarray(img + step))) - float(loss(jnp.asarray(img - step)))) / 2.0
    assert abs(fd - grad[i, j, c]) <= 2e-3 * max(1.0, abs(grad[i, j, c])), (i, j, c, fd, grad[i, j, c])
