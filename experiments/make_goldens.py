"""Writes tests/golden/*.npz: expected outputs of the reference libraries on seeded weights.

Runs ONLY in a throwaway venv with torch/torchvision/timm/open_clip (never a zoomjax dependency):

  /work/refvenv/bin/python experiments/make_goldens.py            # all goldens
  /work/refvenv/bin/python experiments/make_goldens.py resnet18   # some
  /tmp/torchenv/bin/python experiments/make_goldens.py torch_zip  # torch + torchvision suffice here

Versions used for the committed files: torch 2.14.1, torchvision 0.29.1, timm 1.0.31, open_clip_torch 3.3.0.
Each golden stores the source state dict's key names/shapes (`spec`), the input shape and the reference
outputs. Weights and inputs come from tests/golden/seeded_weights.py (numpy only), so the JAX tests rebuild the
identical state dict, convert it with zoomjax's converter and compare. Nothing large is written.
`torch_zip` is the exception: a few-KB file written by `torch.save` itself, so the reader is tested on torch's
own bytes (torch_zip_state_dict.pt, with the expected arrays in torch_zip_state_dict.npz).
"""
import os
import pathlib
import sys
import tempfile

import numpy as np
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


# ------------------------------------------------------------------------------------------ CNNs

def golden_cnn(name, ctor, size, **kw):
  model, spec = load_seeded(ctor(**kw))
  x = sw.seeded_images((2, 3, size, size))
  logits = model(torch.from_numpy(x)).numpy()
  save(name, spec=sw.encode_spec(spec), input_shape=np.array(x.shape), logits=logits)


def golden_resnet_prelogits(name, ctor, size):
  """Also stores pre_logits (global-average features) to check the intermediates contract."""
  model, spec = load_seeded(ctor())
  x = torch.from_numpy(sw.seeded_images((2, 3, size, size)))
  feats = {}
  model.avgpool.register_forward_hook(lambda m, i, o: feats.__setitem__("pre", o.flatten(1)))
  logits = model(x).numpy()
  save(name, spec=sw.encode_spec(spec), input_shape=np.array(x.shape), logits=logits,
       pre_logits=feats["pre"].numpy())


