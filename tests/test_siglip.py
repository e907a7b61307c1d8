"""SigLIP / SigLIP 2 (zoomjax.models.siglip) against open_clip's layout of SigLIP
(experiments/make_clip_resnet_siglip_goldens.py).

big_vision is not installable, so the golden is open_clip's SigLIP built from timm's VisionTransformer with MAP
pooling and open_clip's bidirectional, last-token TextTransformer (tanh GELU, as big_vision's flax modules), with
seeded weights; the test lays those weights out under big_vision's parameter names (`_big_vision`, written from
big_vision's vit.py / text_transformer.py / two_towers.py) and loads them as a big_vision `.npz`. The tokenizer is
checked against an independent reading of big_vision's `tokenize(eos="sticky")` stored in the golden, with a tiny
SentencePiece model trained here (tests/golden/siglip_spm.py). Full-size parameter counts are pinned to timm's.
"""
import dataclasses
import importlib.util
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from safetensors.numpy import save_file

import zoomjax.models as zm
from zoomjax.checkpoints import CheckpointError, read_checkpoint
from zoomjax.errors import NotFoundError, UserError
from zoomjax.models import clip_cli, siglip
from zoomjax.models.clip_zero_shot import OPENAI_IMAGENET_TEMPLATES
from zoomjax.models.preprocessing import Preprocessing
from zoomjax.models.siglip_tokenizer import SigLipTokenizer
from goldens import GOLDEN, load_golden, rel_err  # pylint: disable=wrong-import-order

_spec = importlib.util.spec_from_file_location("siglip_spm", GOLDEN / "siglip_spm.py")
siglip_spm = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(siglip_spm)


