"""zoomjax.tta.online: TENT, EATA and SAR steps against PyTorch goldens of the official algorithms, BN-adapt against
torch's train-mode BatchNorm, episodic reset, resumable state, and 8 fake devices against one.

Goldens: experiments/make_online_tta_goldens.py (a tiny seeded BatchNorm CNN, two steps of each method, torch
CPU in a throwaway environment). The 8-device check runs this file as a subprocess (XLA_FLAGS before JAX starts).
"""
import os
import subprocess
import sys
import types

if __name__ == "__main__":  # The 8-device worker: XLA_FLAGS must be set before JAX is imported.
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8").strip()

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from zoomjax.errors import UserError
from zoomjax.models import BatchNorm, ModelBundle, Preprocessing
from zoomjax.tta import online

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GOLDEN = os.path.join(REPO, "tests", "golden")
TOL = 1e-4  # Relative to the scale of the compared quantity (logits; parameter updates).


class GoldenNet(nn.Module):
  """experiments/make_online_tta_goldens.py's Net in flax (NHWC; torch's padding=1 written out)."""
  bn_prior_strength: float = None
  num_classes: int = 10

  @nn.compact
  def __call__(self, x):
    pad = ((1, 1), (1, 1))
    x = nn.Conv(8, (3, 3), strides=(2, 2), padding=pad, use_bias=False, name="conv1")(x)
    x = nn.relu(BatchNorm(prior_strength=self.bn_prior_strength, name="bn1")(x))
    x = nn.Conv(16, (3, 3), strides=(2, 2), padding=pad, use_bias=False, name="conv2")(x)
    x = nn.relu(BatchNorm(prior_strength=self.bn_prior_strength, name="layer4_bn")(x))
    return nn.Dense(self.num_classes, name="fc")(jnp.mean(x, axis=(1, 2))), {}


def golden(name):
  return dict(np.load(os.path.join(GOLDEN, f"online_tta_{name}.npz")))


def golden_bundle(g) -> ModelBundle:
  w = {k.split("/", 1)[1]: v for k, v in g.items() if k.startswith("weights/")}
  params = {"conv1": {"kernel": w["conv1.weight"].transpose(2, 3, 1, 0)},
            "conv2": {"kernel": w["conv2.weight"].transpose(2, 3, 1, 0)},
            "fc": {"kernel": w["fc.weight"].T, "bias": w["fc.bias"]}}
  stats = {}
  for bn in ("bn1", "layer4_bn"):
    params[bn] = {"scale": w[f"{bn}.weight"], "bias": w[f"{bn}.bias"]}
    stats[bn] = {"mean": w[f"{bn}.running_mean"], "var": w[f"{bn}.running_var"]}
  variables = jax.tree.map(jnp.asarray, {"params": params, "batch_stats": stats})
  pp = Preprocessing(input_size=16, resize_size=16, resize_method="bilinear", mean=(127.5,) * 3, std=(64.0,) * 3)
  return ModelBundle("golden_bn_cnn", GoldenNet(), variables, pp, num_classes=10)


def tiny_bn_cnn() -> ModelBundle:
  """A 1000-class GoldenNet on 16x16 views with seeded weights: a model factory for fast job tests
  (`model=test_online_tta:tiny_bn_cnn`, tests/test_tta_job.py)."""
  module = GoldenNet(num_classes=1000)
  variables = module.init(jax.random.PRNGKey(0), jnp.zeros((1, 16, 16, 3)))
  variables = {**variables, "batch_stats": jax.tree.map(lambda v: v + 0.3, variables["batch_stats"])}
  pp = Preprocessing(input_size=16, resize_size=18, resize_method="bilinear", mean=(127.5,) * 3, std=(64.0,) * 3)
  return ModelBundle("tiny_bn_cnn", module, variables, pp, num_classes=1000)


def rel(got, want) -> float:
  got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
  return float(np.max(np.abs(got - want)) / max(np.max(np.abs(want)), 1e-12))


def sgd(g):
  return optax.sgd(float(g["lr"]), momentum=float(g["momentum"]))


def check_steps(method, bundle, g, prefix=""):
  """Runs the golden stream; logits and every BatchNorm parameter's update match torch after each step."""
  state = method.init(bundle.variables)
  step = jax.jit(method.step)
  source = {f"{layer}.{p}": np.asarray(bundle.variables["params"][layer][q])
            for layer in ("bn1", "layer4_bn") for p, q in (("weight", "scale"), ("bias", "bias"))}
  for t in range(g["pixels"].shape[0]):
    state, logits = step(state, jnp.asarray(g["pixels"][t]))
    assert rel(logits, g[f"{prefix}logits_{t}"]) <= TOL, (t, rel(logits, g[f"{prefix}logits_{t}"]))
    merged = online._merge(bundle.variables, state["adapted"]["params"])["params"]  # pylint: disable=protected-access
    deltas_got, deltas_want = [], []
    for key, src in source.items():
      layer, p = key.split(".")
      got = np.asarray(merged[layer]["scale" if p == "weight" else "bias"])
      deltas_got.append(got - src)
      deltas_want.append(g[f"{prefix}params_{t}/{key}"] - src)
    err = rel(np.concatenate(deltas_got), np.concatenate(deltas_want))
    assert err <= TOL, (t, err)
  return state


