"""CLIP (ViT image tower + text transformer) and its zero-shot ImageNet classifier.

Names mirror OpenAI's torch names (as scenic's CLIP does): `visual/{conv1, class_embedding, positional_embedding,
ln_pre, transformer/resblocks_{i}/{ln_1, attn, ln_2, mlp/{c_fc, c_proj}}, ln_post, proj}`,
`text/{token_embedding, positional_embedding, transformer/..., ln_final, text_projection}`, `logit_scale`.
OpenAI CLIP uses QuickGELU and LayerNorm eps 1e-5; open_clip models without `-quickgelu` use exact GELU
(`activation="gelu"`).

Zero-shot head (paper.md §5): for each class, the 80 prompt templates are encoded, each embedding
L2-normalised, averaged and re-normalised; logits = 100 * cos(image embedding, class embedding).
Building the head needs the text tower, the BPE vocabulary and class names, so it is a one-time step that writes
a small file (`python -m zoomjax.models.clip --help`); the registered classifiers read it with the checkpoint.
"""
import argparse
import functools
from typing import Any, Callable, Dict, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from zoomjax.checkpoints.convert_clip import convert_clip_zero_shot
from zoomjax.models import registry
from zoomjax.models.layers import Encoder1DBlock
from zoomjax.models.preprocessing import CLIP_PREPROCESSING, ZOOM_PAPER_CLIP_PREPROCESSING

_CLIP_NAMES = ("ln_1", "attn", "ln_2", "mlp")

# The 80 prompt templates of OpenAI's "Prompt Engineering for ImageNet" notebook (used by the zoom paper).
OPENAI_IMAGENET_TEMPLATES = (
    "a bad photo of a {}.", "a photo of many {}.", "a sculpture of a {}.", "a photo of the hard to see {}.",
    "a low resolution photo of the {}.", "a rendering of a {}.", "graffiti of a {}.", "a bad photo of the {}.",
    "a cropped photo of the {}.", "a tattoo of a {}.", "the embroidered {}.", "a photo of a hard to see {}.",
    "a bright photo of a {}.", "a photo of a clean {}.", "a photo of a dirty {}.", "a dark photo of the {}.",
    "a drawing of a {}.", "a photo of my {}.", "the plastic {}.", "a photo of the cool {}.",
    "a close-up photo of a {}.", "a black and white photo of the {}.", "a painting of the {}.",
    "a painting of a {}.", "a pixelated photo of the {}.", "a sculpture of the {}.", "a bright photo of the {}.",
    "a cropped photo of a {}.", "a plastic {}.", "a photo of the dirty {}.", "a jpeg corrupted photo of a {}.",
    "a blurry photo of the {}.", "a photo of the {}.", "a good photo of the {}.", "a rendering of the {}.",
    "a {} in a video game.", "a photo of one {}.", "a doodle of a {}.", "a close-up photo of the {}.",
    "a photo of a {}.", "the origami {}.", "the {} in a video game.", "a sketch of a {}.", "a doodle of the {}.",
    "a origami {}.", "a low resolution photo of a {}.", "the toy {}.", "a rendition of the {}.",
    "a photo of the clean {}.", "a photo of a large {}.", "a rendition of a {}.", "a photo of a nice {}.",
    "a photo of a weird {}.", "a blurry photo of a {}.", "a cartoon {}.", "art of a {}.", "a sketch of the {}.",
    "a embroidered {}.", "a pixelated photo of a {}.", "itap of the {}.", "a jpeg corrupted photo of the {}.",
    "a good photo of a {}.", "a plushie {}.", "a photo of the nice {}.", "a photo of the small {}.",
    "a photo of the weird {}.", "the cartoon {}.", "art of the {}.", "a drawing of the {}.",
    "a photo of the large {}.", "a black and white photo of a {}.", "the plushie {}.", "a dark photo of a {}.",
    "itap of a {}.", "graffiti of the {}.", "a toy {}.", "itap of my {}.", "a photo of a cool {}.",
    "a photo of a small {}.", "a tattoo of the {}.",
)

# Logit scale of the zero-shot classifier (OpenAI's learned scale is clamped at exactly 100).
ZERO_SHOT_SCALE = 100.0


