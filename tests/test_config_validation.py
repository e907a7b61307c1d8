"""Every field of every job's config is declared (a number by its range, a word by its set of values, a path by
its kind, other text as free), and a bad value (NaN, infinity, negative, zero where not allowed, a misspelt word,
a file where a folder belongs, a missing input, a place that cannot be written), a bad `:args` value, an unknown
paper column, a workdir inside a class-folder dataset or a model that cannot take the job's crop ends the run with
one line naming the field and what it may be, exit status 2, no traceback, nothing written; from `zoomjax.main`
and from each job's `run` alike.

The walks discover the fields from the configs themselves, so a new field without a declaration fails here.
Values go through ml_collections' `--config.<field>=VALUE` parsing (as in `zoomjax.main`) in-process; a few
subprocess runs check the exit status and that nothing is written."""
import importlib
import math
import os
import pathlib
import subprocess
import sys

import flax.linen as nn
import numpy as np
import pytest
from absl import flags
from ml_collections import config_flags
from PIL import Image

from zoomjax import errors
from zoomjax import main as zmain
from zoomjax.runtime import config as config_lib

import conftest

# ml_collections loads config files with importlib's deprecated load_module (a warning per parsed config).
pytestmark = pytest.mark.filterwarnings(r"ignore:the load_module\(\) method is deprecated:DeprecationWarning")

config_lib.bind_checkout_configs()

CONFIGS = {"zoom_sweep": (None, "runlocal"), "zoom_preview": (None, "quick"), "tta": (None, "runlocal"),
           "evaluate": (None, "runlocal"), "study": (None, "runlocal"), "demo": (None, "runlocal"),
           "imagenet_c": (None, "runlocal")}


def test_the_walks_cover_every_installed_config():
  assert sorted(CONFIGS) == [c[:-3] for c in config_lib.available_configs()]


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


# ------------------------------------------------------------------------------------- text and path fields

PATH_SPECS = (config_lib.WritableDir, config_lib.InputDir, config_lib.InputFile)


def _specs(name):
  return {**config_lib.COMMON_RANGES, **_module(name).RANGES}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_every_text_field_is_declared_checked_or_free(name):
  """A text field (a word, a path, a name) is a OneOf, a path spec or knowingly FreeText: a new field without a
  declaration fails here."""
  ranges = _specs(name)
  fields = set()
  for arg in CONFIGS[name]:
    fields |= set(config_lib.text_fields(_module(name).get_config(arg)))
  undeclared = sorted(f for f in fields if isinstance(ranges.get(f), (config_lib.Range, type(None))))
  assert not undeclared, f"configs/{name}.py: text fields without a declaration in RANGES: {undeclared}"


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_a_typo_in_every_fixed_text_field_ends_in_one_line(name, tmp_path):
  arg = CONFIGS[name][-1]
  workdir = tmp_path / "work"
  leaves = dict(config_lib._leaves(_module(name).get_config(arg)))  # pylint: disable=protected-access
  checked = 0
  for path, spec in _specs(name).items():
    if not isinstance(spec, config_lib.OneOf) or path not in leaves:
      continue
    message = _message(_parse(name, arg, f"--config.{path}=nope"), workdir)
    assert message.startswith(f"--config.{path}='nope': not one of {', '.join(spec.choices)}"), (path, message)
    assert "\n" not in message
    checked += 1
  expected = {"zoom_sweep": 5, "demo": 5, "tta": 5, "evaluate": 3, "study": 2, "zoom_preview": 0,
              "imagenet_c": 6}[name]
  assert checked >= expected, (name, checked)
  assert not workdir.exists()


