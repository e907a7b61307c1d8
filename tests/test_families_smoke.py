"""Every model family through the zoom sweep, TTA and evaluation jobs: random_init at tiny widths
(`config.model.overrides`), one demo photo, a one-scale grid, two MEMO views. The numbers are meaningless;
what is checked is that each family's module runs inside each job's programs (zoom views, MEMO's gradient
through prior-mode BatchNorm where the family has BatchNorm) and yields finite records of the right shapes.
"""
import json

import ml_collections
import numpy as np
import pytest

from configs import evaluate as evaluate_config
from configs import tta as tta_config
from configs import zoom_sweep as sweep_config
from zoomjax.analysis import records as R
from zoomjax.jobs import evaluate as evaluate_job
from zoomjax.jobs import tta as tta_job
from zoomjax.jobs import zoom_sweep as sweep_job

pytestmark = pytest.mark.usefixtures("fast_compile_module")  # Job plumbing; the maths is in the golden tests.

# EfficientNet(-Lite) blocks: (repeats, kernel, stride, expand, in, out); two stages instead of seven.
EFFICIENTNET_TINY = dict(stages=((1, 3, 1, 1, 32, 16), (1, 5, 2, 6, 16, 24)), width=0.25, stem_features=8,
                         head_features=32)
# family -> (registered model, make_module overrides at a tiny width, has BatchNorm).
FAMILIES = {
    "resnet": ("resnet50", dict(stage_sizes=(1, 1), width=8), True),
    "resnext_wrn": ("resnext101_32x8d", dict(stage_sizes=(1, 1), width=8, groups=4), True),
    "vgg": ("vgg19_bn", dict(cfg=(8, "M", 16, "M"), hidden=16), True),
    "alexnet": ("alexnet", dict(widths=(8, 8, 8, 8, 8), hidden=16), False),
    "vit": ("vit_b32", dict(width=16, depth=1, num_heads=2, mlp_dim=32), False),
    "efficientnet_lite": ("efficientnet_lite0", EFFICIENTNET_TINY, True),
    "efficientnet": ("efficientnet_b0", EFFICIENTNET_TINY, True),
    "tf_efficientnet": ("tf_efficientnet_b7", EFFICIENTNET_TINY, True),
    "mobilenet_v3": ("mobilenet_v3_large", dict(setting=((8, 3, 8, 8, True, False, 2), (8, 3, 16, 8, True, True, 1)),
                                                last_channel=16), True),
    "convnext": ("convnext_base", dict(stages=((8, 1), (16, 1))), False),
    "swin": ("swin_b", dict(embed_dim=8, depths=(2,), num_heads=(2,)), False),
    "maxvit": ("maxvit_t", dict(stem_channels=8, block_channels=(16,), block_layers=(1,), head_dim=4,
                                partition_size=2), True),
    # Zero-shot CLIP with a random head (random_init needs no text data).
    "clip": ("clip_vit_b32", dict(patch_size=32, width=32, depth=1, num_heads=2, mlp_dim=64, embed_dim=16), False),
    "clip_resnet": ("clip_rn50", dict(layers=(1, 1, 1, 1), width=8, num_heads=2, embed_dim=16), True),
    "siglip": ("siglip_b16_224", dict(patch_size=16, width=32, depth=1, num_heads=2, mlp_dim=64), False),
    # NaFlex: the 224 px views become a 16 x 16 patch grid (256 px) at its default 256 patches.
    "siglip_naflex": ("siglip2_b16_naflex", dict(patch_size=16, width=32, depth=1, num_heads=2, mlp_dim=64), False),
    "convnextv2": ("convnextv2_tiny.fcmae_ft_in1k", dict(stages=((8, 1), (16, 1))), False),
    # EVA-02 runs at the zoom grid's 224 px crops (image_size resamples its 336 px position embedding).
    "eva02": ("eva02_tiny_patch14_336.mim_in22k_ft_in1k", dict(width=16, depth=1, num_heads=2, mlp_dim=32,
                                                               image_size=224), False),
    "clip_convnext": ("openclip_convnext_base_w", dict(stages=((8, 1), (16, 1)), embed_dim=16), False),
    "clip_eva": ("openclip_eva02_b16", dict(width=16, depth=1, num_heads=2, mlp_dim=32, embed_dim=16), False),
    "clip_coca": ("openclip_coca_vit_b32", dict(width=32, depth=1, num_heads=2, mlp_dim=64, embed_dim=16, pool_heads=2,
                                                pool_queries=4), False),
}
GRID = 256  # One zoom-in scale: 9 views, one of them the 1-crop view.


