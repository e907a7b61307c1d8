"""The text side of CLIP zero-shot classifiers as data: class names, prompt templates, vocabulary, head cache.

Class names and templates are named data (`class_names="openai"`, `templates="openai80"`) or files: a text
file with one entry per line, or a `zero_shot_metadata.py` in open_clip's layout (`IMAGENET_CLASSNAMES`,
`OPENAI_IMAGENET_TEMPLATES` as tuples of strings / `lambda c: f'...{c}...'`). Such a file is parsed with `ast`
and never imported or executed; without a path, the copy inside an installed `open_clip` package is used
(located with `importlib.util.find_spec`, which does not import the package either). The 80 OpenAI templates
ship with zoomjax; OpenAI's curated 1000 class names and the BPE vocabulary do not (pass their files, or
install open_clip_torch), and an error names the file that is missing and the argument that takes it.

Head cache: computing a head encodes 1000 classes x 80 prompts with the text tower (minutes on an
accelerator for the large towers), so `cached_head` stores each head once under
`<cache dir>/<key>.npz` (`head` (E, C) float32) with `<key>.json` beside it (what the head was built from);
the key hashes the text tower's tensors (`text_tower_digest`: the only weights the head depends on), its
configuration and activation, the class names and the templates. Writes are atomic (zoomjax.runtime.atomic).
"""
import ast
import hashlib
import importlib.util
import json
import os
from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Tuple

import numpy as np

from zoomjax.errors import NotFoundError, UnknownNameError, UserError
from zoomjax.runtime import atomic

# The 80 prompt templates of OpenAI's "Prompt Engineering for ImageNet" notebook (used by the zoom paper and
# open_clip's `OPENAI_IMAGENET_TEMPLATES`, in the same order).
OPENAI_IMAGENET_TEMPLATES = (
    "a bad photo of a {}.", "a photo of many {}.", "a sculpture of a {}.", "a photo of the hard to see {}.",
    "a low resolution photo of the {}.", "a rendering of a {}.", "graffiti of a {}.", "a bad photo of the {}.",
    "a cropped photo of the {}.", "a tattoo of a {}.", "the embroidered {}.", "a photo of a hard to see {}.",
    "a bright photo of a {}.", "a photo of a clean {}.", "a photo of a dirty {}.", "a dark photo of the {}.",
    "a drawing of a {}.", "a photo of my {}.", "the plastic {}.", "a photo of the cool {}.",
    "a close-up photo of a {}.", "a black and white photo of the {}.", "a painting of the {}.",
    "a painting of a {}.", "a pixelated photo of the {}.", "a sculpture of the {}.", "a bright photo of the {}.",
    "a cropped photo of a {}.", "a plastic {}.", "a photo of the dirty {}.", "a jpeg corrupted photo of a {}.",
    "a blurry photo of the {}.", "a photo of the {}.", "a good photo of the {}.", "a rendering of the {}.",
    "a {} in a video game.", "a photo of one {}.", "a doodle of a {}.", "a close-up photo of the {}.",
    "a photo of a {}.", "the origami {}.", "the {} in a video game.", "a sketch of a {}.", "a doodle of the {}.",
    "a origami {}.", "a low resolution photo of a {}.", "the toy {}.", "a rendition of the {}.",
    "a photo of the clean {}.", "a photo of a large {}.", "a rendition of a {}.", "a photo of a nice {}.",
    "a photo of a weird {}.", "a blurry photo of a {}.", "a cartoon {}.", "art of a {}.", "a sketch of the {}.",
    "a embroidered {}.", "a pixelated photo of a {}.", "itap of the {}.", "a jpeg corrupted photo of the {}.",
    "a good photo of a {}.", "a plushie {}.", "a photo of the nice {}.", "a photo of the small {}.",
    "a photo of the weird {}.", "the cartoon {}.", "art of the {}.", "a drawing of the {}.",
    "a photo of the large {}.", "a black and white photo of a {}.", "the plushie {}.", "a dark photo of a {}.",
    "itap of a {}.", "graffiti of the {}.", "a toy {}.", "itap of my {}.", "a photo of a cool {}.",
    "a photo of a small {}.", "a tattoo of the {}.",
)