@pytest.fixture(scope="module")
def tent_golden():
  g = golden("tent")
  return g, golden_bundle(g)


def test_bn_adapt_is_torch_train_mode_batch_norm(tent_golden):
  g, bundle = tent_golden
  method = online.make_bn_adapt(bundle)
  _, logits = jax.jit(method.step)(method.init(bundle.variables), jnp.asarray(g["pixels"][0]))
  assert rel(logits, g["logits_0"]) <= TOL  # TENT's first logits: the unadapted model with batch statistics.
  source = online.make_source(bundle)
  _, eval_logits = jax.jit(source.step)(source.init(bundle.variables), jnp.asarray(g["pixels"][0]))
  assert rel(eval_logits, g["logits_0"]) > 0.01  # Running statistics differ: the test can tell the modes apart.


def test_tent_two_steps_match_pytorch(tent_golden):
  g, bundle = tent_golden
  state = check_steps(online.make_tent(bundle, optimizer=sgd(g)), bundle, g)
  assert int(state["step"]) == 2
  assert sorted(state["adapted"]["params"]) == ["bn1/bias", "bn1/scale", "layer4_bn/bias", "layer4_bn/scale"]


def test_tent_episodic_restarts_from_the_source_every_batch(tent_golden):
  g, bundle = tent_golden
  episodic = online.make_tent(bundle, optimizer=sgd(g), episodic=True)
  _, logits = online.run_stream(episodic, bundle.variables, g["pixels"])
  bn = online.make_bn_adapt(bundle)
  _, want = bn.step(bn.init(bundle.variables), jnp.asarray(g["pixels"][1]))
  np.testing.assert_allclose(logits[1], want, rtol=1e-5, atol=1e-5)
  assert rel(logits[1], g["logits_1"]) > 1e-3  # The continual run's second batch differs.


def test_eata_fisher_and_two_steps_match_pytorch():
  g = golden("eata")
  bundle = golden_bundle(g)
  fisher = online.fisher_information(bundle, bundle.variables, [g["source_0"], g["source_1"]])
  for path, f in fisher["fisher"].items():
    layer, p = path.split("/")
    want = g[f"fisher/{layer}.{'weight' if p == 'scale' else 'bias'}"]
    assert rel(f, want) <= TOL, path
  method = online.make_eata(bundle, fisher=fisher, fisher_alpha=float(g["fisher_alpha"]),
                            e_margin=float(g["e_margin"]), d_margin=float(g["d_margin"]), optimizer=sgd(g))
  state = check_steps(method, bundle, g)
  assert int(state["num_updates"]) == int(g["kept"].sum()) and bool(state["probs_set"])
  np.testing.assert_allclose(state["probs"], g["probs_ma"], rtol=1e-4, atol=1e-6)


def test_sar_two_steps_and_model_recovery_match_pytorch():
  g = golden("sar")
  bundle = golden_bundle(g)
  method = online.make_sar(bundle, e_margin=float(g["e_margin"]), optimizer=sgd(g))
  state = check_steps(method, bundle, g)
  assert sorted(state["adapted"]["params"]) == ["bn1/bias", "bn1/scale"]  # SAR leaves layer4 as it is.
  assert abs(float(state["ema"]) - float(g["ema"])) <= TOL * float(g["ema"]) and int(state["num_resets"]) == 0
  reset = online.make_sar(bundle, e_margin=float(g["e_margin"]), optimizer=sgd(g),
                          reset_constant=float(g["reset/reset_constant"]))
  state = check_steps(reset, bundle, g, prefix="reset/")
  assert int(state["num_resets"]) == int(g["reset/resets"]) == 2


def test_defaults_follow_the_papers():
  assert online.entropy_margin(1000) == pytest.approx(0.4 * np.log(1000))
  assert (online.ONLINE_LR, online.ONLINE_MOMENTUM, online.EATA_D_MARGIN, online.EATA_FISHER_ALPHA,
          online.SAR_RHO, online.SAR_RESET_CONSTANT) == (0.00025, 0.9, 0.05, 2000.0, 0.05, 0.2)
  from zoomjax.models import registry  # pylint: disable=import-outside-toplevel
  resnet50, _ = registry.create("resnet50")  # Stages of 3, 4, 6, 3 blocks: SAR leaves the last 3 (layer4) fixed.
  assert online.sar_excluded(types.SimpleNamespace(module=resnet50)) == (
      "layer4", "ResidualBlock_13/", "ResidualBlock_14/", "ResidualBlock_15/")


