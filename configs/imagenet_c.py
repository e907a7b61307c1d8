"""ImageNet-C: one test-time method over corruptions x severities, with mCE and relative mCE (zoomjax.jobs.imagenet_c).

  python -m zoomjax.main --workdir runs/imagenet_c \
    --config configs/imagenet_c.py:method=baseline,model=efficientnet_lite0,data=folder:../shared/data/imagenet-val-100

The benchmark's protocol at severity 5 only:
  --config configs/imagenet_c.py:method=baseline,data=folder:DIR,severities=5
The released ImageNet-C files instead of corruptions made on the fly (manual_dir/<corruption>/<severity>/...):
  --config configs/imagenet_c.py:source=released,manual_dir=DIR

Args (comma-separated key=value, all optional):
  method       any method of configs/tta.py (baseline = the source model, no adaptation).
  model        registered model name or package.module:factory; checkpoint: its weights file.
  data         the clean dataset the corruptions are made from (any zoomjax.data name, folder:PATH, demo_photos).
  source       generated (each corruption made on the fly from `data`, zoomjax.data.corruptions) | released
               (the ImageNet-C files: data imagenet_c/<corruption>/<severity> from manual_dir or data_dir).
  manual_dir / data_dir   where the released files or the clean dataset's files lie.
  corruptions  'benchmark' (the 15), 'all' (+ the 4 held-out ones) or names separated by ';'.
  severities   e.g. 5 or 1;2;3;4;5 (default).
  clean        also run the clean dataset (needed for relative mCE; default on).
  limit        first N images of each cell (0 = all).
  runlocal     smoke test: tiny random model, 2 demo photos, 64 x 64 corrupted images.
Every other setting of the method is `--config.tta.<field>=value` (configs/tta.py). Each (corruption, severity)
cell is a TTA run in <workdir>/cells/<corruption>-<severity>/ (the clean one in cells/clean/); rerunning with
the same --workdir resumes, reusing every finished cell whose settings and images match.
"""
import ml_collections

from zoomjax.analysis import corruption as corruption_lib
from zoomjax.configs import tta as tta_config
from zoomjax.errors import UserError
from zoomjax.runtime import config as config_lib

EXTRA = ("speckle_noise", "gaussian_blur", "spatter", "saturate")  # The benchmark's 4 held-out corruptions.
SOURCES = ("generated", "released")

# The allowed values of every field; the TTA block's own table under `tta.`.
RANGES = {
    **{f"tta.{k}": v for k, v in {**config_lib.COMMON_RANGES, **tta_config.RANGES}.items()},
    "source": config_lib.OneOf(SOURCES, empty_ok=False),
    "corruptions": config_lib.FreeText("corruption names, checked by get_config and by the data layer"),
    "severities": config_lib.Range(1, 5, integer=True),
}


def corruption_list(spec: str):
  """'benchmark' | 'all' | 'a;b;c' -> the corruption names (UserError naming the valid ones otherwise)."""
  if spec == "benchmark":
    return corruption_lib.CORRUPTIONS
  if spec == "all":
    return corruption_lib.CORRUPTIONS + EXTRA
  names = tuple(s.strip() for s in spec.split(";") if s.strip())
  bad = [n for n in names if n not in corruption_lib.CORRUPTIONS + EXTRA]
  if not names or bad or len(set(names)) != len(names):
    raise UserError(f"corruptions={spec!r}: use 'benchmark', 'all' or distinct names separated by ';' from "
                    f"{', '.join(corruption_lib.CORRUPTIONS + EXTRA)}")
  return names


def get_config(arg=None):
  a = config_lib.parse_arg(arg, method="baseline", model="", checkpoint="", data="", source="generated",
                           manual_dir="", data_dir="", corruptions="benchmark", severities="1;2;3;4;5",
                           clean=True, limit=-1, runlocal=False)
  if a.source not in SOURCES:
    raise UserError(f"source={a.source!r} is not one of {', '.join(SOURCES)}")
  try:
    severities = tuple(sorted({int(s) for s in a.severities.split(";") if s.strip()}))
  except ValueError:
    severities = ()
  if not severities or any(not 1 <= s <= 5 for s in severities):
    raise UserError(f"severities={a.severities!r}: use integers 1-5 separated by ';', e.g. 5 or 1;2;3;4;5")
  data = a.data or ("demo_photos" if a.runlocal else "imagenet2012")
  tta_arg = f"method={a.method},data={data}" + (",runlocal" if a.runlocal else "")
  tta_arg += (f",model={a.model}" if a.model else "") + (f",checkpoint={a.checkpoint}" if a.checkpoint else "")
  tta_arg += f",limit={a.limit}" if a.limit >= 0 else ""

  c = ml_collections.ConfigDict()
  c.experiment = "imagenet_c"  # zoomjax.jobs.imagenet_c
  # The TTA run of every cell (configs/tta.py); its data block is the clean dataset, each cell adds its
  # corruption. ImageNet-C images are 224 x 224 and scored as they are: the prediction view is the whole image.
  c.tta = tta_config.get_config(tta_arg)
  size = 64 if a.runlocal else 224
  c.tta.view.resize = size  # Resize(size) + CenterCrop(size) of a size x size image: the image itself.
  c.tta.view.crop = size
  c.tta.canvas_multiple = size  # Canvases of exactly the image's size.
  c.tta.data.manual_dir = a.manual_dir or None
  c.tta.data.data_dir = a.data_dir or None
  c.tta.data.corruption_size = size if a.runlocal else None  # Side of the corrupted images (None: 224).
  c.source = a.source  # generated: corruptions made on the fly from the clean data; released: the files.
  c.corruptions = tuple(corruption_list(a.corruptions))  # Corruptions run, in the benchmark's order.
  c.severities = severities  # Severities run (1-5).
  c.clean = a.clean  # Also run the clean dataset (relative mCE needs its error).
  return config_lib.add_common(c)
