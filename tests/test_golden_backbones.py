"""ConvNeXt-V2, EVA-02 and OpenCLIP ConvNeXt / ViT-B-16-plus-240: reference goldens at small widths, exact
full-size parameter counts, the zero-shot head of a ConvNeXt CLIP, and the errors for files of another family.

Expected outputs and counts were computed by experiments/make_backbone_goldens.py in a throwaway venv (timm
1.0.31, open_clip 3.3.0, torch CPU) on the seeded weights of tests/golden/seeded_weights.py, rebuilt here with
numpy alone.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from safetensors.numpy import save_file

import zoomjax.models as zm
from zoomjax.checkpoints import CheckpointError, merge_into
from zoomjax.checkpoints import convert_backbones as cb
from zoomjax.errors import UnknownNameError, UserError
from zoomjax.models import clip_cli, clip_convnext, clip_families, clip_head, convnext, eva
from goldens import GOLDEN, load_golden, rel_err, sw  # pylint: disable=wrong-import-order

NARROW = ((8, 2), (16, 1), (24, 1), (32, 1))  # the generator's depths=(2, 1, 1, 1), dims=(8, 16, 24, 32)


# --------------------------------------------------------------------------------- full-size counts

def _counts():
  g = np.load(GOLDEN / "backbone_counts.npz")
  return {str(n): (int(c), int(e)) for n, c, e in zip(g["names"], g["counts"], g["embed_dim"])}


# One registered name per architecture (tags of one architecture share its module; checked below).
COUNTED = {**{f"convnextv2_{v}.fcmae_ft_in1k": f"convnextv2_{v}" for v in convnext.V2_CONFIGS},
           "eva02_tiny_patch14_336.mim_in22k_ft_in1k": "eva02_tiny_patch14_336",
           "eva02_small_patch14_336.mim_in22k_ft_in1k": "eva02_small_patch14_336",
           "eva02_base_patch14_448.mim_in22k_ft_in1k": "eva02_base_patch14_448",
           "eva02_large_patch14_448.mim_in22k_ft_in1k": "eva02_large_patch14_448",
           **{f"openclip_{a}": f"openclip:{a}" for a in ("convnext_base", "convnext_base_w", "convnext_large_d",
                                                         "convnext_xxlarge")},
           "openclip_vit_b16_plus_240": "openclip:ViT-B-16-plus-240"}
# Traced with eval_shape (each block kind once; tracing every deep variant would cost a minute): ConvNeXt-V2
# (GRN), fused EVA-02 and split EVA-02 with the sub-LN, the MLP projection of a ConvNeXt tower (the linear one is
# the same trunk), the ViT-B-16-plus-240 tower. The other counts are the registry's numbers, equal to timm's.
TRACED = ("convnextv2_atto.fcmae_ft_in1k", "eva02_tiny_patch14_336.mim_in22k_ft_in1k",
          "eva02_large_patch14_448.mim_in22k_ft_in1k", "openclip_convnext_large_d", "openclip_vit_b16_plus_240")


@pytest.mark.parametrize("name", sorted(COUNTED))
def test_parameter_counts_match_the_reference(name):
  """The registry's count == timm's (classifiers) or open_clip's image tower + E x 1000; for TRACED, also the
  full-size module's eval_shape."""
  count, embed = _counts()[COUNTED[name]]
  module, spec = zm.create(name)
  assert spec.num_params == count + 1000 * embed
  if name in TRACED:
    assert zm.count_params(zm.variable_shapes(module, spec)) == spec.num_params


def test_every_tag_shares_its_architecture_count():
  names = [n for n in zm.list_models() if n.startswith(("convnextv2_", "eva02_", "openclip_convnext_"))]
  assert len(names) == 18 + 8 + 6
  for n in names:
    arch = n.split(".")[0].replace("_320", "")
    same = [c for c in COUNTED if c.split(".")[0] == arch]
    assert same and zm.get_spec(n).num_params == zm.get_spec(same[0]).num_params, n