VOCAB_FILE = "bpe_simple_vocab_16e6.txt.gz"
METADATA_FILE = "zero_shot_metadata.py"
# Named class-name sets -> the metadata variable holding them. The zoom study (docs/study.md §5) used OpenAI's
# curated names, so "zoom_paper" is the same list; the ImageNet-Hard runs' gist names (§4.5) are not
# published: pass them as a file.
CLASS_NAME_SETS = {"openai": "IMAGENET_CLASSNAMES", "zoom_paper": "IMAGENET_CLASSNAMES"}
# Named template sets; "openai" is accepted as the short name of the 80 (configs use it).
TEMPLATE_SETS = {"openai80": OPENAI_IMAGENET_TEMPLATES, "openai": OPENAI_IMAGENET_TEMPLATES}
_HEAD_FORMAT = 1  # Bump when the head's definition changes: old cache entries are then never reused.


# ----------------------------------------------------------------------------------- metadata files

def _template_string(node: ast.AST, where: str) -> str:
  """A template as a format string with one `{}`: a string constant or `lambda c: f'...{c}...'`."""
  if isinstance(node, ast.Constant) and isinstance(node.value, str):
    return node.value
  if (isinstance(node, ast.Lambda) and len(node.args.args) == 1 and not node.args.defaults
      and isinstance(node.body, ast.JoinedStr)):
    arg, parts = node.args.args[0].arg, []
    for part in node.body.values:
      if isinstance(part, ast.Constant) and isinstance(part.value, str):
        parts.append(part.value.replace("{", "{{").replace("}", "}}"))
      elif (isinstance(part, ast.FormattedValue) and isinstance(part.value, ast.Name) and part.value.id == arg
            and part.conversion == -1 and part.format_spec is None):
        parts.append("{}")
      else:
        break
    else:
      return "".join(parts)
  raise UserError(f"{where}: line {getattr(node, 'lineno', '?')}: a template must be a string or "
                  "`lambda c: f'...{c}...'` (the file is read as data, never run)")


def read_metadata(path: str, variable: str) -> Tuple[str, ...]:
  """The tuple/list `variable` of an open_clip-style `zero_shot_metadata.py`, parsed (never executed).

  Class-name variables hold string constants; template variables may also hold `lambda c: f'...{c}...'`,
  returned as format strings with one `{}`.
  """
  try:
    with open(path, encoding="utf-8") as f:
      tree = ast.parse(f.read(), filename=path)
  except FileNotFoundError:
    raise NotFoundError(f"{path}: file not found (expected open_clip's {METADATA_FILE})") from None
  except SyntaxError as e:
    raise UserError(f"{path}: not a Python metadata file ({e.msg}, line {e.lineno})") from None
  found = {}
  for node in tree.body:
    if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
      found[node.targets[0].id] = node.value
  if variable not in found:
    raise UserError(f"{path}: no `{variable} = (...)` assignment; it assigns {sorted(found) or 'nothing'}")
  value = found[variable]
  if not isinstance(value, (ast.Tuple, ast.List)):
    raise UserError(f"{path}: `{variable}` is not a literal tuple or list")
  where = f"{path}: {variable}"
  return tuple(_template_string(e, where) for e in value.elts)


def installed_package_file(filename: str, packages: Sequence[str] = ("open_clip", "clip")) -> Optional[str]:
  """Path of `filename` inside an installed package (open_clip_torch's `open_clip`, OpenAI's `clip`), if any.

  `find_spec` of a top-level name only locates the package: nothing of it is imported or run.
  """
  for package in packages:
    try:
      spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
      continue
    for folder in (spec.submodule_search_locations or []) if spec else []:
      path = os.path.join(folder, filename)
      if os.path.isfile(path):
        return path
  return None


