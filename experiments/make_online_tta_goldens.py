"""Golden arrays for zoomjax.tta.online: TENT, EATA and SAR steps computed by an independent PyTorch
implementation of each official algorithm (github.com/DequanWang/tent, mr-eggplant/EATA, mr-eggplant/SAR).

Needs torch (CPU) in a throwaway environment, never a zoomjax dependency:
  python experiments/make_online_tta_goldens.py --out tests/golden

The model is a tiny seeded BatchNorm CNN (conv-BN-ReLU twice, global mean pool, linear, 10 classes) on 16x16
inputs; tests/test_online_tta.py builds the same network in flax from the stored weights. Each method takes two
consecutive steps on two batches of 8 (momentum, EATA's moving-average prediction and SAR's loss EMA carry
over). The learning rate is raised to 0.05 so that the updates are far above float32 noise, and the entropy
margins are set between the batch's own entropies so that both sides of every filter are exercised.
Written: online_tta_tent.npz, online_tta_eata.npz, online_tta_sar.npz.
"""
import argparse
import os

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

B, SIDE, CLASSES, LR, MOMENTUM = 8, 16, 10, 0.05, 0.9
MEAN, STD = 127.5, 64.0


def make_weights(seed: int = 0):
  rng = np.random.default_rng(seed)
  n = lambda *s: rng.standard_normal(s).astype(np.float32)
  w = {"conv1.weight": 0.3 * n(8, 3, 3, 3), "conv2.weight": 0.2 * n(16, 8, 3, 3),
       "fc.weight": 1.5 * n(CLASSES, 16), "fc.bias": 0.1 * n(CLASSES)}
  for bn, c in (("bn1", 8), ("layer4_bn", 16)):
    w[f"{bn}.weight"] = 1.0 + 0.2 * n(c)
    w[f"{bn}.bias"] = 0.2 * n(c)
    w[f"{bn}.running_mean"] = 0.1 * n(c)
    w[f"{bn}.running_var"] = 1.0 + 0.2 * np.abs(n(c))
  return w


class Net(nn.Module):
  """The tiny CNN; `layer4_bn` is named so that SAR's rule (skip ResNet's layer4) applies to it."""

  def __init__(self):
    super().__init__()
    self.conv1 = nn.Conv2d(3, 8, 3, stride=2, padding=1, bias=False)
    self.bn1 = nn.BatchNorm2d(8)
    self.conv2 = nn.Conv2d(8, 16, 3, stride=2, padding=1, bias=False)
    self.layer4_bn = nn.BatchNorm2d(16)
    self.fc = nn.Linear(16, CLASSES)

  def forward(self, pixels_nhwc):
    x = (pixels_nhwc.permute(0, 3, 1, 2) - MEAN) / STD
    x = F.relu(self.bn1(self.conv1(x)))
    x = F.relu(self.layer4_bn(self.conv2(x)))
    return self.fc(x.mean(dim=(2, 3)))


def build(weights):
  net = Net()
  net.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()}, strict=False)
  # As TENT / EATA / SAR configure_model: train mode, only BatchNorm affine parameters train, no running stats.
  net.train()
  net.requires_grad_(False)
  for m in net.modules():
    if isinstance(m, nn.BatchNorm2d):
      m.requires_grad_(True)
      m.track_running_stats = False
      m.running_mean = None
      m.running_var = None
  return net


def bn_params(net, skip=()):
  return [p for name, m in net.named_modules() if isinstance(m, nn.BatchNorm2d) and not any(s in name for s in skip)
          for p in (m.weight, m.bias)]


def entropy(logits):
  return -(logits.softmax(1) * logits.log_softmax(1)).sum(1)


def snapshot(net):
  return {f"{n}.{p}": getattr(m, p).detach().numpy().copy() for n, m in net.named_modules()
          if isinstance(m, nn.BatchNorm2d) for p in ("weight", "bias")}


def midpoint(values, k):
  """A threshold between the k-th and (k+1)-th smallest values (both sides of a filter get samples)."""
  v = np.sort(np.asarray(values, np.float64))
  return float((v[k - 1] + v[k]) / 2)


def store(out, stream, results, extra):
  for t, (logits, params) in enumerate(results):
    out[f"logits_{t}"] = logits
    for k, v in params.items():
      out[f"params_{t}/{k}"] = v
  out.update(extra)
  out["pixels"] = stream


def tent(weights, stream):
  net = build(weights)
  opt = torch.optim.SGD(bn_params(net), LR, momentum=MOMENTUM)
  results = []
  for x in stream:
    outputs = net(torch.from_numpy(x))
    entropy(outputs).mean(0).backward()
    opt.step()
    opt.zero_grad()
    results.append((outputs.detach().numpy(), snapshot(net)))
  return results, {}