def test_preprocessing_per_checkpoint():
  """timm's pretrained_cfg (input size, crop_pct, bicubic, mean/std) and open_clip's (resize = input)."""
  pp = {n: zm.get_spec(n).preprocessing for n in zm.list_models()}
  assert (pp["convnextv2_atto.fcmae_ft_in1k"].input_size, pp["convnextv2_atto.fcmae_ft_in1k"].resize_size) == (224,
                                                                                                              256)
  assert pp["convnextv2_huge.fcmae_ft_in22k_in1k_512"].resize_size == 512
  assert pp["convnextv2_tiny.fcmae_ft_in1k"].mean == pytest.approx((123.675, 116.28, 103.53))
  assert (pp["eva02_tiny_patch14_336.mim_in22k_ft_in1k"].input_size,
          pp["eva02_tiny_patch14_336.mim_in22k_ft_in1k"].resize_size) == (336, 336)
  assert pp["eva02_large_patch14_448.mim_m38m_ft_in22k_in1k"].mean == pytest.approx(
      (122.7709383, 116.7460125, 104.09373615))
  assert [pp[f"openclip_{a}"].input_size for a in clip_convnext.ARCHS] == [224, 256, 320, 256, 320, 256]
  assert pp["openclip_vit_b16_plus_240"].input_size == pp["openclip_vit_b16_plus_240"].resize_size == 240
  assert all(p.resize_method == "bicubic" for n, p in pp.items() if n.startswith(("convnextv2", "eva02", "openclip")))


def test_squash_view_is_timms():
  """crop_mode='squash' (timm's 384-512 px fine-tunes): PIL resize of the whole image to the square, then the
  centre crop, byte for byte; the tags that timm squashes carry it, the others keep the short-side resize."""
  from PIL import Image  # pylint: disable=import-outside-toplevel
  image = np.random.default_rng(3).integers(0, 256, (90, 140, 3), np.uint8)
  pp = zm.Preprocessing(input_size=48, resize_size=52, resize_method="bicubic", mean=(0.0,) * 3, std=(1.0,) * 3,
                        crop_mode="squash")
  want = np.asarray(Image.fromarray(image).resize((52, 52), Image.Resampling.BICUBIC).crop((2, 2, 50, 50)))
  np.testing.assert_array_equal(pp.pil_view(image), want)
  center = np.asarray(zm.Preprocessing(48, 52, "bicubic", (0.0,) * 3, (1.0,) * 3).pil_view(image))
  assert not np.array_equal(center, want)
  with pytest.raises(UserError, match="crop_mode='crop'"):
    zm.Preprocessing(48, 52, "bicubic", (0.0,) * 3, (1.0,) * 3, crop_mode="crop")
  mode = {n: zm.get_spec(n).preprocessing.crop_mode for n in zm.list_models() if n.startswith(("convnextv2", "eva02"))}
  assert {n for n, m in mode.items() if m == "squash"} == {
      "convnextv2_nano.fcmae_ft_in22k_in1k_384", "convnextv2_tiny.fcmae_ft_in22k_in1k_384",
      "convnextv2_base.fcmae_ft_in22k_in1k_384", "convnextv2_large.fcmae_ft_in22k_in1k_384",
      "convnextv2_huge.fcmae_ft_in22k_in1k_384", "convnextv2_huge.fcmae_ft_in22k_in1k_512",
      "eva02_base_patch14_448.mim_in22k_ft_in22k_in1k", "eva02_large_patch14_448.mim_in22k_ft_in22k_in1k",
      "eva02_large_patch14_448.mim_m38m_ft_in22k_in1k"}


# ----------------------------------------------------------------------------------------- ConvNeXt-V2

@pytest.mark.parametrize("golden", ["convnextv2_narrow", "convnextv2_narrow_convmlp"])
def test_convnextv2_matches_timm(golden):
  g, state, x = load_golden(golden)
  variables = cb.convert_timm_convnext(state)
  model = convnext.convnextv2("atto", stages=NARROW, num_classes=10)
  apply = jax.jit(model.apply)
  logits, inter = apply(variables, jnp.asarray(x))
  assert logits.shape == g["logits"].shape == (2, 10)
  assert rel_err(logits, g["logits"]) < 1e-4 and rel_err(inter["pre_logits"], g["pre_logits"]) < 1e-4
  assert inter["feature_map"].shape == g["feature_map"].shape and rel_err(inter["feature_map"], g["feature_map"]) < 1e-4
  # GRN really matters (a converter that dropped it would fail the golden).
  bad = jax.tree_util.tree_map(np.asarray, variables)
  bad["params"]["stages_0_blocks_1"]["grn"]["gamma"] = np.zeros_like(bad["params"]["stages_0_blocks_1"]["grn"]["gamma"])
  assert rel_err(apply(bad, jnp.asarray(x))[0], g["logits"]) > 1e-3


