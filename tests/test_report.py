"""report.html: content from fake records, and a real render in headless Chromium (skipped without chromium
locally, required under CI: `make browser` installs it).

Chromium is driven over the DevTools protocol on a pipe (--remote-debugging-pipe), so the test sees console
errors, JS exceptions and failed resource loads as structured events and takes a real screenshot.
Install it with `apt-get update && apt-get install -y chromium` (Debian).
"""
import base64
import fcntl
import io
import json
import os
import select
import shutil
import subprocess
import tempfile
import time

import numpy as np
import pytest
from PIL import Image

from conftest import require
from zoomjax.analysis import metrics as A
from zoomjax.analysis import per_class
from zoomjax.analysis import records as R
from zoomjax.analysis import selection
from zoomjax.reports import html
from zoomjax.reports import sweep as report

SCALES = (64, 224, 256, 512)
GRID = [(s, r, c) for s in SCALES for r in range(3) for c in range(3)]


def fake_records(n: int = 6, seed: int = 0) -> R.Records:
  """A fake model: image i has label 10 + i; the 1-crop is right on even images only, and on image 1 the
  512 (0, 0) zoom rescues it; other views answer at random among two classes."""
  rng = np.random.default_rng(seed)
  t = len(GRID)
  names = [A.view_name(g) for g in GRID]
  labels = (10 + np.arange(n))[:, None].astype(np.int32)
  top5 = rng.integers(500, 502, size=(n, t, 5)).astype(np.int16)
  j = names.index(A.ONE_CROP_VIEW)
  top5[::2, j, 0] = labels[::2, 0]
  top5[1, names.index("LOC:0_0_Size:512"), 0] = labels[1, 0]
  p_max = rng.uniform(0.2, 0.9, size=(n, t)).astype(np.float32)
  p_true = np.where(top5[..., 0] == labels, p_max, 0.01).astype(np.float32)
  x = len(R.CROP_NAMES)
  return R.Records(
      index=np.arange(n, dtype=np.int64), ids=np.array([f"img{i}.jpg" for i in range(n)]), labels=labels,
      topk=top5, p_true=p_true, p_max=p_max, crop_topk=np.full((n, x, 5), 500, np.int16),
      crop_p_true=np.zeros((n, x), np.float32), crop_p_max=np.full((n, x), 0.5, np.float32),
      agg_top5=np.tile(labels[:, None, :1], (1, len(R.AGG_SETS), 5)).astype(np.int16),
      agg_p=np.full((n, len(R.AGG_SETS), 5), 0.2, np.float32), view_names=np.array(names),
      crop_names=np.array(R.CROP_NAMES), agg_names=np.array(R.AGG_SETS))


def make_report(workdir, rec=None, model="resnet50", paper_dataset="IN"):
  rec = fake_records() if rec is None else rec
  metrics = A.record_metrics(rec)
  metrics["held_out"] = selection.record_held_out(rec)  # As zoom_sweep.analyse_and_report adds them.
  metrics["ci95"].update(selection.headline_intervals(metrics["held_out"]))
  metrics["per_class"] = per_class.record_per_class(rec)
  metrics["skipped_files"] = ["broken.jpg"]
  rng = np.random.default_rng(1)
  read_image = lambda i: rng.integers(0, 255, size=(300, 400, 3), dtype=np.uint8)  # noqa: E731
  render_view = lambda img, name: np.full((224, 224, 3), 10 * A.parse_view_name(name)[1], np.uint8)  # noqa
  path = report.write_report(str(workdir), rec, metrics, class_names=[f"cls{i}" for i in range(1000)],
                             model=model, dataset="folder:test", paper_dataset=paper_dataset,
                             command="python -m zoomjax.main ...", wall_time_s=12.0, read_image=read_image,
                             render_view=render_view, gallery_size=4)
  return path, metrics


