"""The study job over real sweeps: Table 1, centre share and unsolved images against NumPy, refusals, the export.

Sweeps are real (zoomjax.jobs.zoom_sweep.run, a random tiny EfficientNet-Lite, two seeds = two models, a 3-scale
grid) over 3 photos of ../shared/data/imagenet-val-100 and 2 demo photos. A random model is right by chance only,
so the photos are first swept with their real labels, and then relabelled from those predictions (the model
never sees labels: the relabelled sweeps predict the same) so that one image is right at the 1-crop, one only at
other views, and one at no view. Every sweep shares one compiled step (module-scoped `built`).
"""
import csv
import glob
import hashlib
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from configs import study as study_config
from configs import zoom_sweep as sweep_config
from zoomjax import data
from zoomjax import models
from zoomjax import zoom
from zoomjax.analysis import records as R
from zoomjax.errors import UserError
from zoomjax.jobs import study as job
from zoomjax.jobs import zoom_sweep
from zoomjax.reports import html
from zoomjax.reports import study as study_report
from zoomjax.runtime import parallel

pytestmark = pytest.mark.usefixtures("fast_compile_module")  # Compiles dominate; no parity check here.

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCALES = "64/224/256"
ONE_CROP = "LOC:1_1_Size:256"
TOP_K = 4  # Below the cover sizes here, so top-k and the upper bound differ.


def sweep_cfg(data_name: str, seed: int = 0, limit: int = 0):
  c = sweep_config.get_config(f"runlocal=1,data={data_name},grid={SCALES},limit={limit}")
  c.model.seed = seed
  c.extra_crops = False
  c.shard_size = 2  # Several shards per run (the missing-shard refusal).
  c.tie_order = "grid"  # Greedy ties to the first view in grid order (the NumPy oracle below).
  c.report = False
  c.tensorboard = False
  return c


