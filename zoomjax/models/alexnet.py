"""AlexNet (torchvision layout) and torch-exact adaptive average pooling, shared with VGG."""
from typing import Any, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from zoomjax.checkpoints.convert_torchvision import convert_alexnet
from zoomjax.models import registry
from zoomjax.models.resnet import TORCHVISION_PREPROCESSING


def adaptive_pool_matrix(in_size: int, out_size: int) -> np.ndarray:
  """(out, in) averaging matrix of torch's AdaptiveAvgPool along one axis.

  torch's window i is [floor(i*in/out), ceil((i+1)*in/out)); windows overlap or repeat when in < out.
  Shapes are static, so this is a constant under jit.
  """
  m = np.zeros((out_size, in_size), np.float32)
  for i in range(out_size):
    start = (i * in_size) // out_size
    end = -((-(i + 1) * in_size) // out_size)
    m[i, start:end] = 1.0 / (end - start)
  return m


def adaptive_avg_pool(x: jax.Array, output_size: Tuple[int, int]) -> jax.Array:
  """torch.nn.AdaptiveAvgPool2d for NHWC inputs (identity when the size already matches)."""
  h, w = x.shape[1:3]
  oh, ow = output_size
  if (h, w) == (oh, ow):
    return x
  ph = jnp.asarray(adaptive_pool_matrix(h, oh))
  pw = jnp.asarray(adaptive_pool_matrix(w, ow))
  y = jnp.einsum("oh,bhwc->bowc", ph, x.astype(jnp.float32), precision=jax.lax.Precision.HIGHEST)
  y = jnp.einsum("pw,bowc->bopc", pw, y, precision=jax.lax.Precision.HIGHEST)
  return y.astype(x.dtype)


def classifier_head(x: jax.Array, num_classes: int, dtype: Any, hidden: int = 4096):
  """torchvision's AlexNet/VGG classifier fc6 -> ReLU -> fc7 -> ReLU -> fc8 (dropout is inert at eval).

  Call from inside a compact `__call__`: the Dense layers become `fc6`, `fc7`, `fc8` of the caller.
  Returns (logits, pre_logits = fc7 activations).
  """
  dense = lambda n, name: nn.Dense(n, dtype=dtype, param_dtype=jnp.float32, name=name)
  # NHWC flatten; the converter permutes torch's NCHW-flattened fc6 weight to match.
  x = x.reshape(x.shape[0], -1)
  x = nn.relu(dense(hidden, "fc6")(x))
  pre_logits = nn.relu(dense(hidden, "fc7")(x))
  return dense(num_classes, "fc8")(pre_logits), pre_logits


class AlexNet(nn.Module):
  """torchvision AlexNet (the 64-192-384-256-256 "one weird trick" variant). Returns (logits, intermediates).

  intermediates: `feature_map` (last conv block after max-pool, (B, h, w, 256)) and `pre_logits` (fc7, (B, 4096)).
  """
  num_classes: int = 1000
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array):
    conv = lambda n, k, s, p, name: nn.Conv(n, (k, k), (s, s), padding=((p, p), (p, p)), dtype=self.dtype,
                                            param_dtype=jnp.float32, name=name)
    pool = lambda y: nn.max_pool(y, (3, 3), (2, 2), padding="VALID")
    x = x.astype(self.dtype)
    x = pool(nn.relu(conv(64, 11, 4, 2, "conv1")(x)))
    x = pool(nn.relu(conv(192, 5, 1, 2, "conv2")(x)))
    x = nn.relu(conv(384, 3, 1, 1, "conv3")(x))
    x = nn.relu(conv(256, 3, 1, 1, "conv4")(x))
    x = pool(nn.relu(conv(256, 3, 1, 1, "conv5")(x)))
    out = {"feature_map": x}
    x = adaptive_avg_pool(x, (6, 6))
    logits, out["pre_logits"] = classifier_head(x, self.num_classes, self.dtype)
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
