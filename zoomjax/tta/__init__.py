"""Test-time adaptation as pure JAX functions: MEMO, MEMO + RRC (the paper's zoom TTA) and zoom aggregation.

  entropy   marginal_entropy: MEMO's loss.
  augment   RandomResizedCrop (torchvision rule, PIL resampling), the standard view, AugMix's 9 PIL ops.
  memo      make_memo / make_baseline -> (variables, image, key, hw) -> logits; map_images batches them.
  zoom_tta  mean / max aggregation over zoom views.
Prior-mode BatchNorm lives in zoomjax.models.layers.BatchNorm (models expose `bn_prior_strength`).
"""