# torchvision's VGG cfg letters at 1/16 width (64 -> 4 ... 512 -> 32); the classifier gets a 16-wide hidden layer.
VGG_SMALL = {letter: [v if v == "M" else v // 16 for v in cfg] for letter, cfg in (
    ("A", [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"]),
    ("B", [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"]),
    ("D", [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]),
    ("E", [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"]))}
VGG_SMALL_HIDDEN, VGG_SMALL_CLASSES = 16, 10


def golden_vgg_small(name, letter, batch_norm, size=64):
  """torchvision `VGG(make_layers(cfg, batch_norm))` at small widths with a small classifier of the same layout
  (`classifier.{0,3,6}`); stores pre_logits (fc7 after ReLU)."""
  from torchvision.models.vgg import VGG, make_layers
  cfg = VGG_SMALL[letter]
  model = VGG(make_layers(cfg, batch_norm=batch_norm), num_classes=VGG_SMALL_CLASSES)
  h, c = VGG_SMALL_HIDDEN, cfg[-2]
  model.classifier = torch.nn.Sequential(
      torch.nn.Linear(c * 7 * 7, h), torch.nn.ReLU(True), torch.nn.Dropout(), torch.nn.Linear(h, h),
      torch.nn.ReLU(True), torch.nn.Dropout(), torch.nn.Linear(h, VGG_SMALL_CLASSES))
  model, spec = load_seeded(model)
  x = torch.from_numpy(sw.seeded_images((2, 3, size, size)))
  feats = {}
  model.classifier[4].register_forward_hook(lambda m, i, o: feats.__setitem__("pre", o.clone()))
  logits = model(x).numpy()
  save(name, spec=sw.encode_spec(spec), input_shape=np.array(x.shape), logits=logits,
       pre_logits=feats["pre"].numpy())


# ConvNeXt / MobileNetV3 at small widths: torchvision's classes with custom block settings (same layouts).
def golden_convnext_narrow(name="convnext_narrow", size=64):
  """torchvision `ConvNeXt` with three small stages (8x2, 16, 32; 64 px -> 4x4 feature map); stores
  pre_logits (the head LayerNorm2d output, flattened) and the last feature map."""
  from torchvision.models.convnext import CNBlockConfig, ConvNeXt
  model = ConvNeXt([CNBlockConfig(8, 16, 2), CNBlockConfig(16, 32, 1), CNBlockConfig(32, None, 1)],
                   num_classes=10)
  _golden_features_and_pre(name, model, "classifier", 1, size)


def golden_mobilenet_v3_narrow(name="mobilenet_v3_narrow", size=64):
  """torchvision `MobileNetV3` with a four-block setting covering every block kind (no expansion + SE,
  expansion without SE, a residual k5 hard-swish SE block, stride 2 with SE); stores pre_logits (after the
  classifier's hard-swish) and the last feature map."""
  from functools import partial
  from torchvision.models.mobilenetv3 import InvertedResidualConfig, MobileNetV3
  conf = partial(InvertedResidualConfig, width_mult=1.0)
  setting = [conf(8, 3, 8, 8, True, "RE", 2, 1), conf(8, 3, 24, 16, False, "RE", 2, 1),
             conf(16, 5, 32, 16, True, "HS", 1, 1), conf(16, 3, 48, 24, True, "HS", 2, 1)]
  _golden_features_and_pre(name, MobileNetV3(setting, last_channel=32, num_classes=10), "classifier", 1, size)


def golden_swin_narrow(name="swin_narrow", size=(64, 44)):
  """torchvision v1 `SwinTransformer` at embed 8, depths 2-2-2, window 5 on a 64x44 input: token grids 16x11
  (padded to 20x15 inside the attention, shifted), 8x6 (shifted, odd-width patch merging before it) and 4x3
  (one window: shift disabled). Stores the final-norm tokens (feature_map) and their mean (pre_logits)."""
  from torchvision.models.swin_transformer import ShiftedWindowAttention, SwinTransformer
  model = SwinTransformer(patch_size=[4, 4], embed_dim=8, depths=[2, 2, 2], num_heads=[2, 2, 4], window_size=[5, 5],
                          stochastic_depth_prob=0.0, num_classes=10)
  model, spec = load_seeded(model)
  for m in model.modules():  # The seeded int buffer is zeros: restore the real relative-position index.
    if isinstance(m, ShiftedWindowAttention):
      m.define_relative_position_index()
  x = torch.from_numpy(sw.seeded_images((2, 3) + size))
  feats = {}
  model.norm.register_forward_hook(lambda m, i, o: feats.__setitem__("fmap", o.clone()))
  logits = model(x).numpy()
  fmap = feats["fmap"].numpy()
  save(name, spec=sw.encode_spec(spec), input_shape=np.array(x.shape), logits=logits,
       pre_logits=fmap.mean(axis=(1, 2)), feature_map=fmap)


def _golden_features_and_pre(name, model, head, index, size):
  model, spec = load_seeded(model)
  x = torch.from_numpy(sw.seeded_images((2, 3, size, size)))
  feats = {}
  model.features.register_forward_hook(lambda m, i, o: feats.__setitem__("fmap", o.clone()))
  getattr(model, head)[index].register_forward_hook(lambda m, i, o: feats.__setitem__("pre", o.clone()))
  logits = model(x).numpy()
  save(name, spec=sw.encode_spec(spec), input_shape=np.array(x.shape), logits=logits,
       pre_logits=feats["pre"].numpy(), feature_map=feats["fmap"].numpy().transpose(0, 2, 3, 1))


# EfficientNet-B* at small multipliers: torchvision's real B0 block setting via `_efficientnet_conf` and timm's
# `_gen_efficientnet` (tf_: TF 'SAME' padding, eps 1e-3; timm's own efficientnet_b0: torchvision's numerics).
EFFICIENTNET_NARROW = {  # name -> (library, width, depth, BN eps, input size)
    # 23 blocks; even sizes, where TF 'SAME' (extra pixel bottom/right) and torch's k // 2 padding differ.
    "efficientnet_tv_narrow": ("torchvision", 0.25, 1.2, 1e-5, 64),
    "efficientnet_tv_narrow_eps3": ("torchvision", 0.25, 0.5, 1e-3, 65),  # the B5-B7 (lukemelas) BatchNorm
    "tf_efficientnet_narrow": ("tf", 0.25, 1.2, 1e-3, 64),
    "tf_efficientnet_narrow_odd": ("tf", 0.25, 0.5, 1e-3, 65),
    "timm_efficientnet_narrow": ("timm", 0.25, 0.5, 1e-5, 64),  # timm names, torchvision numerics
}


def golden_efficientnet_narrow():
  """Logits, pre_logits and every 8th channel of the head feature map (kept small) of each
  EFFICIENTNET_NARROW model (10 classes)."""
  from functools import partial
  for name, (lib, width, depth, eps, size) in EFFICIENTNET_NARROW.items():
    if lib == "torchvision":
      from torchvision.models.efficientnet import EfficientNet, _efficientnet_conf
      setting, last = _efficientnet_conf("efficientnet_b0", width_mult=width, depth_mult=depth)
      model = EfficientNet(setting, dropout=0.0, last_channel=last, num_classes=10,
                           norm_layer=partial(torch.nn.BatchNorm2d, eps=eps))
      features, head = lambda m, x: m.features(x), lambda m, f: torch.flatten(m.avgpool(f), 1)
    else:
      from timm.models.efficientnet import _gen_efficientnet
      variant = "tf_efficientnet_b0" if lib == "tf" else "efficientnet_b0"
      kw = dict(pad_type="same") if lib == "tf" else {}
      model = _gen_efficientnet(variant, channel_multiplier=width, depth_multiplier=depth, pretrained=False,
                                num_classes=10, bn_eps=eps, **kw)
      features, head = lambda m, x: m.forward_features(x), lambda m, f: m.forward_head(f, pre_logits=True)
    model, spec = load_seeded(model)
    x = torch.from_numpy(sw.seeded_images((2, 3, size, size)))
    fmap = features(model, x).numpy().transpose(0, 2, 3, 1)
    save(name, spec=sw.encode_spec(spec), input_shape=np.array(x.shape), logits=model(x).numpy(),
         pre_logits=head(model, features(model, x)).numpy(), feature_map_shape=np.array(fmap.shape),
         feature_map_every8=fmap[..., ::8])


def golden_adaptive_pool():
  """torch AdaptiveAvgPool2d on odd sizes (the AlexNet/VGG head at non-224 inputs)."""
  rows = {}
  for i, (h, w, oh, ow) in enumerate([(10, 13, 7, 7), (3, 5, 6, 6), (1, 1, 7, 7), (14, 14, 7, 7), (6, 6, 6, 6)]):
    x = sw.seeded_images((1, 2, h, w), seed=i)
    rows[f"out_{i}"] = torch.nn.AdaptiveAvgPool2d((oh, ow))(torch.from_numpy(x)).numpy()
    rows[f"cfg_{i}"] = np.array([h, w, oh, ow])
  save("adaptive_pool", **rows)


# ------------------------------------------------------------------------------------------- ViT

TINY_VIT = dict(image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=16, mlp_dim=32)


def golden_vit_torchvision():
  from torchvision.models.vision_transformer import VisionTransformer
  model, spec = load_seeded(VisionTransformer(**TINY_VIT, num_classes=10))
  x = sw.seeded_images((2, 3, 32, 32))
  logits = model(torch.from_numpy(x)).numpy()
  save("vit_torchvision_tiny", spec=sw.encode_spec(spec), input_shape=np.array(x.shape), logits=logits)


def _timm_vit(**kw):
  from timm.models.vision_transformer import VisionTransformer
  return VisionTransformer(img_size=32, patch_size=8, embed_dim=16, depth=2, num_heads=2, mlp_ratio=2.0,
                           num_classes=10, **kw)


def golden_vit_timm():
  import functools
  clip_like = dict(pre_norm=True, act_layer="quick_gelu", norm_layer=functools.partial(torch.nn.LayerNorm, eps=1e-5))
  for name, kw in (("vit_timm_tiny", {}), ("vit_timm_clip_tiny", clip_like)):
    model, spec = load_seeded(_timm_vit(**kw))
    x = sw.seeded_images((2, 3, 32, 32))
    logits = model(torch.from_numpy(x)).numpy()
    save(name, spec=sw.encode_spec(spec), input_shape=np.array(x.shape), logits=logits)


def golden_vit_npz():
  """vit_jax and big_vision .npz layouts, loaded into timm by timm's own `_load_weights`.

  The npz arrays are seeded by their npz key names, so the test rebuilds the npz dict from `spec` alone.
  """
  from timm.models.vision_transformer import _load_weights
  d, heads, mlp, depth, n, classes = 16, 2, 32, 2, 16, 10
  dh = d // heads
  common = [("embedding/kernel", (8, 8, 3, d)), ("embedding/bias", (d,)), ("cls", (1, 1, d)),
            ("Transformer/encoder_norm/scale", (d,)), ("Transformer/encoder_norm/bias", (d,)),
            ("head/kernel", (d, classes)), ("head/bias", (classes,))]

  def block(prefix, names, stack=()):
    ln0, mha, ln1, mlpb = names
    s = tuple(stack)
    return [(f"{prefix}{ln0}/scale", s + (d,)), (f"{prefix}{ln0}/bias", s + (d,)),
            *[(f"{prefix}{mha}/{q}/kernel", s + (d, heads, dh)) for q in ("query", "key", "value")],
            *[(f"{prefix}{mha}/{q}/bias", s + (heads, dh)) for q in ("query", "key", "value")],
            (f"{prefix}{mha}/out/kernel", s + (heads, dh, d)), (f"{prefix}{mha}/out/bias", s + (d,)),
            (f"{prefix}{ln1}/scale", s + (d,)), (f"{prefix}{ln1}/bias", s + (d,)),
            (f"{prefix}{mlpb}/Dense_0/kernel", s + (d, mlp)), (f"{prefix}{mlpb}/Dense_0/bias", s + (mlp,)),
            (f"{prefix}{mlpb}/Dense_1/kernel", s + (mlp, d)), (f"{prefix}{mlpb}/Dense_1/bias", s + (d,))]

  pre_linen = ("LayerNorm_0", "MultiHeadDotProductAttention_1", "LayerNorm_2", "MlpBlock_3")
  linen = ("LayerNorm_0", "MultiHeadDotProductAttention_0", "LayerNorm_1", "MlpBlock_0")
  layouts = {
      # vit_jax / AugReg: pre-Linen numbering, pos-embedding with the cls slot, all under opt/target/.
      "vit_npz_vitjax": ("opt/target/", [("Transformer/posembed_input/pos_embedding", (1, 1 + n, d))]
                         + [kv for i in range(depth)
                            for kv in block(f"Transformer/encoderblock_{i}/", pre_linen)], {}),
      # big_vision, unrolled blocks: Linen numbering, top-level pos_embedding added before the cls token.
      "vit_npz_bigvision": ("params/", [("pos_embedding", (1, n, d))]
                            + [kv for i in range(depth)
                               for kv in block(f"Transformer/encoderblock_{i}/", linen)],
                            dict(no_embed_class=True)),
      # big_vision with nn.scan: every block stacked on a leading axis under Transformer/encoderblock/.
      "vit_npz_bigvision_scan": ("params/", [("pos_embedding", (1, n, d))]
                                 + block("Transformer/encoderblock/", linen, stack=(depth,)),
                                 dict(no_embed_class=True)),
  }
  for name, (prefix, extra, timm_kw) in layouts.items():
    spec = [(prefix + k, s, "f") for k, s in common + extra]
    arrays = sw.seeded_state_dict(spec)
    model = _timm_vit(**timm_kw).eval()
    with tempfile.TemporaryDirectory() as tmp:
      path = os.path.join(tmp, "w.npz")
      np.savez(path, **arrays)
      _load_weights(model, path)
    x = sw.seeded_images((2, 3, 32, 32))
    logits = model(torch.from_numpy(x)).numpy()
    save(name, spec=sw.encode_spec(spec), input_shape=np.array(x.shape), logits=logits)


# ------------------------------------------------------------------------------------------ CLIP

def golden_clip():
  """Tiny open_clip ViT CLIPs (OpenAI key names) on seeded images and token ids: QuickGELU (OpenAI,
  `-quickgelu`) and exact GELU (other open_clip models)."""
  for name, quick in (("clip_tiny", True), ("clip_tiny_gelu", False)):
    _golden_clip(name, quick)


def _golden_clip(name, quick_gelu):
  import open_clip
  from open_clip.model import CLIPTextCfg, CLIPVisionCfg
  vocab = 1000
  model = open_clip.CLIP(
      embed_dim=12,
      vision_cfg=CLIPVisionCfg(layers=2, width=32, head_width=16, patch_size=8, image_size=32, mlp_ratio=2.0),
      text_cfg=CLIPTextCfg(context_length=77, vocab_size=vocab, width=24, heads=2, layers=2, mlp_ratio=2.0),
      quick_gelu=quick_gelu)
  model, spec = load_seeded(model)
  x = sw.seeded_images((2, 3, 32, 32))
  tokens = sw.seeded_tokens(3, 77, vocab, lengths=(5, 12, 77))
  img = model.encode_image(torch.from_numpy(x)).numpy()
  txt = model.encode_text(torch.from_numpy(tokens)).numpy()
  img_f, txt_f, scale = model(torch.from_numpy(x), torch.from_numpy(tokens))[:3]
  logits_per_image = (scale * img_f @ txt_f.T).numpy()
  save(name, spec=sw.encode_spec(spec), input_shape=np.array(x.shape), tokens=tokens,
       image_features=img, text_features=txt, logits_per_image=logits_per_image)


# ------------------------------------------------------------------------------------- tokenizer

def golden_tokenizer():
  """open_clip's SimpleTokenizer on a synthetic vocabulary (always testable) and, ids only, on the real one."""
  from open_clip.tokenizer import SimpleTokenizer, default_bpe
  merges = sw.synthetic_bpe_merges()
  rows = {}
  with tempfile.TemporaryDirectory() as tmp:
    path = os.path.join(tmp, "vocab.txt.gz")
    sw.write_bpe_vocab(path, merges)
    rows["synthetic"] = SimpleTokenizer(path)(list(sw.TOKENIZER_TEXTS)).numpy().astype(np.int32)
  rows["real"] = SimpleTokenizer(default_bpe())(list(sw.TOKENIZER_TEXTS)).numpy().astype(np.int32)
  save("clip_tokenizer", **rows)


# ------------------------------------------------------------------------------------- torch.save

def golden_torch_zip():
  """A small state dict saved by `torch.save` (zip format, torch >= 1.6) and its arrays as .npz.

  Covers float32, float16 and int64 storages, a 0-d tensor, and three views of one storage (contiguous,
  transposed, offset + strided slice) that torch writes once.
  """
  import collections
  torch.manual_seed(0)
  conv, fc = torch.nn.Conv2d(3, 4, 3), torch.nn.Linear(8, 5)
  base = torch.arange(24, dtype=torch.float32).reshape(4, 6) / 7
  sd = collections.OrderedDict([
      ("conv.weight", conv.weight.detach()),  # float32 (4, 3, 3, 3)
      ("conv.bias", conv.bias.detach()),
      ("fc.weight", fc.weight.detach().half()),  # float16
      ("fc.bias", fc.bias.detach().half()),
      ("steps", torch.tensor([3, -1, 2 ** 40], dtype=torch.int64)),
      ("bn.num_batches_tracked", torch.tensor(7)),  # 0-d int64
      ("shared.base", base),
      ("shared.transposed", base.t()),  # strides (1, 6)
      ("shared.slice", base[1:3, 1::2]),  # storage offset 7, strides (6, 2)
  ])
  assert sd["shared.slice"].storage_offset() == 7 and not sd["shared.transposed"].is_contiguous()
  path = OUT / "torch_zip_state_dict.pt"
  torch.save(sd, path)
  print(f"wrote {path} ({path.stat().st_size / 1024:.1f} KiB)")
  save("torch_zip_state_dict", **{k: v.contiguous().numpy() for k, v in sd.items()})  # 0-d stays 0-d


def main(argv):
  import torchvision.models as tvm
  jobs = {
      "resnet18": lambda: golden_resnet_prelogits("resnet18", tvm.resnet18, 64),
      "resnet50": lambda: golden_resnet_prelogits("resnet50", tvm.resnet50, 64),
      "alexnet": lambda: golden_cnn("alexnet", tvm.alexnet, 64),
      "vgg16": lambda: golden_cnn("vgg16", tvm.vgg16, 64),
      "vgg19_small": lambda: golden_vgg_small("vgg19_small", "E", False),
      **{f"vgg{d}_bn_small": (lambda d=d, letter=letter: golden_vgg_small(f"vgg{d}_bn_small", letter, True))
         for d, letter in ((11, "A"), (13, "B"), (16, "D"), (19, "E"))},
      # ResNeXt / Wide-ResNet bottlenecks at one block per stage: grouped 3x3 (groups 4, 8 per group) and the
      # width_per_group path (32: narrower than Wide-ResNet's 128 to stay small; same formula).
      "resnext_small": lambda: golden_resnet_prelogits("resnext_small", lambda: tvm.resnet.ResNet(
          tvm.resnet.Bottleneck, [1, 1, 1, 1], groups=4, width_per_group=8, num_classes=10), 64),
      "wide_resnet_small": lambda: golden_resnet_prelogits("wide_resnet_small", lambda: tvm.resnet.ResNet(
          tvm.resnet.Bottleneck, [1, 1, 1, 1], width_per_group=32, num_classes=10), 64),
      "convnext_narrow": golden_convnext_narrow,
      "mobilenet_v3_narrow": golden_mobilenet_v3_narrow,
      "swin_narrow": golden_swin_narrow,
      "efficientnet_narrow": golden_efficientnet_narrow,
      "adaptive_pool": golden_adaptive_pool,
      "vit_torchvision": golden_vit_torchvision,
      "vit_timm": golden_vit_timm,
      "vit_npz": golden_vit_npz,
      "clip": golden_clip,
      "tokenizer": golden_tokenizer,
      "torch_zip": golden_torch_zip,
  }
  for name in argv or jobs:
    torch.manual_seed(0)
    jobs[name]()


if __name__ == "__main__":
  main(sys.argv[1:])
