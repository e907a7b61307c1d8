"""The paper's published numbers, as data, so reports can put ours next to theirs.

Source: the paper (Table 1 of the final version of 2023-08-07; min-cover sizes; the additional classifiers of
its notebooks; per-anchor upper bounds; disentangling; aggregation; Table 5, MEMO). All values are
percentages over the full datasets (ImageNet val = 50,000 images), so on a subset they are a reference, not a
target.

Keys: models use zoomjax model names (`resnet50`, `vit_b32`, ...), datasets the paper's abbreviations
(`IN`, `ReaL`, `IN+ReaL`, `IN-A`, `IN-R`, `IN-S`, `ON`).
"""
from typing import Dict, Optional

from zoomjax import zoom

__all__ = ["DATASETS", "PAPER_CROP", "ZOOM_IN_SCALES", "MODEL_KEYS", "DISPLAY_NAMES", "DATASET_KEYS", "ONE_CROP",
           "TOP36", "UPPER_BOUND", "MIN_COVER_SIZE", "ADDITIONAL", "ANCHOR_UPPER_BOUND", "DISENTANGLING", "AGGREGATION",
           "UNSOLVED_BY_ALL_IN_REAL", "paper_dataset_key", "lookup", "TABLE5_COLUMNS", "TABLE5_ROWS", "TABLE5",
           "table5", "IMAGENET_HARD", "IMAGENET_HARD_OPENCLIP", "imagenet_hard"]

DATASETS = ("IN", "ReaL", "IN+ReaL", "IN-A", "IN-R", "IN-S", "ON")

# The zoom-in part of the paper's grid (`zoomjax.zoom.PAPER_SCALES`): the scales S > 224, the crop.
PAPER_CROP = 224
ZOOM_IN_SCALES = tuple(s for s in zoom.PAPER_SCALES if s > PAPER_CROP)

# Paper model label -> zoomjax model name.
MODEL_KEYS = {
    "AlexNet": "alexnet", "VGG-16": "vgg16", "ResNet-18": "resnet18", "ResNet-50": "resnet50",
    "ViT-B/32": "vit_b32", "CLIP-ViT-L/14": "clip_vit_l14", "MobileNetV3-Small": "mobilenet_v3_small",
    "EfficientNet-B0": "efficientnet_b0", "ConvNeXt-Base": "convnext_base", "Swin-B": "swin_b",
    "MaxViT-T": "maxvit_t",
}
DISPLAY_NAMES = {v: k for k, v in MODEL_KEYS.items()}

# zoomjax dataset names (data layer) -> paper abbreviation. Folder datasets have no fixed mapping: configs set
# `paper_dataset` (e.g. "IN" for a folder of ImageNet val photos).
DATASET_KEYS = {
    "imagenet2012": "IN", "imagenet": "IN", "imagenet_val": "IN", "imagenet2012_real": "ReaL", "real": "ReaL",
    "imagenet_real": "ReaL", "imagenet_plus_real": "IN+ReaL", "in_real": "IN+ReaL", "imagenet_a": "IN-A",
    "imagenet_r": "IN-R", "imagenet_sketch": "IN-S", "objectnet": "ON",
}


def _parse_table(text: str, columns=DATASETS) -> Dict[str, Dict[str, float]]:
  """Parses 'Model | v1 | v2 ...' rows into {model_key: {column: value}}."""
  out = {}
  for line in text.strip().splitlines():
    cells = [c.strip() for c in line.split("|")]
    name, values = cells[0], cells[1:]
    if len(values) != len(columns):
      raise ValueError(f"paper table row {line!r} has {len(values)} values, expected {len(columns)}")
    out[MODEL_KEYS.get(name, name)] = {c: float(v) for c, v in zip(columns, values) if v not in ("", "-")}
  return out


# Table 1 (a): standard top-1 with the 1-crop view LOC:1_1_Size:256.
ONE_CROP = _parse_table("""
AlexNet | 56.16 | 62.67 | 61.76 | 1.75 | 21.10 | 10.05 | 14.23
VGG-16 | 71.37 | 78.90 | 78.52 | 2.69 | 26.98 | 16.78 | 28.32
ResNet-18 | 69.45 | 76.94 | 76.47 | 1.37 | 32.14 | 19.41 | 27.59
ResNet-50 | 75.75 | 82.63 | 82.97 | 0.21 | 35.39 | 22.91 | 36.18
ViT-B/32 | 75.75 | 81.89 | 82.59 | 9.64 | 41.29 | 26.83 | 30.89
CLIP-ViT-L/14 | 75.03 | 80.68 | 81.95 | 71.28 | 87.74 | 58.23 | 66.32
""")

