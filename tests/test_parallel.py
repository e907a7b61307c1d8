"""zoomjax.runtime.parallel: meshes, shardings, distributed settings; 8 fake CPU devices give the 1-device answers.

The 8-device checks run in a subprocess (`python tests/test_parallel.py`), because the device count is fixed by
XLA_FLAGS before JAX starts. The sweep job end to end (8 devices, 2 processes, resume) is tests/test_multiprocess.py.
"""
import os
import subprocess
import sys

if __name__ == "__main__":  # The 8-device worker: XLA_FLAGS must be set before JAX is imported.
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8").strip()

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from zoomjax.runtime import parallel

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_local_mesh_is_one_data_axis_over_this_process_devices():
  mesh = parallel.make_mesh()
  assert mesh.axis_names == (parallel.DATA_AXIS,)
  assert list(mesh.devices.flat) == jax.local_devices()
  assert parallel.is_local(mesh) and parallel.local_batch_multiple(mesh) == jax.local_device_count()
  assert parallel.make_mesh(scope="global").size == jax.device_count()
  with pytest.raises(ValueError, match="scope"):
    parallel.make_mesh(scope="pod")
  with pytest.raises(ValueError, match="no devices"):
    parallel.make_mesh([])


def test_shard_and_replicate_round_trip_on_one_device():
  mesh = parallel.make_mesh()
  batch = {"image": np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3), "hw": np.ones((2, 2), np.int32)}
  placed = parallel.shard_batch(batch, mesh)
  assert placed["image"].sharding == parallel.data_sharding(mesh)
  np.testing.assert_array_equal(parallel.to_host(placed)["image"], batch["image"])
  rep = parallel.replicate({"w": np.float32(2.0) * np.ones(3, np.float32)}, mesh)
  assert rep["w"].sharding.is_fully_replicated
  f = parallel.data_parallel_jit(lambda v, x: x.astype(jnp.float32) * v["w"][0], mesh, num_args=2)
  np.testing.assert_array_equal(parallel.to_host(f(rep, placed["image"])), 2.0 * batch["image"])
  with pytest.raises(ValueError, match="first axis"):
    parallel.shard_batch({"x": np.float32(1.0)}, mesh)


def test_batch_size_check_names_the_value():
  """Configs count images per device; the multi-device paths run in `_worker` (8 fake devices)."""
  mesh = parallel.make_mesh()
  parallel.check_batch_size(3 * mesh.size, mesh)
  assert parallel.per_process_batch(2, mesh) == 2 * mesh.size
  with pytest.raises(ValueError, match="batch_size=0: it counts images per device"):
    parallel.per_process_batch(0, mesh)


def test_distributed_settings_from_config_and_environment():
  off = parallel.distributed_settings({}, environ={})
  assert not off.enabled and off.coordinator_address is None and off.num_processes is None
  assert not parallel.initialize_from_config({"distributed": {"enabled": False}})
  cfg = {"distributed": {"enabled": True, "coordinator_address": "127.0.0.1:1234", "num_processes": 2,
                         "process_id": 1, "initialization_timeout_s": 30}}
  s = parallel.distributed_settings(cfg, environ={})
  assert (s.enabled, s.coordinator_address, s.num_processes, s.process_id, s.initialization_timeout_s) == (
      True, "127.0.0.1:1234", 2, 1, 30)
  # Auto fields ('' / 0 / -1) are filled from the environment.
  env = {parallel.ENV_COORDINATOR: "10.0.0.1:99", parallel.ENV_NUM_PROCESSES: "4", parallel.ENV_PROCESS_ID: "3"}
  s = parallel.distributed_settings({"distributed": {
      "enabled": True, "coordinator_address": "", "num_processes": 0, "process_id": -1}}, environ=env)
  assert (s.enabled, s.coordinator_address, s.num_processes, s.process_id) == (True, "10.0.0.1:99", 4, 3)
  assert parallel.distributed_settings(None, environ={parallel.ENV_ENABLE: "1"}).enabled
  with pytest.raises(ValueError, match="process_id=2 is not in 0..1"):
    parallel.distributed_settings({"distributed": {"enabled": True, "num_processes": 2, "process_id": 2}},
                                  environ={})
  import ml_collections  # The config files' type works the same as dicts.
  c = ml_collections.ConfigDict({"distributed": {"enabled": True, "coordinator_address": "h:1",
                                                 "num_processes": 2, "process_id": 0}})
  assert parallel.distributed_settings(c, environ={}).num_processes == 2