def test_resume_from_stored_state_equals_one_uninterrupted_stream(tent_golden):
  g, bundle = tent_golden
  for name in ("tent", "eata", "sar"):
    method = online.make_stream_method(name, bundle, **({} if name == "tent" else {"e_margin": 1.5}))
    step = jax.jit(method.step)
    state, logits = method.init(bundle.variables), []
    for t in range(2):
      state, lg = step(state, jnp.asarray(g["pixels"][t]))
      logits.append(lg)
    first_state, first = step(method.init(bundle.variables), jnp.asarray(g["pixels"][0]))
    stored = online.adapted_arrays(first_state)
    assert not any("variables" in k for k in stored)
    resumed = online.restore_adapted(method.init(bundle.variables), {k: np.array(v) for k, v in stored.items()})
    resumed, second = step(resumed, jnp.asarray(g["pixels"][1]))
    np.testing.assert_array_equal(np.stack([first, second]), np.stack(logits), err_msg=name)  # Bit for bit.
    for k, v in online.adapted_arrays(state).items():
      np.testing.assert_array_equal(online.adapted_arrays(resumed)[k], v, err_msg=f"{name} {k}")
    if name == "tent":  # lax.scan over the same stream: the same maths (XLA may fuse the scanned step anew).
      final, scanned = jax.jit(lambda v, x, m=method: online.run_stream(m, v, x))(bundle.variables, g["pixels"])
      np.testing.assert_allclose(scanned, np.stack(logits), rtol=1e-5, atol=1e-5, err_msg=name)
      assert int(final["step"]) == 2
      tent_stored = stored
  with pytest.raises(ValueError, match="arrays"):
    online.restore_adapted(online.make_sar(bundle).init(bundle.variables), tent_stored)


def test_a_model_without_batch_norm_is_refused_by_name():
  class Linear(nn.Module):
    @nn.compact
    def __call__(self, x):
      return nn.Dense(3)(jnp.mean(x, axis=(1, 2))), {}

  module = Linear()
  pp = Preprocessing(input_size=8, resize_size=8, resize_method="bilinear", mean=(0.0,) * 3, std=(1.0,) * 3)
  bundle = ModelBundle("plain_linear", module, module.init(jax.random.PRNGKey(0), jnp.zeros((1, 8, 8, 3))), pp,
                       num_classes=3)
  for name in online.BATCH_STAT_METHODS:
    with pytest.raises(UserError, match=f"model 'plain_linear' .*method='{name}'"):
      online.make_stream_method(name, bundle)
  assert online.make_source(bundle).name == "source"  # Needs no BatchNorm.
  with pytest.raises(UserError, match="not one of"):
    online.make_stream_method("memo", bundle)


def _worker() -> None:
  """8 fake devices: TENT and SAR sharded over the batch give the goldens' (1-device) logits and updates."""
  from zoomjax.runtime import parallel  # pylint: disable=import-outside-toplevel
  assert jax.device_count() == 8
  mesh = parallel.make_mesh()
  for name in ("tent", "sar"):  # EATA's filters are SAR's and TENT's maths; its goldens run on one device.
    g = golden(name)
    bundle = golden_bundle(g)
    kw = {"optimizer": sgd(g)}
    if name != "tent":
      kw["e_margin"] = float(g["e_margin"])
    if name == "eata":
      kw.update(fisher=online.fisher_information(bundle, bundle.variables, [g["source_0"], g["source_1"]]),
                fisher_alpha=float(g["fisher_alpha"]), d_margin=float(g["d_margin"]))
    method = online.make_stream_method(name, bundle, **kw)
    step = online.sharded_step(method, mesh)
    state = parallel.replicate(method.init(bundle.variables), mesh)
    for t in range(2):
      state, logits = step(state, parallel.shard_batch(g["pixels"][t], mesh))
      assert len(logits.sharding.device_set) == 8
      assert rel(parallel.to_host(logits), g[f"logits_{t}"]) <= TOL, (name, t)
    params = online._merge(bundle.variables, state["adapted"]["params"])["params"]  # pylint: disable=protected-access
    got = np.asarray(params["bn1"]["scale"]) - np.asarray(bundle.variables["params"]["bn1"]["scale"])
    want = g["params_1/bn1.weight"] - np.asarray(bundle.variables["params"]["bn1"]["scale"])
    assert rel(got, want) <= TOL, name
  print("WORKER OK", flush=True)


def test_eight_fake_devices_give_the_one_device_result():
  env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONUNBUFFERED="1",
             PYTHONPATH=os.pathsep.join([REPO] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
  proc = subprocess.run([sys.executable, os.path.abspath(__file__)], cwd=REPO, env=env, capture_output=True,
                        text=True, timeout=900)  # Guards hangs only: shared CPUs can be slow.
  assert proc.returncode == 0 and "WORKER OK" in proc.stdout, proc.stdout[-3000:] + proc.stderr[-5000:]


if __name__ == "__main__":
  _worker()
