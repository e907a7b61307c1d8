"""The accelerator path, checked on CPU: the dense zoom kernel and the bfloat16 sweep step on 8 fake devices
against the sparse float32 step on one device (the records a CPU sweep writes).

GPUs and TPUs get `impl='dense'` (two matmuls per scale) and usually `dtype=bfloat16`; no accelerator is needed to
see that those paths give the CPU's records. Tolerances, with what was measured when they were set (tiny random
EfficientNet-Lite, 8 smooth random photos, 4 scales x 9 anchors + 10 crops):
  crops, dense f32 vs sparse: max 2 grey levels (measured 2), mean <= 0.01 (1.4e-4)
  crops, dense bf16 vs sparse: max 4 grey levels (2), mean <= 0.5 (0.12)
  step, dense f32 on 8 devices: every top-1 id identical (100 %), p_max within 1e-4 relative (3.4e-6)
  step, dense + bf16 model on 8 devices: top-1 ids agree on >= 90 % of (image, view) pairs (97.8 %), p_max within
  1e-2 relative (1.0e-4)
Runs in a subprocess, since the device count is fixed when JAX starts.
"""
import os
import subprocess
import sys

if __name__ == "__main__":
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8").strip()

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _worker() -> None:
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from PIL import Image  # pylint: disable=g-import-not-at-top
  from zoomjax import models, sweep, zoom  # pylint: disable=g-import-not-at-top
  from zoomjax.runtime import parallel
  assert jax.local_device_count() == 8, jax.devices()
  mesh8, mesh1 = parallel.make_mesh(), parallel.make_mesh(jax.local_devices()[:1])
  rng = np.random.default_rng(0)
  n, side = 8, 96
  canvas, hws = np.zeros((n, side, side, 3), np.uint8), np.zeros((n, 2), np.int32)
  for i in range(n):
    h, w = side - 7 * (i % 4), side - 11 * (i % 3)
    small = rng.integers(0, 256, (h // 8 + 1, w // 8 + 1, 3), dtype=np.uint8)
    canvas[i, :h, :w] = np.asarray(Image.fromarray(small).resize((w, h), Image.Resampling.BICUBIC))
    hws[i] = (h, w)
  grid = zoom.ZoomGrid((24, 48, 64, 96), anchors=3, crop=48)

  sparse = np.asarray(zoom.zoom_crops_batch(canvas, hws, grid, impl="sparse"))
  for dtype, max_diff, mean_diff in ((None, 2, 0.01), (jnp.bfloat16, 4, 0.5)):
    kw = {} if dtype is None else {"dtype": dtype}
    dense = np.asarray(zoom.zoom_crops_batch(canvas, hws, grid, impl="dense", **kw)).astype(np.float32)
    diff = np.abs(dense - sparse)
    assert diff.max() <= max_diff and diff.mean() <= mean_diff, (dtype, diff.max(), diff.mean())

  spec = sweep.ViewSpec(tuple(tuple(t) for t in grid.transforms), crop=48, extra_crops=True, crop_resize=56)
  labels = np.stack([np.arange(n) * 7, np.full(n, -1)], 1).astype(np.int32)
  f32 = models.load("efficientnet_lite_tiny", random_init=True, seed=0)
  bf16 = models.load("efficientnet_lite_tiny", random_init=True, seed=0, dtype=jnp.bfloat16)

  def run(bundle, impl, dtype, mesh):
    kw = {} if dtype is None else {"dtype": dtype}
    step = sweep.make_step(bundle.predict_fn(dtype=dtype),
                           lambda c, h: zoom.zoom_crops_batch(c, h, grid, impl=impl, **kw), spec, view_chunk=16,
                           dtype=dtype or jnp.float32, mesh=mesh)
    out = step(parallel.replicate(bundle.variables, mesh), *parallel.shard_batch((canvas, hws, labels), mesh))
    if mesh is mesh8:
      assert len(out["topk"].sharding.device_set) == 8
    return parallel.to_host(out)

  ref = run(f32, "sparse", None, mesh1)
  for bundle, dtype, agree, rtol in ((f32, None, 1.0, 1e-4), (bf16, jnp.bfloat16, 0.9, 1e-2)):
    got = run(bundle, "dense", dtype, mesh8)
    same = np.mean(got["topk"][..., 0] == ref["topk"][..., 0])
    rel = np.max(np.abs(got["p_max"] - ref["p_max"]) / ref["p_max"])
    assert same >= agree and rel <= rtol, (dtype, same, rel)
    np.testing.assert_array_equal(got["finite"], True)
  print("WORKER OK", flush=True)


def test_dense_and_bf16_step_on_eight_devices_reproduce_the_cpu_records():
  env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONUNBUFFERED="1",
             PYTHONPATH=os.pathsep.join([REPO] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
  proc = subprocess.run([sys.executable, os.path.abspath(__file__)], cwd=REPO, env=env, capture_output=True,
                        text=True, timeout=900, check=False)
  assert proc.returncode == 0 and "WORKER OK" in proc.stdout, proc.stdout[-3000:] + proc.stderr[-5000:]


if __name__ == "__main__":
  _worker()
