"""Shared test setup: fast compiles, the shared real-data folder."""
import os
import pathlib

import jax
import pytest

# Compile time dominates the tiny models used in tests.
jax.config.update("jax_compilation_cache_dir", os.path.expanduser("~/.cache/zoomjax/jax-tests"))

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED_VAL100 = REPO.parent / "shared" / "data" / "imagenet-val-100"


@pytest.fixture(scope="session")
def val100_dir() -> pathlib.Path:
  if not (SHARED_VAL100 / "labels.csv").exists():
    pytest.skip(f"real photos not found at {SHARED_VAL100}")
  return SHARED_VAL100
