"""Test-time adaptation: the paper's Table 5 (baseline / MEMO + AugMix / MEMO + RRC) and zoom aggregation.

  python -m zoomjax.main --workdir runs/tta_rrc \
    --config configs/tta.py:method=memo_rrc,model=efficientnet_lite0,data=folder:../shared/data/imagenet-val-100

A Table 5 cell (one of the three ResNet-50 checkpoints of the MEMO release on one dataset):
  --config configs/tta.py:method=memo_rrc,model=resnet50,checkpoint=PATH,row=deepaug_augmix,data=imagenet_a

Args (comma-separated key=value, all optional):
  method     baseline | memo_augmix | memo_rrc | zoom_mean | zoom_max (zoom-in views: 26 scales x 9 anchors).
  model      registered model name; checkpoint: its weights file (None: the packaged weights, if any).
  row        Table 5 row for the paper comparison: resnet50 | deepaug_augmix | moex_cutmix.
  data       dataset name for zoomjax.data.get_dataset: imagenet2012, imagenet_a, imagenet_r, imagenet_sketch,
             objectnet, folder:PATH, demo_photos.
  paper      the paper's column (IN, IN-A, IN-R, IN-S, ON) when `data` does not imply it (folders).
  seed       episode randomness (MEMO sets none; each image's key is fold_in(PRNGKey(seed), index)).
  limit      first N images (0 = all).   views / steps / lr / prior: MEMO's B, niter, SGD lr, N.
  runlocal   smoke test: tiny random model, 2 demo photos, 4 views, small views.
Any field can be overridden with --config.<field>=value. Rerunning with the same --workdir resumes.
"""
import ml_collections

from configs import common
from ml_collections import config_dict

METHODS = ("baseline", "memo_augmix", "memo_rrc", "zoom_mean", "zoom_max")
ROWS = ("resnet50", "deepaug_augmix", "moex_cutmix")


def parse_args(arg):
  """'a=1,b=x' -> {'a': '1', 'b': 'x'} (values may contain ':' and '/', not ',')."""
  out = {}
  for item in (arg or "").split(","):
    item = item.strip()
    if item:
      key, sep, value = item.partition("=")
      out[key.strip()] = value.strip() if sep else "1"
  return out


def get_config(arg=None):
  args = parse_args(arg)
  known = {"method", "model", "checkpoint", "row", "data", "paper", "seed", "limit", "views", "steps", "lr",
           "prior", "runlocal"}
  if set(args) - known:
    raise ValueError(f"unknown config args {sorted(set(args) - known)}; known: {sorted(known)}")
  runlocal = args.get("runlocal", "0") not in ("0", "false", "False", "")
  method = args.get("method", "memo_rrc")
  if method not in METHODS:
    raise ValueError(f"method={method!r} is not one of {METHODS}")
  row = args.get("row", "")
  if row and row not in ROWS:
    raise ValueError(f"row={row!r} is not one of {ROWS}")

  c = ml_collections.ConfigDict()
  c.experiment = "tta"  # zoomjax.jobs.tta
  c.method = method  # What predicts each image (see the module docstring).

  c.model = ml_collections.ConfigDict()
  c.model.name = args.get("model", "efficientnet_lite_tiny" if runlocal else "efficientnet_lite0")
  c.model.checkpoint = args.get("checkpoint") or config_dict.placeholder(str)  # None: packaged weights.
  c.model.random_init = runlocal  # Seeded random weights (smoke tests) instead of a checkpoint.
  c.model.seed = 0  # Seed of random_init.
  c.model.paper_row = row  # Table 5 row this checkpoint stands for ('' = no paper comparison).

  c.data = ml_collections.ConfigDict()
  c.data.name = args.get("data", "demo_photos")  # See zoomjax.data.NAMES.
  c.data.data_dir = config_dict.placeholder(str)  # TFDS data_dir / our builds (None: default).
  c.data.manual_dir = config_dict.placeholder(str)  # Where downloaded archives were placed by hand.
  c.data.split = config_dict.placeholder(str)  # None: the evaluation split; '[a:b]' slices it.
  c.data.label_space = config_dict.placeholder(str)  # Override the label space of a folder dataset.
  c.paper_dataset = args.get("paper", "")  # Paper column ('' = inferred from the data name).
  c.limit = int(args.get("limit", 2 if runlocal else 0))  # First N images (0 = all).

  c.seed = int(args.get("seed", 0))  # Episode keys: fold_in(PRNGKey(seed), image index).
  c.memo = ml_collections.ConfigDict()
  c.memo.num_views = int(args.get("views", 4 if runlocal else 64))  # B augmented views per step (paper: 64).
  c.memo.steps = int(args.get("steps", 1))  # Optimiser steps per image (paper: niter = 1).
  c.memo.lr = float(args.get("lr", 2.5e-4))  # SGD learning rate (paper: 2.5e-4, no momentum, no decay).
  c.memo.momentum = 0.0  # SGD momentum (paper: 0).
  c.memo.prior_strength = float(args.get("prior", 16.0))  # BatchNorm prior N (paper: 16); <= 0 = eval-mode BN.
  c.memo.view_size = 64 if runlocal else 224  # Side of the augmented views.
  c.memo.severity = 1.0  # AugMix severity (levels ~ U(0.1, severity)).
  c.memo.width = 3  # AugMix chains.
  c.memo.max_depth = 3  # AugMix ops per chain ~ randint(1, max_depth + 1).

  c.view = ml_collections.ConfigDict()
  c.view.resize = 73 if runlocal else 256  # Prediction view: Resize(resize) ...
  c.view.crop = 64 if runlocal else 224  # ... + CenterCrop(crop).
  c.view.method = "bilinear"  # MEMO's torchvision default (the zoom study's 1-crop uses bicubic).

  c.zoom = ml_collections.ConfigDict()
  c.zoom.scales = (96, 160) if runlocal else ()  # (): the paper's 26 zoom-in scales (S > 224).
  c.zoom.anchors = 3  # anchors x anchors crop centres.
  c.zoom.view_chunk = 32  # Zoom views per model call (bounds activation memory).

  # Images adapted at once (vmap, one parameter copy each). 1 suits CPU: one image's views already fill the
  # cores, so batching gained nothing there (0.9-0.95x, BENCHMARKS.md); raise it on GPU/TPU.
  c.batch_size = 1
  c.canvas_multiple = 256  # Canvases are squares rounded up to this: fewer shapes = fewer compiles.
  c.num_workers = 2  # Decoding threads.
  c.on_error = "skip"  # Unreadable images: 'skip' (listed in metrics.json) or 'raise'.
  c.progress_every_secs = 5.0 if runlocal else 30.0  # Progress log interval.
  c.distributed = common.distributed_config()  # Multi-host settings (configs/common.py).
  return c
