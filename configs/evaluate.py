"""Evaluation: many classifiers on many benchmarks in one run (ImageNet-Hard, the robustness suite, ReaL, folders).

  python -m zoomjax.main --workdir runs/eval \
    --config configs/evaluate.py:models=efficientnet_lite0,data=folder:../shared/data/imagenet-val-100

ImageNet-Hard and the robustness suite (docs/study.md §4.5-4.6), each model with its checkpoint's own preprocessing:
  --config configs/evaluate.py:models=resnet50@resnet50.pth;vgg19@vgg19.pth;clip_vit_l14@ViT-L-14.pt,\
data=imagenet_hard@~/data/imagenet-hard;imagenet_a@~/data;imagenet2012_real/union,clip_vocab=bpe.txt.gz

A batch of OpenCLIP (model, checkpoint) pairs like the authors' sweep, one results table, resumable pair by pair:
  --config configs/evaluate.py:models_file=openclip_pairs.csv,data=imagenet_hard@~/data/imagenet-hard

Args (comma-separated key=value, all optional; ';' separates list items):
  models       name[@checkpoint][#pretrained] entries (a name may be package.module:factory, docs/own-model.md);
               `pretrained` (an open_clip tag such as datacomp_xl_s13b_b90k) picks the paper's number and names
               the row. Default efficientnet_lite0.
  models_file  a CSV with a header naming columns model, checkpoint (optional: pretrained, label); '#' comments.
  data         dataset[@manual_dir] entries for zoomjax.data.get_dataset (imagenet2012, imagenet2012_real/union,
               imagenet_a, imagenet_r, imagenet_sketch, imagenet_v2, objectnet, imagenet_hard, folder:PATH, ...).
  data_dir     TFDS data_dir of every dataset (our builds and official ones).   real_json: ReaL's real.json.
  limit        first N images of each dataset (0 = all).
  dtype        float32 | bfloat16 | float16 compute (inputs are normalised in float32 first).
  clip_vocab / clip_classnames / clip_templates: CLIP/OpenCLIP zero-shot heads (see zoomjax.models.clip_families).
  runlocal     smoke test: a tiny random model on the 2 demo photos.
The preprocessing of every model is its checkpoint's own (zoomjax.models: bundle.preprocessing) unless a
`--config.preprocessing.<field>` is set. Rerunning with the same --workdir resumes: finished pairs are kept.
Models with the same view share it in memory (`view_cache_gb`); `--config.view_cache_dir=DIR` keeps the views on
disk for later runs too.
"""
import ml_collections

from zoomjax import resample
from zoomjax import sweep
from zoomjax.errors import UserError
from zoomjax.runtime import config as config_lib



# The allowed values of every numeric field (and the view cache folder), checked before the job writes anything
# (zoomjax.runtime.config.validate).
RANGES = {
    **config_lib.SHARDED_JOB_RANGES,
    "model_seed": config_lib.Range(0, integer=True),
    "preprocessing.input_size": config_lib.Range(0, integer=True, note="0 = the checkpoint's own"),
    "preprocessing.resize_size": config_lib.Range(0, integer=True, note="0 = the checkpoint's own"),
    "preprocessing.crop_fraction": config_lib.Range(0, 1, note="0 = the checkpoint's own"),
    "preprocessing.mean": config_lib.Range(0, 255),
    "preprocessing.std": config_lib.Range(1e-6, note="pixel units, above 0"),
    "view_cache_gb": config_lib.Range(0, note="0 = off"),
    "view_cache_dir": config_lib.WritableDir(),
    "gallery_size": config_lib.Range(0, integer=True),
    "on_error": config_lib.OneOf(config_lib.ON_ERROR, empty_ok=False),
    "dtype": config_lib.OneOf(sweep.COMPUTE_DTYPES, empty_ok=False),
    "preprocessing.resize_method": config_lib.OneOf(tuple(sorted(resample.FILTERS)), empty_ok=True),
    "models": config_lib.FreeText("name[@checkpoint][#pretrained] entries; each checked when loaded"),
    "models_file": config_lib.InputFile(),
    "data": config_lib.FreeText("dataset[@manual_dir] entries; folder roots checked by check_job"),
    "data_dir": config_lib.InputDir(must_exist=False),
    "real_json": config_lib.InputFile(),
    "split": config_lib.FreeText("a split name and/or [a:b]; checked when built"),
    "clip.vocab": config_lib.InputFile(),
    # The named sets of zoomjax.models.clip_zero_shot (CLASS_NAME_SETS, TEMPLATE_SETS), else a file.
    "clip.class_names": config_lib.InputFile(words=("openai", "zoom_paper")),
    "clip.templates": config_lib.InputFile(words=("openai", "openai80")),
    "clip.head_cache_dir": config_lib.WritableDir(),
}


