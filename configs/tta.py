"""Test-time adaptation: the paper's Table 5 (baseline / MEMO + AugMix / MEMO + RRC) and zoom aggregation.

  python -m zoomjax.main --workdir runs/tta_rrc \
    --config configs/tta.py:method=memo_rrc,model=efficientnet_lite0,data=folder:../shared/data/imagenet-val-100

A Table 5 cell (one of the three ResNet-50 checkpoints of the MEMO release on one dataset):
  --config configs/tta.py:method=memo_rrc,model=resnet50,checkpoint=PATH,row=deepaug_augmix,data=imagenet_a

Args (comma-separated key=value, all optional):
  method      baseline | memo_augmix | memo_rrc | zoom_mean | zoom_max (zoom-in views: 26 scales x 9 anchors).
  model       registered model name, or package.module:factory (docs/own-model.md); checkpoint: its weights
              file (default: the packaged weights, if any).
  row         Table 5 row for the paper comparison: resnet50 | deepaug_augmix | moex_cutmix.
  data        dataset name for zoomjax.data.get_dataset: imagenet2012, imagenet_a, imagenet_r, imagenet_sketch,
              objectnet, folder:PATH, demo_photos.
  paper       the paper's column (IN, IN-A, IN-R, IN-S, ON) when `data` does not imply it (folders).
  seeds       episode randomness, one run per seed, e.g. seeds=0;1;2 (mean and spread are reported).
  limit       first N images (0 = all).   views / steps / lr / prior: MEMO's B, niter, learning rate, N.
  optimizer   any optax optimiser by name (sgd, adam, adamw, ...); momentum / weight_decay where it takes them.
  runlocal    smoke test: tiny random model, 2 demo photos, 4 views, small views.
Any field can be overridden with --config.<field>=value. Rerunning with the same --workdir resumes.
"""
import ml_collections

from zoomjax.analysis import paper_numbers
from zoomjax.errors import UserError
from zoomjax.runtime import config as config_lib

METHODS = ("baseline", "memo_augmix", "memo_rrc", "zoom_mean", "zoom_max")

# The allowed values of every numeric field (and a few others), checked before the job writes anything
# (zoomjax.runtime.config.validate).
RANGES = {
    **config_lib.SHARDED_JOB_RANGES,
    "paper_dataset": config_lib.OneOf(paper_numbers.DATASETS),
    "model.seed": config_lib.Range(0, integer=True),
    "seeds": config_lib.Range(0, integer=True),
    "memo.num_views": config_lib.Range(2, integer=True),
    "memo.steps": config_lib.Range(0, integer=True),
    "memo.lr": config_lib.Range(0),
    "memo.momentum": config_lib.Range(0, 1),
    "memo.weight_decay": config_lib.Range(0),
    "memo.prior_strength": config_lib.Range(note="<= 0 = eval-mode BatchNorm"),
    "memo.view_size": config_lib.Range(1, integer=True),
    "memo.severity": config_lib.Range(0),
    "memo.width": config_lib.Range(1, integer=True),
    "memo.max_depth": config_lib.Range(1, integer=True),
    "view.resize": config_lib.Range(1, integer=True),
    "view.crop": config_lib.Range(1, integer=True),
    "zoom.scales": config_lib.Range(1, integer=True),
    "zoom.anchors": config_lib.Range(1, integer=True),
    "zoom.view_chunk": config_lib.Range(1, integer=True),
    "canvas_multiple": config_lib.Range(1, integer=True),
}


