"""zoom.zoom_crop: the grid's view at the grid's points, gradients against central differences, the example runs."""
import functools
import importlib.util
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from zoomjax import zoom

EXAMPLE = pathlib.Path(__file__).resolve().parents[1] / "docs" / "examples" / "learned_zoom.py"
CROP = 32
# |zoom_crop - grid view| on [0, 255] images: the two build the same weights with sums in another order, so a
# weight can round to the neighbouring 22-bit step (2^-22); measured at most 0.0011.
GRID_ATOL = 3e-3


def _image(h, w, seed=0):
  return np.random.default_rng(seed).uniform(0, 255, (h, w, 3)).astype(np.float32)


GRID = zoom.ZoomGrid((20, 37, 64, 101), anchors=3, crop=CROP)


@pytest.fixture(scope="module")
def grid_views():
  """{(h, w): (image, the grid's float views)}: portrait, landscape, square."""
  out = {}
  for h, w in ((50, 70), (61, 40), (48, 48)):
    image = _image(h, w, seed=h + w)
    out[(h, w)] = image, np.asarray(zoom.zoom_crops(image, GRID))
  return out


@pytest.mark.parametrize("h, w, long_side", [(50, 70, "floor"), (61, 40, "floor"), (48, 48, "exact")])
def test_equals_grid_views_at_grid_points(grid_views, h, w, long_side):
  """Every anchor of downscaling, near-identity and upscaling scales; portrait, landscape (long side floored by the
  grid: 'floor' is needed) and square ('exact' is the same there)."""
  image, crops = grid_views[(h, w)]
  centers = np.array([zoom.anchor_center(h, w, s, r, c, crop=CROP) for s, r, c in GRID.transforms], np.float32)
  scales = np.array([s for s, _, _ in GRID.transforms], np.float32)
  views = jax.vmap(lambda s, c: zoom.zoom_crop(image, s, c, crop=CROP, long_side=long_side))(scales, centers)
  err = np.abs(np.asarray(views) - crops).max(axis=(1, 2, 3))
  assert err.max() <= GRID_ATOL, dict(zip(GRID.names, err))
  assert np.abs(crops).max() > 100  # Not comparing black with black.


def test_floor_differs_from_exact_where_torchvision_floors(grid_views):
  """50 x 70 at S=37: the grid's long side is 51 (51.8 floored): 'exact' is a slightly different view."""
  image, crops = grid_views[(50, 70)]
  center = zoom.anchor_center(50, 70, 37, 1, 1, crop=CROP)
  exact = np.asarray(zoom.zoom_crop(image, 37, center, crop=CROP))
  assert np.abs(exact - crops[GRID.index("LOC:1_1_Size:37")]).max() > 1.0


@functools.partial(jax.jit, static_argnames="long_side")
def _functional(image, weights, scale, center, long_side):
  """A random linear functional of the view: a scalar whose gradient tests every pixel's."""
  return jnp.sum(zoom.zoom_crop(image, scale, center, crop=16, long_side=long_side) * weights)


_grad = jax.jit(jax.grad(_functional, argnums=(0, 2, 3)), static_argnames="long_side")


@pytest.mark.parametrize("long_side, scale", [("exact", 43.3), ("exact", 97.6), ("floor", 43.3)])
def test_gradients_match_central_differences(long_side, scale):
  """d/d scale and d/d centre, away from the grid's integer points (where the black border's coverage has a kink)
  and, for 'floor', within one step of the floored long side. Relative tolerance 2 %: float32 central
  differences of a sum of about 800 terms."""
  image = jnp.asarray(_image(50, 70, seed=3))
  weights = jnp.asarray(np.random.default_rng(1).standard_normal((16, 16, 3)), jnp.float32)
  f = lambda s, c: float(_functional(image, weights, jnp.float32(s), c, long_side))
  center = jnp.array([0.43, 0.61], jnp.float32)
  _, g_s, g_c = _grad(image, weights, jnp.float32(scale), center, long_side)
  eps = 0.05  # Pixels of scale; the long side moves by 0.07 and stays inside one floor step.
  fd_s = (f(scale + eps, center) - f(scale - eps, center)) / (2 * eps)
  assert abs(float(g_s) - fd_s) <= 0.02 * abs(fd_s), (float(g_s), fd_s)
  for axis in range(2):
    step = jnp.zeros(2).at[axis].set(1e-3)  # About 0.05 to 0.14 resized pixel.
    fd_c = (f(scale, center + step) - f(scale, center - step)) / 2e-3
    assert abs(float(g_c[axis]) - fd_c) <= 0.02 * abs(fd_c), (axis, float(g_c[axis]), fd_c)
  assert abs(fd_s) > 1.0 and min(abs(float(v)) for v in g_c) > 1.0  # Gradients that say something.


