"""A classifier of your own for zoomjax: a small Flax CNN behind a factory (docs/own-model.md)."""
from typing import Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from zoomjax import models


class SmallCNN(nn.Module):
  """Three conv blocks and a linear head; returns (logits, intermediates) like every zoomjax model."""
  num_classes: int = 1000
  bn_prior_strength: Optional[float] = None  # MEMO's prior-mode BatchNorm reads it (None: eval mode).

  @nn.compact
  def __call__(self, x):
    for width in (16, 32, 64):
      x = nn.relu(models.BatchNorm(prior_strength=self.bn_prior_strength)(nn.Conv(width, (3, 3), (2, 2))(x)))
    features = jnp.mean(x, axis=(1, 2))
    return nn.Dense(self.num_classes)(features), {"features": features}


def make_model() -> models.ModelBundle:
  """The factory: no arguments -> a ModelBundle. Seeded random weights here; restore your trained ones instead."""
  module = SmallCNN()
  variables = jax.jit(module.init)(jax.random.PRNGKey(0), jnp.zeros((1, 224, 224, 3)))
  preprocessing = models.Preprocessing(input_size=224, resize_size=256, resize_method="bilinear",
                                       mean=models.IMAGENET_MEAN, std=models.IMAGENET_STD)
  return models.ModelBundle("small_cnn", module, variables, preprocessing, num_classes=1000)
