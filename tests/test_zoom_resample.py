"""resize_crop / resample_matrix: parity with PIL crop -> resize -> window crop, one executable for all sizes."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from zoomjax import resample
from zoomjax.zoom import resample_matrix, resize_crop

_CANVAS = 512


def _photo(val100_dir, index=6):
  path = sorted((val100_dir / "images").iterdir())[index]
  return np.asarray(Image.open(path).convert("RGB"))


def _canvas(img):
  canvas = np.zeros((_CANVAS, _CANVAS, 3), np.uint8)
  canvas[:img.shape[0], :img.shape[1]] = img
  return canvas


_TRACES = []
# Eager op-by-op dispatch is slow; every call below goes through one jitted wrapper.
_jit_resize_crop = jax.jit(resize_crop, static_argnames=("out_hw", "method", "pil_order", "dtype"))


@jax.jit
def _rrc(canvas, hw, box, out_size, offset):
  _TRACES.append(1)
  return (resize_crop(canvas, hw, box, out_size, offset, (224, 224), "bicubic"),
          resize_crop(canvas, hw, box, out_size, offset, (224, 224), "bilinear"))


def _cases(h, w, rng, n):
  cases = []
  for _ in range(n):
    bh, bw = int(rng.integers(1, h + 1)), int(rng.integers(1, w + 1))
    box = (int(rng.integers(0, h - bh + 1)), int(rng.integers(0, w - bw + 1)), bh, bw)
    out_size = tuple(int(v) for v in rng.integers(1, 420, 2))
    offset = tuple(int(v) for v in rng.integers(-40, 120, 2))
    cases.append((box, out_size, offset))
  # The TTA views: a full-image box resized to 256 then centre-cropped, and a RandomResizedCrop-like box.
  short = min(h, w)
  size = (256 * h // short, 256 * w // short)
  cases.append(((0, 0, h, w), size, ((size[0] - 224) // 2, (size[1] - 224) // 2)))
  cases.append(((h // 4, w // 5, h // 2, w // 3), (224, 224), (0, 0)))
  return cases


@pytest.mark.parametrize("index", [0, 4])
def test_resize_crop_matches_pil_on_photos(val100_dir, index):
  img = _photo(val100_dir, index)
  h, w = img.shape[:2]
  canvas = _canvas(img)
  rng = np.random.default_rng(index)
  worst = {"bicubic": [], "bilinear": []}
  for box, out_size, offset in _cases(h, w, rng, 5):
    ours = _rrc(canvas, np.array([h, w], np.int32), np.array(box, np.int32), np.array(out_size, np.int32),
                np.array(offset, np.int32))
    for method, got in zip(("bicubic", "bilinear"), ours):
      ref = resample.pil_resize_crop_reference(img, box, out_size, offset, (224, 224), method)
      diff = np.abs(np.asarray(got) - ref.astype(np.float32))
      assert diff.max() <= 2, (method, box, out_size, offset, diff.max())
      worst[method].append(diff.mean())
  for method, means in worst.items():
    assert np.mean(means) <= 0.02, (method, means)
  # Traced boxes and sizes: one executable for every case above (and the other photo's size).
  assert len(_TRACES) == 1


def test_resize_crop_tiny_and_extreme_boxes():
  rng = np.random.default_rng(1)
  img = rng.integers(0, 256, (3, 700, 3), dtype=np.uint8)
  canvas = np.zeros((8, 704, 3), np.uint8)
  canvas[:3, :700] = img
  for box, out_size, offset, out_hw in [((0, 0, 3, 700), (5, 9), (-2, -3), (8, 16)),
                                        ((1, 650, 1, 50), (40, 40), (0, 0), (32, 48)),
                                        ((0, 3, 2, 1), (1, 1), (0, 0), (2, 2))]:
    for method in ("bicubic", "bilinear"):
      got = np.asarray(_jit_resize_crop(canvas, (3, 700), box, out_size, offset, out_hw, method))
      ref = resample.pil_resize_crop_reference(img, box, out_size, offset, out_hw, method)
      assert got.shape == out_hw + (3,)
      np.testing.assert_allclose(got, ref, atol=1, err_msg=f"{method} {box} {out_size}")


def test_padding_never_bleeds_into_the_border():
  """A bright canvas margin beyond the true size must not change a single output pixel."""
  rng = np.random.default_rng(2)
  img = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)
  dark = np.zeros((64, 64, 3), np.uint8)
  dark[:37, :53] = img
  bright = np.full((64, 64, 3), 255, np.uint8)
  bright[:37, :53] = img
  args = ((37, 53), (0, 0, 37, 53), (20, 90), (0, 10), (24, 40))
  np.testing.assert_array_equal(_jit_resize_crop(dark, *args), _jit_resize_crop(bright, *args))


def test_resample_matrix_rows_are_normalised_and_zero_outside():
  matrix = jax.jit(resample_matrix, static_argnums=(0, 6, 7))  # Eager dispatch op by op is slow.
  m = np.asarray(matrix(16, 10, 2, 6, 12, -3, 20, "bicubic"))
  assert m.shape == (20, 16)
  sums = m.sum(1)
  np.testing.assert_allclose(sums[3:15], 1.0, atol=1e-5)  # Output rows 0..11 of the resized box.
  assert np.all(sums[:3] == 0) and np.all(sums[15:] == 0)
  assert np.all(m[:, :2] == 0) and np.all(m[:, 8:] == 0)  # Taps only inside the box [2, 8).


def test_pil_pass_order_rule():
  """Pillow >= 13 runs the vertical pass first when the height shrinks much more than the width."""
  assert bool(resample.pil_vertical_first((100, 100), (50, 76)))
  assert not bool(resample.pil_vertical_first((100, 100), (50, 75)))
  assert not bool(resample.pil_vertical_first((100, 100), (120, 300)))
  rng = np.random.default_rng(3)
  img = rng.integers(0, 256, (100, 100, 3), dtype=np.uint8)
  ref = np.asarray(Image.fromarray(img).resize((90, 40), Image.Resampling.BILINEAR))
  args = (img, (100, 100), (0, 0, 100, 100), (40, 90), (0, 0), (40, 90), "bilinear")
  got = np.asarray(_jit_resize_crop(*args))
  np.testing.assert_allclose(got, ref, atol=1)
  # Uniform noise with a 2.5x bilinear ratio makes many exact .5 ties that float32 cannot always break
  # PIL's way; the wrong pass order would give ~0.22.
  assert np.mean(np.abs(got - ref)) < 0.05
  assert np.mean(np.abs(np.asarray(_jit_resize_crop(*args, pil_order=False)) - ref)) > 0.1


def test_bf16_compute_dtype_is_close():
  rng = np.random.default_rng(4)
  img = rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)
  args = (img, (40, 60), (0, 0, 40, 60), (30, 45), (0, 0), (30, 45))
  f32 = np.asarray(_jit_resize_crop(*args))
  bf16 = np.asarray(_jit_resize_crop(*args, dtype=jnp.bfloat16))
  assert np.abs(f32 - bf16).max() <= 8


def test_bad_arguments():
  with pytest.raises(ValueError, match="method"):
    resize_crop(np.zeros((4, 4, 3), np.uint8), (4, 4), (0, 0, 4, 4), (2, 2), (0, 0), (2, 2), "lanczos")
  with pytest.raises(ValueError, match="canvas"):
    resize_crop(np.zeros((4, 4), np.uint8), (4, 4), (0, 0, 4, 4), (2, 2), (0, 0), (2, 2))


def test_short_side_resize_is_torchvisions_rule_on_ints_and_arrays():
  """Short side -> size, long side -> int(size * long / short); the same numbers from ints and traced arrays."""
  assert resample.short_side_resize(375, 500, 256) == (256, 341)
  assert resample.short_side_resize(500, 375, 256) == (341, 256)
  assert resample.short_side_resize(300, 300, 256) == (256, 256)
  assert resample.short_side_resize(np.int64(1), 2000, 10) == (10, 20000)
  rng = np.random.default_rng(0)
  hw = rng.integers(1, 3000, (200, 2))
  sizes = rng.integers(1, 1100, 200)
  want = np.array([(s, int(s * w / h)) if h <= w else (int(s * h / w), s) for (h, w), s in zip(hw, sizes)])
  ints = np.array([resample.short_side_resize(int(h), int(w), int(s)) for (h, w), s in zip(hw, sizes)])
  np.testing.assert_array_equal(ints, want)
  traced = jax.jit(lambda h, w, s: jnp.stack(resample.short_side_resize(h, w, s), -1))(hw[:, 0], hw[:, 1], sizes)
  assert traced.dtype == jnp.int32
  np.testing.assert_array_equal(traced, want)