def test_linear_in_the_pixels_and_gradient_reaches_them():
  image, other = (jnp.asarray(_image(50, 70, seed=k)) for k in (5, 6))
  weights = jnp.asarray(np.random.default_rng(2).standard_normal((16, 16, 3)), jnp.float32)
  f = lambda x: float(_functional(x, weights, jnp.float32(43.3), jnp.array([0.43, 0.61]), "exact"))
  np.testing.assert_allclose(f(2.0 * image - 0.5 * other), 2.0 * f(image) - 0.5 * f(other), rtol=1e-5)
  grad = _grad(image, weights, jnp.float32(43.3), jnp.array([0.43, 0.61]), "exact")[0]
  # Linear: the gradient's inner product with any image is the functional of that image's view.
  np.testing.assert_allclose(float(jnp.sum(grad * other)), f(other), rtol=1e-4)


def test_outside_is_black_and_edge_is_covered_fraction():
  """A centre far outside shows black; half a pixel past the resized border the edge pixel is half covered."""
  image = np.full((50, 70, 3), 100.0, np.float32)  # At S=50 the resized image is the image itself.
  assert float(jnp.abs(zoom.zoom_crop(image, 50, (3.0, 3.0), crop=16)).max()) == 0.0
  # Columns [61.5, 77.5) of a 70-pixel side: pixel 8 straddles 70 (half inside), pixels 9.. are outside.
  row = np.asarray(zoom.zoom_crop(image, 50, (0.5, 69.5 / 70), crop=16))[4, :, 0]
  np.testing.assert_allclose(row, [100] * 8 + [50] + [0] * 7, atol=1e-3)


def test_jit_vmap_and_errors():
  image = _image(50, 70)
  centers = jnp.array([[0.3, 0.3], [0.5, 0.6]])
  batched = jax.vmap(lambda c: zoom.zoom_crop(image, 45.0, c, crop=16))(centers)
  for i in range(2):
    np.testing.assert_allclose(np.asarray(batched[i]), np.asarray(zoom.zoom_crop(image, 45.0, centers[i], crop=16)),
                               atol=1e-3)
  with pytest.raises(ValueError, match="long_side"):
    zoom.zoom_crop(image, 45.0, (0.5, 0.5), long_side="round")
  with pytest.raises(ValueError, match="center"):
    zoom.zoom_crop(image, 45.0, (0.5, 0.5, 0.5))
  with pytest.raises(ValueError, match="crop"):
    zoom.zoom_crop(image, 45.0, (0.5, 0.5), crop=0)
  with pytest.raises(ValueError, match="RGB"):
    zoom.zoom_crop(image[..., 0], 45.0, (0.5, 0.5))


def test_learned_zoom_example_finds_the_object():
  """docs/examples/learned_zoom.py: gradient descent moves the view onto the red disc and lowers the loss."""
  spec = importlib.util.spec_from_file_location("learned_zoom", EXAMPLE)
  example = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(example)
  out = example.optimise(steps=60)
  row, col, _ = example.DISC
  assert out["loss_end"] < 0.01 * out["loss_start"]
  assert abs(out["row_end"] - row) < 4 and abs(out["col_end"] - col) < 4, out
  assert out["scale_end"] > out["scale_start"]  # Zooms in on the disc.