def test_convnextv2_wrong_file_is_named():
  _, state, _ = load_golden("convnextv2_narrow")
  with pytest.raises(KeyError, match="no `stages.0.blocks.0"):
    cb.convert_timm_convnext({"features.0.0.weight": np.zeros((8, 3, 4, 4))})
  # A ConvNeXt (V1: layer scale, no GRN) does not take a V2 file: the merge gate names both sides.
  v1 = convnext.ConvNeXt(stages=NARROW, num_classes=10)
  shapes = jax.eval_shape(v1.init, jax.random.PRNGKey(0), jnp.zeros((1, 64, 64, 3)))
  with pytest.raises(CheckpointError, match="grn.*gamma|gamma.*grn"):
    merge_into(shapes, cb.convert_timm_convnext(state), path_for_errors="model.safetensors")


# ------------------------------------------------------------------------------------------------ EVA-02

def test_rope_tables_follow_timm_layout():
  """Hand-computed: head width 8 -> 2 frequencies (1, 1/100) per axis; row then column; each used twice."""
  sin, cos = eva.rope_sin_cos((2, 2), 8, ref_grid=(16, 16))
  assert sin.shape == cos.shape == (4, 8)
  # Token (row 1, col 0): the row coordinate is 1 / 2 * 16 = 8, the column 0.
  want = np.sin(np.array([8, 8, 0.08, 0.08, 0, 0, 0, 0], np.float32))
  np.testing.assert_allclose(sin[2], want, rtol=1e-6, atol=1e-7)
  np.testing.assert_allclose(cos[1], np.cos(np.array([0, 0, 0, 0, 8, 8, 0.08, 0.08], np.float32)), rtol=1e-6)


@pytest.mark.parametrize("golden,scale_mlp", [("eva02_fused", False), ("eva02_split", True)])
def test_eva02_matches_timm(golden, scale_mlp):
  g, state, x = load_golden(golden)
  variables = cb.convert_eva(state)
  model = eva.Eva(width=32, depth=2, num_heads=2, mlp_dim=85, scale_mlp=scale_mlp, num_classes=10)
  apply = jax.jit(model.apply)
  logits, inter = apply(variables, jnp.asarray(x))
  assert logits.shape == g["logits"].shape == (2, 10)
  assert rel_err(logits, g["logits"]) < 1e-4 and rel_err(inter["pre_logits"], g["pre_logits"]) < 1e-4
  assert rel_err(inter["encoded"], g["encoded"]) < 1e-4
  # RoPE really matters: without the rescale to the 16x16 reference grid the output moves.
  assert rel_err(model.clone(ref_grid=4).apply(variables, jnp.asarray(x))[0], g["logits"]) > 1e-3


def test_eva02_image_size_resamples_the_position_embedding(tmp_path):
  """`image_size=` at the stored size is the golden itself; at another size the position grid is resampled."""
  g, state, x = load_golden("eva02_fused")
  save_file(state, str(tmp_path / "model.safetensors"))
  kw = dict(width=32, depth=2, num_heads=2, mlp_dim=85, num_classes=10)
  same = zm.load("eva02_tiny_patch14_336.mim_in22k_ft_in1k", str(tmp_path / "model.safetensors"), image_size=56, **kw)
  assert same.preprocessing.input_size == same.preprocessing.resize_size == 56
  assert rel_err(same.module.apply(same.variables, jnp.asarray(x))[0], g["logits"]) < 1e-4
  big = zm.load("eva02_tiny_patch14_336.mim_in22k_ft_in1k", str(tmp_path / "model.safetensors"), image_size=84, **kw)
  assert big.variables["params"]["pos_embedding"].shape == (1, 1 + 36, 32) and big.preprocessing.input_size == 84
  assert jax.eval_shape(big.module.apply, big.variables, jnp.zeros((1, 84, 84, 3)))[0].shape == (1, 10)


def test_eva02_file_of_another_size_names_the_one_it_fits():
  depth = 12
  flat = {"patch_embed.proj.weight": np.zeros((384, 3, 14, 14), np.float32),
          "pos_embed": np.zeros((1, 1 + 24 * 24, 384), np.float32),
          "blocks.0.mlp.fc2.weight": np.zeros((384, 1024), np.float32),
          **{f"blocks.{i}.norm1.weight": np.zeros(384, np.float32) for i in range(depth)}}
  spec = zm.get_spec("eva02_tiny_patch14_336.mim_in22k_ft_in1k")
  with pytest.raises(CheckpointError, match="width: model 192 vs checkpoint 384.*eva02_small_patch14_336"):
    spec.prepare(flat, {}, path="model.safetensors")


# ------------------------------------------------------------------------------ OpenCLIP ConvNeXt towers

