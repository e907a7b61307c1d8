"""The zoomjax package has no import cycles and its wings keep their direction (static: module- and
function-level imports both count)."""
import ast
import pathlib
import pkgutil
from typing import Dict, List, Optional, Set

import zoomjax

PACKAGE = "zoomjax"


def _modules() -> Dict[str, pathlib.Path]:
  """Every module of the package -> its source file."""
  root = pathlib.Path(zoomjax.__file__).parent
  out = {PACKAGE: root / "__init__.py"}
  for info in pkgutil.walk_packages([str(root)], prefix=PACKAGE + "."):
    rel = info.name.split(".")[1:]
    path = root.joinpath(*rel)
    out[info.name] = path / "__init__.py" if info.ispkg else path.with_suffix(".py")
  return out


def _resolve(name: str, modules: Dict[str, pathlib.Path]) -> Optional[str]:
  """The longest prefix of a dotted name that is a zoomjax module (None outside the package)."""
  parts = name.split(".")
  while parts:
    if ".".join(parts) in modules:
      return ".".join(parts)
    parts.pop()
  return None


def _imports(module: str, path: pathlib.Path, modules: Dict[str, pathlib.Path]) -> Set[str]:
  """zoomjax modules that `module` imports anywhere in its source (any scope)."""
  is_pkg = path.name == "__init__.py"
  out = set()
  for node in ast.walk(ast.parse(path.read_text(), str(path))):
    if isinstance(node, ast.Import):
      names = [a.name for a in node.names]
    elif isinstance(node, ast.ImportFrom):
      if node.level:  # Relative: resolve against this module's package.
        base = module.split(".") if is_pkg else module.split(".")[:-1]
        base = base[:len(base) - node.level + 1]
        src = ".".join(base + ([node.module] if node.module else []))
      else:
        src = node.module or ""
      # `from pkg import sub` imports the submodule pkg.sub; `from pkg import name` imports pkg.
      names = [f"{src}.{a.name}" if f"{src}.{a.name}" in modules else src for a in node.names]
    else:
      continue
    out.update(m for m in (_resolve(n, modules) for n in names) if m is not None and m != module)
  return out


def import_graph() -> Dict[str, Set[str]]:
  modules = _modules()
  return {m: _imports(m, p, modules) for m, p in modules.items()}


def find_cycle(graph: Dict[str, Set[str]]) -> Optional[List[str]]:
  """One cycle as [a, b, ..., a], or None (iterative DFS, deterministic order)."""
  state: Dict[str, int] = {}  # 1: on the stack, 2: done
  for start in sorted(graph):
    if state.get(start):
      continue
    stack = [(start, iter(sorted(graph[start])))]
    path = [start]
    state[start] = 1
    while stack:
      node, children = stack[-1]
      child = next(children, None)
      if child is None:
        stack.pop()
        path.pop()
        state[node] = 2
      elif state.get(child) == 1:
        return path[path.index(child):] + [child]
      elif not state.get(child):
        state[child] = 1
        path.append(child)
        stack.append((child, iter(sorted(graph.get(child, ())))))
  return None


def test_graph_sees_every_kind_of_import():
  graph = import_graph()
  assert "zoomjax.checkpoints.convert_torchvision" in graph["zoomjax.models.resnet"]
  assert "zoomjax.models.registry" in graph["zoomjax.models.resnet"]  # `from zoomjax.models import registry`
  assert "zoomjax.checkpoints" in graph["zoomjax.models.registry"]  # `from zoomjax.checkpoints import <name>`
  assert "zoomjax.zoom" in graph["zoomjax.jobs.zoom_sweep"]  # imported inside functions only


def test_find_cycle_names_the_cycle():
  assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
  assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycles():
  cycle = find_cycle(import_graph())
  assert cycle is None, "import cycle: " + " -> ".join(cycle)


def _in(module: str, package: str) -> bool:
  return module == package or module.startswith(package + ".")


def layering_violations(graph: Dict[str, Set[str]]) -> List[str]:
  """"module -> dependency" for every import that points the wrong way between the package's parts.

  runtime (how a job runs) imports nothing of zoomjax but errors; analysis (the maths over records) imports no
  reports and no jobs; reports import no jobs; converters never import models; kernels import neither models
  nor the zoom API.
  """
  rules = [
      ("zoomjax.runtime", lambda d: not _in(d, "zoomjax.runtime") and d not in ("zoomjax", "zoomjax.errors")),
      ("zoomjax.analysis", lambda d: _in(d, "zoomjax.reports") or _in(d, "zoomjax.jobs")),
      ("zoomjax.reports", lambda d: _in(d, "zoomjax.jobs")),
      ("zoomjax.checkpoints", lambda d: _in(d, "zoomjax.models")),
      ("zoomjax.kernels", lambda d: _in(d, "zoomjax.models") or d == "zoomjax.zoom"),
  ]
  bad = []
  for module, deps in sorted(graph.items()):
    for package, forbidden in rules:
      if _in(module, package):
        bad += [f"{module} -> {d}" for d in sorted(deps) if forbidden(d)]
  return bad


def test_layering_rules_catch_a_wrong_way_import():
  graph = {"zoomjax.analysis.metrics": {"zoomjax.reports.html", "zoomjax.zoom"},
           "zoomjax.runtime.shards": {"zoomjax.errors", "zoomjax.runtime.atomic", "zoomjax.data"},
           "zoomjax.reports.sweep": {"zoomjax.analysis.metrics", "zoomjax.jobs.study"}}
  assert layering_violations(graph) == ["zoomjax.analysis.metrics -> zoomjax.reports.html",
                                        "zoomjax.reports.sweep -> zoomjax.jobs.study",
                                        "zoomjax.runtime.shards -> zoomjax.data"]


def test_layering():
  assert layering_violations(import_graph()) == []


def test_top_level_holds_at_most_eight_modules():
  """The package's top level is the front door and the core; everything else lives in a wing."""
  root = pathlib.Path(zoomjax.__file__).parent
  modules = sorted(p.name for p in root.glob("*.py") if p.name != "__init__.py")
  assert len(modules) <= 8, modules


def test_converters_and_kernels_keep_out_of_models():
  graph = import_graph()
  for module, deps in graph.items():
    if module.startswith("zoomjax.checkpoints"):
      assert not {d for d in deps if d.startswith("zoomjax.models")}, module
    if module.startswith("zoomjax.kernels"):
      assert not {d for d in deps if d.startswith("zoomjax.models") or d == "zoomjax.zoom"}, module
