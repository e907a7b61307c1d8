"""Host input pipeline for sweeps: canvas-bucketed, fixed-size, masked batches.

`make_batches` yields dicts of numpy arrays:
  image  uint8 (B, Hc, Wc, 3)  the image at the top-left of a zero canvas (the zoom kernel's input)
  hw     int32 (B, 2)          true (height, width) of each image
  labels int32 (B, L)          1000-way labels, -1 padded (L = dataset.label_space.max_labels)
  mask   bool  (B,)            False for padding slots and for images that failed to decode
  index  int64 (B,)            global example index, -1 where mask is False

Why a plan first: a jit-compiled step needs one canvas shape per batch. So we read image sizes from headers
(cheap, cached by our builds), then plan steps of `batch_size` slots by streaming the examples through
per-bucket queues (a step is emitted when a bucket's queue fills; partial queues are flushed at the end in order
of first appearance). The plan depends only on `indices`, the sizes, `canvas_fn` and `batch_size`, never on
timing, so the order is deterministic. Processes split work by shard (`zoomjax.runtime.shards`), not inside a plan.

Very large photos are legal but costly: every image above `max_pixels_warning` pixels gets a warning with the
memory its step will take, before anything is decoded (a 12000 x 9000 photo took 7.3 GB).

Decoding runs in a thread pool (PIL releases the GIL while decoding) `prefetch` batches ahead; batches come
out in plan order whatever the completion order. `device_prefetch` then moves them to the device ahead of use.
"""
import collections
import concurrent.futures
import dataclasses
import os
from typing import Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from zoomjax.data import decode
from zoomjax.data.dataset import Dataset
from zoomjax.data.view_cache import ViewTable
from zoomjax.errors import UserError
from zoomjax.runtime import console

CanvasFn = Callable[[int, int], Tuple[int, int]]

MAX_PIXELS_WARNING = 50_000_000  # Default of config.max_pixels_warning: about 3 GB per image in a sweep step.
# Peak host memory of a sweep step per canvas pixel (uint8 decode and canvas copies, float32 copies inside the
# resampling): 64 matches a 12000 x 9000 photo (canvas 12288 x 9216) taking 7.3 GB with the paper grid; a
# 4000 x 3000 photo measured 45 with a 2-scale grid.
BYTES_PER_CANVAS_PIXEL = 64
MAX_AUTO_DECODE_THREADS = 32


@dataclasses.dataclass(frozen=True)
class Step:
  """One step: a canvas shape and batch_size global indices (-1 = padding)."""
  canvas: Tuple[int, int]
  indices: np.ndarray


def decode_threads(num_workers: int) -> int:
  """A config's `num_workers` -> decode threads: as given, or with 0 one per CPU core this process may use.

  On an accelerator the host's decoding must keep up with the device, so a fixed small pool would cap every
  model at the same images/s; capped at MAX_AUTO_DECODE_THREADS per process.
  """
  n = int(num_workers)
  if n < 0:
    raise UserError(f"num_workers={n}: use 0 (one decode thread per CPU core) or a positive count")
  if n:
    return n
  cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
  return max(1, min(cores, MAX_AUTO_DECODE_THREADS))


def plan_steps(indices: Sequence[int], sizes: np.ndarray, canvas_fn: CanvasFn, slots: int, *,
               must_hold: bool = True) -> List[Step]:
  """Groups indices (with their (h, w) sizes; h < 0 = unreadable, left out) into steps of `slots` by canvas.

  must_hold: the canvas must hold the image (False when a host transform makes every image canvas-sized)."""
  queues: Dict[Tuple[int, int], List[int]] = collections.OrderedDict()
  steps = []
  for idx, (h, w) in zip(indices, sizes):
    if h < 0:
      continue
    canvas = tuple(int(c) for c in canvas_fn(int(h), int(w)))
    if len(canvas) != 2 or (must_hold and (canvas[0] < h or canvas[1] < w)):
      raise ValueError(f"canvas_fn({h}, {w}) returned {canvas}, which does not hold the image (example {idx})")
    queue = queues.setdefault(canvas, [])
    queue.append(int(idx))
    if len(queue) == slots:
      steps.append(Step(canvas, np.asarray(queue, np.int64)))
      queues[canvas] = []
  for canvas, queue in queues.items():
    if queue:
      steps.append(Step(canvas, np.asarray(queue + [-1] * (slots - len(queue)), np.int64)))
  return steps


