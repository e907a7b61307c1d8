"""configs/ and zoomjax.runtime.config: the typed arg parser, the fields every config shares, named grids, and
`--config` from any directory (a path, or the name of a config installed with zoomjax)."""
import ast
import importlib
import os
import pathlib
import shutil
import subprocess
import sys

import pytest

from zoomjax.errors import NotFoundError, UserError
from zoomjax.runtime import config as config_lib

REPO = pathlib.Path(__file__).resolve().parents[1]
CONFIGS = sorted(p.stem for p in (REPO / "configs").glob("*.py") if p.stem != "__init__")


def test_parse_arg_types_defaults_and_typos():
  a = config_lib.parse_arg("model=resnet50,limit=8,lr=1e-3,runlocal,data=folder:/x/y:z", model="", limit=0, lr=0.1,
                           runlocal=False, data="")
  assert (a.model, a.limit, a.lr, a.runlocal, a.data) == ("resnet50", 8, 1e-3, True, "folder:/x/y:z")
  assert config_lib.parse_arg("", limit=3, flag=True).to_dict() == {"limit": 3, "flag": True}
  assert not config_lib.parse_arg("flag=false", flag=True).flag
  with pytest.raises(UserError, match="unknown config arg 'modle'; known: limit, model"):
    config_lib.parse_arg("modle=x", model="", limit=0)
  with pytest.raises(UserError, match="limit='ten': expected int"):
    config_lib.parse_arg("limit=ten", limit=0)
  with pytest.raises(UserError, match="flag='maybe': expected a boolean"):
    config_lib.parse_arg("flag=maybe", flag=False)
  with pytest.raises(UserError, match="needs a value"):
    config_lib.parse_arg("limit", limit=0)


def test_grid_scales_named_or_spelt_out():
  from zoomjax.configs import zoom_sweep  # pylint: disable=import-outside-toplevel
  assert config_lib.grid_scales("tiny", zoom_sweep.GRIDS) == (224, 256)
  assert len(config_lib.grid_scales("paper", zoom_sweep.GRIDS)) == 36
  assert config_lib.grid_scales("128/256/", {}) == (128, 256)
  with pytest.raises(UserError, match=r"grid='huge': use one of \['a'\] or scales like 128/256/512"):
    config_lib.grid_scales("huge", {"a": (1,)})
  with pytest.raises(UserError, match="positive short side"):
    config_lib.grid_scales("0/256", {})
  assert zoom_sweep.get_config("grid=96/192").grid.scales == (96, 192)


