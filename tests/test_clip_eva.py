"""open_clip's EVA-02 CLIP models (zoomjax.models.clip_eva): goldens of open_clip at tiny widths through zoomjax's
loader (image embeddings, the zero-shot head from the text tower, logits), exact full-size parameter counts, and
the errors for files of another family or size and for unregistered names.

Expected outputs and counts were computed by experiments/make_clip_eva_goldens.py in a throwaway venv (timm
1.0.31, open_clip 3.3.0, torch CPU) on the seeded weights of tests/golden/seeded_weights.py, rebuilt here with
numpy alone.
"""
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from safetensors.numpy import save_file

import zoomjax.models as zm
from zoomjax.checkpoints import CheckpointError, merge_into
from zoomjax.checkpoints import convert_backbones as cb
from zoomjax.errors import UnknownNameError
from zoomjax.models import clip_cli, clip_eva, clip_families
from goldens import GOLDEN, load_golden, rel_err, sw  # pylint: disable=wrong-import-order

# golden -> (registered name, make_module overrides of the generator's tiny trunk: embed_dim 32 -> width).
TINY = {"b16": ("openclip_eva02_b16", dict(patch_size=16, width=32, depth=2, num_heads=2, mlp_dim=85, embed_dim=16)),
        "e14": ("openclip_eva02_e14", dict(patch_size=14, width=32, depth=2, num_heads=2, mlp_dim=274, embed_dim=16))}


def _text_files(tmp_path, g):
  """The golden's class names, templates and synthetic BPE vocabulary as the files `load` takes."""
  (tmp_path / "names.txt").write_text("\n".join(str(n) for n in g["class_names"]) + "\n")
  (tmp_path / "tpl.txt").write_text("\n".join(str(t) for t in g["templates"]) + "\n")
  sw.write_bpe_vocab(str(tmp_path / "vocab.txt.gz"), sw.synthetic_bpe_merges())
  return dict(vocab=str(tmp_path / "vocab.txt.gz"), class_names=str(tmp_path / "names.txt"),
              templates=str(tmp_path / "tpl.txt"), head_cache_dir=str(tmp_path / "heads"))


@pytest.mark.parametrize("golden", sorted(TINY))
def test_eva_clip_matches_open_clip(golden, tmp_path):
  """The full open_clip state dict (`visual.trunk.*`, `text.*`, `logit_scale`) loads under its registered name:
  the zero-shot head from the text tower, the image embeddings and the 100 * cos logits equal open_clip's."""
  g, state, x = load_golden(f"clip_eva02_{golden}")
  name, tiny = TINY[golden]
  assert json.loads(str(g["config"]))["trunk"]["embed_dim"] == tiny["width"]
  save_file(state, str(tmp_path / "open_clip_model.safetensors"))
  bundle = zm.load(name, str(tmp_path / "open_clip_model.safetensors"), image_size=x.shape[1],
                   **_text_files(tmp_path, g), **tiny)
  assert bundle.num_classes == 5 and bundle.preprocessing.input_size == x.shape[1]
  assert rel_err(bundle.variables["params"]["zeroshot_head"], g["zs_head"]) < 1e-4
  apply = jax.jit(bundle.module.apply)
  logits, inter = apply(bundle.variables, jnp.asarray(x))
  assert rel_err(inter["image_embeddings"], g["image_embeddings"]) < 1e-4
  assert logits.shape == (2, 5) and rel_err(logits, g["zs_logits"]) < 1e-4
  if golden == "b16":
    # The head builder command reads the `text.*` tower too (no cache: computed afresh) and writes a classifier
    # file (image tower + head) that loads alone.
    kw, out = _text_files(tmp_path, g), tmp_path / "zero_shot.safetensors"
    assert clip_cli.main(["--checkpoint", str(tmp_path / "open_clip_model.safetensors"), "--activation", "gelu",
                          "--vocab", kw["vocab"], "--classnames", kw["class_names"], "--templates", kw["templates"],
                          "--out", str(out)]) == 0
    alone = zm.load(name, str(out), image_size=x.shape[1], **tiny)
    assert rel_err(alone.variables["params"]["zeroshot_head"], g["zs_head"]) < 1e-4
    assert rel_err(apply(alone.variables, jnp.asarray(x))[0], g["zs_logits"]) < 1e-4


