"""Host views kept for the later models of a run that see the same view of the same images.

An evaluation run over many checkpoints with one preprocessing (the OpenCLIP batch: every ViT at 224 bicubic,
crop 1.0) would decode and resize every image once per model. The views are uint8 and normalised on the
device, so models with the same (dataset, input size, resize size, filter) can share them: the first model's
decode threads fill a table, the later ones copy from it. Memory is bounded: once `max_bytes` are held, later
views are made as usual and not kept. Cached bytes are the bytes `make_batches` made, so results do not change.
"""
import threading
from typing import Dict, Hashable, Optional, Tuple

import numpy as np

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

  def get(self, index: int) -> Optional[View]:
    view = self._views.get(int(index))
    if view is not None:
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
