"""`report.html` of an evaluation run: every (model, dataset) pair next to the paper, per-origin bars, failures.

Static HTML with relative links to thumbnails under `<workdir>/report/`, the sweep report's style and its
image-load check (a missing picture is flagged visibly and on the console).
"""
import datetime
import html
import os
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
from PIL import Image

from zoomjax.runtime import atomic
from zoomjax.reports import sweep as sweep_report

ASSETS = "report"
_CSS_EXTRA = """
.bar{height:12px;background:#4a78c2;display:inline-block;vertical-align:middle}
.bars td{border:none;padding:1px 6px} .delta-pos{color:#17803d} .delta-neg{color:#b42318}
.fail{border:1px solid #ddd;border-radius:6px;padding:6px;width:250px;font-size:12px}
.fail img{max-width:236px;max-height:160px;display:block;margin-bottom:4px}
"""


def _esc(s) -> str:
  return html.escape(str(s))


def _pct(x: Optional[float], ci: Optional[Sequence[float]] = None) -> str:
  if x is None:
    return "–"
  out = f"{100 * x:.2f}"
  if ci:
    out += f' <span class="muted">[{100 * ci[0]:.1f}–{100 * ci[1]:.1f}]</span>'
  return out


def _cell(r: Optional[Dict[str, Any]]) -> str:
  if r is None:
    return '<span class="muted">pending</span>'
  ci = (r.get("ci95") or {}).get("top1")
  out = f"<b>{_pct(r.get('top1'), ci)}</b><br>top-5 {_pct(r.get('top5'))}"
  paper = (r.get("paper") or {}).get("top1_percent")
  if paper is not None and r.get("top1") is not None:
    d = 100 * r["top1"] - paper
    out += (f'<br>paper {paper:.2f} <span class="{"delta-pos" if d >= 0 else "delta-neg"}">'
            f'({d:+.2f})</span>')
  return out


def _origin_bars(results: Sequence[Dict[str, Any]]) -> str:
  parts = []
  for r in results:
    per = r.get("per_origin")
    if not per:
      continue
    rows = []
    for origin, v in sorted(per.items(), key=lambda kv: -kv[1]["num_images"]):
      w = max(1, int(round(300 * (v["top1"] or 0.0))))
      rows.append(f'<tr><td class="l">{_esc(origin)}</td><td class="l">{v["num_images"]}</td>'
                  f'<td class="l"><span class="bar" style="width:{w}px"></span> {_pct(v["top1"])}</td>'
                  f'<td class="l">top-5 {_pct(v["top5"])}</td></tr>')
    parts.append(f"<h3>{_esc(r['row'])} on {_esc(r['dataset'])}</h3>"
                 f'<table class="bars"><tr><th class="l">origin</th><th class="l">images</th>'
                 f'<th class="l">top-1 %</th><th class="l"></th></tr>{"".join(rows)}</table>')
  return "".join(parts)


def failures(pred: Dict[str, np.ndarray], limit: int) -> List[int]:
  """Rows of the most confident wrong top-1 predictions, most confident first (ties by row)."""
  wrong = np.flatnonzero(~np.asarray(pred["correct"], bool))
  conf = np.asarray(pred["top5_p"])[wrong, 0]
  return [int(wrong[k]) for k in np.lexsort((wrong, -conf))[:limit]]


def _thumbnail(dataset, index: int, path: str, max_side: int = 236) -> bool:
  if os.path.exists(path):
    return True
  try:
    img = Image.fromarray(dataset.read(index)["image"])
  except Exception:  # pylint: disable=broad-except  An unreadable image is shown as missing, not fatal.
    return False
  img.thumbnail((max_side, max_side), Image.Resampling.BICUBIC)
  tmp = f"{path}.tmp{os.getpid()}.jpg"
  img.save(tmp, quality=88)
  os.replace(tmp, path)
  return True