class Transformer(nn.Module):
  width: int
  depth: int
  num_heads: int
  mlp_dim: int
  activation: str = "quick_gelu"
  layernorm_epsilon: float = 1e-5
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, mask: Optional[jax.Array] = None) -> jax.Array:
    for i in range(self.depth):
      x = Encoder1DBlock(self.num_heads, self.mlp_dim, self.layernorm_epsilon, gelu_approximate=False,
                         activation=self.activation, dtype=self.dtype, names=_CLIP_NAMES,
                         mlp_names=("c_fc", "c_proj"), name=f"resblocks_{i}")(x, mask)
    return x


def _ln(eps: float, dtype: Any, name: str) -> nn.LayerNorm:
  return nn.LayerNorm(epsilon=eps, dtype=dtype, param_dtype=jnp.float32, name=name)


class VisionTower(nn.Module):
  """CLIP's ViT image encoder. Returns (embedding (B, E), intermediates)."""
  patch_size: int = 32
  width: int = 768
  depth: int = 12
  num_heads: int = 12
  mlp_dim: int = 3072
  embed_dim: int = 512
  activation: str = "quick_gelu"
  layernorm_epsilon: float = 1e-5
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array):
    p, d = self.patch_size, self.width
    x = nn.Conv(d, (p, p), (p, p), padding="VALID", use_bias=False, dtype=self.dtype, param_dtype=jnp.float32,
                name="conv1")(x.astype(self.dtype))
    b, h, w, _ = x.shape
    x = x.reshape(b, h * w, d)
    cls = self.param("class_embedding", nn.initializers.normal(d ** -0.5), (d,), jnp.float32)
    x = jnp.concatenate([jnp.broadcast_to(cls.astype(x.dtype), (b, 1, d)), x], axis=1)
    shape = (1 + h * w, d)
    if self.has_variable("params", "positional_embedding"):
      have = tuple(self.get_variable("params", "positional_embedding").shape)
      if have != shape:
        raise ValueError(f"CLIP positional_embedding {have} does not fit a {h * p}x{w * p} input "
                         f"({1 + h * w} tokens); feed the checkpoint's input size")
    pe = self.param("positional_embedding", nn.initializers.normal(d ** -0.5), shape, jnp.float32)
    x = x + pe.astype(x.dtype)
    x = _ln(self.layernorm_epsilon, self.dtype, "ln_pre")(x)
    x = Transformer(d, self.depth, self.num_heads, self.mlp_dim, self.activation, self.layernorm_epsilon,
                    self.dtype, name="transformer")(x)
    x = _ln(self.layernorm_epsilon, self.dtype, "ln_post")(x)
    out = {"encoded": x, "feature_map": x[:, 1:].reshape(b, h, w, d), "pre_logits": x[:, 0]}
    proj = self.param("proj", nn.initializers.normal(d ** -0.5), (d, self.embed_dim), jnp.float32)
    emb = x[:, 0] @ proj.astype(x.dtype)  # OpenAI stores proj as (in, out): x @ proj, no transpose.
    return emb.astype(jnp.float32), out


class TextTower(nn.Module):
  """CLIP's causal text transformer; pools the eot token (the largest id in each row). Returns (B, E)."""
  vocab_size: int = 49408
  context_length: int = 77
  width: int = 512
  depth: int = 12
  num_heads: int = 8
  mlp_dim: int = 2048
  embed_dim: int = 512
  activation: str = "quick_gelu"
  layernorm_epsilon: float = 1e-5
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, tokens: jax.Array) -> jax.Array:
    tokens = jnp.asarray(tokens, jnp.int32)
    if tokens.shape[-1] != self.context_length:
      raise ValueError(f"text tokens have length {tokens.shape[-1]}, CLIP expects {self.context_length}")
    x = nn.Embed(self.vocab_size, self.width, dtype=self.dtype, param_dtype=jnp.float32,
                 name="token_embedding")(tokens)
    pe = self.param("positional_embedding", nn.initializers.normal(0.01), (self.context_length, self.width),
                    jnp.float32)
    x = x + pe.astype(x.dtype)
    mask = nn.make_causal_mask(tokens)
    x = Transformer(self.width, self.depth, self.num_heads, self.mlp_dim, self.activation,
                    self.layernorm_epsilon, self.dtype, name="transformer")(x, mask)
    x = _ln(self.layernorm_epsilon, self.dtype, "ln_final")(x)
    x = x[jnp.arange(x.shape[0]), jnp.argmax(tokens, axis=-1)]
    proj = self.param("text_projection", nn.initializers.normal(self.width ** -0.5),
                      (self.width, self.embed_dim), jnp.float32)
    return (x @ proj.astype(x.dtype)).astype(jnp.float32)


