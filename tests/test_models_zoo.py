"""The ResNet/ViT/AlexNet/VGG/CLIP registry entries: exact sizes, end-to-end loading, contracts."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from safetensors.numpy import save_file

from zoomjax import models
from zoomjax.checkpoints import CheckpointError
from zoomjax.models import clip, clip_archs, clip_cli, clip_head, clip_tokenizer
from goldens import GOLDEN, sw, assert_memo_episode_adapts  # pylint: disable=wrong-import-order


# torchvision's published `num_params` (and timm's / open_clip's counts) for the same architectures.
EXPECTED = {
    "resnet18": 11_689_512, "resnet34": 21_797_672, "resnet50": 25_557_032, "resnet101": 44_549_160,
    "alexnet": 61_100_840, "vgg16": 138_357_544, "vit_b32": 88_224_232, "vit_b16": 86_567_656,
    "vit_b32_augreg": 88_224_232, "vit_b16_augreg": 86_567_656,
    "vit_l14": 304_204_776,  # timm vit_large_patch14_clip_224.openai_ft_in1k
    "clip_vit_b32": 87_849_216 + 512 * 1000,  # open_clip ViT-B-32 `visual` + zero-shot head
    "clip_vit_l14": 303_966_208 + 768 * 1000, "clip_vit_l14_zoompaper": 303_966_208 + 768 * 1000,
    "resnet_tiny": 143_312, "vit_tiny": 71_464,
    # torchvision 0.29.1's count (sum of `p.numel()` over `parameters()`); it documents VGG-19 143,667,240.
    "vgg11": 132_863_336, "vgg13": 133_047_848, "vgg19": 143_667_240,
    "vgg11_bn": 132_868_840, "vgg13_bn": 133_053_736, "vgg16_bn": 138_365_992, "vgg19_bn": 143_678_248,
    # torchvision 0.29.1; it documents ResNeXt-101 32x8d 88,791,336.
    "resnext50_32x4d": 25_028_904, "resnext101_32x8d": 88_791_336, "wide_resnet50_2": 68_883_240,
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_exact_parameter_counts(name):
  module, spec = models.create(name)
  count = models.count_params(models.variable_shapes(module, spec))  # eval_shape: no real init
  assert count == EXPECTED[name] == spec.num_params


def test_full_clip_parameter_counts_match_open_clip():
  for arch, want in (("ViT-B/32", 151_277_313), ("ViT-L/14", 427_616_513)):
    cfg = clip_archs.openai_config(arch)
    shapes = jax.eval_shape(clip.CLIP(cfg["vision"], cfg["text"]).init, jax.random.PRNGKey(0),
                            jnp.zeros((1, 224, 224, 3)), jnp.zeros((1, 77), jnp.int32))
    assert models.count_params(shapes) == want


@pytest.mark.parametrize("name,size", [("resnet_tiny", 64), ("vit_tiny", 224)])
def test_tiny_models_contract(name, size):
  bundle = models.load(name, random_init=True)
  x = jax.random.uniform(jax.random.PRNGKey(0), (2, size, size, 3), maxval=255.0)
  logits, inter = jax.jit(bundle.module.apply)(bundle.variables, bundle.preprocessing.normalize(x))
  assert logits.shape == (2, 1000) and logits.dtype == jnp.float32
  assert inter["pre_logits"].ndim == 2 and inter["feature_map"].ndim == 4
  # Compute dtype is configurable; parameters stay float32 and results stay close.
  half = models.create(name, dtype=jnp.bfloat16)[0]
  out = jax.jit(half.apply)(bundle.variables, bundle.preprocessing.normalize(x))[0]
  assert out.dtype == jnp.float32
  assert float(jnp.max(jnp.abs(out - logits))) < 0.1 * float(jnp.max(jnp.abs(logits))) + 1e-3


# Tiny widths of the torchvision families, passed as `load` overrides (same module, same converter).
_TINY_VGG = dict(cfg=(8, "M", 16, "M", 16, "M"), hidden=16)
FAMILY_TINY = {
    "vgg19": _TINY_VGG, "vgg11_bn": _TINY_VGG, "vgg13_bn": _TINY_VGG, "vgg16_bn": _TINY_VGG,
    "vgg19_bn": _TINY_VGG,
    # One block per stage, stem 8; ResNeXt keeps its 32 groups (2 channels each), Wide-ResNet its 128 per group.
    "resnext50_32x4d": dict(stage_sizes=(1, 1, 1, 1), width=8, width_per_group=16),
    "resnext101_32x8d": dict(stage_sizes=(1, 1, 1, 1), width=8, width_per_group=16),
    "wide_resnet50_2": dict(stage_sizes=(1, 1, 1, 1), width=8),
}


@pytest.mark.parametrize("name", sorted(FAMILY_TINY))
def test_family_random_init_forward(name):
  """`load(name, random_init=True)` at a tiny width: contract shapes, torchvision preprocessing, BN prior mode."""
  bundle = models.load(name, random_init=True, **FAMILY_TINY[name])
  assert bundle.preprocessing == models.get_spec("resnet50").preprocessing  # torchvision IMAGENET1K_V1 eval
  x = bundle.preprocessing.normalize(jax.random.uniform(jax.random.PRNGKey(0), (2, 64, 64, 3), maxval=255.0))
  logits, inter = jax.jit(bundle.module.apply)(bundle.variables, x)
  assert logits.shape == (2, 1000) and logits.dtype == jnp.float32 and bool(jnp.all(jnp.isfinite(logits)))
  assert inter["pre_logits"].ndim == 2 and inter["pre_logits"].shape[0] == 2
  assert inter["feature_map"].ndim == 4 and inter["feature_map"].shape[0] == 2
  if "batch_stats" in bundle.variables:  # MEMO's prior mode reaches the BatchNorms.
    prior = models.create(name, bn_prior_strength=16.0, **FAMILY_TINY[name])[0]
    assert not np.allclose(jax.jit(prior.apply)(bundle.variables, x)[0], logits)


@pytest.mark.parametrize("name", ["vgg16_bn", "resnext101_32x8d"])
def test_family_memo_episode(name):
  """A MEMO + RRC episode (gradient step through the grouped convs / prior-mode BatchNorm) at a tiny width."""
  assert_memo_episode_adapts(models.load(name, random_init=True, **FAMILY_TINY[name]))


def test_bn_prior_strength_reaches_every_batchnorm():
  bundle = models.load("resnet_tiny", random_init=True)
  x = jax.random.normal(jax.random.PRNGKey(1), (4, 32, 32, 3))
  logits = lambda m: jax.jit(m.apply)(bundle.variables, x)[0]
  eval_logits = logits(bundle.module)
  assert not np.allclose(logits(models.create("resnet_tiny", bn_prior_strength=16.0)[0]), eval_logits)
  huge = models.create("resnet_tiny", bn_prior_strength=1e9)[0]
  np.testing.assert_allclose(logits(huge), eval_logits, rtol=1e-4, atol=1e-4)


def test_resnet18_loads_from_a_safetensors_file_through_the_registry(tmp_path):
  """Reader -> converter -> merge gate -> same logits as torchvision (the resnet18 golden)."""
  g = dict(np.load(GOLDEN / "resnet18.npz"))
  state = sw.seeded_state_dict(sw.decode_spec(g["spec"]))
  path = tmp_path / "model.safetensors"
  save_file(state, str(path))
  bundle = models.load("resnet18", checkpoint=str(path))
  x = sw.seeded_images(tuple(g["input_shape"])).transpose(0, 2, 3, 1)
  logits, _ = jax.jit(bundle.module.apply)(bundle.variables, jnp.asarray(x))
  np.testing.assert_allclose(logits, g["logits"], rtol=1e-4, atol=1e-4 * np.abs(g["logits"]).max())
  assert bundle.preprocessing.resize_method == "bilinear" and bundle.preprocessing.resize_size == 256


def test_wrong_checkpoint_is_a_clear_error(tmp_path):
  g = dict(np.load(GOLDEN / "resnet18.npz"))
  path = tmp_path / "r18.safetensors"
  save_file(sw.seeded_state_dict(sw.decode_spec(g["spec"])), str(path))
  with pytest.raises(CheckpointError, match="r18.safetensors"):
    models.load("resnet50", checkpoint=str(path))
  with pytest.raises(CheckpointError, match="vit_b_32-d86f8d99.pth"):
    models.load("vit_b32")  # no checkpoint: the hint names the file to pass


def test_preprocessing_per_family():
  tv = models.get_spec("resnet50").preprocessing
  assert tv.mean == pytest.approx((123.675, 116.28, 103.53)) and tv.resize_method == "bilinear"
  aug = models.get_spec("vit_b32_augreg").preprocessing
  assert aug.mean == (127.5,) * 3 and aug.std == (127.5,) * 3 and aug.resize_method == "bicubic"
  c = models.get_spec("clip_vit_l14").preprocessing
  assert c.mean == pytest.approx((122.7709383, 116.7460125, 104.09373615)) and c.resize_size == 224
  assert models.get_spec("clip_vit_l14_zoompaper").preprocessing.mean == tv.mean


def test_zero_shot_classifier_file_end_to_end(tmp_path):
  """`python -m zoomjax.models.clip_cli` on a tiny CLIP + synthetic vocab -> registry-style classifier."""
  vocab = tmp_path / "vocab.txt.gz"
  sw.write_bpe_vocab(str(vocab), sw.synthetic_bpe_merges())
  tok = clip_tokenizer.ClipTokenizer(str(vocab))
  vision = dict(patch_size=16, width=64, depth=1, num_heads=1, mlp_dim=64, embed_dim=8)
  text = dict(vocab_size=tok.vocab_size, context_length=77, width=64, depth=1, num_heads=1, mlp_dim=64,
              embed_dim=8)
  model = clip.CLIP(vision, text)
  # A seeded checkpoint with OpenAI key names.
  spec = _openai_spec(vision, text, image_size=32)
  state = sw.seeded_state_dict(spec)
  ckpt = tmp_path / "clip.safetensors"
  save_file(state, str(ckpt))
  names = tmp_path / "classnames.txt"
  names.write_text("goldfish\ngreat white shark\ntiger shark\n")
  out = tmp_path / "zs.safetensors"
  clip_cli.main(["--checkpoint", str(ckpt), "--vocab", str(vocab), "--classnames", str(names), "--out", str(out)])

  from zoomjax.checkpoints import read_checkpoint
  from zoomjax.checkpoints.convert_clip import convert_clip, convert_clip_zero_shot
  flat = read_checkpoint(str(out))
  assert not any(k.startswith("token_embedding") for k in flat)
  full = convert_clip(state)
  encode = jax.jit(lambda t: model.apply(full, t, method=clip.CLIP.encode_text))
  want_head = clip_head.zero_shot_head(encode, tok, ["goldfish", "great white shark", "tiger shark"])
  np.testing.assert_allclose(flat["zeroshot_head"], want_head, rtol=1e-5, atol=1e-6)
  classifier = clip.ZeroShotClassifier(vision, num_classes=3)
  x = jnp.asarray(sw.seeded_images((2, 32, 32, 3)))
  logits, _ = jax.jit(classifier.apply)(convert_clip_zero_shot(flat), x)
  img = model.apply(full, x, method=clip.CLIP.encode_image)
  img = img / jnp.linalg.norm(img, axis=-1, keepdims=True)
  np.testing.assert_allclose(logits, 100.0 * img @ want_head, rtol=1e-4, atol=1e-3)


def _openai_spec(vision, text, image_size):
  """OpenAI CLIP key names and shapes for the given tower sizes."""
  def blocks(prefix, d, mlp, depth):
    out = []
    for i in range(depth):
      b = f"{prefix}transformer.resblocks.{i}."
      out += [(b + "ln_1.weight", (d,)), (b + "ln_1.bias", (d,)), (b + "attn.in_proj_weight", (3 * d, d)),
              (b + "attn.in_proj_bias", (3 * d,)), (b + "attn.out_proj.weight", (d, d)),
              (b + "attn.out_proj.bias", (d,)), (b + "ln_2.weight", (d,)), (b + "ln_2.bias", (d,)),
              (b + "mlp.c_fc.weight", (mlp, d)), (b + "mlp.c_fc.bias", (mlp,)),
              (b + "mlp.c_proj.weight", (d, mlp)), (b + "mlp.c_proj.bias", (d,))]
    return out
  v, t, p = vision["width"], text["width"], vision["patch_size"]
  n = (image_size // p) ** 2
  spec = [("visual.conv1.weight", (v, 3, p, p)), ("visual.class_embedding", (v,)),
          ("visual.positional_embedding", (1 + n, v)), ("visual.ln_pre.weight", (v,)),
          ("visual.ln_pre.bias", (v,)), ("visual.ln_post.weight", (v,)), ("visual.ln_post.bias", (v,)),
          ("visual.proj", (v, vision["embed_dim"])),
          ("token_embedding.weight", (text["vocab_size"], t)), ("positional_embedding", (77, t)),
          ("ln_final.weight", (t,)), ("ln_final.bias", (t,)), ("text_projection", (t, text["embed_dim"])),
          ("logit_scale", ())]
  spec += blocks("visual.", v, vision["mlp_dim"], vision["depth"]) + blocks("", t, text["mlp_dim"], text["depth"])
  return [(k, s, "f") for k, s in spec]
