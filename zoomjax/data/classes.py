"""The 1000 ImageNet classes: WNIDs, human-readable names and the val ground truth, all read offline.

Sources (no hand-typed lists):
- WNIDs in the standard class-index order (sorted WNIDs, n01440764 first): `labels.txt` that the
  tensorflow-datasets wheel ships next to its `imagenet2012` builder.
- The 50,000 validation WNIDs: `validation_labels.txt` from the same folder (ILSVRC2012_val_00000001 first).
- Human-readable names: the classic synset-words list (`"tench, Tinca tinca"`, ...) that the same wheel
  ships as the Python literal `IMAGENET_LABELS_LIST` in `tensorflow_datasets/datasets/siscore/labels.py`.
  We parse that file with `ast.literal_eval` (no import, so no TFDS side effects); `class_names()` returns
  the first synonym ("tench"), `class_names(full=True)` the whole entry. If a future TFDS drops that file
  the names fall back to WNIDs, with a warning.
"""
import ast
import functools
import importlib.util
import pathlib
import warnings
from typing import Dict, List, Tuple

from zoomjax.errors import NotFoundError, UnknownNameError

NUM_CLASSES = 1000


def _tfds_dir() -> pathlib.Path:
  spec = importlib.util.find_spec("tensorflow_datasets")
  if spec is None or not spec.submodule_search_locations:
    raise ImportError("tensorflow-datasets is not installed; it ships the ImageNet label files zoomjax reads")
  return pathlib.Path(list(spec.submodule_search_locations)[0])


def imagenet2012_file(name: str) -> pathlib.Path:
  """Path of a label file shipped with TFDS's imagenet2012 builder (labels.txt, validation_labels.txt)."""
  path = _tfds_dir() / "datasets" / "imagenet2012" / name
  if not path.exists():
    raise NotFoundError(f"{path} is missing from the installed tensorflow-datasets wheel")
  return path


@functools.lru_cache(None)
def wnids() -> Tuple[str, ...]:
  """The 1000 WNIDs in class-index order."""
  ids = tuple(imagenet2012_file("labels.txt").read_text().split())
  if len(ids) != NUM_CLASSES or list(ids) != sorted(ids):
    raise ValueError(f"{imagenet2012_file('labels.txt')}: expected 1000 sorted WNIDs, got {len(ids)}")
  return ids


@functools.lru_cache(None)
def wnid_to_index() -> Dict[str, int]:
  return {w: i for i, w in enumerate(wnids())}


def index_of(wnid: str) -> int:
  """1000-way index of a WNID; a clear error for anything else."""
  try:
    return wnid_to_index()[wnid]
  except KeyError:
    raise UnknownNameError(f"{wnid!r} is not one of the 1000 ImageNet-1k WNIDs (TFDS imagenet2012 labels.txt)") \
        from None


@functools.lru_cache(None)
def validation_wnids() -> Tuple[str, ...]:
  """Ground-truth WNID of each of the 50,000 val images, in file-number order."""
  return tuple(imagenet2012_file("validation_labels.txt").read_text().split())


@functools.lru_cache(None)
def _synset_words() -> Tuple[str, ...]:
  path = _tfds_dir() / "datasets" / "siscore" / "labels.py"
  try:
    tree = ast.parse(path.read_text())
    for node in tree.body:
      if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "IMAGENET_LABELS_LIST" for t in node.targets):
        names = tuple(ast.literal_eval(node.value))
        if len(names) == NUM_CLASSES:
          return names
  except (OSError, SyntaxError, ValueError):
    pass
  warnings.warn(f"no ImageNet class-name list found in {path}; class names fall back to WNIDs")
  return wnids()


def class_names(full: bool = False) -> List[str]:
  """1000 human-readable names in class-index order ('tench', 'goldfish', ...).

  full=True gives the whole synset-words entry ('tench, Tinca tinca'). The short form is the first synonym,
  so a name can repeat ('maillot' is 638 and 639): key results by index or WNID, not by name.
  """
  words = _synset_words()
  return list(words) if full else [w.split(",")[0].strip() for w in words]
