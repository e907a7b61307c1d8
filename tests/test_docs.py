"""Every command and Python block of README.md and docs/*.md runs here, so the documentation cannot rot.

Fenced blocks: ```bash / ```sh hold shell commands and ```python holds Python; both run. ```text, ```console,
```csv and ```json hold output or file samples and never run, so they may not hold a command line. Per page:
- the Python blocks run in order in one namespace, in one subprocess started in the repository root;
- the shell blocks run in order in one `bash -e`, each block starting in the repository root, with the venv's
  `bin` first on PATH (`python` is the venv's) and `../shared` where CI has it;
- every `runs/...` and `/tmp/...` path in a block is moved under a temporary folder of the page, so nothing is
  written into the checkout.
A block that cannot run as written (it needs data or checkpoints that exist only on a user's machine, or takes
minutes) states how it is shrunk in HTML comments right above it, visible in the Markdown source:
  <!-- docs-test: append ARGS -->         ARGS are appended to each `python -m zoomjax.main` command of the block
  <!-- docs-test: replace 'OLD' 'NEW' -->  the text OLD, which must occur in the block, becomes NEW
  <!-- docs-test: config-only -->         each zoomjax.main command parses its flags and builds its config exactly
                                           as a run does (zoomjax.main.run), then stops before the job
  <!-- docs-test: help-check -->          each `python -m MODULE ...` (or `python SCRIPT.py ...`) runs with `--help`
                                           instead of its arguments, and every --flag it uses must be in that help
No block is skipped: one without a rule runs as written, and a rule that no longer applies (OLD absent, no
command to act on) fails the structure test. After the rules, a shell block may run `make` only as `make -n`
(`make test` would run this suite inside itself) and `pip install` only with `--dry-run`.
"""
import json
import os
import pathlib
import re
import shlex
import signal
import subprocess
import sys
from typing import Dict, List, NamedTuple, Tuple

import pytest

import conftest

REPO = conftest.REPO
DOCS = REPO / "docs"
PAGES = [REPO / "README.md"] + sorted(DOCS.glob("*.md"))
RUN_LANGS = {"bash": "shell", "sh": "shell", "python": "python"}
SAMPLE_LANGS = {"text", "console", "csv", "json"}
# A line that looks like a command: must live in a ```bash block, where it runs, not in a sample.
COMMAND_LINE = re.compile(r"^\s*(\$ )?(python3?\s|pip3?\s|make\s|zoomjax\s+--|\.venv/bin/|bash\s|sh\s)")
RULE = re.compile(r"<!--\s*docs-test:\s*(.*?)\s*-->")
FENCE = re.compile(r"^(\s*)```(.*)$")
MAIN_CMD = re.compile(r"(?<![\w./-])(?:python3? -m zoomjax\.main|zoomjax)(?=\s)")
MODULE_CMD = re.compile(r"(?<![\w./-])python3? (?:-m ([\w.]+)|([\w./-]+\.py))")
TIMEOUT_S = 600

# Run by `python -c` in place of `python -m zoomjax.main` (rule config-only): zoomjax.main.run() parses the
# command line and builds the config as a real run does, then the job is looked up instead of run.
CONFIG_ONLY = """
import importlib.util, sys
import zoomjax.main as m
def _config_only():
  config = m._CONFIG.value
  experiment = config.get("experiment")
  if importlib.util.find_spec(f"zoomjax.jobs.{experiment}") is None:
    sys.exit(f"config names experiment {experiment!r}, which is not a zoomjax.jobs module")
  print(f"config-only: {experiment} config built", flush=True)
m._run_job = _config_only
sys.argv[0] = "zoomjax.main"
m.run()
"""