# Table 1 (b): greedy top-36 upper bound.
TOP36 = _parse_table("""
random | 3.60 | 3.60 | 3.60 | 18.00 | 18.00 | 3.60 | 31.85
AlexNet | 85.19 | 90.30 | 89.74 | 31.37 | 47.04 | 24.40 | 49.17
VGG-16 | 92.30 | 96.08 | 95.81 | 46.69 | 52.86 | 34.34 | 62.94
ResNet-18 | 92.08 | 95.97 | 95.73 | 47.48 | 58.85 | 37.91 | 63.08
ResNet-50 | 94.46 | 97.36 | 97.40 | 55.68 | 61.42 | 41.71 | 69.60
ViT-B/32 | 95.05 | 97.61 | 97.88 | 68.43 | 68.77 | 49.10 | 70.30
CLIP-ViT-L/14 | 94.19 | 97.32 | 97.56 | 97.16 | 98.60 | 83.77 | 89.59
""")

# Table 1 (c): upper bound over all 324 views.
UPPER_BOUND = _parse_table("""
random | 32.40 | 32.40 | 32.40 | 100.00 | 100.00 | 32.40 | 100.00
AlexNet | 90.03 | 93.85 | 93.48 | 42.23 | 55.52 | 29.53 | 59.65
VGG-16 | 95.30 | 97.90 | 97.66 | 58.27 | 60.88 | 39.90 | 71.85
ResNet-18 | 95.15 | 97.76 | 97.55 | 58.87 | 66.89 | 43.68 | 71.44
ResNet-50 | 96.78 | 98.62 | 98.57 | 66.68 | 68.84 | 47.64 | 76.83
ViT-B/32 | 97.19 | 98.75 | 98.91 | 78.03 | 75.58 | 55.99 | 79.28
CLIP-ViT-L/14 | 96.78 | 98.69 | 98.80 | 98.45 | 99.20 | 89.00 | 93.13
""")

# §2.3 min-cover sizes (out of 324). The IN+ReaL column used the OLD IN+ReaL definition (46,837 images).
MIN_COVER_SIZE = _parse_table("""
ResNet-18 | 250 | 201 | 184 | 211 | 278 | 269 | 254
ResNet-50 | 234 | 178 | 153 | 214 | 271 | 281 | 259
ViT-B/32 | 233 | 168 | 138 | 193 | 257 | 273 | 273
VGG-16 | 242 | 201 | 179 | 222 | 289 | 273 | 259
AlexNet | 255 | 239 | 234 | 212 | 272 | 275 | 268
CLIP-ViT-L/14 | 251 | 197 | 162 | 93 | 114 | 280 | 212
""")

# docs/study.md §2.4 additional classifiers (max, 1-crop, top-36, min-cover) on IN and ReaL (exact values).
_ADD_COLUMNS = ("upper_bound", "one_crop", "top36", "min_cover_size")
ADDITIONAL = {
    "IN": _parse_table("""
MobileNetV3-Small | 95.204 | 67.422 | 91.790 | 242
ResNet-50 | 96.768 | 75.742 | 94.472 | 233
EfficientNet-B0 | 96.870 | 77.692 | 94.866 | 219
ConvNeXt-Base | 97.162 | 83.494 | 95.782 | 189
ViT-B/32 | 97.190 | 75.752 | 95.038 | 229
Swin-B | 97.390 | 83.368 | 95.952 | 201
MaxViT-T | 97.448 | 83.486 | 96.114 | 193
""", _ADD_COLUMNS),
    "ReaL": _parse_table("""
MobileNetV3-Small | 97.658 | 74.471 | 95.627 | 209
ConvNeXt-Base | 98.527 | 88.193 | 97.679 | 157
EfficientNet-B0 | 98.604 | 84.126 | 97.491 | 171
ResNet-50 | 98.625 | 82.627 | 97.353 | 175
Swin-B | 98.693 | 87.805 | 97.745 | 167
ViT-B/32 | 98.753 | 81.893 | 97.600 | 172
MaxViT-T | 98.832 | 88.052 | 97.989 | 155
""", _ADD_COLUMNS),
}