def test_image_size_resamples_the_position_embedding(tmp_path):
  """`image_size=` at another side: the 4x4 position grid resampled to 6x6, the preprocessing at that side."""
  g, state, _ = load_golden("clip_eva02_b16")
  state["zeroshot_head"] = sw.seeded_array("zeroshot_head", (16, 5))
  save_file({k: v for k, v in state.items() if not k.startswith("text.")}, str(tmp_path / "zero_shot.safetensors"))
  name, tiny = TINY["b16"]
  big = zm.load(name, str(tmp_path / "zero_shot.safetensors"), image_size=96, **tiny)
  assert big.variables["params"]["trunk"]["pos_embedding"].shape == (1, 1 + 36, 32)
  assert big.preprocessing.input_size == big.preprocessing.resize_size == 96
  assert jax.eval_shape(big.module.apply, big.variables, jnp.zeros((1, 96, 96, 3)))[0].shape == (1, 5)
  with pytest.raises(CheckpointError, match="grid: model 14 vs checkpoint 4"):
    zm.load(name, str(tmp_path / "zero_shot.safetensors"), **tiny)
  assert g["zs_head"].shape == (16, 5)


def _counts():
  g = np.load(GOLDEN / "clip_eva02_counts.npz")
  return {str(n): (int(c), int(e)) for n, c, e in zip(g["names"], g["counts"], g["embed_dim"])}


# eval_shape of the full-size modules: each block kind once (B-16: pre-norm RoPE SwiGLU; E-14: post-norm GELU);
# the L-14s and E-14-plus are the registry's numbers, checked against open_clip's below.
TRACED = ("openclip_eva02_b16", "openclip_eva02_e14")


@pytest.mark.parametrize("name", sorted(clip_eva.FAMILIES))
def test_parameter_counts_match_open_clip(name):
  """The registry's count == open_clip's `model.visual` + E x 1000 (the head); for TRACED also eval_shape's."""
  count, embed = _counts()[clip_eva.FAMILIES[name].arch]
  module, spec = zm.create(name)
  assert spec.num_params == count + 1000 * embed and module.embed_dim == embed
  if name in TRACED:
    assert zm.count_params(zm.variable_shapes(module, spec)) == spec.num_params


def test_preprocessing_is_open_clips():
  """open_clip's pretrained cfg: OpenAI mean/std, bicubic, short side resized to the input size, centre crop."""
  pp = {n: zm.get_spec(n).preprocessing for n in clip_eva.FAMILIES}
  assert {n: p.input_size for n, p in pp.items()} == {
      "openclip_eva02_b16": 224, "openclip_eva02_l14": 224, "openclip_eva02_l14_336": 336,
      "openclip_eva02_e14": 224, "openclip_eva02_e14_plus": 224}
  for p in pp.values():
    assert p.resize_size == p.input_size and p.resize_method == "bicubic" and p.crop_mode == "center"
    assert p.mean == pytest.approx((122.7709383, 116.7460125, 104.09373615))
  assert all(clip_families.is_zero_shot(n) for n in clip_eva.FAMILIES)