def test_report_content(tmp_path):
  path, metrics = make_report(tmp_path)
  page = open(path, encoding="utf-8").read()
  # Ours next to the paper's ResNet-50 ImageNet numbers (Table 1 and the min-cover table).
  assert "75.75" in page and "96.78" in page and "94.46" in page and "234" in page
  # Headline numbers carry their 95 % interval, as "50.0 % [16.7–83.3]".
  one, ci = metrics["one_crop_accuracy"], metrics["ci95"]["one_crop_accuracy"]
  assert html.interval(one, ci) in page and f"{100 * one:.1f} % [{100 * ci[0]:.1f}–{100 * ci[1]:.1f}]" in page
  # Zoom without an oracle: the curves (figure + table), the best fixed set, confidence selection.
  held = metrics["held_out"]
  assert "report/held_out.png" in page and "Best fixed set without an oracle" in page
  assert all(f"<code>{v}</code>" in page for v in held["best_fixed"]["views"])
  for m, v in held["confidence_selection"].items():
    assert m in page and html.interval(v["accuracy"], v["ci95"]) in page
  # Per class by name: image 1 (class 11) is the one rescue, so cls11 leads the most rescued; a class whose
  # 1-crop is wrong and never rescued (odd images other than 1) leads the least rescued.
  pc = metrics["per_class"]
  assert pc["most_rescued"][0] == 11 and pc["least_rescued"][0] in (13, 15)
  most = page.index("Most rescued by zoom")
  assert most < page.index("cls11", most) < page.index("Least rescued by zoom")
  # Odd images have a wrong 1-crop; only image 1 is rescued (by LOC:0_0_Size:512), so it is in the gallery.
  cands = report.gallery_candidates(fake_records(), 10)
  assert [c["id"] for c in cands] == ["img1.jpg"] and cands[0]["best_view"] == "LOC:0_0_Size:512"
  assert "img1.jpg" in page and "cls11" in page and "broken.jpg" in page
  for name in ("anchor_upper_bound.png", "anchor_paper.png", "accuracy_vs_scale.png", "coverage.png",
               "top36_anchors.png", "held_out.png", "gallery_000001_orig.jpg", "gallery_000001_best.jpg"):
    assert os.path.getsize(tmp_path / "report" / name) > 1000, name
  assert "report/coverage.png" in page


def test_report_without_paper_numbers(tmp_path):
  path, _ = make_report(tmp_path, model="efficientnet_lite0", paper_dataset="IN")
  page = open(path, encoding="utf-8").read()
  assert "reports no numbers" in page and "75.75" not in page


# --- Headless Chromium over the DevTools protocol. ---

def _chromium():
  for name in ("chromium", "chromium-browser", "google-chrome"):
    if shutil.which(name):
      return shutil.which(name)
  return None


