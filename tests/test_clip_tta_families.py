"""TPT on the open_clip families beyond the ViT CLIPs (zoomjax.tta.clip_tta): OpenCLIP ConvNeXt, EVA-02 and CoCa.

Through configs/tta.py on tiny random towers (both view sources), and the text side TPT differentiates checked
against each family's own zero-shot text features: the head `load` computes from a checkpoint with one template
"a photo of a {}." is TPT's initial prompt, so its columns are TPT's text features before the step; for CoCa also
open_clip's text embeddings of the golden's tokens through TPT's trimmed tower."""
import json

import jax
import numpy as np
import pytest
from safetensors.numpy import save_file

from configs import tta as tta_config
from zoomjax import models
from zoomjax.checkpoints.convert_backbones import timm_convnext_stages
from zoomjax.checkpoints.convert_clip import convert_coca_text
from zoomjax.errors import UserError
from zoomjax.jobs import tta as tta_job
from zoomjax.models import clip, clip_coca, clip_convnext, clip_eva, clip_families
from zoomjax.tta import clip_tta
from goldens import load_golden, rel_err, sw  # pylint: disable=wrong-import-order

# Tiny image towers at 64 px (random_init) and their text towers (configs/tta.py runlocal's clip.text sizes).
TINY = {
    "openclip_convnext_base_w": dict(stages=((8, 1), (16, 1)), embed_dim=16),
    "openclip_eva02_b16": dict(width=16, depth=1, num_heads=2, mlp_dim=32, embed_dim=16, image_size=64),
    "openclip_coca_vit_b32": dict(patch_size=16, width=32, depth=1, num_heads=2, mlp_dim=64, embed_dim=16,
                                  pool_heads=2, pool_queries=4, image_size=64),
}
# (model, view source, views): one family with the zoom grid (runlocal's 2 scales x 9 anchors + the original);
# TPT with zoom views on this CLIP stands for every CLIP's (tests/test_clip_tta.py runs the other methods so).
JOB_CASES = (("openclip_convnext_base_w", "zoom", 19), ("openclip_eva02_b16", "augment", 10),
             ("openclip_coca_vit_b32", "augment", 10))


@pytest.mark.parametrize("name,views,num_views", JOB_CASES)
def test_tpt_runs_through_the_job(name, views, num_views, tmp_path, fast_compile):
  config = tta_config.get_config(f"runlocal=1,limit=1,method=tpt,model={name},views={views}")
  config.model.overrides = TINY[name]
  metrics = tta_job.run(config, str(tmp_path))
  assert metrics["method"] == "tpt" and metrics["num_images"] == 1 and metrics["accuracy"] in (0.0, 1.0)
  saved = json.loads((tmp_path / "metrics.json").read_text())
  assert saved["clip"]["views"] == views and saved["clip"]["num_views"] == num_views
  assert saved["clip"]["ctx_init"] == "a photo of a" and saved["clip"]["steps"] == 1
  rows = np.load(tmp_path / "seed_0" / tta_job.RECORDS_FILE)
  assert rows["top5"].shape == (1, 5) and np.all(np.isfinite(rows["top5_p"]))
  assert np.all(np.diff(rows["top5_p"][0]) <= 0) and 0 < rows["top5_p"][0, 0] <= 1


# ----------------------------------------------------------------- the text tower TPT tunes is the family's own

def _coca_tiny(g) -> dict:
  cfg = json.loads(str(g["config"]))
  v = cfg["vision_cfg"]
  return dict(patch_size=v["patch_size"], width=v["width"], depth=v["layers"], num_heads=v["width"] // v["head_width"],
              mlp_dim=int(v["width"] * v["mlp_ratio"]), embed_dim=cfg["embed_dim"], pool_heads=v["attn_pooler_heads"],
              pool_queries=v["attn_pooler_queries"], image_size=v["image_size"])


def _convnext_with_text():
  """open_clip's ConvNeXt layout: the ConvNeXt golden's image tower projected to 16 dims and the EVA-02 golden's
  standard text tower at the top level of the state dict; its tiny sizes."""
  _, conv, _ = load_golden("openclip_convnext_linear")
  g, eva, _ = load_golden("clip_eva02_b16")
  state = {k: v for k, v in conv.items() if k.startswith("visual.")}
  state["visual.head.proj.weight"] = sw.seeded_array("proj16", (16, conv["visual.head.proj.weight"].shape[1]))
  state.update({k[len("text."):]: v for k, v in eva.items() if k.startswith("text.")})
  state["logit_scale"] = eva["logit_scale"]
  return g, state, dict(stages=timm_convnext_stages(state, "visual.trunk."), embed_dim=16)


def _family_case(name):
  if name == "openclip_convnext_base_w":
    return _convnext_with_text()
  if name == "openclip_eva02_b16":  # CustomTextCLIP: the text tower under `text.*`
    g, state, _ = load_golden("clip_eva02_b16")
    return g, state, dict(patch_size=16, width=32, depth=2, num_heads=2, mlp_dim=85, embed_dim=16, image_size=64)
  g, state, _ = load_golden("clip_coca_separate")  # CoCa, its captioning decoder included
  return g, state, _coca_tiny(g)


