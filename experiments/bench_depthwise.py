"""Backward pass of EfficientNet-Lite's depthwise convolution: hand-written VJP vs JAX autodiff vs grouped conv.

  PYTHONPATH=. .venv/bin/python experiments/bench_depthwise.py --views 16 --repeats 5

Per layer shape of EfficientNet-Lite0 (224 px input, `--views` images): the forward, then the VJP (input and
kernel gradients) three ways. Then the whole MEMO gradient of Lite0 on `--views` views (prior-mode BatchNorm,
marginal entropy) with the hand-written and the autodiff depthwise backward, and the peak memory of each.
Every figure is a median of --repeats runs after a warm-up, ratios measured in the same process.
"""
import argparse
import resource
import statistics
import time

import jax

from zoomjax import models
from zoomjax.kernels import depthwise
from zoomjax.tta import memo
from zoomjax.tta.entropy import marginal_entropy

# (H = W, C, k, stride) of Lite0's depthwise layers at 224 px (one per distinct shape).
SHAPES = ((112, 32, 3, 1), (112, 96, 3, 2), (56, 144, 3, 1), (56, 144, 5, 2), (28, 240, 5, 1), (28, 240, 3, 2),
          (14, 480, 3, 1), (14, 480, 5, 1), (14, 672, 5, 1), (14, 672, 5, 2), (7, 1152, 5, 1), (7, 1152, 3, 1))


def timed(fn, repeats: int) -> float:
  jax.block_until_ready(fn())
  times = []
  for _ in range(repeats):
    t = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - t)
  return statistics.median(times)


def vjp_fn(conv, stride):
  return jax.jit(lambda x, w, g: jax.vjp(lambda x, w: conv(x, w, stride), x, w)[1](g))


def main():
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--views", type=int, default=16)
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--skip-model", action="store_true", help="only the per-layer table")
  args = parser.parse_args()
  key = jax.random.PRNGKey(0)
  print(f"{args.views} views, median of {args.repeats}, jax {jax.__version__} on {jax.devices()[0].platform}")
  print("| H=W | C | k | stride | forward ms | VJP autodiff ms | VJP hand-written ms | VJP grouped conv ms | "
        "hand-written vs autodiff |")
  print("|---|---|---|---|---|---|---|---|---|")
  totals = [0.0, 0.0, 0.0]
  for hw, c, k, s in SHAPES:
    x = jax.random.normal(key, (args.views, hw, hw, c))
    w = jax.random.normal(key, (k, k, c))
    g = jax.random.normal(key, (args.views, -(-hw // s), -(-hw // s), c))
    fwd = jax.jit(lambda x, w, s=s: depthwise.depthwise_conv_shift(x, w, s))
    t_fwd = timed(lambda: fwd(x, w), args.repeats)
    ts = [timed(lambda f=vjp_fn(conv, s): f(x, w, g), args.repeats)
          for conv in (depthwise.depthwise_conv_shift_autodiff, depthwise.depthwise_conv_shift,
                       depthwise.depthwise_conv_grouped)]
    totals = [a + b for a, b in zip(totals, ts)]
    print(f"| {hw} | {c} | {k} | {s} | {1e3 * t_fwd:.1f} | {1e3 * ts[0]:.1f} | {1e3 * ts[1]:.1f} | "
          f"{1e3 * ts[2]:.1f} | {ts[0] / ts[1]:.2f}x |")
  print(f"| all | | | | | {1e3 * totals[0]:.0f} | {1e3 * totals[1]:.0f} | {1e3 * totals[2]:.0f} | "
        f"{totals[0] / totals[1]:.2f}x |")
  if args.skip_model:
    return

  bundle = models.load("efficientnet_lite0", random_init=True)
  module = memo.with_bn_prior(bundle.module, memo.MEMO_PRIOR_STRENGTH)
  views = jax.random.uniform(key, (args.views, 224, 224, 3), maxval=255.0)
  variables = bundle.variables

  def loss(params):
    logits, _ = module.apply({**variables, "params": params}, bundle.preprocessing.normalize(views))
    return marginal_entropy(logits)

  rows = []
  hand_written = depthwise.depthwise_conv_shift
  for name, conv in (("hand-written", hand_written), ("autodiff", depthwise.depthwise_conv_shift_autodiff)):
    depthwise.depthwise_conv_shift = conv  # DepthwiseConv looks the function up at trace time.
    try:
      grad = jax.jit(jax.grad(loss))
      rows.append((name, timed(lambda: grad(variables["params"]), args.repeats),
                   resource.getrusage(resource.RUSAGE_SELF).ru_maxrss))
    finally:
      depthwise.depthwise_conv_shift = hand_written
  print(f"\nEfficientNet-Lite0 MEMO gradient, {args.views} views of 224 px (median of {args.repeats})")
  print("| depthwise backward | s per gradient | peak RSS so far (GB) |")
  print("|---|---|---|")
  for name, t, rss in rows:
    print(f"| {name} | {t:.3f} | {rss / 1e6:.1f} |")
  print(f"hand-written / autodiff speed-up: {rows[1][1] / rows[0][1]:.2f}x")


if __name__ == "__main__":
  main()
  from machine_info import line  # pylint: disable=g-import-not-at-top  experiments/machine_info.py
  print(line())
