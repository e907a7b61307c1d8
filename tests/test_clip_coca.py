"""open_clip CoCa contrastive towers as zero-shot classifiers: goldens at tiny widths (image tower with the
attentional pooler's separate and packed projections, text tower with the cls token and open_clip's padding mask,
the zero-shot head and its logits), exact full-size parameter counts, the head builder command, and the errors
for files of another family and for unregistered names.

Expected outputs and counts were computed by experiments/make_clip_coca_goldens.py in a throwaway venv
(open_clip 3.3.0, torch CPU) on the seeded weights of tests/golden/seeded_weights.py, rebuilt here with numpy.
"""
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from safetensors.numpy import save_file

import zoomjax.models as zm
from zoomjax.checkpoints import CheckpointError, read_checkpoint
from zoomjax.analysis import paper_numbers
from zoomjax.checkpoints import convert_clip
from zoomjax.errors import UnknownNameError
from zoomjax.models import clip_cli, clip_coca, clip_head
from goldens import GOLDEN, load_golden, rel_err, sw  # pylint: disable=wrong-import-order


def _tiny(g) -> dict:
  """make_module overrides of the golden's image tower (open_clip config -> zoomjax fields)."""
  cfg = json.loads(str(g["config"]))
  v = cfg["vision_cfg"]
  return dict(patch_size=v["patch_size"], width=v["width"], depth=v["layers"], num_heads=v["width"] // v["head_width"],
              mlp_dim=int(v["width"] * v["mlp_ratio"]), embed_dim=cfg["embed_dim"], pool_heads=v["attn_pooler_heads"],
              pool_queries=v["attn_pooler_queries"])


@pytest.fixture(scope="module", name="separate")
def _separate():
  return load_golden("clip_coca_separate")


@pytest.mark.parametrize("name", ["clip_coca_separate", "clip_coca_packed"])
def test_coca_towers_match_open_clip(name):
  """Image embeddings (pooler with separate / packed q-k-v projections), text embeddings of texts of 5, 12 and
  76 tokens (the padding mask and its one-place shift), and the classifier's logits with a seeded head."""
  g, state, x = load_golden(name)
  tiny = _tiny(g)
  head = sw.seeded_array("zeroshot_head", (tiny["embed_dim"], 5))
  variables = convert_clip.convert_coca_zero_shot(dict(state, zeroshot_head=head), tiny["num_heads"],
                                                  tiny["pool_heads"])
  module, _ = zm.create("openclip_coca_vit_b32", num_classes=5, **tiny)
  logits, inter = jax.jit(module.apply)(variables, jnp.asarray(x))
  assert rel_err(inter["image_embeddings"], g["image_features"]) < 1e-4
  emb = g["image_features"] / np.linalg.norm(g["image_features"], axis=-1, keepdims=True)
  assert rel_err(logits, 100.0 * emb @ head) < 1e-4
  text_cfg = clip_coca.text_config(state)
  assert text_cfg["context_length"] == 76 and text_cfg["num_heads"] == 2
  text = clip_coca.CocaTextTower(**text_cfg).apply(convert_clip.convert_coca_text(state), g["tokens"])
  assert rel_err(text, g["text_features"]) < 1e-4


def test_head_from_the_text_tower_and_the_head_command(separate, tmp_path):
  """A full open_clip CoCa state dict (decoder included): `load` computes the zero-shot head from the CoCa text
  tower with the 80 templates (open_clip's own head and logits) and caches it; clip_cli writes a classifier
  file (image tower + head) that loads alone."""
  g, state, x = separate
  tiny = _tiny(g)
  assert any(k.startswith("text_decoder.") for k in state)
  ckpt = str(tmp_path / "open_clip_model.safetensors")
  save_file(state, ckpt)
  (tmp_path / "names.txt").write_text("\n".join(str(n) for n in g["class_names"]) + "\n")
  sw.write_bpe_vocab(str(tmp_path / "vocab.txt.gz"), sw.synthetic_bpe_merges())
  kw = dict(vocab=str(tmp_path / "vocab.txt.gz"), class_names=str(tmp_path / "names.txt"))
  bundle = zm.load("openclip_coca_vit_b32", ckpt, head_cache_dir=str(tmp_path / "heads"), image_size=32,
                   **tiny, **kw)
  head = np.asarray(bundle.variables["params"]["zeroshot_head"])
  assert head.shape == (16, 5) and rel_err(head, g["zs_head"]) < 1e-4
  assert len(list((tmp_path / "heads").glob("*.npz"))) == 1
  logits, _ = jax.jit(bundle.module.apply)(bundle.variables, jnp.asarray(x))
  assert rel_err(logits, g["zs_logits"]) < 1e-4
  assert bundle.preprocessing.input_size == 32 and bundle.preprocessing.resize_method == "bicubic"
  out = tmp_path / "zero_shot.safetensors"
  assert clip_cli.main(["--checkpoint", ckpt, "--vocab", kw["vocab"], "--classnames", kw["class_names"],
                        "--head-cache-dir", str(tmp_path / "heads"), "--out", str(out)]) == 0
  built = zm.load("openclip_coca_vit_b32", str(out), image_size=32, **tiny)
  np.testing.assert_array_equal(built.variables["params"]["zeroshot_head"], head)