def _with_model(config: ml_collections.ConfigDict, family: str) -> ml_collections.ConfigDict:
  config.model.overrides = ml_collections.ConfigDict(FAMILIES[family][1])
  return config


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_zoom_sweep_job(family, tmp_path):
  name = FAMILIES[family][0]
  config = _with_model(sweep_config.get_config(f"runlocal=1,model={name},limit=1,grid={GRID}"), family)
  config.extra_crops, config.report, config.tensorboard = False, False, False
  metrics = sweep_job.run(config, str(tmp_path))
  assert metrics["num_images"] == 1 and metrics["num_views"] == 9
  assert metrics["one_crop_accuracy"] in (0.0, 1.0) and 0.0 <= metrics["upper_bound_accuracy"] <= 1.0
  rec = R.load(str(tmp_path / R.FINAL_FILE))
  assert rec.topk.shape == (1, 9, 10) and rec.p_true.shape == rec.p_max.shape == (1, 9)
  assert np.all((rec.topk >= 0) & (rec.topk < 1000))
  assert np.all(np.isfinite(rec.p_max)) and np.all((rec.p_max > 0) & (rec.p_max <= 1))
  assert np.all(np.isfinite(rec.agg_p)) and np.all((rec.p_true >= 0) & (rec.p_true <= rec.p_max + 1e-6))
  with open(tmp_path / "config.json") as f:  # The overrides are part of the resume key.
    assert json.load(f)["model"]["overrides"] == json.loads(config.model.overrides.to_json())


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_tta_job(family, tmp_path):
  name, _, has_bn = FAMILIES[family]
  method = "memo_rrc" if has_bn else "baseline"  # MEMO with the BatchNorm prior (N = 16) where there is one
  config = _with_model(tta_config.get_config(f"runlocal=1,method={method},model={name},limit=1,views=2"), family)
  # Position embeddings fixed at 224 px (runlocal's views are 64 px).
  if family in ("vit", "clip", "clip_resnet", "eva02", "siglip", "clip_coca", "clip_eva"):
    config.view.resize, config.view.crop = 256, 224
    config.memo.view_size = 224
  metrics = tta_job.run(config, str(tmp_path))
  assert metrics["method"] == method and metrics["num_images"] == 1
  assert metrics["accuracy"] in (0.0, 1.0) and (metrics["prior_strength"] == 16.0) == has_bn
  rows = np.load(tmp_path / "seed_0" / tta_job.RECORDS_FILE)
  assert rows["top5"].shape == rows["top5_p"].shape == (1, 5) and np.all(np.isfinite(rows["top5_p"]))
  assert np.all(np.diff(rows["top5_p"][0]) <= 0) and 0 < rows["top5_p"][0, 0] <= 1
  assert 0 <= rows["p_true"][0] <= rows["top5_p"][0, 0] + 1e-6


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_evaluate_job(family, tmp_path):
  name = FAMILIES[family][0]
  config = evaluate_config.get_config(f"runlocal=1,models={name},limit=1")
  config.model_overrides = ml_collections.ConfigDict(FAMILIES[family][1])
  config.gallery_size = 0
  summary = evaluate_job.run(config, str(tmp_path))
  (pair,) = summary["pairs"]
  assert pair["num_images"] == 1 and pair["top1"] in (0.0, 1.0) and pair["top5"] >= pair["top1"]
  assert pair["preprocessing"]["input_size"] >= 224  # The checkpoint's own eval view, not a runlocal size.
  rows = np.load(tmp_path / pair["predictions"])
  assert rows["top5"].shape == rows["top5_p"].shape == (1, 5) and np.all(np.isfinite(rows["top5_p"]))
  assert np.all(np.diff(rows["top5_p"][0]) <= 0) and 0 < rows["top5_p"][0, 0] <= 1


CLIP_FAMILIES = ("clip", "clip_resnet", "siglip", "siglip_naflex", "clip_convnext", "clip_coca", "clip_eva")


@pytest.mark.parametrize("family", CLIP_FAMILIES)
def test_clip_methods_without_gradients_run_on_every_clip_family(family, tmp_path):
  """ZERO over zoom views and MTA over augmented views (the test-time methods that need no text tower) on each
  contrastive family's zero-shot classifier."""
  name = FAMILIES[family][0]
  for method, views in (("zero", "zoom"), ("mta", "augment")):
    config = _with_model(tta_config.get_config(f"runlocal=1,method={method},views={views},model={name},limit=1"),
                         family)
    config.view.resize, config.view.crop = 256, 224  # Position embeddings (and SigLIP's MAP grid) at 224 px.
    config.zoom.scales = (GRID,)
    workdir = tmp_path / method
    metrics = tta_job.run(config, str(workdir))
    assert metrics["method"] == method and metrics["num_images"] == 1 and metrics["accuracy"] in (0.0, 1.0)
    assert metrics["clip"]["views"] == views
    rows = np.load(workdir / "seed_0" / tta_job.RECORDS_FILE)
    assert np.all(np.isfinite(rows["top5_p"])) and 0 < rows["top5_p"][0, 0] <= 1


def test_study_over_sweeps_of_the_contrastive_and_timm_families(tmp_path):
  """The study job over sweeps of two families added with their own towers (records are model-agnostic; this
  checks that nothing in a sweep of theirs trips the study)."""
  from configs import study as study_config  # pylint: disable=import-outside-toplevel
  from zoomjax.jobs import study as study_job  # pylint: disable=import-outside-toplevel
  for family in ("siglip", "eva02"):
    config = _with_model(sweep_config.get_config(f"runlocal=1,model={FAMILIES[family][0]},limit=1,grid={GRID}"),
                         family)
    config.extra_crops, config.report, config.tensorboard = False, False, False
    sweep_job.run(config, str(tmp_path / "sweeps" / family))
  config = study_config.get_config(f"runs={tmp_path / 'sweeps'}/*,runlocal,explorers=0")
  study_job.run(config, str(tmp_path / "study"))
  with open(tmp_path / "study" / study_job.STUDY_FILE) as f:
    out = json.load(f)
  assert sorted(r["model"] for r in out["runs"]) == sorted(FAMILIES[f][0] for f in ("siglip", "eva02"))
  (group,) = out["groups"]  # Same photo, same grid: one group, with a paired test of the second run.
  assert len(group["runs"]) == 2 and group.get("paired")
