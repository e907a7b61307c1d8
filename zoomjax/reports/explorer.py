"""The image explorer of a finished sweep: static files (no server) to look at every view of every image.

  python -m zoomjax.reports.explorer WORKDIR [--out DIR] [--max-images N]     (default DIR: WORKDIR/explorer)

`write_explorer` writes explorer.html, explorer_data.js (the records of the images shown, as one JS literal, since
browsers do not let a file:// page fetch JSON) and thumbs/ (each original, downscaled to `thumb_side` keeping its
proportions). Per image the page shows the zoom grid (one row per scale, one column per anchor) coloured by the
probability of the true label, correct views marked and the 1-crop outlined; hovering or clicking a view shows its
name, its top-5 classes and the crop itself, drawn on a <canvas> from the thumbnail with zoom.py's geometry
(short side to S, the crop window centred on the anchor's tile, black outside). Records keep the top-1 and the
true-label probabilities of a view, not the other top-5 probabilities, so only those two are shown. Images are
searchable by id or class and sortable by "rescued" (1-crop wrong, some view right) and "never solved".

Only an explicit call writes into a sweep's workdir; the study job writes its explorers into its own workdir.
Test hook: `explorer.html#test-click=<id>[&view=<name>][&search=<text>][&sort=<key>]` selects the image, clicks
the view (default: its best correct view, else the 1-crop), and writes what the page shows into
<pre id="test-result"> (JSON), for headless Chromium's --dump-dom.
"""
import argparse
import json
import os
import sys
from typing import Callable, List, Optional

import numpy as np
from PIL import Image

from zoomjax.analysis import metrics as analyses
from zoomjax.runtime import atomic
from zoomjax.runtime import console
from zoomjax import errors
from zoomjax.analysis import sweep_results as sweep_workdir

DATA_FILE = "explorer_data.js"
PAGE_FILE = "explorer.html"
THUMBS = "thumbs"


def choose_rows(C: np.ndarray, one_crop: Optional[int], max_images: int) -> np.ndarray:
  """Rows shown when there are more than `max_images`: the rescued images (1-crop wrong, some view right), then
  the never-solved ones, then the rest, each in dataset order; returned in dataset order."""
  n = C.shape[0]
  if max_images <= 0 or n <= max_images:
    return np.arange(n)
  solved = C.any(axis=1)
  rescued = solved & ~C[:, one_crop] if one_crop is not None else np.zeros(n, bool)
  order = np.concatenate([np.flatnonzero(rescued), np.flatnonzero(~solved), np.flatnonzero(solved & ~rescued)])
  return np.sort(order[:max_images])


def _thumbnail(image: np.ndarray, path: str, side: int) -> None:
  img = Image.fromarray(np.asarray(image, np.uint8))
  if max(img.size) > side:
    img.thumbnail((side, side), Image.Resampling.LANCZOS)
  img.save(path, quality=88)


def explorer_data(sweep: sweep_workdir.Sweep, rec, rows: np.ndarray, thumbs: List[Optional[str]],
                  sizes: List[Optional[List[int]]]) -> dict:
  """The JSON-ready data of the page: grid, class names, and per shown image its views' records."""
  from zoomjax.data import classes  # pylint: disable=g-import-not-at-top
  names = [str(v) for v in rec.view_names]
  C = analyses.correctness(rec.top1, rec.labels)
  j = names.index(analyses.ONE_CROP_VIEW) if analyses.ONE_CROP_VIEW in names else None
  scales, anchors, crop = sweep.grid
  images = []
  for k, i in enumerate(rows):
    ok = C[i]
    images.append({
        "id": str(rec.ids[i]), "index": int(rec.index[i]), "labels": [int(x) for x in rec.labels[i] if x >= 0],
        "hw": sizes[k], "thumb": thumbs[k],
        "p_true": [round(float(v), 4) for v in rec.p_true[i]], "p_max": [round(float(v), 4) for v in rec.p_max[i]],
        "top5": rec.top5[i].astype(int).reshape(-1).tolist(), "correct": "".join("1" if v else "0" for v in ok),
        "n_correct": int(ok.sum()), "one_crop_correct": None if j is None else bool(ok[j]),
        "rescued": bool(j is not None and not ok[j] and ok.any()), "never": bool(not ok.any())})
  return {"model": sweep.label, "dataset": str(sweep.dataset.get("name")), "workdir": sweep.workdir,
          "grid": {"scales": list(scales), "anchors": anchors, "crop": crop}, "view_names": names,
          "one_crop_view": -1 if j is None else j, "classes": classes.class_names(),
          "num_images_total": len(rec), "images": images}