def test_head_command_reads_text_towers_under_text_and_refuses_coca_as_clip(tmp_path):
  """clip_cli builds the head of a standard text tower stored under `text.*` (open_clip's EVA-02 CLIPs) as that of
  the same tower at the top level; the plain CLIP head builder refuses a CoCa text tower instead of pooling its
  eot token."""
  g, state, _ = load_golden("clip_h14_tiny")
  lifted = {k if k.startswith("visual.") or k == "logit_scale" else f"text.{k}": v for k, v in state.items()}
  save_file(lifted, str(tmp_path / "custom_text.safetensors"))
  (tmp_path / "names.txt").write_text("\n".join(str(n) for n in g["class_names"]) + "\n")
  (tmp_path / "tpl.txt").write_text("a photo of a {}.\n")
  sw.write_bpe_vocab(str(tmp_path / "vocab.txt.gz"), sw.synthetic_bpe_merges())
  kw = dict(vocab=str(tmp_path / "vocab.txt.gz"), class_names=str(tmp_path / "names.txt"),
            templates=str(tmp_path / "tpl.txt"))
  out = tmp_path / "zero_shot.safetensors"
  assert clip_cli.main(["--checkpoint", str(tmp_path / "custom_text.safetensors"), "--activation", "gelu",
                        "--vocab", kw["vocab"], "--classnames", kw["class_names"], "--templates", kw["templates"],
                        "--out", str(out)]) == 0
  want = clip_head.text_head(state, "gelu", use_cache=False, **kw)
  np.testing.assert_array_equal(read_checkpoint(str(out))["zeroshot_head"], want)
  assert "openclip_eva02_l14" in clip_cli._ZERO_SHOT  # pylint: disable=protected-access
  _, coca, _ = load_golden("clip_coca_separate")
  with pytest.raises(CheckpointError, match="CoCa text tower.*openclip_coca_vit_b32"):
    clip_head.text_head({k[len("text."):] if k.startswith("text.") else k: v for k, v in coca.items()}, **kw)


def test_full_size_parameter_counts_match_open_clip():
  """The registry's counts == open_clip's `model.visual` + E x 1000, and each full-size module's eval_shape."""
  g = np.load(GOLDEN / "clip_coca_counts.npz")
  for arch, count, embed in zip(g["names"], g["counts"], g["embed_dim"]):
    (name,) = [n for n, f in clip_coca.FAMILIES.items() if f.arch == str(arch)]
    module, spec = zm.create(name)
    assert spec.num_params == int(count) + 1000 * int(embed)
    assert zm.count_params(zm.variable_shapes(module, spec)) == spec.num_params


def test_a_file_of_another_family_gets_the_gates_difference(tmp_path, capsys):
  """A plain CLIP ViT state dict loaded as CoCa: the load gate lists what differs (no attentional pooler; ln_post
  and proj of the ViT's width) before any head is computed; a CoCa file loaded as a plain CLIP names CoCa."""
  g, state, _ = load_golden("clip_h14_tiny")
  vit = dict(patch_size=8, width=320, depth=2, num_heads=4, mlp_dim=640, embed_dim=16, pool_queries=4)
  coca = dict(state, **{"text.cls_emb": np.zeros(128, np.float32)})  # looks like a full CoCa file: no head yet
  with pytest.raises(CheckpointError) as e:
    zm.get_spec("openclip_coca_vit_b32").prepare(coca, dict(vit), path="vit.safetensors")
  msg = str(e.value)
  assert "missing in checkpoint" in msg and "params/visual/attn_pool/query (4, 16)" in msg
  assert "params/visual/ln_post/scale: model (16,) vs checkpoint (320,)" in msg
  assert "params/visual/proj: model (16, 16) vs checkpoint (320, 16)" in msg
  assert msg.endswith("a plain CLIP ViT image tower loads as clip_vit_* / openclip_vit_*")
  _, coca_state, _ = load_golden("clip_coca_separate")
  with pytest.raises(CheckpointError, match="CoCa.*openclip_coca_vit_b32"):
    zm.get_spec("openclip_vit_b32").prepare(coca_state, {}, path="coca.safetensors")
  # The head command checks the tower against --model first: one error, no head computed.
  save_file(state, str(tmp_path / "vit.safetensors"))
  with pytest.raises(SystemExit) as e:
    clip_cli.main(["--checkpoint", str(tmp_path / "vit.safetensors"), "--model", "openclip_coca_vit_b32"])
  assert e.value.code == 2 and "params/visual/attn_pool/query (256, 512)" in capsys.readouterr().err


