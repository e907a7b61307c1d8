"""PyTorch checkpoints (`torch.save` zip archives, legacy pre-1.6 pickles, TorchScript) read without torch.

Why not `torch.load`: it needs torch, and a pickle can run any code. Here a restricted `pickle.Unpickler`
resolves only an explicit allow-list of globals (tensor/parameter rebuild functions, storage and dtype names,
`collections.OrderedDict`) to *our own inert stand-ins*, so nothing from the file is ever imported or called.
Tensors come back as numpy arrays (bf16/fp8 through ml_dtypes), honouring storage offsets and strides.

File layouts (torch/serialization.py):
- zip (torch >= 1.6): `<archive>/data.pkl` (the object; tensors refer to storages through persistent ids
  `('storage', <T>Storage, key, location, numel)`), `<archive>/data/<key>` (raw little-endian bytes),
  optional `<archive>/byteorder`. TorchScript archives (`torch.jit.save`, e.g. OpenAI CLIP `.pt`) use the same
  storages; their `__torch__.*` module objects are read as plain attribute containers.
- legacy: five pickles in a row: magic number, protocol version 1001, sys info, the object (persistent ids
  `('storage', <T>Storage, root_key, location, numel, view_metadata)`), then the list of storage keys;
  then for each key an int64 element count followed by the raw bytes.
"""
import collections
import io
import math
import os
import pickle
import struct
import sys
import zipfile
import zlib
from typing import Any, BinaryIO, Callable, Dict, List, Optional, Tuple

import ml_dtypes
import numpy as np

from zoomjax.checkpoints.errors import CheckpointError

LEGACY_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL_VERSION = 1001

# Legacy `torch.<Name>Storage` classes -> element dtype.
_STORAGE_DTYPES = {
    "DoubleStorage": np.dtype(np.float64),
    "FloatStorage": np.dtype(np.float32),
    "HalfStorage": np.dtype(np.float16),
    "BFloat16Storage": np.dtype(ml_dtypes.bfloat16),
    "LongStorage": np.dtype(np.int64),
    "IntStorage": np.dtype(np.int32),
    "ShortStorage": np.dtype(np.int16),
    "CharStorage": np.dtype(np.int8),
    "ByteStorage": np.dtype(np.uint8),
    "BoolStorage": np.dtype(np.bool_),
    "ComplexDoubleStorage": np.dtype(np.complex128),
    "ComplexFloatStorage": np.dtype(np.complex64),
    "UntypedStorage": np.dtype(np.uint8),
}

# `torch.<dtype>` globals (used by `_rebuild_tensor_v3` for dtypes without a legacy storage class).
_TORCH_DTYPES = {
    "float64": np.float64, "double": np.float64, "float32": np.float32, "float": np.float32,
    "float16": np.float16, "half": np.float16, "bfloat16": ml_dtypes.bfloat16,
    "int64": np.int64, "long": np.int64, "int32": np.int32, "int": np.int32, "int16": np.int16,
    "short": np.int16, "int8": np.int8, "uint8": np.uint8, "bool": np.bool_,
    "uint16": np.uint16, "uint32": np.uint32, "uint64": np.uint64,
    "complex64": np.complex64, "complex128": np.complex128,
    "float8_e4m3fn": ml_dtypes.float8_e4m3fn, "float8_e5m2": ml_dtypes.float8_e5m2,
    "float8_e4m3fnuz": ml_dtypes.float8_e4m3fnuz, "float8_e5m2fnuz": ml_dtypes.float8_e5m2fnuz,
    "float8_e8m0fnu": ml_dtypes.float8_e8m0fnu,
}


class _StorageType:
  """Stand-in for a `torch.<Name>Storage` class global: only carries the element dtype."""

  def __init__(self, name: str, dtype: np.dtype):
    self.name, self.dtype = name, dtype


class _DType:
  """Stand-in for a `torch.<dtype>` global."""

  def __init__(self, name: str):
    self.name, self.dtype = name, np.dtype(_TORCH_DTYPES[name])


class _Storage:
  """Raw bytes of one storage; `data` is filled after the pickle for legacy files."""

  def __init__(self, key: str, dtype: np.dtype, numel: int):
    self.key, self.dtype, self.numel = key, dtype, numel
    self.data: Optional[bytes] = None
    self.error: Optional[str] = None  # Set when the bytes could not be read (truncated file).


