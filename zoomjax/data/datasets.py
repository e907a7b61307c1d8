"""Every evaluation set by name: `get_dataset(name, **kwargs) -> Dataset`.

Names (kwargs in brackets; `data_dir` defaults to TFDS's, `$TFDS_DATA_DIR` or ~/tensorflow_datasets):
  imagenet2012        ImageNet val, 1000-way. A prepared TFDS `imagenet2012` (array_record) in data_dir, else
                      built by TFDS's official builder from manual_dir/ILSVRC2012_img_val.tar (once; needs
                      TensorFlow: pip install 'zoomjax[tfds]'). [data_dir, manual_dir, split='validation']
  imagenet2012_real   ImageNet val with ReaL labels: variant 'real' (default; multi-label, the 3,163 images
                      with an empty ReaL set are not in the dataset -> 46,837) or 'union' ({original} | ReaL,
                      50,000). Labels from real_json=PATH/real.json over imagenet2012's images, or a prepared
                      TFDS `imagenet2012_real` in data_dir. [real_json, variant, data_dir, manual_dir]
  imagenet_a / imagenet_r   200-class masks. [data_dir, manual_dir]
  imagenet_sketch     1000-way. [data_dir, manual_dir]
  imagenet_v2         variant 'matched-frequency' (default) | 'threshold-0.7' | 'top-images'. [variant, ...]
  objectnet           113-class mask, the paper's filing of ObjectNet under one WNID per class. [manual_dir]
  imagenet_c/NAME/SEVERITY  the released ImageNet-C files: manual_dir/<NAME>/<SEVERITY>/<wnid>/*.JPEG, or a
                      prepared TFDS imagenet2012_corrupted/<NAME>_<SEVERITY> in data_dir. [manual_dir, data_dir]
  imagenet_hard       multi-label (<= 10), no mask, from the published parquet files. [manual_dir]
  demo_photos         4 real photos shipped in scikit-image / matplotlib (multi-label, no network).
  folder:PATH         class sub-folders named by WNID, or PATH/labels.csv (file,label). [label_space]
Any of them with corruption='NAME/SEVERITY': each image made into its ImageNet-C version on the fly
(zoomjax.data.corruptions).
For A/R/Sketch/V2/ObjectNet/Hard: a build of ours (`builders.ZoomjaxImages`) in data_dir is used, or made from
manual_dir (array_record, no TensorFlow needed), or an official TFDS build of the same dataset in data_dir.
docs/datasets.md lists exactly which files to place where.

Examples are ordered by id (file name or path inside the dataset), so index i means the same image on every
machine and for every process count.
"""
import contextlib
import glob
import json
import os
import pathlib
import re
import shutil
import tarfile
import tempfile
from typing import Any, Dict, Optional

import numpy as np

from zoomjax.data import classes, decode, files
from zoomjax.data import label_space as ls
from zoomjax.data.dataset import Dataset
from zoomjax.errors import NotFoundError, StateError, UnknownNameError, UserError
from zoomjax.runtime import console

_V2_VARIANTS = {  # user spelling -> (our config suffix, official TFDS config)
    "matched-frequency": ("matched-frequency", "matched-frequency"),
    "threshold-0.7": ("threshold0.7", "threshold-0.7"),
    "threshold0.7": ("threshold0.7", "threshold-0.7"),
    "top-images": ("top-images", "topimages"),
    "topimages": ("top-images", "topimages"),
}

# Packaged demo photos: (package, path inside it, WNIDs judged correct by eye).
# coffee.png is an espresso in a demitasse cup on a saucer: espresso and cup, not "coffee mug" (a saucer-less
# cylindrical mug). chelsea.png is a tabby-patterned cat, for which ImageNet's three domestic-cat classes overlap.
DEMO_PHOTOS = (
    ("skimage", "data/chelsea.png", ("n02124075", "n02123045", "n02123159")),  # Egyptian cat, tabby, tiger cat
    ("skimage", "data/coffee.png", ("n07920052", "n07930864")),  # espresso, cup
    ("skimage", "data/rocket.jpg", ("n03773504", "n04008634", "n04266014")),  # missile, projectile, space shuttle
    ("matplotlib", "mpl-data/sample_data/grace_hopper.jpg", ("n03763968",)),  # military uniform
)


