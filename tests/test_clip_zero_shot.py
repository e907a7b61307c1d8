"""CLIP zero-shot classifiers through `zoomjax.models.load`: named text data, the on-disk head cache, the
files users bring (full state dict, built classifier file), errors that name what is missing, dtypes, sizes.

Oracles: open_clip's zero_shot_metadata.py (../shared/data/clip, required under CI), open_clip's parameter
counts, and the tiny open_clip golden of tests/test_golden_clip_families.py (its head is open_clip's).
"""
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from safetensors.numpy import save_file

import zoomjax.models as zm
from conftest import SHARED, require  # pylint: disable=wrong-import-order
from zoomjax.checkpoints import CheckpointError, read_checkpoint
from zoomjax.errors import NotFoundError, UnknownNameError, UserError
from zoomjax.models import clip, clip_archs, clip_cli, clip_families, clip_head
from zoomjax.models import clip_zero_shot as zs
from goldens import load_golden, rel_err, sw  # pylint: disable=wrong-import-order

METADATA = SHARED / "clip" / "zero_shot_metadata.py"
# The tiny ViT-H/14-like golden (80-wide heads, GELU) and its image tower as load() overrides.
TINY = dict(patch_size=8, width=320, depth=2, num_heads=4, mlp_dim=640, embed_dim=16, image_size=32)
FAMILY = "openclip_vit_h14"


@pytest.fixture(scope="module")
def metadata():
  require(METADATA.is_file(), f"open_clip's zero_shot_metadata.py not found: expected {METADATA}")
  return str(METADATA)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
  """(golden, full state-dict file, class-name file, synthetic vocabulary, NHWC input)."""
  g, state, x = load_golden("clip_h14_tiny")
  d = tmp_path_factory.mktemp("tiny_clip")
  save_file(state, str(d / "open_clip_model.safetensors"))
  (d / "names.txt").write_text("\n".join(str(n) for n in g["class_names"]) + "\n")
  sw.write_bpe_vocab(str(d / "vocab.txt.gz"), sw.synthetic_bpe_merges())
  return g, str(d / "open_clip_model.safetensors"), str(d / "names.txt"), str(d / "vocab.txt.gz"), x


def _load(tiny, cache, **kw):
  _, path, names, vocab, _ = tiny
  return zm.load(FAMILY, path, **{**dict(vocab=vocab, class_names=names, head_cache_dir=str(cache)), **TINY, **kw})


# ------------------------------------------------------------------------------------- named text data

def test_metadata_is_parsed_as_data(metadata):
  names = zs.read_metadata(metadata, "IMAGENET_CLASSNAMES")
  assert len(names) == 1000 and names[:2] == ("tench", "goldfish") and names[-1] == "toilet paper"
  # docs/study.md §5: OpenAI's curated list has the duplicates "missile" (657, 744) and "sunglasses" (836, 837).
  assert [i for i, n in enumerate(names) if n in ("missile", "sunglasses")] == [657, 744, 836, 837]
  # The lambdas become format strings; zoomjax's own 80 are open_clip's, in order.
  assert zs.read_metadata(metadata, "OPENAI_IMAGENET_TEMPLATES") == zs.OPENAI_IMAGENET_TEMPLATES
  assert zs.read_metadata(metadata, "SIMPLE_IMAGENET_TEMPLATES")[0] == "itap of a {}."
  assert zs.resolve_class_names(metadata) == names
  assert zs.resolve_templates(metadata) == zs.OPENAI_IMAGENET_TEMPLATES


def test_named_sets_come_from_an_installed_open_clip(metadata, monkeypatch):
  monkeypatch.setattr(zs, "installed_package_file", lambda f, *a: metadata if f == zs.METADATA_FILE else None)
  assert zs.resolve_class_names("openai") == zs.resolve_class_names("zoom_paper") == zs.resolve_class_names(None)
  assert len(zs.resolve_class_names("openai")) == 1000
  assert zs.resolve_templates("openai80") is zs.resolve_templates("openai") is zs.OPENAI_IMAGENET_TEMPLATES
  monkeypatch.setattr(zs, "installed_package_file", lambda *a: None)
  with pytest.raises(NotFoundError, match=r"zero_shot_metadata\.py.*class_names=/path/to/zero_shot_metadata\.py"):
    zs.resolve_class_names("openai")
  with pytest.raises(NotFoundError, match=r"bpe_simple_vocab_16e6\.txt\.gz.*vocab=/path/to/"):
    zs.resolve_vocab(None)
  with pytest.raises(UnknownNameError, match="imagenet_hard.*openai, zoom_paper"):
    zs.resolve_class_names("imagenet_hard")


