"""Shared test setup: the compilation cache, the shared real-data files, strictness under CI, fast compiles."""
import contextlib
import os
import pathlib

import jax
import pytest

# Compile time dominates the tiny models used in tests. The only jax flag a test module may set at import
# (tests/test_suite_hygiene.py enforces it): it changes where executables are stored, never what they compute.
jax.config.update("jax_compilation_cache_dir", os.path.expanduser("~/.cache/zoomjax/jax-tests"))

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
# Overridable (e.g. to check that CI fails loudly: CI=true ZOOMJAX_VAL100=/nonexistent pytest tests/test_data.py).
SHARED_VAL100 = pathlib.Path(os.environ.get("ZOOMJAX_VAL100") or SHARED / "imagenet-val-100")
CLIP_VOCAB = pathlib.Path(os.environ.get("ZOOMJAX_CLIP_VOCAB") or SHARED / "clip" / "bpe_simple_vocab_16e6.txt.gz")


def strict() -> bool:
  """True under CI (the environment variable CI is set, and not "0"/"false"): nothing a test needs may be missing."""
  return os.environ.get("CI", "").strip().lower() not in ("", "0", "false")


def require(condition: bool, what: str) -> None:
  """Fails the calling test under CI when `condition` is false, skips it otherwise; `what` says what is missing
  and how to provide it. The one place that decides what is optional: locally data or a browser may be absent,
  on CI (a clean clone with ../shared beside it, chromium installed by `make browser`) it must not be."""
  if condition:
    return
  if strict():
    pytest.fail(f"required under CI (CI={os.environ.get('CI')!r}): {what}", pytrace=False)
  pytest.skip(what)


@pytest.fixture(scope="session")
def val100_dir() -> pathlib.Path:
  """../shared/data/imagenet-val-100: 100 real ImageNet val photos + labels.csv (ZOOMJAX_VAL100 overrides)."""
  require((SHARED_VAL100 / "labels.csv").is_file(),
          f"real photos not found: expected {SHARED_VAL100}/labels.csv (set ZOOMJAX_VAL100 to the folder)")
  return SHARED_VAL100


@pytest.fixture(scope="session")
def clip_vocab() -> pathlib.Path:
  """CLIP's real BPE vocabulary, ../shared/data/clip/bpe_simple_vocab_16e6.txt.gz (ZOOMJAX_CLIP_VOCAB overrides)."""
  require(CLIP_VOCAB.is_file(), f"CLIP's BPE vocabulary not found: expected {CLIP_VOCAB} (from the open_clip_torch "
                                "wheel; set ZOOMJAX_CLIP_VOCAB to the file)")
  return CLIP_VOCAB


@contextlib.contextmanager
def _most_optimizations_disabled():
  previous = jax.config.read("jax_disable_most_optimizations")
  jax.config.update("jax_disable_most_optimizations", True)
  try:
    yield
  finally:
    jax.config.update("jax_disable_most_optimizations", previous)
    # jit's in-memory caches are not keyed by this flag: without this, later tests calling the same jitted
    # function on the same shapes would silently reuse the unoptimised executables. (The on-disk compilation
    # cache is keyed by it: optimised and unoptimised executables are stored apart.)
    jax.clear_caches()


@pytest.fixture
def fast_compile():
  """Compiles with XLA's optimisations mostly off (jax_disable_most_optimizations) for one test; restores the
  previous value and clears jit's in-memory caches afterwards.

  For tests whose cost is compiling tiny programs (job plumbing, resume, file formats). Executables compiled
  inside run about 2x slower and are not the ones users run. Parity, golden and gradient tests must NEVER use
  it (nor fast_compile_module): they have to check the executables users get.
  """
  with _most_optimizations_disabled():
    yield


@pytest.fixture(scope="module")
def fast_compile_module():
  """`fast_compile` for a whole module: `pytestmark = pytest.mark.usefixtures("fast_compile_module")`, so that the
  module's tests share their compiled programs. Only for modules without parity, golden or gradient tests: the
  flag stays on until the module's last test has run."""
  with _most_optimizations_disabled():
    yield


# The longest files first. `make test` hands whole files to its 2 workers (--dist loadfile) in collection order;
# a long file handed out last would keep one worker busy while the other has nothing left to take.
LONG_FILES_FIRST = ("test_docs.py", "test_tta_job.py", "test_families_smoke.py", "test_cli_behaviour.py",
                    "test_multiprocess.py", "test_parallel.py", "test_study.py", "test_sweep_job.py",
                    "test_accelerator_path.py", "test_imagenet_c.py")


def pytest_collection_modifyitems(config, items):  # pylint: disable=unused-argument
  rank = {name: k for k, name in enumerate(LONG_FILES_FIRST)}
  items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # Stable: each file keeps its own order.