class _StorageView:
  """A legacy storage view: elements [offset, offset + size) of a root storage."""

  def __init__(self, root: _Storage, offset: int, size: int):
    self.root, self.offset, self.size = root, offset, size
    self.key, self.dtype = root.key, root.dtype


class LazyTensor:
  """A tensor whose storage bytes may not have been read yet (legacy files store them after the pickle)."""

  def __init__(self, storage, offset: int, size: Tuple[int, ...], stride: Tuple[int, ...],
               dtype: Optional[np.dtype] = None):
    if not isinstance(storage, (_Storage, _StorageView)):
      raise CheckpointError(f"tensor rebuilt from a {type(storage).__name__}, expected a storage")
    self.storage, self.offset = storage, int(offset)
    self.size, self.stride = tuple(int(s) for s in size), tuple(int(s) for s in stride)
    self.dtype = np.dtype(dtype) if dtype is not None else storage.dtype
    if len(self.size) != len(self.stride):
      raise CheckpointError(f"tensor size {self.size} and stride {self.stride} differ in rank")

  def materialize(self, byteswap: bool = False) -> np.ndarray:
    """The tensor as a contiguous numpy array (a copy, so the file buffer can be freed).

    Bounded by the bytes actually present: the copy may not be larger than its storage's data, so a tiny
    file whose tensor is a stride-0 (or overlapping) view of a few bytes, with a huge shape, is refused
    before anything is allocated (a .pth of a few hundred bytes once asked for 3.64 TiB).
    """
    st = self.storage
    root = st.root if isinstance(st, _StorageView) else st
    if root.data is None:
      raise CheckpointError(root.error or f"storage {root.key!r} was never read")
    if isinstance(st, _StorageView) and (st.offset < 0 or st.size < 0):
      raise CheckpointError(f"storage view of {root.key!r} with negative offset/size {st.offset}/{st.size}")
    base_bytes = st.offset * st.dtype.itemsize if isinstance(st, _StorageView) else 0
    avail = max(len(root.data) - base_bytes, 0)
    if isinstance(st, _StorageView):
      avail = min(avail, st.size * st.dtype.itemsize)
    item = self.dtype.itemsize
    if any(s < 0 for s in self.size):
      raise CheckpointError(f"negative tensor size {self.size}")
    if any(s == 0 for s in self.size):
      try:
        return np.zeros(self.size, self.dtype)
      except ValueError as e:  # A dimension beyond numpy's limits.
        raise CheckpointError(f"tensor size {self.size}: {e}") from None
    if any(s < 0 for s in self.stride) or self.offset < 0:
      raise CheckpointError(f"negative stride/offset {self.stride}/{self.offset}")
    last = self.offset + sum((n - 1) * s for n, s in zip(self.size, self.stride))
    if (last + 1) * item > avail:
      raise CheckpointError(
          f"tensor of shape {self.size} (offset {self.offset}, stride {self.stride}) needs "
          f"{(last + 1) * item} bytes of storage {root.key!r} but only {avail} are present "
          "(truncated or corrupt file)")
    nbytes = math.prod(self.size) * item
    if nbytes > avail:
      raise CheckpointError(
          f"tensor of shape {self.size} (stride {self.stride}) would take {nbytes} bytes, more than the "
          f"{avail} bytes of its storage {root.key!r} in the file (a stride-0 or overlapping view; corrupt or "
          "malicious file): refused before allocating it")
    buf = np.frombuffer(root.data, np.uint8, count=avail, offset=base_bytes)
    flat = buf[: (avail // item) * item].view(self.dtype)
    if byteswap:
      flat = flat.byteswap()
    arr = np.lib.stride_tricks.as_strided(
        flat[self.offset:], shape=self.size, strides=tuple(s * item for s in self.stride), writeable=False)
    return np.array(arr, copy=True, order="C")


class ScriptObject:
  """Inert stand-in for a TorchScript `__torch__.*` object: keeps the attribute dict it is given.

  TorchScript pickles modules as `NEWOBJ(<class>, ())` + `BUILD(state dict)`; each qualname gets its own
  subclass (NEWOBJ needs a type) whose only behaviour is storing that dict.
  """
  qualname = "__torch__"
  state: Any = None

  def __setstate__(self, state):
    self.state = state


_SCRIPT_TYPES: Dict[str, type] = {}


def _script_type(qualname: str) -> type:
  if qualname not in _SCRIPT_TYPES:
    _SCRIPT_TYPES[qualname] = type("ScriptObject", (ScriptObject,), {"qualname": qualname})
  return _SCRIPT_TYPES[qualname]


def _rebuild_tensor(storage, storage_offset, size, stride, *unused):
  return LazyTensor(storage, storage_offset, size, stride)


def _rebuild_tensor_v3(storage, storage_offset, size, stride, requires_grad, backward_hooks, dtype,
                       *unused):
  if not isinstance(dtype, _DType):
    raise CheckpointError(f"_rebuild_tensor_v3 got dtype {dtype!r}")
  return LazyTensor(storage, storage_offset, size, stride, dtype.dtype)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None, *unused):
  return data


def _rebuild_from_type_v2(func, new_type, args, state):
  # `new_type` is torch.Tensor or nn.Parameter (both inert markers here); subclass state is dropped.
  return func(*args)


class _TypeMarker:
  def __init__(self, name: str):
    self.name = name


def _codecs_encode(obj, encoding="latin1"):
  # Protocol-2 pickles spell `bytes` as _codecs.encode(str, 'latin1').
  if not isinstance(obj, str) or encoding not in ("latin1", "latin-1"):
    raise CheckpointError(f"_codecs.encode called with {type(obj).__name__}, {encoding!r}")
  return obj.encode("latin1")


_ALLOWED: Dict[Tuple[str, str], Callable[..., Any]] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v3"): _rebuild_tensor_v3,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("torch._tensor", "_rebuild_from_type_v2"): _rebuild_from_type_v2,
    ("torch.tensor", "_rebuild_from_type_v2"): _rebuild_from_type_v2,
    ("torch", "Tensor"): _TypeMarker("torch.Tensor"),
    ("torch._tensor", "Tensor"): _TypeMarker("torch.Tensor"),
    ("torch.nn.parameter", "Parameter"): _TypeMarker("torch.nn.Parameter"),
    ("torch", "Size"): tuple,
    ("_codecs", "encode"): _codecs_encode,
}