# §2.6 (a) per-anchor upper bounds: 9 values, rows r = 0, 1, 2 (top to bottom), columns c = 0, 1, 2.
_ANCHOR_ROWS = """
IN | ResNet-18 | 71.42 79.16 71.73 79.91 86.51 79.69 72.71 80.01 72.85
IN | ResNet-50 | 80.57 85.18 81.09 85.56 89.90 85.81 81.74 86.16 82.22
IN | ViT-B/32 | 81.25 86.14 81.36 86.68 90.73 86.48 82.51 86.81 81.94
IN | VGG-16 | 75.40 80.85 75.34 82.02 87.16 81.84 76.40 81.60 76.49
IN | AlexNet | 44.10 59.25 43.95 62.81 77.38 62.19 42.83 58.18 42.29
IN | CLIP-ViT-L/14 | 87.36 89.11 87.68 89.10 90.26 89.14 87.79 89.43 87.74
ReaL | ResNet-18 | 78.32 85.62 78.67 86.21 91.97 86.30 79.46 86.42 79.92
ReaL | ResNet-50 | 86.84 90.89 87.40 90.95 94.36 91.40 87.83 91.69 88.41
ReaL | ViT-B/32 | 86.94 91.22 87.09 91.41 94.65 91.47 87.96 91.76 87.79
ReaL | VGG-16 | 82.30 87.17 82.32 88.21 92.37 88.17 83.26 88.03 83.52
ReaL | AlexNet | 49.38 65.89 49.44 69.01 83.60 68.60 48.07 64.53 47.82
ReaL | CLIP-ViT-L/14 | 92.42 93.67 92.76 93.64 94.44 93.70 92.59 93.86 92.62
IN+ReaL | ResNet-18 | 77.79 85.23 78.08 85.92 91.91 85.87 78.94 85.89 79.15
IN+ReaL | ResNet-50 | 86.67 90.81 87.18 91.09 94.74 91.47 87.69 91.70 88.16
IN+ReaL | ViT-B/32 | 87.05 91.57 87.11 91.87 95.32 91.88 88.09 92.08 87.75
IN+ReaL | VGG-16 | 81.71 86.82 81.64 87.91 92.43 87.85 82.65 87.51 82.83
IN+ReaL | AlexNet | 48.90 65.10 48.92 68.46 83.07 67.98 47.67 63.80 47.30
IN+ReaL | CLIP-ViT-L/14 | 92.94 94.26 93.13 94.23 95.17 94.34 93.17 94.43 93.09
IN-R | ResNet-18 | 41.72 47.02 42.02 45.96 52.29 46.10 39.95 44.51 40.01
IN-R | ResNet-50 | 46.95 51.32 47.10 50.26 54.96 50.25 45.98 49.34 45.98
IN-R | ViT-B/32 | 49.99 56.90 50.33 55.34 62.43 55.08 47.94 53.15 47.48
IN-R | VGG-16 | 39.78 42.74 39.49 42.54 46.82 42.48 38.18 41.42 38.24
IN-R | AlexNet | 24.61 30.97 24.46 31.00 39.13 31.08 22.69 28.25 22.68
IN-R | CLIP-ViT-L/14 | 94.57 95.92 94.64 95.87 97.02 95.80 94.15 95.42 94.26
IN-A | ResNet-18 | 14.00 16.31 13.32 17.04 29.95 16.49 14.88 17.25 14.67
IN-A | ResNet-50 | 15.80 18.68 16.12 19.41 36.27 18.51 17.07 20.43 16.93
IN-A | ViT-B/32 | 20.23 26.92 20.57 29.96 52.04 28.05 22.69 28.45 21.31
IN-A | VGG-16 | 15.88 18.01 16.05 19.56 29.80 18.96 16.85 19.57 16.75
IN-A | AlexNet | 10.45 11.09 9.85 12.63 17.63 11.81 11.35 12.80 11.19
IN-A | CLIP-ViT-L/14 | 77.31 85.04 77.53 85.41 92.31 84.65 77.60 84.49 77.29
IN-S | ResNet-18 | 22.31 27.69 22.53 27.06 33.50 27.32 20.10 24.31 19.85
IN-S | ResNet-50 | 28.74 33.00 28.62 32.01 37.08 32.37 26.30 29.65 26.19
IN-S | ViT-B/32 | 33.15 39.10 33.09 37.67 44.04 37.53 28.76 33.55 28.53
IN-S | VGG-16 | 22.91 25.85 22.49 26.09 30.00 25.65 20.80 23.48 20.61
IN-S | AlexNet | 8.83 13.52 8.75 13.70 20.41 13.51 6.81 10.36 6.59
IN-S | CLIP-ViT-L/14 | 74.57 77.28 74.65 77.08 79.43 77.19 73.61 76.24 73.62
ON | ResNet-18 | 23.65 25.80 24.03 44.31 57.87 44.55 24.14 27.30 24.42
ON | ResNet-50 | 35.87 36.84 35.85 54.45 64.62 54.99 37.50 39.03 37.36
ON | ViT-B/32 | 27.53 29.51 27.38 51.29 64.70 51.41 30.04 32.44 29.47
ON | VGG-16 | 27.54 28.74 27.47 46.45 57.25 46.53 27.88 29.64 28.38
ON | AlexNet | 12.70 14.86 12.50 26.70 42.84 27.09 12.84 15.06 12.60
ON | CLIP-ViT-L/14 | 66.81 70.03 67.88 82.06 86.97 81.87 68.32 71.38 68.46
"""