def memory_estimate(canvas: Tuple[int, int], batch_size: int) -> int:
  """Bytes a step over a batch of `batch_size` images on `canvas` takes, roughly (BYTES_PER_CANVAS_PIXEL)."""
  return BYTES_PER_CANVAS_PIXEL * int(canvas[0]) * int(canvas[1]) * int(batch_size)


def warn_large_images(dataset: Dataset, indices: np.ndarray, sizes: np.ndarray, canvas_fn: CanvasFn,
                      batch_size: int, max_pixels: int) -> None:
  """One warning per image above `max_pixels` pixels, naming it and the memory its steps will need."""
  big = np.nonzero((sizes[:, 0] > 0) & (sizes[:, 0] * sizes[:, 1] > max_pixels))[0]
  for j in big:
    h, w = (int(v) for v in sizes[j])
    canvas = canvas_fn(h, w)
    console.warn(f"image {dataset.ids[int(indices[j])]} is {w}x{h} ({h * w / 1e6:.3g} Mpx, above "
                 f"max_pixels_warning={max_pixels}): its steps need about "
                 f"{memory_estimate(canvas, batch_size) / 1e9:.1f} GB of memory (canvas {canvas[1]}x{canvas[0]}, "
                 f"batch of {batch_size}); downscale it if memory runs out")


def _empty_batch(batch_size: int, canvas, width: int) -> Dict[str, np.ndarray]:
  return {
      "image": np.zeros((batch_size, *canvas, 3), np.uint8),
      "hw": np.zeros((batch_size, 2), np.int32),
      "labels": np.full((batch_size, width), -1, np.int32),
      "mask": np.zeros((batch_size,), bool),
      "index": np.full((batch_size,), -1, np.int64),
  }


def make_batches(dataset: Dataset, *, batch_size: int, canvas_fn: Optional[CanvasFn] = None,
                 indices: Optional[Sequence[int]] = None, num_workers: int = 2, on_error: str = "skip",
                 prefetch: int = 2, max_pixels_warning: int = MAX_PIXELS_WARNING,
                 transform: Optional[Callable[[np.ndarray], np.ndarray]] = None,
                 transform_hw: Optional[Tuple[int, int]] = None,
                 view_table: Optional[ViewTable] = None) -> Iterator[Dict[str, np.ndarray]]:
  """Batches of `dataset[indices]` (all examples by default; see the module docstring).

  on_error='skip': an unreadable image becomes a masked slot and is listed in `dataset.skipped`;
  on_error='raise': the first unreadable image raises `decode.DecodeError` naming it.
  max_pixels_warning: warn about each image with more pixels, with its memory estimate (0 = never).
  transform / transform_hw: instead of canvases, each decoded image (a loaded RGB PIL image) becomes
  `transform(image)`, a uint8 `transform_hw + (3,)` array, in the decode threads (a per-checkpoint eval view);
  `image` is then (B, *transform_hw, 3) for every batch and `hw` keeps the decoded size.
  view_table: with `transform`, views found there are copied instead of decoded, and new views are kept there
  (`zoomjax.data.view_cache`; the table's key must name this dataset and this transform).
  """
  if (transform is None) == (canvas_fn is None) or (transform is not None and transform_hw is None):
    raise ValueError("make_batches needs either canvas_fn or transform with transform_hw")
  if view_table is not None and transform is None:
    raise ValueError("make_batches: view_table holds transform outputs; pass it with transform")
  if on_error not in ("skip", "raise"):
    raise UserError(f"on_error must be 'skip' or 'raise', got {on_error!r}")
  if batch_size < 1:
    raise UserError(f"batch_size must be at least 1, got {batch_size}")
  indices = np.arange(len(dataset), dtype=np.int64) if indices is None else np.asarray(indices, np.int64)
  if len(indices) and (indices.min() < 0 or indices.max() >= len(dataset)):
    raise IndexError(f"indices must lie in 0..{len(dataset) - 1} for {dataset.name}")
  sizes = dataset.sizes(indices, num_workers=num_workers)
  if on_error == "raise" and (sizes[:, 0] < 0).any():
    bad = dataset.skipped[0]
    raise decode.DecodeError(bad["id"], bad["reason"])
  if transform is not None:
    fixed = tuple(int(v) for v in transform_hw)
    steps = plan_steps(indices, sizes, lambda h, w: fixed, batch_size, must_hold=False)
    return _run(dataset, steps, batch_size, num_workers, on_error, prefetch, transform, view_table)
  if max_pixels_warning > 0:
    warn_large_images(dataset, indices, sizes, canvas_fn, batch_size, max_pixels_warning)
  steps = plan_steps(indices, sizes, canvas_fn, batch_size)
  return _run(dataset, steps, batch_size, num_workers, on_error, prefetch)