def render_page(url: str, *, width: int = 1280, height: int = 2400, timeout: float = 90.0):
  """Loads `url` in headless Chromium; returns (images [(src, loaded)], errors [str], screenshot PNG bytes)."""
  exe = _chromium()
  r_cmd, w_cmd = os.pipe()  # Commands: we write, Chromium reads on its fd 3.
  r_out, w_out = os.pipe()  # Replies: Chromium writes on its fd 4, we read.
  user_dir = tempfile.mkdtemp(prefix="zoomjax-chromium-")
  args = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
          "--disable-background-networking", "--disable-component-update", "--disable-sync",
          f"--user-data-dir={user_dir}", "--remote-debugging-pipe", f"--window-size={width},{height}", "about:blank"]
  # bash maps our pipe ends to fds 3/4 (dash only knows fds 0-9; no preexec_fn: forking a multithreaded JAX
  # process is unsafe).
  # Our ends first move to fds >= 10 so the redirections cannot clobber each other (e.g. r_cmd == 3).
  hi_r, hi_w = fcntl.fcntl(r_cmd, fcntl.F_DUPFD, 10), fcntl.fcntl(w_out, fcntl.F_DUPFD, 10)
  proc = subprocess.Popen([shutil.which("bash") or "sh", "-c",
                           f'exec "$0" "$@" 3<&{hi_r} 4>&{hi_w} {hi_r}<&- {hi_w}>&-'] + args,
                          pass_fds=(hi_r, hi_w), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  for fd in (r_cmd, w_out, hi_r, hi_w):
    os.close(fd)
  deadline = time.monotonic() + timeout
  state = {"buf": b"", "id": 0}
  events = []

  def read_msg():
    while b"\0" not in state["buf"]:
      left = deadline - time.monotonic()
      if left <= 0:
        raise TimeoutError("chromium did not answer in time")
      if select.select([r_out], [], [], left)[0]:
        chunk = os.read(r_out, 1 << 20)
        if not chunk:
          raise RuntimeError("chromium closed the DevTools pipe")
        state["buf"] += chunk
    msg, state["buf"] = state["buf"].split(b"\0", 1)
    return json.loads(msg)

  def call(method, session=None, **params):
    state["id"] += 1
    msg = {"id": state["id"], "method": method, "params": params}
    if session:
      msg["sessionId"] = session
    os.write(w_cmd, json.dumps(msg).encode() + b"\0")
    while True:
      m = read_msg()
      if m.get("id") == state["id"]:
        if "error" in m:
          raise RuntimeError(f"{method}: {m['error']}")
        return m["result"]
      events.append(m)

  def wait_event(name):
    while not any(e.get("method") == name for e in events):
      events.append(read_msg())

  try:
    target = call("Target.createTarget", url="about:blank")["targetId"]
    sid = call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
    for domain in ("Runtime", "Log", "Page"):
      call(f"{domain}.enable", sid)
    call("Page.navigate", sid, url=url)
    wait_event("Page.loadEventFired")
    images = call("Runtime.evaluate", sid, returnByValue=True, expression=(
        "[...document.images].map(i => [i.getAttribute('src'), i.complete && i.naturalWidth > 0])"))
    images = images["result"]["value"]
    shot = base64.b64decode(call("Page.captureScreenshot", sid, format="png")["data"])
    call("Runtime.evaluate", sid, expression="1")  # Drains events queued before the screenshot.
    errors = []
    for e in events:
      method, p = e.get("method"), e.get("params", {})
      if method == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
        errors.append(" ".join(str(a.get("value", a.get("description"))) for a in p.get("args", [])))
      elif method == "Runtime.exceptionThrown":
        d = p["exceptionDetails"]
        errors.append(d.get("exception", {}).get("description") or d.get("text"))
      elif method == "Log.entryAdded" and p["entry"].get("level") == "error":
        errors.append(f"{p['entry'].get('text')} {p['entry'].get('url', '')}")
    try:
      call("Browser.close")
    except (RuntimeError, TimeoutError):
      pass
    return images, errors, shot
  finally:
    os.close(w_cmd)
    os.close(r_out)
    try:
      proc.wait(15)
    except subprocess.TimeoutExpired:
      proc.kill()
      proc.wait()
    shutil.rmtree(user_dir, ignore_errors=True)


@pytest.fixture
def chromium() -> str:
  exe = _chromium()
  require(exe is not None, "chromium not installed: apt-get install -y chromium (`make browser` does it as root)")
  return exe


def test_report_renders_in_chromium(tmp_path, chromium):
  path, _ = make_report(tmp_path)
  images, errors, shot = render_page("file://" + os.path.abspath(path))
  assert errors == []
  assert len(images) >= 8 and all(ok for _, ok in images), images
  pixels = np.asarray(Image.open(io.BytesIO(shot)).convert("L"), np.float32)
  assert pixels.shape[0] > 500 and pixels.std() > 10, "screenshot is blank"
  assert (pixels < 128).mean() > 0.01  # Text and figures, not a white page.


def test_chromium_check_catches_a_broken_report(tmp_path, chromium):
  path, _ = make_report(tmp_path)
  os.remove(tmp_path / "report" / "coverage.png")
  with open(path, "a", encoding="utf-8") as f:
    f.write("<script>undefinedFunction()</script>")
  images, errors, _ = render_page("file://" + os.path.abspath(path))
  assert dict(images)["report/coverage.png"] is False
  assert any("coverage.png" in e for e in errors)
  assert any("undefinedFunction" in e for e in errors)
