"""Sharded, resumable per-image results: the machinery every dataset job (zoom sweep, TTA) runs on.

Shard k holds the images with global index in [k * shard_size, (k + 1) * shard_size), whatever the number of
processes, so any process layout resumes any other's partial run. Processes take shards round-robin, never talk
to each other, and share only the filesystem. A shard file appears (atomic replace of a complete file) only
when all its images are done; a rerun skips shards whose file exists. Process 0 merges when all exist.
A shard left unfinished (Ctrl-C, SIGTERM, an error) keeps its finished images in `shard_<k>.partial.npz`, the
same format (meta and fingerprint included); the rerun computes only the images it lacks, then writes the shard
file and deletes the partial one. A partial file whose ids, fingerprint or meta disagree with the run is dropped
with a warning; the merge never reads partial files.

A shard is an `.npz` of per-image rows (`index` (N,) int64, `ids` (N,) str, `labels` (N, L) int32 -1 padded,
plus the job's own fields, N first), per-run metadata that must be identical in every shard (e.g. view names),
and `skipped` (S,) str: "<id>: <reason>" of the shard's images the data layer could not read, with
`skipped_index` (S,) int64 and `skipped_stamp` (S,) str, the (size, mtime) stamp of each one's file.

Resumption checks every existing shard: a file that cannot be read, holds images outside its range, or was
computed for other images (its fingerprint of ids and labels differs from the dataset's now, e.g. after files
were added or relabelled) is recomputed with a warning naming it, and so is a shard one of whose skipped images'
files changed since (fixed or replaced: the rerun retries it). The workdir's `config.json` is the resume
key: a rerun whose result-changing fields differ is refused by name. One lock file per process index refuses a
second, unconfigured process on the same workdir.
"""
import contextlib
import errno
import fcntl
import hashlib
import json
import os
import time
from typing import Any, Callable, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence

import numpy as np
from absl import logging

from zoomjax.errors import NotFoundError, StateError, UserError, WaitTimeoutError
from zoomjax.runtime import atomic
from zoomjax.runtime import console
from zoomjax.runtime import interrupt

__all__ = ["SHARD_DIR", "CONFIG_FILE", "DATASET_FILE", "ROW_KEYS", "SKIPPED", "FINGERPRINT", "SKIPPED_INDEX",
           "SKIPPED_STAMP", "Rows", "shard_path", "partial_path", "num_shards", "images_to_run", "shard_range",
           "process_shards", "concat_rows", "fingerprint", "save_shard", "load_arrays", "run_shards", "expect",
           "load_partial", "check_shard", "skip_summary", "workdir_lock", "claim", "wait_for_shards",
           "note_dataset", "merge", "check_or_write_config"]

SHARD_DIR = "shards"
CONFIG_FILE = "config.json"
DATASET_FILE = "dataset.json"
ROW_KEYS = ("index", "ids", "labels")  # Every shard's own per-image fields.
SKIPPED = "skipped"
FINGERPRINT = "fingerprint"  # Hash of the ids and labels of the shard's image range when it was computed.
SKIPPED_INDEX, SKIPPED_STAMP = "skipped_index", "skipped_stamp"  # Skipped images and their files' stamps.

Rows = Dict[str, np.ndarray]


def shard_path(workdir: str, k: int) -> str:
  return os.path.join(workdir, SHARD_DIR, f"shard_{k:06d}.npz")


