"""Every numeric config field of every job has a declared range, and a bad value (NaN, infinity, negative, zero
where not allowed), a bad `:args` value, an unknown paper column or an unwritable --workdir / view cache folder
ends the run with one line naming the field and the allowed range, exit status 2, no traceback, nothing written.

The walk discovers the fields from the configs themselves, so a new numeric field without a declared range fails
here. Values go through ml_collections' `--config.<field>=VALUE` parsing (as in `zoomjax.main`) in-process; two
subprocess runs check the exit status and that nothing is written."""
import importlib
import math
import os
import pathlib
import subprocess
import sys

import pytest
from absl import flags
from ml_collections import config_flags

from zoomjax import errors
from zoomjax import main as zmain
from zoomjax.runtime import config as config_lib

import conftest

# ml_collections loads config files with importlib's deprecated load_module (a warning per parsed config).
pytestmark = pytest.mark.filterwarnings(r"ignore:the load_module\(\) method is deprecated:DeprecationWarning")

config_lib.bind_checkout_configs()

CONFIGS = {"zoom_sweep": (None, "runlocal"), "zoom_preview": (None, "quick"), "tta": (None, "runlocal"),
           "evaluate": (None, "runlocal"), "study": (None, "runlocal"), "demo": (None, "runlocal")}


def _module(name):
  return importlib.import_module(f"zoomjax.configs.{name}")


def _parse(name: str, arg, *overrides: str):
  """The config `configs/<name>.py[:arg]` with `--config.<field>=VALUE` overrides, parsed as zoomjax.main does."""
  fv = flags.FlagValues()
  config_flags.DEFINE_config_file("config", None, "config", flag_values=fv, lock_config=True)
  path = str(conftest.REPO / "configs" / f"{name}.py") + (f":{arg}" if arg else "")
  argv = ["zoomjax", "--config", path, *overrides]
  saved, sys.argv = sys.argv, argv  # ml_collections reads its overrides from sys.argv.
  try:
    fv(argv)
  finally:
    sys.argv = saved
  return fv.config


def _message(config, workdir) -> str:
  """The one-line user error `zoomjax.main` would print for `config` ('' when it is accepted)."""
  try:
    zmain.check_config(config, str(workdir))
  except errors.UserError as e:
    return errors.user_message(e)
  return ""


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_every_numeric_field_has_a_declared_range(name):
  ranges = {**config_lib.COMMON_RANGES, **_module(name).RANGES}
  fields = set()
  for arg in CONFIGS[name]:
    fields |= set(config_lib.numeric_fields(_module(name).get_config(arg)))
  assert fields, name
  undeclared = sorted(f for f in fields if not isinstance(ranges.get(f), config_lib.Range))
  assert not undeclared, f"configs/{name}.py: numeric fields without a declared range in RANGES: {undeclared}"
  leaves = dict(config_lib._leaves(_module(name).get_config(CONFIGS[name][-1])))  # pylint: disable=protected-access
  stale = sorted(f for f in ranges if f not in leaves)
  assert not stale, f"configs/{name}.py: RANGES declares fields the config does not have: {stale}"


def _bad_values(spec: config_lib.Range, integer_field: bool):
  """A few values `spec` refuses that the field's type accepts: NaN, infinity, negative, zero, below the low."""
  candidates = [-1, 0] + ([] if spec.low is None else [spec.low - 1]) + ([] if spec.high is None else [spec.high + 1])
  if not integer_field:
    candidates = [math.nan, math.inf, -math.inf] + candidates
  out = []
  for v in candidates:
    v = int(v) if integer_field else float(v)
    if not spec.allows(v) and v not in out:
      out.append(v)
  return out


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_bad_values_of_every_numeric_field_end_in_one_line(name, tmp_path):
  arg = CONFIGS[name][-1]
  ranges = {**config_lib.COMMON_RANGES, **_module(name).RANGES}
  base = _module(name).get_config(arg)
  values = dict(config_lib._leaves(base))  # pylint: disable=protected-access
  workdir = tmp_path / "work"
  assert _message(base, workdir) == "", "the config as shipped must be accepted"
  checked = 0
  for path in config_lib.numeric_fields(base):
    spec, value = ranges[path], values[path]
    is_tuple = isinstance(value, tuple)
    sample = value[0] if is_tuple else value
    for bad in _bad_values(spec, isinstance(sample, int)):
      text = repr(bad) if not isinstance(bad, float) or math.isfinite(bad) else str(bad)
      override = f"--config.{path}=({text},)" if is_tuple else f"--config.{path}={text}"
      config = _parse(name, arg, override)
      message = _message(config, workdir)
      assert f"--config.{path}=" in message and spec.describe() in message, (override, message)
      assert "\n" not in message
      checked += 1
  assert checked >= 5, (name, checked)
  assert not workdir.exists(), "validation writes nothing"