def _split(value: str):
  return tuple(v.strip() for v in value.split(";") if v.strip())


def get_config(arg=None):
  a = config_lib.parse_arg(arg, models="", models_file="", checkpoint="", data="", data_dir="", real_json="",
                           limit=-1, dtype="float32", clip_vocab="", clip_classnames="openai",
                           clip_templates="openai", runlocal=False)
  sweep.compute_dtype(a.dtype)  # A bad dtype fails while the config is read.
  models = _split(a.models) or (() if a.models_file else
                                (("efficientnet_lite_tiny",) if a.runlocal else ("efficientnet_lite0",)))
  if a.checkpoint:  # The common `checkpoint=` arg of every config: the weights of the (single) model.
    if len(models) != 1 or "@" in models[0]:
      raise UserError("checkpoint=PATH applies to a single model given without '@'; write models=name@PATH;...")
    models = (f"{models[0]}@{a.checkpoint}",)

  c = ml_collections.ConfigDict()
  c.experiment = "evaluate"  # zoomjax.jobs.evaluate
  c.models = models  # name[@checkpoint][#pretrained] per model (zoomjax.jobs.evaluate.parse_model_entry).
  c.models_file = a.models_file  # CSV of (model, checkpoint[, pretrained, label]) rows, appended to `models`.
  c.random_init = a.runlocal  # Seeded random weights for every model (smoke tests, benchmarks).
  c.model_seed = 0  # Seed of random_init.
  c.model_overrides = ml_collections.ConfigDict()  # make_module kwargs for every model (tiny widths in tests).
  c.data = _split(a.data) or ("demo_photos",)  # dataset[@manual_dir] per dataset.
  c.data_dir = a.data_dir or ml_collections.config_dict.placeholder(str)  # TFDS data_dir of every dataset.
  c.real_json = a.real_json or ml_collections.config_dict.placeholder(str)  # ReaL labels (imagenet2012_real).
  c.split = ml_collections.config_dict.placeholder(str)  # None: each dataset's evaluation split; '[a:b]' slices.
  config_lib.check_arg("limit", a.limit, config_lib.Range(-1, integer=True, note="0 = all; -1 = the default"))
  c.limit = a.limit if a.limit >= 0 else (2 if a.runlocal else 0)  # First N images of each dataset (0 = all).

  # Overrides of every model's own evaluation preprocessing; 0 / '' / () = the checkpoint's own.
  c.preprocessing = ml_collections.ConfigDict()
  c.preprocessing.input_size = 0  # Side of the centre crop fed to the model.
  c.preprocessing.resize_size = 0  # Short side before the centre crop.
  c.preprocessing.crop_fraction = 0.0  # input_size / resize_size (timm's crop_pct), used when resize_size is 0.
  c.preprocessing.resize_method = ""  # 'bilinear' | 'bicubic' (PIL filters).
  c.preprocessing.mean = ()  # Per-channel mean in pixel units (0..255).
  c.preprocessing.std = ()  # Per-channel std in pixel units.
  c.dtype = a.dtype  # Compute dtype of the model (the paper ran CLIP in float16).

  # Zero-shot heads of CLIP/OpenCLIP models (built once per checkpoint and cached on disk).
  c.clip = ml_collections.ConfigDict()
  c.clip.vocab = a.clip_vocab  # bpe_simple_vocab_16e6.txt.gz ('' = from an installed open_clip, if any).
  c.clip.class_names = a.clip_classnames  # 'openai' (curated) | a names .txt | a zero_shot_metadata.py.
  c.clip.templates = a.clip_templates  # 'openai' (the 80 templates) | a .txt | a zero_shot_metadata.py.
  c.clip.head_cache_dir = ""  # '' = ~/.cache/zoomjax/clip_heads.

  # Images per step per device; CPU runs are bound by the model, so a moderate batch suffices.
  c.batch_size = 4 if a.runlocal else 32
  c.shard_size = 2 if a.runlocal else 256  # Images per shard file (the unit of resumption).
  c.num_workers = 0  # Decoding threads (0 = one per CPU core this process may use, at most 32).
  # Host memory for views kept for the run's later models with the same dataset, resize and crop (0 = off).
  c.view_cache_gb = 4.0
  # Keep the views on disk instead, for later runs too (150 KB per image at 224 px; '' = off).
  c.view_cache_dir = ""
  c.on_error = "skip"  # Unreadable images: 'skip' (listed in metrics.json) or 'raise'.
  c.gallery_size = 8  # Failures shown per (model, dataset) in report.html, with their top-5 class names.
  c.progress_every_secs = 5.0 if a.runlocal else 30.0  # Progress log interval.
  c.merge_timeout_s = 6 * 3600.0  # How long process 0 waits for the other processes' shards.
  return config_lib.add_common(c)
