"""configs/: the typed arg parser, the fields every config shares, and `--config` from any directory."""
import importlib
import os
import pathlib
import subprocess
import sys

import pytest

from configs import common

REPO = pathlib.Path(__file__).resolve().parents[1]
CONFIGS = sorted(p.stem for p in (REPO / "configs").glob("*.py") if p.stem not in ("__init__", "common"))


def test_parse_arg_types_defaults_and_typos():
  a = common.parse_arg("model=resnet50,limit=8,lr=1e-3,runlocal,data=folder:/x/y:z", model="", limit=0, lr=0.1,
                       runlocal=False, data="")
  assert (a.model, a.limit, a.lr, a.runlocal, a.data) == ("resnet50", 8, 1e-3, True, "folder:/x/y:z")
  assert common.parse_arg("", limit=3, flag=True).to_dict() == {"limit": 3, "flag": True}
  assert not common.parse_arg("flag=false", flag=True).flag
  with pytest.raises(ValueError, match="unknown config arg 'modle'; known: limit, model"):
    common.parse_arg("modle=x", model="", limit=0)
  with pytest.raises(ValueError, match="limit='ten': expected int"):
    common.parse_arg("limit=ten", limit=0)
  with pytest.raises(ValueError, match="flag='maybe': expected a boolean"):
    common.parse_arg("flag=maybe", flag=False)
  with pytest.raises(ValueError, match="needs a value"):
    common.parse_arg("limit", limit=0)


@pytest.mark.parametrize("name", CONFIGS)
def test_every_config_has_the_common_fields(name):
  module = importlib.import_module(f"configs.{name}")
  for arg in (None, ""):
    c = module.get_config(arg)
    assert c.compilation_cache_dir == "" and "distributed" in c and c.experiment, name
    if "model" in c:  # Dataset jobs take a checkpoint in their arg string.
      assert "checkpoint" in c.model
  with pytest.raises(ValueError, match="unknown config arg"):
    module.get_config("no_such_arg=1")


def test_checkpoint_arg_everywhere():
  for name in ("zoom_sweep", "tta"):
    c = importlib.import_module(f"configs.{name}").get_config("model=resnet50,checkpoint=/w/r50.pth")
    assert (c.model.name, c.model.checkpoint) == ("resnet50", "/w/r50.pth")


def test_main_runs_a_config_by_absolute_path_from_another_directory(tmp_path):
  """`--config /abs/path/configs/x.py` from outside the repository, with a common-field override."""
  cwd = tmp_path / "elsewhere"
  cwd.mkdir()
  env = dict(os.environ, PYTHONPATH="")  # Only the installed package: nothing from the repository's root.
  proc = subprocess.run(
      [sys.executable, "-m", "zoomjax.main", f"--config={REPO / 'configs' / 'zoom_preview.py'}:quick",
       "--config.scales=(224,)", "--config.compilation_cache_dir=off", f"--workdir={tmp_path / 'out'}"],
      cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert (tmp_path / "out" / "zoom_grid.png").exists()


def _main(tmp_path, *args):
  return subprocess.run(
      [sys.executable, "-m", "zoomjax.main", "--config=configs/zoom_sweep.py:runlocal",
       f"--workdir={tmp_path / 'out'}", "--config.compilation_cache_dir=off", *args],
      cwd=REPO, capture_output=True, text=True, timeout=300, check=False)


def test_model_overrides_from_the_command_line_reach_the_model_and_typos_end_in_one_line(tmp_path):
  from zoomjax.runtime import cli  # pylint: disable=import-outside-toplevel
  import ml_collections  # pylint: disable=import-outside-toplevel
  argv, added = cli._split_open_overrides(  # pylint: disable=protected-access
      ["p", "--config.model.overrides.depths=(1, 1)", "--config.batch_size=2", "--config.model_overrides.act",
       "gelu"])
  assert argv == ["p", "--config.batch_size=2"]
  assert added == [(["model", "overrides"], "depths", (1, 1)), (["model_overrides"], "act", "gelu")]
  c = ml_collections.ConfigDict({"model": {"overrides": {}}, "model_overrides": {}})
  c.lock()
  cli._add_open_overrides(c, added)  # pylint: disable=protected-access
  assert c.model.overrides.depths == (1, 1) and c.model_overrides.act == "gelu" and c.is_locked

  # The override reaches the registered model's constructor, which names what it does not take.
  proc = _main(tmp_path, "--config.model.overrides.widht=8")
  assert proc.returncode == 2, proc.stderr[-3000:]
  assert ("zoomjax: error: model 'efficientnet_lite_tiny': an override it does not take (" in proc.stderr
          and "unexpected keyword argument 'widht'" in proc.stderr and "Traceback" not in proc.stderr)
  proc = _main(tmp_path, "--config.model.widht=8")
  assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
  assert ("zoomjax: error: --config.model.widht: the config has no field 'widht' (a model constructor argument "
          "goes in --config.model.overrides.widht=VALUE" in proc.stderr)
