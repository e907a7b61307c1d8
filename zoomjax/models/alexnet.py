"""AlexNet (torchvision layout)."""
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from zoomjax.checkpoints.convert_torchvision import convert_alexnet
from zoomjax.models import registry
from zoomjax.models.layers import adaptive_avg_pool, classifier_head
from zoomjax.models.preprocessing import TORCHVISION_PREPROCESSING


class AlexNet(nn.Module):
  """torchvision AlexNet (the 64-192-384-256-256 "one weird trick" variant). Returns (logits, intermediates).

  intermediates: `feature_map` (last conv block after max-pool, (B, h, w, widths[-1])) and `pre_logits` (fc7,
  (B, hidden)).
  """
  num_classes: int = 1000
  widths: Sequence[int] = (64, 192, 384, 256, 256)  # conv1..conv5 (narrower for tests).
  hidden: int = 4096  # fc6 / fc7.
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array):
    conv = lambda n, k, s, p, name: nn.Conv(n, (k, k), (s, s), padding=((p, p), (p, p)), dtype=self.dtype,
                                            param_dtype=jnp.float32, name=name)
    pool = lambda y: nn.max_pool(y, (3, 3), (2, 2), padding="VALID")
    x = x.astype(self.dtype)
    w1, w2, w3, w4, w5 = self.widths
    x = pool(nn.relu(conv(w1, 11, 4, 2, "conv1")(x)))
    x = pool(nn.relu(conv(w2, 5, 1, 2, "conv2")(x)))
    x = nn.relu(conv(w3, 3, 1, 1, "conv3")(x))
    x = nn.relu(conv(w4, 3, 1, 1, "conv4")(x))
    x = pool(nn.relu(conv(w5, 3, 1, 1, "conv5")(x)))
    out = {"feature_map": x}
    x = adaptive_avg_pool(x, (6, 6))
    logits, out["pre_logits"] = classifier_head(x, self.num_classes, self.dtype, self.hidden)
    return logits.astype(jnp.float32), out


# --------------------------------------------------------------------------------------------- registry

registry.register(registry.ModelSpec(
    name="alexnet",
    make_module=AlexNet,
    preprocessing=TORCHVISION_PREPROCESSING,
    convert=convert_alexnet,
    checkpoint_hint=("Pass torchvision's IMAGENET1K_V1 file `alexnet-owt-7be5be79.pth` "
                     "(https://download.pytorch.org/models/alexnet-owt-7be5be79.pth)."),
    num_params=61_100_840))