def _zero_shot_state(golden: str, embed: int = 0):
  """The golden's image tower (projection to `embed` if given) + a seeded (E, 5) zero-shot head."""
  g = np.load(GOLDEN / f"{golden}.npz")
  spec = sw.decode_spec(g["spec"])
  if embed:
    spec = [(n, (embed,) + s[1:] if n in ("visual.head.proj.weight", "visual.head.mlp.fc2.weight") else s, k)
            for n, s, k in spec]
  state = sw.seeded_state_dict(spec)
  return g, state, sw.seeded_images(tuple(g["input_shape"])).transpose(0, 2, 3, 1)


@pytest.mark.parametrize("golden,arch", [("openclip_convnext_linear", "convnext_base_w"),
                                         ("openclip_convnext_mlp", "convnext_large_d")])
def test_openclip_convnext_tower_matches_open_clip(golden, arch):
  g, state, x = _zero_shot_state(golden)
  embed = clip_convnext.ARCHS[arch]["embed_dim"]
  state["zeroshot_head"] = sw.seeded_array("zeroshot_head", (embed, 5))
  variables = cb.convert_openclip_convnext(state)
  module, _ = zm.create(f"openclip_{arch}", stages=NARROW, num_classes=5)
  logits, inter = jax.jit(module.apply)(variables, jnp.asarray(x))
  assert rel_err(inter["image_embeddings"], g["embedding"]) < 1e-4
  emb = g["embedding"] / np.linalg.norm(g["embedding"], axis=-1, keepdims=True)
  assert rel_err(logits, 100.0 * emb @ state["zeroshot_head"]) < 1e-4


def test_openclip_convnext_head_from_the_text_tower(tmp_path):
  """A full open_clip state dict (narrow ConvNeXt tower + the tiny text tower of clip_h14_tiny): `load` computes
  the zero-shot head from the text tower: the head of that text tower whatever the image tower (here the one
  the ViT file with the same text tower gives; one template keeps it quick)."""
  text = load_golden("clip_h14_tiny")
  g, state, _ = _zero_shot_state("openclip_convnext_linear", embed=16)
  state.update({k: v for k, v in text[1].items() if not k.startswith("visual.")})
  save_file(state, str(tmp_path / "open_clip_model.safetensors"))
  (tmp_path / "names.txt").write_text("\n".join(str(n) for n in text[0]["class_names"]) + "\n")
  (tmp_path / "tpl.txt").write_text("a photo of a {}.\n")
  sw.write_bpe_vocab(str(tmp_path / "vocab.txt.gz"), sw.synthetic_bpe_merges())
  kw = dict(vocab=str(tmp_path / "vocab.txt.gz"), class_names=str(tmp_path / "names.txt"),
            templates=str(tmp_path / "tpl.txt"))
  bundle = zm.load("openclip_convnext_base_w", str(tmp_path / "open_clip_model.safetensors"), stages=NARROW,
                   embed_dim=16, head_cache_dir=str(tmp_path / "heads"), **kw)
  head = np.asarray(bundle.variables["params"]["zeroshot_head"])
  want = clip_head.text_head(text[1], "gelu", use_cache=False, **kw)
  assert head.shape == (16, 5) and rel_err(head, want) < 1e-6
  # The head builder command writes a classifier file for this tower (image tensors + head) that loads alone.
  out = tmp_path / "zero_shot.safetensors"
  assert clip_cli.main(["--checkpoint", str(tmp_path / "open_clip_model.safetensors"), "--activation", "gelu",
                        "--vocab", kw["vocab"], "--classnames", kw["class_names"], "--templates", kw["templates"],
                        "--head-cache-dir", str(tmp_path / "heads"), "--out", str(out)]) == 0
  built = zm.load("openclip_convnext_base_w", str(out), stages=NARROW, embed_dim=16)
  np.testing.assert_array_equal(built.variables["params"]["zeroshot_head"], head)
  assert built.preprocessing.input_size == 256 and g["embedding"].shape == (2, 640)


def test_openclip_convnext_wrong_tower_names_the_family_it_is():
  """A convnext_large_d tower (MLP projection, 768-d) loaded as convnext_base_w is refused, naming its family."""
  stages = clip_convnext.ARCHS["convnext_large_d"]["stages"]
  flat = {f"visual.trunk.stages.{s}.blocks.{b}.conv_dw.weight": np.zeros((w, 1, 1, 1), np.float32)
          for s, (w, n) in enumerate(stages) for b in range(n)}
  flat["visual.head.mlp.fc2.weight"] = np.zeros((768, 1), np.float32)
  with pytest.raises(CheckpointError, match="openclip_convnext_large_d, openclip_convnext_large_d_320"):
    zm.get_spec("openclip_convnext_base_w").prepare(flat, {}, path="open_clip_model.safetensors")
  with pytest.raises(CheckpointError, match="no `visual.trunk.stages.0"):
    zm.get_spec("openclip_convnext_base_w").prepare({"visual.conv1.weight": np.zeros(1)}, {}, path="x")