def _anchor_table():
  out = {}
  for line in _ANCHOR_ROWS.strip().splitlines():
    ds, model, values = [c.strip() for c in line.split("|")]
    v = [float(x) for x in values.split()]
    if len(v) != 9:
      raise ValueError(f"anchor row {line!r} needs 9 values")
    out.setdefault(MODEL_KEYS[model], {})[ds] = [v[0:3], v[3:6], v[6:9]]
  return out


ANCHOR_UPPER_BOUND = _anchor_table()

# §2.7 disentangling: (UB in, UB out, UB 224, excl. in, excl. out, excl. 224). The exclusive columns carry the
# authors' code quirk (group lists from CLIP's min-cover applied to every model's full matrix).
_DIS_COLUMNS = ("ub_in", "ub_out", "ub_224", "excl_in", "excl_out", "excl_224")
_DIS_ROWS = """
IN | ResNet-18 | 94.57 79.49 81.16 10.59 0.43 0.08
IN | ResNet-50 | 96.30 85.84 86.39 7.59 0.40 0.04
IN | ViT-B/32 | 96.83 86.18 85.12 7.59 0.30 0.02
IN | VGG-16 | 94.60 82.11 83.08 8.92 0.58 0.07
IN | AlexNet | 89.17 62.92 67.98 18.01 0.65 0.18
IN | CLIP-ViT-L/14 | 95.82 90.80 87.04 4.81 0.83 0.05
ReaL | ResNet-18 | 97.37 86.10 87.62 7.38 0.27 0.07
ReaL | ResNet-50 | 98.22 91.07 91.87 4.65 0.25 0.04
ReaL | ViT-B/32 | 98.50 90.79 88.06 4.92 0.18 0.03
ReaL | VGG-16 | 97.38 88.43 89.40 6.02 0.38 0.07
ReaL | AlexNet | 93.15 69.58 74.85 15.47 0.45 0.19
ReaL | CLIP-ViT-L/14 | 98.05 94.44 91.69 3.20 0.55 0.04
IN+ReaL | ResNet-18 | 97.16 85.51 86.77 7.72 0.28 0.05
IN+ReaL | ResNet-50 | 98.25 91.10 91.77 4.60 0.24 0.03
IN+ReaL | ViT-B/32 | 98.70 91.00 90.95 4.92 0.14 0.02
IN+ReaL | VGG-16 | 97.12 87.88 89.09 6.25 0.42 0.06
IN+ReaL | AlexNet | 92.79 68.65 73.93 16.25 0.47 0.16
IN+ReaL | CLIP-ViT-L/14 | 98.24 95.09 92.41 2.75 0.47 0.04
IN-R | ResNet-18 | 63.66 47.95 45.37 13.97 2.75 0.21
IN-R | ResNet-50 | 65.28 52.36 48.59 12.05 3.13 0.22
IN-R | ViT-B/32 | 73.07 56.34 54.84 14.20 2.04 0.27
IN-R | VGG-16 | 56.67 44.95 39.35 11.80 3.85 0.24
IN-R | AlexNet | 52.69 32.86 31.95 17.15 2.34 0.30
IN-R | CLIP-ViT-L/14 | 98.35 96.71 93.57 1.70 0.69 0.04
IN-A | ResNet-18 | 57.07 12.19 10.07 40.67 0.92 0.19
IN-A | ResNet-50 | 64.52 12.95 10.36 48.72 1.00 0.23
IN-A | ViT-B/32 | 76.71 18.57 21.92 51.75 0.85 0.15
IN-A | VGG-16 | 56.59 13.15 13.27 38.24 0.93 0.29
IN-A | AlexNet | 39.91 10.39 9.11 26.27 1.08 0.36
IN-A | CLIP-ViT-L/14 | 97.99 81.32 77.03 12.01 0.44 0.05
IN-S | ResNet-18 | 41.14 27.06 27.41 11.83 1.77 0.36
IN-S | ResNet-50 | 44.72 32.80 31.45 10.99 2.23 0.24
IN-S | ViT-B/32 | 53.45 37.43 37.38 13.11 1.83 0.36
IN-S | VGG-16 | 36.20 27.20 24.59 9.47 2.97 0.28
IN-S | AlexNet | 27.71 13.84 15.11 11.26 1.22 0.33
IN-S | CLIP-ViT-L/14 | 86.20 80.67 73.94 6.64 2.38 0.12
ON | ResNet-18 | 68.98 38.52 37.23 25.76 1.93 0.25
ON | ResNet-50 | 74.16 51.56 47.79 19.68 2.16 0.30
ON | ViT-B/32 | 77.66 44.49 42.65 27.43 1.34 0.20
ON | VGG-16 | 69.19 41.72 39.49 23.34 2.27 0.31
ON | AlexNet | 56.76 23.45 22.59 28.85 2.27 0.33
ON | CLIP-ViT-L/14 | 91.28 82.22 77.60 8.37 1.38 0.15
"""