def _require_tensorflow(what: str) -> None:
  """Raises a UserError naming the install command when TensorFlow, which `what` needs, cannot be imported.

  Only TFDS's official builders need it (they read archives through tf.io.gfile); it is the `tfds` extra, not a
  dependency of the base install (1.4 GB).
  """
  try:
    import tensorflow  # noqa: F401  pylint: disable=g-import-not-at-top,unused-import
  except ImportError as e:
    raise UserError(f"{what} needs TensorFlow: pip install 'zoomjax[tfds]' (import tensorflow: {e})") from None


def _skip_decoding():
  import tensorflow_datasets as tfds
  return {"image": tfds.decode.SkipDecoding()}


def _text(x) -> str:
  x = x.item() if isinstance(x, np.ndarray) else x
  return x.decode("utf-8", "replace") if isinstance(x, bytes) else str(x)


def _labels_list(x) -> list:
  return [int(v) for v in np.asarray(x).reshape(-1)]


def _unique_ids(ids):
  if len(set(ids)) == len(ids):
    return list(ids)
  return [f"{x}#{k}" for k, x in enumerate(ids)]


def _from_index(name, space, source, index, info) -> Dataset:
  """A Dataset over a TFDS data source given its per-record index (ids/labels/hw), sorted by id."""
  ids = _unique_ids(index["ids"])
  order = sorted(range(len(ids)), key=lambda k: ids[k])
  perm = np.asarray(order, np.int64)
  hw = np.asarray(index["hw"], np.int64).reshape(-1, 2)[perm] if len(perm) else None
  fetch = lambda i: source[int(perm[i])]["image"]
  origins = index.get("origin")
  return Dataset(name, space, [ids[k] for k in order], [index["labels"][k] for k in order], fetch, sizes=hw,
                 info=info, origins=None if origins is None else [origins[k] for k in order])


def _scan(source, label_fn, num_workers: int = 2) -> Dict[str, Any]:
  """Reads every record once for its id, labels and header size (official TFDS builds have no index)."""
  import concurrent.futures

  def one(j):
    rec = source[j]
    fname = _text(rec.get("file_name", f"{j:08d}"))
    try:
      hw = list(decode.image_size(rec["image"], fname))
    except decode.DecodeError:
      hw = [-1, -1]
    return fname, label_fn(rec), hw, _text(rec.get("origin", ""))

  with concurrent.futures.ThreadPoolExecutor(max(1, num_workers)) as pool:
    rows = list(pool.map(one, range(len(source))))
  return {"ids": [r[0] for r in rows], "labels": [r[1] for r in rows], "hw": [r[2] for r in rows],
          "origin": [r[3] for r in rows]}


def _official_source(tfds_name: str, split: str, data_dir):
  """`tfds.data_source` of an official TFDS build in data_dir, or None when there is none."""
  import tensorflow_datasets as tfds
  try:
    return tfds.data_source(tfds_name, split=split, data_dir=data_dir, download=False, decoders=_skip_decoding())
  except Exception as e:  # TFDS raises several types for "not prepared"; distinguish below.
    err = e
  builder = tfds.builder(tfds_name, data_dir=data_dir)
  if builder.is_prepared():
    raise StateError(
        f"{builder.data_dir} holds a TFDS {tfds_name} build that cannot be read by random access ({err}). zoomjax "
        f"reads array_record builds; convert once with `tfds convert_format --dataset_dir={builder.data_dir} "
        f"--out_file_format=array_record` (needs TensorFlow: pip install 'zoomjax[tfds]').") from err
  return None


def _official_index(tfds_name, split, data_dir, label_fn, num_workers):
  """(source, index, info) of an official TFDS build in data_dir, or None. The index (ids, labels, sizes in
  record order) is read from our sidecar or made by one scan and cached next to the data when writable."""
  source = _official_source(tfds_name, split, data_dir)
  if source is None:
    return None
  import tensorflow_datasets as tfds
  from zoomjax.data import builders

  bdir = tfds.builder(tfds_name, data_dir=data_dir).data_dir
  index = builders.read_index(bdir, split)
  if index is None or len(index["ids"]) != len(source):
    index = _scan(source, label_fn, num_workers)
    builders.write_index(bdir, split, index)
  return source, index, {"source": f"tfds {tfds_name} split {split} at {bdir}"}


