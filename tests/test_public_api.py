"""The public API and docs/api.md agree: every documented name exists and is in its module's `__all__`, every
`__all__` name is documented, every public module has `__all__`, and `import zoomjax` loads nothing heavy."""
import importlib
import inspect
import json
import pathlib
import re
import subprocess
import sys
from typing import Dict, List

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
API_PAGE = REPO / "docs" / "api.md"
# The modules the API page documents, one section each.
PUBLIC = ("zoomjax", "zoomjax.zoom", "zoomjax.models", "zoomjax.data", "zoomjax.tta", "zoomjax.analysis",
          "zoomjax.jobs", "zoomjax.reports")
# Modules behind the public packages that also declare their exports.
WITH_ALL = PUBLIC + ("zoomjax.tta.memo", "zoomjax.tta.augment", "zoomjax.tta.zoom_tta", "zoomjax.tta.entropy",
                     "zoomjax.models.registry", "zoomjax.models.bundle")
SECTION = re.compile(r"^## `([\w.]+)`\s*$")
ITEM = re.compile(r"^- `([A-Za-z_]\w*)")


def parse_api_page(text: str) -> Dict[str, List[str]]:
  """module -> the names of its bullet items, in page order (`## \\`module\\`` headings, `- \\`name...` items)."""
  out: Dict[str, List[str]] = {}
  module = None
  for line in text.splitlines():
    m = SECTION.match(line)
    if m:
      module = m.group(1)
      assert module not in out, f"docs/api.md: section {module} appears twice"
      out[module] = []
      continue
    m = ITEM.match(line)
    if m and module is not None:
      out[module].append(m.group(1))
  return out


def mismatches(documented: Dict[str, List[str]], exported: Dict[str, List[str]], has) -> List[str]:
  """What disagrees between the page and the code, one line each (empty when they agree)."""
  bad = []
  for module in sorted(set(exported) - set(documented)):
    bad.append(f"{module}: no section in docs/api.md")
  for module, names in sorted(documented.items()):
    if module not in exported:
      bad.append(f"{module}: documented, but not a public module (or it has no __all__)")
      continue
    bad += [f"{module}.{n}: documented twice" for n in sorted({n for n in names if names.count(n) > 1})]
    bad += [f"{module}.{n}: documented but missing from the code" for n in names if not has(module, n)]
    bad += [f"{module}.{n}: documented but not in __all__" for n in names
            if has(module, n) and n not in exported[module]]
    bad += [f"{module}.{n}: in __all__ but not documented" for n in exported[module] if n not in names]
  return bad


def _has(module: str, name: str) -> bool:
  return hasattr(importlib.import_module(module), name)


def test_parser_and_checker_catch_each_kind_of_drift():
  page = "## `a`\n- `f(x)`: one\n- `g`: two\n- `g`: again\n## `b`\n- `h`: three\ntext `- k`\n"
  documented = parse_api_page(page)
  assert documented == {"a": ["f", "g", "g"], "b": ["h"]}
  exported = {"a": ["f", "missing_doc"], "c": ["x"]}
  has = lambda module, name: name != "h" and not (module == "a" and name == "g")  # noqa: E731
  assert mismatches(documented, exported, has) == [
      "c: no section in docs/api.md", "a.g: documented twice", "a.g: documented but missing from the code",
      "a.g: documented but missing from the code", "a.missing_doc: in __all__ but not documented",
      "b: documented, but not a public module (or it has no __all__)"]


def test_api_page_documents_exactly_the_public_names():
  documented = parse_api_page(API_PAGE.read_text())
  exported = {m: list(importlib.import_module(m).__all__) for m in PUBLIC}
  assert mismatches(documented, exported, _has) == []


@pytest.mark.parametrize("module", WITH_ALL)
def test_every_exported_name_exists_and_is_documented_in_code(module):
  mod = importlib.import_module(module)
  assert mod.__doc__ and mod.__doc__.strip(), f"{module} has no docstring"
  assert len(mod.__all__) == len(set(mod.__all__)), f"{module}.__all__ repeats a name"
  for name in mod.__all__:
    obj = getattr(mod, name)  # Lazy packages import on attribute access.
    if inspect.isfunction(obj) or inspect.isclass(obj):
      assert inspect.getdoc(obj), f"{module}.{name} has no docstring"


@pytest.mark.parametrize("job", importlib.import_module("zoomjax.jobs").__all__)
def test_every_job_runs_from_config_and_workdir(job):
  run = getattr(importlib.import_module(f"zoomjax.jobs.{job}"), "run")
  assert list(inspect.signature(run).parameters)[:2] == ["config", "workdir"], job


def test_models_and_data_have_one_reading_of_a_config_block():
  """The jobs build models and datasets through from_config only (not models.load / data.get_dataset)."""
  offenders = []
  for path in sorted((REPO / "zoomjax" / "jobs").glob("*.py")) + [REPO / "zoomjax/analysis/sweep_results.py"]:
    text = path.read_text()
    offenders += [f"{path.name}: {m.group(0)}" for m in re.finditer(r"\b(models\.load|data\.get_dataset)\(", text)]
  assert offenders == []


_PROBE = """
import json, sys
import zoomjax
before = sorted(m for m in sys.modules if m.startswith("zoomjax") or m in ("jax", "flax", "tensorflow"))
zoomjax.tta  # attribute access loads the subpackage
print(json.dumps({"before": before, "after": "zoomjax.tta.memo" in sys.modules, "all": dir(zoomjax)}))
"""


def test_import_zoomjax_is_lazy():
  proc = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=300, check=False)
  assert proc.returncode == 0, proc.stderr[-3000:]
  out = json.loads(proc.stdout.strip().splitlines()[-1])
  assert out["before"] == ["zoomjax"], out["before"]  # Not even jax until a subpackage is touched.
  assert out["after"] and set(importlib.import_module("zoomjax").__all__) <= set(out["all"])
  with pytest.raises(AttributeError, match="no attribute 'nope'"):
    getattr(importlib.import_module("zoomjax"), "nope")
