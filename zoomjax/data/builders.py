"""TFDS builder of ours for the datasets whose official TFDS builders need the network.

`ZoomjaxImages` builds each dataset from files a user downloaded once (TFDS `manual_dir`) into array_record,
which `tfds.data_source` reads without TensorFlow. Images are stored as the original bytes (never re-encoded,
never decoded at build time): a corrupt file is kept and reported by name when it is read.

Configs and what manual_dir must hold (first match wins; class folders directly in manual_dir also work):
  imagenet_a                 imagenet-a.tar | imagenet-a/<wnid>/*.jpg           (split 'test')
  imagenet_r                 imagenet-r.tar | imagenet-r/<wnid>/*.jpg           (split 'test')
  imagenet_sketch            ImageNet-Sketch.zip | sketch/<wnid>/*.JPEG        (split 'test')
  imagenet_v2-<variant>      imagenetv2-<variant>.tar.gz | imagenetv2-<variant>-format-val/<0..999>/*.jpeg
                             variants: matched-frequency, threshold0.7, top-images   (split 'test')
  objectnet                  objectnet/<wnid>/*  (the paper's layout: each class under ONE of the 113 WNIDs)
  imagenet_hard              **/*.parquet (HF taesiri/imagenet-hard, columns image,label,origin) (split 'validation')

After building, `index.json` (ids, labels, image sizes in record order) is written next to the data so
readers never scan the records. Building itself needs neither TensorFlow nor the network.
"""
import dataclasses
import hashlib
import json
import os
import pathlib
from typing import Callable, List, Optional, Tuple

import numpy as np
import tensorflow_datasets as tfds

from zoomjax.data import classes, decode, files, subsets
from zoomjax.errors import UserError
from zoomjax.runtime import atomic

INDEX_FILE = "index.json"


@dataclasses.dataclass
class ZoomjaxConfig(tfds.core.BuilderConfig):
  """How one dataset is found in manual_dir and labelled."""
  candidates: Tuple[str, ...] = ()
  label_fn: Optional[Callable[[str], int]] = None
  split: str = "test"
  allowed: Optional[Tuple[int, ...]] = None  # Labels must lie in this subset (ObjectNet's 113).
  parquet: bool = False


V2_VARIANTS = ("matched-frequency", "threshold0.7", "top-images")

CONFIGS = [
    ZoomjaxConfig(name="imagenet_a", candidates=("imagenet-a.tar", "imagenet-a"), label_fn=files.wnid_label,
                  allowed=subsets.IMAGENET_A_200),
    ZoomjaxConfig(name="imagenet_r", candidates=("imagenet-r.tar", "imagenet-r"), label_fn=files.wnid_label,
                  allowed=subsets.IMAGENET_R_200),
    ZoomjaxConfig(name="imagenet_sketch", candidates=("ImageNet-Sketch.zip", "sketch", "imagenet-sketch"),
                  label_fn=files.wnid_label),
    *[ZoomjaxConfig(name=f"imagenet_v2-{v}", candidates=(f"imagenetv2-{v}.tar.gz", f"imagenetv2-{v}-format-val",
                                                          f"imagenetv2-{v}"), label_fn=files.index_label)
      for v in V2_VARIANTS],
    ZoomjaxConfig(name="objectnet", candidates=("objectnet",), label_fn=files.wnid_label,
                  allowed=subsets.OBJECTNET_113),
    ZoomjaxConfig(name="imagenet_hard", split="validation", parquet=True),
]


def _hw(data, name: str) -> List[int]:
  try:
    return list(decode.image_size(data, name))
  except decode.DecodeError:
    return [-1, -1]  # Kept; the reader reports it by name.


class ZoomjaxImages(tfds.core.GeneratorBasedBuilder):
  """Local-file builds of ImageNet-A/R/Sketch/V2, ObjectNet (113) and ImageNet-Hard."""

  VERSION = tfds.core.Version("1.0.0")
  BUILDER_CONFIGS = CONFIGS
  MANUAL_DOWNLOAD_INSTRUCTIONS = ("See zoomjax/data/builders.py (module docstring) or docs/datasets.md, "
                                  "which lists the files to place where.")

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description=f"{self.builder_config.name} built by zoomjax from local files.",
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(),  # Original bytes; read with SkipDecoding.
            "labels": tfds.features.Sequence(tfds.features.ClassLabel(names=list(classes.wnids()))),
            "file_name": tfds.features.Text(),
            "origin": tfds.features.Text(),
        }),
        disable_shuffling=True,  # Records in generation order, so index.json can be written as we go.
    )

  def _split_generators(self, dl_manager):
    cfg = self.builder_config
    if cfg.parquet:
      files.parquet_files(dl_manager.manual_dir)  # Fails early, naming the expected files.
      rows = files.hard_rows(dl_manager.manual_dir)
    else:
      source = files.find_source(dl_manager.manual_dir, cfg.candidates, cfg.label_fn)
      rows = ((i, d, l, "") for i, d, l in files.source_rows(source, cfg.label_fn))
    return {cfg.split: self._generate_examples(rows)}

  def _generate_examples(self, rows):
    cfg = self.builder_config
    self._index = {"ids": [], "labels": [], "hw": [], "origin": []}
    allowed = set(cfg.allowed) if cfg.allowed else None
    for ex_id, data, labels, origin in rows:
      labels = list(dict.fromkeys(int(x) for x in labels))
      bad = [x for x in labels if not 0 <= x < classes.NUM_CLASSES or (allowed and x not in allowed)]
      if bad:
        raise UserError(f"{ex_id}: labels {bad} are outside the {cfg.name} label space")
      if isinstance(data, str):
        data = pathlib.Path(data).read_bytes()
      self._index["ids"].append(ex_id)
      self._index["labels"].append(labels)
      self._index["hw"].append(_hw(data, ex_id))
      self._index["origin"].append(origin)
      yield ex_id, {"image": data, "labels": labels, "file_name": ex_id, "origin": origin}

  def write_index(self) -> None:
    """Saves the index collected during generation (call right after download_and_prepare)."""
    index = getattr(self, "_index", None)
    if index is not None:
      write_index(self.data_dir, self.builder_config.split, index)