def _gallery(workdir: str, r: Dict[str, Any], dataset, limit: int) -> str:
  rel = r.get("predictions")  # The pair's predictions.npz, relative to the workdir.
  path = os.path.join(workdir, rel) if rel else ""
  if limit <= 0 or dataset is None or not os.path.exists(path):
    return ""
  pair = os.path.basename(os.path.dirname(rel))
  with np.load(path, allow_pickle=False) as z:
    pred = {k: z[k] for k in ("index", "ids", "labels", "top5", "top5_p", "correct")}
  rows = failures(pred, limit)
  if not rows:
    return ""
  names = dataset.class_names
  adir = os.path.join(workdir, ASSETS, pair)
  os.makedirs(adir, exist_ok=True)
  cards = []
  for k in rows:
    index = int(pred["index"][k])
    rel = f"{ASSETS}/{pair}/{index}.jpg"
    img = (f'<img src="{_esc(rel)}" alt="{_esc(pred["ids"][k])}">'
           if _thumbnail(dataset, index, os.path.join(workdir, rel)) else "")
    truth = ", ".join(_esc(names[int(x)]) for x in pred["labels"][k] if x >= 0)
    top = "".join(f"<li>{_esc(names[int(c)] if 0 <= int(c) < len(names) else c)} {100 * float(p):.1f}%</li>"
                  for c, p in zip(pred["top5"][k], pred["top5_p"][k]))
    cards.append(f'<div class="fail">{img}<b>{_esc(pred["ids"][k])}</b><br>true: {truth}<ol>{top}</ol></div>')
  return (f"<details><summary>{_esc(r['row'])} on {_esc(r['dataset'])}: {len(rows)} most confident failures"
          f'</summary><div class="gallery">{"".join(cards)}</div></details>')


def write_report(workdir: str, results: Sequence[Dict[str, Any]], *, entries: Sequence[str],
                 datasets: Sequence[str], data: Dict[str, Any], gallery_size: int = 8, command: str = "") -> str:
  """Writes `<workdir>/report.html` (and its thumbnails); returns its path. `data`: dataset name -> Dataset."""
  by = {(r["row"], r["dataset"]): r for r in results}
  header = "".join(f"<th>{_esc(d)}</th>" for d in datasets)
  body = []
  for row in entries:
    cells = "".join(f"<td>{_cell(by.get((row, d)))}</td>" for d in datasets)
    body.append(f'<tr><td class="l">{_esc(row)}</td>{cells}</tr>')
  table = f'<table id="results"><tr><th class="l">model</th>{header}</tr>{"".join(body)}</table>'
  speed = "".join(
      f'<tr><td class="l">{_esc(r["row"])}</td><td class="l">{_esc(r["dataset"])}</td>'
      f'<td>{r["num_images"]}</td><td>{r["num_skipped"]}</td><td>{_rate(r.get("images_per_second"))}</td>'
      f'<td class="l">{_esc(_pp(r))}</td><td class="l">{_esc(r.get("dtype"))}</td></tr>' for r in results)
  galleries = "".join(_gallery(workdir, r, data.get(r["dataset"]), gallery_size) for r in results)
  bars = _origin_bars(results)
  now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
  page = f"""<!doctype html><html><head><meta charset="utf-8"><title>zoomjax evaluation</title>
<style>{sweep_report._CSS}{_CSS_EXTRA}</style>
<script>{sweep_report.image_check_script('evaluation report')}</script></head><body>
<h1>Evaluation: {len(entries)} models x {len(datasets)} datasets</h1>
<p class="muted">{now}{' · <code>' + _esc(command) + '</code>' if command else ''}</p>
<h2>Top-1 % [95 % bootstrap interval], top-5 %, and the paper's number</h2>
{table}
<p class="muted">Top-1 and top-5 count a hit when the prediction is any of the image's labels (multi-label sets:
ReaL, IN+ReaL, ImageNet-Hard); ImageNet-A/R and ObjectNet are scored on their class subsets. Paper numbers:
ImageNet-Hard from paper.md §4.6; the other datasets from Table 1 / §2.4 (the zoom study's 1-crop view, on the
full datasets: a reference, not a target on a subset).</p>
{'<h2>Per origin</h2>' + bars if bars else ''}
<h2>Runs</h2>
<table><tr><th class="l">model</th><th class="l">dataset</th><th>images</th><th>skipped</th><th>images/s</th>
<th class="l">preprocessing</th><th class="l">dtype</th></tr>{speed}</table>
{'<h2>Failures</h2>' + galleries if galleries else ''}
</body></html>"""
  path = os.path.join(workdir, "report.html")
  atomic.write_text(path, page)
  return path


def _rate(x: Optional[float]) -> str:
  return "–" if x is None else f"{x:.1f}"


def _pp(r: Dict[str, Any]) -> str:
  pp = r.get("preprocessing") or {}
  if not pp:
    return ""
  return f"resize {pp['resize_size']} {pp['resize_method']} -> crop {pp['input_size']}"
