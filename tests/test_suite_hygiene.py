"""Rules for the test suite itself.

A test module that changes jax's configuration when it is imported changes it for every test collected after
it (pytest imports all modules first): e.g. XLA's optimisations switched off at import would make the parity
and golden tests of other modules check unoptimised executables. Use conftest's `fast_compile` /
`fast_compile_module` fixtures instead, which restore the flag.
"""
import ast
import pathlib
import textwrap

import jax

import conftest

TESTS = pathlib.Path(__file__).resolve().parent
# conftest.py may set where executables are cached: that never changes what they compute.
ALLOWED = {("conftest.py", "jax_compilation_cache_dir")}


def _is_main_guard(node: ast.AST) -> bool:
  """`if __name__ == "__main__":` (subprocess workers may configure jax there: it never runs under pytest)."""
  return (isinstance(node, ast.If) and isinstance(node.test, ast.Compare) and isinstance(node.test.left, ast.Name)
          and node.test.left.id == "__name__" and any(isinstance(c, ast.Constant) and c.value == "__main__"
                                                      for c in node.test.comparators))


_BLOCKS = ("body", "orelse", "finalbody", "handlers")


def _import_time_statements(body):
  """Statements that run when the module is imported: the module body, through if/try/with/for blocks and
  class bodies, not inside functions or `if __name__ == "__main__":`."""
  for node in body:
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) or _is_main_guard(node):
      continue
    yield node
    for field in _BLOCKS:
      yield from _import_time_statements(getattr(node, field, None) or [])


def _own_nodes(stmt):
  """The expressions of `stmt` itself (its nested blocks are statements of their own)."""
  for field, value in ast.iter_fields(stmt):
    if field not in _BLOCKS:
      for v in value if isinstance(value, list) else [value]:
        if isinstance(v, ast.AST):
          yield from ast.walk(v)


def import_time_config_updates(source: str, filename: str = "<test>"):
  """[(line, flag)] for every `<...>config.update("flag", ...)` call that runs at import time."""
  found = []
  for stmt in _import_time_statements(ast.parse(source, filename).body):
    for node in _own_nodes(stmt):
      if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "update"
          and ast.unparse(node.func.value).split(".")[-1] == "config"):
        flag = node.args[0].value if node.args and isinstance(node.args[0], ast.Constant) else "?"
        found.append((node.lineno, flag))
  return found


def test_no_test_module_sets_jax_config_at_import():
  bad = []
  for path in sorted(TESTS.rglob("*.py")):
    for line, flag in import_time_config_updates(path.read_text(encoding="utf-8"), str(path)):
      if (path.name, flag) not in ALLOWED:
        bad.append(f"{path.relative_to(TESTS.parent)}:{line}: jax.config.update({flag!r}, ...) at import time")
  assert not bad, ("test modules must not change jax's configuration at import (use the fast_compile fixtures "
                   "of tests/conftest.py):\n" + "\n".join(bad))


def test_the_check_finds_import_time_updates():
  src = textwrap.dedent('''
    import jax
    from jax import config
    jax.config.update("jax_disable_most_optimizations", True)
    if True:
      config.update("jax_enable_x64", True)
    try:
      x = jax.config.update("jax_debug_nans", True)
    except ImportError:
      pass
    class T:
      jax.config.update("jax_log_compiles", True)
    def helper():
      jax.config.update("jax_platforms", "cpu")  # At call time: fine.
    if __name__ == "__main__":
      jax.config.update("jax_threefry_partitionable", True)  # Subprocess worker: fine.
''')
  assert import_time_config_updates(src) == [(4, "jax_disable_most_optimizations"), (6, "jax_enable_x64"),
                                             (8, "jax_debug_nans"), (12, "jax_log_compiles")]


def _flag() -> bool:
  return jax.config.read("jax_disable_most_optimizations")


def test_fast_compile_sets_and_restores_the_flag():
  before = _flag()
  f = jax.jit(lambda x: x * 2.0)
  with conftest._most_optimizations_disabled():  # pylint: disable=protected-access
    assert _flag() is True
    assert float(f(1.0)) == 2.0 and f._cache_size() == 1  # pylint: disable=protected-access
  assert _flag() == before
  # jit's in-memory caches ignore the flag: the unoptimised executable must not outlive the fixture.
  assert f._cache_size() == 0  # pylint: disable=protected-access


def test_fast_compile_fixture(fast_compile):
  del fast_compile
  assert _flag() is True


def test_the_long_files_run_first_and_exist(request):
  tests_dir = pathlib.Path(__file__).parent
  assert all((tests_dir / name).is_file() for name in conftest.LONG_FILES_FIRST)
  names = [item.path.name for item in request.session.items]
  seen = [n for n in dict.fromkeys(names) if n in conftest.LONG_FILES_FIRST]
  assert seen == [n for n in conftest.LONG_FILES_FIRST if n in seen]  # Collected in the listed order.
