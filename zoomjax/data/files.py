"""Local file layouts: image folders, tar/zip archives, labels.csv, ImageNet-Hard parquet.

Everything here is plain Python (no TFDS): it turns what a user downloaded into `(id, source, labels)` rows,
where `source` is a path or the encoded bytes. `builders.py` feeds these rows to TFDS; `folder:PATH` reads
them in place.
"""
import csv
import hashlib
import io
import os
import pathlib
import tarfile
import zipfile
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple, Union

from zoomjax.data import classes

from zoomjax.errors import NotFoundError, UnknownNameError, UserError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm", ".pbm")
ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".zip")

# A label directory name -> 1000-way index. WNID folders (ImageFolder layout, A/R/Sketch/ObjectNet) or
# 0..999 class-index folders (ImageNetV2's layout).
LabelFn = Callable[[str], int]


def is_image(path: str) -> bool:
  name = os.path.basename(path)
  return not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS)


def wnid_label(dirname: str) -> int:
  return classes.index_of(dirname)


def index_label(dirname: str) -> int:
  if not dirname.isdigit() or not 0 <= int(dirname) < classes.NUM_CLASSES:
    raise UnknownNameError(f"{dirname!r} is not a class-index folder 0..999 (ImageNetV2 layout)")
  return int(dirname)


def iter_archive(path: Union[str, os.PathLike]) -> Iterator[Tuple[str, bytes]]:
  """(member path, bytes) of every image in a .tar[.gz]/.tgz/.zip, streamed in archive order."""
  path = str(path)
  if path.endswith(".zip"):
    with zipfile.ZipFile(path) as zf:
      for info in zf.infolist():
        if not info.is_dir() and is_image(info.filename):
          yield info.filename, zf.read(info)
  else:
    with tarfile.open(path, "r|*") as tf:  # Stream mode: one pass, also for .tar.gz.
      for member in tf:
        if member.isfile() and is_image(member.name):
          yield member.name, tf.extractfile(member).read()


def list_images(root: Union[str, os.PathLike]) -> List[str]:
  """Sorted relative paths ('/'-separated) of all images under a folder."""
  root = str(root)
  out = []
  # Symlinked folders are followed (datasets are often assembled from links), each real folder once: a link back
  # to a folder already seen (a loop) would otherwise repeat its images, or never end with two such links.
  seen = {os.path.realpath(root)}
  for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
    keep = []
    for d in sorted(d for d in dirnames if not d.startswith(".")):
      real = os.path.realpath(os.path.join(dirpath, d))
      if real not in seen:
        seen.add(real)
        keep.append(d)
    dirnames[:] = keep
    out.extend(os.path.relpath(os.path.join(dirpath, f), root).replace(os.sep, "/") for f in filenames if is_image(f))
  return sorted(out)


def label_from_parent(relpath: str, label_fn: LabelFn, where: str) -> int:
  parts = relpath.split("/")
  if len(parts) < 2:
    raise UserError(f"{where}/{relpath}: images must sit in class folders (<class>/<file>), not at the top level")
  try:
    return label_fn(parts[-2])
  except KeyError as e:
    raise UserError(f"{where}/{relpath}: class folder {parts[-2]!r} is not a valid class name: {e}") from None


def folder_rows(root: Union[str, os.PathLike], label_fn: LabelFn = wnid_label) -> List[Tuple[str, str, List[int]]]:
  """(id=relative path, absolute path, [label]) for a class-folder tree, sorted by path."""
  root = pathlib.Path(root)
  rels = list_images(root)
  if not rels:
    raise NotFoundError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) found under {root}")
  return [(rel, str(root / rel), [label_from_parent(rel, label_fn, str(root))]) for rel in rels]


