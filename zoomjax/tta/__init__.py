"""Test-time adaptation as pure JAX functions: MEMO, MEMO + RRC (the paper's zoom TTA) and zoom aggregation.

Every method is built by a constructor that returns an episode, `episode(variables, image, hw, key) -> logits`,
and every function here takes its arguments in that one order: (variables,) image(s), hw(s), key(s).

  entropy   marginal_entropy: MEMO's loss.
  augment   views `(image, hw, key) -> pixels`: RandomResizedCrop (torchvision rule, PIL resampling), the
            standard view, AugMix's 9 PIL ops.
  memo      make_memo / make_baseline -> episodes; map_images runs one over a batch (images, hws, keys).
  zoom_tta  make_zoom_tta / aggregate: mean, max, vote, geometric, entropy-weighted, TPT and ZERO aggregation
            over zoom views (grid_views: those of a zoom grid).
  clip_tta  CLIP's test-time methods: TPT, ZERO, MTA (episodes over augmented or zoom views), TDA (a stream).
  online    online adaptation over a stream of batches, `StreamMethod(init, step)`: source, BN-adapt, TENT,
            EATA, SAR; run_stream scans a stream, sharded_step splits each batch over a device mesh.
Prior-mode BatchNorm lives in zoomjax.models.BatchNorm (models expose `bn_prior_strength`).
"""
from zoomjax.tta.augment import (AUGMIX_FILL, AUGMIX_OPS, RRC_RATIO, RRC_SCALE, Augmentation, as_hw, augmix,
                                 augmix_augmentation, augmix_chain, random_resized_crop, rrc_augmentation,
                                 sample_rrc_box, standard_view)
from zoomjax.tta.clip_tta import (ClipText, TdaConfig, augment_views, make_mta, make_tda, make_text_side, make_tpt,
                                  make_zero, mta_mode, tda_init, tda_update, tpt_adapt, with_text, zoom_views)
from zoomjax.tta.entropy import marginal_entropy
from zoomjax.tta.memo import (MEMO_LR, MEMO_PRIOR_STRENGTH, MEMO_STEPS, MEMO_VIEWS, EpisodeFn, episode_keys,
                              make_baseline, make_memo, map_images, map_images_sequential, prior_mode_note,
                              with_bn_prior)
from zoomjax.tta.online import (BATCH_STAT_METHODS, EATA_D_MARGIN, EATA_FISHER_ALPHA, EATA_FISHER_SIZE, ONLINE_LR,
                                ONLINE_MOMENTUM, SAR_RESET_CONSTANT, SAR_RHO, STREAM_METHODS, StreamMethod,
                                adapted_arrays, bn_param_paths, entropy_margin, fisher_information, make_bn_adapt,
                                make_eata, make_sar, make_source, make_stream_method, make_tent, restore_adapted,
                                run_stream, sar_excluded, sharded_step, softmax_entropy)
from zoomjax.tta.zoom_tta import AGGREGATIONS, CropsFn, aggregate, aggregate_every, grid_views, make_zoom_tta

__all__ = [
    # Methods: each constructor returns an episode (variables, image, hw, key) -> logits.
    "make_memo", "make_baseline", "make_zoom_tta", "grid_views", "aggregate", "aggregate_every", "AGGREGATIONS",
    # Online adaptation over a stream of batches: StreamMethod(init, step).
    "make_source", "make_bn_adapt", "make_tent", "make_eata", "make_sar", "make_stream_method", "run_stream",
    "sharded_step", "sar_excluded", "fisher_information", "softmax_entropy", "entropy_margin", "bn_param_paths",
    "adapted_arrays", "restore_adapted", "STREAM_METHODS", "BATCH_STAT_METHODS", "ONLINE_LR", "ONLINE_MOMENTUM",
    "EATA_D_MARGIN", "EATA_FISHER_ALPHA", "EATA_FISHER_SIZE", "SAR_RHO", "SAR_RESET_CONSTANT", "StreamMethod",
    # CLIP's test-time methods: TPT, ZERO, MTA (episodes) and TDA (a StreamMethod).
    "make_tpt", "make_zero", "make_mta", "make_tda", "augment_views", "zoom_views", "make_text_side", "with_text",
    "tpt_adapt", "mta_mode", "tda_init", "tda_update", "ClipText", "TdaConfig",
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