def eata(weights, stream, source):
  net = build(weights)
  params = bn_params(net)
  names = [f"{n}.{p}" for n, m in net.named_modules() if isinstance(m, nn.BatchNorm2d) for p in ("weight", "bias")]
  fisher = {}
  for x in source:  # EATA main.py: pseudo-label cross-entropy, squared gradients averaged over batches.
    outputs = net(torch.from_numpy(x))
    F.cross_entropy(outputs, outputs.max(1)[1]).backward()
    for name, p in zip(names, params):
      fisher[name] = fisher.get(name, 0) + p.grad.detach() ** 2
      p.grad = None
  fisher = {k: v / len(source) for k, v in fisher.items()}
  anchor = {name: p.detach().clone() for name, p in zip(names, params)}
  alpha = 50.0
  with torch.no_grad():
    e_margin = midpoint(entropy(net(torch.from_numpy(stream[0]))).numpy(), 5)
  opt = torch.optim.SGD(params, LR, momentum=MOMENTUM)
  probs_ma, results, d_margin, kept = None, [], None, []
  for t, x in enumerate(stream):
    outputs = net(torch.from_numpy(x))
    ent = entropy(outputs)
    ids1 = torch.where(ent < e_margin)[0]
    probs = outputs[ids1].softmax(1).detach()
    if probs_ma is not None:
      cos = F.cosine_similarity(probs_ma[None], probs, dim=1)
      if d_margin is None:  # Between the reliable samples' similarities: some redundant, some not.
        d_margin = midpoint(cos.abs().numpy(), max(1, len(ids1) // 2))
      ids = ids1[torch.where(cos.abs() < d_margin)[0]]
    else:
      ids = ids1
    sel = outputs[ids].softmax(1).detach()
    if len(ids):
      probs_ma = sel.mean(0) if probs_ma is None else 0.9 * probs_ma + 0.1 * sel.mean(0)
    coeff = 1 / torch.exp(ent[ids].detach() - e_margin)
    loss = (ent[ids] * coeff).mean(0)
    loss = loss + sum(alpha * (fisher[n] * (p - anchor[n]) ** 2).sum() for n, p in zip(names, params))
    if len(ids):
      loss.backward()
      opt.step()
    opt.zero_grad()
    kept.append(len(ids))
    results.append((outputs.detach().numpy(), snapshot(net)))
  assert len(stream) > 1 and 0 < kept[1] < len(ids1), f"the redundancy filter is not exercised: kept {kept}"
  extra = {"e_margin": np.float64(e_margin), "d_margin": np.float64(d_margin), "fisher_alpha": np.float64(alpha),
           "kept": np.asarray(kept), "probs_ma": probs_ma.numpy()}
  extra.update({f"fisher/{k}": v.numpy() for k, v in fisher.items()})
  extra.update({f"source_{i}": x for i, x in enumerate(source)})
  return results, extra


def sar(weights, stream, reset_constant):
  net = build(weights)
  params = bn_params(net, skip=("layer4",))
  opt = torch.optim.SGD(params, LR, momentum=MOMENTUM)
  rho = 0.05
  with torch.no_grad():
    e_margin = midpoint(entropy(net(torch.from_numpy(stream[0]))).numpy(), 5)
  source_state = [p.detach().clone() for p in params]
  opt_state = opt.state_dict()
  ema, results, resets = None, [], 0
  for x in stream:
    xt = torch.from_numpy(x)
    outputs = net(xt)
    ent = entropy(outputs)
    ids1 = torch.where(ent < e_margin)[0]
    ent[ids1].mean(0).backward()
    # SAM's first step: climb to θ + rho g / ||g|| (norm over every adapted tensor).
    with torch.no_grad():
      grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
      norm = torch.norm(torch.stack([g.norm(2) for g in grads]), 2)
      eps = [g * (rho / (norm + 1e-12)) for g in grads]
      for p, e in zip(params, eps):
        p.add_(e)
    opt.zero_grad()
    ent2 = entropy(net(xt))[ids1]
    ids2 = torch.where(ent2 < e_margin)[0]
    loss2 = ent2[ids2].mean(0)
    if not np.isnan(loss2.item()):
      ema = loss2.item() if ema is None else 0.9 * ema + 0.1 * loss2.item()
    loss2.backward()
    with torch.no_grad():  # SAM's second step: back to θ, then the base optimiser with the gradient at θ + e.
      for p, e in zip(params, eps):
        p.sub_(e)
    opt.step()
    opt.zero_grad()
    if ema is not None and ema < reset_constant:  # Model recovery (the EMA itself is kept, as officially).
      with torch.no_grad():
        for p, s in zip(params, source_state):
          p.copy_(s)
      opt.load_state_dict(opt_state)
      resets += 1
    results.append((outputs.detach().numpy(), snapshot(net)))
  return results, {"e_margin": np.float64(e_margin), "ema": np.float64(ema), "resets": np.int64(resets),
                   "reset_constant": np.float64(reset_constant)}


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--out", default="tests/golden")
  args = parser.parse_args()
  torch.manual_seed(0)
  weights = make_weights()
  rng = np.random.default_rng(1)
  stream = np.round(rng.uniform(0, 255, (2, B, SIDE, SIDE, 3))).astype(np.float32)
  source = np.round(rng.uniform(0, 255, (2, B, SIDE, SIDE, 3))).astype(np.float32)
  common = {f"weights/{k}": v for k, v in weights.items()}
  common.update(lr=np.float64(LR), momentum=np.float64(MOMENTUM))
  runs = {"tent": tent(weights, stream), "eata": eata(weights, stream, source)}
  runs["sar"] = sar(weights, stream, 0.2)
  reset = sar(weights, stream, 100.0)  # Recovery after every step.
  runs["sar"][1].update({f"reset/{k}": v for k, v in reset[1].items()})
  for t, (logits, params) in enumerate(reset[0]):
    runs["sar"][1][f"reset/logits_{t}"] = logits
    runs["sar"][1].update({f"reset/params_{t}/{k}": v for k, v in params.items()})
  for name, (results, extra) in runs.items():
    out = dict(common)
    store(out, stream, results, extra)
    path = os.path.join(args.out, f"online_tta_{name}.npz")
    np.savez_compressed(path, **out)
    print(path, os.path.getsize(path), "bytes", {k: v for k, v in extra.items() if np.ndim(v) == 0 or k == "kept"})


if __name__ == "__main__":
  main()