def _read_only(folder: pathlib.Path, monkeypatch) -> None:
  """`folder` made one the user may not write to (see test_read_only_workdir_is_refused on root)."""
  if os.geteuid() == 0:
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode, **kw: False if pathlib.Path(path) == folder
                        else real_access(path, mode, **kw))
  folder.chmod(0o500)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_every_path_field_refuses_a_file_for_a_folder_and_a_read_only_place(name, tmp_path, monkeypatch):
  """Each path field of each job (workdir, cache folders, models_file, data roots, labels files, checkpoints,
  the preview image): a file where a folder is expected, a folder where a file is, a missing file and a folder
  that cannot be written each end in one line naming the field; reading from a read-only place is fine."""
  arg = CONFIGS[name][-1]
  leaves = dict(config_lib._leaves(_module(name).get_config(arg)))  # pylint: disable=protected-access
  a_file, a_folder, ro = tmp_path / "a_file", tmp_path / "a_folder", tmp_path / "ro"
  a_file.write_text("x")
  a_folder.mkdir()
  ro.mkdir()
  (ro / "inside.txt").write_text("x")
  workdir = tmp_path / "work"
  _read_only(ro, monkeypatch)
  try:
    fields = [(p, s) for p, s in _specs(name).items() if isinstance(s, PATH_SPECS) and p in leaves]
    for path, spec in fields:
      def message(value, path=path):
        return _message(_parse(name, arg, f"--config.{path}={value}"), workdir)
      if isinstance(spec, config_lib.InputFile):
        assert message(a_folder) == f"--config.{path} {a_folder}: is a folder, not a file; give the file's path"
        assert message(tmp_path / "none.txt") == (f"--config.{path} {tmp_path / 'none.txt'} not found; give the "
                                                  "path of an existing file")
        assert message(ro / "inside.txt") == "", path  # Read-only is fine for reading.
      else:
        assert message(a_file) == f"--config.{path} {a_file}: is a file, not a folder; give a folder path"
        assert "lies under" in message(a_file / "sub")
        if isinstance(spec, config_lib.WritableDir):
          assert message(ro / "sub").startswith(f"--config.{path} {ro / 'sub'}: cannot write there"), path
        else:
          assert message(ro) == "", path
    assert _message(_module(name).get_config(arg), a_file) == (f"--workdir {a_file}: is a file, not a folder; "
                                                               "give a folder path")
    assert _message(_module(name).get_config(arg), ro / "run").startswith(f"--workdir {ro / 'run'}: cannot write")
  finally:
    ro.chmod(0o700)
  expected = {"zoom_sweep": 5, "demo": 5, "tta": 5, "evaluate": 9, "study": 1, "zoom_preview": 2,
              "imagenet_c": 5}[name]
  assert len(fields) >= expected, (name, [p for p, _ in fields])
  assert not workdir.exists() and not (ro / "sub").exists() and not (ro / "run").exists()
  assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file", "a_folder", "ro"]


# ------------------------------------------------------------------------- workdirs inside a folder dataset

def _class_folder(root: pathlib.Path) -> pathlib.Path:
  (root / "n01440764").mkdir(parents=True)
  Image.new("RGB", (8, 8)).save(root / "n01440764" / "a.png")
  return root


@pytest.mark.parametrize("name", ["zoom_sweep", "tta", "evaluate"])
def test_a_workdir_or_cache_inside_a_class_folder_dataset_is_refused(name, tmp_path):
  data = _class_folder(tmp_path / "data")
  arg = f"runlocal,data=folder:{data}"
  for workdir in (data / "runs" / "x", data, data / "n01440764"):
    message = _message(_module(name).get_config(arg), workdir)
    assert message == (f"--workdir {workdir}: lies inside folder:{data} ({data}), whose files are all read as "
                       "images; give a folder outside it"), message
  assert _message(_module(name).get_config(arg), tmp_path / "outside") == ""
  if name == "evaluate":
    config = _parse(name, arg, f"--config.view_cache_dir={data / 'views'}")
    assert _message(config, tmp_path / "w").startswith(f"--config.view_cache_dir {data / 'views'}: lies inside ")
  (data / "labels.csv").write_text("file,label\nn01440764/a.png,n01440764\n")  # Listed files only: allowed.
  assert _message(_module(name).get_config(arg), data / "runs") == ""
  assert sorted(p.name for p in data.iterdir()) == ["labels.csv", "n01440764"]


def test_a_symlinked_workdir_inside_a_dataset_and_a_dataset_that_is_a_file_are_refused(tmp_path):
  data = _class_folder(tmp_path / "data")
  (tmp_path / "link").symlink_to(data, target_is_directory=True)
  message = _message(_module("zoom_sweep").get_config(f"runlocal,data=folder:{data}"), tmp_path / "link" / "run")
  assert "lies inside folder:" in message, message
  a_file = tmp_path / "a_file"
  a_file.write_text("x")
  message = _message(_module("evaluate").get_config(f"runlocal,data=folder:{a_file}@x"), tmp_path / "w")
  assert message == f"folder:{a_file}: {a_file} is a file, not a folder; give the dataset's folder"


def test_a_preview_workdir_inside_its_images_class_folders_is_refused(tmp_path):
  data = _class_folder(tmp_path / "data")
  config = _module("zoom_preview").get_config("quick")
  config.image = str(data / "n01440764" / "a.png")
  assert "lies inside the class folders of config.image" in _message(config, data / "preview")
  assert _message(config, tmp_path / "preview") == ""


# --------------------------------------------------------------------- the same check from Python: run()

def _jobs():
  # pylint: disable-next=g-import-not-at-top
  from zoomjax.jobs import evaluate, imagenet_c, study, tta, zoom_preview, zoom_sweep
  return {"zoom_sweep": zoom_sweep, "demo": zoom_sweep, "tta": tta, "evaluate": evaluate, "study": study,
          "zoom_preview": zoom_preview, "imagenet_c": imagenet_c}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_each_jobs_run_checks_its_config_as_main_does(name, tmp_path):
  """`zoomjax.jobs.<job>.run(config, workdir)` called from Python refuses what zoomjax.main refuses, with the
  same line, before it loads or writes anything."""
  arg = CONFIGS[name][-1]
  field = {"zoom_preview": "thumb", "study": "top_k", "imagenet_c": "tta.batch_size"}.get(name, "batch_size")
  config = _parse(name, arg, f"--config.{field}=0")
  workdir = tmp_path / "work"
  expected = _message(config, workdir)
  assert expected.startswith(f"--config.{field}=0: must be an integer >= 1"), expected
  with pytest.raises(errors.UserError) as e:
    _jobs()[name].run(config, str(workdir))
  assert errors.user_message(e.value) == expected
  data = _class_folder(tmp_path / "data")
  if name in ("zoom_sweep", "tta", "evaluate", "imagenet_c"):
    config = _module(name).get_config(f"runlocal,data=folder:{data}")
    with pytest.raises(errors.UserError, match="lies inside folder:"):
      _jobs()[name].run(config, str(data / "run"))
  assert not workdir.exists() and not (data / "run").exists()


