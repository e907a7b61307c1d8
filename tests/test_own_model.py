"""A model of one's own (a factory returning a ModelBundle) works wherever a registered model does: `models.load`,
`models.register`, `models.from_config`, and the sweep, TTA and evaluation jobs from the command line; every
mistake ends in one line naming it."""
import json
import os
import pathlib
import re
import subprocess
import sys
import textwrap

import jax.numpy as jnp
import numpy as np
import pytest

from zoomjax import data, models
from zoomjax.errors import UserError
from zoomjax.models import registry
from zoomjax.tta import memo

REPO = pathlib.Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "docs" / "examples"
FACTORY = "my_cnn:make_model"  # docs/examples/my_cnn.py, the example of docs/own-model.md

# A throwaway package of factories, good and bad, written under tmp_path and put on sys.path.
NETS = textwrap.dedent('''
    from typing import Any
    import flax.linen as nn
    import jax
    import jax.numpy as jnp
    from zoomjax import models

    PP = models.Preprocessing(8, 10, "bilinear", (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))


    class Net(nn.Module):
      num_classes: int = 5
      dtype: Any = jnp.float32

      @nn.compact
      def __call__(self, x):
        return nn.Dense(self.num_classes, dtype=self.dtype)(x.mean(axis=(1, 2))), {}


    class BNNet(nn.Module):  # flax BatchNorm and no `bn_prior_strength` field: MEMO cannot use prior mode
      @nn.compact
      def __call__(self, x):
        x = nn.BatchNorm(use_running_average=True)(nn.Conv(4, (3, 3))(x))
        return nn.Dense(5)(x.mean(axis=(1, 2))), {}


    class LogitsOnly(nn.Module):
      @nn.compact
      def __call__(self, x):
        return nn.Dense(5)(x.mean(axis=(1, 2)))


    def _bundle(module, name="net"):
      return models.ModelBundle(name, module, module.init(jax.random.PRNGKey(0), jnp.zeros((1, 8, 8, 3))), PP,
                                num_classes=5)


    def make():
      return _bundle(Net())


    def make_bn():
      return _bundle(BNNet(), "bn_net")


    def make_logits_only():
      return _bundle(LogitsOnly())


    def make_wide(width, depth=2):
      return _bundle(Net())


    def make_raises():
      raise FileNotFoundError("weights/net.msgpack")


    def make_list():
      return [1, 2]


    value = 3
''')


@pytest.fixture
def nets(tmp_path, monkeypatch):
  """The package `own_nets` (module `own_nets.zoo`) and a module that fails to import, on sys.path."""
  pkg = tmp_path / "own_nets"
  pkg.mkdir()
  (pkg / "__init__.py").write_text("")
  (pkg / "zoo.py").write_text(NETS)
  (pkg / "broken.py").write_text("import a_dependency_that_is_not_installed\n")
  monkeypatch.syspath_prepend(str(tmp_path))
  for name in ("own_nets", "own_nets.zoo", "own_nets.broken"):
    monkeypatch.delitem(sys.modules, name, raising=False)
  added = []
  yield added
  for name in added:
    registry._FACTORIES.pop(name, None)  # pylint: disable=protected-access


def test_factory_by_import_path_and_by_registered_name(nets):
  bundle = models.load("own_nets.zoo:make")
  assert isinstance(bundle, models.ModelBundle) and bundle.num_classes == 5 and models.is_factory("own_nets.zoo:make")
  logits, _ = bundle.module.apply(bundle.variables, jnp.zeros((2, 8, 8, 3)))
  assert logits.shape == (2, 5)

  from own_nets import zoo  # pylint: disable=import-outside-toplevel,import-error
  models.register("own_net", zoo.make)
  nets.append("own_net")
  models.register("own_net", zoo.make)  # The very same factory again is harmless.
  assert "own_net" in models.list_models() and models.is_factory("own_net")
  assert models.load("own_net").name == "net"
  with pytest.raises(ValueError, match="already registered"):
    models.register("own_net", zoo.make_bn)
  with pytest.raises(ValueError, match="already registered"):
    models.register("efficientnet_lite0", zoo.make)
  with pytest.raises(ValueError, match="without ':'"):
    models.register("a:b", zoo.make)
  with pytest.raises(UserError, match=r"takes arguments \(width\)"):
    models.register("own_wide", zoo.make_wide)
  with pytest.raises(UserError, match="a factory of your own, not a registered family"):
    models.get_spec("own_net")


