"""Test-time adaptation as pure JAX functions: MEMO, MEMO + RRC (the paper's zoom TTA) and zoom aggregation.

Every method is built by a constructor that returns an episode, `episode(variables, image, hw, key) -> logits`,
and every function here takes its arguments in that one order: (variables,) image(s), hw(s), key(s).

  entropy   marginal_entropy: MEMO's loss.
  augment   views `(image, hw, key) -> pixels`: RandomResizedCrop (torchvision rule, PIL resampling), the
            standard view, AugMix's 9 PIL ops.
  memo      make_memo / make_baseline -> episodes; map_images runs one over a batch (images, hws, keys).
  zoom_tta  make_zoom_tta: mean / max aggregation over zoom views (grid_views: those of a zoom grid).
Prior-mode BatchNorm lives in zoomjax.models.BatchNorm (models expose `bn_prior_strength`).
"""
from zoomjax.tta.augment import (AUGMIX_FILL, AUGMIX_OPS, RRC_RATIO, RRC_SCALE, Augmentation, as_hw, augmix,
                                 augmix_augmentation, augmix_chain, random_resized_crop, rrc_augmentation,
                                 sample_rrc_box, standard_view)
from zoomjax.tta.entropy import marginal_entropy
from zoomjax.tta.memo import (MEMO_LR, MEMO_PRIOR_STRENGTH, MEMO_STEPS, MEMO_VIEWS, EpisodeFn, episode_keys,
                              make_baseline, make_memo, map_images, map_images_sequential, prior_mode_note,
                              with_bn_prior)
from zoomjax.tta.zoom_tta import AGGREGATIONS, CropsFn, aggregate, grid_views, make_zoom_tta

__all__ = [
    # Methods: each constructor returns an episode (variables, image, hw, key) -> logits.
    "make_memo", "make_baseline", "make_zoom_tta", "grid_views", "aggregate", "AGGREGATIONS",
    # Running episodes over many images.
    "map_images", "map_images_sequential", "episode_keys",
    # MEMO's pieces.
    "marginal_entropy", "with_bn_prior", "prior_mode_note", "MEMO_LR", "MEMO_VIEWS", "MEMO_STEPS",
    "MEMO_PRIOR_STRENGTH",
    # Views (augmentations): (image, hw, key) -> pixels.
    "rrc_augmentation", "augmix_augmentation", "random_resized_crop", "augmix", "augmix_chain", "standard_view",
    "sample_rrc_box", "as_hw", "RRC_SCALE", "RRC_RATIO", "AUGMIX_FILL", "AUGMIX_OPS",
    # Types.
    "EpisodeFn", "Augmentation", "CropsFn",
]
