"""Model zoo: `load(name, checkpoint)` -> ModelBundle; `list_models()` names what is registered.

  bundle = load("efficientnet_lite0")                        # packaged weights; or load(name, "file.pth")
  bundle = from_config(config.model)                         # the same, from a job's `model` block
  bundle = load("my_pkg.my_module:make_model")               # a model of your own: a factory -> ModelBundle
  register("my_cnn", make_model); load("my_cnn")             # ... or registered under a name
  logits, inter = bundle.module.apply(bundle.variables, bundle.preprocessing.normalize(pixels))

Importing this package registers every model: each model module calls `registry.register` at import.
"""
from zoomjax.models.bundle import IMAGENET_MEAN, IMAGENET_STD, ModelBundle, Preprocessing
from zoomjax.models.layers import BatchNorm
from zoomjax.models.registry import (Factory, ModelSpec, count_params, create, from_config, get_spec, is_factory,
                                     list_models, load, register, variable_shapes)

# Model modules that register themselves.
from zoomjax.models import efficientnet_lite  # noqa: E402,F401  efficientnet_lite0/1/2, efficientnet_lite_tiny
from zoomjax.models import resnet, vit, alexnet, vgg, clip  # noqa: E402,F401
from zoomjax.models import clip_families  # noqa: E402,F401  clip_vit_* (OpenAI), openclip_vit_* zero-shot classifiers
from zoomjax.models import clip_resnet  # noqa: E402,F401  clip_rn50/rn101/rn50x4/rn50x16/rn50x64 zero-shot
from zoomjax.models import siglip  # noqa: E402,F401  siglip_* / siglip2_* zero-shot classifiers (big_vision)
from zoomjax.models import siglip_naflex  # noqa: E402,F401  siglip2_b16_naflex / siglip2_so400m16_naflex zero-shot
from zoomjax.models import efficientnet  # noqa: E402,F401  efficientnet_b0..b7, tf_efficientnet_b0..b7 / l2_ns(_475)
from zoomjax.models import convnext  # noqa: E402,F401  convnext_tiny/small/base/large
from zoomjax.models import mobilenet_v3  # noqa: E402,F401  mobilenet_v3_small/large(_v2)
from zoomjax.models import maxvit  # noqa: E402,F401  maxvit_t
from zoomjax.models import swin  # noqa: E402,F401  swin_t/s/b
from zoomjax.models import eva  # noqa: E402,F401  eva02_*_patch14_* (timm EVA-02 ImageNet-1k classifiers)
from zoomjax.models import clip_coca  # noqa: E402,F401  openclip_coca_vit_b32/l14 zero-shot (contrastive towers)
from zoomjax.models import clip_convnext  # noqa: E402,F401  openclip_convnext_* zero-shot classifiers
from zoomjax.models import clip_eva  # noqa: E402,F401  openclip_eva02_* zero-shot classifiers (EVA-02 CLIP)

__all__ = [
    "load", "from_config", "register", "list_models", "is_factory", "Factory",
    "ModelBundle", "Preprocessing", "IMAGENET_MEAN", "IMAGENET_STD", "BatchNorm",
    "ModelSpec", "get_spec", "create", "variable_shapes", "count_params",
]