def parse_label_field(text: str, where: str) -> List[int]:
  """'417' | 'n01440764' | '417 418' / '417;418' / '417|418' (multi-label) -> 1000-way indices."""
  out = []
  for tok in text.replace(";", " ").replace("|", " ").replace(",", " ").split():
    if tok.lstrip("-").isdigit():
      idx = int(tok)
      if not 0 <= idx < classes.NUM_CLASSES:
        raise UserError(f"{where}: label {idx} is outside 0..999")
    else:
      try:
        idx = classes.index_of(tok)
      except KeyError as e:
        raise UserError(f"{where}: {e}") from None
    if idx not in out:
      out.append(idx)
  if not out:
    raise UserError(f"{where}: empty label")
  return out


def _check_inside(fname: str, root: pathlib.Path, where: str) -> None:
  """Refuses a labels.csv entry that names a file outside the dataset's folder (an absolute path or `..`): a
  dataset is its folder, and its files end up in reports and exports."""
  rel = pathlib.PurePosixPath(fname.replace("\\", "/"))
  if rel.is_absolute() or pathlib.PureWindowsPath(fname).drive or ".." in rel.parts:
    raise UserError(f"{where}: file {fname!r} is outside the dataset folder {root}; list paths relative to it "
                    f"(and move the image inside)")


def csv_rows(root: Union[str, os.PathLike], csv_name: str = "labels.csv") -> List[Tuple[str, str, List[int]]]:
  """Rows of `labels.csv` (columns file,label[,wnid,...]) in file order.

  `file` is relative to the csv's folder (or its `images/` sub-folder); `label` is a 1000-way index, a WNID,
  or several separated by spaces/';'/'|' (multi-label). A `wnid` column, when present, must agree.
  """
  root = pathlib.Path(root)
  path = root / csv_name
  # utf-8-sig: Excel's "CSV UTF-8" starts with a byte-order mark, which would otherwise glue onto 'file'.
  with open(path, newline="", encoding="utf-8-sig") as f:
    try:
      text = f.read()
    except UnicodeDecodeError as e:
      raise UserError(f"{path}: not UTF-8 text ({e}); save it as UTF-8 (e.g. Excel's 'CSV UTF-8')") from None
  reader = csv.DictReader(io.StringIO(text, newline=""))
  if not reader.fieldnames or "file" not in reader.fieldnames or "label" not in reader.fieldnames:
    raise UserError(f"{path}: needs a header with columns 'file' and 'label', got {reader.fieldnames}")
  rows, seen = [], set()
  for rec in reader:
    where = f"{path}:{reader.line_num}"
    labels = parse_label_field(rec["label"] or "", where)
    wnid = (rec.get("wnid") or "").strip()
    if wnid:
      try:
        wnid_index = classes.index_of(wnid)
      except KeyError as e:
        raise UserError(f"{where}: column wnid: {e}") from None
      if wnid_index not in labels:
        raise UserError(f"{where}: label {rec['label']} disagrees with wnid {wnid}")
    fname = rec["file"].strip()
    if fname in seen:
      raise UserError(f"{where}: file {fname} listed twice")
    seen.add(fname)
    _check_inside(fname, root, where)
    candidates = [root / fname, root / "images" / fname]
    found = next((c for c in candidates if c.exists()), None)
    if found is None:
      raise NotFoundError(f"{where}: {fname} not found; looked for {' and '.join(map(str, candidates))}")
    rows.append((fname, str(found), labels))
  if not rows:
    raise UserError(f"{path} lists no images")
  return rows


def find_source(manual_dir: Union[str, os.PathLike], candidates: Sequence[str],
                label_fn: Optional[LabelFn] = None) -> pathlib.Path:
  """The first candidate archive/folder present in manual_dir, else manual_dir itself when it already holds
  class folders; a FileNotFoundError naming every accepted location otherwise."""
  manual_dir = pathlib.Path(manual_dir).expanduser()
  for name in candidates:
    if (manual_dir / name).exists():
      return manual_dir / name
  if manual_dir.is_dir() and label_fn is not None:
    subdirs = [d.name for d in manual_dir.iterdir() if d.is_dir()]
    ok = []
    for d in subdirs:
      try:
        label_fn(d)
        ok.append(d)
      except KeyError:
        pass
    if ok:
      return manual_dir
  expected = "\n".join(f"  {manual_dir / c}" for c in candidates)
  raise NotFoundError(
      f"none of the expected files is in manual_dir={manual_dir}. Place one of:\n{expected}\n"
      + (f"  or class folders directly in {manual_dir}/<class>/<image>" if label_fn else ""))