def _dis_table():
  out = {}
  for line in _DIS_ROWS.strip().splitlines():
    ds, model, values = [c.strip() for c in line.split("|")]
    v = [float(x) for x in values.split()]
    out.setdefault(MODEL_KEYS[model], {})[ds] = dict(zip(_DIS_COLUMNS, v))
  return out


DISENTANGLING = _dis_table()

# §2.8 aggregation without an oracle, ViT-B/32 only (March-2023 draft, Table 4). Keys: "<set> <max|mean>".
_AGG_COLUMNS = ("1-crop", "zoom-in max", "zoom-in mean", "zoom-out max", "zoom-out mean", "zoom-224 max",
                "zoom-224 mean", "5-crop max", "5-crop mean", "10-crop max", "10-crop mean")
AGGREGATION = {"vit_b32": {row[0]: dict(zip(_AGG_COLUMNS, row[1:])) for row in [
    ("IN", 75.75, 74.35, 79.31, 71.48, 69.47, 72.66, 73.67, 77.33, 77.73, 77.30, 77.87),
    ("ReaL", 81.89, 80.22, 85.97, 77.95, 76.28, 79.25, 80.31, 83.24, 83.80, 83.17, 83.87),
    ("IN-A", 9.64, 24.69, 14.29, 7.79, 5.48, 8.12, 7.39, 12.19, 9.88, 12.32, 9.67),
    ("IN-R", 41.29, 39.90, 40.06, 39.05, 36.21, 39.52, 39.28, 43.90, 43.17, 44.31, 43.28),
    ("IN-S", 26.83, 19.74, 20.89, 22.37, 19.25, 25.06, 25.21, 28.72, 28.66, 28.94, 28.76),
    ("ON", 30.89, 32.88, 33.92, 22.56, 19.51, 22.75, 22.72, 26.96, 24.98, 27.14, 24.97),
]}}

# "0.39 % of the IN+ReaL images were not classified correctly by any of the IN-trained classifiers".
UNSOLVED_BY_ALL_IN_REAL = 0.39


