"""Faults of the evaluation job and of the CSV files the product writes: pairs whose names slug alike, a finished
pair whose dataset changed since, a malformed `models_file`, and spreadsheet formulas in CSV cells."""
import csv
import io
import json
import shutil

import pytest

from zoomjax import errors
from zoomjax.data import classes
from zoomjax.jobs import evaluate
from zoomjax.jobs import study as study_job
from zoomjax.reports import html
from test_evaluate import FAKE, _config, _folder, fake_model  # noqa: F401  (the fake classifier fixture)

pytestmark = pytest.mark.usefixtures("fast_compile")


def _results(workdir):
  return list(csv.DictReader(open(workdir / "results.csv", encoding="utf-8")))


def test_datasets_whose_names_slug_alike_get_their_own_pair(tmp_path, fake_model, capsys):
  a = _folder(tmp_path / "x" / "a b", [(5, 5), (7, 7)])  # Both right.
  b = _folder(tmp_path / "x" / "a_b", [(5, 9), (7, 9)])  # Both wrong.
  c = _config(FAKE, "x")
  c.data = [f"folder:{a}", f"folder:{b}"]
  summary = evaluate.run(c, str(tmp_path / "run"))
  assert "kept" not in capsys.readouterr().out
  assert [(p["dataset"], p["top1"]) for p in summary["pairs"]] == [(f"folder:{a}", 1.0), (f"folder:{b}", 0.0)]
  assert len(list((tmp_path / "run" / "pairs").iterdir())) == 2
  assert [float(r["top1"]) for r in _results(tmp_path / "run")] == [1.0, 0.0]


def test_model_rows_that_slug_alike_get_their_own_pair(tmp_path, fake_model, capsys):
  f = _folder(tmp_path / "f", [(5, 5), (7, 7)])
  c = _config(FAKE, f"folder:{f}")
  c.models = [f"{FAKE}#a b", f"{FAKE}#a_b"]
  c.dtype = "float32"
  summary = evaluate.run(c, str(tmp_path / "run"))
  assert "kept" not in capsys.readouterr().out
  assert [p["row"] for p in summary["pairs"]] == [f"{FAKE}:a b", f"{FAKE}:a_b"]
  assert len(list((tmp_path / "run" / "pairs").iterdir())) == 2


def test_a_pair_directory_is_not_trusted_by_its_name(tmp_path, fake_model, capsys):
  """A finished pair's files under another pair's directory (a copy, or an older naming) are not kept."""
  good = _folder(tmp_path / "good", [(5, 5), (7, 7)])
  bad = _folder(tmp_path / "bad", [(5, 9), (7, 9)])
  c = _config(FAKE, f"folder:{good}")
  evaluate.run(c, str(tmp_path / "run"))
  (src,) = (tmp_path / "run" / "pairs").iterdir()
  c2 = _config(FAKE, f"folder:{bad}")
  dst = evaluate.pair_dir(str(tmp_path / "run2"), evaluate.model_entries(c2)[0], evaluate.parse_data_entry(c2.data[0]))
  shutil.copytree(src, dst)
  meta = json.loads((src / "metrics.json").read_text())
  assert meta["key"]["dataset"]["name"] == f"folder:{good}"
  # Same config.json as the new pair (only metrics.json and the data are foreign): recomputed, not kept.
  key = json.loads((src / "config.json").read_text())
  key["dataset"]["name"] = f"folder:{bad}"
  with open(f"{dst}/config.json", "w") as fh:
    json.dump(key, fh)
  capsys.readouterr()
  summary = evaluate.run(c2, str(tmp_path / "run2"))
  out = capsys.readouterr()
  assert "kept" not in out.out and "was not written for" in out.out + out.err
  assert summary["pairs"][0]["top1"] == 0.0


def _relabel(folder, labels):
  lines = ["file,label"] + [f"im{k}.png,{classes.wnids()[lab]}" for k, lab in enumerate(labels)]
  (folder / "labels.csv").write_text("\n".join(lines) + "\n")