# Run by `python -c` in place of `python -m MODULE` (rule help-check).
HELP_CHECK = """
import os, subprocess, sys
module, args = sys.argv[1], sys.argv[2:]  # a module name, or a script's path
target = [module] if module.endswith(".py") else ["-m", module]
cache = os.path.join(os.environ["ZOOMJAX_DOCS_TMP"], f"help-{os.path.basename(module)}.txt")  # one per page
if not os.path.exists(cache):
  out = subprocess.run([sys.executable, *target, "--help"], capture_output=True, text=True)
  if out.returncode != 0:
    sys.exit(f"python {' '.join(target)} --help exited {out.returncode}:\\n{(out.stdout + out.stderr)[-2000:]}")
  open(cache, "w").write(out.stdout + out.stderr)
text = open(cache).read()
used = [a.split("=", 1)[0] for a in args if a.startswith("--")]
missing = [f for f in used if f not in text]
if missing:
  sys.exit(f"python {' '.join(target)}: {missing} not in its --help")
print(f"help-check: python {' '.join(target)} takes {used}", flush=True)
"""

# Runs the Python blocks of a page in one namespace; a traceback names the page and its Markdown line.
PY_DRIVER = """
import json, sys
ns = {"__name__": "__main__"}
for block in json.load(open(sys.argv[1])):
  print(f"--- {block['page']}:{block['line']}", flush=True)
  exec(compile("\\n" * block["line"] + block["code"], block["page"], "exec"), ns)
"""


class Block(NamedTuple):
  page: str  # Path relative to the repository.
  line: int  # Markdown line of the opening fence (1-based).
  lang: str
  code: str
  rules: Tuple[str, ...]


def _rel(path: pathlib.Path) -> str:
  return str(path.relative_to(REPO))


def parse_page(path: pathlib.Path) -> Tuple[List[Block], List[str]]:
  """The fenced blocks of a page with the rules stated above each, and the structural problems found."""
  lines = path.read_text(encoding="utf-8").split("\n")
  blocks, problems, pending, i = [], [], [], 0
  where = lambda n: f"{_rel(path)}:{n + 1}"  # pylint: disable=unnecessary-lambda-assignment
  while i < len(lines):
    line = lines[i]
    m = FENCE.match(line)
    if not m:
      rule = RULE.fullmatch(line.strip())
      if rule:
        pending.append((i, rule.group(1)))
      elif line.lstrip().startswith("<!--") and "docs-test" in line:
        problems.append(f"{where(i)}: a docs-test rule is one line: <!-- docs-test: RULE -->")
      elif line.strip() and pending:
        problems.append(f"{where(pending[0][0])}: docs-test rule is not right above a fenced block")
        pending = []
      i += 1
      continue
    indent, lang = m.group(1), m.group(2).strip().split(" ")[0]
    j = i + 1
    while j < len(lines) and not lines[j].startswith(indent + "```"):
      j += 1
    if j >= len(lines):
      problems.append(f"{where(i)}: fenced block is never closed")
      break
    code = "\n".join(l[len(indent):] if l.startswith(indent) else l for l in lines[i + 1:j]) + "\n"
    rules = tuple(r for _, r in pending)
    if not lang:
      problems.append(f"{where(i)}: fenced block without a language (bash / python run; text / console are "
                      "samples)")
    elif lang not in RUN_LANGS and lang not in SAMPLE_LANGS:
      problems.append(f"{where(i)}: unknown block language {lang!r}")
    if lang in SAMPLE_LANGS or not lang:
      if rules:
        problems.append(f"{where(i)}: docs-test rule above a {lang or 'bare'} block, which never runs")
      for k, l in enumerate(code.split("\n")):
        if COMMAND_LINE.match(l):
          problems.append(f"{where(i + 1 + k)}: a command in a ```{lang} block never runs; put it in ```bash")
    blocks.append(Block(_rel(path), i + 1, lang, code, rules))
    pending, i = [], j + 1
  if pending:
    problems.append(f"{where(pending[0][0])}: docs-test rule is not right above a fenced block")
  return blocks, problems


def _split_comment(line: str) -> Tuple[str, str]:
  """A shell line -> (command, trailing ' # comment')."""
  m = re.search(r"\s+#\s.*$", line)
  return (line[:m.start()], line[m.start():]) if m else (line, "")


def _logical_lines(code: str) -> List[str]:
  """Shell lines with their backslash continuations joined."""
  out, cur = [], ""
  for line in code.split("\n"):
    if line.endswith("\\"):
      cur += line[:-1]  # bash drops backslash-newline, even inside a word
    else:
      out.append(cur + line)
      cur = ""
  return out