def _tower_shapes(arch: str, image_size: int) -> dict:
  """Zero-stride arrays with the full-size shapes the family check reads (no memory for the E tower's 15360)."""
  a = clip_eva.ARCHS[arch]
  w, p, grid = a["width"], a["patch_size"], image_size // a["patch_size"]
  z = lambda *s: np.broadcast_to(np.float32(0), s)  # noqa: E731
  flat = {"visual.trunk.patch_embed.proj.weight": z(w, 3, p, p), "visual.trunk.pos_embed": z(1, 1 + grid * grid, w),
          "visual.trunk.blocks.0.mlp.fc2.weight": z(w, a["mlp_dim"]), "visual.trunk.head.weight": z(a["embed_dim"], w),
          **{f"visual.trunk.blocks.{i}.norm1.weight": z(w) for i in range(a["depth"])}}
  if a["mlp"] == "gelu":
    flat["visual.trunk.blocks.0.mlp.fc1.weight"] = z(a["mlp_dim"], w)
  else:
    flat["visual.trunk.blocks.0.mlp.fc1_g.weight"] = z(a["mlp_dim"], w)
  if a["scale_mlp"]:
    flat["visual.trunk.blocks.0.mlp.norm.weight"] = z(a["mlp_dim"])
  if a["scale_attn_inner"]:
    flat["visual.trunk.blocks.0.attn.norm.weight"] = z(w)
  return flat


def test_tower_of_another_arch_or_size_names_the_one_it_is():
  with pytest.raises(CheckpointError, match="width: model 768 vs checkpoint 1792.*"
                                            "openclip_eva02_e14, openclip_eva02_e14_plus: load it under that name"):
    zm.get_spec("openclip_eva02_b16").prepare(_tower_shapes("EVA02-E-14", 224), {}, path="x.bin")
  with pytest.raises(CheckpointError, match="grid: model 24 vs checkpoint 16.*It is the image tower of "
                                            "openclip_eva02_l14: load"):
    zm.get_spec("openclip_eva02_l14_336").prepare(_tower_shapes("EVA02-L-14", 224), {}, path="x.bin")
  plan = zm.get_spec("openclip_eva02_l14").prepare(_tower_shapes("EVA02-L-14", 224), {}, path="x.bin")
  assert plan.preprocessing.input_size == 224
  with pytest.raises(CheckpointError, match="not an open_clip EVA-02 checkpoint"):  # an OpenCLIP ConvNeXt file
    zm.get_spec("openclip_eva02_b16").prepare({"visual.trunk.stages.0.blocks.0.conv_dw.weight": np.zeros(1)}, {},
                                              path="x.bin")


def test_file_of_another_family_gets_the_merge_gates_two_sided_diff():
  """The E tower's variables (post-norm GELU MLP, no attention LayerNorm) offered to a B-16 module: the merge gate
  names what the model lacks and what the checkpoint lacks."""
  _, state, _ = load_golden("clip_eva02_e14")
  state["zeroshot_head"] = sw.seeded_array("zeroshot_head", (16, 5))
  converted = cb.convert_openclip_eva(state)
  module, _ = zm.create("openclip_eva02_b16", **dict(TINY["b16"][1], patch_size=14, mlp_dim=274), num_classes=5)
  shapes = jax.eval_shape(module.init, jax.random.PRNGKey(0), jnp.zeros((1, 56, 56, 3)))
  with pytest.raises(CheckpointError) as e:
    merge_into(shapes, converted, path_for_errors="open_clip_model.safetensors")
  msg = str(e.value)
  missing, unexpected = msg.split("missing in checkpoint", 1)[1].split("unexpected in checkpoint", 1)
  assert "open_clip_model.safetensors" in msg and "attn/norm/scale" in missing and "mlp/fc1_g/kernel" in missing
  assert "mlp/fc1/kernel" in unexpected


def test_unregistered_variant_names_the_closest():
  with pytest.raises(UnknownNameError, match="closest: .*openclip_eva02_l14"):
    zm.get_spec("openclip_eva02_l16")
  assert clip_eva.family_for("EVA02-L-14-336").arch == "EVA02-L-14-336"
  assert clip_eva.family_for("eva02-e-14-plus") is clip_eva.FAMILIES["openclip_eva02_e14_plus"]
  with pytest.raises(UnknownNameError, match="closest: .*EVA02-B-16"):
    clip_eva.family_for("EVA02-B-14")
