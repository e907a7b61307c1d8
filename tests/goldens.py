"""What the golden tests share: the seeded-weight generator, loading a golden file, the error they are held to,
and one MEMO episode through a model.

`tests/golden/seeded_weights.py` rebuilds, with numpy alone, the state dicts experiments/make_goldens.py fed to
the reference libraries; it is loaded from its path because tests/golden holds data, not a package.
"""
import importlib.util
import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np

GOLDEN = pathlib.Path(__file__).parent / "golden"
_spec = importlib.util.spec_from_file_location("seeded_weights", GOLDEN / "seeded_weights.py")
sw = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(sw)


def load_golden(name: str):
  """(arrays of golden/<name>.npz, the seeded state dict it was made from, its NHWC input)."""
  g = dict(np.load(GOLDEN / f"{name}.npz"))
  state = sw.seeded_state_dict(sw.decode_spec(g["spec"]))
  x = sw.seeded_images(tuple(g["input_shape"])).transpose(0, 2, 3, 1)  # NCHW -> NHWC
  return g, state, x


def clip_tower_configs(g):
  """(vision, text, open_clip config) of zoomjax's CLIP towers for a golden's open_clip configuration."""
  cfg = json.loads(str(g["config"]))
  v, t = cfg["vision"], cfg["text"]
  vision = dict(patch_size=v["patch_size"], width=v["width"], depth=v["layers"],
                num_heads=v["width"] // v["head_width"], mlp_dim=int(v["width"] * v["mlp_ratio"]),
                embed_dim=cfg["embed_dim"])
  text = dict(vocab_size=int(g["vocab_size"]), context_length=77, width=t["width"], depth=t["layers"],
              num_heads=t["heads"], mlp_dim=int(t["width"] * t["mlp_ratio"]), embed_dim=cfg["embed_dim"])
  return vision, text, cfg


def rel_err(got, want) -> float:
  """max |got - want| / max |want| (the 1e-4 the goldens are held to is relative to the output's scale)."""
  got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
  return float(np.max(np.abs(got - want)) / max(np.max(np.abs(want)), 1e-12))


def assert_memo_episode_adapts(bundle) -> None:
  """One MEMO + RRC step (4 views, 32 px) runs through the model and moves its prediction off the baseline's."""
  from zoomjax.tta import augment, memo  # pylint: disable=import-outside-toplevel
  image = jax.random.randint(jax.random.PRNGKey(2), (40, 48, 3), 0, 256).astype(jnp.uint8)
  kw = dict(resize_size=36, crop_size=32)
  adapted = jax.jit(memo.make_memo(bundle, augment.rrc_augmentation(size=32), num_views=4, steps=1, **kw))
  logits = adapted(bundle.variables, image, None, jax.random.PRNGKey(0))
  base = jax.jit(memo.make_baseline(bundle, **kw))(bundle.variables, image)
  assert logits.shape == base.shape == (1000,) and bool(jnp.all(jnp.isfinite(logits)))
  assert not np.array_equal(logits, base)