def num_shards(num_images: int, shard_size: int) -> int:
  if shard_size <= 0:
    raise UserError(f"shard_size must be positive, got {shard_size}")
  return -(-num_images // shard_size)


def images_to_run(limit: int, available: int) -> int:
  """How many images a job runs: the first `limit` of the dataset's `available` (config.limit; 0 = all)."""
  limit = int(limit)
  if limit < 0:
    raise UserError(f"config.limit={limit}: use 0 for all images or a positive count")
  return available if limit == 0 else min(limit, available)


def shard_range(k: int, shard_size: int, num_images: int) -> range:
  """Global image indices of shard k."""
  return range(k * shard_size, min((k + 1) * shard_size, num_images))


def process_shards(n_shards: int, process_index: int, process_count: int) -> List[int]:
  """Round-robin assignment of shards to processes."""
  return list(range(process_index, n_shards, process_count))


def _strings(x) -> np.ndarray:
  return np.asarray([str(s) for s in np.asarray(x).reshape(-1)], dtype=np.str_)


def concat_rows(parts: Sequence[Rows]) -> Rows:
  """Joins row dicts along N; `labels` are padded with -1 to the widest."""
  width = max(p["labels"].shape[1] for p in parts)
  out = {}
  for f in parts[0]:
    arrs = [np.asarray(p[f]) for p in parts]
    if f == "labels":
      arrs = [np.pad(a, ((0, 0), (0, width - a.shape[1])), constant_values=-1) for a in arrs]
    out[f] = np.concatenate(arrs, axis=0)
  return out


def fingerprint(ids: Sequence[str], labels: np.ndarray) -> str:
  """sha256 of image ids and their (-1 padded) labels, insensitive to label padding width."""
  h = hashlib.sha256()
  for i, lab in zip(ids, np.asarray(labels)):
    h.update(str(i).encode("utf-8") + b"\0" + ",".join(str(int(x)) for x in lab if x >= 0).encode() + b"\n")
  return h.hexdigest()


def save_shard(path: str, rows: Rows, meta: Mapping[str, Sequence[str]], skipped: Sequence[str],
               skipped_stamps: Optional[Mapping[int, str]] = None) -> None:
  """Writes a shard atomically; `skipped_stamps` {global index: file stamp} of its skipped images."""
  arrays = dict(rows)
  arrays["ids"] = _strings(rows["ids"])
  arrays.update({f: _strings(v) for f, v in meta.items()})
  arrays[SKIPPED] = _strings(skipped)
  if skipped_stamps is not None:
    arrays[SKIPPED_INDEX] = np.asarray(sorted(skipped_stamps), np.int64)
    arrays[SKIPPED_STAMP] = _strings([skipped_stamps[i] for i in sorted(skipped_stamps)])
  atomic.savez(path, arrays)


def load_arrays(path: str, required: Sequence[str]) -> Rows:
  """Every array of an `.npz` results file; a clear error naming the file when it is unreadable or foreign."""
  try:
    with np.load(path, allow_pickle=False) as z:
      arrays = {f: z[f] for f in z.files}
  except Exception as e:  # zipfile.BadZipFile, EOFError, OSError, ValueError: all mean "not readable".
    raise UserError(f"cannot read results file {path}: {type(e).__name__}: {e}; delete it to recompute it") \
        from e
  missing = [f for f in required if f not in arrays]
  if missing:
    raise UserError(f"{path} is not a zoomjax results file of this job (missing {missing}); delete it to "
                    "recompute it")
  return arrays


def run_shards(workdir: str, *, num_images: int, shard_size: int,
               batches_for: Callable[[Sequence[int]], Iterable[Dict[str, np.ndarray]]],
               compute: Callable[[Dict[str, np.ndarray]], Rows], empty_rows: Rows,
               meta: Mapping[str, Sequence[str]], ids_of: Callable[[int], str],
               skipped_in: Callable[[range], List[str]] = lambda rng: [],
               fingerprint_of: Optional[Callable[[range], str]] = None,
               file_stamp_of: Optional[Callable[[int], str]] = None,
               process_index: int = 0, process_count: int = 1,
               progress: Optional[Callable[[int], Any]] = None,
               on_shard_written: Optional[Callable[[int, str], None]] = None) -> List[int]:
  """Computes and writes this process's missing shards; returns the shard ids written now.

  batches_for(indices) yields batches (dicts with 'index' (B,) global index, -1 for padding and unreadable
  images, 'labels' (B, L), ...) over exactly those images, in any order. Each shard gets its own batch stream
  over its unfinished images (all of them, or those its partial file lacks), so compute(batch) -> the job's
  per-row fields (B first) must give each image's rows whatever the other images of its batch (every zoomjax
  step does: per-image programs of fixed shapes); then a resumed run's numbers equal an uninterrupted run's.
  empty_rows: the same fields with zero rows (a shard whose images were all unreadable). skipped_in(range) ->
  "id: reason" of the unreadable images in the range.
  fingerprint_of(range) -> `fingerprint` of the range's ids and labels now; existing shards that do not match
  it (or cannot be read, or hold other images) are recomputed with a warning, and partial files are dropped.
  file_stamp_of(i) -> a stamp of image i's source file now ('' when it has none, e.g. bytes from an archive):
  stored for the shard's skipped images, so that a rerun retries those whose file changed.

  When the shard loop is left early (Ctrl-C or SIGTERM through `zoomjax.runtime.interrupt`, or any exception)
  the finished images of the shard in progress go to its partial file (`partial_path`), which the next run
  continues from. `zoomjax.runtime.interrupt` is told how many of this process's images are kept on disk.
  """
  n_shards = num_shards(num_images, shard_size)
  mine = process_shards(n_shards, process_index, process_count)
  fields = list(dict.fromkeys(tuple(ROW_KEYS) + tuple(empty_rows)))
  todo, partials = [], {}
  for k in mine:
    rng = shard_range(k, shard_size, num_images)
    fp = fingerprint_of(rng) if fingerprint_of is not None else None
    problem = check_shard(shard_path(workdir, k), rng, fp, ids_of, file_stamp_of)
    if problem is None:
      with contextlib.suppress(FileNotFoundError):
        os.remove(partial_path(workdir, k))  # Left by a kill between writing the shard and removing it.
    else:
      if problem != "missing":
        console.warn(f"recomputing {shard_path(workdir, k)}: {problem}")
      todo.append(k)
      rows = load_partial(partial_path(workdir, k), rng, fp, ids_of, fields, meta)
      if rows is not None:
        partials[k] = rows
  if len(todo) < len(mine):
    logging.info("resuming: %d of this process's %d shards already written", len(mine) - len(todo), len(mine))
  total = sum(len(shard_range(k, shard_size, num_images)) for k in mine)
  kept = total - sum(len(shard_range(k, shard_size, num_images)) for k in todo)  # In finished shard files.
  unit = os.path.abspath(workdir)

  def in_partials(but: Optional[int] = None) -> int:
    return sum(len(r["index"]) for j, r in partials.items() if j != but)

  if partials:
    logging.info("resuming %d partly done shards (%d images)", len(partials), in_partials())
  interrupt.account(unit, kept + in_partials(), total)
  done_images = kept + in_partials()
  if progress is not None:
    progress(done_images)  # Starts the clock: rates and ETA count only the work of this run.
  written = []
  current: Dict[str, Any] = {"k": None, "parts": [], "saved": 0}

  def save_partial() -> None:
    """The finished images of the shard in progress -> its partial file (none finished now: nothing)."""
    with interrupt.commit():
      k, parts = current["k"], current["parts"]
      n = sum(len(p["index"]) for p in parts)
      if k is None or n == current["saved"]:
        return
      rows = _sorted_rows(concat_rows(parts))
      meta_k = dict(meta)
      if fingerprint_of is not None:
        meta_k[FINGERPRINT] = [fingerprint_of(shard_range(k, shard_size, num_images))]
      save_shard(partial_path(workdir, k), rows, meta_k, [])
      current["saved"] = n
      interrupt.account(unit, kept + in_partials(but=k) + n, total)

  with interrupt.saving(save_partial):
    for k in todo:
      rng = shard_range(k, shard_size, num_images)
      with interrupt.commit():
        earlier = partials.get(k)
        current.update(k=k, parts=[earlier] if earlier is not None else [],
                       saved=0 if earlier is None else len(earlier["index"]))
      seen = set() if earlier is None else {int(i) for i in earlier["index"]}
      remaining = [i for i in rng if i not in seen]
      try:
        for batch in (batches_for(remaining) if remaining else ()):
          index = np.asarray(batch["index"])
          keep = index >= 0
          if not keep.any():
            continue
          got = [int(i) for i in index[keep]]
          if any(i not in rng or i in seen for i in got):
            raise RuntimeError(f"the data stream for shard {k} ({rng}) yielded unexpected images {got}")
          part = {f: np.asarray(v)[keep] for f, v in compute(batch).items()}
          part["index"] = index[keep].astype(np.int64)
          part["labels"] = np.asarray(batch["labels"])[keep].astype(np.int32)
          part["ids"] = _strings([ids_of(i) for i in got])
          with interrupt.commit():
            seen.update(got)
            current["parts"].append(part)
          done_images += len(got)
          if progress is not None:
            progress(done_images)
      except BaseException:
        try:
          save_partial()  # Finished images survive a Ctrl-C, a bad image under on_error='raise', a bug.
        except Exception as e:  # pylint: disable=broad-except  The original error is the one to report.
          logging.warning("could not keep the finished images of shard %d: %s", k, e)
        raise
      done_images += len(rng) - len(seen)
      parts = current["parts"]
      if parts:
        rows = _sorted_rows(concat_rows(parts))
      else:
        rows = dict(empty_rows, index=np.zeros(0, np.int64), ids=np.zeros(0, np.str_),
                    labels=np.zeros((0, 1), np.int32))
      path = shard_path(workdir, k)
      meta_k = dict(meta)
      if fingerprint_of is not None:
        meta_k[FINGERPRINT] = [fingerprint_of(rng)]
      stamps = None if file_stamp_of is None else {i: file_stamp_of(i) for i in rng if i not in seen}
      with interrupt.commit():
        save_shard(path, rows, meta_k, list(skipped_in(rng)), stamps)
        with contextlib.suppress(FileNotFoundError):
          os.remove(partial_path(workdir, k))
        partials.pop(k, None)
        current.update(k=None, parts=[], saved=0)
        kept += len(rng)
        interrupt.account(unit, kept + in_partials(), total)
      written.append(k)
      if on_shard_written is not None:
        on_shard_written(k, path)
  return written


def expect(workdir: str, *, num_images: int, shard_size: int, process_index: int = 0,
           process_count: int = 1) -> None:
  """Declares a `run_shards(workdir, ...)` still to come in this run (a later TTA seed, evaluate pair), so that
  the line a Ctrl-C prints counts its images, and those its shard files already hold, before it starts."""
  mine = process_shards(num_shards(num_images, shard_size), process_index, process_count)
  total = sum(len(shard_range(k, shard_size, num_images)) for k in mine)
  kept = sum(len(shard_range(k, shard_size, num_images)) for k in mine if os.path.exists(shard_path(workdir, k)))
  interrupt.expect(os.path.abspath(workdir), total, kept)


def _sorted_rows(rows: Rows) -> Rows:
  """Rows in image index order (shards store index order)."""
  order = np.argsort(rows["index"], kind="stable")
  return {f: v[order] for f, v in rows.items()}


def partial_path(workdir: str, k: int) -> str:
  """Shard k's partial file: the images of an unfinished shard that were done when its run stopped."""
  return os.path.join(workdir, SHARD_DIR, f"shard_{k:06d}.partial.npz")


def load_partial(path: str, rng: range, fp: Optional[str], ids_of: Callable[[int], str], fields: Sequence[str],
                 meta: Mapping[str, Sequence[str]]) -> Optional[Rows]:
  """The rows of a partial file that belongs to `rng` as it is now (its ids, fingerprint and `meta` agree), or
  None: none exists, or it is dropped with a warning (its images are computed again)."""
  if not os.path.exists(path):
    return None
  try:
    with np.load(path, allow_pickle=False) as z:
      arrays = {f: z[f] for f in z.files}
  except Exception as e:  # pylint: disable=broad-except  Any unreadable file is recomputed.
    problem = f"unreadable ({type(e).__name__}: {e})"
  else:
    problem = _partial_problem(arrays, rng, fp, ids_of, fields, meta)
  if problem is None:
    return {f: arrays[f] for f in fields}
  console.warn(f"dropping {path} and computing its images again: {problem}")
  with contextlib.suppress(OSError):
    os.remove(path)
  return None


def _partial_problem(arrays: Rows, rng: range, fp: Optional[str], ids_of: Callable[[int], str],
                     fields: Sequence[str], meta: Mapping[str, Sequence[str]]) -> Optional[str]:
  missing = [f for f in list(fields) + list(meta) if f not in arrays]
  if missing:
    return f"it lacks {missing} (written by another job or version)"
  index = arrays["index"]
  if any(len(arrays[f]) != len(index) for f in fields):
    return "its fields have different lengths"
  if len(set(int(i) for i in index)) != len(index) or any(int(i) not in rng for i in index):
    return f"holds images outside its range {rng.start}..{rng.stop - 1} or twice"
  if any(str(arrays["ids"][j]) != ids_of(int(i)) for j, i in enumerate(index)):
    return "its image ids differ from the dataset's at the same indices (the dataset changed)"
  if fp is not None and (FINGERPRINT not in arrays or str(arrays[FINGERPRINT][0]) != fp):
    return "the dataset's images or labels in its range changed since it was written"
  differ = [f for f in meta if [str(x) for x in arrays[f]] != [str(x) for x in meta[f]]]
  if differ:
    return f"its {differ[0]} differ from this run's"
  return None


def check_shard(path: str, rng: range, fp: Optional[str], ids_of: Callable[[int], str],
                file_stamp_of: Optional[Callable[[int], str]] = None) -> Optional[str]:
  """None when the shard at `path` is complete and belongs to `rng` as it is now; else what is wrong."""
  if not os.path.exists(path):
    return "missing"
  try:
    with np.load(path, allow_pickle=False) as z:
      index, ids = z["index"], z["ids"]
      stored = str(z[FINGERPRINT][0]) if FINGERPRINT in z.files else None
      skipped = dict(zip((int(i) for i in z[SKIPPED_INDEX]), (str(t) for t in z[SKIPPED_STAMP]))) \
          if SKIPPED_INDEX in z.files and SKIPPED_STAMP in z.files else {}
  except Exception as e:  # pylint: disable=broad-except  Any unreadable file is recomputed.
    return f"unreadable ({type(e).__name__}: {e})"
  if len(index) != len(ids) or any(int(i) not in rng for i in index):
    return f"holds images outside its range {rng.start}..{rng.stop - 1}"
  if any(str(ids[j]) != ids_of(int(i)) for j, i in enumerate(index)):
    return "its image ids differ from the dataset's at the same indices (the dataset changed)"
  if fp is not None and stored != fp:
    return "the dataset's images or labels in its range changed since it was computed"
  if file_stamp_of is not None:
    changed = [i for i, stamp in skipped.items() if i in rng and file_stamp_of(i) != stamp]
    if changed:
      return (f"the file of skipped image {ids_of(changed[0])}" + (f" (and {len(changed) - 1} more)"
              if len(changed) > 1 else "") + " changed since it was skipped")
  return None


def skip_summary(skipped: Sequence[str], num_images: int, max_listed: int = 5) -> Optional[str]:
  """The console line about skipped images ("<id>: <reason>" each), or None when there were none."""
  if not len(skipped):
    return None
  listed = "; ".join(str(s) for s in skipped[:max_listed])
  more = f"; and {len(skipped) - max_listed} more" if len(skipped) > max_listed else ""
  return (f"skipped {len(skipped)} of {num_images} images (unreadable; all listed in metrics.json): {listed}{more}."
          " Fix or replace their files and rerun with the same --workdir to retry them")


@contextlib.contextmanager
def workdir_lock(workdir: str, process_index: int = 0) -> Iterator[None]:
  """An advisory lock per (workdir, process index): a second process with the same index is refused by name.

  Configured multi-process runs hold one lock each; locks vanish with their process (also after kill -9).
  """
  try:
    os.makedirs(workdir, exist_ok=True)
  except (FileExistsError, NotADirectoryError) as e:
    raise UserError(f"--workdir {workdir}: cannot create it ({e.strerror}: {e.filename})") from None
  path = os.path.join(workdir, f".lock-process-{process_index}")
  fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
  try:
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
      if e.errno not in (errno.EAGAIN, errno.EACCES):
        raise
      holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
      raise StateError(f"{workdir} is in use by another zoomjax process (pid {holder}, process index "
                       f"{process_index}); wait for it to finish or use another --workdir") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode(), 0)
    yield
  finally:
    os.close(fd)