# TorchScript's own container helpers (torch/jit/_pickle.py): identities on already-built values.
_TORCHSCRIPT_ALLOWED: Dict[Tuple[str, str], Callable[..., Any]] = {
    ("torch.jit._pickle", "build_intlist"): list,
    ("torch.jit._pickle", "build_tensorlist"): list,
    ("torch.jit._pickle", "build_doublelist"): list,
    ("torch.jit._pickle", "build_boollist"): list,
    ("torch.jit._pickle", "restore_type_tag"): lambda value, type_str: value,
}


class _RestrictedUnpickler(pickle.Unpickler):
  """Resolves only allow-listed globals, to inert stand-ins; anything else is refused."""

  def __init__(self, file: BinaryIO, path: str, persistent_load: Callable[[Any], Any],
               torchscript: bool = False):
    super().__init__(file, encoding="utf-8")
    self._path = path
    self._persistent_load = persistent_load
    self._torchscript = torchscript

  def find_class(self, module: str, name: str) -> Any:
    if (module, name) in _ALLOWED:
      return _ALLOWED[(module, name)]
    if module in ("torch", "torch.cuda", "torch.storage") and name in _STORAGE_DTYPES:
      return _StorageType(name, _STORAGE_DTYPES[name])
    if module == "torch" and name in _TORCH_DTYPES:
      return _DType(name)
    if self._torchscript and (module, name) in _TORCHSCRIPT_ALLOWED:
      return _TORCHSCRIPT_ALLOWED[(module, name)]
    if self._torchscript and module.startswith("__torch__"):
      return _script_type(f"{module}.{name}")
    raise CheckpointError(
        f"{self._path}: refusing to load global {module}.{name}: only tensors, storages and "
        "OrderedDict are allowed in a checkpoint (a pickle can execute code; save a plain state_dict "
        "or a .safetensors file instead)")

  def persistent_load(self, pid: Any) -> Any:
    return self._persistent_load(pid)


def _storage_type(value: Any, path: str) -> _StorageType:
  if not isinstance(value, _StorageType):
    raise CheckpointError(f"{path}: persistent id names storage type {value!r}")
  return value


def _as_str(s: Any) -> str:
  return s.decode("ascii") if isinstance(s, bytes) else str(s)