SOURCE_FILE = "zoomjax-source.json"


def source_files(config: str, manual_dir) -> Tuple[List[pathlib.Path], bool]:
  """(the files in manual_dir that a build of `config` is made from, whether to hash their content): parquet
  files and archives are hashed, the images of a class-folder tree only stamped by size and mtime."""
  cfg = {c.name: c for c in CONFIGS}[config]
  if cfg.parquet:
    found = files.parquet_files(manual_dir)
    for path in found:
      files.open_parquet(path)  # Not parquet: one line now, not after TFDS has started a build.
    return found, True
  source = files.find_source(manual_dir, cfg.candidates, cfg.label_fn)
  if source.is_file():
    return [source], True
  return [source / rel for rel in files.list_images(source)], False


def write_source(data_dir, manual_dir, stamp: dict) -> None:
  """Records in a build which files it was made from (see `stale_reason`); nothing when data_dir is read-only."""
  try:
    atomic.write_text(os.fspath(pathlib.Path(os.fspath(data_dir)) / SOURCE_FILE),
                      json.dumps({"manual_dir": os.path.abspath(os.path.expanduser(os.fspath(manual_dir))),
                                  "files": stamp}))
  except OSError:
    pass


def stale_reason(config: str, data_dir, manual_dir) -> Optional[str]:
  """Why our build of `config` in data_dir no longer matches its source files, or None when it does or when its
  source cannot be checked (no manual_dir given and the recorded one is gone: the build is all there is).

  The source is manual_dir when given, else the folder the build recorded; a build without a record is stale
  when manual_dir is given (its files cannot be vouched for).
  """
  path = pathlib.Path(os.fspath(data_dir)) / SOURCE_FILE
  try:
    record = json.loads(path.read_text())
  except (OSError, ValueError):
    record = None
  where = manual_dir if manual_dir is not None else (record or {}).get("manual_dir")
  if where is None or not os.path.isdir(os.path.expanduser(os.fspath(where))):
    return None
  if record is None:
    return f"it has no record of its source files in {path}"
  try:
    paths, _ = source_files(config, os.path.expanduser(os.fspath(where)))
  except FileNotFoundError:
    if manual_dir is None:
      return None
    raise
  return files.source_changed(record["files"], paths)


def index_path(data_dir, split: str) -> pathlib.Path:
  return pathlib.Path(os.fspath(data_dir)) / f"zoomjax-{split}-{INDEX_FILE}"


def build_stamp(data_dir) -> str:
  """A hash of the names, sizes and mtimes of a build's files (our sidecars excluded): an index made for one
  build is not reused for a rebuild of the same size with other labels."""
  root = pathlib.Path(os.fspath(data_dir))
  h = hashlib.sha256()
  for p in sorted(root.iterdir()) if root.is_dir() else []:
    if p.is_file() and not p.name.startswith("zoomjax-"):
      st = p.stat()
      h.update(f"{p.name}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
  return h.hexdigest()


def write_index(data_dir, split: str, index: dict) -> bool:
  """Atomically writes an index sidecar, stamped with the build's files; False (no error) when the data dir
  is read-only."""
  path = index_path(data_dir, split)
  if not path.parent.is_dir():
    return False
  try:
    atomic.write_text(os.fspath(path), json.dumps(dict(index, build_stamp=build_stamp(data_dir))))
    return True
  except OSError:
    return False


def read_index(data_dir, split: str) -> Optional[dict]:
  """The index sidecar of this build, or None when there is none or it was made for other files."""
  path = index_path(data_dir, split)
  if not path.exists():
    return None
  try:
    index = json.loads(path.read_text())
  except (OSError, ValueError):
    return None
  if index.get("build_stamp") != build_stamp(data_dir):
    return None
  index["hw"] = np.asarray(index["hw"], np.int64).reshape(-1, 2)
  return index