class CLIP(nn.Module):
  """Both towers. `__call__(images, tokens)` -> (logits_per_image (B_img, B_txt), intermediates) with
  normalised `image_features`/`text_features` and unnormalised `image_embeddings`/`text_embeddings`.

  `encode_image` / `encode_text` give unnormalised embeddings (apply with `method=`).
  """
  vision_cfg: Dict[str, Any]
  text_cfg: Dict[str, Any]
  activation: str = "quick_gelu"  # OpenAI and open_clip `-quickgelu`; "gelu" for other open_clip models
  dtype: Any = jnp.float32

  def setup(self):
    self.visual = VisionTower(**self.vision_cfg, activation=self.activation, dtype=self.dtype)
    self.text = TextTower(**self.text_cfg, activation=self.activation, dtype=self.dtype)
    self.logit_scale = self.param("logit_scale", nn.initializers.constant(np.log(1 / 0.07)), (), jnp.float32)

  def encode_image(self, images: jax.Array) -> jax.Array:
    return self.visual(images)[0]

  def encode_text(self, tokens: jax.Array) -> jax.Array:
    return self.text(tokens)

  def __call__(self, images: jax.Array, tokens: jax.Array):
    img_emb, txt_emb = self.encode_image(images), self.encode_text(tokens)
    img, txt = l2_normalize(img_emb), l2_normalize(txt_emb)
    return jnp.exp(self.logit_scale) * img @ txt.T, {
        "image_features": img, "text_features": txt, "image_embeddings": img_emb, "text_embeddings": txt_emb}


def l2_normalize(x: jax.Array, axis: int = -1) -> jax.Array:
  return x / jnp.linalg.norm(x, axis=axis, keepdims=True)


class ZeroShotClassifier(nn.Module):
  """Image tower + a fixed zero-shot head: logits = 100 * normalise(image embedding) @ head.

  `head` (E, C) holds the normalised per-class text embeddings (see `zero_shot_head`). This is what the zoom
  paper evaluates as "CLIP ViT-L/14"; intermediates are the image tower's plus `image_features`.
  """
  vision_cfg: Dict[str, Any]
  num_classes: int = 1000
  activation: str = "quick_gelu"  # OpenAI and open_clip `-quickgelu`; "gelu" for other open_clip models
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array):
    emb, out = VisionTower(**self.vision_cfg, activation=self.activation, dtype=self.dtype, name="visual")(x)
    emb = l2_normalize(emb)
    out["image_features"] = emb
    head = self.param("zeroshot_head", nn.initializers.zeros, (self.vision_cfg["embed_dim"], self.num_classes),
                      jnp.float32)
    return ZERO_SHOT_SCALE * emb @ head, out


# ---------------------------------------------------------------------------------------------- configs

def openai_config(name: str) -> Dict[str, Dict[str, Any]]:
  """Tower configs of OpenAI's ViT CLIPs (widths, depths and heads of the released models)."""
  text = dict(vocab_size=49408, context_length=77, width=512, depth=12, num_heads=8, mlp_dim=2048)
  if name == "ViT-B/32":
    vision = dict(patch_size=32, width=768, depth=12, num_heads=12, mlp_dim=3072, embed_dim=512)
    text["embed_dim"] = 512
  elif name == "ViT-B/16":
    vision = dict(patch_size=16, width=768, depth=12, num_heads=12, mlp_dim=3072, embed_dim=512)
    text["embed_dim"] = 512
  elif name == "ViT-L/14":
    vision = dict(patch_size=14, width=1024, depth=24, num_heads=16, mlp_dim=4096, embed_dim=768)
    text.update(width=768, num_heads=12, mlp_dim=3072, embed_dim=768)
  else:
    raise ValueError(f"unknown CLIP model {name!r}; choose ViT-B/32, ViT-B/16 or ViT-L/14")
  return {"vision": vision, "text": text}