def test_vit_b16_plus_240_geometry_is_read_and_checked():
  """The OpenCLIP ViT loader reads a B-16-plus-240 tower (width 896 -> 14 heads of 64, 15x15 grid) as its family,
  and another ViT family refuses it naming this one."""
  w, n = 896, 12
  flat = {"visual.conv1.weight": np.zeros((w, 3, 16, 16), np.float32),
          "visual.positional_embedding": np.zeros((1 + 15 * 15, w), np.float32),
          "visual.transformer.resblocks.0.mlp.c_fc.weight": np.zeros((4 * w, w), np.float32),
          "visual.proj": np.zeros((w, 640), np.float32),
          **{f"visual.transformer.resblocks.{i}.ln_1.weight": np.zeros(w, np.float32) for i in range(n)}}
  got = clip_families.config_from_state_dict(flat)["vision"]
  assert got == clip_families.FAMILIES["openclip_vit_b16_plus_240"].vision
  plan = zm.get_spec("openclip_vit_b16_plus_240").prepare(dict(flat), {}, path="x.pt")
  assert plan.preprocessing.input_size == 240
  with pytest.raises(CheckpointError, match="width: model 768 vs checkpoint 896.*openclip_vit_b16_plus_240"):
    zm.get_spec("openclip_vit_b16").prepare(dict(flat), {}, path="x.pt")


def test_unregistered_convnext_clip_names_the_closest():
  with pytest.raises(UnknownNameError, match="closest: .*openclip_convnext_large_d"):
    zm.get_spec("openclip_convnext_large")
  assert clip_convnext.family_for("convnext_large_d_320").arch == "convnext_large_d_320"
  with pytest.raises(UnknownNameError, match="closest: .*convnext_xxlarge"):
    clip_convnext.family_for("convnext_xxlarg_320")
  assert clip_families.is_zero_shot("openclip_convnext_xxlarge") and clip_families.is_zero_shot(
      "openclip_vit_b16_plus_240")


@pytest.mark.usefixtures("fast_compile")  # Job plumbing; the tower's maths is in the goldens above.
def test_clip_test_time_method_runs_on_a_convnext_tower(tmp_path):
  """CLIP's test-time methods (image features + zero-shot head) take the ConvNeXt towers like the ViT ones."""
  method = "zero"
  import ml_collections  # pylint: disable=import-outside-toplevel
  from configs import tta as tta_config  # pylint: disable=import-outside-toplevel
  from zoomjax.jobs import tta as tta_job  # pylint: disable=import-outside-toplevel
  config = tta_config.get_config(f"runlocal=1,method={method},model=openclip_convnext_base_w,limit=1")
  config.model.overrides = ml_collections.ConfigDict(dict(stages=((8, 1), (16, 1)), embed_dim=16))
  metrics = tta_job.run(config, str(tmp_path))
  assert metrics["method"] == method and metrics["num_images"] == 1 and metrics["accuracy"] in (0.0, 1.0)
  rows = np.load(tmp_path / "seed_0" / tta_job.RECORDS_FILE)
  assert rows["top5"].shape == (1, 5) and np.all(np.isfinite(rows["top5_p"]))


def test_todays_models_table_quotes_the_papers_numbers():
  """docs/evaluate.md's table: every row is a registered model, and its paper cell is paper_numbers' value."""
  import pathlib  # pylint: disable=import-outside-toplevel
  from zoomjax.analysis import paper_numbers  # pylint: disable=import-outside-toplevel
  text = (pathlib.Path(__file__).resolve().parents[1] / "docs" / "evaluate.md").read_text()
  section = text.split("## Today's models on ImageNet-Hard", 1)[1].split("```", 1)[0]
  rows = [r.split("|")[1:-1] for r in section.splitlines() if r.startswith("| `")]
  assert len(rows) >= 20
  for model, _, paper, ours in rows:
    names = [n.strip("` ") for n in model.split("#")[0].split("/")]
    tag = model.split("#")[1].strip() if "#" in model else None
    first = names[0]
    assert first in zm.list_models() or f"clip_{first}" in zm.list_models(), model
    want = paper_numbers.imagenet_hard(first, tag)
    assert (paper.strip() == "—") == (want is None) and ours.strip() == "—", model
    if want is not None:
      assert float(paper) == pytest.approx(want, abs=0.006), model