def apply_rules(block: Block, tmp: pathlib.Path) -> str:
  """The code of `block` as the test runs it (see the module docstring); raises ValueError on a bad rule."""
  code = block.code
  for rule in block.rules:
    verb, _, arg = rule.partition(" ")
    if verb == "replace":
      parts = shlex.split(arg)
      if len(parts) != 2:
        raise ValueError(f"replace takes 'OLD' 'NEW', got {arg!r}")
      if parts[0] not in code:
        raise ValueError(f"replace: {parts[0]!r} does not occur in the block")
      code = code.replace(parts[0], parts[1])
    elif verb == "append":
      if block.lang not in ("bash", "sh") or not arg:
        raise ValueError("append takes ARGS and applies to shell blocks")
      lines, n = [], 0
      for line in _logical_lines(code):
        if MAIN_CMD.search(line):
          cmd, comment = _split_comment(line)
          line, n = f"{cmd.rstrip()} {arg}{comment}", n + 1
        lines.append(line)
      if not n:
        raise ValueError("append: the block has no zoomjax.main command")
      code = "\n".join(lines)
    elif verb == "config-only":
      code, n = MAIN_CMD.subn('python -c "$ZOOMJAX_DOCS_CONFIG_ONLY"', code)
      if not n:
        raise ValueError("config-only: the block has no zoomjax.main command")
    elif verb == "help-check":
      code, n = MODULE_CMD.subn(lambda m: f'python -c "$ZOOMJAX_DOCS_HELP_CHECK" {m.group(1) or m.group(2)}', code)
      if not n:
        raise ValueError("help-check: the block has no `python -m MODULE` or `python SCRIPT.py` command")
    else:
      raise ValueError(f"unknown docs-test rule {rule!r}")
  # Commands that would change the environment the suite runs in, or run the suite itself, only as dry runs.
  if block.lang in ("bash", "sh"):
    for pattern, what in ((r"(^|[;&|(]\s*)make\s+(?!-n\b)", "make without -n (make test would run the suite)"),
                          (r"\bpip3?\s+install\s+(?!--dry-run\b)", "pip install without --dry-run")):
      if re.search(pattern, code, re.M):
        raise ValueError(f"the block runs {what}: state a rule that makes it a dry run")
  code = re.sub(r"(?<![\w./~-])runs/", f"{tmp}/runs/", code)
  code = re.sub(r"(?<![\w.~-])/tmp/", f"{tmp}/tmp/", code)
  return code


def _all_blocks() -> Dict[str, List[Block]]:
  return {_rel(p): parse_page(p)[0] for p in PAGES}


def _pages_with(kind: str) -> List[str]:
  return [page for page, blocks in _all_blocks().items() if any(RUN_LANGS.get(b.lang) == kind for b in blocks)]


def _env(tmp: pathlib.Path) -> Dict[str, str]:
  env = dict(os.environ)
  env["PATH"] = f"{pathlib.Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
  env["ZOOMJAX_DOCS_CONFIG_ONLY"] = CONFIG_ONLY
  env["ZOOMJAX_DOCS_HELP_CHECK"] = HELP_CHECK
  env["ZOOMJAX_DOCS_TMP"] = str(tmp)
  for name in ("PYTHONPATH", "MAKEFLAGS", "MFLAGS", "MAKELEVEL"):  # nothing of a parent `make test` leaks in
    env.pop(name, None)
  # The pages are checked for running, not for their numbers, and compiling dominates their tiny runs: XLA's
  # optimisations off, as tests/conftest.py's fast_compile does for job plumbing (never for parity tests).
  env["JAX_DISABLE_MOST_OPTIMIZATIONS"] = "1"
  return env


def _needs_shared(blocks: List[Block]) -> None:
  """The pages name ../shared/data/imagenet-val-100 literally: required under CI, a skip elsewhere."""
  if any("../shared/" in b.code for b in blocks):
    labels = REPO.parent / "shared" / "data" / "imagenet-val-100" / "labels.csv"
    conftest.require(labels.is_file(), f"the page uses ../shared: expected {labels}")


