"""Zoom sweep: every zoom view of every image through one classifier, then every analysis of the study.

  python -m zoomjax.main --workdir runs/val100 \
    --config configs/zoom_sweep.py:model=efficientnet_lite0,data=folder:../shared/data/imagenet-val-100,grid=paper

Args (comma-separated key=value, all optional):
  model       registered model name (zoomjax.models.list_models()) or package.module:factory, a function of
              yours returning a ModelBundle (docs/own-model.md); default efficientnet_lite0.
  checkpoint  its weights file (default: the weights an installed package ships, if any).
  data        dataset name for zoomjax.data.get_dataset: folder:PATH, demo_photos, imagenet2012, imagenet_a, ...
  grid        paper (36 scales x 9 anchors = 324 views) | small (6 scales) | tiny (224, 256) | S1/S2/... (scales).
  limit       keep the first N images (0 = all).
  paper       the paper's dataset column to compare with (IN, ReaL, IN+ReaL, IN-A, IN-R, IN-S, ON).
  runlocal    shrink everything for a smoke test (tiny random model, 2 images, tiny grid).
Rerunning with the same --workdir resumes; any field can be overridden with --config.<field>=value.
"""
import ml_collections

from zoomjax import sweep
from zoomjax import zoom
from zoomjax.analysis import paper_numbers
from zoomjax.runtime import config as config_lib

# Named grids of the `grid` arg (any other grid is spelt out as S1/S2/...).
GRIDS = {"paper": zoom.PAPER_SCALES, "small": (64, 128, 224, 256, 384, 512), "tiny": (224, 256)}

# The allowed values of every numeric field (and a few others), checked before the job writes anything
# (zoomjax.runtime.config.validate); demo.py shares them.
RANGES = {
    **config_lib.SHARDED_JOB_RANGES,
    "paper_dataset": config_lib.OneOf(paper_numbers.DATASETS),
    "model.seed": config_lib.Range(0, integer=True),
    "grid.scales": config_lib.Range(1, integer=True),
    "grid.anchors": config_lib.Range(1, integer=True),
    "grid.crop": config_lib.Range(1, integer=True),
    "view_chunk": config_lib.Range(1, integer=True),
    "prefetch": config_lib.Range(0, integer=True),
    "top_k": config_lib.Range(1, integer=True),
    "gallery_size": config_lib.Range(0, integer=True),
    "explorer_images": config_lib.Range(0, integer=True, note="0 = no explorer"),
    "record_k": config_lib.Range(1, integer=True, note="at most the model's classes"),
    "rho": config_lib.Range(0.001, 1, note="the fraction of views tpt and zero keep"),
    **config_lib.MODEL_RANGES,
    **config_lib.DATA_RANGES,
    "canvas": config_lib.OneOf(("square", "buckets", "max"), empty_ok=False),
    "dtype": config_lib.OneOf(sweep.COMPUTE_DTYPES, empty_ok=False),
    "tie_order": config_lib.OneOf(("paper", "grid"), empty_ok=False),
    "command": config_lib.FreeText("the command line shown in the report"),
}


def get_config(arg=None):
  a = config_lib.parse_arg(arg, model="", checkpoint="", data="demo_photos", grid="", limit=-1, paper="",
                           runlocal=False)
  c = ml_collections.ConfigDict()
  c.experiment = "zoom_sweep"  # zoomjax.jobs.zoom_sweep

  c.model = config_lib.model_config(
      a.model or ("efficientnet_lite_tiny" if a.runlocal else "efficientnet_lite0"), a.checkpoint,
      random_init=a.runlocal)
  c.data = config_lib.data_config(a.data)
  config_lib.check_arg("limit", a.limit, config_lib.Range(-1, integer=True, note="0 = all; -1 = the default"))
  c.limit = a.limit if a.limit >= 0 else (2 if a.runlocal else 0)  # First N images (0 = all).
  c.paper_dataset = a.paper  # Paper column for comparisons ('' = inferred from the data name).

  c.grid = ml_collections.ConfigDict()
  # Shorter side S per scale.
  c.grid.scales = config_lib.grid_scales(a.grid or ("tiny" if a.runlocal else "paper"), GRIDS)
  c.grid.anchors = 3  # anchors x anchors crop centres (the paper: 3x3).
  c.grid.crop = 224  # Square crop side; also the zoom-in/out threshold.
  c.extra_crops = True  # Also Resize(256) + TenCrop(224) views for the 5/10-crop aggregation baselines.

  # Images per device per step, so one command runs unchanged on 1, 8 or 64 devices. 1 suits CPU: one image
  # already gives the model batches of view_chunk views, and images of different canvas buckets never share a
  # step, so bigger batches mostly add padding there; raise it on accelerators.
  c.batch_size = 1
  c.view_chunk = 48  # Views per image per model call inside the step (bounds activation memory).
  c.shard_size = 2 if a.runlocal else 16  # Images per shard file (the unit of resumption).
  # 'square' (one views program per bucket of the longer side) | 'buckets' (per side: least padding, more
  # programs) | 'max' (one canvas for all; a handful of images).
  c.canvas = "square"
  c.dtype = "float32"  # Compute dtype of the model and zoom kernel: float32 | bfloat16 | float16.
  c.num_workers = 0  # Decoding threads (0 = one per CPU core this process may use, at most 32).
  c.prefetch = 2  # Batches decoded ahead.
  c.on_error = "skip"  # Unreadable images: 'skip' (listed in metrics.json) or 'raise'.

  c.tie_order = "paper"  # Greedy min-cover tie-breaking: 'paper' (anchor-major, authors' scale order) | 'grid'.
  c.top_k = 36  # The N of the paper's "N = 36" upper bound.
  c.record_k = 10  # Classes kept per view in the records (top-k ids and probabilities; aggregators use them).
  c.rho = 0.1  # Fraction of views the tpt and zero aggregators keep (TPT, ZERO: 0.1).
  c.report = True  # Write figures and report.html.
  c.gallery_size = 12  # Rescued images shown in the report.
  # Images in the image explorer (explorer/explorer.html; rescued ones first; 0 = no explorer).
  c.explorer_images = 4 if a.runlocal else 200
  c.tensorboard = True  # TensorBoard scalars in the workdir (zoomjax.runtime.scalars).
  c.progress_every_secs = 5.0 if a.runlocal else 30.0  # Progress log / TensorBoard interval.
  c.merge_timeout_s = 6 * 3600.0  # How long process 0 waits for the other processes' shards.
  c.command = ""  # Shown in the report (set by scripts that know the exact command line).
  return config_lib.add_common(c)
