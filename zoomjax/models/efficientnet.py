"""EfficientNet-B0..B7 (torchvision) and timm's TF ports `tf_efficientnet_b0..b7` / `tf_efficientnet_l2_ns*`.

The same network as EfficientNet-Lite (`zoomjax.models.efficientnet_lite`: one module family, one set of
kernels and scaling rules) with the original EfficientNet's choices: SiLU, squeeze-excite (input width / 4),
stem and head widths scaled, depth scaling of every stage. The two checkpoint layouts differ in numerics:
  torchvision  symmetric k // 2 padding, BatchNorm eps 1e-5 (B0-B4) or 1e-3 (B5-B7, the lukemelas ports);
  timm tf_*    TF 'SAME' padding, BatchNorm eps 1e-3 (the official TF checkpoints).
Each registry entry carries its checkpoint's own eval preprocessing (torchvision's weights metadata, timm's
pretrained_cfg), read from torchvision 0.29.1 / timm 1.0.31.
"""
import functools
import math
from typing import Any, Dict

import numpy as np

from zoomjax.checkpoints import convert_timm, convert_torchvision
from zoomjax.models import registry
from zoomjax.models.efficientnet_lite import EfficientNetLite, round_filters
from zoomjax.models.preprocessing import IMAGENET_MEAN, IMAGENET_STD, Preprocessing

# name suffix -> (width, depth); the official compound-scaling coefficients.
SCALING = {"b0": (1.0, 1.0), "b1": (1.0, 1.1), "b2": (1.1, 1.2), "b3": (1.2, 1.4), "b4": (1.4, 1.8),
           "b5": (1.6, 2.2), "b6": (1.8, 2.6), "b7": (2.0, 3.1), "l2": (4.3, 5.3)}


def efficientnet(width: float = 1.0, depth: float = 1.0, layout: str = "torchvision",
                 bn_epsilon: float = 1e-5, **kw: Any) -> EfficientNetLite:
  """EfficientNet at (width, depth) in `layout` 'torchvision' (symmetric padding) or 'tf' (TF 'SAME').

  Stem `round_filters(32)`; head `4 * round_filters(320)` (torchvision) or `round_filters(1280)` (timm):
  equal for every published variant, not at every tiny test width.
  """
  if layout not in ("torchvision", "tf"):
    raise ValueError(f"layout must be 'torchvision' or 'tf', got {layout!r}")
  head = 4 * round_filters(320, width) if layout == "torchvision" else round_filters(1280, width)
  kw.setdefault("stem_features", round_filters(32, width))
  kw.setdefault("head_features", head)
  return EfficientNetLite(width=width, depth=depth, activation="silu", se_ratio=0.25, bn_epsilon=bn_epsilon,
                          padding="symmetric" if layout == "torchvision" else "same", scale_first_last=True,
                          **kw)


def convert_torchvision_layout(flat: Dict[str, np.ndarray]) -> Dict[str, Any]:
  """torchvision names (`features.*`), or timm's own non-TF `efficientnet_b*` names (`conv_stem.*`: same
  network, same padding and eps)."""
  if "conv_stem.weight" in flat:
    return convert_timm.convert_efficientnet(flat)
  return convert_torchvision.convert_efficientnet(flat)


def timm_preprocessing(size: int, crop_pct: float) -> Preprocessing:
  """timm's eval transform: short side floor(size / crop_pct), bicubic, centre crop, ImageNet mean/std."""
  return Preprocessing(input_size=size, resize_size=math.floor(size / crop_pct), resize_method="bicubic",
                       mean=IMAGENET_MEAN, std=IMAGENET_STD)


