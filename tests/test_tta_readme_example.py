"""The TTA usage example of the README runs as written (README.md's `<!-- tta-example -->` block, else notes/tta.md)."""
import pathlib
import re

REPO = pathlib.Path(__file__).resolve().parents[1]
MARKER = "<!-- tta-example -->"


def example_source() -> str:
  """The first ```python block after the marker, from README.md if it has one, else from notes/tta.md."""
  for path in (REPO / "README.md", REPO / "notes" / "tta.md"):
    if path.exists() and MARKER in path.read_text():
      text = path.read_text().split(MARKER, 1)[1]
      m = re.search(r"```python\n(.*?)```", text, re.S)
      assert m, f"{path}: no ```python block after {MARKER}"
      return m.group(1)
  raise AssertionError(f"no {MARKER} block in README.md or notes/tta.md")


def test_readme_tta_example_runs(capsys):
  exec(compile(example_source(), "tta-example", "exec"), {"__name__": "tta_example"})  # pylint: disable=exec-used
  out = capsys.readouterr().out
  assert out.count("MEMO + RRC:") == 2 and "baseline:" in out
