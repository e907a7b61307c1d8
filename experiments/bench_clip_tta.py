"""Cost of CLIP's test-time methods per image: TPT against the official algorithm in PyTorch, ZERO and MTA against
the views' forward pass alone.

  python3 -m venv /tmp/torchenv && /tmp/torchenv/bin/pip install torch open_clip_torch  # the baseline's venv
  PYTHONPATH=. .venv/bin/python experiments/bench_clip_tta.py --torch-python /tmp/torchenv/bin/python

Both sides run the same seeded tiny CLIP (the open_clip model of experiments/make_clip_tta_goldens.py, widened by
--vision-width / --text-width, with the synthetic BPE vocabulary; zoomjax rebuilds the same weights from the seeded
spec) on the same seeded views (--views x --size px) and --classes class prompts. TPT per image: the image
tower on every view, the text tower forward and backward through every prompt, one AdamW step, the text tower
again and the original view's logits. The PyTorch side is the official algorithm (azshue/TPT) in float32 on
CPU (`make_clip_tta_goldens.tpt_episode`; the prompts are tokenised once, outside the timing, as the official
code does per dataset), run with --torch-python in a throwaway venv (torch, open_clip; never
a zoomjax dependency). ZERO and MTA: their episodes on precomputed views against `image_side` (the views'
forward pass) alone, in the same process. Every time is the median of --repeats runs after one warm-up run;
ratios are against baselines measured in the same run. Prints a table and one JSON line.
"""
import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import time

REPO = pathlib.Path(__file__).resolve().parents[1]


