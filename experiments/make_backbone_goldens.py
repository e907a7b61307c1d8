"""Writes tests/golden/{convnextv2,eva02,openclip_convnext}_*.npz and backbone_counts.npz: reference outputs of
timm / open_clip on seeded small-width weights, and the full-size parameter counts the references report.

Runs ONLY in a throwaway venv with torch (CPU), timm and open_clip (never a zoomjax dependency):

  /work/refvenv/bin/python experiments/make_backbone_goldens.py              # all
  /work/refvenv/bin/python experiments/make_backbone_goldens.py eva02 counts # some

Versions used for the committed files: torch 2.13.0+cpu, timm 1.0.31, open_clip_torch 3.3.0. Weights and
inputs come from tests/golden/seeded_weights.py (numpy only), so tests/test_golden_backbones.py rebuilds the
identical state dicts, converts them with zoomjax's converters and compares.
"""
import pathlib
import sys

import numpy as np
import open_clip
import timm
import torch

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "golden"))
import seeded_weights as sw  # noqa: E402

OUT = REPO / "tests" / "golden"
torch.set_grad_enabled(False)
torch.backends.mkldnn.enabled = False  # Plain fp32 kernels for the reference numbers.


def spec_of(model) -> sw.Spec:
  return [(k, tuple(v.shape), "i" if not v.dtype.is_floating_point else "f")
          for k, v in model.state_dict().items()]


def load_seeded(model, seed=0):
  spec = spec_of(model)
  sd = sw.seeded_state_dict(spec, seed)
  model.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()}, strict=True)
  return model.eval(), spec


def save(name, **arrays):
  path = OUT / f"{name}.npz"
  np.savez_compressed(path, **arrays)
  print(f"wrote {path} ({path.stat().st_size / 1024:.1f} KiB)")


def golden_convnextv2():
  """ConvNeXt-V2 at narrow widths: Linear MLPs (tiny..huge) and 1x1-conv MLPs (atto..nano, `conv_mlp`)."""
  for name, base in (("convnextv2_narrow", "convnextv2_tiny"), ("convnextv2_narrow_convmlp", "convnextv2_atto")):
    model, spec = load_seeded(timm.create_model(base, depths=(2, 1, 1, 1), dims=(8, 16, 24, 32), num_classes=10))
    x = sw.seeded_images((2, 3, 64, 64))
    feats = model.forward_features(torch.from_numpy(x))
    pre = model.forward_head(feats, pre_logits=True)
    logits = model.forward_head(feats)
    save(name, spec=sw.encode_spec(spec), input_shape=np.array(x.shape), logits=logits.numpy(),
         pre_logits=pre.numpy(), feature_map=feats.permute(0, 2, 3, 1).numpy())


def golden_eva02():
  """EVA-02 at a tiny width on a 56 px input (4x4 grid, RoPE rescaled to the 16x16 reference grid): the fused
  qkv + packed SwiGLU of tiny/small, and the split q/k/v + sub-LN SwiGLU of base/large."""
  for name, base in (("eva02_fused", "eva02_tiny_patch14_336"), ("eva02_split", "eva02_base_patch14_448")):
    model, spec = load_seeded(timm.create_model(base, img_size=56, embed_dim=32, depth=2, num_heads=2,
                                                num_classes=10))
    x = sw.seeded_images((2, 3, 56, 56))
    feats = model.forward_features(torch.from_numpy(x))
    pre = model.forward_head(feats, pre_logits=True)
    logits = model.forward_head(feats)
    save(name, spec=sw.encode_spec(spec), input_shape=np.array(x.shape), logits=logits.numpy(),
         pre_logits=pre.numpy(), encoded=feats.numpy())


def golden_openclip_convnext():
  """open_clip's ConvNeXt image towers (timm trunk + `linear` or `mlp` projection) with the trunk shrunk to
  narrow stages: the embeddings `encode_image` gives (before normalisation)."""
  create = timm.create_model

  def narrow(name, **kw):
    return create(name, **dict(kw, depths=(2, 1, 1, 1), dims=(8, 16, 24, 32)))

  timm.create_model = narrow
  try:
    for name, arch in (("openclip_convnext_linear", "convnext_base_w"), ("openclip_convnext_mlp", "convnext_large_d")):
      visual = open_clip.create_model(arch, pretrained=None).visual.eval()
      spec = [(f"visual.{k}", s, kind) for k, s, kind in spec_of(visual)]  # seeded under the file's key names
      sd = sw.seeded_state_dict(spec)
      visual.load_state_dict({k[len("visual."):]: torch.from_numpy(v) for k, v in sd.items()}, strict=True)
      x = sw.seeded_images((2, 3, 64, 64))
      emb = visual(torch.from_numpy(x)).numpy()
      save(name, spec=sw.encode_spec(spec), input_shape=np.array(x.shape), embedding=emb)
  finally:
    timm.create_model = create


# Full-size models whose parameter count the tests pin (`jax.eval_shape` of zoomjax's module).
TIMM_COUNTED = ["convnextv2_atto", "convnextv2_femto", "convnextv2_pico", "convnextv2_nano", "convnextv2_tiny",
                "convnextv2_base", "convnextv2_large", "convnextv2_huge", "eva02_tiny_patch14_336",
                "eva02_small_patch14_336", "eva02_base_patch14_448", "eva02_large_patch14_448"]
OPENCLIP_COUNTED = ["convnext_base", "convnext_base_w", "convnext_base_w_320", "convnext_large_d",
                    "convnext_large_d_320", "convnext_xxlarge", "ViT-B-16-plus-240"]


def golden_counts():
  """{model: parameter count}: timm's whole classifier; open_clip's image tower (`model.visual`) and its
  embedding width (the zero-shot head adds embed_dim x 1000)."""
  names, counts, embed = [], [], []
  for name in TIMM_COUNTED:
    with torch.device("meta"):
      model = timm.create_model(name)
    names.append(name)
    counts.append(sum(p.numel() for p in model.parameters()))
    embed.append(0)
    print(name, counts[-1])
  for name in OPENCLIP_COUNTED:
    model = open_clip.create_model(name, pretrained=None, device="meta")
    names.append(f"openclip:{name}")
    counts.append(sum(p.numel() for p in model.visual.parameters()))
    embed.append(int(model.text_projection.shape[1]))
    print(name, counts[-1], embed[-1])
  save("backbone_counts", names=np.array(names), counts=np.array(counts, np.int64), embed_dim=np.array(embed))


GOLDENS = {"convnextv2": golden_convnextv2, "eva02": golden_eva02, "openclip_convnext": golden_openclip_convnext,
           "counts": golden_counts}

if __name__ == "__main__":
  for key in sys.argv[1:] or list(GOLDENS):
    GOLDENS[key]()