def _attention(out, dst, q, k, v, proj_w, proj_b, heads):
  """torch q/k/v (D, D) + biases and the output Linear -> flax MultiHeadDotProductAttention kernels."""
  for name, (w, b) in zip(("query", "key", "value"), (q, k, v)):
    d = w.shape[1]
    out[f"{dst}/{name}/kernel"] = w.T.reshape(d, heads, d // heads)
    out[f"{dst}/{name}/bias"] = b.reshape(heads, d // heads)
  out[f"{dst}/out/kernel"] = proj_w.T.reshape(heads, proj_w.shape[1] // heads, proj_w.shape[0])
  out[f"{dst}/out/bias"] = proj_b


def _ln(out, dst, state, src):
  out[f"{dst}/scale"], out[f"{dst}/bias"] = state[f"{src}.weight"], state[f"{src}.bias"]


def _dense(out, dst, state, src):
  out[f"{dst}/kernel"], out[f"{dst}/bias"] = state[f"{src}.weight"].T, state[f"{src}.bias"]


def _big_vision(state, cfg):
  """The golden's timm/open_clip state dict under big_vision's names (`params/img/...`, `params/txt/...`)."""
  out, h = {}, cfg["heads"]
  w = state["visual.patch_embed.proj.weight"]
  out["img/embedding/kernel"] = w.transpose(2, 3, 1, 0)
  out["img/embedding/bias"] = state["visual.patch_embed.proj.bias"]
  out["img/pos_embedding"] = state["visual.pos_embed"]
  for i in range(cfg["depth"]):
    s, d = f"visual.blocks.{i}", f"img/Transformer/encoderblock_{i}"
    _ln(out, f"{d}/LayerNorm_0", state, f"{s}.norm1")
    qw, kw, vw = np.split(state[f"{s}.attn.qkv.weight"], 3)
    qb, kb, vb = np.split(state[f"{s}.attn.qkv.bias"], 3)
    _attention(out, f"{d}/MultiHeadDotProductAttention_0", (qw, qb), (kw, kb), (vw, vb),
               state[f"{s}.attn.proj.weight"], state[f"{s}.attn.proj.bias"], h)
    _ln(out, f"{d}/LayerNorm_1", state, f"{s}.norm2")
    _dense(out, f"{d}/MlpBlock_0/Dense_0", state, f"{s}.mlp.fc1")
    _dense(out, f"{d}/MlpBlock_0/Dense_1", state, f"{s}.mlp.fc2")
  _ln(out, "img/Transformer/encoder_norm", state, "visual.norm")
  p, m = "visual.attn_pool", "img/MAPHead_0"
  out[f"{m}/probe"] = state[f"{p}.latent"]
  kw, vw = np.split(state[f"{p}.kv.weight"], 2)
  kb, vb = np.split(state[f"{p}.kv.bias"], 2)
  _attention(out, f"{m}/MultiHeadDotProductAttention_0", (state[f"{p}.q.weight"], state[f"{p}.q.bias"]), (kw, kb),
             (vw, vb), state[f"{p}.proj.weight"], state[f"{p}.proj.bias"], h)
  _ln(out, f"{m}/LayerNorm_0", state, f"{p}.norm")
  _dense(out, f"{m}/MlpBlock_0/Dense_0", state, f"{p}.mlp.fc1")
  _dense(out, f"{m}/MlpBlock_0/Dense_1", state, f"{p}.mlp.fc2")
  out["txt/Embed_0/embedding"] = state["text.token_embedding.weight"]
  out["txt/pos_embedding"] = state["text.positional_embedding"][None]
  for i in range(cfg["text_depth"]):
    s, d = f"text.transformer.resblocks.{i}", f"txt/Encoder_0/encoderblock_{i}"
    _ln(out, f"{d}/LayerNorm_0", state, f"{s}.ln_1")
    qw, kw, vw = np.split(state[f"{s}.attn.in_proj_weight"], 3)
    qb, kb, vb = np.split(state[f"{s}.attn.in_proj_bias"], 3)
    _attention(out, f"{d}/MultiHeadDotProductAttention_0", (qw, qb), (kw, kb), (vw, vb),
               state[f"{s}.attn.out_proj.weight"], state[f"{s}.attn.out_proj.bias"], h)
    _ln(out, f"{d}/LayerNorm_1", state, f"{s}.ln_2")
    _dense(out, f"{d}/MlpBlock_0/Dense_0", state, f"{s}.mlp.c_fc")
    _dense(out, f"{d}/MlpBlock_0/Dense_1", state, f"{s}.mlp.c_proj")
  _ln(out, "txt/Encoder_0/encoder_norm", state, "text.ln_final")
  _dense(out, "txt/head", state, "text.text_projection")
  out["t"], out["b"] = state["logit_scale"], state["logit_bias"]
  return {f"params/{k}": np.ascontiguousarray(v) for k, v in out.items()}


@pytest.fixture(scope="module")
def golden(tmp_path_factory):
  g, state, x = load_golden("siglip_tiny")
  cfg = json.loads(str(g["config"]))
  d = tmp_path_factory.mktemp("siglip")
  bv = _big_vision(state, cfg)
  np.savez(d / "webli_tiny.npz", **bv)
  (d / "names.txt").write_text("\n".join(str(n) for n in g["class_names"]) + "\n")
  files = dict(npz=str(d / "webli_tiny.npz"), names=str(d / "names.txt"),
               spm=siglip_spm.train(str(d / "spm.model")))
  tiny = dict(patch_size=cfg["patch_size"], width=cfg["width"], depth=cfg["depth"], num_heads=cfg["heads"],
              mlp_dim=int(cfg["width"] * cfg["mlp_ratio"]))
  return g, bv, x, cfg, files, tiny


def test_tokenizer_follows_big_visions_sticky_end(golden):
  g, _, _, cfg, files, _ = golden
  tok = SigLipTokenizer(files["spm"], cfg["context"], pad="eos")
  prompts = [[t.format(c) for t in OPENAI_IMAGENET_TEMPLATES] for c in g["class_names"]]
  np.testing.assert_array_equal(np.stack([tok(p) for p in prompts]), g["zs_tokens"])
  ids = list(tok.sp.EncodeAsIds("a hen."))  # hand-made answers: end token 1, pad 0 (SigLIP 2) or 1 (SigLIP)
  assert tok(["A Hen."])[0].tolist() == ids + [1] * (cfg["context"] - len(ids))
  assert SigLipTokenizer(files["spm"], 8, pad="pad")(["a hen."])[0].tolist() == ids + [1] + [0] * (7 - len(ids))
  text = "the quick brown fox jumps over the lazy dog"
  long = list(tok.sp.EncodeAsIds(text))  # too long: cut to 4 tokens + the (sticky) end token
  assert len(long) > 5 and SigLipTokenizer(files["spm"], 5)([text])[0].tolist() == long[:4] + [1]


def test_missing_tokenizer_names_the_file(golden, tmp_path):
  _, _, _, _, files, tiny = golden
  with pytest.raises(NotFoundError, match=r"gs://t5-data/vocabs/cc_en\.32000/sentencepiece\.model"):
    zm.load("siglip_b16_224", files["npz"], class_names=files["names"], head_cache_dir=str(tmp_path),
            image_size=32, **tiny)
  with pytest.raises(NotFoundError, match=r"vocab='nope.model'.*gs://big_vision/gemma_tokenizer\.model"):
    zm.load("siglip2_b16_224", files["npz"], vocab="nope.model", class_names=files["names"],
            head_cache_dir=str(tmp_path), image_size=32, **tiny)


def test_towers_match_open_clips_siglip(golden):
  g, bv, x, cfg, _, tiny = golden
  image = dict(tiny, embed_dim=None)
  text = dict(vocab_size=int(g["vocab_size"]), context_length=cfg["context"], width=cfg["width"],
              depth=cfg["text_depth"], num_heads=cfg["heads"], mlp_dim=tiny["mlp_dim"], embed_dim=cfg["width"])
  model = siglip.SigLIP(image, text)
  apply = jax.jit(lambda v, i, t: (model.apply(v, i, method=model.encode_image),
                                   model.apply(v, t, method=model.encode_text), model.apply(v, i, t)[0]))
  img, txt, logits = apply(siglip.convert_siglip(bv), jnp.asarray(x), jnp.asarray(g["tokens"]))
  assert rel_err(img, g["image_features"]) < 1e-4 and rel_err(txt, g["text_features"]) < 1e-4
  assert rel_err(logits, g["logits"]) < 1e-4
  # SigLIP 2's scanned layout (blocks stacked on axis 0) converts to the same variables.
  scanned = {k: v for k, v in bv.items() if "encoderblock_" not in k}
  for tower, depth in (("img/Transformer", cfg["depth"]), ("txt/Encoder_0", cfg["text_depth"])):
    leaves = {k.split(f"{tower}/encoderblock_0/")[1] for k in bv if f"{tower}/encoderblock_0/" in k}
    for leaf in leaves:
      scanned[f"params/{tower}/encoderblock/{leaf}"] = np.stack(
          [bv[f"params/{tower}/encoderblock_{i}/{leaf}"] for i in range(depth)])
  same = jax.tree_util.tree_map(np.array_equal, siglip.convert_siglip(scanned), siglip.convert_siglip(bv))
  assert all(jax.tree_util.tree_leaves(same))
  assert siglip.config_from_checkpoint(siglip.big_vision_tree(bv))["text"] == text


def test_load_builds_the_sigmoid_zero_shot_classifier(golden, tmp_path):
  g, _, x, _, files, tiny = golden
  bundle = zm.load("siglip_b16_224", files["npz"], vocab=files["spm"], class_names=files["names"],
                   head_cache_dir=str(tmp_path), image_size=32, **tiny)
  assert bundle.num_classes == 5 and bundle.preprocessing.input_size == 32
  assert (bundle.preprocessing.crop_mode, bundle.preprocessing.antialias) == ("squash", False)  # big_vision's view
  assert bundle.preprocessing.mean == bundle.preprocessing.std == (127.5,) * 3
  assert rel_err(bundle.variables["params"]["zeroshot_head"], g["zs_head"]) < 1e-4
  logits, inter = jax.jit(bundle.module.apply)(bundle.variables, jnp.asarray(x))
  assert rel_err(logits, g["zs_logits"]) < 1e-4
  assert inter["feature_map"].shape == (2, 4, 4, tiny["width"])
  assert len(list(tmp_path.glob("*.npz"))) == 1  # cached for the next load
  # A SigLIP 2 family pads with the pad token, not the end token: another head, in its own cache entry.
  v2 = zm.load("siglip2_b16_224", files["npz"], vocab=files["spm"], class_names=files["names"],
               head_cache_dir=str(tmp_path), image_size=32, **tiny)
  assert rel_err(v2.variables["params"]["zeroshot_head"], g["zs_head"]) > 1e-3
  assert len(list(tmp_path.glob("*.npz"))) == 2


def test_wrong_files_are_named(golden, tmp_path):
  _, bv, _, _, files, tiny = golden
  # Another family's file gets the load gate's two-sided difference.
  other = tmp_path / "clip.safetensors"
  save_file({"visual.conv1.weight": np.zeros((8, 3, 4, 4), np.float32)}, str(other))
  with pytest.raises(CheckpointError, match=r"(?s)missing in checkpoint.*params/img/MAPHead_0/probe.*"
                                            r"unexpected in checkpoint.*visual\.conv1\.weight"):
    zm.load("siglip_b16_224", str(other), vocab=files["spm"], image_size=32, **tiny)
  with pytest.raises(CheckpointError, match=r"width: model 768 vs checkpoint 64"):
    zm.load("siglip_b16_224", files["npz"], vocab=files["spm"])
  with pytest.raises(CheckpointError, match=r"4\^2 grid \(32 px input\).*image_size=224"):
    zm.load("siglip_b16_224", files["npz"], vocab=files["spm"], **tiny)
  # image_size= resamples the grid (no prefix token; timm's bicubic resampling, as for the ViTs).
  pe = zm.get_spec("siglip_b16_224").prepare(dict(bv), dict(tiny), path="x", image_size=48, vocab=files["spm"],
                                             class_names=files["names"], head_cache_dir=str(tmp_path)).flat
  assert pe["img/pos_embedding"].shape == (1, 36, tiny["width"])


def test_heads_cli_builds_a_siglip_classifier_file(golden, tmp_path, capsys):
  g, _, x, _, files, tiny = golden
  out = tmp_path / "siglip_zs.safetensors"
  assert clip_cli.main(["--checkpoint", files["npz"], "--vocab", files["spm"], "--classnames", files["names"],
                        "--out", str(out)]) == 0
  flat = read_checkpoint(str(out))
  assert {"t", "b", "zeroshot_head"} <= set(flat) and not any(k.startswith("txt/") for k in flat)
  built = zm.load("siglip_b16_224", str(out), image_size=32, **tiny)
  assert rel_err(jax.jit(built.module.apply)(built.variables, jnp.asarray(x))[0], g["zs_logits"]) < 1e-4
  capsys.readouterr()
  with pytest.raises(SystemExit, match="^2$"):
    clip_cli.main(["--checkpoint", files["npz"], "--model", "siglip2_so400m14_384", "--vocab", files["spm"]])
  assert "width: model 1152 vs checkpoint 64" in capsys.readouterr().err
  with pytest.raises(SystemExit, match="^2$"):  # NaFlex names are taken, and checked against the file.
    clip_cli.main(["--checkpoint", files["npz"], "--model", "siglip2_b16_naflex", "--vocab", files["spm"]])
  assert "siglip2_b16_naflex" in capsys.readouterr().err


def test_full_size_parameter_counts_equal_timms():
  """timm 1.0.31's image-tower parameter count + the (E, 1000) head + t + b: from eval_shape for one resolution of
  each tower; the other resolutions differ from it by their position embeddings alone."""
  towers = {}
  for name, family in sorted(siglip.FAMILIES.items()):
    towers.setdefault((family.variant, family.patch_size), []).append((name, family))
  assert len(towers) == 6
  for members in towers.values():
    name, family = members[0]
    module, spec = zm.create(name)
    base = zm.count_params(zm.variable_shapes(module, spec))
    assert base == siglip.NUM_PARAMS[name] == spec.num_params, name
    for other, f in members[1:]:
      grid = lambda fam: (fam.image_size // fam.patch_size) ** 2
      assert siglip.NUM_PARAMS[other] == base + (grid(f) - grid(family)) * f.image["width"], other


def test_standard_view_is_big_visions_resize():
  """Every SigLIP family's standard view is big_vision's `resize(S)`: the whole image squashed to S x S by
  `tf.image.resize`'s default bilinear without antialiasing, cast back to uint8 (tests/golden/siglip_resize.npz,
  TensorFlow's own output on a 37 x 53 noise and a smooth image, down to 24 and up to 64)."""
  g = np.load(GOLDEN / "siglip_resize.npz")
  for name in siglip.FAMILIES:
    pp = zm.get_spec(name).preprocessing
    assert (pp.crop_mode, pp.antialias, pp.resize_method, pp.resize_size) == ("squash", False, "bilinear",
                                                                             pp.input_size), name
  pp = zm.get_spec("siglip2_so400m16_256").preprocessing
  for image in ("noise", "smooth"):
    for size in (24, 64):
      view = dataclasses.replace(pp, input_size=size, resize_size=size).pil_view(g[image])
      np.testing.assert_array_equal(view, g[f"{image}_{size}"], err_msg=f"{image} -> {size}")
  # The same resize of the short side, then the centre crop (top = round((24 - 20) / 2), left = round((34 - 20) / 2)).
  centre = Preprocessing(20, 24, "bilinear", (0.0,) * 3, (1.0,) * 3, antialias=False).pil_view(g["noise"])
  np.testing.assert_array_equal(centre, g["noise_short24"][2:22, 7:27])
  # PIL's antialiased bilinear (the other families' filter) is another view of the same image.
  pil = dataclasses.replace(pp, input_size=24, resize_size=24, antialias=True).pil_view(g["noise"])
  assert np.abs(pil.astype(int) - g["noise_24"]).mean() > 5
  with pytest.raises(UserError, match=r"antialias=False with resize_method='bicubic'"):
    dataclasses.replace(pp, resize_method="bicubic")


def test_text_tower_without_head_is_the_so400m_i18n_layout(golden):
  """So400m/16-i18n's text tower has no `head` (big_vision out_dim None): the embedding is the pooled token.
  Oracle: the golden tower's head applied to that token gives the golden text features."""
  g, bv, _, cfg, _, tiny = golden
  family = siglip.FAMILIES["siglip_so400m16_i18n_256"]
  assert (family.file, family.tokenizer, family.vocab_size, family.text["embed_dim"]) == (
      "webli_i18n_so400m_16_256_78061115.npz", "mc4", 250_000, None)
  assert siglip.NUM_PARAMS["siglip_so400m16_i18n_256"] == siglip.NUM_PARAMS["siglip2_so400m16_256"]
  headless = {k: v for k, v in bv.items() if not k.startswith("params/txt/head/")}
  text = siglip.config_from_checkpoint(siglip.big_vision_tree(headless))["text"]
  assert text["embed_dim"] is None
  variables = {"params": siglip.convert_siglip(headless)["params"]["txt"]}
  pooled = jax.jit(siglip.TextTower(**text).apply)(variables, jnp.asarray(g["tokens"]))
  assert pooled.shape == (len(g["tokens"]), cfg["width"])
  want = pooled @ bv["params/txt/head/kernel"] + bv["params/txt/head/bias"]
  assert rel_err(want, g["text_features"]) < 1e-4
