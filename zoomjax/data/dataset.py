"""`Dataset`: a random-access, deterministically ordered view of one evaluation set with its label space.

One small class serves every source (TFDS array_record, image folders, packaged photos): the source gives
ids, -1-padded labels and a `fetch(i) -> bytes | path`; decoding, size look-ups and skip bookkeeping live here.
"""
import concurrent.futures
import os
import threading
from typing import Any, Callable, Dict, List, Optional, Sequence, Union

import numpy as np

from zoomjax.data import classes, decode
from zoomjax.data.label_space import LabelSpace, pad_labels
from zoomjax.errors import UserError

Fetch = Callable[[int], Union[bytes, str]]


class Dataset:
  """An evaluation set: `len`, `.ids`, `.read(i)`, `.label_space`, `.class_names`, `.skipped`.

  - `read(i)` -> {'image': uint8 (H, W, 3) RGB, 'labels': int32 (max_labels,) -1 padded, 'id': str};
    raises `decode.DecodeError` (naming the file) for a corrupt image and records it in `.skipped`.
  - Order is deterministic: sorted ids for folders and our builds, the prepared record order for official
    TFDS datasets (stable for a given prepared copy); `ids[i]` is the stable key to store results under.
  - `.skipped`: [{'index', 'id', 'reason'}] of every example that failed, in index order.
  - `.info`: provenance (source path, variant, counts) for run outputs.
  - `.origins`: per-example source dataset (ImageNet-Hard's `origin` column), or None when the set has none.
  """

  def __init__(self, name: str, label_space: LabelSpace, ids: Sequence[str], labels: Sequence[Sequence[int]],
               fetch: Fetch, *, sizes: Optional[np.ndarray] = None, info: Optional[Dict[str, Any]] = None,
               origins: Optional[Sequence[str]] = None):
    if len(ids) == 0:
      raise UserError(f"dataset {name} is empty (source: {(info or {}).get('source', '?')})")
    if len(labels) != len(ids):
      raise UserError(f"dataset {name}: {len(ids)} ids but {len(labels)} label rows")
    self.name = name
    self.label_space = label_space
    self.ids = list(ids)
    self.info = dict(info or {})
    self._fetch = fetch
    if origins is not None and len(origins) != len(ids):
      raise UserError(f"dataset {name}: {len(ids)} ids but {len(origins)} origins")
    self.origins = None if origins is None or not any(origins) else [str(o) for o in origins]
    self._subset = None if label_space.class_subset is None else frozenset(label_space.class_subset)
    self.labels = np.stack([self._pad(lab, label_space.max_labels, k) for k, lab in enumerate(labels)])
    self._sizes = np.full((len(ids), 2), -1, np.int64) if sizes is None else np.asarray(sizes, np.int64).copy()
    self._skipped: Dict[int, str] = {}
    self._lock = threading.Lock()

  def _pad(self, lab, width, k) -> np.ndarray:
    lab = [int(x) for x in lab]
    if self._subset is not None and any(x not in self._subset for x in lab):
      raise UserError(f"{self.name} {self.ids[k]}: labels {lab} are outside the {self.label_space.name} classes")
    try:
      return pad_labels(lab, width)
    except ValueError as e:
      raise UserError(f"{self.name} {self.ids[k]}: {e} ({self.label_space.name})") from None

  def __len__(self) -> int:
    return len(self.ids)

  def __repr__(self) -> str:
    return f"Dataset({self.name!r}, {len(self)} examples, label_space={self.label_space.name})"

  @property
  def class_names(self) -> List[str]:
    """The 1000 class names in index order (predictions are 1000-way for every dataset)."""
    return classes.class_names()

  @property
  def skipped(self) -> List[Dict[str, Any]]:
    with self._lock:
      return [{"index": i, "id": self.ids[i], "reason": r} for i, r in sorted(self._skipped.items())]

  def record_skip(self, index: int, reason: str) -> None:
    with self._lock:
      self._skipped.setdefault(int(index), reason)

  def subset(self, rows: Sequence[int], name: Optional[str] = None) -> "Dataset":
    """The examples `rows` (in that order) as a new Dataset sharing this one's source."""
    rows = [int(r) for r in rows]
    parent = self._fetch
    out = Dataset(name or self.name, self.label_space, [self.ids[r] for r in rows],
                  [[int(x) for x in self.labels[r] if x >= 0] for r in rows], lambda i: parent(rows[i]),
                  sizes=self._sizes[rows], info={**self.info, "rows_of_parent": len(self)},
                  origins=None if self.origins is None else [self.origins[r] for r in rows])
    return out

  def fetch(self, i: int) -> Union[bytes, str]:
    """The encoded image (bytes) or its path."""
    return self._fetch(int(i))

  def file_stamp(self, i: int) -> str:
    """'<size>:<mtime_ns>' of example i's file, '' when it has none (encoded bytes), 'missing' when it is gone.

    Cheap (one stat; one record read for a source of bytes): results keep the stamps of skipped images, so that
    a rerun retries those whose file changed.
    """
    src = self._fetch(int(i))
    if isinstance(src, (bytes, bytearray, memoryview)):
      return ""
    try:
      st = os.stat(src)
    except OSError:
      return "missing"
    return f"{st.st_size}:{st.st_mtime_ns}"

  def read(self, i: int, pil: bool = False) -> Dict[str, Any]:
    """Example i: 'image' uint8 (H, W, 3) (a loaded RGB PIL image with `pil`), 'labels', 'id'."""
    i = int(i)
    if not 0 <= i < len(self):
      raise IndexError(f"{self.name}: index {i} outside 0..{len(self) - 1}")
    try:
      image = (decode.decode_pil if pil else decode.decode_rgb)(self._fetch(i), self.ids[i])
    except decode.DecodeError as e:
      self.record_skip(i, e.reason)
      raise
    self._sizes[i] = image.size[::-1] if pil else image.shape[:2]
    return {"image": image, "labels": self.labels[i].copy(), "id": self.ids[i]}

  def size(self, i: int) -> tuple:
    """(height, width) of example i from the image header (cached); DecodeError when unreadable."""
    i = int(i)
    if self._sizes[i, 0] < 0:
      try:
        self._sizes[i] = decode.image_size(self._fetch(i), self.ids[i])
      except decode.DecodeError as e:
        self.record_skip(i, e.reason)
        raise
    return int(self._sizes[i, 0]), int(self._sizes[i, 1])

  def sizes(self, indices: Optional[Sequence[int]] = None, num_workers: int = 2) -> np.ndarray:
    """(N, 2) sizes of `indices` (all by default); (-1, -1) for unreadable images (recorded in `.skipped`)."""
    indices = np.arange(len(self)) if indices is None else np.asarray(indices, np.int64)
    todo = [int(i) for i in indices if self._sizes[i, 0] < 0 and int(i) not in self._skipped]

    def one(i):
      try:
        self.size(i)
      except decode.DecodeError:
        pass

    if num_workers > 1 and len(todo) > 1:
      with concurrent.futures.ThreadPoolExecutor(num_workers) as pool:
        list(pool.map(one, todo))
    else:
      for i in todo:
        one(i)
    return self._sizes[indices].copy()
