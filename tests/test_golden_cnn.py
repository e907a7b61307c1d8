"""Golden tests: torchvision CNN state dicts -> zoomjax converters -> same outputs as torch.

Expected outputs were computed by experiments/make_goldens.py in a throwaway torch venv on the seeded
weights of tests/golden/seeded_weights.py, which this test rebuilds with numpy alone.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from zoomjax.checkpoints import convert_torchvision as ctv
from zoomjax.models import alexnet, layers, resnet, vgg
from goldens import GOLDEN, sw, load_golden, rel_err  # pylint: disable=wrong-import-order







@pytest.mark.parametrize("depth", [18, 50])
def test_resnet_matches_torchvision(depth):
  g, state, x = load_golden(f"resnet{depth}")
  variables = ctv.convert_resnet(state)
  apply = jax.jit(resnet.resnet(depth).apply)
  logits, inter = apply(variables, jnp.asarray(x))
  assert logits.shape == g["logits"].shape
  assert rel_err(logits, g["logits"]) < 1e-4
  assert rel_err(inter["pre_logits"], g["pre_logits"]) < 1e-4
  assert inter["feature_map"].shape == (2, 2, 2, 512 * (4 if depth == 50 else 1))
  # The golden is sensitive to the running statistics (so the BN conversion is really tested).
  bad = jax.tree_util.tree_map(lambda a: a, variables)
  bad["batch_stats"]["init_bn"]["var"] = np.ones_like(bad["batch_stats"]["init_bn"]["var"])
  assert rel_err(apply(bad, jnp.asarray(x))[0], g["logits"]) > 1e-3


def test_resnet_padding_is_torch_style_not_same():
  """A stride-2 3x3 conv with 'SAME' padding would read different pixels; guard the explicit padding."""
  model = resnet.resnet(18, num_classes=3, width=8)
  (_, inter), _ = jax.eval_shape(model.init_with_output, jax.random.PRNGKey(0), jnp.zeros((1, 33, 33, 3)))
  # torch: 33 -> conv7/2 p3 -> 17 -> maxpool3/2 p1 -> 9.
  assert inter["stem"].shape == (1, 9, 9, 8)


def test_converter_rejects_wrong_architecture():
  _, state, _ = load_golden("resnet18")
  with pytest.raises(ValueError, match="not used"):
    ctv.convert_resnet(state, stage_sizes=(2, 2, 2, 1), bottleneck=False)
  del state["fc.bias"]
  with pytest.raises(KeyError, match="fc.bias"):
    ctv.convert_resnet(state)


def test_adaptive_avg_pool_matches_torch():
  g = np.load(GOLDEN / "adaptive_pool.npz")
  i = 0
  while f"cfg_{i}" in g:
    h, w, oh, ow = g[f"cfg_{i}"]
    x = sw.seeded_images((1, 2, h, w), seed=i).transpose(0, 2, 3, 1)
    got = layers.adaptive_avg_pool(jnp.asarray(x), (int(oh), int(ow)))
    np.testing.assert_allclose(np.asarray(got).transpose(0, 3, 1, 2), g[f"out_{i}"], rtol=1e-6, atol=1e-6)
    i += 1
  assert i == 5


def test_alexnet_matches_torchvision():
  g, state, x = load_golden("alexnet")
  variables = ctv.convert_alexnet(state)
  logits, inter = jax.jit(alexnet.AlexNet().apply)(variables, jnp.asarray(x))
  assert rel_err(logits, g["logits"]) < 1e-4
  assert inter["pre_logits"].shape == (2, 4096)


def test_vgg16_matches_torchvision():
  g, state, x = load_golden("vgg16")
  variables = ctv.convert_vgg(state, vgg.CFGS[16])
  del state
  logits, inter = jax.jit(vgg.vgg(16).apply)(variables, jnp.asarray(x))
  assert rel_err(logits, g["logits"]) < 1e-4
  assert inter["feature_map"].shape == (2, 2, 2, 512)


@pytest.mark.parametrize("name,depth,batch_norm", [("vgg19_small", 19, False), ("vgg11_bn_small", 11, True),
                                                   ("vgg13_bn_small", 13, True), ("vgg16_bn_small", 16, True),
                                                   ("vgg19_bn_small", 19, True)])
def test_vgg_small_matches_torchvision(name, depth, batch_norm):
  """torchvision's cfg letters A/B/D/E (+BN) at 1/16 width with a 16-wide classifier (make_goldens.py)."""
  g, state, x = load_golden(name)
  cfg = tuple(v if v == "M" else v // 16 for v in vgg.CFGS[depth])
  variables = ctv.convert_vgg(state, cfg, batch_norm=batch_norm)
  model = vgg.vgg(depth, batch_norm, cfg=cfg, hidden=16, num_classes=10)
  apply = jax.jit(model.apply)
  logits, inter = apply(variables, jnp.asarray(x))
  assert logits.shape == g["logits"].shape == (2, 10)
  assert rel_err(logits, g["logits"]) < 1e-4
  assert rel_err(inter["pre_logits"], g["pre_logits"]) < 1e-4
  assert inter["feature_map"].shape == (2, 2, 2, 32)
  if batch_norm:  # The golden is sensitive to the running statistics (so the BN conversion is really tested).
    bad = jax.tree_util.tree_map(lambda a: a, variables)
    bad["batch_stats"]["bn1_1"]["var"] = np.ones_like(bad["batch_stats"]["bn1_1"]["var"])
    assert rel_err(apply(bad, jnp.asarray(x))[0], g["logits"]) > 1e-3
    with pytest.raises(KeyError, match="features"):  # A BN file is not a plain VGG.
      ctv.convert_vgg(state, cfg, batch_norm=False)


@pytest.mark.parametrize("name,groups,width_per_group", [("resnext_small", 4, 8), ("wide_resnet_small", 1, 32)])
def test_resnext_wide_resnet_match_torchvision(name, groups, width_per_group):
  """torchvision `ResNet(Bottleneck, [1, 1, 1, 1], groups, width_per_group)`: the ResNeXt / Wide-ResNet blocks."""
  g, state, x = load_golden(name)
  variables = ctv.convert_resnet(state)
  model = resnet.ResNet(stage_sizes=(1, 1, 1, 1), bottleneck=True, num_classes=10, groups=groups,
                        width_per_group=width_per_group)
  apply = jax.jit(model.apply)
  logits, inter = apply(variables, jnp.asarray(x))
  assert logits.shape == g["logits"].shape == (2, 10)
  assert rel_err(logits, g["logits"]) < 1e-4
  assert rel_err(inter["pre_logits"], g["pre_logits"]) < 1e-4
  assert inter["feature_map"].shape == (2, 2, 2, 2048)
  inner = variables["params"]["ResidualBlock_3"]["conv2"]["kernel"].shape
  assert inner == (3, 3, 512 * width_per_group // 64, 512 * width_per_group // 64 * groups)
  bad = jax.tree_util.tree_map(lambda a: a, variables)
  bn2 = bad["batch_stats"]["ResidualBlock_0"]["bn2"]  # the grouped conv's BN
  bn2["var"] = np.ones_like(bn2["var"])
  assert rel_err(apply(bad, jnp.asarray(x))[0], g["logits"]) > 1e-3
