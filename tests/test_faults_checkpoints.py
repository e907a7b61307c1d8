"""Faults in checkpoints, preprocessing, the view store and resize_crop: refused in one line, never served stale.

Each case is one a fault run found: an integer (quantised) tensor cast silently into a float parameter, a
malformed `.npz` array header raising a traceback, a zero std blamed on the checkpoint, a negative input size
reported as a derived resize size, a same-size image replaced with its mtime restored served from the old view,
and `resize_crop`'s measured distance to PIL.
"""
import io
import os
import shutil
import zipfile

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from configs import evaluate as evaluate_config
from zoomjax import data as zd
from zoomjax import errors, resample
from zoomjax.checkpoints import merge, readers
from zoomjax.data import classes, view_cache
from zoomjax.jobs import evaluate
from zoomjax.models.preprocessing import Preprocessing


def _one_line(e: BaseException) -> str:
  text = str(e)
  assert "\n" not in text, text
  return text


# --- (6) integer tensors for float parameters ---------------------------------------------------------------

def test_an_integer_tensor_for_a_float_parameter_is_refused_by_name():
  reference = {"params": {"head": {"kernel": jax.ShapeDtypeStruct((4, 3), jnp.float32),
                                   "bias": jax.ShapeDtypeStruct((3,), jnp.float32)},
                          "step": jax.ShapeDtypeStruct((), jnp.int32)}}
  quantised = {"params": {"head": {"kernel": np.ones((4, 3), np.int8), "bias": np.zeros(3, np.uint8)},
                          "step": np.asarray(7, np.int64)}}
  with pytest.raises(errors.UserError) as e:
    merge.merge_into(reference, quantised, path_for_errors="/ckpt/q.safetensors")
  text = _one_line(e.value)
  assert text.startswith("/ckpt/q.safetensors: ")
  assert "params/head/kernel int8 (model float32)" in text and "params/head/bias uint8 (model float32)" in text
  assert "step" not in text  # An integer parameter may come as any integer.
  # Floats of any width still load (fp16/bf16 checkpoints), as float32.
  fine = {"params": {"head": {"kernel": np.ones((4, 3), np.float16), "bias": np.zeros(3, np.float64)},
                     "step": np.asarray(7, np.int64)}}
  got = merge.merge_into(reference, fine, path_for_errors="x")
  assert got["params"]["head"]["kernel"].dtype == jnp.float32 and int(got["params"]["step"]) == 7


# --- (6) a malformed array header in a checkpoint .npz ------------------------------------------------------

def _npz_with_header(path, header: bytes) -> None:
  buf = io.BytesIO()
  np.save(buf, np.zeros((2, 3), np.float32))
  raw = buf.getvalue()
  n = int.from_bytes(raw[8:10], "little")
  header = header.ljust(n - 1) + b"\n"
  with zipfile.ZipFile(path, "w") as z:
    z.writestr("head/kernel.npy", raw[:8] + len(header).to_bytes(2, "little") + header + raw[10 + n:])


@pytest.mark.parametrize("header", [
    b"{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3",  # Unterminated: a tokenizer error.
    b"{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3))}",  # A syntax error.
    b"{'descr': '<f4', 'fortran_order': False, 'shape': (2, -3), }",
])
def test_a_malformed_npz_array_header_is_one_line_naming_the_file(tmp_path, header):
  path = tmp_path / "vit.npz"
  _npz_with_header(path, header)
  with pytest.raises(errors.UserError) as e:
    readers.read_checkpoint(str(path))
  text = _one_line(e.value)
  assert text.startswith(f"{path}: ") and "'head/kernel'" in text


# --- (6) Preprocessing validates its fields ------------------------------------------------------------------

_PP = dict(input_size=224, resize_size=256, resize_method="bicubic", mean=(0.0,) * 3, std=(1.0,) * 3)


@pytest.mark.parametrize("field, value", [
    ("std", (58.0, 0.0, 57.0)), ("std", (-1.0, 1.0, 1.0)), ("std", (float("nan"), 1.0, 1.0)), ("std", (1.0,)),
    ("mean", (0.0, float("inf"), 0.0)), ("input_size", -224), ("input_size", 0), ("resize_size", 0),
    ("resize_size", 2.5), ("resize_method", "lanczos"),
])
def test_preprocessing_refuses_a_bad_field_by_name(field, value):
  with pytest.raises(errors.UserError) as e:
    Preprocessing(**{**_PP, field: value})
  text = _one_line(e.value)
  assert f"{field}=" in text and "checkpoint" not in text


def test_a_negative_input_size_override_names_input_size():
  own = Preprocessing(**_PP)
  for field, value in (("input_size", -224), ("resize_size", -10)):
    cfg = evaluate_config.get_config("").preprocessing
    setattr(cfg, field, value)
    with pytest.raises(errors.UserError) as e:
      evaluate.preprocessing_for(own, cfg)
    assert f"preprocessing.{field}={value}" in _one_line(e.value) and "-336" not in str(e.value)
  cfg = evaluate_config.get_config("").preprocessing
  cfg.std = (1.0, 0.0, 1.0)
  with pytest.raises(errors.UserError, match=r"std=\(1.0, 0.0, 1.0\)"):
    evaluate.preprocessing_for(own, cfg)


# --- (7) the view store sees a same-size replacement with its mtime restored ---------------------------------