def _official_dataset(name, space, tfds_name, split, data_dir, label_fn, num_workers):
  found = _official_index(tfds_name, split, data_dir, label_fn, num_workers)
  return None if found is None else _from_index(name, space, *found)


def _ours(config: str, name, space, data_dir, manual_dir, num_workers) -> Optional[Dataset]:
  """Our array_record build of `config`: read it if present, else make it from manual_dir, else None."""
  from zoomjax.data import builders

  builder = builders.ZoomjaxImages(config=config, data_dir=data_dir)
  split = builder.builder_config.split
  if builder.is_prepared():
    # A build made from local files is only as good as those files: one changed since is rebuilt, so that fixing
    # a file and rerunning works.
    reason = builders.stale_reason(config, builder.data_dir, manual_dir)
    if reason:
      where = manual_dir if manual_dir is not None else json.loads(
          (pathlib.Path(builder.data_dir) / builders.SOURCE_FILE).read_text())["manual_dir"]
      console.warn(f"{name}: the build in {builder.data_dir} no longer matches its source ({reason}); rebuilding "
                   f"it from {where}")
      shutil.rmtree(builder.data_dir)
      builder, manual_dir = builders.ZoomjaxImages(config=config, data_dir=data_dir), where
  if not builder.is_prepared():
    if manual_dir is None:
      return None
    manual_dir = os.fspath(os.path.expanduser(manual_dir))
    if not os.path.isdir(manual_dir):
      raise _missing(name, config, data_dir, manual_dir, None)
    paths, content = builders.source_files(config, manual_dir)
    stamp = files.source_stamp(paths, content=content)
    import tensorflow_datasets as tfds
    builder.download_and_prepare(
        file_format="array_record", download_config=tfds.download.DownloadConfig(manual_dir=manual_dir))
    builder.write_index()
    builders.write_source(builder.data_dir, manual_dir, stamp)
  source = builder.as_data_source(split=split, decoders=_skip_decoding())
  index = builders.read_index(builder.data_dir, split)
  if index is None or len(index["ids"]) != len(source):
    index = _scan(source, lambda r: _labels_list(r["labels"]), num_workers)
    builders.write_index(builder.data_dir, split, index)
  return _from_index(name, space, source, index, {"source": f"zoomjax_images/{config} at {builder.data_dir}"})


def _missing(name: str, config: str, data_dir, manual_dir, official: Optional[str]) -> NotFoundError:
  from zoomjax.data import builders

  cfg = {c.name: c for c in builders.CONFIGS}[config]
  where = manual_dir or "<manual_dir>"
  expected = ("**/*.parquet (the published ImageNet-Hard files)" if cfg.parquet
              else " or ".join(cfg.candidates) + " (or class folders directly)")
  return NotFoundError(
      f"dataset {name!r} not found. Pass manual_dir=DIR holding {expected} in {where}"
      + (f", or data_dir holding a prepared TFDS {official} (array_record)" if official else "")
      + f"; looked for builds in data_dir={data_dir or '<TFDS default>'}.")


def _local_images(name, config, space, official, official_split, data_dir, manual_dir, num_workers):
  ds = _ours(config, name, space, data_dir, manual_dir, num_workers)
  if ds is None and official:
    ds = _official_dataset(name, space, official, official_split, data_dir,
                           lambda r: _labels_list(r["label"]), num_workers)
  if ds is None:
    raise _missing(name, config, data_dir, manual_dir, official)
  return ds