def _run(cmd: List[str], tmp: pathlib.Path, what: str) -> str:
  try:
    # SIGINT at its default, as in a terminal, even when the test runner was started in the background.
    out = subprocess.run(cmd, cwd=REPO, env=_env(tmp), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         timeout=TIMEOUT_S, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
  except subprocess.TimeoutExpired as e:
    partial = e.stdout.decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
    pytest.fail(f"{what}: still running after {TIMEOUT_S} s\n{partial[-3000:]}", pytrace=False)
  text = out.stdout
  if out.returncode != 0:
    pytest.fail(f"{what} failed (exit {out.returncode}); the last '---' line names the block:\n"
                f"{text[-6000:]}", pytrace=False)
  return text


@pytest.mark.parametrize("page", [_rel(p) for p in PAGES])
def test_page_structure(page):
  """Blocks are labelled, samples hold no commands, every rule applies to the block under it."""
  blocks, problems = parse_page(REPO / page)
  for b in blocks:
    try:
      apply_rules(b, pathlib.Path("/nonexistent"))
    except ValueError as e:
      problems.append(f"{page}:{b.line}: {e}")
  assert not problems, "\n".join(problems)


@pytest.mark.parametrize("page", _pages_with("python"))
def test_python_blocks_run(page, tmp_path):
  blocks = [b for b in _all_blocks()[page] if RUN_LANGS.get(b.lang) == "python"]
  _needs_shared(blocks)
  payload = [{"page": b.page, "line": b.line, "code": apply_rules(b, tmp_path)} for b in blocks]
  (tmp_path / "blocks.json").write_text(json.dumps(payload))
  _run([sys.executable, "-c", PY_DRIVER, str(tmp_path / "blocks.json")], tmp_path, f"{page}: Python blocks")


@pytest.mark.parametrize("page", _pages_with("shell"))
def test_shell_blocks_run(page, tmp_path):
  blocks = [b for b in _all_blocks()[page] if RUN_LANGS.get(b.lang) == "shell"]
  _needs_shared(blocks)
  script = ["set -e", f"cd {shlex.quote(str(REPO))}", f"mkdir -p {shlex.quote(str(tmp_path))}/tmp"]
  for b in blocks:  # each block starts in the repository root
    script += [f"echo '--- {b.page}:{b.line}'", f"cd {shlex.quote(str(REPO))}", apply_rules(b, tmp_path)]
  (tmp_path / "blocks.sh").write_text("\n".join(script) + "\n")
  _run(["bash", "-e", str(tmp_path / "blocks.sh")], tmp_path, f"{page}: shell blocks")


# ---------------------------------------------------------------------------------------------------------------
# The pages as a set: links, the index, the study's definitions that the code cites.

LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def github_slug(heading: str) -> str:
  """GitHub's anchor of a Markdown heading: lower case, punctuation but '-' and '_' dropped, spaces -> '-'."""
  text = re.sub(r"[`*]", "", heading.strip().lower())
  return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def _anchors(path: pathlib.Path) -> set:
  return {github_slug(m.group(1)) for m in re.finditer(r"^#+\s+(.*)$", path.read_text(encoding="utf-8"), re.M)}


def test_links_resolve():
  bad = []
  for page in PAGES:
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)
    for target in LINK.findall(text):
      if re.match(r"[a-z]+:", target):
        continue
      file, _, anchor = target.partition("#")
      dest = (page.parent / file).resolve() if file else page
      if not dest.exists():
        bad.append(f"{_rel(page)}: link to {target}: {file} does not exist")
      elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
        bad.append(f"{_rel(page)}: link to {target}: no heading with anchor #{anchor}")
  assert not bad, "\n".join(bad)


def test_index_lists_every_page_and_readme_links_the_index():
  index = (DOCS / "index.md").read_text(encoding="utf-8")
  linked = {pathlib.Path(t.partition("#")[0]).name for t in LINK.findall(index)}
  missing = [p.name for p in DOCS.glob("*.md") if p.name != "index.md" and p.name not in linked]
  assert not missing, f"docs/index.md does not link {missing}"
  assert "docs/index.md" in (REPO / "README.md").read_text(encoding="utf-8")