def test_metadata_file_is_never_executed(tmp_path):
  marker = tmp_path / "ran"
  bad = tmp_path / "zero_shot_metadata.py"
  bad.write_text(f"open({str(marker)!r}, 'w').write('x')\n"
                 "IMAGENET_CLASSNAMES = ('cat', 'dog')\n"
                 "OPENAI_IMAGENET_TEMPLATES = (lambda c: f'a {c}.', lambda c: f'{c.upper()}!')\n")
  assert zs.read_metadata(str(bad), "IMAGENET_CLASSNAMES") == ("cat", "dog")
  assert not marker.exists()
  with pytest.raises(UserError, match=r"line 3: a template must be a string or `lambda c"):
    zs.read_metadata(str(bad), "OPENAI_IMAGENET_TEMPLATES")
  with pytest.raises(UserError, match="no `SIMPLE = \\(...\\)` assignment"):
    zs.read_metadata(str(bad), "SIMPLE")
  (tmp_path / "t.txt").write_text("a photo of a {}.\nno placeholder\n")
  with pytest.raises(UserError, match="exactly one `{}`.*no placeholder"):
    zs.resolve_templates(str(tmp_path / "t.txt"))
  (tmp_path / "n.txt").write_text("cat\n\ndog\n")
  with pytest.raises(UserError, match=r"empty class name on line\(s\) \[2\]"):
    zs.resolve_class_names(str(tmp_path / "n.txt"))


# ------------------------------------------------------------------------------------------- head cache

def test_head_is_computed_once_and_reused(tiny, tmp_path, monkeypatch):
  g, path, names, vocab, x = tiny
  first = _load(tiny, tmp_path)
  (meta,) = [json.loads(p.read_text()) for p in tmp_path.glob("*.json")]
  assert meta["class_names"] == list(g["class_names"]) and len(meta["templates"]) == 80
  assert meta["activation"] == "gelu" and meta["checkpoint"] == path and meta["shape"] == [16, 5]
  # Later loads (other dtypes too) read the cache: the text tower never runs, the vocabulary is not needed.
  monkeypatch.setattr(clip_head, "zero_shot_head", lambda *a, **k: pytest.fail("head recomputed"))
  again = _load(tiny, tmp_path, vocab=str(tmp_path / "absent.txt.gz"), dtype=jnp.bfloat16)
  np.testing.assert_array_equal(again.variables["params"]["zeroshot_head"], first.variables["params"]["zeroshot_head"])
  # Other class names, templates or activation are other heads (other keys); so is another text tower.
  monkeypatch.undo()
  (tmp_path / "three.txt").write_text("hen\njunco\ngoldfish\n")
  (tmp_path / "tpl.txt").write_text("a photo of a {}.\nitap of a {}.\n")
  three = _load(tiny, tmp_path, class_names=str(tmp_path / "three.txt"))
  np.testing.assert_allclose(three.variables["params"]["zeroshot_head"],
                             np.asarray(first.variables["params"]["zeroshot_head"])[:, [3, 4, 0]], atol=1e-6)
  _load(tiny, tmp_path, templates=str(tmp_path / "tpl.txt"))
  _load(tiny, tmp_path, activation="quick_gelu")
  assert len(list(tmp_path.glob("*.npz"))) == 4


def test_text_digest_covers_the_text_tower_only():
  _, state, _ = load_golden("clip_h14_tiny")
  base = zs.text_tower_digest(state, ignore=("logit_scale",))
  vis = dict(state, **{"visual.proj": state["visual.proj"] + 1})
  txt = dict(state, **{"ln_final.bias": state["ln_final.bias"] + 1})
  digest = lambda flat: zs.text_tower_digest(flat, ignore=("logit_scale",))  # noqa: E731
  assert digest(vis) == base != digest(txt)
  k = zs.head_key(base, {"width": 1}, "gelu", ["a"], ["{}"])
  assert k != zs.head_key(base, {"width": 1}, "gelu", ["a"], ["a {}"]) and len(k) == 32


def test_bad_cache_entries_are_recomputed_and_unwritable_caches_only_warn(tmp_path, capsys):
  calls = []
  compute = lambda: calls.append(1) or np.ones((2, 3), np.float32)  # noqa: E731
  np.savez(tmp_path / "k.npz", head=np.ones((2, 4), np.float32))  # wrong shape
  assert zs.cached_head(str(tmp_path), "k", (2, 3), compute).shape == (2, 3) and len(calls) == 1
  zs.cached_head(str(tmp_path), "k", (2, 3), compute)
  assert len(calls) == 1  # now valid: reused
  (tmp_path / "k.npz").write_bytes(b"garbage")
  zs.cached_head(str(tmp_path), "k", (2, 3), compute)
  assert len(calls) == 2
  blocker = tmp_path / "file"
  blocker.write_text("")
  np.testing.assert_array_equal(zs.cached_head(str(blocker / "sub"), "k", (2, 3), compute), np.ones((2, 3)))
  assert "could not store the CLIP zero-shot head" in capsys.readouterr().out