def paper_dataset_key(dataset_name: str, override: Optional[str] = None,
                      variant: Optional[str] = None) -> Optional[str]:
  """The paper's abbreviation for a zoomjax dataset name (None when the paper has no such column).

  ReaL's 'union' variant (ReaL labels plus the original one, `imagenet2012_real/union` or variant='union') is the
  paper's IN+ReaL column.
  """
  if override:
    if override not in DATASETS:
      raise ValueError(f"paper_dataset={override!r} is not one of {DATASETS}")
    return override
  base, _, name_variant = dataset_name.split(":")[0].lower().partition("/")
  key = DATASET_KEYS.get(base)
  if key == "ReaL" and "union" in (name_variant, (variant or "").lower()):
    return "IN+ReaL"
  return key


def lookup(model: str, dataset: Optional[str]) -> Dict[str, float]:
  """Every headline paper number (percent) for (model, paper dataset); empty when the paper has none.

  Keys match metrics.json: one_crop_accuracy, upper_bound_accuracy, top36_accuracy, min_cover_size.
  Table 1 takes precedence over the notebooks' additional re-runs, which fill in models Table 1 lacks.
  """
  if dataset is None:
    return {}
  out = {}
  add = ADDITIONAL.get(dataset, {}).get(model, {})
  for key, src in (("one_crop", "one_crop"), ("upper_bound", "upper_bound"), ("top36", "top36"),
                   ("min_cover_size", "min_cover_size")):
    if key in add:
      out[key if key == "min_cover_size" else f"{key}_accuracy"] = add[src]
  for key, table in (("one_crop_accuracy", ONE_CROP), ("top36_accuracy", TOP36),
                     ("upper_bound_accuracy", UPPER_BOUND)):
    if dataset in table.get(model, {}):
      out[key] = table[model][dataset]
  if dataset in MIN_COVER_SIZE.get(model, {}) and dataset != "IN+ReaL":
    out["min_cover_size"] = MIN_COVER_SIZE[model][dataset]
  return out


# Table 5 (top-1 %, MEMO test-time adaptation, March-2023 draft): method -> checkpoint row -> TABLE5_COLUMNS.
TABLE5_COLUMNS = ("IN", "IN-A", "IN-R", "IN-S", "ON")
TABLE5_ROWS = ("resnet50", "deepaug_augmix", "moex_cutmix")
TABLE5 = {
    "baseline": {"resnet50": (76.13, 0.00, 36.17, 24.09, 35.92),
                 "deepaug_augmix": (75.82, 3.87, 46.77, 32.62, 34.81),
                 "moex_cutmix": (79.04, 7.97, 35.52, 23.96, 38.59)},
    "memo_augmix": {"resnet50": (77.27, 0.83, 41.28, 27.63, 38.38),
                    "deepaug_augmix": (76.27, 5.35, 50.79, 35.70, 36.42),
                    "moex_cutmix": (79.38, 11.21, 40.65, 27.07, 40.62)},
    "memo_rrc": {"resnet50": (77.50, 1.31, 40.81, 27.53, 38.85),
                 "deepaug_augmix": (76.38, 5.76, 50.88, 35.65, 36.64),
                 "moex_cutmix": (79.49, 13.61, 40.41, 26.80, 41.43)},
}


def table5(method: str, row: str, dataset: str, override: Optional[str] = None) -> Optional[float]:
  """Table 5's number for (method, checkpoint row, zoomjax dataset name or paper column override), or None."""
  column = paper_dataset_key(dataset, override)
  if not row or column not in TABLE5_COLUMNS or method not in TABLE5:
    return None
  return TABLE5[method][row][TABLE5_COLUMNS.index(column)]


