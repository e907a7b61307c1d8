"""Writes tests/golden/maxvit_narrow.npz: torchvision's MaxVit on seeded weights at a narrow width.

Runs ONLY in the throwaway torch venv (see experiments/make_goldens.py, whose seeded-weight helpers it uses):

  /tmp/torchenv/bin/python experiments/make_maxvit_golden.py

Versions used for the committed file: torch 2.14.1, torchvision 0.29.1. Also prints torchvision's own
parameter count of the full-size `maxvit_t` (pinned in tests/test_golden_maxvit.py).
"""
import numpy as np
import torch

import make_goldens as mg  # experiments/make_goldens.py: torch set-up, seeded weights, save()

# torchvision's maxvit_t layout with 7x7 windows / grid, three narrow stages on a 112x112 input: stage maps
# 28x28 (16 windows, a 4x4-strided grid), 14x14 and 7x7 (one window = the whole grid); two layers in the
# first stage (the identity shortcut), head dim 4 (2, 4 and 8 heads).
# Trained bias tables are O(1); the seeded ones (std 0.1) would barely move attention, so the golden scales
# them (and stores the factor: the test applies it to the same seeded state dict).
TABLE_SCALE = 10.0
NARROW = dict(input_size=(112, 112), stem_channels=8, block_channels=[8, 16, 32], block_layers=[2, 1, 1],
              head_dim=4, partition_size=7, stochastic_depth_prob=0.0, num_classes=10)


def golden_maxvit_narrow(name="maxvit_narrow"):
  """Stores the last stage's map (feature_map, NHWC) and the head's Linear + tanh output (pre_logits)."""
  from torchvision.models.maxvit import MaxVit, RelativePositionalMultiHeadAttention, _get_relative_position_index
  model, spec = mg.load_seeded(MaxVit(**NARROW))
  for m in model.modules():  # The seeded int buffer is zeros: restore the real relative-position index.
    if isinstance(m, RelativePositionalMultiHeadAttention):
      m.relative_position_index.copy_(_get_relative_position_index(m.size, m.size))
      m.relative_position_bias_table.mul_(TABLE_SCALE)
  x = torch.from_numpy(mg.sw.seeded_images((2, 3) + NARROW["input_size"]))
  feats = {}
  model.blocks[-1].register_forward_hook(lambda m, i, o: feats.__setitem__("fmap", o.clone()))
  model.classifier[4].register_forward_hook(lambda m, i, o: feats.__setitem__("pre", o.clone()))
  logits = model(x).numpy()
  mg.save(name, spec=mg.sw.encode_spec(spec), input_shape=np.array(x.shape), table_scale=np.float32(TABLE_SCALE),
          logits=logits, pre_logits=feats["pre"].numpy(), feature_map=feats["fmap"].numpy().transpose(0, 2, 3, 1))


def main():
  import torchvision.models as tvm
  torch.manual_seed(0)
  golden_maxvit_narrow()
  full = tvm.maxvit_t()
  print("torchvision maxvit_t parameters:", sum(p.numel() for p in full.parameters()))


if __name__ == "__main__":
  main()