def _unpickle(data: BinaryIO, path: str, persistent_load, torchscript: bool = False) -> Any:
  try:
    return _RestrictedUnpickler(data, path, persistent_load, torchscript).load()
  except CheckpointError as e:
    if str(e).startswith(path):
      raise
    raise CheckpointError(f"{path}: {e}") from None
  except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError,
          KeyError, struct.error, MemoryError, RecursionError) as e:
    raise CheckpointError(f"{path}: corrupt or truncated pickle ({type(e).__name__}: {e})") from None


# Deflate cannot expand more than ~1032x; torch.save stores records uncompressed. A record claiming more would be
# a decompression bomb (bzip2 / lzma members can expand a few hundred bytes to gigabytes).
_MAX_EXPANSION = 1100


def _read_member(zf: zipfile.ZipFile, name: str) -> bytes:
  """A zip member's bytes, refusing one whose uncompressed size exceeds what its compressed bytes can hold."""
  info = zf.getinfo(name)
  if info.compress_type != zipfile.ZIP_STORED and info.file_size > _MAX_EXPANSION * info.compress_size + 4096:
    raise CheckpointError(f"{name} claims {info.file_size} bytes from {info.compress_size} compressed bytes "
                          "(a decompression bomb?)")
  return zf.read(info)


def read_torch_zip(zf: zipfile.ZipFile, path: str) -> Tuple[Any, bool]:
  """Reads a torch zip archive. Returns (object with LazyTensors materialisable, needs_byteswap)."""
  names = zf.namelist()
  pkls = [n for n in names if n.endswith("data.pkl") and n.count("/") == 1]
  if len(pkls) != 1:
    raise CheckpointError(f"{path}: zip archive without exactly one '<archive>/data.pkl' "
                          f"(found {pkls[:3]}); not a torch checkpoint")
  prefix = pkls[0][: -len("data.pkl")]
  byteswap = False
  if prefix + "byteorder" in names:
    try:
      order = _read_member(zf, prefix + "byteorder").decode("ascii", "replace").strip()
    except (zipfile.BadZipFile, OSError, EOFError, zlib.error, CheckpointError) as e:
      raise CheckpointError(f"{path}: cannot read {prefix}byteorder ({e})") from None
    if order not in ("little", "big"):
      raise CheckpointError(f"{path}: unknown byteorder record {order!r}")
    byteswap = order != sys.byteorder
  torchscript = any(n.startswith(prefix + "code/") for n in names)
  storages: Dict[str, _Storage] = {}

  def persistent_load(pid):
    if not isinstance(pid, tuple) or len(pid) != 5 or _as_str(pid[0]) != "storage":
      raise CheckpointError(f"{path}: unexpected persistent id {pid!r:.200}")
    _, stype, key, _location, numel = pid
    stype = _storage_type(stype, path)
    key = _as_str(key)
    if key not in storages:
      st = _Storage(key, stype.dtype, int(numel))
      record = f"{prefix}data/{key}"
      try:
        st.data = _read_member(zf, record)
      except KeyError:
        st.error = f"storage record {record!r} is missing from the archive"
      except (zipfile.BadZipFile, OSError, EOFError, zlib.error, CheckpointError) as e:
        st.error = f"storage record {record!r} is unreadable ({type(e).__name__}: {e})"
      storages[key] = st
    return storages[key]

  try:
    raw = _read_member(zf, pkls[0])
  except (zipfile.BadZipFile, OSError, EOFError, zlib.error, CheckpointError) as e:
    raise CheckpointError(f"{path}: cannot read {pkls[0]} ({e})") from None
  obj = _unpickle(io.BytesIO(raw), path, persistent_load, torchscript)
  return obj, byteswap