def test_single_process_coordination_is_a_no_op():
  assert parallel.is_primary()
  parallel.barrier("test")
  tree = {"a": np.arange(3)}
  assert parallel.broadcast_from_primary(tree) is tree


# --- 8 fake CPU devices against one device, in a subprocess. ---


def assert_same_records(got: dict, want: dict, what: str) -> None:
  """Class ids bit-identical; probabilities within 1e-6 relative (a device's batch size can change XLA's
  kernel choice for a reduction by a rounding step, about 2e-7 measured)."""
  assert sorted(got) == sorted(want), (sorted(got), sorted(want))
  for k in want:
    g, w = np.asarray(got[k]), np.asarray(want[k])
    if np.issubdtype(w.dtype, np.floating):
      np.testing.assert_allclose(g, w, rtol=1e-6, atol=1e-12, err_msg=f"{what}: field {k}")
    else:
      np.testing.assert_array_equal(g, w, err_msg=f"{what}: field {k}")


def _tiny_model():
  from zoomjax import models  # pylint: disable=g-import-not-at-top
  return models.load("efficientnet_lite_tiny", random_init=True, seed=0)


def _images(n: int, side: int = 40):
  rng = np.random.default_rng(0)
  canvas = np.zeros((n, side, side, 3), np.uint8)
  hws = np.zeros((n, 2), np.int32)
  for i in range(n):
    h, w = side - 3 * (i % 4), side - 5 * (i % 3)
    canvas[i, :h, :w] = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    hws[i] = (h, w)
  return canvas, hws


