"""Writes tests/golden/siglip_resize.npz (big_vision's evaluation resize) and tests/golden/siglip_naflex.npz
(SigLIP 2 NaFlex's image tower).

Runs ONLY in the throwaway reference venv (tensorflow-cpu 2.21, transformers 5.25, torch 2.13 for the committed
files):

  /work/refvenv/bin/python experiments/make_siglip_goldens.py          # both
  /work/refvenv/bin/python experiments/make_siglip_goldens.py resize

- resize: big_vision's `resize(S)` op as it runs: `tf.image.resize(image, (S, S))` with its defaults (bilinear,
  antialias=False) on a uint8 image, clipped and cast back to uint8. A seeded noise image (the hardest case for
  rounding) and a smooth one, 37 x 53, each squashed down to 24 x 24 and up to 64 x 64; the noise image also with
  its short side resized to 24 (24 x 34), for a centre crop.
- naflex: Hugging Face's `Siglip2VisionModel` (the NaFlex image tower: patches embedded by a Dense layer, a 4 x 4
  learned position grid resized bilinearly with antialiasing to each image's patch grid, attention and MAP pooling
  over the real patches only) at tiny widths with seeded weights (tests/golden/seeded_weights.py, so the test
  rebuilds the identical state dict). Its inputs are made as big_vision's NaFlex preprocessing makes them
  (pp/proj/image_text/ops_naflex.py): `value_range(-1, 1)`, `resize_to_sequence(patch, max_patches)` (the binary
  search for the patch grid; `tf.image.resize(antialias=True)` in float), `patchify` (row-major patches,
  (py, px, channel) within a patch) and zero padding to the sequence length. Two cases: a 20 x 20 image with at
  most 40 patches (a 6 x 6 grid: image and position grid upsampled, 4 padding tokens), an 18 x 30 image with
  at most 24 patches (a 4 x 6 grid) and a 13 x 40 one (a 3 x 8 grid: the position grid shrinks, antialiased,
  along the rows). Stores the padded inputs, the last hidden states and the pooled output.
"""
import json
import pathlib
import sys

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
OUT = REPO / "tests" / "golden"
NAFLEX = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, patch_size=4,
              num_patches=16)
NAFLEX_CASES = (("square", (20, 20), 40), ("wide", (18, 30), 24), ("strip", (13, 40), 24))


def _save(name, **arrays):
  path = OUT / f"{name}.npz"
  np.savez_compressed(path, **arrays)
  print(f"wrote {path} ({path.stat().st_size / 1024:.1f} KiB)")


def _images():
  rng = np.random.default_rng(28)
  noise = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)
  yy, xx = np.mgrid[:37, :53].astype(np.float32)
  smooth = np.stack([xx * 4.8, yy * 6.9, (xx + yy) * 2.8], -1).clip(0, 255).astype(np.uint8)
  return noise, smooth


def golden_resize():
  import tensorflow as tf
  out = {}
  for name, image in zip(("noise", "smooth"), _images()):
    out[name] = image
    for size in (24, 64):
      resized = tf.image.resize(image, (size, size))  # big_vision's get_resize: method="bilinear", antialias=False
      out[f"{name}_{size}"] = tf.cast(tf.clip_by_value(resized, 0, 255), tf.uint8).numpy()
  # The short side to 24 (torchvision's long side int(24 * 53 / 37) = 34): a centre crop's source.
  out["noise_short24"] = tf.cast(tf.clip_by_value(tf.image.resize(out["noise"], (24, 34)), 0, 255), tf.uint8).numpy()
  _save("siglip_resize", **out)


def _naflex_grid(hw, patch, max_patches, eps=1e-5):
  """big_vision's `_get_image_size_for_seq` (float32 binary search, as TensorFlow runs it)."""
  def target(ratio):
    t = np.float32(patch) * np.ceil(np.asarray(hw, np.float32) * np.float32(ratio) / np.float32(patch))
    return np.maximum(t, patch).astype(np.int32)
  lo, hi = np.float32(eps / 10), np.float32(100.0)
  while hi - lo >= eps:
    mid = (lo + hi) / np.float32(2)
    if np.prod(target(mid) // patch) <= max_patches:
      lo = mid
    else:
      hi = mid
  return target(lo)


def _naflex_inputs(image, patch, max_patches):
  import tensorflow as tf
  x = image.astype(np.float32) / 127.5 - 1.0  # value_range(-1, 1) of a uint8 image
  th, tw = (int(v) for v in _naflex_grid(x.shape[:2], patch, max_patches))
  x = tf.image.resize(x, (th, tw), antialias=True).numpy()
  gh, gw = th // patch, tw // patch
  patches = x.reshape(gh, patch, gw, patch, 3).transpose(0, 2, 1, 3, 4).reshape(gh * gw, patch * patch * 3)
  yidx, xidx = (v.reshape(-1) for v in np.meshgrid(np.arange(gh), np.arange(gw), indexing="ij"))
  pad = max_patches - gh * gw
  return (np.pad(patches, ((0, pad), (0, 0))), np.pad(np.ones(gh * gw, np.int32), (0, pad)),
          np.pad(yidx, (0, pad)).astype(np.int32), np.pad(xidx, (0, pad)).astype(np.int32), np.int32([gh, gw]))


def golden_naflex():
  import torch
  from transformers import Siglip2VisionConfig, Siglip2VisionModel
  sys.path.insert(0, str(REPO / "experiments"))
  from make_goldens import load_seeded  # pylint: disable=import-outside-toplevel
  torch.manual_seed(0)
  cfg = Siglip2VisionConfig(**NAFLEX, hidden_act="gelu_pytorch_tanh", layer_norm_eps=1e-6)
  model, spec = load_seeded(Siglip2VisionModel(cfg).float())
  import seeded_weights as sw  # pylint: disable=import-outside-toplevel  (on the path make_goldens put it)
  out = dict(spec=sw.encode_spec(spec), config=json.dumps(NAFLEX))
  rng = np.random.default_rng(29)
  for name, hw, max_patches in NAFLEX_CASES:
    image = rng.integers(0, 256, hw + (3,), dtype=np.uint8)
    patches, ptype, yidx, xidx, grid = _naflex_inputs(image, NAFLEX["patch_size"], max_patches)
    with torch.no_grad():
      got = model(pixel_values=torch.from_numpy(patches[None]), pixel_attention_mask=torch.from_numpy(ptype[None]),
                  spatial_shapes=torch.from_numpy(grid[None].astype(np.int64)))
    out.update({f"{name}_image": image, f"{name}_patches": patches, f"{name}_type": ptype, f"{name}_yidx": yidx,
                f"{name}_xidx": xidx, f"{name}_grid": grid, f"{name}_max_patches": np.int32(max_patches),
                f"{name}_hidden": got.last_hidden_state[0].numpy(), f"{name}_pooled": got.pooler_output[0].numpy()})
  _save("siglip_naflex", **out)


def main(argv):
  jobs = {"resize": golden_resize, "naflex": golden_naflex}
  for name in argv or jobs:
    jobs[name]()


if __name__ == "__main__":
  main(sys.argv[1:])