def write_explorer(sweep_dir: str, out_dir: Optional[str] = None, max_images: int = 200, *, thumb_side: int = 512,
                   read_image: Optional[Callable[[int], np.ndarray]] = None) -> str:
  """Writes the explorer of the finished sweep in `sweep_dir` into `out_dir` (default: `sweep_dir`/explorer);
  returns the path of explorer.html.

  max_images: at most this many images (0 = all; `choose_rows` picks which). thumb_side: longest side of the
  stored originals. read_image(global index) -> uint8 (H, W, 3): the originals (default: the sweep's dataset,
  rebuilt from its config.json; without it the page shows no crops, with a warning).
  """
  sweep = sweep_workdir.open_sweep(sweep_dir)
  out_dir = out_dir or os.path.join(sweep_dir, "explorer")
  rec = sweep.records()
  names = [str(v) for v in rec.view_names]
  C = analyses.correctness(rec.top1, rec.labels)
  one = names.index(analyses.ONE_CROP_VIEW) if analyses.ONE_CROP_VIEW in names else None
  rows = choose_rows(C, one, int(max_images))
  if read_image is None:
    try:
      ds = sweep_workdir.source_dataset(sweep)
      read_image = lambda i: ds.read(i)["image"]  # noqa: E731
    except errors.UserError as e:
      console.warn(f"explorer of {sweep_dir}: no originals, so no crops ({e})")
  os.makedirs(os.path.join(out_dir, THUMBS), exist_ok=True)
  thumbs, sizes = [], []
  for i in rows:
    thumb, hw = None, None
    if read_image is not None:
      try:
        image = np.asarray(read_image(int(rec.index[i])))
        hw = [int(image.shape[0]), int(image.shape[1])]
        thumb = f"{THUMBS}/{int(rec.index[i]):06d}.jpg"
        _thumbnail(image, os.path.join(out_dir, thumb), int(thumb_side))
      except Exception as e:  # pylint: disable=broad-except  One unreadable original costs its crops only.
        console.warn(f"explorer of {sweep_dir}: cannot read image {rec.ids[i]} ({type(e).__name__}: {e})")
        thumb, hw = None, None
    thumbs.append(thumb)
    sizes.append(hw)
  data = analyses.nan_to_none(explorer_data(sweep, rec, rows, thumbs, sizes))
  atomic.write_text(os.path.join(out_dir, DATA_FILE),
                    "window.EXPLORER_DATA = " + json.dumps(data, separators=(",", ":"), allow_nan=False) + ";\n")
  title = f"{sweep.label} on {data['dataset']}"
  page = _PAGE.replace("__TITLE__", _html_escape(title)).replace("__DATA__", DATA_FILE)
  path = os.path.join(out_dir, PAGE_FILE)
  atomic.write_text(path, page)
  return path


def _html_escape(s: str) -> str:
  import html  # pylint: disable=g-import-not-at-top
  return html.escape(s)


