"""zoomjax.reports.html, the toolkit every page and table goes through: escaping, the one value-with-interval
format, percent, tables, CSV, thumbnails, the page."""
import csv
import io
import math

import numpy as np
import pytest
from PIL import Image

from zoomjax.analysis import metrics as A
from zoomjax.reports import html


def test_escape_covers_every_special_character():
  assert (html.escape("<a href=\"x\">Tom & Jerry's</a>")
          == "&lt;a href=&quot;x&quot;&gt;Tom &amp; Jerry&#x27;s&lt;/a&gt;")
  assert html.escape(3) == "3" and html.escape("plain") == "plain"
  attr = html.escape("\" onload='alert(1)'")  # Safe inside a quoted attribute: no quote survives.
  assert '"' not in attr and "'" not in attr


def test_interval_format():
  assert html.interval(0.72, [0.63, 0.80]) == "72.0 % [63.0–80.0]"
  assert html.interval(0.7575, [0.75372, 0.76131]) == "75.8 % [75.4–76.1]"  # Same decimals at any width.
  assert html.interval(0.03, [-0.01, 0.07], sign=True) == "+3.0 pts [-1.0–+7.0]"
  assert html.interval(0.5) == "50.0 %" and html.interval(0.5, None) == "50.0 %"
  for missing in (None, float("nan"), np.float32("nan")):
    assert html.interval(missing, [0.1, 0.2]) == html.MISSING == "–"
    assert html.interval(0.5, [missing, 0.6]) == "50.0 %"  # A partial interval is left out, not half printed.
  assert html.interval(np.float64(1.0), np.array([0.95, 1.0])) == "100.0 % [95.0–100.0]"


def test_interval_formats_the_bootstrap_interval_it_is_given():
  p, n = 0.72, 100
  ci = A.bootstrap_interval(p, n)
  assert html.interval(p, ci) == f"72.0 % [{100 * ci[0]:.1f}–{100 * ci[1]:.1f}]"


def test_percent_and_published():
  assert html.percent(0.5) == "50.0 %" and html.percent(0.12345, unit="") == "12.3"
  assert html.percent(-0.02, sign=True) == "-2.0 pts" and html.percent(0.0, sign=True) == "+0.0 pts"
  assert html.percent(None) == html.percent(math.nan) == html.MISSING
  assert html.published(75.75) == "75.75 %" and html.published(7.3, unit=False) == "7.30"
  assert html.published(None) == html.MISSING


def test_html_table_escapes_the_header_and_aligns():
  t = html.html_table(["model", "a<b"], [["<b>x</b>", "1.0"]], left=1, table_id="t", css_class="bars")
  assert t.startswith('<table id="t" class="bars"><tr><th class="l">model</th><th>a&lt;b</th></tr>')
  assert '<td class="l"><b>x</b></td><td>1.0</td>' in t  # Cells are HTML, passed as given.


def test_markdown_table():
  md = html.markdown_table(["model", "IN"], [["a|b", "72.0 % [63.0–80.0]"], ["c", "line\nbreak"]])
  assert md.splitlines() == ["| model | IN |", "|---|---:|", "| a\\|b | 72.0 % [63.0–80.0] |", "| c | line break |"]


def test_csv_round_trip_through_csv_reader():
  rows = [["a, b", 'say "hi"', None, 0.1 + 0.2, 3, "multi\nline"], ["plain", "", float("nan"), 1e-9, -1, "x"]]
  text = html.csv_text(["name", "quote", "none", "float", "int", "text"], rows)
  back = list(csv.reader(io.StringIO(text)))
  assert back[0] == ["name", "quote", "none", "float", "int", "text"]
  assert back[1] == ["a, b", 'say "hi"', "", "0.3", "3", "multi\nline"]
  assert back[2] == ["plain", "", "", "1e-09", "-1", "x"]


def test_save_thumbnail(tmp_path):
  pixels = np.linspace(-20, 300, 400 * 300 * 3).reshape(300, 400, 3)  # Float, out of range at both ends.
  path = html.save_thumbnail(pixels, str(tmp_path / "t.jpg"), max_side=100)
  with Image.open(path) as im:
    assert im.format == "JPEG" and im.size == (100, 75)
  png = html.save_thumbnail(np.full((10, 20, 3), 7, np.uint8), str(tmp_path / "t.png"))
  with Image.open(png) as im:
    assert im.format == "PNG" and im.size == (20, 10) and np.asarray(im).max() == 7  # Lossless, not enlarged.
  assert sorted(p.name for p in tmp_path.iterdir()) == ["t.jpg", "t.png"]  # No temporary file left behind.


def test_document_and_class_name():
  page = html.document("a & b", "<p>x</p>", what="study", css=".x{}")
  assert page.startswith('<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>a &amp; b</title>')
  assert ".x{}" in page and "study image failed to load" in page and page.endswith("</script></body></html>")
  assert html.class_name(["cat", "dog"], 1) == "dog" and html.class_name(["cat"], -1) == "class -1"
  with pytest.raises(ValueError):
    html.class_name(["cat"], "x")
