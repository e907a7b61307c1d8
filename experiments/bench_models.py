"""Inference throughput of registered models on this machine: images/s, FLOPs per image, compile time.

  python experiments/bench_models.py --models efficientnet_lite0,efficientnet_lite1,efficientnet_lite2 \\
      --batch 32 --runs 5 --grouped_depthwise
  python experiments/bench_models.py --models families --batch 32 --runs 5   # one model per family
  python experiments/bench_models.py --models families --batch 2 --runs 1    # quick: does every row run?
  python experiments/bench_models.py --models today --batch 32 --runs 5      # ConvNeXt-V2, EVA-02, OpenCLIP

Weights are seeded random (`load(name, random_init=True)`): speed does not depend on their values. Models
are timed round-robin (one batch of each per round) so load changes on a shared machine hit all of them
alike; the table reports the median over rounds and the throughput ratio to the first model (the baseline),
which is the figure to compare across machines. FLOPs come from XLA's cost analysis of the compiled program.
`--grouped_depthwise` adds EfficientNet-Lite rows with the grouped-convolution depthwise implementation
(the accelerator default) to show what the CPU shift-sum form buys.
"""
import argparse
import statistics
import time
from typing import Any, Dict, List

import jax
import jax.numpy as jnp
import numpy as np

import zoomjax.models as zm


# `--models families`: the zoo rows of BENCHMARKS.md (EfficientNet-Lite0 first: the baseline of every ratio
# there), then one full-size model of each family, each at its own input size (EfficientNet-B7
# at 600 px; L2-NS at 475/800 px is left out: about 5 TFLOPs per batch of 32 on CPU).
FAMILIES = ("efficientnet_lite0", "resnet18", "resnet50", "vit_b32", "alexnet", "clip_vit_b32",
            "resnext101_32x8d", "wide_resnet50_2", "vgg19", "efficientnet_b0", "tf_efficientnet_b7",
            "mobilenet_v3_small", "mobilenet_v3_large", "convnext_base", "swin_b", "maxvit_t")
# `--models variants`: every variant of every family, full size, after the ResNet-50 baseline.
VARIANTS = ("resnet50", "vgg19", "vgg11_bn", "vgg13_bn", "vgg16_bn", "vgg19_bn",
            "resnext50_32x4d", "resnext101_32x8d", "wide_resnet50_2",
            "convnext_tiny", "convnext_small", "convnext_base", "convnext_large",
            "mobilenet_v3_small", "mobilenet_v3_large", "swin_t", "swin_s", "swin_b", "maxvit_t",
            *(f"{p}efficientnet_b{i}" for p in ("", "tf_") for i in range(8)),
            "tf_efficientnet_l2_ns_475")  # L2 at 800 px needs far more than 24 GB at batch 32.
# `--models today`: the backbones researchers evaluate today, each at its checkpoint's own input size, after the
# ResNet-50 baseline (timm ConvNeXt-V2 and EVA-02 classifiers; CLIP ResNets; OpenCLIP ConvNeXt, EVA-02 and CoCa
# towers and ViT-B-16-plus-240; SigLIP, SigLIP 2 NaFlex).
TODAY = ("resnet50", "convnextv2_tiny.fcmae_ft_in1k", "convnextv2_base.fcmae_ft_in22k_in1k_384",
         "eva02_tiny_patch14_336.mim_in22k_ft_in1k", "eva02_small_patch14_336.mim_in22k_ft_in1k",
         "eva02_base_patch14_448.mim_in22k_ft_in22k_in1k", "eva02_large_patch14_448.mim_m38m_ft_in22k_in1k",
         "clip_rn50", "openclip_convnext_base_w", "openclip_convnext_large_d_320", "openclip_vit_b16_plus_240",
         "openclip_eva02_b16", "openclip_eva02_l14_336", "openclip_coca_vit_b32", "openclip_coca_vit_l14",
         "siglip_b16_224", "siglip_so400m16_i18n_256", "siglip2_b16_naflex")
NAMED = {"families": FAMILIES, "variants": VARIANTS, "today": TODAY}


def _flops(compiled) -> float:
  cost = compiled.cost_analysis()
  if isinstance(cost, (list, tuple)):  # Older jax returns one dict per device program.
    cost = cost[0] if cost else {}
  return float((cost or {}).get("flops", float("nan")))