def test_the_view_store_recomputes_a_same_size_replacement_with_restored_mtime(tmp_path, capsys):
  folder = tmp_path / "f" / classes.wnids()[3]
  folder.mkdir(parents=True)
  # Uncompressed BMPs of one size: the replacement has exactly the old file's size.
  Image.fromarray(np.full((9, 12, 3), 40, np.uint8)).save(folder / "a.bmp")
  Image.fromarray(np.full((9, 12, 3), 200, np.uint8)).save(tmp_path / "new.bmp")
  ds = zd.get_dataset(f"folder:{tmp_path / 'f'}")
  pp = Preprocessing(input_size=8, resize_size=8, resize_method="bilinear", mean=(0.0,) * 3, std=(1.0,) * 3)
  store = view_cache.ViewStore(str(tmp_path / "store"), {"view": 8}, ds)
  table = view_cache.ViewCache(10**6).table("k")
  list(zd.make_batches(ds, batch_size=1, transform=pp.pil_view, transform_hw=(8, 8), view_table=table))
  store.save([0], table)
  assert len(store.open([0], (8, 8))) == 1  # Unchanged: served from the store.
  before = os.stat(folder / "a.bmp")
  shutil.copy2(tmp_path / "new.bmp", folder / "a.bmp")  # `cp -p`: same size, the old mtime restored.
  os.utime(folder / "a.bmp", ns=(before.st_atime_ns, before.st_mtime_ns))
  after = os.stat(folder / "a.bmp")
  assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)
  capsys.readouterr()
  assert len(store.open([0], (8, 8))) == 0
  assert "recomputing the views in" in capsys.readouterr().out


def test_a_full_view_store_warns_and_the_run_goes_on(tmp_path, capsys, monkeypatch):
  """The store is optional: a full disk (or a folder that cannot be written) ends the storing, not the run."""
  import errno  # pylint: disable=import-outside-toplevel
  folder = tmp_path / "f" / classes.wnids()[3]
  folder.mkdir(parents=True)
  for k in range(2):
    Image.fromarray(np.full((9, 12, 3), 40 + k, np.uint8)).save(folder / f"{k}.bmp")
  ds = zd.get_dataset(f"folder:{tmp_path / 'f'}")
  pp = Preprocessing(input_size=8, resize_size=8, resize_method="bilinear", mean=(0.0,) * 3, std=(1.0,) * 3)
  store = view_cache.ViewStore(str(tmp_path / "store"), {"view": 8}, ds)
  table = view_cache.ViewCache(10**6).table("k")
  list(zd.make_batches(ds, batch_size=1, transform=pp.pil_view, transform_hw=(8, 8), view_table=table))
  calls = []

  def full(path, arrays):
    calls.append(path)
    raise OSError(errno.ENOSPC, "No space left on device", path)

  monkeypatch.setattr(view_cache.atomic, "savez", full)
  capsys.readouterr()
  store.save([0], table)  # No exception: the run goes on.
  store.save([1], table)  # The store has stopped: no second attempt, no second warning.
  out = capsys.readouterr().out
  assert len(calls) == 1 and out.count("warning: view cache") == 1, out
  assert "No space left on device" in out and "view_cache_dir" in out

  def broken(path, arrays):
    raise OSError(errno.EIO, "Input/output error", path)

  monkeypatch.setattr(view_cache.atomic, "savez", broken)
  fresh = view_cache.ViewStore(str(tmp_path / "store"), {"view": 8}, ds)
  with pytest.raises(OSError):  # Any other write error is no "full store": it is raised.
    fresh.save([0], table)


# --- resize_crop's measured distance to PIL ------------------------------------------------------------------

# Stated in resize_crop's docstring and docs/zoom.md: at most 1 grey level off, on about 1 value in 10^4 of
# photo-like content (measured 5e-5 here) and at most 1 in 10^3 on pure noise, the worst case (measured 9.8e-4).
MAX_FRACTION_OFF = {"smooth": 5e-4, "noise": 1.5e-3}


@pytest.mark.parametrize("method", ["bicubic", "bilinear"])
def test_resize_crop_is_within_the_stated_tolerance_of_pil(method):
  rng = np.random.default_rng(0)
  fn = jax.jit(resample.resize_crop, static_argnames=("out_hw", "method"))
  cases = [((375, 500), (256, 341)), ((97, 61), (140, 88)), ((300, 451), (224, 336)), ((64, 200), (31, 97))]
  for content, bound in MAX_FRACTION_OFF.items():
    off, total = 0, 0
    for (h, w), (oh, ow) in cases:
      image = rng.integers(0, 256, (h, w, 3), np.uint8)
      if content == "smooth":  # Like a photo: neighbouring pixels close.
        image = np.asarray(Image.fromarray(image).resize((w // 4, h // 4)).resize((w, h), Image.Resampling.BICUBIC))
      got = fn(jnp.asarray(image), (h, w), (0, 0, h, w), (oh, ow), (0, 0), out_hw=(oh, ow), method=method)
      want = resample.pil_resize_crop_reference(image, (0, 0, h, w), (oh, ow), (0, 0), (oh, ow), method)
      diff = np.abs(np.asarray(got).astype(np.int32) - want.astype(np.int32))
      assert diff.max() <= 1, (content, (h, w), (oh, ow), diff.max())
      off, total = off + int((diff > 0).sum()), total + diff.size
    assert off / total < bound, (content, off / total)