_PAGE = r"""<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>Explorer: __TITLE__</title>
<script>
window.__errors = [];
window.addEventListener('error', function (e) {
  var t = e.target;
  if (t && t !== window && (t.src || t.href)) window.__errors.push('failed to load ' + (t.src || t.href));
  else window.__errors.push(String(e.message || e.error));
}, true);
window.addEventListener('unhandledrejection', function (e) { window.__errors.push('unhandled: ' + e.reason); });
(function () {
  var orig = console.error;
  console.error = function () {
    window.__errors.push([].slice.call(arguments).join(' ')); orig.apply(console, arguments);
  };
})();
</script>
<style>
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#222;display:flex;height:100vh}
#side{width:290px;border-right:1px solid #ddd;display:flex;flex-direction:column;padding:8px;box-sizing:border-box;
overflow-wrap:anywhere}
#side input,#side select{width:100%;margin:3px 0;padding:3px;box-sizing:border-box}
#list{overflow-y:auto;flex:1;font-size:12px} .item{padding:4px;border-bottom:1px solid #eee;cursor:pointer}
.item:hover{background:#f3f6ff} .item.sel{background:#dfe8ff}
.badge{font-size:10px;padding:0 4px;border-radius:3px;margin-left:3px}
.b-res{background:#d7f5dd;color:#17803d} .b-nev{background:#fde2e1;color:#b42318} .b-one{background:#eee;color:#555}
#main{flex:1;overflow:auto;padding:10px 16px} h1{font-size:18px;margin:4px 0} .muted{color:#777;font-size:12px}
#top{display:flex;gap:18px;align-items:flex-start;flex-wrap:wrap}
#orig{max-height:260px;max-width:360px;border:1px solid #ccc}
#grid{border-collapse:collapse;font-size:10px}
#grid td.cell{width:22px;height:13px;border:1px solid #fff;cursor:pointer;text-align:center;line-height:11px;
color:#fff;padding:0} #grid td.cell.ok::after{content:'\2022';color:#fff;font-weight:bold}
#grid td.cell.one{outline:2px solid #e11;outline-offset:-2px}
#grid td.cell.cur{outline:2px solid #000;outline-offset:-2px}
#grid th{font-weight:normal;color:#555;padding:0 4px;text-align:right} #view{min-width:260px}
#crop{border:1px solid #ccc;background:#000;display:block} #top5{margin:4px 0;padding-left:22px;font-size:13px}
.true{color:#17803d;font-weight:bold} #legend{font-size:11px;color:#555;margin:6px 0}
#bar{display:inline-block;width:140px;height:10px;vertical-align:middle;margin:0 4px}
</style></head><body>
<div id="side">
  <div><b>__TITLE__</b></div><div class="muted" id="summary"></div>
  <input id="search" placeholder="search id or class" autocomplete="off">
  <select id="sort">
    <option value="index">dataset order</option><option value="rescued">rescued first</option>
    <option value="never">never solved first</option><option value="most">most views correct</option>
    <option value="fewest">fewest views correct</option>
  </select>
  <div id="list"></div>
</div>
<div id="main">
  <div id="empty" class="muted">Select an image.</div>
  <div id="detail" style="display:none">
    <h1 id="img-title"></h1><div class="muted" id="img-meta"></div>
    <div id="top">
      <div><img id="orig" alt="original"><div class="muted" id="orig-note"></div></div>
      <div id="view">
        <div><b id="view-name">hover or click a view</b></div><div class="muted" id="view-meta"></div>
        <canvas id="crop" width="224" height="224"></canvas><div class="muted" id="crop-note"></div>
        <ol id="top5"></ol>
      </div>
    </div>
    <div id="legend">p(true label): 0<canvas id="bar" width="140" height="10"></canvas>1 · • correct view ·
      <span style="outline:2px solid #e11">&nbsp;1-crop&nbsp;</span> (LOC:1_1_Size:256) ·
      rows: scale S, columns: anchor (row, col)</div>
    <table id="grid"></table>
  </div>
  <pre id="test-result" style="display:none"></pre>
</div>
<script src="__DATA__"></script>
<script>
(function () {
'use strict';
var D = window.EXPLORER_DATA;
if (!D) { console.error('explorer data failed to load'); return; }
var T = D.view_names.length, G = D.grid, N = G.anchors, CROP = G.crop;
var byId = {}; D.images.forEach(function (im, k) { byId[im.id] = k; });
var cur = null, pinned = -1, imgEl = null, imgReady = null;
var $ = function (id) { return document.getElementById(id); };
var VIRIDIS = [[68,1,84],[59,82,139],[33,145,140],[94,201,98],[253,231,37]];
function colour(p) {
  if (p === null || p === undefined || isNaN(p)) return 'rgb(200,200,200)';
  var x = Math.max(0, Math.min(1, p)) * (VIRIDIS.length - 1);
  var i = Math.min(Math.floor(x), VIRIDIS.length - 2), f = x - i;
  var a = VIRIDIS[i], b = VIRIDIS[i + 1];
  return 'rgb(' + [0, 1, 2].map(function (c) { return Math.round(a[c] + f * (b[c] - a[c])); }).join(',') + ')';
}
function cls(k) { return k >= 0 && k < D.classes.length ? D.classes[k] : 'class ' + k; }
function labelText(im) { return im.labels.map(cls).join(', '); }
function idiv(a, b) { return (a - a % b) / b; }  // Integer division of non-negative ints, as Python's //.
// zoomjax.zoom.zoom_geometry: short side -> S, long side -> (S * long) // short; tile = side // n;
// window start = i * tile + tile // 2 - crop // 2.
function geometry(h, w, s) {
  var oh, ow;
  if (w <= h) { oh = idiv(s * h, w); ow = s; } else { oh = s; ow = idiv(s * w, h); }
  var th = idiv(oh, N), tw = idiv(ow, N), half = idiv(CROP, 2);
  var tops = [], lefts = [];
  for (var i = 0; i < N; i++) { tops.push(i * th + idiv(th, 2) - half); lefts.push(i * tw + idiv(tw, 2) - half); }
  return {oh: oh, ow: ow, tops: tops, lefts: lefts};
}
function parseView(t) {
  var per = N * N, a = t % per;
  return {s: G.scales[Math.floor(t / per)], r: Math.floor(a / N), c: a % N};
}

function renderList() {
  var q = $('search').value.trim().toLowerCase(), key = $('sort').value;
  var rows = D.images.map(function (im, k) { return k; }).filter(function (k) {
    var im = D.images[k];
    return !q || im.id.toLowerCase().indexOf(q) >= 0 || labelText(im).toLowerCase().indexOf(q) >= 0;
  });
  var score = {index: function (im) { return 0; }, rescued: function (im) { return im.rescued ? 0 : 1; },
               never: function (im) { return im.never ? 0 : 1; }, most: function (im) { return -im.n_correct; },
               fewest: function (im) { return im.n_correct; }}[key];
  rows.sort(function (a, b) { return (score(D.images[a]) - score(D.images[b])) || (a - b); });
  var list = $('list'); list.innerHTML = '';
  rows.forEach(function (k) {
    var im = D.images[k], el = document.createElement('div');
    el.className = 'item' + (cur === k ? ' sel' : ''); el.dataset.id = im.id;
    el.textContent = im.id + ' · ' + labelText(im) + ' · ' + im.n_correct + '/' + T;
    if (im.rescued) el.insertAdjacentHTML('beforeend', '<span class="badge b-res">rescued</span>');
    if (im.never) el.insertAdjacentHTML('beforeend', '<span class="badge b-nev">never solved</span>');
    if (im.one_crop_correct) el.insertAdjacentHTML('beforeend', '<span class="badge b-one">1-crop ok</span>');
    el.addEventListener('click', function () { select(k); });
    list.appendChild(el);
  });
  return rows.map(function (k) { return D.images[k].id; });
}

function select(k) {
  cur = k; pinned = -1;
  var im = D.images[k];
  $('empty').style.display = 'none'; $('detail').style.display = '';
  $('img-title').textContent = im.id;
  $('img-meta').textContent = 'true: ' + labelText(im) + ' · ' + im.n_correct + ' of ' + T + ' views correct' +
      (im.one_crop_correct === null ? '' : ' · 1-crop ' + (im.one_crop_correct ? 'correct' : 'wrong')) +
      (im.rescued ? ' · rescued by zoom' : '') + (im.never ? ' · never solved' : '');
  [].forEach.call(document.querySelectorAll('.item'), function (el) {
    el.classList.toggle('sel', el.dataset.id === im.id);
  });
  imgEl = null; imgReady = Promise.resolve(null);
  if (im.thumb) {
    imgEl = new Image();
    imgReady = new Promise(function (ok) {
      imgEl.onload = function () { ok(imgEl); };
      imgEl.onerror = function () { console.error('thumbnail failed to load: ' + im.thumb); ok(null); };
    });
    imgEl.src = im.thumb;
    $('orig').src = im.thumb; $('orig').style.display = '';
    $('orig-note').textContent = 'original ' + im.hw[1] + ' x ' + im.hw[0] + ' px';
  } else {
    $('orig').removeAttribute('src'); $('orig').style.display = 'none';
    $('orig-note').textContent = 'original not stored: no crops';
  }
  renderGrid(im);
  showView(-1);
}

function renderGrid(im) {
  var g = $('grid'); g.innerHTML = '';
  var head = document.createElement('tr'); head.appendChild(document.createElement('th'));
  for (var a = 0; a < N * N; a++) {
    var th = document.createElement('th'); th.textContent = Math.floor(a / N) + ',' + (a % N); head.appendChild(th);
  }
  g.appendChild(head);
  for (var si = 0; si < G.scales.length; si++) {
    var tr = document.createElement('tr'), lab = document.createElement('th');
    lab.textContent = 'S=' + G.scales[si]; tr.appendChild(lab);
    for (var a2 = 0; a2 < N * N; a2++) {
      var t = si * N * N + a2, td = document.createElement('td');
      td.className = 'cell' + (im.correct[t] === '1' ? ' ok' : '') + (t === D.one_crop_view ? ' one' : '');
      td.style.background = colour(im.p_true[t]); td.dataset.view = String(t); td.title = D.view_names[t];
      tr.appendChild(td);
    }
    g.appendChild(tr);
  }
}

function showView(t) {
  [].forEach.call(document.querySelectorAll('#grid td.cur'), function (el) { el.classList.remove('cur'); });
  var ctx = $('crop').getContext('2d'), im = D.images[cur];
  var top5 = $('top5'); top5.innerHTML = '';
  if (t < 0) {
    $('view-name').textContent = 'hover or click a view'; $('view-meta').textContent = '';
    ctx.fillStyle = '#000'; ctx.fillRect(0, 0, CROP, CROP); $('crop-note').textContent = '';
    return Promise.resolve(null);
  }
  var cell = document.querySelector('#grid td.cell[data-view="' + t + '"]'); if (cell) cell.classList.add('cur');
  var v = parseView(t), ok = im.correct[t] === '1';
  $('view-name').textContent = D.view_names[t];
  $('view-meta').textContent = 'S=' + v.s + ', anchor (' + v.r + ', ' + v.c + ') · ' + (ok ? 'correct' : 'wrong') +
      ' · p(true) ' + (im.p_true[t] === null ? '–' : im.p_true[t].toFixed(3));
  var seenTrue = false;
  for (var r = 0; r < 5; r++) {
    var k = im.top5[t * 5 + r], li = document.createElement('li'), isTrue = im.labels.indexOf(k) >= 0, p = null;
    if (r === 0) p = im.p_max[t]; else if (isTrue && !seenTrue) p = im.p_true[t];
    if (isTrue) seenTrue = true;
    li.textContent = cls(k) + (p === null ? '' : '  ' + (100 * p).toFixed(1) + ' %');
    if (isTrue) li.className = 'true';
    top5.appendChild(li);
  }
  if (!im.thumb) { ctx.fillStyle = '#000'; ctx.fillRect(0, 0, CROP, CROP); return Promise.resolve(null); }
  var want = cur;
  return imgReady.then(function (img) {
    if (!img || cur !== want) return null;
    var g = geometry(im.hw[0], im.hw[1], v.s);
    ctx.fillStyle = '#000'; ctx.fillRect(0, 0, CROP, CROP);
    ctx.imageSmoothingEnabled = true; ctx.imageSmoothingQuality = 'high';
    ctx.drawImage(img, -g.lefts[v.c], -g.tops[v.r], g.ow, g.oh);
    $('crop-note').textContent = 'resized to ' + g.ow + ' x ' + g.oh + ', window at (' + g.lefts[v.c] + ', ' +
        g.tops[v.r] + ')';
    return g;
  });
}

function viewOf(el) { return el && el.dataset && el.dataset.view !== undefined ? parseInt(el.dataset.view, 10) : -1; }
var grid = $('grid'), lastClick = null;
grid.addEventListener('mouseover', function (e) { var t = viewOf(e.target); if (t >= 0) showView(t); });
grid.addEventListener('mouseleave', function () { showView(pinned); });
grid.addEventListener('click', function (e) {
  var t = viewOf(e.target);
  if (t >= 0) { pinned = t; lastClick = showView(t); }
});
$('search').addEventListener('input', renderList);
$('sort').addEventListener('change', renderList);
var nres = D.images.filter(function (im) { return im.rescued; }).length;
var nnev = D.images.filter(function (im) { return im.never; }).length;
$('summary').textContent = D.images.length + ' of ' + D.num_images_total + ' images · ' + T + ' views · ' +
    nres + ' rescued · ' + nnev + ' never solved';
(function bar() {
  var c = $('bar').getContext('2d');
  for (var x = 0; x < 140; x++) { c.fillStyle = colour(x / 139); c.fillRect(x, 0, 1, 10); }
})();
renderList();

// Test hook (see zoomjax/reports/explorer.py): #test-click=<id>[&view=<name>][&search=<q>][&sort=<key>].
var params = {};
location.hash.replace(/^#/, '').split('&').forEach(function (kv) {
  var i = kv.indexOf('='); if (i > 0) params[kv.slice(0, i)] = decodeURIComponent(kv.slice(i + 1));
});
if (params['test-click'] !== undefined) {
  var res = {};
  var finish = function () {
    res.errors = window.__errors.slice();
    var pre = $('test-result'); pre.textContent = JSON.stringify(res); pre.style.display = '';
    document.title = 'test-done';
  };
  try {
    if (params.search !== undefined) $('search').value = params.search;
    if (params.sort) $('sort').value = params.sort;
    res.list = renderList();
    var k = byId[params['test-click']];
    if (k === undefined) throw new Error('no image ' + params['test-click']);
    select(k);
    var im = D.images[k], t = params.view ? D.view_names.indexOf(params.view) : -1;
    if (t < 0) {
      var best = -1;
      for (var v = 0; v < T; v++) if (im.correct[v] === '1' && (best < 0 || im.p_true[v] > im.p_true[best])) best = v;
      t = best >= 0 ? best : Math.max(D.one_crop_view, 0);
    }
    res.selected = $('img-title').textContent;
    res.grid_cells = document.querySelectorAll('#grid td.cell').length;
    res.grid_rows = document.querySelectorAll('#grid tr').length - 1;
    res.correct_cells = [].map.call(document.querySelectorAll('#grid td.cell.ok'), viewOf);
    res.cell_colour = document.querySelector('#grid td.cell[data-view="' + t + '"]').style.background;
    var target = document.querySelector('#grid td.cell[data-view="' + t + '"]');
    target.dispatchEvent(new MouseEvent('click', {bubbles: true}));
    Promise.resolve(lastClick).then(function (g) {
      res.view = $('view-name').textContent;
      res.view_meta = $('view-meta').textContent;
      res.top5 = [].map.call(document.querySelectorAll('#top5 li'), function (li) { return li.textContent; });
      res.top5_true = [].map.call(document.querySelectorAll('#top5 li.true'), function (li) { return li.textContent; });
      res.geometry = g;
      try {
        var px = $('crop').getContext('2d').getImageData(0, 0, CROP, CROP).data;
        var lit = 0, cells = [], B = 8, w = CROP / B;
        for (var i = 0; i < px.length; i += 4) if (px[i] + px[i + 1] + px[i + 2] > 30) lit++;
        for (var by = 0; by < B; by++) for (var bx = 0; bx < B; bx++) {
          var sum = [0, 0, 0];
          for (var y = by * w; y < (by + 1) * w; y++) for (var x = bx * w; x < (bx + 1) * w; x++) {
            var o = (y * CROP + x) * 4; sum[0] += px[o]; sum[1] += px[o + 1]; sum[2] += px[o + 2];
          }
          cells.push(sum.map(function (s) { return Math.round(s / (w * w)); }));
        }
        res.crop_lit_pixels = lit; res.crop_blocks = cells;
      } catch (e) { res.crop_read_error = String(e); }
      finish();
    }).catch(function (e) { res.hook_error = String(e); finish(); });
  } catch (e) { res.hook_error = String(e); finish(); }
}
})();
</script></body></html>
"""


def main(argv=None) -> int:
  p = argparse.ArgumentParser(prog="python -m zoomjax.reports.explorer", description=__doc__.split("\n\n")[0])
  p.add_argument("workdir", help="a finished zoom_sweep workdir")
  p.add_argument("--out", default=None, help="output folder (default: WORKDIR/explorer)")
  p.add_argument("--max-images", type=int, default=200, help="at most this many images (0 = all)")
  p.add_argument("--thumb-side", type=int, default=512, help="longest side of the stored originals, px")
  a = p.parse_args(argv)
  try:
    path = write_explorer(a.workdir, a.out, a.max_images, thumb_side=a.thumb_side)
  except Exception as e:  # pylint: disable=broad-except  User errors end in one line; bugs keep their traceback.
    msg = errors.user_message(e)
    if msg is None:
      raise
    print(f"zoomjax: error: {msg}", file=sys.stderr)
    return 2
  print(f"explorer: {os.path.abspath(path)}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
