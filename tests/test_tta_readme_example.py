"""The TTA usage example of the README runs as written (the ```python block after `<!-- tta-example -->`)."""
import pathlib
import re

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"
MARKER = "<!-- tta-example -->"


def example_source() -> str:
  """The first ```python block after the marker in README.md."""
  text = README.read_text()
  assert MARKER in text, f"{README}: no {MARKER} marker"
  m = re.search(r"```python\n(.*?)```", text.split(MARKER, 1)[1], re.S)
  assert m, f"{README}: no ```python block after {MARKER}"
  return m.group(1)


def test_readme_tta_example_runs(capsys):
  exec(compile(example_source(), "tta-example", "exec"), {"__name__": "tta_example"})  # pylint: disable=exec-used
  out = capsys.readouterr().out
  assert out.count("MEMO + RRC:") == 2 and "baseline:" in out