def _imagenet2012(split, data_dir, manual_dir, num_workers) -> Dataset:
  split = split or "validation"
  ds = _official_dataset("imagenet2012", ls.IMAGENET_1K, "imagenet2012", split, data_dir,
                         lambda r: _labels_list(r["label"]), num_workers)
  if ds is not None:
    return ds
  if manual_dir is None:
    raise NotFoundError(
        f"imagenet2012 not found in data_dir={data_dir or '<TFDS default>'}. Pass data_dir holding a prepared TFDS "
        f"imagenet2012 (array_record), or manual_dir=DIR holding DIR/ILSVRC2012_img_val.tar (from image-net.org).")
  tar = pathlib.Path(manual_dir).expanduser() / "ILSVRC2012_img_val.tar"
  if not tar.exists():
    raise NotFoundError(f"imagenet2012: {tar} is missing; place ILSVRC2012_img_val.tar (6.3 GB, image-net.org) "
                        f"in manual_dir={manual_dir}")
  check_val_archive(tar)
  _require_tensorflow(f"building imagenet2012 from {tar}")  # The official builder reads it through tf.io.gfile.
  import tensorflow_datasets as tfds
  builder = tfds.builder("imagenet2012", data_dir=data_dir, file_format="array_record")
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=os.fspath(tar.parent)))
  ds = _official_dataset("imagenet2012", ls.IMAGENET_1K, "imagenet2012", split, data_dir,
                         lambda r: _labels_list(r["label"]), num_workers)
  if ds is None:
    raise StateError(f"imagenet2012 was prepared from {tar} but cannot be read from data_dir={data_dir}")
  return ds


_VAL_ID = re.compile(r"ILSVRC2012_val_(\d{8})")
VAL_IMAGES = 50000


def check_val_archive(tar) -> int:
  """The number of images in an ImageNet validation archive whose names TFDS's builder can label; a UserError
  naming the archive and what is wrong otherwise.

  TFDS labels the sorted member names by position in its list of 50,000 labels, so the members must be exactly
  ILSVRC2012_val_00000001.JPEG .. ILSVRC2012_val_<n>.JPEG: the full archive (n = 50,000), or a prefix of it (a
  warning says it is partial). A gap or a foreign file would shift every later label.
  """
  try:
    with tarfile.open(tar, "r:") as tf:
      names = [m.name for m in tf if m.isfile()]
  except (tarfile.TarError, OSError) as e:
    raise UserError(f"{tar}: not a readable tar archive ({e}); download ILSVRC2012_img_val.tar again") from None
  foreign = [n for n in names if not re.fullmatch(r"ILSVRC2012_val_\d{8}\.JPEG", n)]
  if foreign:
    raise UserError(f"{tar}: {len(foreign)} members are not ILSVRC2012_val_XXXXXXXX.JPEG images (e.g. "
                    f"{', '.join(sorted(foreign)[:3])}); use the untouched ILSVRC2012_img_val.tar from image-net.org")
  have = {int(_VAL_ID.search(n).group(1)) for n in names}
  bad = sorted(k for k in have if not 1 <= k <= VAL_IMAGES)
  if bad or len(have) != len(names):
    raise UserError(f"{tar}: holds numbers outside 1..50,000 ({bad[:3]}) or the same image twice; use the "
                    f"untouched ILSVRC2012_img_val.tar from image-net.org")
  n = len(have)
  if have != set(range(1, n + 1)):
    missing = [k for k in range(1, VAL_IMAGES + 1) if k not in have]
    raise UserError(f"{tar}: incomplete: {len(missing):,} of the 50,000 validation images are missing (e.g. "
                    f"{', '.join(f'ILSVRC2012_val_{k:08d}.JPEG' for k in missing[:3])}) and TFDS labels images by "
                    f"position; use the full ILSVRC2012_img_val.tar (6.3 GB, image-net.org)")
  if n < VAL_IMAGES:
    console.warn(f"{tar} holds the first {n:,} of the 50,000 validation images only")
  return n


def load_real_json(path) -> list:
  """The 50,000 ReaL label lists of Beyer et al. (index = val image number - 1)."""
  path = pathlib.Path(path).expanduser()
  if not path.exists():
    raise NotFoundError(f"ReaL labels {path} not found; place real.json from "
                        f"github.com/google-research/reassessed-imagenet there")
  try:
    real = json.loads(path.read_text())
  except (ValueError, OSError) as e:
    raise UserError(f"{path}: cannot read ReaL labels ({e}); expected real.json from "
                    "github.com/google-research/reassessed-imagenet") from None
  if not isinstance(real, list) or len(real) != 50000:
    raise UserError(f"{path}: expected a list of 50,000 label lists, got {type(real).__name__} "
                    f"of length {len(real) if hasattr(real, '__len__') else '?'}")
  return real