@pytest.mark.parametrize("name", sorted(TINY))
def test_tpt_text_features_are_the_familys_zero_shot_head(name, tmp_path):
  """TPT's text side read from a full checkpoint (the job's path) gives, for its initial prompt, the columns of the
  one-template head the family's own loader computes from that checkpoint."""
  g, state, tiny = _family_case(name)
  ckpt = str(tmp_path / "open_clip_model.safetensors")
  save_file(state, ckpt)
  (tmp_path / "names.txt").write_text("\n".join(str(n) for n in g["class_names"]) + "\n")
  (tmp_path / "tpl.txt").write_text("a photo of a {}.\n")
  sw.write_bpe_vocab(str(tmp_path / "vocab.txt.gz"), sw.synthetic_bpe_merges())
  files = dict(vocab=str(tmp_path / "vocab.txt.gz"), class_names=str(tmp_path / "names.txt"))
  bundle = models.load(name, ckpt, templates=str(tmp_path / "tpl.txt"), head_cache_dir=str(tmp_path / "heads"),
                       **files, **tiny)
  head = np.asarray(bundle.variables["params"]["zeroshot_head"])
  assert head.shape == (16, 5)
  config = tta_config.get_config(f"method=tpt,model={name},checkpoint={ckpt}")
  config.clip.vocab, config.clip.class_names = files["vocab"], files["class_names"]
  tower, params, tokenize, names, scale = clip_tta._text_for_job(config, bundle)  # pylint: disable=protected-access
  assert isinstance(tower, clip_coca.CocaTextTower if "coca" in name else clip.TextTower)
  assert scale == pytest.approx(float(np.exp(state["logit_scale"])), rel=1e-6)
  side = clip_tta.make_text_side(tower, tokenize, names, logit_scale=scale)
  assert side.n_ctx == 4 and side.tokens.shape[1] < tower.context_length  # trimmed prompts
  ctx0, emb = clip_tta._prompt_parts(side, params)  # pylint: disable=protected-access
  text_features = clip_tta._text_features  # pylint: disable=protected-access
  feats = jax.jit(lambda p, c, e: text_features(side, p, c, e))(params, ctx0, emb)
  assert rel_err(feats.T, head) < 1e-5
  assert rel_err(feats.T, np.roll(head, 1, axis=1)) > 0.1  # the classes' columns differ: the check can fail


def test_coca_trimmed_text_tower_matches_open_clip():
  """CoCa's cls token sees the first padding position and, for a full row, itself (open_clip's shifted mask):
  TPT's trimmed prompts keep both, so its features equal open_clip's text embeddings of texts of 5, 12 and 76
  tokens (the golden), each row trimmed on its own."""
  g, state, _ = load_golden("clip_coca_separate")
  text_cfg = clip_coca.text_config(state)
  params = convert_coca_text(state)["params"]
  tower = clip_coca.CocaTextTower(**text_cfg)
  want = g["text_features"] / np.linalg.norm(g["text_features"], axis=-1, keepdims=True)
  lengths = []
  for row, expected in zip(np.asarray(g["tokens"], np.int32), want):
    tokens = clip_coca.trim_tokens(row[None])
    lengths.append(tokens.shape[1])
    side = clip_tta.ClipText(tower, tokens, np.zeros(1, np.int32), 1, n_ctx=1)

    def features(p, side=side):
      ctx0, emb = clip_tta._prompt_parts(side, p)  # pylint: disable=protected-access
      return clip_tta._text_features(side, p, ctx0, emb)  # pylint: disable=protected-access

    assert rel_err(jax.jit(features)(params)[0], expected) < 1e-4
  assert lengths == [6, 13, 76]
  with pytest.raises(ValueError, match="CoCa expects 76"):
    tower.apply({"params": params}, np.asarray(g["tokens"])[:, :20])


def test_every_contrastive_family_has_tpt_or_a_refusal_saying_why():
  """Every registered zero-shot classifier is either tunable by TPT, with a text tower as wide as its image
  embedding in 64-wide heads (open_clip's), or SigLIP, refused in one line that says why."""
  families = clip_tta._families()  # pylint: disable=protected-access
  for name in (n for n in models.list_models() if clip_families.is_zero_shot(n)):
    clip_tta.check_model(name, "zero")  # the methods without a text tower run on every one
    if name in families:
      clip_tta.check_model(name, "tpt")
      text = families[name].text
      assert text["width"] == 64 * text["num_heads"] and text["mlp_dim"] == 4 * text["width"], name
      if name in clip_convnext.FAMILIES or name in clip_eva.FAMILIES:
        module = clip_convnext if name in clip_convnext.FAMILIES else clip_eva
        assert text["embed_dim"] == module.ARCHS[module.family_for(name).arch]["embed_dim"], name
      continue
    with pytest.raises(UserError) as e:
      clip_tta.check_model(name, "tpt")
    message = str(e.value)
    assert "\n" not in message and f"{name!r} is SigLIP, not CLIP" in message and "sigmoid" in message
    assert "method=zero, mta or tda" in message
  assert set(TINY) <= set(families) and "siglip2_b16_naflex" not in families


def test_the_job_refuses_tpt_on_siglip_before_loading_it(tmp_path, monkeypatch):
  def load(*args, **kwargs):
    raise AssertionError("the model was loaded before the method's check")

  monkeypatch.setattr(tta_job.Builds, "model", load)
  config = tta_config.get_config("runlocal=1,method=tpt,model=siglip_b16_224")
  with pytest.raises(UserError, match="is SigLIP, not CLIP"):
    tta_job.run(config, str(tmp_path / "run"))
  assert not (tmp_path / "run").exists()
