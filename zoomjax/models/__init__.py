"""Model zoo: `load(name, checkpoint)` -> ModelBundle; `list_models()` names what is registered.

Importing this package registers every model: each model module calls `registry.register` at import.
"""
from zoomjax.models.registry import (ModelSpec, count_params, create, get_spec, list_models, load,
                                     register, variable_shapes)

# Model modules that register themselves.
from zoomjax.models import efficientnet_lite  # noqa: E402,F401  efficientnet_lite0/1/2, efficientnet_lite_tiny
# --- Registered by the ResNet/ViT/AlexNet/VGG/CLIP helper: add one import line per module below. ---
from zoomjax.models import resnet, vit, alexnet, vgg, clip  # noqa: E402,F401
from zoomjax.models import efficientnet  # noqa: E402,F401  efficientnet_b0..b7, tf_efficientnet_b0..b7 / l2_ns(_475)
from zoomjax.models import convnext  # noqa: E402,F401  convnext_tiny/small/base/large
from zoomjax.models import mobilenet_v3  # noqa: E402,F401  mobilenet_v3_small/large(_v2)
from zoomjax.models import swin  # noqa: E402,F401  swin_t/s/b
from zoomjax.models import maxvit  # noqa: E402,F401  maxvit_t

__all__ = ["ModelSpec", "count_params", "create", "get_spec", "list_models", "load", "register",
           "variable_shapes"]