# ------------------------------------------------------------------------------------ files users bring

def test_built_classifier_file_and_cache_warming_cli(tiny, tmp_path, monkeypatch, capsys):
  """`python -m zoomjax.models.clip_cli --out` writes a file that loads like the full checkpoint; without --out
  the CLI fills the cache that load() then reads."""
  g, path, names, vocab, x = tiny
  out = tmp_path / "zs.safetensors"
  # (--model would refuse the tiny tower: its geometry is not ViT-H/14's; --activation says what it sets.)
  assert clip_cli.main(["--checkpoint", path, "--activation", "gelu", "--vocab", vocab, "--classnames", names,
                        "--out", str(out)]) == 0
  flat = read_checkpoint(str(out))
  assert "zeroshot_head" in flat and not any(k.startswith("token_embedding") for k in flat)
  built = zm.load(FAMILY, str(out), **TINY)
  logits, _ = jax.jit(built.module.apply)(built.variables, jnp.asarray(x))
  assert built.num_classes == 5 and rel_err(logits, g["zs_logits"]) < 1e-4
  zm.load(FAMILY, str(out), class_names=names, **TINY)
  assert "already holds a zero-shot head" in capsys.readouterr().out

  cache = tmp_path / "cache"
  assert clip_cli.main(["--checkpoint", path, "--activation", "gelu", "--vocab", vocab, "--classnames", names,
                        "--head-cache-dir", str(cache)]) == 0
  monkeypatch.setattr(clip_head, "zero_shot_head", lambda *a, **k: pytest.fail("head recomputed"))
  warm = _load(tiny, cache)
  np.testing.assert_array_equal(warm.variables["params"]["zeroshot_head"], flat["zeroshot_head"])
  # The CLI's geometry check names the mismatch before any head is computed.
  with pytest.raises(SystemExit, match="^2$"):
    clip_cli.main(["--checkpoint", path, "--model", "openclip_vit_b32", "--vocab", vocab])
  assert "patch_size: model 32 vs checkpoint 8" in capsys.readouterr().err


def test_module_cli_help_as_a_subprocess(tmp_path):
  run = subprocess.run([sys.executable, "-m", "zoomjax.models.clip_cli", "--help"], cwd=tmp_path, capture_output=True,
                       text=True, timeout=300, check=False)
  assert run.returncode == 0 and "--head-cache-dir" in run.stdout and "openclip_vit_bigg14" in run.stdout


def test_missing_text_data_names_the_file(tiny, tmp_path, monkeypatch):
  monkeypatch.setattr(zs, "installed_package_file", lambda *a: None)
  with pytest.raises(NotFoundError, match=r"bpe_simple_vocab_16e6\.txt\.gz.*pass vocab="):
    _load(tiny, tmp_path, vocab=None)
  with pytest.raises(NotFoundError, match=r"zero_shot_metadata\.py"):
    _load(tiny, tmp_path, class_names="openai")
  with pytest.raises(UserError, match=r"has 49408 tokens but the checkpoint's text tower embeds 730"):
    require((SHARED / "clip" / "bpe_simple_vocab_16e6.txt.gz").is_file(), "CLIP's BPE vocabulary not found")
    _load(tiny, tmp_path, vocab=str(SHARED / "clip" / "bpe_simple_vocab_16e6.txt.gz"))
  assert not list(tmp_path.glob("*.npz"))


def test_wrong_family_names_the_right_one(tmp_path):
  """A real-size OpenAI L/14@336 image tower (shapes only) offered as other families."""
  d, n = 1024, 24
  flat = {"visual.conv1.weight": np.zeros((d, 3, 14, 14), np.float16), "visual.proj": np.zeros((d, 768), np.float16),
          "visual.positional_embedding": np.zeros((1 + 24 * 24, d), np.float16),
          "visual.transformer.resblocks.0.mlp.c_fc.weight": np.zeros((4 * d, d), np.float16)}
  flat.update({f"visual.transformer.resblocks.{i}.ln_1.weight": np.zeros(d, np.float16) for i in range(n)})
  prepare = lambda name, **kw: zm.get_spec(name).prepare(dict(flat), {}, path="ViT-L-14-336px.pt", **kw)  # noqa
  with pytest.raises(CheckpointError, match=r"24\^2 grid \(336 px input\) but 'clip_vit_l14' runs at 224 px: "
                                            r"load it as clip_vit_l14_336, or pass image_size=224"):
    prepare("clip_vit_l14")
  with pytest.raises(CheckpointError, match=r"'openclip_vit_h14' \(ViT-H-14 image tower\): width: model 1280 vs "
                                            r"checkpoint 1024; depth: model 32 vs checkpoint 24.*clip_vit_l14_336"):
    prepare("openclip_vit_h14")
  plan = prepare("clip_vit_l14", image_size=224)  # resampled on request: 24x24 -> 16x16
  assert plan.flat["visual.positional_embedding"].shape == (257, d) and plan.preprocessing.input_size == 224
  with pytest.raises(KeyError, match=r"no `zeroshot_head` \(and no text tower to compute it from\)"):
    plan.convert(plan.flat)  # (load() reports it as a CheckpointError naming the file)
  with pytest.raises(CheckpointError, match="not an OpenAI/open_clip ViT CLIP state dict"):
    zm.get_spec("clip_vit_b32").prepare({"conv1.weight": np.zeros(1)}, {}, path="resnet.pth")