def _run(dataset, steps, batch_size, num_workers, on_error, prefetch, transform=None, view_table=None):
  """Generator over planned local steps; decoding in a pool, `prefetch` batches in flight."""
  width = dataset.label_space.max_labels

  def fill(batch, slot, idx):
    cached = None if view_table is None else view_table.get(idx)
    if cached is not None:
      batch["image"][slot], batch["hw"][slot] = cached
      batch["labels"][slot] = dataset.labels[idx]
      batch["mask"][slot] = True
      batch["index"][slot] = idx
      return
    try:
      ex = dataset.read(idx, pil=transform is not None)
    except decode.DecodeError:
      if on_error == "raise":
        raise
      return
    image = ex["image"]
    if transform is not None:
      w, h = image.size
      view = transform(image)
      batch["image"][slot] = view
      if view_table is not None:
        view_table.put(idx, view, (h, w))
    else:
      h, w = image.shape[:2]
      if h > batch["image"].shape[1] or w > batch["image"].shape[2]:
        dataset.record_skip(idx, f"decoded size {h}x{w} differs from its header; does not fit its canvas")
        if on_error == "raise":
          raise decode.DecodeError(ex["id"], "decoded size differs from the header size")
        return
      batch["image"][slot, :h, :w] = image
    batch["hw"][slot] = (h, w)
    batch["labels"][slot] = ex["labels"]
    batch["mask"][slot] = True
    batch["index"][slot] = idx

  pool = concurrent.futures.ThreadPoolExecutor(num_workers) if num_workers > 0 else None
  pending = collections.deque()
  it = iter(steps)

  def submit():
    step = next(it, None)
    if step is None:
      return False
    batch = _empty_batch(batch_size, step.canvas, width)
    jobs = [(slot, int(idx)) for slot, idx in enumerate(step.indices) if idx >= 0]
    if pool is None:
      futures = []
      for slot, idx in jobs:
        fill(batch, slot, idx)
    else:
      futures = [pool.submit(fill, batch, slot, idx) for slot, idx in jobs]
    pending.append((batch, futures))
    return True

  try:
    for _ in range(max(1, prefetch)):
      if not submit():
        break
    while pending:
      batch, futures = pending.popleft()
      for f in futures:
        f.result()  # Re-raises a DecodeError under on_error='raise'.
      submit()
      yield batch
  finally:
    if pool is not None:
      pool.shutdown(wait=True, cancel_futures=True)


def num_steps(dataset: Dataset, *, batch_size: int, canvas_fn: CanvasFn, indices=None,
              num_workers: int = 2) -> int:
  """How many batches `make_batches` yields (e.g. for progress bars)."""
  indices = np.arange(len(dataset), dtype=np.int64) if indices is None else np.asarray(indices, np.int64)
  sizes = dataset.sizes(indices, num_workers=num_workers)
  return len(plan_steps(indices, sizes, canvas_fn, batch_size))


def device_prefetch(iterator: Iterable, size: int = 2, sharding=None) -> Iterator:
  """Moves batches to the device `size` ahead of use (`jax.device_put`, asynchronous).

  With `sharding` (e.g. NamedSharding(mesh, P('data'))) each array is laid out over the mesh; on several
  processes every process passes its local batch and gets the global array
  (`jax.make_array_from_process_local_data`).
  """
  import jax

  def put(batch):
    if sharding is None:
      return jax.device_put(batch)
    if jax.process_count() > 1:
      return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, x), batch)
    return jax.device_put(batch, sharding)

  queue = collections.deque()
  it = iter(iterator)
  for batch in it:
    queue.append(put(batch))
    if len(queue) >= size:
      yield queue.popleft()
  while queue:
    yield queue.popleft()