# ------------------------------------------------------------------------- a model's input size vs the crop

@pytest.fixture(scope="module")
def vit_tiny():
  """A ViT whose learned position embedding fixes its input at 224x224 (random weights)."""
  from zoomjax import models  # pylint: disable=g-import-not-at-top
  return models.load("vit_tiny", random_init=True)


def test_input_size_check_refuses_a_fixed_size_model_and_passes_a_cnn(vit_tiny):
  from zoomjax import models  # pylint: disable=g-import-not-at-top
  with pytest.raises(errors.UserError) as e:
    vit_tiny.check_input_size(64, "--config.grid.crop")
  message = errors.user_message(e.value)
  assert message.startswith("model 'vit_tiny' takes 224x224 inputs (preprocessing.input_size 224), not the 64x64 "
                            "views of --config.grid.crop=64 (ValueError: position embedding"), message
  assert message.endswith("; set --config.grid.crop=224") and "\n" not in message
  vit_tiny.check_input_size(224, "--config.grid.crop")
  params = {"Conv_0": {"kernel": np.zeros((3, 3, 3, 4), np.float32), "bias": np.zeros(4, np.float32)},
            "Dense_0": {"kernel": np.zeros((4, 10), np.float32), "bias": np.zeros(10, np.float32)}}
  cnn = models.ModelBundle("cnn", _TinyCNN(), {"params": params}, vit_tiny.preprocessing, num_classes=10)
  cnn.check_input_size(256, "--config.grid.crop")  # A CNN takes any size.


class _TinyCNN(nn.Module):
  @nn.compact
  def __call__(self, x):
    return nn.Dense(10)(nn.Conv(4, (3, 3))(x).mean((1, 2))), {}


def test_main_refuses_a_workdir_inside_a_class_folder_dataset_in_one_line(tmp_path):
  data = _class_folder(tmp_path / "data")
  proc = _main("--config", f"configs/zoom_sweep.py:runlocal,data=folder:{data}", "--workdir", str(data / "run"))
  assert proc.returncode == 2, proc.stderr
  assert proc.stderr.strip().splitlines() == [
      f"zoomjax: error: --workdir {data / 'run'}: lies inside folder:{data} ({data}), whose files are all read as "
      "images; give a folder outside it"]
  assert sorted(p.name for p in data.iterdir()) == ["n01440764"]


@pytest.mark.parametrize("name, override, field", [
    ("zoom_sweep", "--config.grid.crop=64", "--config.grid.crop"),
    ("tta", "--config.view.crop=64", "--config.view.crop"),
    ("tta", "--config.memo.view_size=64", "--config.memo.view_size"),
    ("evaluate", "--config.preprocessing.input_size=64", "--config.preprocessing.input_size"),
])
def test_a_model_whose_input_size_differs_from_the_crop_fails_before_compiling(name, override, field, tmp_path,
                                                                                vit_tiny, monkeypatch):
  """The job refuses the pair in one line naming the model, its size and the field, before any step is compiled
  and before anything is written (the fault run got an error from inside the compiled step)."""
  from zoomjax import models  # pylint: disable=g-import-not-at-top
  from zoomjax.runtime import parallel  # pylint: disable=g-import-not-at-top
  monkeypatch.setattr(models, "from_config", lambda *a, **k: vit_tiny)
  compiled = []
  real_jit = parallel.data_parallel_jit
  monkeypatch.setattr(parallel, "data_parallel_jit", lambda *a, **k: compiled.append(1) or real_jit(*a, **k))
  extra = ("--config.view.crop=224",) if "memo" in override else ()
  if name == "zoom_sweep":
    extra = ("--config.grid.scales=(256,)",)
  config = _parse(name, "runlocal", override, *extra)
  with pytest.raises(errors.UserError) as e:
    _jobs()[name].run(config, str(tmp_path / "work"))
  message = errors.user_message(e.value)
  assert message.startswith("model 'vit_tiny' takes 224x224 inputs") and f"of {field}=64 (" in message, message
  assert message.endswith("own size), or evaluate efficientnet_lite_tiny in a run of its own" if name == "evaluate"
                          else f"set {field}=224"), message
  assert not compiled
  if name != "evaluate":  # evaluate makes its workdir once the datasets are read; it holds no pair yet.
    assert not (tmp_path / "work").exists()
  else:
    assert not list((tmp_path / "work").rglob("*.npz")) and not list((tmp_path / "work").rglob("*.json"))