@contextlib.contextmanager
def claim(workdir: str, process_index: int, config_json: Dict[str, Any], result_fields: Sequence[str],
          dataset_name: str, ids: Sequence[str], labels: np.ndarray) -> Iterator[None]:
  """What a job does before computing: lock the workdir (per process), then on process 0 check or write the
  resume key and note the dataset's fingerprint. Call it once the job's model and data are built, so that a
  start that fails leaves the workdir reusable."""
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise UserError(f"--workdir {workdir} is a file, not a directory")
  with workdir_lock(workdir, process_index):
    if process_index == 0:
      check_or_write_config(workdir, config_json, result_fields)
      note_dataset(workdir, dataset_name, ids, labels)
    yield


def wait_for_shards(workdir: str, n_shards: int, timeout_s: float, poll_s: float = 10.0) -> None:
  """Process 0 waits for the other processes' shard files (they share only the filesystem)."""
  t0 = time.monotonic()
  while True:
    missing = [k for k in range(n_shards) if not os.path.exists(shard_path(workdir, k))]
    if not missing:
      return
    if time.monotonic() - t0 > timeout_s:
      raise WaitTimeoutError(f"{len(missing)} shards still missing after {timeout_s:.0f}s, e.g. "
                         f"{shard_path(workdir, missing[0])}; rerun to resume")
    time.sleep(poll_s)


