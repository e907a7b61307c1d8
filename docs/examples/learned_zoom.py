"""Learning where to look: a crop's centre and scale optimised by gradient descent through `zoom.zoom_crop`.

A synthetic photo holds a red disc away from its centre. A tiny Flax classifier (a centre-weighted mean colour
and a linear head, hand-set so that class 0 means "red in the middle of the view") scores a 48 x 48 view. The
view starts at the image centre and covers the whole image (the short side resized to the image's own); Adam
then moves the centre and the zoom to minimise the classifier's cross-entropy for class 0. Gradients flow from
the loss through the model and the bicubic resampling to the centre and the scale.

Run: python docs/examples/learned_zoom.py [--steps N]   (docs/zoom.md explains it; tests/test_zoom_crop.py runs it)
"""
import argparse
from typing import Dict, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from zoomjax import zoom

CROP = 48
DISC = (70.0, 95.0, 12.0)  # Centre row, centre column and radius of the red disc, in image pixels.


def make_image(h: int = 96, w: int = 128) -> np.ndarray:
  """A grey noisy (h, w, 3) float image in [0, 255] with a red disc at DISC."""
  rng = np.random.default_rng(0)
  image = 60.0 + 20.0 * rng.standard_normal((h, w, 3))
  yy, xx = np.mgrid[:h, :w] + 0.5
  disc = (yy - DISC[0]) ** 2 + (xx - DISC[1]) ** 2 <= DISC[2] ** 2
  image[disc] = (230.0, 30.0, 30.0)
  return np.clip(image, 0, 255).astype(np.float32)


class TinyColourNet(nn.Module):
  """(B, crop, crop, 3) pixels in [0, 255] -> (logits (B, 3), intermediates): red, green, blue in the middle."""

  @nn.compact
  def __call__(self, x):
    n = x.shape[1]
    r = (jnp.arange(n) + 0.5 - n / 2) / (n / 4)  # A Gaussian window of sigma = crop / 4.
    window = jnp.exp(-0.5 * (r[:, None] ** 2 + r[None, :] ** 2))
    colour = jnp.einsum("bhwc,hw->bc", x / 255.0, window / window.sum())
    return nn.Dense(3)(colour), {"colour": colour}


def tiny_model() -> Tuple[nn.Module, Dict]:
  """The module and hand-set variables: logit_c = 8 * (2 * colour_c - sum of colours)."""
  kernel = 8.0 * (2.0 * np.eye(3) - np.ones((3, 3)))
  return TinyColourNet(), {"params": {"Dense_0": {"kernel": jnp.asarray(kernel, jnp.float32),
                                                  "bias": jnp.zeros(3, jnp.float32)}}}


def optimise(steps: int = 60, learning_rate: float = 0.05) -> Dict[str, float]:
  """Adam on (centre, log scale) of one view; returns the start and end of the run."""
  image = jnp.asarray(make_image())
  module, variables = tiny_model()
  short = min(image.shape[:2])

  @jax.jit
  def loss_fn(view_params):
    view = zoom.zoom_crop(image, jnp.exp(view_params["log_scale"]), view_params["center"], crop=CROP)
    logits, _ = module.apply(variables, view[None])
    return optax.softmax_cross_entropy_with_integer_labels(logits, jnp.array([0]))[0]

  params = {"center": jnp.array([0.5, 0.5]), "log_scale": jnp.log(jnp.float32(short))}
  optimiser = optax.adam(learning_rate)
  state = optimiser.init(params)

  @jax.jit
  def step(params, state):
    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, state = optimiser.update(grads, state, params)
    return optax.apply_updates(params, updates), state, loss

  first = float(loss_fn(params))
  for _ in range(steps):
    params, state, _ = step(params, state)
  h, w = image.shape[:2]
  scale = float(jnp.exp(params["log_scale"]))
  cy, cx = (float(v) for v in params["center"])
  return {"loss_start": first, "loss_end": float(loss_fn(params)), "scale_start": float(short), "scale_end": scale,
          # The view's centre in the original image's pixels (the centre is a fraction of the resized image).
          "row_start": 0.5 * h, "col_start": 0.5 * w, "row_end": cy * h, "col_end": cx * w}


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--steps", type=int, default=60, help="Adam steps (default 60)")
  args = parser.parse_args()
  out = optimise(args.steps)
  print(f"loss {out['loss_start']:.3g} -> {out['loss_end']:.3g}")
  print(f"view centre (row, col) ({out['row_start']:.1f}, {out['col_start']:.1f}) -> "
        f"({out['row_end']:.1f}, {out['col_end']:.1f}); red disc at ({DISC[0]:.1f}, {DISC[1]:.1f})")
  print(f"scale (short side) {out['scale_start']:.1f} -> {out['scale_end']:.1f}")


if __name__ == "__main__":
  main()