# §4.6: ImageNet-Hard top-1 (%, final 10,980 images unless noted), zoomjax model name -> value. VGG: the README's
# "VGG-16 12.00" is the notebook's vgg19 (11.985). CLIP@336 was measured on the 13,630-image version only.
IMAGENET_HARD = {
    "alexnet": 7.34, "vgg19": 11.985, "resnet18": 10.86, "resnet50": 14.74, "vit_b32": 18.52,
    "efficientnet_b0": 16.576, "efficientnet_b7": 23.20, "tf_efficientnet_l2_ns": 39.00,
    "clip_vit_l14": 1.86, "clip_vit_l14_336": 2.02,
}
# §4.6 OpenCLIP sweep (openclip_results.csv): (zoomjax model name, open_clip pretrained tag) -> top-1 %.
IMAGENET_HARD_OPENCLIP = {
    ("openclip_vit_b32", "laion400m_e31"): 5.34, ("openclip_vit_b32", "laion400m_e32"): 5.41,
    ("openclip_vit_b32", "laion2b_e16"): 5.66, ("openclip_vit_b32", "laion2b_s34b_b79k"): 6.13,
    ("openclip_vit_b32", "datacomp_m_s128m_b4k"): 2.79, ("openclip_vit_b32", "datacomp_s_s13m_b4k"): 0.61,
    ("openclip_vit_b32_quickgelu", "laion400m_e31"): 5.34, ("openclip_vit_b32_quickgelu", "laion400m_e32"): 5.28,
    ("openclip_vit_b16", "laion400m_e31"): 6.31, ("openclip_vit_b16", "laion400m_e32"): 6.46,
    ("openclip_vit_b16", "laion2b_s34b_b88k"): 7.18, ("openclip_vit_b16", "datacomp_l_s1b_b8k"): 5.98,
    ("openclip_vit_l14", "laion400m_e31"): 8.83, ("openclip_vit_l14", "laion400m_e32"): 8.72,
    ("openclip_vit_l14_laion2b", "laion2b_s32b_b82k"): 10.13, ("openclip_vit_l14", "datacomp_xl_s13b_b90k"): 15.60,
    ("openclip_vit_l14", "commonpool_xl_clip_s13b_b90k"): 11.58,
    ("openclip_vit_l14", "commonpool_xl_laion_s13b_b90k"): 11.42,
    ("openclip_vit_l14", "commonpool_xl_s13b_b90k"): 12.44,
    ("openclip_vit_h14", "laion2b_s32b_b79k"): 13.01, ("openclip_vit_g14", "laion2b_s12b_b42k"): 11.47,
    ("openclip_vit_g14", "laion2b_s34b_b88k"): 14.03, ("openclip_vit_bigg14", "laion2b_s39b_b160k"): 15.93,
    # ConvNeXt image towers (zoomjax.models.clip_convnext).
    ("openclip_convnext_base", "laion400m_s13b_b51k"): 4.74,
    ("openclip_convnext_base_w", "laion2b_s13b_b82k"): 6.09,
    ("openclip_convnext_base_w", "laion2b_s13b_b82k_augreg"): 7.25,
    ("openclip_convnext_base_w", "laion_aesthetic_s13b_b82k"): 5.57,
    ("openclip_convnext_base_w_320", "laion_aesthetic_s13b_b82k"): 5.50,
    ("openclip_convnext_base_w_320", "laion_aesthetic_s13b_b82k_augreg"): 7.14,
    ("openclip_convnext_large_d", "laion2b_s26b_b102k_augreg"): 10.39,
    ("openclip_convnext_large_d_320", "laion2b_s29b_b131k_ft"): 10.69,
    ("openclip_convnext_large_d_320", "laion2b_s29b_b131k_ft_soup"): 11.20,
    ("openclip_convnext_xxlarge", "laion2b_s34b_b82k_augreg"): 14.27,
    ("openclip_convnext_xxlarge", "laion2b_s34b_b82k_augreg_rewind"): 14.23,
    ("openclip_convnext_xxlarge", "laion2b_s34b_b82k_augreg_soup"): 14.68,
    # CoCa's contrastive towers (zoomjax.models.clip_coca).
    ("openclip_coca_vit_b32", "laion2b_s13b_b90k"): 5.83,
    ("openclip_coca_vit_b32", "mscoco_finetuned_laion2b_s13b_b90k"): 0.20,
    ("openclip_coca_vit_l14", "laion2b_s13b_b90k"): 10.79,
    ("openclip_coca_vit_l14", "mscoco_finetuned_laion2b_s13b_b90k"): 9.28,
}


def imagenet_hard(model: str, pretrained: Optional[str] = None) -> Optional[float]:
  """The paper's ImageNet-Hard top-1 (%) for a zoomjax model name (and open_clip tag), or None."""
  if pretrained:
    return IMAGENET_HARD_OPENCLIP.get((model, pretrained))
  return IMAGENET_HARD.get(model)
