"""Host views kept for the later models of a run that see the same view of the same images.

An evaluation run over many checkpoints with one preprocessing (the OpenCLIP batch: every ViT at 224 bicubic,
crop 1.0) would decode and resize every image once per model. The views are uint8 and normalised on the
device, so models with the same (dataset, input size, resize size, filter) can share them: the first model's
decode threads fill a table, the later ones copy from it. Memory is bounded: once `max_bytes` are held, later
views are made as usual and not kept. Cached bytes are the bytes `make_batches` made, so results do not change.
`ViewStore` keeps them on disk instead, for later runs too (evaluating each new checkpoint on the same suite).
"""
import hashlib
import json
import os
import re
import threading
import zlib
from typing import Dict, Hashable, Optional, Sequence, Tuple

import numpy as np
import PIL

from zoomjax import errors
from zoomjax.runtime import atomic
from zoomjax.runtime import console

View = Tuple[np.ndarray, Tuple[int, int]]  # (uint8 view, decoded (height, width)).


class ViewCache:
  """Tables of views by key, sharing one memory budget; safe to use from the decode threads."""

  def __init__(self, max_bytes: int):
    if max_bytes < 0:
      raise ValueError(f"ViewCache max_bytes must be >= 0, got {max_bytes}")
    self.max_bytes = int(max_bytes)
    self.bytes = 0
    self.lock = threading.Lock()  # Guards every table's entries, hit counts and `bytes`.
    self._tables: Dict[Hashable, "ViewTable"] = {}

  def table(self, key: Hashable) -> "ViewTable":
    """The table of one (dataset, view) key, created on first use."""
    with self.lock:
      if key not in self._tables:
        self._tables[key] = ViewTable(self)
      return self._tables[key]

class ViewTable:
  """Views of one dataset under one preprocessing, by example index; counts its hits."""

  def __init__(self, cache: ViewCache):
    self._cache = cache
    self._views: Dict[int, View] = {}
    self.hits = 0

  def __len__(self) -> int:
    return len(self._views)

  def get(self, index: int, count: bool = True) -> Optional[View]:
    view = self._views.get(int(index))
    if view is not None and count:
      with self._cache.lock:
        self.hits += 1
    return view

  def put(self, index: int, view: np.ndarray, hw: Tuple[int, int]) -> None:
    """Keeps a copy of `view` while the cache's budget allows."""
    index, cache = int(index), self._cache
    with cache.lock:
      if index in self._views or cache.bytes + view.nbytes > cache.max_bytes:
        return
      cache.bytes += view.nbytes
      self._views[index] = (np.array(view, np.uint8), (int(hw[0]), int(hw[1])))


class ViewStore:
  """Views on disk, one file per image range, reused by later runs with the same dataset and view.

  `root/<dataset>-<hash of key>/<start>-<stop>.npz` holds the range's views with the ids and file stamps
  (size, mtime and a checksum of the encoded bytes) they were made from. A file whose ids or stamps differ
  from the dataset's now, or that cannot be read, is recomputed with a warning. The key names the dataset, the
  view, Pillow's version (its resize makes them) and what the stamps hold.
  """

  def __init__(self, root: str, key: Dict, dataset):
    # `stamps` names what the staleness stamps hold: stores whose stamps held less live in another directory.
    self.key = dict(key, pillow=PIL.__version__, stamps="id,size,mtime,crc32")
    text = json.dumps(self.key, sort_keys=True, default=str)
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", dataset.name).strip("_")[:60] or "dataset"
    self.dir = os.path.join(os.path.expanduser(root), f"{name}-{hashlib.sha256(text.encode()).hexdigest()[:12]}")
    os.makedirs(self.dir, exist_ok=True)
    key_path = os.path.join(self.dir, "key.json")
    if not os.path.exists(key_path):
      atomic.write_text(key_path, text + "\n")
    self.dataset = dataset
    self.hits = 0
    self.writable = True  # False once a write failed for lack of space or permission: the store is optional.

  def path(self, indices: Sequence[int]) -> str:
    return os.path.join(self.dir, f"{int(indices[0])}-{int(indices[-1]) + 1}.npz")

  def _stamps(self, indices: Sequence[int]) -> np.ndarray:
    return np.asarray([self._stamp(int(i)) for i in indices])

  def _stamp(self, i: int) -> str:
    """'<id>\\0<size>:<mtime_ns>\\0<crc32 of the encoded bytes>' of image i.

    The content checksum catches what size and mtime miss: a same-size replacement whose mtime was restored
    (`cp -p`, `rsync -a`, an archive extracted again), and changed bytes from a source without files. CRC-32
    because it is cheap next to the decode it saves (about 2 % of a decode, resize and crop of an ImageNet
    photo) and misses an accidental change once in 4e9; it is no defence against a forged file.
    """
    src = self.dataset.fetch(i)
    if isinstance(src, (bytes, bytearray, memoryview)):
      file_stamp, content = "", bytes(src)
    else:
      file_stamp = self.dataset.file_stamp(i)
      try:
        with open(src, "rb") as f:
          content = f.read()
      except OSError:
        return f"{self.dataset.ids[i]}\0missing"
    return f"{self.dataset.ids[i]}\0{file_stamp}\0{zlib.crc32(content):08x}"

  def open(self, indices: Sequence[int], hw: Tuple[int, int]) -> ViewTable:
    """A private table with the range's stored views (empty when there are none or they are stale)."""
    table = ViewTable(ViewCache(1 << 62))
    path = self.path(indices)
    if not os.path.exists(path):
      return table
    try:
      with np.load(path, allow_pickle=False) as z:
        index, views, sizes, stamps = z["index"], z["views"], z["hw"], z["stamps"]
      rows = {int(i): k for k, i in enumerate(index)}
      if views.shape[1:] != (*hw, 3) or views.dtype != np.uint8 or not set(rows) <= set(map(int, indices)):
        raise ValueError(f"holds views {views.shape[1:]} {views.dtype} of images {sorted(rows)[:3]}..., not "
                         f"{hw[0]}x{hw[1]} views of images {indices[0]}..{indices[-1]}")
      now = self._stamps(list(rows))
      if not np.array_equal(now, stamps):
        raise ValueError("its images changed since (ids, file size / mtime or content)")
    except Exception as e:  # pylint: disable=broad-except  Any bad file is recomputed, never trusted.
      console.warn(f"recomputing the views in {path}: {e}")
      return table
    for i, k in rows.items():
      table.put(i, views[k], tuple(sizes[k]))
    self.hits += len(rows)
    return table

  def save(self, indices: Sequence[int], table: ViewTable) -> None:
    """Writes the range's views atomically (those of the images that decoded).

    A full disk or a folder that cannot be written stops the store, not the run: one warning, then the views
    are no longer stored (the results do not depend on the store).
    """
    index = sorted({i for i in map(int, indices) if table.get(i, count=False) is not None})
    if not index or not self.writable:
      return
    got = [table.get(i, count=False) for i in index]
    try:
      atomic.savez(self.path(indices), {
          "index": np.asarray(index, np.int64), "views": np.stack([v for v, _ in got]),
          "hw": np.asarray([s for _, s in got], np.int32), "stamps": self._stamps(index)})
    except OSError as e:
      if not (e.errno in errors.DISK_FULL or isinstance(e, PermissionError)):
        raise
      self.writable = False
      console.warn(f"view cache {self.dir}: cannot write {self.path(indices)} ({e.strerror or e}); views are no "
                   "longer stored there in this run, which goes on (free space or set another view_cache_dir)")