def _coca_b32_tower() -> dict:
  """coca_ViT-B-32's image-tower tensors at full size, as open_clip names them (zero-stride arrays: no memory)."""
  w, e = 768, 512
  shapes = {"conv1.weight": (w, 3, 32, 32), "class_embedding": (w,), "positional_embedding": (50, w),
            "ln_pre.weight": (w,), "ln_pre.bias": (w,), "ln_post.weight": (e,), "ln_post.bias": (e,), "proj": (e, e),
            "attn_pool.query": (256, e), "attn_pool.ln_q.weight": (e,), "attn_pool.ln_q.bias": (e,),
            "attn_pool.ln_k.weight": (w,), "attn_pool.ln_k.bias": (w,), "attn_pool.attn.q_proj_weight": (e, e),
            "attn_pool.attn.k_proj_weight": (e, w), "attn_pool.attn.v_proj_weight": (e, w),
            "attn_pool.attn.in_proj_bias": (3 * e,), "attn_pool.attn.out_proj.weight": (e, e),
            "attn_pool.attn.out_proj.bias": (e,)}
  for i in range(12):
    shapes.update({f"transformer.resblocks.{i}.{k}": s for k, s in (
        ("ln_1.weight", (w,)), ("ln_1.bias", (w,)), ("attn.in_proj_weight", (3 * w, w)),
        ("attn.in_proj_bias", (3 * w,)),
        ("attn.out_proj.weight", (w, w)), ("attn.out_proj.bias", (w,)), ("ln_2.weight", (w,)), ("ln_2.bias", (w,)),
        ("mlp.c_fc.weight", (4 * w, w)), ("mlp.c_fc.bias", (4 * w,)), ("mlp.c_proj.weight", (w, 4 * w)),
        ("mlp.c_proj.bias", (w,)))})
  return {f"visual.{k}": np.broadcast_to(np.float32(0), s) for k, s in shapes.items()}


def test_a_coca_tower_of_the_other_size_names_its_family():
  """A full-size coca_ViT-B-32 image tower passes B-32's gate and, loaded as L-14, is named as B-32's."""
  flat = _coca_b32_tower()
  zm.get_spec("openclip_coca_vit_b32").prepare(dict(flat), {}, path="coca_b32.bin")
  with pytest.raises(CheckpointError, match="It is the image tower of openclip_coca_vit_b32: load it under"):
    zm.get_spec("openclip_coca_vit_l14").prepare(dict(flat), {}, path="coca_b32.bin")


def test_the_papers_openclip_convnext_and_coca_rows():
  """§4.6's OpenCLIP sweep rows of the ConvNeXt and CoCa towers, keyed by their registered names and tags."""
  rows = {k: v for k, v in paper_numbers.IMAGENET_HARD_OPENCLIP.items() if "convnext" in k[0] or "coca" in k[0]}
  assert len(rows) == 12 + 4 and {m for m, _ in rows} <= set(zm.list_models())
  assert paper_numbers.imagenet_hard("openclip_coca_vit_l14", "laion2b_s13b_b90k") == 10.79
  assert paper_numbers.imagenet_hard("openclip_coca_vit_b32", "mscoco_finetuned_laion2b_s13b_b90k") == 0.20
  assert paper_numbers.imagenet_hard("openclip_convnext_xxlarge", "laion2b_s34b_b82k_augreg_soup") == 14.68
  assert paper_numbers.imagenet_hard("openclip_convnext_base", "laion400m_s13b_b51k") == 4.74
  assert paper_numbers.imagenet_hard("openclip_coca_vit_l14") is None  # a CLIP row needs its tag


def test_unregistered_coca_names_the_closest():
  with pytest.raises(UnknownNameError, match="closest: .*openclip_coca_vit_l14"):
    zm.get_spec("openclip_coca_vit_l16")
  assert clip_coca.family_for("coca_ViT-L-14") is clip_coca.FAMILIES["openclip_coca_vit_l14"]
  with pytest.raises(UnknownNameError, match="closest: .*coca_ViT-B-32"):
    clip_coca.family_for("coca_ViT-B-16")
