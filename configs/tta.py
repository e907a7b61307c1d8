"""Test-time adaptation: the paper's Table 5 (baseline / MEMO + AugMix / MEMO + RRC) and zoom aggregation.

  python -m zoomjax.main --workdir runs/tta_rrc \
    --config configs/tta.py:method=memo_rrc,model=efficientnet_lite0,data=folder:../shared/data/imagenet-val-100

TPT on ImageNet-A with zoom views instead of random crops (docs/clip-tta.md):
  --config configs/tta.py:method=tpt,views=zoom,model=clip_vit_b16,checkpoint=ViT-B-16.pt,data=imagenet_a

Online adaptation (TENT; also source, bn_adapt, eata, sar) on a seeded stream of batches of 64, here on
ImageNet-C's Gaussian noise at severity 5 made on the fly from each photo:
  --config configs/tta.py:method=tent,corruption=gaussian_noise/5,data=folder:../shared/data/imagenet-val-100

A Table 5 cell (one of the three ResNet-50 checkpoints of the MEMO release on one dataset):
  --config configs/tta.py:method=memo_rrc,model=resnet50,checkpoint=PATH,row=deepaug_augmix,data=imagenet_a

Args (comma-separated key=value, all optional):
  method      baseline | memo_augmix | memo_rrc | zoom_tta (zoom-in views: 26 scales x 9 anchors) | zoom_mean |
              zoom_max (zoom_tta with aggregate=mean / max).
  aggregate   zoom_tta's aggregator: mean | max | vote | geometric | entropy_weighted | tpt | zero
              (zoomjax.tta.zoom_tta.aggregate); rho: the fraction of views tpt and zero keep (default 0.1).
              CLIP zero-shot classifiers only (docs/clip-tta.md): tpt | zero | mta (per image) | tda (a stream);
              views=augment (default: the original + 63 RandomResizedCrop + flip) | zoom (+ the zoom grid) | N;
              clip_vocab / clip_classnames: TPT's BPE vocabulary and class names.
              Online, over a stream of batches (docs/tta.md): source | bn_adapt | tent | eata | sar.
  batch       online methods' stream batch size (default 64, the papers'; over all devices together).
  episodic    online methods: restart from the source model for every batch.
  corruption  ImageNet-C corruption NAME/SEVERITY made on the fly from each image (e.g. gaussian_noise/5).
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

from zoomjax import resample
from zoomjax.analysis import aggregators, paper_numbers
from zoomjax.errors import UserError
from zoomjax.runtime import config as config_lib

METHODS = ("baseline", "memo_augmix", "memo_rrc", "zoom_tta", "zoom_mean", "zoom_max", "tpt", "zero", "mta", "tda",
           "source", "bn_adapt", "tent", "eata", "sar")
ONLINE_METHODS = ("source", "bn_adapt", "tent", "eata", "sar")  # zoomjax.tta.online: one stream of batches.
CLIP_METHODS = ("tpt", "zero", "mta", "tda")  # zoomjax.tta.clip_tta: CLIP zero-shot classifiers only.
# runlocal's CLIP: a tiny random ViT-B/32-layout image tower at 64 px and a tiny text tower.
_TINY_CLIP = dict(patch_size=16, width=32, depth=1, num_heads=2, mlp_dim=64, embed_dim=16, image_size=64)

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
    "zoom.aggregate": config_lib.OneOf(aggregators.ONLINE, empty_ok=False),
    "zoom.rho": config_lib.Range(0.001, 1, note="the fraction of views tpt and zero keep"),
    **config_lib.MODEL_RANGES,
    **config_lib.DATA_RANGES,
    "method": config_lib.OneOf(METHODS, empty_ok=False),
    "model.paper_row": config_lib.OneOf(paper_numbers.TABLE5_ROWS),
    "memo.optimizer": config_lib.FreeText("an optax optimiser by name; checked before the workdir is claimed"),
    "view.method": config_lib.OneOf(tuple(sorted(resample.FILTERS)), empty_ok=False),
    "canvas_multiple": config_lib.Range(1, integer=True),
    "online.batch_size": config_lib.Range(1, integer=True, note="at least 2 for bn_adapt, tent, eata, sar"),
    "online.shard_batches": config_lib.Range(1, integer=True),
    "online.lr": config_lib.Range(0),
    "online.momentum": config_lib.Range(0, 1),
    "online.e_margin": config_lib.Range(0, note="0 = 0.4 ln C"),
    "online.d_margin": config_lib.Range(0),
    "online.fisher_alpha": config_lib.Range(0, note="0 = no Fisher term (ETA)"),
    "online.fisher_size": config_lib.Range(1, integer=True),
    "online.fisher_data": config_lib.FreeText("a dataset name for EATA's Fisher set ('' = the job's data, clean)"),
    "online.rho": config_lib.Range(0),
    "online.reset_constant": config_lib.Range(0),
    "clip.views": config_lib.OneOf(("augment", "zoom"), empty_ok=False),
    "clip.num_views": config_lib.Range(1, integer=True),
    "clip.keep": config_lib.Range(0.001, 1, note="the fraction of views the confidence filter keeps"),
    "clip.lr": config_lib.Range(0),
    "clip.steps": config_lib.Range(0, integer=True),
    "clip.ctx_init": config_lib.FreeText("TPT's initial prompt context"),
    "clip.vocab": config_lib.InputFile(),
    "clip.class_names": config_lib.InputFile(words=("openai", "zoom_paper")),
    "clip.templates": config_lib.InputFile(words=("openai", "openai80")),
    "clip.mta_lambda_y": config_lib.Range(0.0001),
    "clip.mta_lambda_q": config_lib.Range(0),
    "clip.text.width": config_lib.Range(0, integer=True, note="0 = the family's"),
    "clip.text.depth": config_lib.Range(0, integer=True, note="0 = the family's"),
    "clip.text.num_heads": config_lib.Range(0, integer=True, note="0 = the family's"),
    "clip.text.mlp_dim": config_lib.Range(0, integer=True, note="0 = the family's"),
    "clip.text.context_length": config_lib.Range(0, integer=True, note="0 = the family's"),
}


def get_config(arg=None):
  a = config_lib.parse_arg(arg, method="memo_rrc", model="", checkpoint="", row="", data="demo_photos",
                           paper="", seeds="0", limit=-1, views="", steps=1, lr=2.5e-4, prior=16.0,
                           optimizer="sgd", momentum=0.0, weight_decay=0.0, aggregate="",
                           rho=aggregators.TPT_RHO, clip_vocab="", clip_classnames="openai",
                           batch=0, episodic=False, corruption="", runlocal=False)
  # views: a count (MEMO's B; the CLIP methods' augmented views) or, for the CLIP methods, augment | zoom.
  if a.views.isdigit() or a.views in ("", "augment", "zoom"):
    num_views, view_source = (int(a.views), "augment") if a.views.isdigit() else (0, a.views or "augment")
  else:
    raise UserError(f"views={a.views!r}: give a view count, or augment | zoom (the CLIP methods' view source)")
  if a.method not in METHODS:
    raise UserError(f"method={a.method!r} is not one of {METHODS}")
  if a.aggregate and a.method != "zoom_tta":
    raise UserError(f"aggregate={a.aggregate!r} is for method=zoom_tta (method={a.method!r} fixes its own)")
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
      a.model or ("clip_vit_b32" if a.runlocal and a.method in CLIP_METHODS else
                  "efficientnet_lite_tiny" if a.runlocal else "efficientnet_lite0"), a.checkpoint,
      random_init=a.runlocal)
  if a.runlocal and not a.model and a.method in CLIP_METHODS:
    c.model.overrides = ml_collections.ConfigDict(_TINY_CLIP)
  c.model.paper_row = a.row  # Table 5 row this checkpoint stands for ('' = no paper comparison).

  c.data = config_lib.data_config(a.data)
  if a.corruption:
    c.data.corruption = a.corruption  # ImageNet-C corruption NAME/SEVERITY made on the fly (zoomjax.data).
  c.paper_dataset = a.paper  # Paper column ('' = inferred from the data name).
  config_lib.check_arg("limit", a.limit, config_lib.Range(-1, integer=True, note="0 = all; -1 = the default"))
  c.limit = a.limit if a.limit >= 0 else (2 if a.runlocal else 0)  # First N images (0 = all).

  c.seeds = seeds  # One run per seed; an image's key is fold_in(PRNGKey(seed), image index).
  c.memo = ml_collections.ConfigDict()
  c.memo.num_views = num_views or (4 if a.runlocal else 64)  # B augmented views per step (paper: 64).
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
  # zoom_tta's aggregator (zoom_mean / zoom_max fix it to mean / max).
  c.zoom.aggregate = a.method.split("_")[1] if a.method in ("zoom_mean", "zoom_max") else (a.aggregate or "mean")
  c.zoom.rho = a.rho  # Fraction of views tpt and zero keep (TPT, ZERO: 0.1).

  # CLIP's test-time methods (zoomjax.tta.clip_tta; docs/clip-tta.md): TPT, ZERO, MTA, TDA.
  c.clip = ml_collections.ConfigDict()
  c.clip.views = view_source  # 'augment' (the papers': original + RandomResizedCrop + flip) | 'zoom' (+ zoom grid).
  c.clip.num_views = num_views or (10 if a.runlocal else 64)  # Augmented views incl. the original (papers: 64).
  c.clip.keep = 0.1  # Fraction of the views the confidence filter keeps (TPT, ZERO, TDA: 0.1).
  c.clip.lr = 5e-3  # TPT: AdamW learning rate (weight decay 0.01, torch's default).
  c.clip.steps = 1  # TPT: optimiser steps per image.
  c.clip.ctx_init = "a photo of a"  # TPT: the prompt context it starts from.
  c.clip.vocab = a.clip_vocab  # bpe_simple_vocab_16e6.txt.gz ('' = from an installed open_clip).
  c.clip.class_names = a.clip_classnames  # 'openai' (curated) | a names .txt | a zero_shot_metadata.py.
  c.clip.templates = "openai"  # The zero-shot head's prompts: 'openai' (the 80) | a .txt | a zero_shot_metadata.py.
  c.clip.mta_lambda_y = 0.2  # MTA: entropic term of the inlierness step.
  c.clip.mta_lambda_q = 4.0  # MTA: affinity term of the inlierness step.
  c.clip.text = ml_collections.ConfigDict()  # TPT with random_init: text tower sizes (0 = the family's).
  for field, tiny in (("width", 32), ("depth", 1), ("num_heads", 2), ("mlp_dim", 64), ("context_length", 32)):
    setattr(c.clip.text, field, tiny if a.runlocal else 0)

  # Online methods (zoomjax.tta.online): one stream of batches per seed, the adapted state carried across.
  c.online = ml_collections.ConfigDict()
  c.online.batch_size = a.batch or (4 if a.runlocal else 64)  # Stream batch, all devices together (papers: 64).
  c.online.shuffle = True  # The stream order: a permutation seeded by the run's seed (EATA/SAR shuffle too).
  c.online.episodic = bool(a.episodic)  # Restart from the source model for every batch.
  c.online.shard_batches = 1 if a.runlocal else 4  # Batches per shard file (the unit of resumption).
  c.online.lr = 0.00025  # SGD learning rate (TENT, EATA, SAR on ImageNet at batch 64).
  c.online.momentum = 0.9  # SGD momentum (the same three).
  c.online.e_margin = 0.0  # EATA/SAR reliability margin E0 (0 = 0.4 ln C, the papers').
  c.online.d_margin = 0.05  # EATA redundancy threshold on |cos| of the softmax and its moving average.
  c.online.fisher_alpha = 2000.0  # EATA Fisher term weight (0 = none: ETA).
  c.online.fisher_size = 4 if a.runlocal else 2000  # EATA: source images of the Fisher information (EATA: 2000).
  c.online.fisher_data = ""  # EATA's source set: a dataset name ('' = the job's data without its corruption).
  c.online.rho = 0.05  # SAR's SAM radius.
  c.online.reset_constant = 0.2  # SAR model recovery when the loss EMA falls below this.

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