def read_lines(path: str, what: str) -> Tuple[str, ...]:
  """One entry per line (trailing blank lines dropped; a blank line inside is an error naming it)."""
  try:
    with open(path, encoding="utf-8") as f:
      lines = [line.rstrip("\n").rstrip("\r") for line in f]
  except FileNotFoundError:
    raise NotFoundError(f"{path}: {what} file not found") from None
  while lines and not lines[-1].strip():
    lines.pop()
  bad = [i + 1 for i, n in enumerate(lines) if not n.strip()]
  if bad:
    raise UserError(f"{path}: empty {what} on line(s) {bad[:5]}")
  if not lines:
    raise UserError(f"{path}: no {what}s")
  return tuple(lines)


def read_class_names(path: str) -> list:
  """One class name per line, in the classifier's output order (the 1000-way sorted-WNID order for ImageNet)."""
  return list(read_lines(path, "class name"))


def _metadata_path(what: str, argument: str) -> str:
  path = installed_package_file(METADATA_FILE)
  if path is None:
    raise NotFoundError(
        f"{what} needs open_clip's {METADATA_FILE} and no installed open_clip package has it: pass "
        f"{argument}=/path/to/{METADATA_FILE} (inside the open_clip_torch wheel: `pip download --no-deps "
        "open_clip_torch`, then unzip) or a text file with one entry per line, or `pip install open_clip_torch`")
  return path


def resolve_class_names(value: Optional[str]) -> Tuple[str, ...]:
  """`class_names` of `load`: None/"openai"/"zoom_paper" (OpenAI's curated names), a .py metadata file or a
  .txt (one name per line)."""
  value = "openai" if value in (None, "") else str(value)
  if value in CLASS_NAME_SETS:
    path = _metadata_path(f"class_names={value!r} (OpenAI's curated ImageNet class names)", "class_names")
    return read_metadata(path, CLASS_NAME_SETS[value])
  if value.endswith(".py"):
    return read_metadata(value, "IMAGENET_CLASSNAMES")
  if os.path.sep in value or os.path.exists(value) or "." in os.path.basename(value):
    return read_lines(value, "class name")
  raise UnknownNameError(f"class_names={value!r}: not a named set ({', '.join(CLASS_NAME_SETS)}) nor a file "
                         f"(a .txt with one name per line, or a {METADATA_FILE})")


def resolve_templates(value: Optional[str]) -> Tuple[str, ...]:
  """`templates` of `load`: None/"openai80" (the 80 OpenAI prompts), a .py metadata file
  (`OPENAI_IMAGENET_TEMPLATES`) or a .txt with one format string (containing `{}`) per line."""
  value = "openai80" if value in (None, "") else str(value)
  if value in TEMPLATE_SETS:
    return TEMPLATE_SETS[value]
  if value.endswith(".py"):
    templates = read_metadata(value, "OPENAI_IMAGENET_TEMPLATES")
  elif os.path.sep in value or os.path.exists(value) or "." in os.path.basename(value):
    templates = read_lines(value, "template")
  else:
    raise UnknownNameError(f"templates={value!r}: not a named set ({', '.join(TEMPLATE_SETS)}) nor a file "
                           f"(a .txt with one `{{}}` template per line, or a {METADATA_FILE})")
  bad = [t for t in templates if t.replace("{{", "").replace("}}", "").count("{}") != 1]
  if bad:
    raise UserError(f"{value}: every template needs exactly one `{{}}` for the class name; not {bad[:3]}")
  return templates