def write_folder(root: str, files, labels) -> str:
  os.makedirs(root, exist_ok=True)
  with open(os.path.join(root, "labels.csv"), "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["file", "label"])
    for src, lab in zip(files, labels):
      shutil.copyfile(src, os.path.join(root, os.path.basename(src)))
      w.writerow([os.path.basename(src), " ".join(map(str, lab))])
  return root


def tree_hash(root: str) -> dict:
  out = {}
  for path in sorted(glob.glob(os.path.join(root, "**"), recursive=True)):
    if os.path.isfile(path):
      with open(path, "rb") as f:
        out[os.path.relpath(path, root)] = hashlib.sha256(f.read()).hexdigest()
  return out


def correct(rec) -> np.ndarray:
  """NumPy oracle: C[i, t] = top-1 of view t is one of image i's labels."""
  top1 = rec.topk[..., 0].astype(np.int64)
  return ((top1[:, :, None] == rec.labels[:, None, :]) & (rec.labels[:, None, :] >= 0)).any(-1)


def greedy(C: np.ndarray) -> list:
  """NumPy oracle of the greedy cover, ties to the first view."""
  left, picks = C.any(1).copy(), []
  while left.any():
    gains = C[left].sum(0)
    picks.append(int(np.argmax(gains)))
    left &= ~C[:, picks[-1]]
  return picks


class Sweeper:
  """Runs sweeps that share one compiled step: only the dataset and the seed's variables change."""

  def __init__(self, first_data: str):
    self.built = zoom_sweep.build(sweep_cfg(first_data))
    self.variables = {0: self.built[5]}

  def __call__(self, work: str, data_name: str, seed: int = 0, limit: int = 0):
    if seed not in self.variables:
      bundle = models.load("efficientnet_lite_tiny", random_init=True, seed=seed)
      self.variables[seed] = parallel.replicate(bundle.variables, parallel.make_mesh())
    built = (data.get_dataset(data_name),) + tuple(self.built[1:5]) + (self.variables[seed],)
    zoom_sweep.run(sweep_cfg(data_name, seed, limit), work, built=built)
    return R.load(os.path.join(work, R.FINAL_FILE))


@pytest.fixture(scope="module")
def setup(tmp_path_factory, val100_dir):
  root = str(tmp_path_factory.mktemp("study"))
  with open(val100_dir / "labels.csv") as f:
    rows = list(csv.DictReader(f))[:3]
  files = [str(val100_dir / "images" / r["file"]) for r in rows]
  first = write_folder(os.path.join(root, "val_real"), files, [[int(r["label"])] for r in rows])
  sweeper = Sweeper(f"folder:{first}")
  probe = [sweeper(os.path.join(root, f"probe_s{s}"), f"folder:{first}", s) for s in (0, 1)]
  # Relabel from the probes' predictions (records follow the folder's file order).
  tops = [p.topk[..., 0].astype(int) for p in probe]
  names = [str(v) for v in probe[0].view_names]
  j = names.index(ONE_CROP)
  seen = set(np.concatenate([t.ravel() for t in tops]).tolist())
  unused = [k for k in range(1000) if k not in seen]
  other = [sorted(set(tops[0][i].tolist()) - {tops[0][i, j]}) for i in range(3)]
  b = int(np.argmax([len(o) for o in other]))  # The image whose seed-0 views disagree most: rescued by zoom.
  assert other[b], "the random model gives one class for every view of every photo"
  a, c = [i for i in range(3) if i != b][:2]
  labels = [None] * 3
  labels[a] = [int(tops[0][a, j]), int(tops[1][a, 0])]  # 1-crop right (seed 0); multi-label.
  labels[b] = [other[b][0], unused[0]]  # Only zoom views right (seed 0); multi-label.
  labels[c] = [unused[1]]  # No view of any run right.
  val = write_folder(os.path.join(root, "val"), files, labels)
  runs = os.path.join(root, "runs")
  rec = {"val_s0": sweeper(os.path.join(runs, "val_s0"), f"folder:{val}", 0),
         "val_s1": sweeper(os.path.join(runs, "val_s1"), f"folder:{val}", 1),
         "demo": sweeper(os.path.join(runs, "demo"), "demo_photos", 0, limit=2)}
  before = tree_hash(runs)
  cfg = study_config.get_config(f"runs={runs}/val_*;{runs}/demo,export_max_solved=1,top_k={TOP_K},runlocal")
  out_dir = os.path.join(root, "study")
  result = job.run(cfg, out_dir)
  return {"root": root, "runs": runs, "rec": rec, "study": result, "out": out_dir, "before": before,
          "sweeper": sweeper, "val": val, "labels": labels, "roles": {"one_crop": a, "rescued": b, "never": c}}


def test_table1_matches_numpy(setup):
  s = setup["study"]
  with open(os.path.join(setup["out"], "study.json")) as f:
    on_disk = json.load(f)
  assert [r["workdir"] for r in on_disk["runs"]] == [os.path.join(setup["runs"], n) for n in ("val_s0", "val_s1",
                                                                                               "demo")]
  assert len(on_disk["groups"]) == 2 and [len(g["runs"]) for g in on_disk["groups"]] == [2, 1]
  labels = [r["label"] for r in on_disk["runs"]]
  assert len(set(labels[:2])) == 2 and "seed 1" in labels[1]  # Two seeds are two models.
  with open(os.path.join(setup["out"], "table1.csv")) as f:
    table = list(csv.DictReader(f))
  md = open(os.path.join(setup["out"], "table1.md"), encoding="utf-8").read()
  for row, name, csv_row in zip(on_disk["runs"], ("val_s0", "val_s1", "demo"), table):
    rec = setup["rec"][name]
    C = correct(rec)
    names = [str(v) for v in rec.view_names]
    want = {"one_crop_accuracy": C[:, names.index(ONE_CROP)].mean(), "upper_bound_accuracy": C.any(1).mean(),
            "top_k_accuracy": C[:, greedy(C)[:TOP_K]].any(1).mean() if C.any() else 0.0}
    for key, v in want.items():
      assert row[key] == pytest.approx(v), (name, key)
      lo, hi = row["ci95"][key]
      assert 0 <= lo <= v <= hi <= 1, (name, key)
      short = key.replace("_accuracy", "")
      assert float(csv_row[f"{short}_pct"]) == pytest.approx(100 * v, abs=1e-3)
      assert f"{100 * v:.1f} % [{100 * lo:.1f}–{100 * hi:.1f}]" in md
    assert row["min_cover_size"] == len(greedy(C)) and csv_row["workdir"] == row["workdir"]
  # The relabelling made the val numbers non-trivial (the oracles could otherwise agree on zeros).
  val0 = on_disk["runs"][0]
  assert 0 < val0["one_crop_accuracy"] < val0["upper_bound_accuracy"] < 1
  assert "The paper's Table 1" in md and "75.75" in md  # ResNet-50's 1-crop on IN.


def test_centre_share_and_unsolved(setup):
  s = setup["study"]
  counts = np.zeros((3, 3), int)
  for name in ("val_s0", "val_s1", "demo"):
    rec = setup["rec"][name]
    for v in greedy(correct(rec))[:TOP_K]:
      _, r, c = zoom.parse_view_name(str(rec.view_names[v]))
      counts[r, c] += 1
  (anchors,) = s["anchors"]
  assert anchors["counts"] == counts.tolist() and anchors["paper_centre_share"] == pytest.approx(0.2665)
  assert anchors["centre_share"] == pytest.approx(counts[1, 1] / counts.sum())
  val = s["groups"][0]
  recs = [setup["rec"]["val_s0"], setup["rec"]["val_s1"]]
  solved = np.stack([correct(r).any(1) for r in recs])
  ids = [str(i) for i in recs[0].ids]
  assert val["unsolved"]["unsolved_ids"] == sorted(i for i, k in zip(ids, solved.any(0)) if not k)
  assert ids[setup["roles"]["never"]] in val["unsolved"]["unsolved_ids"]
  assert val["unsolved"]["images_solved_by_exactly"] == np.bincount(solved.sum(0), minlength=3).tolist()
  # Paired: seed 1 against seed 0 on the same images, from the two correctness vectors.
  j = [str(v) for v in recs[0].view_names].index(ONE_CROP)
  one = [correct(r)[:, j] for r in recs]
  (p1, pu) = val["paired"]
  assert (p1["what"], p1["a_only"], p1["b_only"]) == ("1-crop", int(np.sum(one[1] & ~one[0])),
                                                      int(np.sum(one[0] & ~one[1])))
  assert p1["diff"] == pytest.approx(one[1].mean() - one[0].mean()) and p1["images_left_out"] == 0
  assert (pu["what"], pu["diff"]) == ("upper bound", pytest.approx(solved[1].mean() - solved[0].mean()))
  assert "paired" not in s["groups"][1]  # One run: nothing to pair.
  # Every aggregator per run: the sweep's own table, 1-crop included.
  agg = s["runs"][0]["aggregators"]["sets"]["grid"]["accuracy"]
  assert agg["1-crop"] == pytest.approx(one[0].mean()) and agg["oracle"] == pytest.approx(solved[0].mean())
  page = open(s["report"], encoding="utf-8").read()
  for part in ("Table 1", "26.65", "Accuracy vs scale", "1-crop vs upper bound", "Zoom-in vs zoom-out",
               "Images no run solves", "explorer.html", "Runs compared on the same images (paired)",
               "Test-time aggregators over the stored views", "zero vs 1-crop: "):
    assert part in page, part
  for fig in glob.glob(os.path.join(setup["out"], "study", "*.png")):
    assert os.path.getsize(fig) > 2000
  assert len(glob.glob(os.path.join(setup["out"], "study", "accuracy_vs_scale_*.png"))) == 2
  for row in s["runs"]:  # An explorer per run, in the study's workdir.
    assert row["explorer"].startswith(setup["out"]) and os.path.exists(row["explorer"])
    with open(os.path.join(row["workdir"], "metrics.json")) as f:  # The sweep's held-out curves, when it has them.
      assert row.get("held_out") == json.load(f).get("held_out")


def test_printed_summary_holds_what_the_study_found(setup):
  """The job's console summary: Table 1, the centre share, the unsolved images by id, the held-out selection."""
  s = setup["study"]
  text = job.summary_text(s)
  assert text.startswith(study_report.table1_markdown(s, with_paper=False))
  (anchors,) = s["anchors"]
  share = html.percent(anchors["centre_share"])
  assert f"centre anchor share of the greedy top-{TOP_K} views over 3 runs: {share} (paper: 26.65 %" in text
  val = s["groups"][0]
  u = val["unsolved"]
  assert (f"{val['name']}: {len(u['unsolved_ids'])} of {u['num_common_images']} images solved by none of its 2 runs "
          f"({html.interval(u['unsolved_fraction'], u['ci95'])}): {', '.join(u['unsolved_ids'])}") in text
  assert f"data={val['export']['dataset']}" in text
  for r in s["runs"]:  # Every sweep has its held-out selection, printed as a table per run.
    assert r["held_out"]["budgets"] and f"**{r['label']} on {r['dataset']}: zoom without an oracle**" in text
    best = r["held_out"]["best_fixed"]
    assert html.interval(best["accuracy"], best["ci95"]) in text


def test_export_reloads_and_sweeps_again(setup):
  (g_val, g_demo) = setup["study"]["groups"]
  recs = [setup["rec"]["val_s0"], setup["rec"]["val_s1"]]
  solved = np.stack([correct(r).any(1) for r in recs])
  ids = [str(i) for i in recs[0].ids]
  want = [i for i, k in zip(ids, solved.sum(0)) if k <= 1]
  assert ids[setup["roles"]["rescued"]] in want or solved[:, setup["roles"]["rescued"]].all()
  e = g_val["export"]
  assert e["num_images"] == len(want) >= 1 and e["dataset"] == "folder:" + os.path.abspath(e["path"])
  ds = data.get_dataset(e["dataset"])  # The exported folder loads as a dataset...
  assert ds.ids == want
  source = data.get_dataset(f"folder:{setup['val']}")
  for i, image_id in enumerate(ds.ids):
    k = source.ids.index(image_id)
    assert sorted(int(x) for x in ds.labels[i] if x >= 0) == sorted(int(x) for x in source.labels[k] if x >= 0)
    with open(source.fetch(k), "rb") as a, open(ds.fetch(i), "rb") as b:
      assert a.read() == b.read()
  with open(os.path.join(e["path"], "solved_by_run.csv")) as f:
    side = list(csv.DictReader(f))
  lab0, lab1 = (r["label"] for r in setup["study"]["runs"][:2])
  for row in side:
    k = ids.index(row["source_id"])
    assert (int(row[lab0]), int(row[lab1]), int(row["num_runs_solving"])) == (
        int(solved[0, k]), int(solved[1, k]), int(solved[:, k].sum()))
  # ... and sweeps again: the same images give the same predictions, so the same solved flags.
  again = setup["sweeper"](os.path.join(setup["root"], "export_sweep"), e["dataset"], 0)
  rows = [ids.index(i) for i in map(str, again.ids)]
  np.testing.assert_array_equal(again.topk, recs[0].topk[rows])
  np.testing.assert_array_equal(correct(again).any(1), solved[0, rows])
  assert g_demo["export"]["num_images"] == 2  # One run: every demo photo is solved by at most 1 run.


def _study(setup, runs: str, work: str, **kw):
  cfg = study_config.get_config(f"runs={runs},runlocal,explorers=0")
  for k, v in kw.items():
    setattr(cfg, k, v)
  return job.study(cfg, work)


def test_refusals_name_the_workdir(setup, tmp_path):
  runs = setup["runs"]
  bad = str(tmp_path / "bad")

  def broken(change):
    shutil.rmtree(bad, ignore_errors=True)
    shutil.copytree(os.path.join(runs, "val_s0"), bad)
    change(bad)
    with pytest.raises(UserError) as e:
      _study(setup, f"{runs}/val_s1;{bad}", str(tmp_path / "out"))
    assert bad in str(e.value)
    return str(e.value)

  assert "records.npz" in broken(lambda w: os.remove(os.path.join(w, R.FINAL_FILE)))
  assert "shard" in broken(lambda w: os.remove(os.path.join(w, "shards", "shard_000001.npz")))

  def unfinished(w):
    m = json.load(open(os.path.join(w, "metrics.json")))
    m["complete"] = False
    json.dump(m, open(os.path.join(w, "metrics.json"), "w"))
  assert "not marked complete" in broken(unfinished)

  def other_images(w):  # Same dataset name, other images or labels (e.g. a relabelled folder).
    d = json.load(open(os.path.join(w, "dataset.json")))
    d.update(fingerprint="0" * 64)
    json.dump(d, open(os.path.join(w, "dataset.json"), "w"))
  msg = broken(other_images)
  assert os.path.join(runs, "val_s1") in msg and "different images" in msg
  assert "not a zoom_sweep workdir" in broken(lambda w: os.remove(os.path.join(w, "config.json")))
  # Another dataset or grid: groups by default, refused with mixed=refuse.
  other_grid = str(tmp_path / "other_grid")
  shutil.copytree(os.path.join(runs, "val_s0"), other_grid)
  rec = R.load(os.path.join(other_grid, R.FINAL_FILE))
  keep = [t for t, v in enumerate(rec.view_names) if not str(v).endswith("Size:64")]
  R.save(os.path.join(other_grid, R.FINAL_FILE), R.Records(**{
      **{f: getattr(rec, f) for f in R.PER_IMAGE + R.NAMES + ("skipped",)},
      "topk": rec.topk[:, keep], "topk_p": rec.topk_p[:, keep], "entropy": rec.entropy[:, keep],
      "p_true": rec.p_true[:, keep], "p_max": rec.p_max[:, keep],
      "view_names": rec.view_names[keep]}))
  cfg = json.load(open(os.path.join(other_grid, "config.json")))
  cfg["grid"]["scales"] = [224, 256]
  json.dump(cfg, open(os.path.join(other_grid, "config.json"), "w"))
  out = _study(setup, f"{runs}/val_s0;{other_grid}", str(tmp_path / "grouped"))
  assert [len(g["runs"]) for g in out["groups"]] == [1, 1] and "224/256" in out["groups"][1]["name"]
  assert out["runs"][1]["min_cover_from"] == "recomputed"  # metrics.json's cover names views of another grid.
  with pytest.raises(UserError, match="another grid") as e:
    _study(setup, f"{runs}/val_s0;{other_grid}", str(tmp_path / "refused"), mixed="refuse")
  assert other_grid in str(e.value)
  with pytest.raises(UserError, match="another dataset") as e:
    _study(setup, f"{runs}/val_s0;{runs}/demo", str(tmp_path / "refused"), mixed="refuse")
  assert os.path.join(runs, "demo") in str(e.value)
  with pytest.raises(UserError, match="inside the sweep workdir"):
    _study(setup, f"{runs}/val_s0", os.path.join(runs, "val_s0", "study"))
  with pytest.raises(UserError, match="matches no directory"):
    _study(setup, f"{runs}/nothing_*", str(tmp_path / "none"))
  assert tree_hash(runs) == setup["before"]  # Nothing was written into the input workdirs.


def test_main_dispatches_the_study_and_errors_in_one_line(setup, tmp_path):
  proc = subprocess.run(
      [sys.executable, "-m", "zoomjax.main", f"--config=configs/study.py:runs={tmp_path}/none_*",
       f"--workdir={tmp_path / 'out'}", "--config.compilation_cache_dir=off"],
      cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
  assert proc.returncode == 2, proc.stderr[-2000:]
  assert proc.stderr.strip().splitlines()[-1].startswith("zoomjax: error: config.runs:")
  assert tree_hash(setup["runs"]) == setup["before"]


def test_rerun_over_other_runs_drops_stale_outputs(setup):
  """Last (it rewrites the shared study workdir): a rerun keeps no export or explorer of runs no longer studied."""
  out = _study(setup, f"{setup['runs']}/val_*", setup["out"], export_max_solved=0)
  assert sorted(os.listdir(os.path.join(setup["out"], "export"))) == ["folder_val"]
  assert os.listdir(os.path.join(setup["out"], "explorers")) == []
  assert out["groups"][0]["export"]["num_images"] == len(out["groups"][0]["unsolved"]["unsolved_ids"])
  assert tree_hash(setup["runs"]) == setup["before"]


def test_a_run_that_is_a_file_or_missing_is_named_for_what_it_is(tmp_path):
  from zoomjax.analysis import sweep_results  # pylint: disable=import-outside-toplevel
  a_file = tmp_path / "run.txt"
  a_file.write_text("x")
  with pytest.raises(UserError, match=r"run\.txt is a file, not a folder"):
    sweep_results.open_sweep(str(a_file))
  with pytest.raises(FileNotFoundError, match="does not exist"):
    sweep_results.open_sweep(str(tmp_path / "nowhere"))