def source_rows(source: pathlib.Path, label_fn: LabelFn) -> Iterator[Tuple[str, Union[str, bytes], List[int]]]:
  """(id, path-or-bytes, [label]) from a class-folder tree or an archive of one (ids are paths inside it)."""
  name = source.name.lower()
  if source.is_file() and name.endswith(ARCHIVE_SUFFIXES):
    n = 0
    for rel, data in iter_archive(source):
      n += 1
      yield rel, data, [label_from_parent(rel, label_fn, str(source))]
    if n == 0:
      raise NotFoundError(f"{source} holds no images ({', '.join(IMAGE_EXTENSIONS)})")
  else:
    yield from folder_rows(source, label_fn)


def parquet_files(manual_dir: Union[str, os.PathLike]) -> List[pathlib.Path]:
  """The ImageNet-Hard parquet files under manual_dir, sorted by path.

  Two files with the same name, or with the same content, are refused naming both: a second copy (a backup, an
  unpacked download beside its folder) would otherwise enter the dataset twice.
  """
  manual_dir = pathlib.Path(manual_dir).expanduser()
  found = sorted(manual_dir.rglob("*.parquet")) if manual_dir.is_dir() else []
  if not found:
    raise NotFoundError(
        f"no ImageNet-Hard parquet files under manual_dir={manual_dir}. Place the published files there, e.g.\n"
        f"  {manual_dir}/data/validation-00000-of-0000N.parquet ... (HF taesiri/imagenet-hard, split validation)")
  by_name: Dict[str, pathlib.Path] = {}
  by_content: Dict[Tuple[int, str], pathlib.Path] = {}
  for path in found:
    key = (path.stat().st_size, content_digest(path))
    first = by_name.get(path.name) or by_content.get(key)
    if first is not None:
      what = "the same name" if first.name == path.name else "the same content"
      raise UserError(f"{first} and {path} under manual_dir={manual_dir} have {what}: ImageNet-Hard would hold "
                      f"their images twice; remove one of them")
    by_name[path.name], by_content[key] = path, path
  return found


def open_parquet(path: pathlib.Path):
  """A `pyarrow.parquet.ParquetFile`; a UserError naming the file when it is not parquet."""
  import pyarrow as pa
  import pyarrow.parquet as pq
  try:
    return pq.ParquetFile(path)
  except (pa.ArrowException, OSError) as e:
    raise UserError(f"{path}: not a readable parquet file ({e}); download it again "
                    f"(HF taesiri/imagenet-hard, split validation)") from None


def hard_rows(manual_dir: Union[str, os.PathLike]) -> Iterator[Tuple[str, bytes, List[int], str]]:
  """(id, image bytes, labels, origin) from the ImageNet-Hard parquet files (HF `datasets` image struct).

  Rows with no label (empty, or only -1) cannot be scored: they are left out, with one warning per file that
  counts them.
  """
  import pyarrow as pa

  from zoomjax.runtime import console

  for path in parquet_files(manual_dir):
    pf = open_parquet(path)
    names = pf.schema_arrow.names
    missing = {"image", "label"} - set(names)
    if missing:
      raise UserError(f"{path}: missing columns {sorted(missing)}; has {names}")
    row, unlabelled = 0, []
    try:
      batches = pf.iter_batches(batch_size=64, columns=[c for c in ("image", "label", "origin") if c in names])
      for batch in batches:
        for rec in batch.to_pylist():
          img = rec["image"]
          data = img.get("bytes") if isinstance(img, dict) else img
          if not data:
            raise UserError(f"{path} row {row}: image has no embedded bytes")
          label = rec["label"]
          label = label if isinstance(label, list) else [label]
          labels = [int(x) for x in label if x is not None and int(x) >= 0]
          if labels:
            yield f"{path.name}:{row:06d}", data, labels, rec.get("origin") or ""
          else:
            unlabelled.append(row)
          row += 1
    except (pa.ArrowException, OSError) as e:
      raise UserError(f"{path}: unreadable at row {row} ({e}); download it again") from None
    if unlabelled:
      console.warn(f"{path}: left out {len(unlabelled)} rows with no label (rows "
                   f"{', '.join(map(str, unlabelled[:5]))}{', ...' if len(unlabelled) > 5 else ''}): they cannot "
                   f"be scored")