def test_from_config_reads_a_model_block_and_overrides_become_module_fields(nets):
  block = {"name": "own_nets.zoo:make", "checkpoint": None, "random_init": True, "seed": 3, "paper_row": "",
           "overrides": {"num_classes": 5}}
  bundle = models.from_config(block, dtype=jnp.bfloat16)  # A job's compute dtype comes as an override.
  assert bundle.module.dtype == jnp.bfloat16 and bundle.module.num_classes == 5
  # random_init and seed do not apply to a factory: its variables are its own.
  np.testing.assert_array_equal(bundle.variables["params"]["Dense_0"]["kernel"],
                                models.load("own_nets.zoo:make").variables["params"]["Dense_0"]["kernel"])
  with pytest.raises(UserError, match=r"override\(s\) depth are not fields of its module Net \(fields: dtype, "
                                      r"num_classes\)"):
    models.from_config({"name": "own_nets.zoo:make", "overrides": {"depth": 2}})


@pytest.mark.parametrize("name, checkpoint, message", [
    ("no_such_pkg.nets:make", None, r"cannot import module 'no_such_pkg.nets' \(No module named 'no_such_pkg'\); "
                                    r"put the folder that holds it on PYTHONPATH"),
    ("own_nets.broken:make", None, r"importing module 'own_nets.broken' failed: ModuleNotFoundError: No module "
                                   r"named 'a_dependency_that_is_not_installed'"),
    ("own_nets.zoo:mkae", None, r"module 'own_nets.zoo' \(.*zoo.py\) has no attribute 'mkae'; its functions: "
                                r"BNNet, LogitsOnly, Net, make, make_bn, make_list, make_logits_only, make_raises, "
                                r"make_wide"),
    ("own_nets.zoo:value", None, r"'value' of module 'own_nets.zoo' is a int, not a function"),
    ("own_nets.zoo:make_wide", None, r"the factory takes arguments \(width\); a model factory takes none"),
    ("own_nets.zoo:make_raises", None, r"the factory raised FileNotFoundError: weights/net.msgpack"),
    ("own_nets.zoo:make_list", None, r"the factory returned a list, not a zoomjax.models.ModelBundle"),
    ("own_nets.zoo:make_logits_only", None, r"must return \(logits \(batch, num_classes=5\), intermediates\); got "
                                            r"one array of shape \(2, 5\), no"),
    ("own_nets.zoo:make", "net.pth", r"a factory of your own: it builds its own variables, so checkpoint=net.pth "
                                     r"does not apply"),
    ("own_nets.zoo:", None, r"is named `package.module:function` \(one ':'\)"),
])
def test_every_mistake_is_one_line_naming_it(nets, name, checkpoint, message):
  with pytest.raises(UserError) as e:
    models.load(name, checkpoint)
  text = str(e.value)
  assert "\n" not in text and text.startswith(f"model {name!r}")
  assert re.search(message, text), text


def test_unknown_plain_name_points_at_factories():
  with pytest.raises(UserError, match=r"unknown model 'my_resnet'.*a model of your own: 'package.module:function'"):
    models.load("my_resnet")


def test_memo_says_when_a_model_cannot_take_prior_mode(nets, capsys):
  from configs import tta as tta_config  # pylint: disable=import-outside-toplevel
  from zoomjax.jobs import tta as tta_job  # pylint: disable=import-outside-toplevel
  from zoomjax.tta import augment  # pylint: disable=import-outside-toplevel
  bn, plain = models.load("own_nets.zoo:make_bn"), models.load("own_nets.zoo:make")
  assert "batch_stats" in bn.variables
  note = memo.prior_mode_note(bn, 16.0)
  assert "has BatchNorm statistics but its module has no `bn_prior_strength` field" in note
  assert memo.prior_mode_note(bn, None) is None  # Eval mode asked for: nothing to say.
  assert "has no BatchNorm" in memo.prior_mode_note(plain, 16.0)
  with pytest.warns(UserWarning, match="eval-mode BatchNorm, not prior mode"):
    memo.make_memo(bn, augment.rrc_augmentation(8), num_views=2)
  config = tta_config.get_config("runlocal=1,method=memo_rrc")
  mask = np.ones(5, bool)
  tta_job.build_episode(config, bn, mask)
  out = capsys.readouterr().out.strip().splitlines()
  assert len(out) == 1 and out[0].startswith("warning: tta memo_rrc: model 'bn_net' has BatchNorm statistics"), out
  tta_job.build_episode(config, plain, mask)
  out = capsys.readouterr().out.strip().splitlines()
  assert len(out) == 1 and out[0].startswith("tta memo_rrc: model 'net' has no BatchNorm"), out
  config.memo.prior_strength = 0.0  # Eval mode on purpose: silent.
  tta_job.build_episode(config, bn, mask)
  assert capsys.readouterr().out == ""