def read_torch_legacy(f: BinaryIO, path: str) -> Tuple[Any, bool]:
  """Reads a legacy (non-zip) torch pickle. Returns (object, needs_byteswap)."""

  def plain(what):
    return _unpickle(f, path, lambda pid: _refuse_pid(pid, path, what))

  magic = plain("magic number")
  if magic != LEGACY_MAGIC_NUMBER:
    raise CheckpointError(f"{path}: not a torch checkpoint (bad magic number)")
  version = plain("protocol version")
  if version != LEGACY_PROTOCOL_VERSION:
    raise CheckpointError(f"{path}: unsupported legacy torch protocol version {version!r}")
  sys_info = plain("sys info")
  little = sys_info.get("little_endian", True) if isinstance(sys_info, dict) else True
  storages: Dict[str, _Storage] = {}
  views: Dict[str, _StorageView] = {}

  def persistent_load(pid):
    if not isinstance(pid, tuple) or not pid:
      raise CheckpointError(f"{path}: unexpected persistent id {pid!r:.200}")
    kind = _as_str(pid[0])
    if kind == "module":
      raise CheckpointError(f"{path}: holds a pickled nn.Module (torch.save(model)); only state dicts "
                            "can be read safely: save model.state_dict() instead")
    if kind != "storage" or len(pid) != 6:
      raise CheckpointError(f"{path}: unexpected persistent id {pid!r:.200}")
    _, stype, root_key, _location, numel, view_metadata = pid
    stype = _storage_type(stype, path)
    root_key = _as_str(root_key)
    if root_key not in storages:
      storages[root_key] = _Storage(root_key, stype.dtype, int(numel))
    root = storages[root_key]
    if view_metadata is None:
      return root
    view_key, offset, size = view_metadata
    view_key = _as_str(view_key)
    if view_key not in views:
      views[view_key] = _StorageView(root, int(offset), int(size))
    return views[view_key]

  obj = _unpickle(f, path, persistent_load)
  keys = plain("storage key list")
  size = os.fstat(f.fileno()).st_size
  if not isinstance(keys, list):
    raise CheckpointError(f"{path}: corrupt legacy checkpoint (storage key list is {type(keys).__name__})")
  for key in keys:
    key = _as_str(key)
    st = storages.get(key)
    if st is None:
      raise CheckpointError(f"{path}: storage {key!r} is listed but no tensor uses it (corrupt file)")
    header = f.read(8)
    if len(header) < 8:
      st.error = f"storage {key!r}: file ends before its data (truncated file)"
      continue
    (numel,) = struct.unpack("<q", header)
    nbytes = numel * st.dtype.itemsize
    if numel < 0:
      raise CheckpointError(f"{path}: storage {key!r} has negative size (corrupt file)")
    remaining = size - f.tell()
    if nbytes > remaining:  # Never allocate what a corrupt header claims.
      st.error = f"storage {key!r}: {max(remaining, 0)} of {nbytes} bytes present (truncated file)"
      break
    st.data = f.read(nbytes)
  for st in storages.values():
    if st.data is None and st.error is None:
      st.error = f"storage {st.key!r}: its data is missing (truncated or corrupt file)"
  return obj, not little and sys.byteorder == "little"


def _refuse_pid(pid, path, what):
  raise CheckpointError(f"{path}: unexpected persistent id in the {what} (corrupt file)")


def materialize(obj: Any, path: str, byteswap: bool, prefix: str = "") -> Any:
  """Replaces every LazyTensor in a nested container by a numpy array; errors name the key."""
  if isinstance(obj, LazyTensor):
    try:
      return obj.materialize(byteswap)
    except CheckpointError as e:
      raise CheckpointError(f"{path}: key {prefix!r}: {e}") from None
  if isinstance(obj, dict):
    return {k: materialize(v, path, byteswap, _join(prefix, k)) for k, v in obj.items()}
  if isinstance(obj, (list, tuple)):
    return type(obj)(materialize(v, path, byteswap, _join(prefix, i)) for i, v in enumerate(obj))
  if isinstance(obj, ScriptObject):
    obj.state = materialize(obj.state, path, byteswap, prefix)
    return obj
  return obj


def _join(prefix: str, key: Any) -> str:
  return f"{prefix}.{key}" if prefix else str(key)


def is_legacy_torch(head: bytes) -> bool:
  """True if `head` starts like a legacy torch file: protocol-2 pickle of the magic number."""
  return head.startswith(b"\x80\x02\x8a\x0a" + LEGACY_MAGIC_NUMBER.to_bytes(10, "little"))


def script_object_items(obj: ScriptObject) -> List[Tuple[str, Any]]:
  """Attribute (name, value) pairs of a TorchScript object (its pickled state is a dict)."""
  state = obj.state
  if isinstance(state, dict):
    return list(state.items())
  if isinstance(state, (list, tuple)) and state and isinstance(state[0], dict):
    return list(state[0].items())
  return []