def note_dataset(workdir: str, name: str, ids: Sequence[str], labels: np.ndarray) -> None:
  """Writes `dataset.json` (name, count, fingerprint); warns when it changed since the workdir's last run."""
  path = os.path.join(workdir, DATASET_FILE)
  now = {"name": name, "num_images": len(ids), "fingerprint": fingerprint(ids, labels)}
  if os.path.exists(path):
    try:
      with open(path) as f:
        old = json.load(f)
    except (OSError, json.JSONDecodeError):
      old = {}
    if old == now:
      return
    if old:
      console.warn(f"the dataset changed since the last run in {workdir} ({old.get('num_images')} -> {len(ids)} images"
                   f", fingerprint {str(old.get('fingerprint'))[:12]} -> {now['fingerprint'][:12]}): shards whose "
                   "images changed are recomputed")
  atomic.write_json(path, now)


def merge(workdir: str, n_shards: int, fields: Sequence[str], meta: Sequence[str],
          num_images: Optional[int] = None) -> Rows:
  """Shards 0..n-1 joined in order: per-image `fields` concatenated, `meta` checked identical, `skipped` joined.

  Refuses a missing shard, shards of different runs (meta differs), image indices that are not strictly
  increasing (a duplicate or foreign shard), and, given `num_images`, images neither recorded nor skipped.
  """
  missing = [k for k in range(n_shards) if not os.path.exists(shard_path(workdir, k))]
  if missing:
    raise NotFoundError(f"{len(missing)} shard(s) missing in {os.path.join(workdir, SHARD_DIR)}, e.g. "
                        f"{shard_path(workdir, missing[0])}; rerun the job with the same workdir")
  fields = list(dict.fromkeys(tuple(ROW_KEYS) + tuple(fields)))
  shards = [load_arrays(shard_path(workdir, k), fields + list(meta)) for k in range(n_shards)]
  for k, s in enumerate(shards[1:], 1):
    for f in meta:
      if list(s[f]) != list(shards[0][f]):
        raise UserError(f"{shard_path(workdir, k)} disagrees with shard 0 on {f} ({list(shards[0][f])[:3]}... "
                        f"vs {list(s[f])[:3]}...): the workdir mixes different runs")
  out = concat_rows([{f: s[f] for f in fields} for s in shards])
  if np.any(np.diff(out["index"]) <= 0):
    raise UserError(f"the shards in {workdir} do not hold strictly increasing image indices (a duplicate or "
                    "foreign shard file)")
  out.update({f: shards[0][f] for f in meta})
  out[SKIPPED] = np.concatenate([s.get(SKIPPED, np.zeros(0, np.str_)) for s in shards]).astype(np.str_)
  if num_images is not None:
    got = len(out["index"]) + len(out[SKIPPED])
    if got != num_images or (len(out["index"]) and not 0 <= out["index"][0] <= out["index"][-1] < num_images):
      raise UserError(f"the shards in {workdir} account for {got} images ({len(out['index'])} recorded, "
                      f"{len(out[SKIPPED])} skipped), not the dataset's {num_images}; rerun to recompute")
  return out