def _config(args):
  return dict(embed_dim=64, quick_gelu=True, image_size=args.size,
              vision=dict(layers=args.layers, width=args.vision_width, head_width=64, patch_size=args.patch,
                          mlp_ratio=4.0),
              text=dict(width=args.text_width, heads=max(args.text_width // 64, 1), layers=args.layers,
                        mlp_ratio=4.0))


def _class_names(n):
  return [f"class number {i}" for i in range(n)]


def _median_time(fn, repeats):
  fn()  # warm-up (and compile)
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    fn()
    times.append(time.perf_counter() - t0)
  return statistics.median(times)


def torch_side(args):
  """In the torch venv: seconds per image of the official TPT, and the seeded spec for the JAX side."""
  import numpy as np  # pylint: disable=import-outside-toplevel
  import torch  # pylint: disable=import-outside-toplevel
  sys.path.insert(0, str(REPO / "experiments"))
  import make_clip_tta_goldens as g  # pylint: disable=import-outside-toplevel
  torch.set_num_threads(args.threads or torch.get_num_threads())
  model, spec, tok = g.seeded_model(_config(args))
  x = torch.from_numpy(g.sw.seeded_images((args.views, 3, args.size, args.size)))
  prep = g.tpt_prepare(model, tok, _class_names(args.classes))  # once per dataset, as the official code
  seconds = _median_time(lambda: g.tpt_episode(model, prep, x), args.repeats)
  out = g.tpt_episode(model, prep, x)
  np.savez(args.out, spec=g.sw.encode_spec(spec), vocab_size=np.array(tok.vocab_size),
           logits_after=out["logits_after"], selected=out["selected"])
  print(json.dumps({"torch_tpt_s": seconds, "torch": torch.__version__, "threads": torch.get_num_threads()}))


def jax_side(args, spec_file):
  import jax  # pylint: disable=import-outside-toplevel
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  import numpy as np  # pylint: disable=import-outside-toplevel
  sys.path.insert(0, str(REPO / "tests"))
  from goldens import sw  # pylint: disable=import-outside-toplevel
  from zoomjax import models  # pylint: disable=import-outside-toplevel
  from zoomjax.checkpoints import convert_clip  # pylint: disable=import-outside-toplevel
  from zoomjax.models import clip  # pylint: disable=import-outside-toplevel
  from zoomjax.models.clip_tokenizer import ClipTokenizer  # pylint: disable=import-outside-toplevel
  from zoomjax.models.bundle import ModelBundle  # pylint: disable=import-outside-toplevel
  from zoomjax.models.preprocessing import Preprocessing  # pylint: disable=import-outside-toplevel
  from zoomjax.tta import clip_tta  # pylint: disable=import-outside-toplevel
  cfg = _config(args)
  v, t = cfg["vision"], cfg["text"]
  vision = dict(patch_size=v["patch_size"], width=v["width"], depth=v["layers"], num_heads=v["width"] // 64,
                mlp_dim=4 * v["width"], embed_dim=cfg["embed_dim"])
  results = {}
  x = sw.seeded_images((args.views, 3, args.size, args.size)).transpose(0, 2, 3, 1)
  if spec_file:
    g = np.load(spec_file)
    state = sw.seeded_state_dict(sw.decode_spec(g["spec"]))
    state["logit_scale"] = np.full(np.shape(state["logit_scale"]), np.log(100.0), np.float32)
    text = dict(vocab_size=int(g["vocab_size"]), context_length=77, width=t["width"], depth=t["layers"],
                num_heads=t["heads"], mlp_dim=4 * t["width"], embed_dim=cfg["embed_dim"])
    variables = convert_clip.convert_clip(state, vision_heads=vision["num_heads"], text_heads=text["num_heads"])
    model = clip.CLIP(vision, text, activation="quick_gelu")
    vocab = pathlib.Path(spec_file).with_suffix(".vocab.txt.gz")
    sw.write_bpe_vocab(str(vocab), sw.synthetic_bpe_merges())
    side = clip_tta.make_text_side(clip.TextTower(**text, activation="quick_gelu"), ClipTokenizer(str(vocab)),
                                   _class_names(args.classes), logit_scale=100.0)
    tokens = jnp.asarray(side.tokens)
    k = clip_tta.kept_views(args.views, clip_tta.TPT_KEEP)

    @jax.jit
    def tpt(variables, tokens, views):  # the same work as tpt_step: views are model inputs already
      emb = model.apply(variables, views, method=model.encode_image)
      feats = emb / jnp.linalg.norm(emb, axis=-1, keepdims=True)
      params = variables["params"]["text"]
      ctx = clip_tta.tpt_adapt(side, params, feats, keep=k, tokens=tokens)
      return clip_tta.tpt_logits(side, params, ctx, feats[:1], tokens)

    views = jnp.asarray(x)
    got = tpt(variables, tokens, views)
    results["tpt_max_rel_diff_vs_torch"] = float(np.max(np.abs(np.asarray(got) - g["logits_after"]))
                                                 / np.max(np.abs(g["logits_after"])))
    results["jax_tpt_s"] = _median_time(lambda: tpt(variables, tokens, views).block_until_ready(), args.repeats)
  # ZERO and MTA vs the views' forward pass, on a registered CLIP classifier of the same image-tower size.
  bundle = models.load("clip_vit_b32", random_init=True, num_classes=args.classes, image_size=args.size,
                       **vision)
  bundle = ModelBundle(bundle.name, bundle.module, bundle.variables,
                       Preprocessing(input_size=args.size, resize_size=args.size, resize_method="bicubic",
                                     mean=(0.0,) * 3, std=(1.0,) * 3), bundle.num_classes)
  views = jnp.asarray(x)
  identity = lambda image, hw, key: image  # the views are given: time the method, not the view generator
  forward = jax.jit(clip_tta.image_side(bundle))
  zero = jax.jit(clip_tta.make_zero(bundle, identity, num_views=args.views))
  mta = jax.jit(clip_tta.make_mta(bundle, identity))
  key = jax.random.PRNGKey(0)
  results["forward_s"] = _median_time(lambda: forward(bundle.variables, views)[1].block_until_ready(), args.repeats)
  results["zero_s"] = _median_time(lambda: zero(bundle.variables, views, None, key).block_until_ready(), args.repeats)
  results["mta_s"] = _median_time(lambda: mta(bundle.variables, views, None, key).block_until_ready(), args.repeats)
  return results


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--views", type=int, default=64)
  p.add_argument("--size", type=int, default=64)
  p.add_argument("--patch", type=int, default=16)
  p.add_argument("--classes", type=int, default=200)
  p.add_argument("--layers", type=int, default=2)
  p.add_argument("--vision-width", type=int, default=128)
  p.add_argument("--text-width", type=int, default=128)
  p.add_argument("--repeats", type=int, default=5)
  p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
  p.add_argument("--torch-python", default="", help="python of a venv with torch and open_clip (TPT baseline)")
  p.add_argument("--torch-side", action="store_true", help=argparse.SUPPRESS)
  p.add_argument("--out", default="/tmp/bench_clip_tta_torch.npz", help=argparse.SUPPRESS)
  args = p.parse_args()
  if args.torch_side:
    return torch_side(args)
  torch_result = {}
  if args.torch_python:
    argv = [a for a in sys.argv[1:]]
    i = argv.index("--torch-python")
    del argv[i:i + 2]
    proc = subprocess.run([args.torch_python, __file__, "--torch-side", "--out", args.out] + argv, cwd=REPO,
                          capture_output=True, text=True, check=True, env=dict(os.environ, PYTHONPATH=""))
    torch_result = json.loads(proc.stdout.strip().splitlines()[-1])
  r = jax_side(args, args.out if args.torch_python else "")
  r.update(torch_result)
  print(f"CLIP TTA per image: {args.views} views at {args.size} px, {args.classes} classes, "
        f"vision {args.vision_width}x{args.layers}, text {args.text_width}x{args.layers} (median of {args.repeats})")
  print(f"{'what':<34}{'seconds':>10}{'ratio':>10}")
  if "jax_tpt_s" in r:
    print(f"{'TPT, PyTorch (official algorithm)':<34}{r['torch_tpt_s']:>10.4f}{1.0:>10.2f}")
    print(f"{'TPT, zoomjax':<34}{r['jax_tpt_s']:>10.4f}{r['torch_tpt_s'] / r['jax_tpt_s']:>9.2f}x")
  print(f"{'views forward pass alone':<34}{r['forward_s']:>10.4f}{1.0:>10.2f}")
  print(f"{'ZERO (forward + filter + vote)':<34}{r['zero_s']:>10.4f}{r['zero_s'] / r['forward_s']:>10.2f}")
  print(f"{'MTA (forward + MeanShift)':<34}{r['mta_s']:>10.4f}{r['mta_s'] / r['forward_s']:>10.2f}")
  print(json.dumps(r))


if __name__ == "__main__":
  main()