def _worker() -> None:
  """Runs in a process with 8 CPU devices; every check compares the 8-device mesh with a 1-device mesh."""
  from zoomjax.tta import augment, memo  # pylint: disable=g-import-not-at-top
  from zoomjax import sweep  # pylint: disable=g-import-not-at-top
  assert jax.local_device_count() == 8, jax.devices()
  mesh8, mesh1 = parallel.make_mesh(), parallel.make_mesh(jax.local_devices()[:1])
  bundle = _tiny_model()
  canvas, hws = _images(8)

  # 1) The sweep's jitted step (zoom views from resample + the model) sharded over 8 devices.
  transforms = tuple((s, r, c) for s in (24, 40) for r in range(3) for c in range(3))
  spec = sweep.ViewSpec(transforms, crop=24, extra_crops=False)
  from zoomjax import resample  # pylint: disable=g-import-not-at-top

  def crops_fn(cv, hw):  # A stand-in zoom grid: resize short side to S, centred 24x24 window per anchor.
    def one(c, s):
      views = []
      for size, r, col in transforms:
        short = jnp.minimum(s[0], s[1])
        rs = jnp.stack([(size * s[0]) // short, (size * s[1]) // short])
        off = jnp.stack([(rs[0] // 3) * r + rs[0] // 6 - 12, (rs[1] // 3) * col + rs[1] // 6 - 12])
        views.append(resample.resize_crop(c, s, jnp.stack([0, 0, s[0], s[1]]), rs, off, (24, 24)))
      return jnp.stack(views)
    return jax.vmap(one)(cv, hw)

  predict = bundle.predict_fn()
  labels = np.stack([np.arange(8), np.full(8, -1)], 1).astype(np.int32)
  outs = []
  for mesh in (mesh8, mesh1):
    step = sweep.make_step(predict, crops_fn, spec, view_chunk=9, mesh=mesh)
    args = parallel.shard_batch((canvas, hws, labels), mesh)
    out = step(parallel.replicate(bundle.variables, mesh), *args)
    if mesh is mesh8:
      assert len(out["topk"].sharding.device_set) == 8
    outs.append(parallel.to_host(out))
  assert_same_records(outs[0], outs[1], "sweep step, 8 devices vs 1")

  # 2) Batched MEMO (vmap over images, one parameter copy per image) sharded over 8 devices.
  fn = memo.make_memo(bundle, augment.rrc_augmentation(size=24), num_views=4, steps=1, resize_size=28,
                      crop_size=24)
  keys = memo.episode_keys(jax.random.PRNGKey(0), range(8))
  ref = memo.map_images(fn, bundle.variables, jnp.asarray(canvas), jnp.asarray(hws), keys, chunk_size=8)
  run8 = parallel.data_parallel_jit(jax.vmap(fn, in_axes=(None, 0, 0, 0)), mesh8, num_args=4)
  got = run8(parallel.replicate(bundle.variables, mesh8), *parallel.shard_batch((canvas, hws, keys), mesh8))
  assert len(got.sharding.device_set) == 8
  got = parallel.to_host(got)
  # Random-init logits are small (~1e-4), so the tolerance is relative to their scale; an RRC box can move by a
  # pixel when a transcendental rounds differently for another batch shape, hence not bitwise. Distinct rows
  # guard against the failure seen with jit in_shardings (every image got image 0's answer).
  scale = np.abs(ref).max()
  for i in range(1, 8):
    assert np.abs(ref[0] - ref[i]).max() > 5e-2 * scale and np.abs(got[0] - got[i]).max() > 5e-2 * scale
  np.testing.assert_allclose(got, ref, rtol=0, atol=1e-2 * scale, err_msg="MEMO logits: 8 devices vs 1")

  # 3) Batch sizes on 8 devices: configs are per device; explicit batches must split evenly.
  assert parallel.per_process_batch(1, mesh8) == 8 and parallel.per_process_batch(3, mesh8) == 24
  try:
    parallel.check_batch_size(12, mesh8, "chunk_size")
    raise AssertionError("chunk_size=12 on 8 devices was accepted")
  except ValueError as e:
    assert "chunk_size=12 must be a multiple of the 8 devices" in str(e), e

  # 4) The TTA job's step (vmapped episodes + compact outputs) over 8 devices against 1.
  from zoomjax.jobs import tta as tta_job  # pylint: disable=g-import-not-at-top
  outs = []
  for mesh in (mesh8, mesh1):
    step = tta_job.make_step(memo.make_baseline(bundle, resize_size=28, crop_size=24), mesh)
    args = parallel.shard_batch((canvas, hws, np.asarray(keys), labels), mesh)
    outs.append(parallel.to_host(step(parallel.replicate(bundle.variables, mesh), *args)))
  assert len(set(outs[0]["top5"][:, 0].tolist())) > 1  # Distinct answers per image.
  assert_same_records(outs[0], outs[1], "TTA step, 8 devices vs 1")
  print("WORKER OK", flush=True)


def test_eight_fake_devices_give_the_one_device_answers(tmp_path):
  env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONUNBUFFERED="1",
             PYTHONPATH=os.pathsep.join([REPO] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
  proc = subprocess.run([sys.executable, os.path.abspath(__file__)], cwd=REPO, env=env, capture_output=True,
                        text=True, timeout=900)  # Guards hangs only: shared CPUs can be slow.
  assert proc.returncode == 0 and "WORKER OK" in proc.stdout, proc.stdout[-3000:] + proc.stderr[-5000:]


def test_gpu_check_runs_end_to_end_on_cpu_with_quick(tmp_path):
  """experiments/gpu_check.py is meant for an accelerator; --quick proves every stage runs (tiny model/grid)."""
  import json  # pylint: disable=g-import-not-at-top
  out = tmp_path / "quick.json"
  env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONUNBUFFERED="1", JAX_DISABLE_MOST_OPTIMIZATIONS="1")
  proc = subprocess.run([sys.executable, os.path.join(REPO, "experiments", "gpu_check.py"), "--quick", "--reps=1",
                         "--matmul-n=128", f"--out={out}"], cwd=REPO, env=env, capture_output=True, text=True,
                        timeout=900)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
  res = json.loads(out.read_text())
  assert set(res["matmul"]) == {"bfloat16", "float32"} and all(m["tflops"] > 0 for m in res["matmul"].values())
  (m,) = res["models"]
  assert m["model"] == "efficientnet_lite_tiny" and m["dtype"] == "bfloat16"
  assert m["views_per_image"] == 2 * 9 + 10 and m["images_per_s"] > 0
  assert m["views_per_s"] == pytest.approx(m["images_per_s"] * 28)
  assert m["gflop_per_view_model"] > 0 and m["gflop_per_image"] > 28 * m["gflop_per_view_model"]
  assert m["projected_s_for_images"] == pytest.approx(50_000 / m["images_per_s"])
  assert 0 < m["fraction_of_ceiling"] and "50k proj" in proc.stdout


if __name__ == "__main__":
  jax.config.update("jax_disable_most_optimizations", True)  # Compile time dominates these tiny programs.
  jax.config.update("jax_compilation_cache_dir", os.path.expanduser("~/.cache/zoomjax/jax-tests"))
  _worker()