# Files up to this size are re-hashed whole at every check of a build's source; larger ones (multi-GB archives)
# by their first and last MiB, and whole only when their mtime changed (see `source_changed`).
WHOLE_HASH_BYTES = 64 << 20
_END_BYTES = 1 << 20


def content_digest(path: Union[str, os.PathLike], whole: Optional[bool] = None) -> str:
  """sha256 of a file's content: all of it when `whole` (default: files up to WHOLE_HASH_BYTES), else of its size
  and its first and last MiB."""
  size = os.path.getsize(path)
  whole = size <= WHOLE_HASH_BYTES if whole is None else whole
  h = hashlib.sha256(f"{size}\0".encode())
  with open(path, "rb") as f:
    if whole:
      for block in iter(lambda: f.read(1 << 22), b""):
        h.update(block)
    else:
      h.update(f.read(_END_BYTES))
      f.seek(max(0, size - _END_BYTES))
      h.update(f.read(_END_BYTES))
  return h.hexdigest()


def source_stamp(paths: Sequence[Union[str, os.PathLike]], content: bool = True) -> Dict[str, Dict[str, Any]]:
  """{absolute path: {size, mtime_ns, ends, whole}} of the files a build was made from.

  `ends` hashes a file's size and first/last MiB (cheap at every load), `whole` all of it (once, at build time,
  which reads every byte anyway). Without `content` (the thousands of files of an image folder) only sizes and
  mtimes are kept.
  """
  out = {}
  for p in paths:
    p = os.path.abspath(os.fspath(p))
    st = os.stat(p)
    out[p] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns,
              "ends": content_digest(p, whole=False) if content else None,
              "whole": content_digest(p, whole=True) if content else None}
  return out


def source_changed(stamp: Dict[str, Dict[str, Any]], paths: Sequence[Union[str, os.PathLike]]) -> Optional[str]:
  """What changed between a build's recorded source `stamp` and the files `paths` now ('PATH changed', 'new file
  PATH', ...), or None.

  A file with content hashes is unchanged when its size and first/last MiB agree and its whole content agrees;
  the whole content is re-hashed for files up to WHOLE_HASH_BYTES at every check (so a same-size edit with the
  mtime restored, as `cp -p` does, is caught), and for larger files only when their mtime differs (a `touch` or
  a copy does not rebuild a multi-GB archive; a same-size edit of its middle with the mtime restored would pass
  unseen). Files stamped without content (image folders) compare size and mtime.
  """
  now = {os.path.abspath(os.fspath(p)) for p in paths}
  added, gone = sorted(now - set(stamp)), sorted(set(stamp) - now)
  if added or gone:
    return "; ".join(([f"new file {', '.join(added[:3])}{' ...' if len(added) > 3 else ''}"] if added else []) +
                     ([f"{', '.join(gone[:3])}{' ...' if len(gone) > 3 else ''} gone"] if gone else []))
  for p in sorted(now):
    rec, st = stamp[p], os.stat(p)
    changed = st.st_size != rec["size"]
    if not changed and rec.get("ends") is None:
      changed = st.st_mtime_ns != rec["mtime_ns"]
    elif not changed:
      changed = content_digest(p, whole=False) != rec["ends"]
      if not changed and (st.st_size <= WHOLE_HASH_BYTES or st.st_mtime_ns != rec["mtime_ns"]):
        changed = content_digest(p, whole=True) != rec["whole"]
    if changed:
      return f"{p} changed"
  return None