def _imagenet_real(variant, real_json, split, data_dir, manual_dir, num_workers) -> Dataset:
  variant = variant or "real"
  if variant not in ("real", "union"):
    raise UserError(f"imagenet2012_real variant must be 'real' or 'union', got {variant!r}")
  space = ls.REAL if variant == "real" else ls.IMAGENET_REAL_UNION
  name = f"imagenet2012_real/{variant}"

  def keep(base_ids, labels, fetch_base, sizes, info):
    rows = [k for k, lab in enumerate(labels) if lab]
    return Dataset(name, space, [base_ids[k] for k in rows], [labels[k] for k in rows],
                   lambda i: fetch_base(rows[i]), sizes=None if sizes is None else sizes[rows],
                   info={**info, "variant": variant, "dropped_empty": len(labels) - len(rows)})

  if real_json is None:  # An official imagenet2012_real build (its builder fetches real.json from GitHub).
    found = _official_index("imagenet2012_real", split or "validation", data_dir,
                            lambda r: [_labels_list(r["original_label"]), sorted(set(_labels_list(r["real_label"])))],
                            num_workers)
    if found is None:
      raise NotFoundError(f"imagenet2012_real needs real_json=PATH/real.json (github.com/google-research/"
                          f"reassessed-imagenet) plus imagenet2012, or a prepared TFDS imagenet2012_real in "
                          f"data_dir={data_dir or '<TFDS default>'}")
    source, index, info = found
    rows = [k for k, (_, rl) in enumerate(index["labels"]) if rl or variant == "union"]
    sub = {"ids": [index["ids"][k] for k in rows], "hw": [index["hw"][k] for k in rows],
           "labels": [index["labels"][k][1] if variant == "real" else
                      list(dict.fromkeys(index["labels"][k][0] + index["labels"][k][1])) for k in rows]}
    sub_source = _Rows(source, rows)
    return _from_index(name, space, sub_source, sub,
                       {**info, "variant": variant, "dropped_empty": len(index["ids"]) - len(rows)})
  real = load_real_json(real_json)
  base = _imagenet2012(split, data_dir, manual_dir, num_workers)
  labels = []
  for k, fid in enumerate(base.ids):
    m = _VAL_ID.search(fid)
    if not m:
      raise UserError(f"imagenet2012_real: example {fid!r} is not an ILSVRC2012_val_XXXXXXXX file, so it has no "
                      f"ReaL entry")
    rl = sorted(set(int(x) for x in real[int(m.group(1)) - 1]))
    orig = [int(x) for x in base.labels[k] if x >= 0]
    labels.append(rl if variant == "real" else list(dict.fromkeys(orig + rl)))
  return keep(base.ids, labels, base.fetch, base._sizes, {**base.info, "real_json": str(real_json)})


class _Rows:
  """A row subset of a data source (random access)."""

  def __init__(self, source, rows):
    self._source, self._rows = source, list(rows)

  def __len__(self):
    return len(self._rows)

  def __getitem__(self, i):
    return self._source[self._rows[i]]


def _folder(path: str, label_space, num_workers) -> Dataset:
  root = pathlib.Path(path).expanduser()
  if not root.is_dir():
    raise NotFoundError(f"folder:{path}: {root} is not a directory (expected <wnid>/<image> sub-folders or "
                        f"a labels.csv with columns file,label)")
  rows = files.csv_rows(root) if (root / "labels.csv").exists() else files.folder_rows(root)
  if label_space is None:
    width = max(len(r[2]) for r in rows)
    space = ls.IMAGENET_1K if width == 1 else ls.LabelSpace("folder_multi_label", multi_label=True, max_labels=width)
  else:
    space = ls.get_label_space(label_space)
  paths = [r[1] for r in rows]
  return Dataset(f"folder:{path}", space, [r[0] for r in rows], [r[2] for r in rows], lambda i: paths[i],
                 info={"source": str(root)})


