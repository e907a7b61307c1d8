"""SigLIP 2 NaFlex (zoomjax.models.siglip_naflex) against Hugging Face's `Siglip2VisionModel`
(experiments/make_siglip_goldens.py).

The golden runs HF's NaFlex image tower (Dense patch embedding, a 4 x 4 position grid resized bilinearly with
antialiasing to each image's grid, attention and MAP pooling masked to the real patches) with seeded tiny weights
on inputs made by big_vision's NaFlex preprocessing in TensorFlow (`resize_to_sequence`, `patchify`, padding): a
20 x 20 image at most 40 patches (6 x 6 grid, 4 padding tokens), an 18 x 30 image at most 24 (4 x 6) and a
13 x 40 one (3 x 8: the position grid shrinks along the rows). The test lays HF's weights out under big_vision's
names (`_big_vision`) and loads them as a big_vision `.npz`.
"""
import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import zoomjax.models as zm
from zoomjax.checkpoints import CheckpointError
from zoomjax.errors import UserError
from zoomjax.models import siglip_naflex as sn
from goldens import GOLDEN, rel_err, sw  # pylint: disable=wrong-import-order

CASES = ("square", "wide", "strip")


def _attention(out, dst, state, src, heads, q="q_proj", k="k_proj", v="v_proj"):
  """HF q/k/v/out projections (torch Linear (out, in)) -> flax MultiHeadDotProductAttention kernels."""
  for name, w, b in ((n, state.get(f"{src}.{s}.weight"), state.get(f"{src}.{s}.bias"))
                     for n, s in (("query", q), ("key", k), ("value", v))):
    d = w.shape[1]
    out[f"{dst}/{name}/kernel"], out[f"{dst}/{name}/bias"] = w.T.reshape(d, heads, d // heads), b.reshape(heads, -1)
  w = state[f"{src}.out_proj.weight"]
  out[f"{dst}/out/kernel"] = w.T.reshape(heads, w.shape[1] // heads, w.shape[0])
  out[f"{dst}/out/bias"] = state[f"{src}.out_proj.bias"]


def _ln(out, dst, state, src):
  out[f"{dst}/scale"], out[f"{dst}/bias"] = state[f"{src}.weight"], state[f"{src}.bias"]


def _dense(out, dst, state, src):
  out[f"{dst}/kernel"], out[f"{dst}/bias"] = state[f"{src}.weight"].T, state[f"{src}.bias"]


def _big_vision(state, cfg):
  """HF's Siglip2VisionModel state dict under big_vision's NaFlex names (`params/img/...`)."""
  out, h, d = {}, cfg["num_attention_heads"], cfg["hidden_size"]
  _dense(out, "embedding", state, "embeddings.patch_embedding")
  g = math.isqrt(cfg["num_patches"])
  out["pos_embedding"] = state["embeddings.position_embedding.weight"].reshape(g, g, d)
  for i in range(cfg["num_hidden_layers"]):
    s, t = f"encoder.layers.{i}", f"Transformer/encoderblock_{i}"
    _ln(out, f"{t}/LayerNorm_0", state, f"{s}.layer_norm1")
    _attention(out, f"{t}/MultiHeadDotProductAttention_0", state, f"{s}.self_attn", h)
    _ln(out, f"{t}/LayerNorm_1", state, f"{s}.layer_norm2")
    _dense(out, f"{t}/MlpBlock_0/Dense_0", state, f"{s}.mlp.fc1")
    _dense(out, f"{t}/MlpBlock_0/Dense_1", state, f"{s}.mlp.fc2")
  _ln(out, "Transformer/encoder_norm", state, "post_layernorm")
  out["MAPHead_0/probe"] = state["head.probe"]
  split = dict(zip(("q", "k", "v"), np.split(state["head.attention.in_proj_weight"], 3)))
  split_b = dict(zip(("q", "k", "v"), np.split(state["head.attention.in_proj_bias"], 3)))
  head = {f"head.attention.{n}.weight": w for n, w in split.items()}
  head.update({f"head.attention.{n}.bias": b for n, b in split_b.items()})
  head.update({k: v for k, v in state.items() if k.startswith("head.attention.out_proj")})
  _attention(out, "MAPHead_0/MultiHeadDotProductAttention_0", head, "head.attention", h, "q", "k", "v")
  _ln(out, "MAPHead_0/LayerNorm_0", state, "head.layernorm")
  _dense(out, "MAPHead_0/MlpBlock_0/Dense_0", state, "head.mlp.fc1")
  _dense(out, "MAPHead_0/MlpBlock_0/Dense_1", state, "head.mlp.fc2")
  return {f"params/img/{k}": np.ascontiguousarray(v) for k, v in out.items()}


@pytest.fixture(scope="module")
def golden():
  g = dict(np.load(GOLDEN / "siglip_naflex.npz"))
  cfg = json.loads(str(g["config"]))
  bv = _big_vision(sw.seeded_state_dict(sw.decode_spec(g["spec"])), cfg)
  tiny = dict(patch_size=cfg["patch_size"], width=cfg["hidden_size"], depth=cfg["num_hidden_layers"],
              num_heads=cfg["num_attention_heads"], mlp_dim=cfg["intermediate_size"],
              posemb_grid=math.isqrt(cfg["num_patches"]))
  return g, bv, tiny


def _normalised(image):
  return jnp.asarray(image, jnp.float32)[None] / 127.5 - 1.0  # value_range(-1, 1)


def test_patch_grid_follows_big_visions_resize_to_sequence(golden):
  g, _, tiny = golden
  # Square images get the isqrt(max) square grid, whatever their size (zoomjax's views).
  for side in (20, 224, 256, 384, 1000):
    for most in (24, 40, 256, 576, 1000):
      assert sn.naflex_grid(side, side, 16, most) == (math.isqrt(most),) * 2, (side, most)
  # 375 x 500 at 256 patches of 16: 14 x 19 = 266 is too many, 14 x 18 = 252 fits (scale just under 18 * 16 / 500).
  assert sn.naflex_grid(375, 500, 16, 256) == (14, 18)
  assert sn.naflex_grid(4, 1000, 16, 8) == (1, 8) and sn.naflex_grid(16, 16, 16, 1) == (1, 1)
  for case in CASES:
    assert sn.naflex_grid(*g[f"{case}_image"].shape[:2], tiny["patch_size"], int(g[f"{case}_max_patches"])) == \
        tuple(g[f"{case}_grid"])


def test_patches_equal_big_visions_preprocessing(golden):
  g, _, tiny = golden
  for case in CASES:
    patches, ptype, yidx, xidx = sn.naflex_patches(_normalised(g[f"{case}_image"]), tiny["patch_size"],
                                                   int(g[f"{case}_max_patches"]))
    np.testing.assert_allclose(patches[0], g[f"{case}_patches"], atol=2e-6)  # tf.image.resize(antialias=True)
    for got, want in ((ptype, "type"), (yidx, "yidx"), (xidx, "xidx")):
      np.testing.assert_array_equal(got[0], g[f"{case}_{want}"])


def test_tower_matches_hf_siglip2_naflex(golden):
  g, bv, tiny = golden
  variables = {"params": siglip_convert(bv)["params"]["img"]}
  # The non-square images as big_vision's tuple (no padding); the square one as an image batch, resized and padded
  # here (naflex_patches is held to big_vision's preprocessing above).
  for case, image in (("wide", False), ("strip", False), ("square", True)):
    tower = sn.NaFlexImageTower(**tiny, max_num_patches=int(g[f"{case}_max_patches"]))
    x = (_normalised(g[f"{case}_image"]) if image
         else tuple(jnp.asarray(g[f"{case}_{k}"])[None] for k in ("patches", "type", "yidx", "xidx")))
    pooled, out = jax.jit(tower.apply)(variables, x)
    valid = g[f"{case}_type"] == 1  # HF's padding tokens attend differently; only the real ones are compared
    assert rel_err(pooled[0], g[f"{case}_pooled"]) < 1e-4, case
    assert rel_err(out["encoded"][0][valid], g[f"{case}_hidden"][valid]) < 1e-4, case
  assert out["feature_map"].shape == (1, 6, 6, tiny["width"])


def siglip_convert(bv):
  from zoomjax.models import siglip  # pylint: disable=import-outside-toplevel
  return siglip.convert_siglip(bv)


def test_load_builds_the_naflex_zero_shot_classifier(golden, tmp_path):
  g, bv, tiny = golden
  head = np.random.default_rng(0).standard_normal((tiny["width"], 5)).astype(np.float32)
  path = tmp_path / "naflex_zs.npz"
  flat = dict(bv, **{"params/img/pos_embedding": bv["params/img/pos_embedding"].reshape(1, 16, tiny["width"])})
  np.savez(path, **flat, **{"params/t": np.float32([2.0]), "params/b": np.float32([-3.0]),  # flat grid: reshaped
                            "params/zeroshot_head": head})
  # 48 patches: still a 6 x 6 grid for the square image, with 12 padding tokens (they must not leak).
  bundle = zm.load("siglip2_b16_naflex", str(path), max_num_patches=48, **tiny)
  pp = bundle.preprocessing
  assert (pp.input_size, pp.crop_mode, pp.mean, bundle.num_classes) == (24, "squash", (127.5,) * 3, 5)
  logits, _ = jax.jit(bundle.module.apply)(bundle.variables, _normalised(g["square_image"]))
  emb = g["square_pooled"] / np.linalg.norm(g["square_pooled"])
  assert rel_err(logits[0], np.exp(2.0) * emb @ head - 3.0) < 1e-4
  with pytest.raises(CheckpointError, match=r"width: model 768 vs checkpoint 64"):
    zm.load("siglip2_b16_naflex", str(path))
  fixed = {k: v for k, v in bv.items() if "embedding/" not in k}
  fixed["params/img/embedding/kernel"] = np.zeros((4, 4, 3, tiny["width"]), np.float32)
  np.savez(tmp_path / "fixed.npz", **fixed)
  with pytest.raises(CheckpointError, match=r"fixed-resolution SigLIP checkpoint.*siglip2_\*"):
    zm.load("siglip2_b16_naflex", str(tmp_path / "fixed.npz"), **tiny)
  with pytest.raises(UserError, match=r"max_num_patches=0"):
    zm.load("siglip2_b16_naflex", str(path), max_num_patches=0, **tiny)


def test_full_size_parameter_counts_equal_timms():
  """timm 1.0.31's naflexvit_{base,so400m}_patch16_siglip (num_classes=0) + the (E, 1000) head + t + b."""
  for name, tower in (("siglip2_b16_naflex", 92_930_304), ("siglip2_so400m16_naflex", 427_888_064)):
    module, spec = zm.create(name)
    count = zm.count_params(zm.variable_shapes(module, spec))
    width = sn.FAMILIES[name].image["width"]
    assert count == sn.NUM_PARAMS[name] == spec.num_params == tower + width * 1000 + 2, name
    assert spec.preprocessing.input_size == 256