def prepare(name: str, batch: int, dtype: Any, depthwise_impl: str = None) -> Dict[str, Any]:
  """Loads random weights, compiles the batch forward; returns what `run_once` needs and the fixed costs."""
  overrides = {"dtype": dtype} if dtype is not None else {}
  t0 = time.perf_counter()
  bundle = zm.load(name, random_init=True, **overrides)
  init_s = time.perf_counter() - t0
  module = bundle.module
  label = name
  if depthwise_impl is not None:
    module = module.clone(depthwise_impl=depthwise_impl)
    label = f"{name} ({depthwise_impl} dw)"
  pp = bundle.preprocessing
  x = jnp.asarray(np.random.default_rng(0).uniform(0, 255, (batch, pp.input_size, pp.input_size, 3)),
                  jnp.float32)

  forward = bundle.predict_fn(module)

  t0 = time.perf_counter()
  compiled = jax.jit(forward).lower(bundle.variables, x).compile()
  compile_s = time.perf_counter() - t0
  jax.block_until_ready(compiled(bundle.variables, x))  # Warm-up (allocations, thread pools).
  return dict(label=label, compiled=compiled, variables=bundle.variables, x=x, times=[],
              params=zm.count_params(bundle.variables), size=pp.input_size, init_s=init_s,
              compile_s=compile_s, gflops=_flops(compiled) / batch / 1e9)


def run_once(entry: Dict[str, Any]) -> None:
  t0 = time.perf_counter()
  jax.block_until_ready(entry["compiled"](entry["variables"], entry["x"]))
  entry["times"].append(time.perf_counter() - t0)


def table(entries: List[Dict[str, Any]], batch: int) -> str:
  base = batch / statistics.median(entries[0]["times"])
  lines = [f"| model | params (M) | input | GFLOPs/img | compile (s) | median batch (ms) | img/s | "
           f"vs {entries[0]['label']} |",
           "|---|---:|---:|---:|---:|---:|---:|---:|"]
  for e in entries:
    med = statistics.median(e["times"])
    ips = batch / med
    lines.append(f"| {e['label']} | {e['params'] / 1e6:.2f} | {e['size']} | {e['gflops']:.3f} | "
                 f"{e['compile_s']:.1f} | {med * 1e3:.0f} | {ips:.1f} | {ips / base:.2f}x |")
  return "\n".join(lines)


def main(argv=None) -> None:
  ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  ap.add_argument("--models", default="efficientnet_lite0,efficientnet_lite1,efficientnet_lite2",
                  help="comma-separated registered names, 'families' (FAMILIES: one per family), 'variants', 'today' "
                       "(VARIANTS, TODAY) or 'all' (the first is the baseline)")
  ap.add_argument("--batch", type=int, default=32)
  ap.add_argument("--runs", type=int, default=5, help="timed rounds (>= 5 for a stable median)")
  ap.add_argument("--dtype", default=None, choices=[None, "float32", "bfloat16"])
  ap.add_argument("--grouped_depthwise", action="store_true",
                  help="also time EfficientNet-Lite with the grouped-conv depthwise implementation")
  args = ap.parse_args(argv)
  names = (zm.list_models() if args.models == "all" else list(NAMED[args.models]) if args.models in NAMED
           else [m for m in args.models.split(",") if m])
  for name in names:  # An unknown name fails now, not after the models before it have compiled.
    zm.get_spec(name)
  dtype = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, None: None}[args.dtype]
  entries = []
  for name in names:
    entries.append(prepare(name, args.batch, dtype))
    print(f"prepared {name}: init {entries[-1]['init_s']:.1f} s, compile {entries[-1]['compile_s']:.1f} s",
          flush=True)
    if args.grouped_depthwise and name.startswith("efficientnet_lite"):
      entries.append(prepare(name, args.batch, dtype, depthwise_impl="grouped"))
  for _ in range(args.runs):
    for e in entries:
      run_once(e)
  print(f"\nbackend {jax.default_backend()} ({jax.devices()[0].device_kind}), batch {args.batch}, "
        f"{args.runs} rounds, dtype {args.dtype or 'float32'}\n")
  print(table(entries, args.batch))


if __name__ == "__main__":
  main()
  from machine_info import line  # pylint: disable=g-import-not-at-top  experiments/machine_info.py
  print(line())