def _demo_photos() -> Dataset:
  import importlib.util
  ids, paths, labels = [], [], []
  for pkg, rel, wnids in DEMO_PHOTOS:
    spec = importlib.util.find_spec(pkg)
    if spec is None:
      raise NotFoundError(f"demo_photos: package {pkg} is not installed (it ships {rel})")
    path = pathlib.Path(list(spec.submodule_search_locations)[0]) / rel
    if not path.exists():
      raise NotFoundError(f"demo_photos: {path} is missing from the installed {pkg}")
    ids.append(path.name)
    paths.append(str(path))
    labels.append([classes.index_of(w) for w in wnids])
  return Dataset("demo_photos", ls.DEMO_PHOTOS, ids, labels, lambda i: paths[i], info={"source": "packages"})


NAMES = ("imagenet2012", "imagenet2012_real", "imagenet_a", "imagenet_r", "imagenet_sketch", "imagenet_v2",
         "objectnet", "imagenet_hard", "imagenet_c", "demo_photos", "folder:PATH")


def _imagenet_c(variant, data_dir, manual_dir, num_workers) -> Dataset:
  """The released ImageNet-C files of one corruption and severity ('imagenet_c/NAME/SEVERITY'): the official
  layout manual_dir/<corruption>/<severity>/<wnid>/*.JPEG, or a prepared TFDS
  imagenet2012_corrupted/<corruption>_<severity> (array_record) in data_dir."""
  from zoomjax.data import corruptions  # pylint: disable=import-outside-toplevel
  if not variant:
    raise UserError("imagenet_c needs a corruption and severity: data=imagenet_c/NAME/SEVERITY, e.g. "
                    "imagenet_c/gaussian_noise/5")
  corruption, severity = corruptions.parse(variant)
  if corruption == corruptions.CLEAN:
    raise UserError("imagenet_c/clean: the release has no clean images; use the clean dataset itself")
  name = f"imagenet_c/{corruption}/{severity}"
  if manual_dir is not None:
    root = pathlib.Path(manual_dir).expanduser()
    folder = root / corruption / str(severity)
    if not folder.is_dir():
      missing = root / corruption if not (root / corruption).is_dir() else folder
      raise NotFoundError(f"{name}: folder {missing} is missing; manual_dir={manual_dir} must hold the ImageNet-C "
                          f"layout <corruption>/<severity>/<wnid>/*.JPEG (from zenodo.org/record/2235448)")
    ds = _folder(os.fspath(folder), None, num_workers)
    ds.name = name
    return ds
  ds = _official_dataset(name, ls.IMAGENET_1K, f"imagenet2012_corrupted/{corruption}_{severity}", "validation",
                         data_dir, lambda r: _labels_list(r["label"]), num_workers)
  if ds is None:
    raise NotFoundError(f"{name} not found: pass manual_dir=DIR holding the ImageNet-C layout "
                        f"DIR/{corruption}/{severity}/<wnid>/*.JPEG, or data_dir holding a prepared TFDS "
                        f"imagenet2012_corrupted/{corruption}_{severity} (array_record); looked in "
                        f"data_dir={data_dir or '<TFDS default>'}")
  return ds


_SLICE = re.compile(r"^(?P<split>[^\[]*)(\[(?P<a>-?\d*):(?P<b>-?\d*)\])?$")


def get_dataset(name: str, *, data_dir=None, manual_dir=None, split: Optional[str] = None, real_json=None,
                variant: Optional[str] = None, label_space=None, num_workers: int = 2,
                corruption: Optional[str] = None, corruption_size: Optional[int] = None) -> Dataset:
  """The dataset `name` (see the module docstring); a clear error naming the files to place where.

  `split` names the TFDS split of official builds ('validation' for imagenet2012); a trailing `[a:b]` (also
  alone, e.g. '[:100]') keeps examples a..b-1 *after* sorting by id, the same way for every source.
  `corruption` ('NAME/SEVERITY', e.g. 'gaussian_noise/5') replaces every image by its ImageNet-C version made
  on the fly at `corruption_size` (None: 224) (zoomjax.data.corruptions).
  """
  from zoomjax.data import corruptions  # pylint: disable=import-outside-toplevel
  if corruption:
    corruptions.parse(corruption)  # A bad name or severity fails before any data is read.
  m = _SLICE.match(split or "")
  if m is None:
    raise UserError(f"split {split!r}: use 'name', 'name[a:b]' or '[a:b]' with integer bounds")
  with _tfds_scratch_removed():
    ds = _get(name, data_dir=data_dir, manual_dir=manual_dir, split=m.group("split") or None, real_json=real_json,
              variant=variant, label_space=label_space, num_workers=num_workers)
  if m.group(2):
    a, b = (int(x) if x else None for x in (m.group("a"), m.group("b")))
    rows = range(len(ds))[a:b]
    if not rows:
      raise UserError(f"split {split!r} selects no examples of the {len(ds)} in {ds.name}")
    ds = ds.subset(rows)
  return corruptions.corrupted(ds, corruption, corruption_size) if corruption else ds