# torchvision's IMAGENET1K_V1 weights: file, crop, resize (all bicubic), BN eps.
TORCHVISION = {
    "b0": ("efficientnet_b0_rwightman-7f5810bc.pth", 224, 256, 1e-5),
    "b1": ("efficientnet_b1_rwightman-bac287d4.pth", 240, 256, 1e-5),
    "b2": ("efficientnet_b2_rwightman-c35c1473.pth", 288, 288, 1e-5),
    "b3": ("efficientnet_b3_rwightman-b3899882.pth", 300, 320, 1e-5),
    "b4": ("efficientnet_b4_rwightman-23ab8bcd.pth", 380, 384, 1e-5),
    "b5": ("efficientnet_b5_lukemelas-1a07897c.pth", 456, 456, 1e-3),
    "b6": ("efficientnet_b6_lukemelas-24a108a5.pth", 528, 528, 1e-3),
    "b7": ("efficientnet_b7_lukemelas-c5b4e57e.pth", 600, 600, 1e-3),
}
# timm name -> (scaling, default pretrained tag, input size, crop_pct) from timm 1.0.31's pretrained_cfg.
TIMM = {
    "tf_efficientnet_b0": ("b0", "ns_jft_in1k", 224, 0.875),
    "tf_efficientnet_b1": ("b1", "ns_jft_in1k", 240, 0.882),
    "tf_efficientnet_b2": ("b2", "ns_jft_in1k", 260, 0.890),
    "tf_efficientnet_b3": ("b3", "ns_jft_in1k", 300, 0.904),
    "tf_efficientnet_b4": ("b4", "ns_jft_in1k", 380, 0.922),
    "tf_efficientnet_b5": ("b5", "ns_jft_in1k", 456, 0.934),
    "tf_efficientnet_b6": ("b6", "ns_jft_in1k", 528, 0.942),
    "tf_efficientnet_b7": ("b7", "ns_jft_in1k", 600, 0.949),
    "tf_efficientnet_l2_ns": ("l2", "ns_jft_in1k", 800, 0.96),
    "tf_efficientnet_l2_ns_475": ("l2", "ns_jft_in1k_475", 475, 0.936),
}
# Exact 'params' counts (BN running statistics excluded), equal to torchvision 0.29.1's / timm 1.0.31's.
NUM_PARAMS = {"b0": 5_288_548, "b1": 7_794_184, "b2": 9_109_994, "b3": 12_233_232, "b4": 19_341_616,
              "b5": 30_389_784, "b6": 43_040_704, "b7": 66_347_960, "l2": 480_309_308}

for _v, (_file, _crop, _resize, _eps) in TORCHVISION.items():
  registry.register(registry.ModelSpec(
      name=f"efficientnet_{_v}",
      make_module=functools.partial(efficientnet, width=SCALING[_v][0], depth=SCALING[_v][1],
                                  layout="torchvision", bn_epsilon=_eps),
      preprocessing=Preprocessing(input_size=_crop, resize_size=_resize, resize_method="bicubic",
                                  mean=IMAGENET_MEAN, std=IMAGENET_STD),
      convert=convert_torchvision_layout,
      checkpoint_hint=(f"Pass torchvision's IMAGENET1K_V1 file `{_file}` "
                       f"(https://download.pytorch.org/models/{_file}); timm `efficientnet_{_v}` "
                       "safetensors load too (their own preprocessing is timm's)."),
      num_params=NUM_PARAMS[_v]))

for _name, (_v, _tag, _size, _crop_pct) in TIMM.items():
  _hub = f"{_name.replace('_ns_475', '').replace('_ns', '')}.{_tag}"
  registry.register(registry.ModelSpec(
      name=_name,
      make_module=functools.partial(efficientnet, width=SCALING[_v][0], depth=SCALING[_v][1], layout="tf",
                                  bn_epsilon=1e-3),
      preprocessing=timm_preprocessing(_size, _crop_pct),
      convert=convert_timm.convert_efficientnet,
      checkpoint_hint=(f"Pass timm's `{_hub}` `model.safetensors` (https://huggingface.co/timm/{_hub}); "
                       "other tags of the same architecture load too, but their preprocessing may differ."),
      num_params=NUM_PARAMS[_v]))