@pytest.mark.parametrize("override, expected", [
    ("--config.memo.lr=nan", "--config.memo.lr=nan: must be a finite number >= 0"),
    ("--config.memo.lr=inf", "--config.memo.lr=inf: must be a finite number >= 0"),
    ("--config.memo.lr=-0.1", "--config.memo.lr=-0.1: must be a finite number >= 0"),
    ("--config.memo.weight_decay=-1.0", "--config.memo.weight_decay=-1.0: must be a finite number >= 0"),
    ("--config.memo.num_views=1", "--config.memo.num_views=1: must be an integer >= 2"),
    ("--config.memo.steps=-1", "--config.memo.steps=-1: must be an integer >= 0"),
    ("--config.zoom.view_chunk=0", "--config.zoom.view_chunk=0: must be an integer >= 1"),
    ("--config.max_pixels_warning=-1", "--config.max_pixels_warning=-1: must be an integer >= 0 (0 = never)"),
    ("--config.paper_dataset=XX", "--config.paper_dataset='XX': not one of IN, ReaL"),
])
def test_tta_cases_of_the_fault_run(override, expected, tmp_path):
  assert _message(_parse("tta", "runlocal", override), tmp_path / "w").startswith(expected)


@pytest.mark.parametrize("override, expected", [
    ("--config.view_cache_gb=nan", "--config.view_cache_gb=nan: must be a finite number >= 0 (0 = off)"),
    ("--config.gallery_size=-1", "--config.gallery_size=-1: must be an integer >= 0"),
    ("--config.preprocessing.std=(0.0,)", "--config.preprocessing.std=(0.0,): must be every item a finite number"),
])
def test_evaluate_cases_of_the_fault_run(override, expected, tmp_path):
  assert _message(_parse("evaluate", "runlocal", override), tmp_path / "w").startswith(expected)


@pytest.mark.parametrize("name", ["zoom_sweep", "tta", "evaluate"])
def test_negative_limit_arg_is_refused_not_read_as_all(name):
  with pytest.raises(errors.UserError, match=r"limit=-5: must be an integer >= -1"):
    _module(name).get_config("runlocal,limit=-5")


@pytest.mark.parametrize("name", ["zoom_sweep", "tta"])
def test_unknown_paper_column_names_the_known_ones(name, tmp_path):
  try:
    message = _message(_module(name).get_config("runlocal,paper=IN-Z"), tmp_path / "w")
  except errors.UserError as e:
    message = errors.user_message(e)
  assert "IN-Z" in message and "IN, ReaL, IN+ReaL, IN-A, IN-R, IN-S, ON" in message, message


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_workdir_that_is_a_file_or_under_a_file_is_refused(name, tmp_path):
  config = _module(name).get_config(CONFIGS[name][-1])
  a_file = tmp_path / "a_file"
  a_file.write_text("x")
  assert _message(config, a_file) == f"--workdir {a_file}: is a file, not a folder; give a folder path"
  assert "lies under" in _message(config, a_file / "sub" / "run")
  assert a_file.read_text() == "x"


def test_read_only_workdir_is_refused(tmp_path, monkeypatch):
  """A folder the user may not write to. Root writes through any mode bits, so where the tests run as root the
  permission answer (os.access, what the check asks) is made "no" for that folder instead of chmod."""
  ro = tmp_path / "ro"
  ro.mkdir()
  if os.geteuid() == 0:
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode, **kw: False if pathlib.Path(path) == ro
                        else real_access(path, mode, **kw))
  ro.chmod(0o500)
  try:
    message = _message(_module("tta").get_config("runlocal"), ro / "run")
  finally:
    ro.chmod(0o700)
  assert message.startswith(f"--workdir {ro / 'run'}: cannot write there"), message
  assert not (ro / "run").exists()


def test_view_cache_dir_that_is_a_file_is_refused(tmp_path):
  a_file = tmp_path / "cache"
  a_file.write_text("x")
  config = _parse("evaluate", "runlocal", f"--config.view_cache_dir={a_file}")
  assert _message(config, tmp_path / "w") == (f"--config.view_cache_dir {a_file}: is a file, not a folder; "
                                              "give a folder path")


def _main(*args):
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  return subprocess.run([sys.executable, "-m", "zoomjax.main", *args], cwd=conftest.REPO, env=env,
                        capture_output=True, text=True, timeout=120, check=False)


def test_main_exits_2_with_one_line_and_writes_nothing(tmp_path):
  work = tmp_path / "run"
  proc = _main("--config", "configs/tta.py:runlocal", "--workdir", str(work), "--config.memo.lr=nan")
  assert proc.returncode == 2, proc.stderr
  assert proc.stderr.strip() == "zoomjax: error: --config.memo.lr=nan: must be a finite number >= 0", proc.stderr
  assert not work.exists()
  a_file = tmp_path / "a_file"
  a_file.write_text("x")
  proc = _main("--config", "configs/evaluate.py:runlocal", "--workdir", str(work),
               f"--config.view_cache_dir={a_file}")
  assert proc.returncode == 2, proc.stderr
  assert proc.stderr.strip().splitlines() == [
      f"zoomjax: error: --config.view_cache_dir {a_file}: is a file, not a folder; give a folder path"]
  assert not work.exists()


def test_unknown_field_under_a_number_is_one_clean_line(tmp_path):
  proc = _main("--config", "configs/tta.py:runlocal", "--workdir", str(tmp_path / "w"),
               "--config.memo.lr.x=3")
  assert proc.returncode == 2, proc.stderr
  assert proc.stderr.strip() == "zoomjax: error: --config.memo.lr.x: the config has no field 'memo.lr.x'"
  assert "Attempting" not in proc.stderr and "\\" not in proc.stderr