def test_data_from_config_reads_a_data_block():
  ds = data.from_config({"name": "demo_photos", "split": "[:2]", "data_dir": None, "manual_dir": "", "variant": None})
  assert len(ds) == 2 and ds.name == "demo_photos"
  with pytest.raises(UserError, match=r"unknown field\(s\) folder; known: data_dir"):
    data.from_config({"name": "demo_photos", "folder": "x"})
  with pytest.raises(UserError, match="no dataset name"):
    data.from_config({"name": ""})


def test_docs_example_is_the_shipped_module():
  """docs/own-model.md shows docs/examples/my_cnn.py verbatim (the file the command-line test runs)."""
  page = (REPO / "docs" / "own-model.md").read_text()
  first = re.search(r"```python\n(.*?)```", page, re.S).group(1)
  assert first == (EXAMPLES / "my_cnn.py").read_text()


def _main(env, cwd, config, workdir, *more):
  return subprocess.run([sys.executable, "-m", "zoomjax.main", "--config", config, "--workdir", str(workdir), *more],
                        cwd=cwd, env=env, capture_output=True, text=True, timeout=600, check=False)


def _ok(proc, what):
  assert proc.returncode == 0, f"{what}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
  return proc.stdout


def test_own_model_through_sweep_tta_and_evaluation_from_the_command_line(tmp_path):
  """The documented module, named `my_cnn:make_model`, through all three jobs as a user runs them."""
  # Another name for the same model, to show the resume key holds the factory's name.
  (tmp_path / "other_cnn.py").write_text("from my_cnn import make_model as make\n")
  env = dict(os.environ, JAX_PLATFORMS="cpu",
             PYTHONPATH=os.pathsep.join([str(EXAMPLES), str(tmp_path), str(REPO)]))
  cwd = str(REPO)

  sweep_dir = tmp_path / "sweep"
  _ok(_main(env, cwd, f"configs/zoom_sweep.py:model={FACTORY},runlocal", sweep_dir, "--config.report=False"), "sweep")
  config = json.loads((sweep_dir / "config.json").read_text())
  assert config["model"]["name"] == FACTORY
  metrics = json.loads((sweep_dir / "metrics.json").read_text())
  assert metrics["num_images"] == 2 and metrics["model"] == FACTORY and (sweep_dir / "records.npz").is_file()
  # The resume key holds the factory's name: the same workdir with another factory is refused, in one line.
  proc = _main(env, cwd, "configs/zoom_sweep.py:model=other_cnn:make,runlocal", sweep_dir, "--config.report=False")
  assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
  assert re.search(r"zoomjax: error: .*model\.name.*my_cnn:make_model.*other_cnn:make", proc.stderr), proc.stderr
  # A mistake in the name: one line, exit 2, before anything is claimed.
  proc = _main(env, cwd, "configs/zoom_sweep.py:model=my_cnn:make_modle,runlocal", tmp_path / "typo")
  assert proc.returncode == 2 and "Traceback" not in proc.stderr
  assert ("zoomjax: error: model 'my_cnn:make_modle': module 'my_cnn' (" in proc.stderr
          and "has no attribute 'make_modle'; its functions: SmallCNN, make_model" in proc.stderr), proc.stderr
  assert not (tmp_path / "typo" / "config.json").exists()

  tta_dir = tmp_path / "tta"
  out = _ok(_main(env, cwd, f"configs/tta.py:method=memo_rrc,model={FACTORY},runlocal", tta_dir), "tta")
  assert "warning" not in out  # The example has prior-mode BatchNorm: MEMO runs as in the paper.
  metrics = json.loads((tta_dir / "metrics.json").read_text())
  assert metrics["complete"] and metrics["model"] == FACTORY and metrics["num_images"] == 2

  models_file = tmp_path / "models.csv"
  models_file.write_text(f"model,checkpoint,label\n{FACTORY},,my CNN\n")
  eval_dir = tmp_path / "evaluate"
  _ok(_main(env, cwd, f"configs/evaluate.py:models_file={models_file},runlocal", eval_dir), "evaluate")
  results = json.loads((eval_dir / "results.json").read_text())
  (pair,) = results["pairs"]
  assert pair["row"] == "my CNN" and pair["num_images"] == 2 and pair["dataset"] == "demo_photos"
