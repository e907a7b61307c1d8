"""The reports' shared toolkit: escaping, the one value-with-interval format, tables, CSV, thumbnails, the page.

Every page (a sweep's report.html, the study's study.html, the evaluation's report.html, the explorer) and every
table written as Markdown or CSV goes through these functions, so a number reads the same wherever it appears:

  percent(0.72)                    "72.0 %"     (fractions in, one decimal out; "–" for a missing value)
  interval(0.72, [0.63, 0.80])     "72.0 % [63.0–80.0]"   the value and its 95 % interval, same decimals
  interval(0.03, [-0.01, 0.07], sign=True)   "+3.0 pts [-1.0–+7.0]"   a paired difference
  published(75.75)                 "75.75 %"    the paper's numbers, as printed there (percent, two decimals)
  paired("ZERO", "1-crop", 0.03, [0.005, 0.055], 0.03)   "ZERO vs 1-crop: +3.0 points [+0.5, +5.5], p = 0.03"

Intervals are never computed here: they come from `zoomjax.analysis.metrics.bootstrap_interval` /
`bootstrap_mean_interval` (stored in metrics.json, study.json and results.json) and are only formatted.
"""
import csv
import html as html_lib
import io
import os
from typing import Any, Optional, Sequence, Union

import numpy as np
from PIL import Image

from zoomjax.runtime import atomic

__all__ = ["MISSING", "DECIMALS", "CSS", "escape", "is_missing", "percent", "interval", "published", "p_value",
           "paired", "class_name",
           "html_table", "markdown_table", "FORMULA_START", "csv_cell", "csv_text", "save_thumbnail",
           "image_check_script", "document"]