def check_or_write_config(workdir: str, config_json: Dict[str, Any], result_fields: Sequence[str]) -> None:
  """The resume key: writes `config.json`, or refuses a config whose `result_fields` differ from the stored one.

  result_fields are dotted paths into the config ('model', 'memo.lr'); only they must agree, so progress or
  report settings can change between a run and its resumption.
  """
  path = os.path.join(workdir, CONFIG_FILE)
  if os.path.exists(path):
    try:
      with open(path) as f:
        old = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
      raise UserError(f"cannot read {path} ({e}); use a new --workdir or delete that file") from e
    a, b = _leaves(old, result_fields), _leaves(config_json, result_fields)
    diff = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
    if diff:
      detail = "; ".join(f"{k}: {a.get(k)!r} there, {b.get(k)!r} now" for k in diff)
      raise UserError(f"{workdir} holds a run with a different config ({detail}); use a new --workdir or "
                      "delete the old one")
    if old == config_json:
      return
  atomic.write_json(path, config_json)


def _leaves(tree: Dict[str, Any], prefixes: Sequence[str]) -> Dict[str, Any]:
  """{dotted path: value} of the leaves of `tree` under any of the dotted `prefixes`.

  An empty dict holds no leaf, so a field added later as an empty block (e.g. `model.overrides`) does not make
  older workdirs unresumable.
  """
  out = {}

  def walk(node, path):
    if isinstance(node, dict):
      for k, v in node.items():
        walk(v, f"{path}.{k}" if path else k)
    elif any(path == p or path.startswith(p + ".") for p in prefixes):
      out[path] = node

  walk(tree, "")
  return out