def resolve_vocab(value: Optional[str]) -> str:
  """`vocab` of `load`: the path of CLIP's BPE merges file, or None for the copy in an installed open_clip/clip."""
  if value:
    if not os.path.isfile(value):
      raise NotFoundError(f"vocab={value!r}: file not found (expected CLIP's {VOCAB_FILE})")
    return str(value)
  path = installed_package_file(VOCAB_FILE)
  if path is None:
    raise NotFoundError(
        f"building a CLIP zero-shot head needs the BPE vocabulary {VOCAB_FILE} and no installed open_clip/clip "
        f"package has it: pass vocab=/path/to/{VOCAB_FILE} (it ships inside the open_clip_torch wheel and "
        "OpenAI's clip repository), or load an already-built zero-shot file (python -m zoomjax.models.clip_cli)")
  return path


# ------------------------------------------------------------------------------------------ head cache

def default_cache_dir() -> str:
  """$ZOOMJAX_CLIP_HEADS, else ~/.cache/zoomjax/clip_heads."""
  return os.environ.get("ZOOMJAX_CLIP_HEADS") or os.path.join(os.path.expanduser("~"), ".cache", "zoomjax",
                                                               "clip_heads")


def _update_array(h: "hashlib._Hash", name: str, value: np.ndarray) -> None:
  value = np.ascontiguousarray(value)
  h.update(f"{name}|{value.dtype.str}|{value.shape}\n".encode())
  h.update(value.reshape(-1).view(np.uint8))


def text_tower_digest(flat: Mapping[str, np.ndarray], ignore: Sequence[str] = ()) -> str:
  """sha256 over the text tower's tensors (every key outside `visual.`, except `ignore`): names, dtypes,
  shapes and bytes, in sorted order. The same weights saved as .pt, .bin or .safetensors hash alike."""
  h = hashlib.sha256()
  for name in sorted(k for k in flat if not k.startswith("visual.") and k not in ignore):
    _update_array(h, name, np.asarray(flat[name]))
  return h.hexdigest()


def head_key(text_digest: str, text_config: Mapping[str, Any], activation: str, class_names: Sequence[str],
             templates: Sequence[str]) -> str:
  """The cache key of one head: what it is computed from, hashed (32 hex digits)."""
  blob = json.dumps({"format": _HEAD_FORMAT, "text_tower": text_digest, "text_config": dict(text_config),
                     "activation": activation, "class_names": list(class_names), "templates": list(templates)},
                    sort_keys=True)
  return hashlib.sha256(blob.encode()).hexdigest()[:32]


def cached_head(cache_dir: Optional[str], key: str, shape: Tuple[int, int], compute: Callable[[], np.ndarray],
                info: Optional[Dict[str, Any]] = None) -> np.ndarray:
  """The (E, C) head stored under `key`, or `compute()`'s, then stored (atomically) for every later load.

  A stored file of the wrong shape or unreadable is recomputed and replaced; `info` goes to `<key>.json`.
  """
  from zoomjax.runtime.console import warn  # pylint: disable=import-outside-toplevel
  cache_dir = cache_dir or default_cache_dir()
  path = os.path.join(cache_dir, f"{key}.npz")
  if os.path.isfile(path):
    try:
      with np.load(path, allow_pickle=False) as z:
        head = np.asarray(z["head"], np.float32)
      if head.shape == tuple(shape) and np.all(np.isfinite(head)):
        return head
      warn(f"{path}: cached CLIP head has shape {head.shape}, expected {tuple(shape)}: recomputing it")
    except (OSError, ValueError, KeyError) as e:
      warn(f"{path}: unreadable cached CLIP head ({e}): recomputing it")
  head = np.asarray(compute(), np.float32)
  if head.shape != tuple(shape):
    raise ValueError(f"zero-shot head has shape {head.shape}, expected {tuple(shape)}")
  try:
    atomic.write_json(os.path.join(cache_dir, f"{key}.json"), dict(info or {}, key=key, shape=list(head.shape)))
    atomic.savez(path, {"head": head})
  except OSError as e:  # A read-only or full cache costs recomputation next time, never this load's result.
    warn(f"could not store the CLIP zero-shot head in {cache_dir} ({e}); pass head_cache_dir= a writable folder")
  return head