@contextlib.contextmanager
def _tfds_scratch_removed():
  """Removes the empty `tmp*tfds` folders TFDS leaves in the temp directory while this block runs.

  Building a TFDS builder for a dataset that is not prepared makes such a folder for metadata it would fetch from
  Google Cloud Storage, and leaves it behind even when that fetch is off (TFDS's default); every lookup of a
  missing build would litter /tmp. Only folders new since the block began, and still empty, are removed.
  """
  pattern = os.path.join(tempfile.gettempdir(), "tmp*tfds")
  before = set(glob.glob(pattern))
  try:
    yield
  finally:
    for folder in set(glob.glob(pattern)) - before:
      with contextlib.suppress(OSError):  # Not empty (or gone): not ours to remove.
        os.rmdir(folder)


def _get(name, *, data_dir, manual_dir, split, real_json, variant, label_space, num_workers) -> Dataset:
  if data_dir is not None:
    data_dir = os.fspath(os.path.expanduser(data_dir))
  if name.startswith("folder:"):
    return _folder(name[len("folder:"):], label_space, num_workers)
  if "/" in name and variant is None:  # 'imagenet_v2/threshold-0.7', 'imagenet2012_real/union'
    name, variant = name.split("/", 1)
  if name == "demo_photos":
    return _demo_photos()
  if name == "imagenet_c":
    return _imagenet_c(variant, data_dir, manual_dir, num_workers)
  if name == "imagenet2012":
    return _imagenet2012(split, data_dir, manual_dir, num_workers)
  if name in ("imagenet2012_real", "imagenet_real"):
    return _imagenet_real(variant, real_json, split, data_dir, manual_dir, num_workers)
  if name == "imagenet_a":
    return _local_images(name, "imagenet_a", ls.IMAGENET_A_200, "imagenet_a", "test", data_dir, manual_dir, num_workers)
  if name == "imagenet_r":
    return _local_images(name, "imagenet_r", ls.IMAGENET_R_200, "imagenet_r", "test", data_dir, manual_dir, num_workers)
  if name == "imagenet_sketch":
    return _local_images(name, "imagenet_sketch", ls.IMAGENET_1K, "imagenet_sketch", "test", data_dir, manual_dir,
                         num_workers)
  if name == "imagenet_v2":
    variant = variant or "matched-frequency"
    if variant not in _V2_VARIANTS:
      raise UserError(f"imagenet_v2 variant {variant!r}; choose one of {sorted(set(_V2_VARIANTS))}")
    ours, official = _V2_VARIANTS[variant]
    return _local_images(f"imagenet_v2/{ours}", f"imagenet_v2-{ours}", ls.IMAGENET_1K, f"imagenet_v2/{official}",
                         "test", data_dir, manual_dir, num_workers)
  if name == "objectnet":
    return _local_images(name, "objectnet", ls.OBJECTNET_113, None, None, data_dir, manual_dir, num_workers)
  if name == "imagenet_hard":
    ds = _local_images(name, "imagenet_hard", ls.IMAGENET_HARD, None, None, data_dir, manual_dir, num_workers)
    if len(ds) != 10980:
      ds.info["warning"] = f"{len(ds)} examples; the final ImageNet-Hard (2023-05-25) has 10,980"
      console.warn(f"imagenet_hard: {ds.info['warning']} (source: {ds.info.get('source', '?')})")
    return ds
  raise UnknownNameError(f"unknown dataset {name!r}; known: {', '.join(NAMES)}")