MISSING = "–"  # A value that is not there (not computed, not applicable, or NaN).
DECIMALS = 1  # Decimals of every percentage we compute, value and interval bounds alike.

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;max-width:1180px;color:#222}
h1{font-size:22px} h2{font-size:18px;margin-top:28px;border-bottom:1px solid #ddd;padding-bottom:4px}
h3{font-size:15px;margin:14px 0 4px} table{border-collapse:collapse;margin:8px 0}
td,th{border:1px solid #ccc;padding:3px 8px;text-align:right;vertical-align:top} th{background:#f3f3f3}
td.l,th.l{text-align:left} .muted{color:#777;font-size:13px} .paper{color:#777;font-size:12px}
.figs img{max-width:560px;margin:4px} .figs img.wide{max-width:1100px} .gallery{display:flex;flex-wrap:wrap;gap:14px}
.card{border:1px solid #ddd;border-radius:6px;padding:8px;width:540px} .card img{height:160px;margin-right:4px}
.card .row{display:flex;align-items:flex-end} figure{margin:0 4px 0 0}
figcaption{font-size:11px;color:#555;text-align:center} .ok{color:#17803d} .bad{color:#b42318}
.missing{outline:3px solid #b42318}
code{background:#f6f6f6;padding:1px 4px}
"""


def escape(value: Any) -> str:
  """`value` as HTML text: & < > " ' escaped, so it is safe in element content and in quoted attributes."""
  return html_lib.escape(str(value), quote=True)


def is_missing(x: Any) -> bool:
  """None or NaN: a number that is not there (JSON stores NaN as null; both print as MISSING)."""
  return x is None or (isinstance(x, (float, np.floating)) and bool(np.isnan(x)))


def percent(x: Optional[float], *, sign: bool = False, unit: Optional[str] = None) -> str:
  """A fraction as percent with DECIMALS decimals: 0.72 -> "72.0 %"; sign=True: 0.03 -> "+3.0 pts" (a difference
  in percentage points). unit replaces " %" / " pts" ("" for a table whose header names the unit)."""
  if is_missing(x):
    return MISSING
  unit = (" pts" if sign else " %") if unit is None else unit
  return f"{100 * float(x):{'+' if sign else ''}.{DECIMALS}f}{unit}"


def interval(x: Optional[float], ci: Optional[Sequence[Optional[float]]] = None, *, sign: bool = False) -> str:
  """THE value-with-interval format: a fraction and its 95 % interval [lo, hi] (fractions, from
  `zoomjax.analysis.metrics`' bootstrap functions) -> "72.0 % [63.0–80.0]"; sign=True for a difference:
  "+3.0 pts [-1.0–+7.0]". A missing value reads MISSING; a missing or partial interval is left out."""
  out = percent(x, sign=sign)
  if out == MISSING or ci is None or len(ci) != 2 or any(is_missing(b) for b in ci):
    return out
  lo, hi = (percent(b, sign=sign, unit="") for b in ci)
  return f"{out} [{lo}–{hi}]"


def published(value: Optional[float], *, unit: bool = True) -> str:
  """One of the paper's numbers (already percent) as printed there, two decimals: 75.75 -> "75.75 %"."""
  if is_missing(value):
    return MISSING
  return f"{float(value):.2f}" + (" %" if unit else "")


def p_value(p: Optional[float]) -> str:
  """A p-value with two significant digits ("p = 0.03"), "p < 0.001" below a thousandth, MISSING when absent."""
  if is_missing(p):
    return MISSING
  p = float(p)
  return "p < 0.001" if p < 0.001 else f"p = {p:.2g}"


def paired(name_a: str, name_b: str, diff: Optional[float], ci: Optional[Sequence[Optional[float]]],
           p: Optional[float]) -> str:
  """A paired comparison (`zoomjax.analysis.paired.PairedResult`'s diff, ci95 and p_value, fractions) as text:
  "ZERO vs 1-crop: +3.0 points [+0.5, +5.5], p = 0.03" (escape it for HTML)."""
  text = f"{name_a} vs {name_b}: {percent(diff, sign=True, unit=' points')}"
  if not is_missing(diff) and ci is not None and len(ci) == 2 and not any(is_missing(b) for b in ci):
    lo, hi = (percent(b, sign=True, unit="") for b in ci)
    text += f" [{lo}, {hi}]"
  return f"{text}, {p_value(p)}"


def class_name(class_names: Sequence[str], k: Any) -> str:
  """The name of class index `k` ("class k" when the list has no such entry, e.g. a padded or foreign id)."""
  k = int(k)
  return str(class_names[k]) if 0 <= k < len(class_names) else f"class {k}"


def html_table(header: Sequence[str], rows: Sequence[Sequence[str]], *, left: int = 1, table_id: str = "",
               css_class: str = "") -> str:
  """An HTML table: `header` is text (escaped here), each row's cells are HTML (escape text with `escape`); the
  first `left` columns are left-aligned, the others (numbers) right-aligned."""
  align = lambda i: ' class="l"' if i < left else ""  # noqa: E731
  attrs = (f' id="{escape(table_id)}"' if table_id else "") + (f' class="{escape(css_class)}"' if css_class else "")
  head = "".join(f"<th{align(i)}>{escape(h)}</th>" for i, h in enumerate(header))
  body = "".join("<tr>" + "".join(f"<td{align(i)}>{c}</td>" for i, c in enumerate(row)) + "</tr>" for row in rows)
  return f"<table{attrs}><tr>{head}</tr>{body}</table>"


def _md_cell(value: Any) -> str:
  return str(value).replace("|", "\\|").replace("\r", " ").replace("\n", " ")


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]], *, left: int = 1) -> str:
  """A Markdown (GitHub) table of text cells ('|' escaped); the first `left` columns left-aligned, the rest right."""
  lines = ["| " + " | ".join(_md_cell(h) for h in header) + " |",
           "|" + "".join("---|" if i < left else "---:|" for i in range(len(header)))]
  lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
  return "\n".join(lines)


# First characters that make a spreadsheet (Excel, LibreOffice, Sheets) read a cell as a formula.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(v: Any) -> str:
  """One CSV cell as text: None and NaN empty, floats with 6 significant digits, numbers as they are, and text
  that a spreadsheet would run as a formula (starting with = + - @, tab or CR) behind a single quote, as OWASP
  recommends against CSV injection: file names, labels and ids come from users' files."""
  if is_missing(v):
    return ""
  if isinstance(v, (bool, np.bool_)):
    return str(bool(v))
  if isinstance(v, (float, np.floating)):
    return f"{float(v):.6g}"
  if isinstance(v, (int, np.integer)):
    return str(int(v))
  text = str(v)
  return "'" + text if text.startswith(FORMULA_START) else text


def csv_text(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
  """CSV through the `csv` module (fields with commas, quotes or newlines quoted), every cell (header included)
  through `csv_cell`: the one writer of the product's CSV files."""
  out = []
  for row in [header, *rows]:
    # A "\r\n" terminator makes the csv module quote a cell holding a lone CR too (with "\n" it does not, and
    # the row would split in readers); each row then ends in "\n" like the rest of our text files.
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\r\n").writerow([csv_cell(v) for v in row])
    out.append(buf.getvalue()[:-2] + "\n")
  return "".join(out)


def save_thumbnail(pixels: Union[np.ndarray, Image.Image], path: str, *, max_side: Optional[int] = None,
                   quality: int = 88) -> str:
  """Writes an image (uint8 or float pixels in [0, 255], (H, W, 3); or a PIL image) to `path` (format from the
  extension), shrunk to `max_side` on its longest side keeping its proportions (Lanczos), atomically.
  Returns `path`."""
  if isinstance(pixels, Image.Image):
    img = pixels.convert("RGB")
  else:
    img = Image.fromarray(np.asarray(np.clip(np.round(np.asarray(pixels, np.float64)), 0, 255), np.uint8))
  if max_side and max(img.size) > max_side:
    img.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
  fmt = Image.registered_extensions().get(os.path.splitext(path)[1].lower(), "JPEG")
  with atomic.open_atomic(path) as f:
    img.save(f, format=fmt, **({"quality": quality} if fmt == "JPEG" else {}))
  return path


def image_check_script(what: str = "report") -> str:
  """The page script that flags images that fail to load: outlined on the page, on the console, and counted in
  the body's `data-images-ok`, so a broken page is noticed, not silently half-rendered."""
  return """
window.addEventListener('load', function () {
  var bad = 0;
  for (var i = 0; i < document.images.length; i++) {
    var im = document.images[i];
    if (!(im.complete && im.naturalWidth > 0)) {
      bad++; im.classList.add('missing'); im.alt = 'missing: ' + im.getAttribute('src');
      console.error('WHAT image failed to load: ' + im.getAttribute('src'));
    }
  }
  document.body.setAttribute('data-images-ok', String(document.images.length - bad));
});
""".replace("WHAT", what.replace("\\", "").replace("'", ""))


def document(title: str, body: str, *, what: str = "report", css: str = "") -> str:
  """A whole static page: `title` (text), `body` (HTML), the shared CSS plus `css`, and the image check."""
  return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
          f"<style>{CSS}{css}</style></head><body>{body}<script>{image_check_script(what)}</script></body></html>")