# ----------------------------------------------------------------------------------- runtime, sizes

def test_random_init_needs_no_text_data_and_bf16_stays_close(monkeypatch):
  monkeypatch.setattr(zs, "installed_package_file", lambda *a: None)
  f32 = zm.load("openclip_vit_bigg14", random_init=True, **dict(TINY, width=208, num_heads=2, mlp_dim=1024))
  assert f32.preprocessing.input_size == 32 and f32.num_classes == 1000
  x = jax.random.uniform(jax.random.PRNGKey(0), (2, 32, 32, 3), maxval=255.0)
  logits = jax.jit(f32.predict_fn())(f32.variables, x)
  assert float(jnp.std(logits)) > 1.0  # a random head, not zeros
  for dtype, tol in ((jnp.bfloat16, 0.05), ("float16", 0.01)):  # dtype objects or their names
    half = zm.load("openclip_vit_bigg14", random_init=True, dtype=dtype,
                   **dict(TINY, width=208, num_heads=2, mlp_dim=1024))
    assert half.module.dtype == jnp.dtype(dtype) and half.variables["params"]["zeroshot_head"].dtype == jnp.float32
    out = jax.jit(half.predict_fn(dtype=jnp.dtype(dtype)))(f32.variables, x)
    assert out.dtype == jnp.float32
    assert 0 < float(jnp.max(jnp.abs(out - logits))) < tol * float(jnp.max(jnp.abs(logits)))


def test_is_zero_shot():
  names = [n for n in zm.list_models() if "clip_vit" in n]
  assert len(names) >= 17 and all(clip_families.is_zero_shot(n) for n in names)
  assert not clip_families.is_zero_shot("resnet50") and not clip_families.is_zero_shot("vit_l14")
  with pytest.raises(UnknownNameError):
    clip_families.is_zero_shot("clip_vit_x99")


# open_clip 3.3.0 (`sum(p.numel() for p in model.parameters())`, whole models).
FULL_OPEN_CLIP = {"ViT-B-32": 151_277_313, "ViT-B-16": 149_620_737, "ViT-L-14": 427_616_513,
                  "ViT-L-14-336": 427_944_193, "ViT-H-14": 986_109_441, "ViT-g-14": 1_366_678_273,
                  "ViT-bigG-14": 2_539_567_105}


@pytest.mark.parametrize("arch", sorted(FULL_OPEN_CLIP))
def test_parameter_counts_match_open_clip(arch):
  names = [n for n, f in clip_families.FAMILIES.items() if f.arch == arch]
  module, spec = zm.create(names[0])
  assert zm.count_params(zm.variable_shapes(module, spec)) == spec.num_params == clip_families.NUM_PARAMS[arch]
  assert all(zm.get_spec(n).num_params == spec.num_params for n in names)
  cfg, size = clip_archs.openai_config(arch), clip_archs.ARCHS[arch]["image_size"]
  shapes = jax.eval_shape(clip.CLIP(cfg["vision"], cfg["text"]).init, jax.random.PRNGKey(0),
                          jnp.zeros((1, size, size, 3)), jnp.zeros((1, 77), jnp.int32))
  assert zm.count_params(shapes) == FULL_OPEN_CLIP[arch]


def test_preprocessing_per_family():
  pp = {n: zm.get_spec(n).preprocessing for n in ("clip_vit_l14_336", "openclip_vit_bigg14", "openclip_vit_l14_laion2b",
                                                  "clip_vit_l14_zoompaper")}
  assert (pp["clip_vit_l14_336"].input_size, pp["clip_vit_l14_336"].resize_size) == (336, 336)
  assert pp["openclip_vit_bigg14"].mean == pytest.approx((122.7709383, 116.7460125, 104.09373615))
  assert all(p.resize_method == "bicubic" for p in pp.values())
  assert pp["openclip_vit_l14_laion2b"].mean == (127.5,) * 3 and pp["clip_vit_l14_zoompaper"].mean[0] == 123.675
  assert os.path.basename(zs.default_cache_dir()) == "clip_heads"