def test_configs_import_no_sibling_by_the_checkout_name():
  """In the wheel the configs are the package zoomjax.configs: `import configs...` would work only in a checkout."""
  for path in sorted((REPO / "configs").glob("*.py")):
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
      names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
               [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
      assert not [n for n in names if n == "configs" or n.startswith("configs.")], (path.name, names)
      assert not (isinstance(node, ast.ImportFrom) and node.level), f"{path.name}: relative import"


def test_the_installed_configs_are_the_checkouts():
  """The editable install maps zoomjax.configs to configs/ (setup.py package_dir), as the wheel installs them."""
  assert config_lib.configs_dir() == REPO / "configs"
  assert config_lib.available_configs() == [f"{name}.py" for name in CONFIGS]


@pytest.mark.parametrize("name", CONFIGS)
def test_every_config_has_the_common_fields(name):
  module = importlib.import_module(f"zoomjax.configs.{name}")
  for arg in (None, ""):
    c = module.get_config(arg)
    assert c.compilation_cache_dir == "" and "distributed" in c and c.experiment, name
    if "model" in c:  # Dataset jobs take a checkpoint in their arg string.
      assert "checkpoint" in c.model
  with pytest.raises(ValueError, match="unknown config arg"):
    module.get_config("no_such_arg=1")


def test_checkpoint_arg_everywhere():
  for name in ("zoom_sweep", "tta"):
    c = importlib.import_module(f"zoomjax.configs.{name}").get_config("model=resnet50,checkpoint=/w/r50.pth")
    assert (c.model.name, c.model.checkpoint) == ("resnet50", "/w/r50.pth")


def test_resolve_config_path(tmp_path, monkeypatch):
  """A file that exists is used as given; a bare name or configs/<name>.py that does not exist here is the
  installed config; anything else fails in one line listing the installed configs."""
  folder = tmp_path / "installed"
  folder.mkdir()
  for name in ("zoom_sweep.py", "demo.py", "__init__.py"):
    (folder / name).write_text("")
  here = tmp_path / "here"
  (here / "configs").mkdir(parents=True)
  (here / "demo.py").write_text("")
  (here / "configs" / "demo.py").write_text("")
  monkeypatch.chdir(here)
  resolve = lambda value: config_lib.resolve_config_path(value, folder)
  assert resolve("zoom_sweep.py:runlocal,data=x:/y") == f"{folder / 'zoom_sweep.py'}:runlocal,data=x:/y"
  assert resolve("zoom_sweep") == str(folder / "zoom_sweep.py")
  assert resolve("configs/zoom_sweep.py:grid=tiny") == f"{folder / 'zoom_sweep.py'}:grid=tiny"
  assert resolve("demo.py:a=1") == "demo.py:a=1"  # Exists here: as given, despite its installed namesake.
  assert resolve("configs/demo.py") == "configs/demo.py"
  assert resolve(f"{folder / 'demo.py'}:x") == f"{folder / 'demo.py'}:x"
  for bad in ("nope.py:x", "./zoom_sweep.py", "other/zoom_sweep.py", "__init__.py"):
    with pytest.raises(NotFoundError) as e:
      resolve(bad)
    assert str(e.value) == (f"--config {bad.split(':')[0]}: no such file here and no installed config of that "
                            "name; give the path of a config file or one of the installed configs: demo.py, "
                            "zoom_sweep.py"), bad
  with pytest.raises(NotFoundError, match="zoomjax's configs are not installed"):
    config_lib.resolve_config_path("zoom_sweep.py", tmp_path / "missing")
  argv = ["zoomjax", "--config", "zoom_sweep.py:runlocal", "--config.limit=1", "-config=zoom_sweep",
          "--workdir=demo.py", "--", "--config=nope.py"]
  assert config_lib.resolve_config_flag(argv, folder) == [
      "zoomjax", "--config", f"{folder / 'zoom_sweep.py'}:runlocal", "--config.limit=1",
      f"-config={folder / 'zoom_sweep.py'}", "--workdir=demo.py", "--", "--config=nope.py"]
  assert config_lib.resolve_config_flag(["p", "--config=zoom_sweep.py"], folder) == [
      "p", f"--config={folder / 'zoom_sweep.py'}"]


def _zoomjax_command(*args, cwd):
  """The `zoomjax` console script of this environment (setup.py entry_points), run with only the installed
  package on the path."""
  script = pathlib.Path(sys.executable).with_name("zoomjax")
  assert script.is_file(), f"{script} missing: reinstall zoomjax (pip install -e .)"
  env = dict(os.environ, PYTHONPATH="")
  return subprocess.run([str(script), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300,
                        check=False)


def test_zoomjax_command_runs_an_installed_config_by_name_from_another_directory(tmp_path):
  """`zoomjax --config zoom_preview.py:quick` from outside the repository, with a common-field override."""
  proc = _zoomjax_command("--config", "zoom_preview.py:quick", "--config.scales=(224,)",
                          "--config.compilation_cache_dir=off", f"--workdir={tmp_path / 'out'}", cwd=tmp_path)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert (tmp_path / "out" / "zoom_grid.png").exists()


def test_an_unknown_config_name_ends_in_one_line(tmp_path):
  proc = _zoomjax_command("--config=zoom_swep.py:runlocal", f"--workdir={tmp_path / 'out'}", cwd=tmp_path)
  assert proc.returncode == 2, proc.stderr[-3000:]
  lines = proc.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith("zoomjax: error: --config zoom_swep.py: no such file here"), lines
  assert "zoom_sweep.py" in lines[0] and "demo.py" in lines[0]
  assert not (tmp_path / "out").exists()


_SHADOWED = """
import pathlib, sys
# As under a non-editable install run from a checkout's root: zoomjax comes from the checkout, and nothing maps
# zoomjax.configs to its configs/ (this environment's editable-install finder is removed).
sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in getattr(f, "__module__", "")]
sys.path.insert(0, sys.argv[1])
import zoomjax
from zoomjax.runtime import config as config_lib
assert pathlib.Path(zoomjax.__file__).parent == pathlib.Path(sys.argv[1]) / "zoomjax", zoomjax.__file__
try:
  import zoomjax.configs
  sys.exit("zoomjax.configs importable before bind_checkout_configs: the test shows nothing")
except ImportError:
  pass
config_lib.bind_checkout_configs()
from zoomjax.configs import demo
print(demo.get_config("runlocal").grid.scales, config_lib.resolve_config_path("demo.py:runlocal"))
"""


def test_a_checkout_shadowing_the_installed_package_still_has_its_configs(tmp_path):
  """`python -m zoomjax.main --config configs/demo.py` in the root of a checkout whose zoomjax is not the
  installed one: the checkout's configs/ become zoomjax.configs, so demo.py finds zoom_sweep.py."""
  ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
  for name in ("zoomjax", "configs"):
    shutil.copytree(REPO / name, tmp_path / name, ignore=ignore)
  proc = subprocess.run([sys.executable, "-c", _SHADOWED, str(tmp_path)], cwd=tmp_path, capture_output=True,
                        text=True, timeout=120, check=False, env=dict(os.environ, PYTHONPATH=""))
  assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout
  assert proc.stdout.split() == ["(224,", "256)", f"{tmp_path / 'configs' / 'demo.py'}:runlocal"], proc.stdout


def test_main_runs_a_config_by_absolute_path_from_another_directory(tmp_path):
  """`--config /abs/path/configs/x.py` (a path that exists is used as given) from outside the repository."""
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