def test_a_finished_pair_is_recomputed_when_its_dataset_changed(tmp_path, fake_model, capsys):
  f = _folder(tmp_path / "f", [(5, 5), (7, 7), (9, 9)])
  c = _config(FAKE, f"folder:{f}")
  assert evaluate.run(c, str(tmp_path / "run"))["pairs"][0]["top1"] == 1.0
  _relabel(f, [5, 7, 100])  # Relabelled: the last image is now wrong.
  capsys.readouterr()
  again = evaluate.run(c, str(tmp_path / "run"))
  out = capsys.readouterr()
  assert "kept" not in out.out
  assert "changed" in out.out + out.err and "relabelled" in out.out + out.err
  assert again["pairs"][0]["top1"] == pytest.approx(2 / 3)
  _relabel(f, [5, 7])  # Shrunk to 2 images.
  (f / "im2.png").unlink()
  capsys.readouterr()
  third = evaluate.run(c, str(tmp_path / "run"))
  out = capsys.readouterr()
  assert "kept" not in out.out and "3 -> 2 images" in out.out + out.err
  assert third["pairs"][0]["num_images"] == 2 and third["pairs"][0]["top1"] == 1.0
  capsys.readouterr()
  evaluate.run(c, str(tmp_path / "run"))
  assert "kept" in capsys.readouterr().out  # Unchanged data: kept.


def _models_file(tmp_path, data: bytes):
  f = tmp_path / "models.csv"
  f.write_bytes(data)
  c = _config(FAKE, "x")
  c.models = []
  c.models_file = str(f)
  return c


def test_models_file_with_an_unbalanced_quote_is_refused_by_line(tmp_path):
  c = _models_file(tmp_path, b'model,checkpoint\nresnet50,"/x/a.pth\nvgg19,/x/b.pth\nalexnet,/x/c.pth\n')
  with pytest.raises(errors.UserError, match=r"models\.csv.* line 2.*quote") as e:
    evaluate.model_entries(c)
  assert "\n" not in str(e.value)


def test_models_file_with_too_many_cells_is_refused_by_line(tmp_path):
  c = _models_file(tmp_path, b'# list\nmodel,checkpoint\nresnet50,/x/a.pth\nvgg19,/x/b,pth,extra\n')
  with pytest.raises(errors.UserError, match=r"models\.csv.* line 4"):
    evaluate.model_entries(c)


def test_models_file_from_excel_with_a_bom_is_read(tmp_path):
  c = _models_file(tmp_path, b"\xef\xbb\xbfmodel,checkpoint\r\nresnet50,/x/a.pth\r\nvgg19,/x/b.pth\r\n")
  assert [(e.name, e.checkpoint) for e in evaluate.model_entries(c)] == [("resnet50", "/x/a.pth"),
                                                                         ("vgg19", "/x/b.pth")]


def test_models_file_that_is_not_utf8_is_one_line(tmp_path):
  c = _models_file(tmp_path, b"model,checkpoint\nresnet50,/x/caf\xe9.pth\n")
  with pytest.raises(errors.UserError, match=r"models\.csv.*UTF-8") as e:
    evaluate.model_entries(c)
  assert "\n" not in str(e.value)


FORMULAS = ["=HYPERLINK(\"http://x\")", "+1+1", "-2+3", "@SUM(A1)", "\tx", "\rx"]


def test_csv_cells_that_spreadsheets_run_are_neutralised():
  text = html.csv_text(["=h", "b"], [[v, -0.5] for v in FORMULAS] + [["plain", 3]])
  rows = list(csv.reader(io.StringIO(text, newline="")))
  assert rows[0] == ["'=h", "b"]
  assert [r[0] for r in rows[1:-1]] == ["'" + v for v in FORMULAS]
  assert all(r[1] == "-0.5" for r in rows[1:-1])  # Numbers stay numbers.
  assert rows[-1] == ["plain", "3"]


def test_results_csv_neutralises_a_formula_label(tmp_path, fake_model):
  f = _folder(tmp_path / "f", [(5, 5)])
  m = tmp_path / "models.csv"
  m.write_text(f"model,checkpoint,label\n{FAKE},,=HYPERLINK(\"http://x\")\n")
  c = _config(FAKE, f"folder:{f}")
  c.models = []
  c.models_file = str(m)
  evaluate.run(c, str(tmp_path / "run"))
  (row,) = _results(tmp_path / "run")
  assert row["model"] == "'=HYPERLINK(\"http://x\")" and row["top1"] == "1"


def test_export_names_never_need_neutralising():
  used = set()
  export_name = study_job._export_name  # pylint: disable=protected-access
  names = [export_name(i, "/x/a.png", used) for i in ("-1+2.png", "=a.png", "+b.png", "@c.png")]
  assert all(n[0] not in "=+-@\t\r" for n in names)
  ids = ["-1+2.png", "=a"] * 2
  text = html.csv_text(["file", "label", "source_id"], [[n, "5", i] for n, i in zip(names, ids)])
  assert "'-1+2.png" in text and "'=a" in text