def test_docs_speak_for_themselves():
  """The pages stand alone: no pointer to reference notes outside the repository."""
  bad = [f"{_rel(p)}: {w}" for p in PAGES for w in ("shared/reference", "paper.md")
         if w in p.read_text(encoding="utf-8")]
  assert not bad, bad


def test_readme_is_a_front_page():
  n = len((REPO / "README.md").read_text(encoding="utf-8").splitlines())
  assert n <= 250, f"README.md has {n} lines; move detail into docs/"


def test_code_citations_resolve_in_docs_study():
  """Every `docs/study.md §X` in the code names a heading of docs/study.md's definitions."""
  headings = re.findall(r"^#+\s+§(\d+(?:\.\d+)?)\b", (DOCS / "study.md").read_text(encoding="utf-8"), re.M)
  cited, stale = {}, []
  for folder in ("zoomjax", "configs", "experiments", "tests"):
    for path in sorted((REPO / folder).rglob("*.py")):
      text = path.read_text(encoding="utf-8")
      for m in re.finditer(r"docs/study\.md (§\d+(?:\.\d+)?(?:[/-]§?\d+(?:\.\d+)?)*)", text):
        for num in re.findall(r"\d+(?:\.\d+)?", m.group(1)):
          cited.setdefault(num, _rel(path))
      if re.search(r"paper\.md §", text):
        stale.append(_rel(path))
  assert cited, "no docs/study.md citation found in the code"
  missing = {n: p for n, p in cited.items() if n not in headings}
  assert not missing, f"cited but not a heading of docs/study.md: {missing}"
  assert not stale, f"citations of a file outside the repository: {stale}"


def _table_after(text: str, marker: str) -> List[List[str]]:
  """The body rows of the first Markdown table after `marker`."""
  rows, lines = [], text[text.index(marker):].split("\n")[1:]
  for line in lines:
    if line.startswith("|"):
      rows.append([c.strip().strip("*") for c in line.strip().strip("|").split("|")])
    elif rows:
      break
  return rows[2:]


def test_study_definitions_match_the_numbers_the_code_compares_with():
  """docs/study.md's scales and published tables are the data of zoomjax (zoom.PAPER_SCALES, paper_numbers)."""
  from zoomjax import zoom  # pylint: disable=import-outside-toplevel
  from zoomjax.analysis import paper_numbers as pn  # pylint: disable=import-outside-toplevel
  text = (DOCS / "study.md").read_text(encoding="utf-8")
  scales = re.search(r"`(10 16 32 [\d\s]+)`", text)
  assert scales and tuple(int(s) for s in scales.group(1).split()) == tuple(zoom.PAPER_SCALES)
  keys = {"CLIP ViT-L/14": "clip_vit_l14", "random": "random", **pn.MODEL_KEYS}
  for marker, table in (("(a) 1-crop", pn.ONE_CROP), ("(b) upper bound, greedy top-36", pn.TOP36),
                        ("(c) upper bound, all 324 views", pn.UPPER_BOUND)):
    rows = _table_after(text, marker)
    assert {keys[r[0]] for r in rows} == set(table), marker
    for r in rows:
      assert [float(v) for v in r[1:]] == [table[keys[r[0]]][c] for c in pn.DATASETS], (marker, r)
  for r in _table_after(text, "fits its numbers"):
    assert [float(v) for v in r[1:]] == list(pn.AGGREGATION["vit_b32"][r[0]].values()), r
  method, methods = None, {"baseline (1-crop)": "baseline", "MEMO + AugMix": "memo_augmix", "MEMO + RRC": "memo_rrc"}
  rows = {"ResNet-50": "resnet50", "DeepAugment + AugMix": "deepaug_augmix", "MoEx + CutMix": "moex_cutmix"}
  for r in _table_after(text, "three ResNet-50 checkpoints of the MEMO release"):
    method = methods.get(r[0], method)
    assert tuple(float(v) for v in r[2:]) == pn.TABLE5[method][rows[r[1]]], r