def config_from_state_dict(flat: Dict[str, np.ndarray], vision_head_width: int = 64,
                           text_head_width: int = 64) -> Dict[str, Dict[str, Any]]:
  """Reads tower sizes off an OpenAI/open_clip state dict (head width 64 in every released ViT CLIP)."""
  def depth(prefix):
    n = 0
    while f"{prefix}transformer.resblocks.{n}.ln_1.weight" in flat:
      n += 1
    return n
  conv = flat["visual.conv1.weight"]
  vw = conv.shape[0]
  vision = dict(patch_size=int(conv.shape[-1]), width=int(vw), depth=depth("visual."),
                num_heads=int(vw // vision_head_width),
                mlp_dim=int(flat["visual.transformer.resblocks.0.mlp.c_fc.weight"].shape[0]),
                embed_dim=int(flat["visual.proj"].shape[1]))
  out = {"vision": vision}
  if "token_embedding.weight" in flat:
    tw = flat["token_embedding.weight"].shape[1]
    out["text"] = dict(vocab_size=int(flat["token_embedding.weight"].shape[0]),
                       context_length=int(flat["positional_embedding"].shape[0]), width=int(tw),
                       depth=depth(""), num_heads=int(tw // text_head_width),
                       mlp_dim=int(flat["transformer.resblocks.0.mlp.c_fc.weight"].shape[0]),
                       embed_dim=int(flat["text_projection"].shape[1]))
  return out


# ------------------------------------------------------------------------------------------ zero-shot

def zero_shot_head(encode_text: Callable[[np.ndarray], jax.Array], tokenize: Callable[[Sequence[str]], np.ndarray],
                   class_names: Sequence[str], templates: Sequence[str] = OPENAI_IMAGENET_TEMPLATES,
                   progress: Optional[Callable[[int, int], None]] = None) -> np.ndarray:
  """(E, C) zero-shot weights: per class, mean of the normalised template embeddings, re-normalised.

  `encode_text` maps (T, context) token ids to (T, E) embeddings (e.g. a jitted `CLIP.encode_text`);
  it is called once per class with all templates, so one compile serves every class.
  """
  cols = []
  for c, name in enumerate(class_names):
    emb = np.asarray(encode_text(tokenize([t.format(name) for t in templates])), np.float32)
    emb = emb / np.linalg.norm(emb, axis=-1, keepdims=True)
    mean = emb.mean(axis=0)
    cols.append(mean / np.linalg.norm(mean))
    if progress is not None:
      progress(c + 1, len(class_names))
  return np.stack(cols, axis=1)


def read_class_names(path: str) -> list:
  """One class name per line, in the 1000-way sorted-WNID order (blank lines are an error)."""
  with open(path, encoding="utf-8") as f:
    names = [line.rstrip("\n") for line in f]
  while names and not names[-1].strip():
    names.pop()
  bad = [i + 1 for i, n in enumerate(names) if not n.strip()]
  if bad:
    raise ValueError(f"{path}: empty class name on line(s) {bad[:5]}")
  return names


def build_zero_shot_checkpoint(checkpoint: str, vocab: str, class_names: str, out: str,
                               activation: str = "quick_gelu") -> None:
  """Writes `out` (.safetensors): the image-tower weights of `checkpoint` plus `zeroshot_head` (E, C)."""
  from safetensors.numpy import save_file

  from zoomjax.checkpoints import read_checkpoint
  from zoomjax.checkpoints.convert_clip import convert_clip, strip_module_prefix
  from zoomjax.models.clip_tokenizer import ClipTokenizer

  flat = strip_module_prefix(read_checkpoint(checkpoint))
  cfg = config_from_state_dict(flat)
  if "text" not in cfg:
    raise ValueError(f"{checkpoint}: no text tower (token_embedding.weight) to build the zero-shot head from")
  model = CLIP(cfg["vision"], cfg["text"], activation=activation)
  variables = convert_clip(flat)
  tok = ClipTokenizer(vocab, context_length=cfg["text"]["context_length"])
  encode = jax.jit(lambda v, t: model.apply(v, t, method=CLIP.encode_text))
  names = read_class_names(class_names)
  head = zero_shot_head(lambda t: encode(variables, t), tok, names,
                        progress=lambda i, n: print(f"\r{i}/{n} classes", end="", flush=True))
  print()
  tensors = {k: np.ascontiguousarray(v, np.float32) for k, v in flat.items() if k.startswith("visual.")}
  tensors["zeroshot_head"] = head.astype(np.float32)
  save_file(tensors, out)
  print(f"wrote {out}: image tower of {checkpoint} + zero-shot head {head.shape}")


# --------------------------------------------------------------------------------------------- registry

# Exact 'params' counts: the image tower (= open_clip's `visual`, 87,849,216 / 303,966,208) + the (E, 1000) head.
NUM_PARAMS = {"clip_vit_b32": 88_361_216, "clip_vit_l14": 304_734_208, "clip_vit_l14_zoompaper": 304_734_208}
_HINT = ("Pass a zero-shot classifier file built once from OpenAI's `{file}` (or open_clip's "
         "`{oc}`) with `python -m zoomjax.models.clip --checkpoint {file} --vocab bpe_simple_vocab_16e6.txt.gz "
         "--classnames classnames.txt --out {out}`; classnames.txt holds the 1000 curated OpenAI class names, "
         "one per line. For fp16 as in the paper pass dtype=jnp.float16.")

if __name__ == "__main__":
  # `python -m zoomjax.models.clip`: importing the package has already registered the models of the module
  # `zoomjax.models.clip`; this second copy of it (runpy's `__main__`) runs that module's CLI instead of
  # registering them twice.
  from zoomjax.models import clip as _package_module  # pylint: disable=import-self
  _package_module.main()
  raise SystemExit(0)

for _name, _arch, _pp in (("clip_vit_b32", "ViT-B/32", CLIP_PREPROCESSING),
                          ("clip_vit_l14", "ViT-L/14", CLIP_PREPROCESSING),
                          ("clip_vit_l14_zoompaper", "ViT-L/14", ZOOM_PAPER_CLIP_PREPROCESSING)):
  _vision = openai_config(_arch)["vision"]
  _file = _arch.replace("/", "-") + ".pt"
  registry.register(registry.ModelSpec(
      name=_name,
      make_module=functools.partial(ZeroShotClassifier, _vision),
      preprocessing=_pp,
      convert=functools.partial(convert_clip_zero_shot, vision_heads=_vision["num_heads"]),
      checkpoint_hint=_HINT.format(file=_file, oc=f"open_clip_pytorch_model.bin of {_arch.replace('/', '-')}"
                                   "-quickgelu/openai", out=f"{_name}.safetensors"),
      num_params=NUM_PARAMS[_name]))


def main(argv: Optional[Sequence[str]] = None) -> None:
  p = argparse.ArgumentParser(
      prog="python -m zoomjax.models.clip",
      description="Build a CLIP zero-shot ImageNet classifier file (image tower + 100*cos head over the 80 "
                  "OpenAI templates) for zoomjax.models.load('clip_vit_l14', checkpoint=OUT).")
  p.add_argument("--checkpoint", required=True, help="OpenAI/open_clip CLIP weights (e.g. ViT-L-14.pt)")
  p.add_argument("--vocab", required=True, help="bpe_simple_vocab_16e6.txt.gz (ships with open_clip/CLIP)")
  p.add_argument("--classnames", required=True, help="text file, one class name per line, 1000 lines")
  p.add_argument("--out", required=True, help="output .safetensors")
  p.add_argument("--activation", default="quick_gelu", choices=("quick_gelu", "gelu"),
                 help="quick_gelu: OpenAI and open_clip *-quickgelu models; gelu: other open_clip models "
                      "(then load the classifier with activation='gelu' too)")
  a = p.parse_args(argv)
  build_zero_shot_checkpoint(a.checkpoint, a.vocab, a.classnames, a.out, a.activation)

