"""The single load-and-merge gate: converted checkpoint tree vs the model's own variable shapes.

Why one gate: a converter bug, a wrong variant or a fine-tuned head must fail loudly with the complete
two-sided difference, never load half a model. `dont_load` keeps the model's fresh initialisation for
matching leaves (big_vision `merge_params` semantics), e.g. a new classification head.
"""
import re
from typing import Any, Callable, List, Mapping, Optional, Sequence

import jax
import numpy as np
from flax import traverse_util

from zoomjax.checkpoints.errors import CheckpointError

_MAX_LISTED = 25


def _flat(tree: Mapping[str, Any]) -> dict:
  return traverse_util.flatten_dict(dict(tree), sep="/") if tree else {}


def _listing(title: str, lines: List[str]) -> str:
  if not lines:
    return ""
  # Parameters first: they say more about what went wrong than the matching batch statistics.
  lines = sorted(lines, key=lambda line: not line.startswith("params/"))
  shown = lines[:_MAX_LISTED]
  more = f"\n    ... and {len(lines) - _MAX_LISTED} more" if len(lines) > _MAX_LISTED else ""
  return f"\n  {title} ({len(lines)}):\n    " + "\n    ".join(shown) + more


def _refuse_integers_for_floats(ref: dict, got: dict, skipped: Callable[[str], bool], path: str) -> None:
  """Refuses integer or boolean tensors where the model has a floating parameter, in one line.

  A quantised checkpoint (int8 weights with separate scales) cast to float would run and give wrong answers
  without a message; floats of any width (fp16, bf16, float64) load as the model's dtype."""
  bad = []
  for key, r in ref.items():
    if skipped(key) or key not in got or not jax.numpy.issubdtype(r.dtype, jax.numpy.floating):
      continue
    dtype = np.asarray(got[key]).dtype
    if dtype.kind in "iub":
      bad.append(f"{key} {dtype} (model {np.dtype(r.dtype)})")
  if bad:
    bad.sort(key=lambda line: not line.startswith("params/"))
    more = f" and {len(bad) - _MAX_LISTED} more" if len(bad) > _MAX_LISTED else ""
    raise CheckpointError(
        f"{path}: integer tensors for floating-point parameters (a quantised checkpoint? zoomjax loads float "
        f"weights only: dequantise it, or use the float release): {', '.join(bad[:_MAX_LISTED])}{more}")


def check_fits(reference: Mapping[str, Any], converted: Mapping[str, Any], *, path_for_errors: str,
               dont_load: Sequence[str] = ()) -> Callable[[str], bool]:
  """The gate's checks alone (no arrays built): raises CheckpointError with the two-sided difference, or the
  refusal of integer tensors for floating parameters. Loaders call it on shapes before costly work (e.g. before
  computing a zero-shot head). Returns the `dont_load` predicate over leaf paths."""
  patterns = [re.compile(p) for p in dont_load]

  def skipped(key: str) -> bool:
    return any(p.fullmatch(key) for p in patterns)

  ref, got = _flat(reference), _flat(converted)
  missing, mismatch = [], []
  for key, r in ref.items():
    if skipped(key):
      continue
    if key not in got:
      missing.append(f"{key} {tuple(r.shape)}")
    elif tuple(np.shape(got[key])) != tuple(r.shape):
      mismatch.append(f"{key}: model {tuple(r.shape)} vs checkpoint {tuple(np.shape(got[key]))}")
  unexpected = [f"{k} {tuple(np.shape(v))}" for k, v in got.items() if k not in ref and not skipped(k)]
  if missing or unexpected or mismatch:
    raise CheckpointError(
        f"{path_for_errors}: checkpoint does not fit the model"
        + _listing("missing in checkpoint", missing)
        + _listing("unexpected in checkpoint", unexpected)
        + _listing("shape mismatch", mismatch))
  _refuse_integers_for_floats(ref, got, skipped, path_for_errors)
  return skipped


def merge_into(reference: Mapping[str, Any], converted: Mapping[str, Any], *, path_for_errors: str,
               dont_load: Sequence[str] = (),
               init: Optional[Callable[[], Mapping[str, Any]]] = None) -> dict:
  """Checks `converted` against `reference` leaf by leaf and returns the merged variables.

  Args:
    reference: the model's variables or their shapes (`jax.eval_shape(module.init, ...)`), nested.
    converted: the checkpoint converted to the same nested layout (numpy arrays).
    path_for_errors: the checkpoint file, named in every error.
    dont_load: regexes matched (`re.fullmatch`) against '/'-joined leaf paths such as
      `params/head/kernel`; matching leaves keep the model's initialisation and are neither required in
      nor taken from the checkpoint.
    init: computes real initial variables; needed only when `dont_load` matches a leaf and `reference`
      holds shapes (it is called at most once).
  Returns:
    Nested dict of jax arrays with the reference's structure; floating leaves in the reference's dtype
    (float32), every leaf cast to the reference dtype. An integer or boolean tensor for a floating parameter
    (a quantised checkpoint) is refused, never cast.
  """
  skipped = check_fits(reference, converted, path_for_errors=path_for_errors, dont_load=dont_load)
  ref, got = _flat(reference), _flat(converted)

  inited = None
  out = {}
  for key, r in ref.items():
    if skipped(key):
      if not hasattr(r, "shape") or isinstance(r, jax.ShapeDtypeStruct):
        if inited is None:
          if init is None:
            raise CheckpointError(f"{path_for_errors}: dont_load matched {key!r} but no initialised "
                                  "variables were given (pass init=...)")
          inited = _flat(init())
        r = inited[key]
      out[key] = jax.numpy.asarray(r)
      continue
    value = np.asarray(got[key])
    out[key] = jax.numpy.asarray(value.astype(r.dtype, copy=False))
  return traverse_util.unflatten_dict(out, sep="/")