def get_config(arg=None):
  a = config_lib.parse_arg(arg, method="memo_rrc", model="", checkpoint="", row="", data="demo_photos",
                           paper="", seeds="0", limit=-1, views=0, steps=1, lr=2.5e-4, prior=16.0,
                           optimizer="sgd", momentum=0.0, weight_decay=0.0, runlocal=False)
  if a.method not in METHODS:
    raise UserError(f"method={a.method!r} is not one of {METHODS}")
  if a.row and a.row not in paper_numbers.TABLE5_ROWS:
    raise UserError(f"row={a.row!r} is not one of {paper_numbers.TABLE5_ROWS}")
  try:
    seeds = tuple(int(s) for s in a.seeds.split(";") if s.strip())
  except ValueError:
    raise UserError(f"seeds={a.seeds!r}: use integers separated by ';', e.g. seeds=0;1;2") from None
  if not seeds or len(set(seeds)) != len(seeds):
    raise UserError(f"seeds={a.seeds!r}: give one or more distinct integers")
  if a.paper and a.paper not in paper_numbers.DATASETS:
    raise UserError(f"paper={a.paper!r} is not one of the paper's columns: {', '.join(paper_numbers.DATASETS)}")

  c = ml_collections.ConfigDict()
  c.experiment = "tta"  # zoomjax.jobs.tta
  c.method = a.method  # What predicts each image (see the module docstring).

  c.model = config_lib.model_config(
      a.model or ("efficientnet_lite_tiny" if a.runlocal else "efficientnet_lite0"), a.checkpoint,
      random_init=a.runlocal)
  c.model.paper_row = a.row  # Table 5 row this checkpoint stands for ('' = no paper comparison).

  c.data = config_lib.data_config(a.data)
  c.paper_dataset = a.paper  # Paper column ('' = inferred from the data name).
  config_lib.check_arg("limit", a.limit, config_lib.Range(-1, integer=True, note="0 = all; -1 = the default"))
  c.limit = a.limit if a.limit >= 0 else (2 if a.runlocal else 0)  # First N images (0 = all).

  c.seeds = seeds  # One run per seed; an image's key is fold_in(PRNGKey(seed), image index).
  c.memo = ml_collections.ConfigDict()
  c.memo.num_views = a.views or (4 if a.runlocal else 64)  # B augmented views per step (paper: 64).
  c.memo.steps = a.steps  # Optimiser steps per image (paper: niter = 1).
  c.memo.optimizer = a.optimizer  # optax optimiser name (paper: sgd; MEMO's RVT/ResNeXt rows: adamw).
  c.memo.lr = a.lr  # Learning rate (paper: SGD 2.5e-4).
  c.memo.momentum = a.momentum  # Momentum, for optimisers that take one (paper: 0).
  c.memo.weight_decay = a.weight_decay  # Weight decay, for optimisers that take one (paper: 0).
  c.memo.prior_strength = a.prior  # BatchNorm prior N (paper: 16); <= 0 = eval-mode BN.
  c.memo.view_size = 64 if a.runlocal else 224  # Side of the augmented views.
  c.memo.severity = 1.0  # AugMix severity (levels ~ U(0.1, severity)).
  c.memo.width = 3  # AugMix chains.
  c.memo.max_depth = 3  # AugMix ops per chain ~ randint(1, max_depth + 1).

  c.view = ml_collections.ConfigDict()
  c.view.resize = 73 if a.runlocal else 256  # Prediction view: Resize(resize) ...
  c.view.crop = 64 if a.runlocal else 224  # ... + CenterCrop(crop).
  c.view.method = "bilinear"  # MEMO's torchvision default (the zoom study's 1-crop uses bicubic).

  c.zoom = ml_collections.ConfigDict()
  # Zoom aggregation scales; (): the paper's 26 zoom-in scales (S > 224).
  c.zoom.scales = (96, 160) if a.runlocal else ()
  c.zoom.anchors = 3  # anchors x anchors crop centres.
  c.zoom.view_chunk = 32  # Zoom views per model call (bounds activation memory).

  # Images adapted at once per device (vmap, one parameter copy each). 1 suits CPU: one image's views already
  # fill the cores, so batching gains nothing there (BENCHMARKS.md); raise it on GPU/TPU.
  c.batch_size = 1
  c.shard_size = 2 if a.runlocal else 16  # Images per shard file (the unit of resumption).
  c.canvas_multiple = 256  # Canvases are squares rounded up to this: fewer shapes = fewer compiles.
  c.num_workers = 0  # Decoding threads (0 = one per CPU core this process may use, at most 32).
  c.on_error = "skip"  # Unreadable images: 'skip' (listed in metrics.json) or 'raise'.
  c.progress_every_secs = 5.0 if a.runlocal else 30.0  # Progress log interval.
  c.merge_timeout_s = 6 * 3600.0  # How long process 0 waits for the other processes' shards.
  return config_lib.add_common(c)
