"""CLIP's ResNet towers (OpenAI ModifiedResNet) against open_clip (experiments/make_clip_resnet_siglip_goldens.py).

A tiny seeded open_clip RN CLIP (3-conv stem, anti-aliased strides with and without a shortcut conv, a 4-head
attention pool over a 3x3 grid): the image tower's embeddings, then the whole `zoomjax.models.load` path from a
full state dict (the zero-shot head computed from the QuickGELU text tower, vs open_clip's
`build_zero_shot_classifier` with the 80 templates, and the 100 * cos logits). Full-size parameter counts are
pinned with `jax.eval_shape` to open_clip's.
"""
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from safetensors.numpy import save_file

import zoomjax.models as zm
from zoomjax.checkpoints import CheckpointError
from zoomjax.checkpoints.convert_clip import convert_clip
from zoomjax.models import clip_resnet as cr
from goldens import load_golden, rel_err, sw  # pylint: disable=wrong-import-order


@pytest.fixture(scope="module")
def golden():
  g, state, x = load_golden("clip_rn_tiny")
  cfg = json.loads(str(g["config"]))
  vision = dict(layers=tuple(cfg["vision"]["layers"]), width=cfg["vision"]["width"], embed_dim=cfg["embed_dim"],
                num_heads=cfg["vision"]["width"] * 32 // cfg["vision"]["head_width"])
  return g, state, x, vision, cfg["image_size"]


def test_image_tower_matches_open_clip(golden):
  g, state, x, vision, _ = golden
  variables = cr.convert_modified_resnet(state)
  emb, inter = jax.jit(cr.ModifiedResNet(**vision).apply)(variables, jnp.asarray(x))
  assert rel_err(emb, g["image_features"]) < 1e-4
  assert inter["feature_map"].shape == (2, 3, 3, vision["width"] * 32)
  # Mean-token pooling over 64-wide heads is what the golden pins: another head count is detectably wrong.
  wrong = jax.jit(cr.ModifiedResNet(**dict(vision, num_heads=2)).apply)(variables, jnp.asarray(x))[0]
  assert rel_err(wrong, g["image_features"]) > 1e-3


def test_config_is_read_from_the_state_dict(golden):
  _, state, _, vision, size = golden
  assert cr.config_from_state_dict(state) == {"vision": dict(vision), "image_size": size}
  with pytest.raises(ValueError, match="load it as clip_rn50"):  # The ViT converter names the RN families.
    convert_clip(state)


@pytest.fixture(scope="module")
def checkpoint(golden, tmp_path_factory):
  g, state, _, _, _ = golden
  d = tmp_path_factory.mktemp("rn")
  save_file(state, str(d / "open_clip_model.safetensors"))
  (d / "names.txt").write_text("\n".join(str(n) for n in g["class_names"]) + "\n")
  sw.write_bpe_vocab(str(d / "vocab.txt.gz"), sw.synthetic_bpe_merges())
  return str(d / "open_clip_model.safetensors"), str(d / "names.txt"), str(d / "vocab.txt.gz")


def test_load_full_checkpoint_builds_open_clips_zero_shot_classifier(golden, checkpoint, tmp_path):
  g, _, x, vision, size = golden
  path, names, vocab = checkpoint
  bundle = zm.load("clip_rn50", path, vocab=vocab, class_names=names, head_cache_dir=str(tmp_path),
                   image_size=size, **vision)
  assert bundle.num_classes == 5 and bundle.preprocessing.input_size == size == x.shape[1]
  assert rel_err(bundle.variables["params"]["zeroshot_head"], g["zs_head"]) < 1e-4
  logits, inter = jax.jit(bundle.module.apply)(bundle.variables, jnp.asarray(x))
  assert rel_err(logits, g["zs_logits"]) < 1e-4
  assert rel_err(inter["image_features"] * np.linalg.norm(g["image_features"], axis=-1, keepdims=True),
                 g["image_features"]) < 1e-4
  assert len(list(tmp_path.glob("*.npz"))) == 1  # The head is cached for the next load.


def test_wrong_geometry_and_input_size_are_named(checkpoint, tmp_path):
  path, names, vocab = checkpoint
  kw = dict(vocab=vocab, class_names=names, head_cache_dir=str(tmp_path))
  with pytest.raises(CheckpointError, match="ResNet CLIP image tower.*load it as clip_rn50"):  # a ViT CLIP name
    zm.load("clip_vit_b32", path, **kw)
  with pytest.raises(CheckpointError, match=r"layers: model \(3, 4, 6, 3\) vs checkpoint \(1, 2, 1, 1\)"):
    zm.load("clip_rn50", path, **kw)
  tiny = dict(layers=(1, 2, 1, 1), width=8, embed_dim=16, num_heads=4)
  with pytest.raises(CheckpointError, match=r"3\^2 grid \(96 px input\).*pass image_size=224"):
    zm.load("clip_rn50", path, **kw, **tiny)
  bundle = zm.load("clip_rn50", path, image_size=128, **kw, **tiny)  # resampled to a 4x4 grid
  assert bundle.variables["params"]["visual"]["attnpool"]["positional_embedding"].shape == (17, 256)
  assert bundle.preprocessing.input_size == bundle.preprocessing.resize_size == 128


@pytest.mark.parametrize("name", sorted(cr.ARCHS))
def test_full_size_parameter_counts_equal_open_clips(name):
  """open_clip 3.3.0's visual parameter count + the (E, 1000) head, from eval_shape (no weights made)."""
  family = "clip_" + name.lower()
  module, spec = zm.create(family)
  assert zm.count_params(zm.variable_shapes(module, spec)) == cr.NUM_PARAMS[name] == spec.num_params
  assert spec.preprocessing.input_size == cr.ARCHS[name]["image_size"] == spec.preprocessing.resize_size
  assert spec.preprocessing.resize_method == "bicubic"


def test_heads_cli_builds_a_resnet_classifier_file(golden, checkpoint, tmp_path, capsys):
  """`python -m zoomjax.models.clip_cli --out` on an RN CLIP: the file (image tower + head) loads as clip_rn50 and
  gives open_clip's logits; `--model clip_rn50` checks the tower's geometry before any head is computed."""
  from zoomjax.checkpoints import read_checkpoint  # pylint: disable=import-outside-toplevel
  from zoomjax.models import clip_cli  # pylint: disable=import-outside-toplevel
  g, _, x, vision, size = golden
  path, names, vocab = checkpoint
  out = tmp_path / "rn.safetensors"
  assert clip_cli.main(["--checkpoint", path, "--activation", "quick_gelu", "--vocab", vocab, "--classnames", names,
                        "--out", str(out)]) == 0
  assert not any(k.startswith("token_embedding") for k in read_checkpoint(str(out)))
  built = zm.load("clip_rn50", str(out), image_size=size, **vision)
  assert rel_err(jax.jit(built.module.apply)(built.variables, jnp.asarray(x))[0], g["zs_logits"]) < 1e-4
  capsys.readouterr()
  with pytest.raises(SystemExit, match="^2$"):
    clip_cli.main(["--checkpoint", path, "--model", "clip_rn101", "--vocab", vocab])
  assert "layers: model (3, 4, 23, 3) vs checkpoint (1, 2, 1, 1)" in capsys.readouterr().err
