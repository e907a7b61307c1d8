"""What `pip install .` gives: the wheel built from this checkout carries the package, the configs, the report
assets, the license and the `zoomjax` command, and its base requirements hold no TensorFlow; a build that needs
TensorFlow says what to install.

The wheel is built once (`pip wheel --no-deps --no-build-isolation`, seconds) from a copy of the files setup.py
reads, so the checkout gets no build/ or egg-info from the test.
"""
import builtins
import email.parser
import io
import pathlib
import shutil
import subprocess
import sys
import tarfile
import zipfile

import numpy as np
import pytest
from PIL import Image

REPO = pathlib.Path(__file__).resolve().parents[1]
# Written into the copy's asset folder: the wheel must carry whatever lies there (setup.py package_data).
PROBE_ASSET = "zoomjax/reports/assets/probe-asset.css"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> zipfile.ZipFile:
  src = tmp_path_factory.mktemp("src")
  ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
  for name in ("setup.py", "README.md", "LICENSE"):
    shutil.copy2(REPO / name, src / name)
  for name in ("zoomjax", "configs"):
    shutil.copytree(REPO / name, src / name, ignore=ignore)
  (src / PROBE_ASSET).parent.mkdir(parents=True, exist_ok=True)
  (src / PROBE_ASSET).write_text("/* probe */\n")
  out = tmp_path_factory.mktemp("wheel")
  proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                         "--wheel-dir", str(out), str(src)], capture_output=True, text=True, timeout=300, check=False)
  assert proc.returncode == 0, proc.stderr[-3000:]
  (path,) = out.glob("zoomjax-*.whl")
  with zipfile.ZipFile(path) as zf:
    yield zf


def _dist_info(zf: zipfile.ZipFile, name: str) -> str:
  """The text of `name` (a path under the .dist-info folder, e.g. METADATA)."""
  matches = [n for n in zf.namelist() if n.split("/")[0].endswith(".dist-info") and n.split("/", 1)[1] == name]
  assert len(matches) == 1, (name, [n for n in zf.namelist() if ".dist-info/" in n])
  return zf.read(matches[0]).decode()


def test_wheel_carries_every_module_and_the_configs_as_zoomjax_configs(wheel):
  names = set(wheel.namelist())
  modules = {p.relative_to(REPO).as_posix() for p in (REPO / "zoomjax").rglob("*.py") if "__pycache__" not in p.parts}
  assert "zoomjax/runtime/config.py" in modules and not modules - names, sorted(modules - names)
  configs = sorted(p.name for p in (REPO / "configs").glob("*.py"))
  assert {"__init__.py", "zoom_sweep.py", "demo.py"} <= set(configs)
  assert {f"zoomjax/configs/{c}" for c in configs} <= names, sorted(n for n in names if "configs" in n)
  assert not [n for n in names if n.startswith(("configs/", "tests/", "experiments/"))]
  for c in configs:  # The checkout's files, unchanged.
    assert wheel.read(f"zoomjax/configs/{c}") == (REPO / "configs" / c).read_bytes(), c


def test_wheel_carries_the_report_assets(wheel):
  names = set(wheel.namelist())
  assert PROBE_ASSET in names
  shipped = sorted(p.relative_to(REPO).as_posix() for p in (REPO / "zoomjax/reports/assets").glob("*")
                   if p.is_file()) if (REPO / "zoomjax/reports/assets").is_dir() else []
  assert not set(shipped) - names, sorted(set(shipped) - names)


def test_wheel_license_metadata_and_command(wheel):
  license_text = [n for n in wheel.namelist() if ".dist-info/" in n and n.rsplit("/", 1)[1] == "LICENSE"]
  assert len(license_text) == 1 and wheel.read(license_text[0]) == (REPO / "LICENSE").read_bytes()
  assert (REPO / "LICENSE").read_text().split()[:4] == ["Apache", "License", "Version", "2.0,"]
  meta = email.parser.Parser().parsestr(_dist_info(wheel, "METADATA"))
  assert meta["Name"] == "zoomjax" and meta["License"] == "Apache-2.0"
  assert meta["Description-Content-Type"] == "text/markdown"
  assert meta.get_payload().strip() == (REPO / "README.md").read_text().strip()  # long_description
  assert "Programming Language :: Python :: 3.11" in meta.get_all("Classifier")
  assert sorted(meta.get_all("Provides-Extra")) == ["test", "tfds"]
  entry_points = _dist_info(wheel, "entry_points.txt")
  assert "[console_scripts]" in entry_points and "zoomjax = zoomjax.main:run" in entry_points


def test_base_requirements_hold_no_tensorflow(wheel):
  """`pip install zoomjax` stays light (1.4 GB less); TensorFlow is the `tfds` extra."""
  meta = email.parser.Parser().parsestr(_dist_info(wheel, "METADATA"))
  requires = meta.get_all("Requires-Dist")
  base = [r for r in requires if "extra ==" not in r]
  names = [r.split(";")[0].split("[")[0].split(">")[0].split("=")[0].split("<")[0].strip().lower() for r in base]
  assert "tensorflow-datasets" in names and "jax" in names  # The parse sees the requirements.
  heavy = [n for n in names if n.replace("_", "-") in ("tensorflow", "tensorflow-cpu", "keras", "tf-nightly")]
  assert not heavy, heavy
  assert [r for r in requires if r.startswith("tensorflow-cpu") and 'extra == "tfds"' in r], requires


def _jpeg(value: int) -> bytes:
  buf = io.BytesIO()
  Image.fromarray(np.full((10, 9, 3), value, np.uint8)).save(buf, "JPEG")
  return buf.getvalue()


def test_a_build_that_needs_tensorflow_names_the_extra(tmp_path, monkeypatch):
  """Without TensorFlow (simulated: the `import tensorflow` statement fails), building TFDS's imagenet2012 from its
  tar ends in a user error naming the install command, before any build starts."""
  import zoomjax.data as zd  # pylint: disable=import-outside-toplevel
  from zoomjax.errors import UserError  # pylint: disable=import-outside-toplevel
  with tarfile.open(tmp_path / "ILSVRC2012_img_val.tar", "w") as tf:
    data = _jpeg(40)
    info = tarfile.TarInfo("ILSVRC2012_val_00000001.JPEG")
    info.size = len(data)
    tf.addfile(info, io.BytesIO(data))
  real_import = builtins.__import__

  def no_tensorflow(name, *args, **kwargs):
    if name.split(".")[0] == "tensorflow":
      raise ModuleNotFoundError("No module named 'tensorflow'", name="tensorflow")
    return real_import(name, *args, **kwargs)

  # Not sys.modules["tensorflow"] = None: TFDS would take that for a loaded TensorFlow.
  monkeypatch.setattr(builtins, "__import__", no_tensorflow)
  with pytest.raises(UserError) as e:
    zd.get_dataset("imagenet2012", manual_dir=tmp_path, data_dir=tmp_path / "tfds")
  assert str(e.value) == (f"building imagenet2012 from {tmp_path / 'ILSVRC2012_img_val.tar'} needs TensorFlow: "
                          "pip install 'zoomjax[tfds]' (import tensorflow: No module named 'tensorflow')")
  assert not (tmp_path / "tfds" / "imagenet2012").exists()
