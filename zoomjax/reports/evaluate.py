"""`report.html` of an evaluation run: every (model, dataset) pair next to the paper, per-origin bars, failures.

Static HTML with relative links to thumbnails under `<workdir>/report/`, in the reports' shared style with their
image-load check (`zoomjax.reports.html`: a missing picture is flagged visibly and on the console).
"""
import datetime
import os
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from zoomjax.reports import html
from zoomjax.runtime import atomic

__all__ = ["ASSETS", "failures", "write_report"]

ASSETS = "report"
_CSS_EXTRA = """
.bar{height:12px;background:#4a78c2;display:inline-block;vertical-align:middle}
.bars td{border:none;padding:1px 6px} .delta-pos{color:#17803d} .delta-neg{color:#b42318}
.fail{border:1px solid #ddd;border-radius:6px;padding:6px;width:250px;font-size:12px}
.fail img{max-width:236px;max-height:160px;display:block;margin-bottom:4px}
"""


def _cell(r: Optional[Dict[str, Any]]) -> str:
  if r is None:
    return '<span class="muted">pending</span>'
  ci = (r.get("ci95") or {}).get("top1")
  out = f"<b>{html.escape(html.interval(r.get('top1'), ci))}</b><br>top-5 {html.escape(html.percent(r.get('top5')))}"
  paper = (r.get("paper") or {}).get("top1_percent")
  if paper is not None and r.get("top1") is not None:
    d = r["top1"] - paper / 100
    delta = html.escape(html.percent(d, sign=True))
    out += (f'<br>paper {html.escape(html.published(paper))} '
            f'<span class="{"delta-pos" if d >= 0 else "delta-neg"}">({delta})</span>')
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
      rows.append([html.escape(origin), str(v["num_images"]),
                   f'<span class="bar" style="width:{w}px"></span> '
                   f'{html.escape(html.interval(v["top1"], v.get("top1_ci95")))}',
                   f'top-5 {html.escape(html.percent(v["top5"]))}'])
    parts.append(f"<h3>{html.escape(r['row'])} on {html.escape(r['dataset'])}</h3>"
                 + html.html_table(["origin", "images", "top-1", ""], rows, left=4, css_class="bars"))
  return "".join(parts)


def failures(pred: Dict[str, np.ndarray], limit: int) -> List[int]:
  """Rows of the most confident wrong top-1 predictions, most confident first (ties by row)."""
  wrong = np.flatnonzero(~np.asarray(pred["correct"], bool))
  conf = np.asarray(pred["top5_p"])[wrong, 0]
  return [int(wrong[k]) for k in np.lexsort((wrong, -conf))[:limit]]


def _thumbnail(dataset, index: int, path: str, max_side: int = 236) -> bool:
  """The image's thumbnail at `path` (kept from an earlier write of the report); False if it cannot be read."""
  if os.path.exists(path):
    return True
  try:
    image = dataset.read(index)["image"]
  except Exception:  # pylint: disable=broad-except  An unreadable image is shown as missing, not fatal.
    return False
  html.save_thumbnail(image, path, max_side=max_side)
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
    img = (f'<img src="{html.escape(rel)}" alt="{html.escape(pred["ids"][k])}">'
           if _thumbnail(dataset, index, os.path.join(workdir, rel)) else "")
    truth = ", ".join(html.escape(html.class_name(names, x)) for x in pred["labels"][k] if x >= 0)
    top = "".join(f"<li>{html.escape(html.class_name(names, c))} {html.escape(html.percent(float(p)))}</li>"
                  for c, p in zip(pred["top5"][k], pred["top5_p"][k]))
    cards.append(f'<div class="fail">{img}<b>{html.escape(pred["ids"][k])}</b><br>true: {truth}<ol>{top}</ol></div>')
  return (f"<details><summary>{html.escape(r['row'])} on {html.escape(r['dataset'])}: {len(rows)} most confident "
          "failures"
          f'</summary><div class="gallery">{"".join(cards)}</div></details>')


def write_report(workdir: str, results: Sequence[Dict[str, Any]], *, entries: Sequence[str],
                 datasets: Sequence[str], data: Dict[str, Any], gallery_size: int = 8, command: str = "",
                 paired: Sequence[Dict[str, Any]] = ()) -> str:
  """Writes `<workdir>/report.html` (and its thumbnails); returns its path. `data`: dataset name -> Dataset.
  paired: models compared on the same images (`zoomjax.jobs.evaluate.paired_models`)."""
  by = {(r["row"], r["dataset"]): r for r in results}
  table = html.html_table(["model"] + list(datasets),
                          [[html.escape(row)] + [_cell(by.get((row, d))) for d in datasets] for row in entries],
                          table_id="results")
  speed = html.html_table(
      ["model", "dataset", "images", "skipped", "images/s", "preprocessing", "dtype"],
      [[html.escape(r["row"]), html.escape(r["dataset"]), str(r["num_images"]), str(r["num_skipped"]),
        _rate(r.get("images_per_second")), html.escape(_pp(r)), html.escape(r.get("dtype"))] for r in results], left=2)
  galleries = "".join(_gallery(workdir, r, data.get(r["dataset"]), gallery_size) for r in results)
  pairs = html.html_table(
      ["dataset", "top-1 difference [95 % interval], p (McNemar)", "right only by one / other", "images"],
      [[html.escape(p["dataset"]), html.escape(p["refused"] if "refused" in p else
                                               html.paired(p["a"], p["b"], p["diff"], p["ci95"], p["p_value"])),
        "" if "refused" in p else f"{p['a_only']} / {p['b_only']}", str(p.get("n", ""))] for p in paired],
      left=2) if paired else ""
  bars = _origin_bars(results)
  now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
  body = f"""<h1>Evaluation: {len(entries)} models x {len(datasets)} datasets</h1>
<p class="muted">{now}{' · <code>' + html.escape(command) + '</code>' if command else ''}</p>
<h2>Top-1 [95 % bootstrap interval], top-5, and the paper's number</h2>
{table}
<p class="muted">Top-1 and top-5 count a hit when the prediction is any of the image's labels (multi-label sets:
ReaL, IN+ReaL, ImageNet-Hard); ImageNet-A/R and ObjectNet are scored on their class subsets. Paper numbers:
ImageNet-Hard from docs/study.md §4.6; the other datasets from Table 1 / §2.4 (the zoom study's 1-crop view, on
the full datasets: a reference, not a target on a subset).</p>
{'<h2>Models compared on the same images (paired)</h2>' + pairs if pairs else ''}
{'<h2>Per origin</h2>' + bars if bars else ''}
<h2>Runs</h2>
{speed}
{'<h2>Failures</h2>' + galleries if galleries else ''}
"""
  path = os.path.join(workdir, "report.html")
  atomic.write_text(path, html.document("zoomjax evaluation", body, what="evaluation report", css=_CSS_EXTRA))
  return path


def _rate(x: Optional[float]) -> str:
  return html.MISSING if x is None else f"{x:.1f}"


def _pp(r: Dict[str, Any]) -> str:
  pp = r.get("preprocessing") or {}
  if not pp:
    return ""
  how = "squash to" if pp.get("crop_mode") == "squash" else "resize"
  method = pp["resize_method"] + (" (TensorFlow, no antialias)" if pp.get("antialias") is False else "")
  return f"{how} {pp['resize_size']} {method} -> crop {pp['input_size']}"
