"""configs/tta.py + zoomjax/jobs/tta.py end to end, and zoom aggregation maths with a fake zoom."""
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import tta as tta_config
from zoomjax.analysis import paper_numbers
from zoomjax.jobs import tta as tta_job
from zoomjax.runtime import shards
from zoomjax.tta import zoom_tta


pytestmark = pytest.mark.usefixtures("fast_compile_module")  # Job plumbing; MEMO's maths is tests/test_tta.py.


def test_config_args_and_errors():
  c = tta_config.get_config("method=memo_augmix,model=resnet50,checkpoint=/x/r50.pth,row=moex_cutmix,"
                            "data=imagenet_a,views=8,steps=2,lr=0.001,prior=4,seeds=3,limit=5")
  assert (c.method, c.model.name, c.model.checkpoint, c.data.name) == ("memo_augmix", "resnet50", "/x/r50.pth",
                                                                      "imagenet_a")
  assert (c.memo.num_views, c.memo.steps, c.memo.lr, c.memo.prior_strength, c.seeds, c.limit) == (8, 2, 1e-3, 4.0,
                                                                                                  (3,), 5)
  default = tta_config.get_config("")  # the paper's MEMO hyper-parameters
  assert (default.memo.num_views, default.memo.steps, default.memo.lr, default.memo.prior_strength,
          default.memo.optimizer, default.seeds) == (64, 1, 2.5e-4, 16.0, "sgd", (0,))
  assert tta_config.get_config("seeds=0;1;2").seeds == (0, 1, 2)
  with pytest.raises(ValueError, match="method"):
    tta_config.get_config("method=tentt")
  with pytest.raises(ValueError, match="unknown config arg 'batches'"):
    tta_config.get_config("views=4,batches=3")
  with pytest.raises(ValueError, match="row"):
    tta_config.get_config("row=resnet18")
  with pytest.raises(ValueError, match="seeds"):
    tta_config.get_config("seeds=0;0")
  for c in (tta_config.get_config(""), tta_config.get_config("runlocal")):
    assert c.compilation_cache_dir == "" and not c.distributed.enabled  # The fields every config shares.


def test_optimizer_by_name():
  m = tta_config.get_config("optimizer=adamw,lr=1e-5,weight_decay=0.01").memo
  params = {"w": jnp.ones(3)}
  grads = {"w": jnp.zeros(3)}
  opt = tta_job.make_optimizer(m)
  updates, _ = opt.update(grads, opt.init(params), params)
  np.testing.assert_allclose(updates["w"], -1e-5 * 0.01 * np.ones(3), rtol=1e-6)  # Decoupled weight decay only.
  sgd = tta_job.make_optimizer(tta_config.get_config("lr=0.5,momentum=0.9").memo)
  updates, _ = sgd.update({"w": jnp.ones(3)}, sgd.init(params), params)
  np.testing.assert_allclose(updates["w"], -0.5 * np.ones(3))
  with pytest.raises(ValueError, match="optax.adam takes no weight_decay"):
    tta_job.make_optimizer(tta_config.get_config("optimizer=adam,weight_decay=0.1").memo)
  with pytest.raises(ValueError, match="not an optax optimiser"):
    tta_job.make_optimizer(tta_config.get_config("optimizer=sgdd").memo)


def test_paper_table5_lookup():
  table5 = paper_numbers.table5
  assert table5("memo_rrc", "moex_cutmix", "imagenet_a") == 13.61
  assert table5("baseline", "resnet50", "folder:/x", "IN") == 76.13
  assert table5("memo_augmix", "deepaug_augmix", "objectnet") == 36.42
  assert table5("memo_rrc", "", "imagenet_a") is None
  assert table5("zoom_mean", "resnet50", "imagenet_a") is None
  # Table 5's claim: RRC beats AugMix by 0.28 points over the 15 cells and 1.10 on IN-A.
  t = paper_numbers.TABLE5
  diff = [r - a for row in t["memo_rrc"] for r, a in zip(t["memo_rrc"][row], t["memo_augmix"][row])]
  assert abs(np.mean(diff) - 0.28) < 0.005
  assert abs(np.mean([t["memo_rrc"][r][1] - t["memo_augmix"][r][1] for r in paper_numbers.TABLE5_ROWS]) - 1.10) \
      < 0.005


def test_job_writes_metrics_resumes_through_shards_and_refuses_changes(tmp_path):
  config = tta_config.get_config("runlocal=1,method=baseline,limit=3")
  config.shard_size = 2  # Shards {0, 1} and {2}.
  metrics = tta_job.run(config, str(tmp_path))
  saved = json.loads((tmp_path / "metrics.json").read_text())
  for key in ("method", "num_images", "accuracy", "top5_accuracy", "images_per_second", "seeds", "views",
              "steps", "lr", "prior_strength", "versions", "per_seed"):
    assert key in saved, key
  assert saved["method"] == "baseline" and saved["num_images"] == 3 and 0 <= saved["accuracy"] <= 1
  shard_dir = tmp_path / "seed_0" / shards.SHARD_DIR
  assert sorted(os.listdir(shard_dir)) == ["shard_000000.npz", "shard_000001.npz"]
  rows = np.load(tmp_path / "seed_0" / tta_job.RECORDS_FILE)
  assert list(rows["ids"]) == ["chelsea.png", "coffee.png", "rocket.jpg"]
  assert metrics["accuracy"] == np.mean(rows["correct"])
  np.testing.assert_array_equal(rows["pred"], rows["top5"][:, 0])
  # A lost shard is recomputed alone; a rerun with nothing missing computes nothing and agrees.
  os.remove(shard_dir / "shard_000001.npz")
  again = tta_job.run(config, str(tmp_path))
  assert again["images_this_run"] == 1 and again["accuracy"] == metrics["accuracy"]
  assert tta_job.run(config, str(tmp_path))["images_this_run"] == 0
  # Settings that change a result are refused by name.
  for change, name in (("seeds=1", "seeds"), ("method=memo_rrc", "method"), ("limit=2", "limit")):
    other = tta_config.get_config(f"runlocal=1,method=baseline,limit=3,{change}".replace("limit=3,limit", "limit"))
    other.shard_size = 2
    with pytest.raises(ValueError, match=f"different config \\(.*{name}"):
      tta_job.run(other, str(tmp_path))
  view = tta_config.get_config("runlocal=1,method=baseline,limit=3")
  view.shard_size, view.view.method = 2, "bicubic"
  with pytest.raises(ValueError, match="view.method"):
    tta_job.run(view, str(tmp_path))


@pytest.mark.parametrize("method", [m for m in tta_config.METHODS if m not in tta_config.ONLINE_METHODS])
def test_every_method_runs_one_image_through_the_job(method, tmp_path):
  config = tta_config.get_config(f"runlocal=1,method={method},limit=1,seeds=0;1")
  metrics = tta_job.run(config, str(tmp_path))
  assert metrics["method"] == method and metrics["num_images"] == 1 and metrics["seeds"] == [0, 1]
  accs = [s["accuracy"] for s in metrics["per_seed"]]
  assert all(a in (0.0, 1.0) for a in accs) and metrics["accuracy"] == np.mean(accs)
  assert metrics["accuracy_std"] == pytest.approx(np.std(accs, ddof=1))
  lo, hi = metrics["accuracy_ci95"]
  assert lo <= metrics["accuracy"] <= hi and all(s["accuracy_ci95"] is not None for s in metrics["per_seed"])
  # The views the model saw per image: MEMO's B, the zoom grid's (runlocal: 2 scales x 9 anchors), one for
  # the baseline.
  want_views = {"baseline": 1, "memo_augmix": 4, "memo_rrc": 4, "zoom_mean": 18, "zoom_max": 18, "zoom_tta": 18}
  if method in want_views:
    assert metrics["views"] == want_views[method]
  for seed in (0, 1):
    rows = np.load(tmp_path / f"seed_{seed}" / tta_job.RECORDS_FILE)
    assert rows["top5"].shape == (1, 5) and np.all(np.diff(rows["top5_p"][0]) <= 0)
    assert 0 <= rows["p_true"][0] <= rows["top5_p"][0, 0] + 1e-6
    if method.startswith("zoom"):  # Every aggregator's prediction over the same views; the run's own among them.
      agg = rows[tta_job.AGGREGATES]
      assert agg.shape == (1, len(zoom_tta.AGGREGATIONS))
      assert agg[0, zoom_tta.AGGREGATIONS.index(config.zoom.aggregate)] == rows["pred"][0]
    else:
      assert tta_job.AGGREGATES not in rows
  if method.startswith("zoom"):
    assert list(metrics["aggregators"]) == list(zoom_tta.AGGREGATIONS)
    assert metrics["aggregators"][config.zoom.aggregate]["accuracy"] == metrics["accuracy"]
  else:
    assert "aggregators" not in metrics


def test_every_method_builds_an_episode():
  from zoomjax import models  # pylint: disable=import-outside-toplevel
  bundle = models.load("efficientnet_lite_tiny", random_init=True)
  mask = np.ones(bundle.num_classes, bool)
  for method in ("baseline", "memo_augmix", "memo_rrc"):
    assert callable(tta_job.build_episode(tta_config.get_config(f"runlocal=1,method={method}"), bundle, mask))


def test_aggregate_every_is_each_aggregators_argmax():
  logits = jax.random.normal(jax.random.PRNGKey(3), (12, 7)) * 3
  mask = np.array([True, True, False, True, True, True, False])
  every = jax.jit(lambda x: zoom_tta.aggregate_every(x, mask, rho=0.25))(logits)
  want = [int(jnp.argmax(zoom_tta.aggregate(logits, how, mask, rho=0.25))) for how in zoom_tta.AGGREGATIONS]
  assert every.dtype == jnp.int32 and list(np.asarray(every)) == want


def test_zoom_aggregation_mean_and_max():
  logits = jnp.asarray([[2.0, 0.0, 0.0], [0.0, 1.5, 0.0], [0.0, 1.4, 0.0]])
  p = jax.nn.softmax(logits, axis=-1)
  mean = zoom_tta.aggregate(logits, "mean")
  np.testing.assert_allclose(jnp.exp(mean), p.mean(0), rtol=1e-6)
  assert int(jnp.argmax(mean)) == 1  # two views vote for class 1
  assert int(jnp.argmax(zoom_tta.aggregate(logits, "max"))) == 0  # the single most confident view says 0
  masked = zoom_tta.aggregate(logits, "max", np.array([False, True, True]))
  assert int(jnp.argmax(masked)) == 1 and np.isneginf(masked[0])
  with pytest.raises(ValueError, match="aggregation"):
    zoom_tta.aggregate(logits, "median")


def test_zoom_tta_runs_views_through_the_model_in_chunks():
  from zoomjax.models.bundle import ModelBundle, Preprocessing  # pylint: disable=import-outside-toplevel
  import flax.linen as nn  # pylint: disable=import-outside-toplevel

  class MeanColour(nn.Module):
    """Logits = mean colour of the view: which view is most confident is known in advance."""

    @nn.compact
    def __call__(self, x):
      return jnp.mean(x, axis=(1, 2)), {}

  pp = Preprocessing(input_size=4, resize_size=4, resize_method="bilinear", mean=(0.0, 0.0, 0.0),
                     std=(10.0, 10.0, 10.0))
  bundle = ModelBundle("mean_colour", MeanColour(), {}, pp, num_classes=3)
  colours = jnp.asarray([[50.0, 0, 0], [0, 30.0, 0], [0, 35.0, 0], [0, 0, 10.0], [0, 32.0, 0]])
  crops_fn = lambda canvas, hw: jnp.broadcast_to(colours[:, None, None, :], (5, 4, 4, 3))  # noqa: E731
  image = jnp.zeros((6, 6, 3), jnp.uint8)
  expect = jax.nn.log_softmax(colours / 10.0, axis=-1)
  for how in ("mean", "max"):
    fn = jax.jit(zoom_tta.make_zoom_tta(bundle, crops_fn, how, view_chunk=2))  # 3 chunks, last one padded
    np.testing.assert_allclose(fn({}, image), zoom_tta.aggregate(colours / 10.0, how), rtol=1e-5,
                               atol=1e-5)
  np.testing.assert_allclose(zoom_tta.aggregate(colours / 10.0, "max"), expect[0], rtol=1e-6)


# --- Online methods (zoomjax.tta.online) through the job: a tiny BatchNorm CNN factory keeps compiles short. ---

def online_config(method: str, workdir_limit: int = 4, **fields):
  c = tta_config.get_config(f"method={method},model=test_online_tta:tiny_bn_cnn,data=demo_photos,"
                            f"limit={workdir_limit},batch=2")
  c.view.resize, c.view.crop = 18, 16
  c.online.shard_batches, c.online.fisher_size, c.online.lr = 1, 4, 0.05  # 2 shards; updates far above noise.
  c.online.e_margin = 10.0  # Above ln 1000: the random model's samples count as reliable, so EATA and SAR update.
  for k, v in fields.items():
    setattr(c.online, k, v)
  return c


def test_online_config_fields():
  c = tta_config.get_config("method=tent,corruption=gaussian_noise/5,episodic=1,batch=32")
  assert (c.method, c.data.corruption, c.online.episodic, c.online.batch_size) == ("tent", "gaussian_noise/5",
                                                                                   True, 32)
  default = tta_config.get_config("method=eata").online
  assert (default.batch_size, default.lr, default.momentum, default.d_margin, default.fisher_alpha,
          default.fisher_size, default.rho, default.reset_constant) == (64, 0.00025, 0.9, 0.05, 2000.0, 2000, 0.05,
                                                                        0.2)
  assert "online" in tta_job.RESULT_FIELDS


def test_resume_key_holds_only_the_blocks_the_method_reads(tmp_path):
  assert tta_job.result_fields("tent")[-1] == "label_space"
  for method, used in (("baseline", ()), ("memo_rrc", ("memo",)), ("zoom_tta", ("zoom",)), ("tent", ("online",)),
                       ("tpt", ("zoom", "clip")), ("tda", ("zoom", "clip", "online"))):
    assert {f for f in tta_job.result_fields(method) if f in tta_job.METHOD_BLOCKS} == set(used), method
    assert {"method", "model", "data", "view", "seeds"} <= set(tta_job.result_fields(method))
  first = tta_config.get_config("runlocal=1,method=baseline,limit=1")
  tta_job.run(first, str(tmp_path))
  # A setting the baseline never reads, and a block the stored config lacks, resume it.
  stored = json.loads((tmp_path / "config.json").read_text())
  del stored["clip"]
  (tmp_path / "config.json").write_text(json.dumps(stored))
  later = tta_config.get_config("runlocal=1,method=baseline,limit=1")
  later.memo.lr, later.online.lr = 0.5, 0.5
  assert tta_job.run(later, str(tmp_path))["images_this_run"] == 0
  later.view.crop = 48  # One it reads does not.
  with pytest.raises(ValueError, match="view.crop"):
    tta_job.run(later, str(tmp_path))


def test_online_run_resumes_bit_for_bit(tmp_path):
  whole = tta_job.run(online_config("tent"), str(tmp_path / "whole"))
  assert whole["num_images"] == 4 and whole["online"]["batch_size"] == 2 and whole["images_this_run"] == 4
  rows = dict(np.load(tmp_path / "whole" / "seed_0" / tta_job.RECORDS_FILE))
  stream = np.load(tmp_path / "whole" / "seed_0" / tta_job.STREAM_FILE)["stream"]
  assert sorted(stream.tolist()) == [0, 1, 2, 3] and stream.tolist() != [0, 1, 2, 3]  # A seeded order.
  np.testing.assert_array_equal(rows["index"], np.arange(4))
  np.testing.assert_array_equal(stream[rows["stream_position"]], rows["index"])
  # Interrupted after shard 0 (shard 1 and the merged results lost), then resumed from shard 0's state.
  shard1 = tta_job.online_shard_path(str(tmp_path / "whole" / "seed_0"), 1)
  stored = dict(np.load(shard1))
  for name in (shard1, tmp_path / "whole" / "seed_0" / tta_job.RECORDS_FILE, tmp_path / "whole" / "metrics.json"):
    os.remove(name)
  resumed = tta_job.run(online_config("tent"), str(tmp_path / "whole"))
  assert resumed["images_this_run"] == 2
  again = dict(np.load(tmp_path / "whole" / "seed_0" / tta_job.RECORDS_FILE))
  for field in ("index", "pred", "top5", "top5_p", "p_true", "correct", "stream_position"):
    np.testing.assert_array_equal(again[field], rows[field], err_msg=field)
  for key, value in dict(np.load(shard1)).items():  # The state after the stream, too.
    np.testing.assert_array_equal(value, stored[key], err_msg=key)
  assert int(stored[tta_job.STATE_PREFIX + "['step']"]) == 2
  moved = [k for k in stored if k.startswith(tta_job.STATE_PREFIX + "['adapted']['params']") and "scale" in k]
  assert moved and any(np.any(stored[k] != 1.0) for k in moved)  # flax inits BatchNorm scales at 1: they adapted.
  with pytest.raises(ValueError, match="online"):  # The resume key holds the online settings.
    tta_job.run(online_config("tent", batch_size=4), str(tmp_path / "whole"))


def test_every_online_method_runs_through_the_job(tmp_path):
  probs = {}
  for method in ("source", "bn_adapt", "eata", "sar"):
    metrics = tta_job.run(online_config(method), str(tmp_path / method))
    assert metrics["method"] == method and metrics["num_images"] == 4
    probs[method] = np.load(tmp_path / method / "seed_0" / tta_job.RECORDS_FILE)["top5_p"]
  assert not np.array_equal(probs["source"], probs["bn_adapt"])  # Batch statistics, not running ones.
  assert not np.array_equal(probs["eata"], probs["sar"])


def test_online_bad_input_is_one_line_naming_the_field_or_model(tmp_path):
  with pytest.raises(ValueError, match=r"online.batch_size=1: method='tent'"):
    tta_job.run(online_config("tent", batch_size=1), str(tmp_path / "b1"))
  assert not (tmp_path / "b1" / "config.json").exists()  # Refused before the workdir is claimed.
  from zoomjax.models.bundle import ModelBundle, Preprocessing  # pylint: disable=import-outside-toplevel
  import flax.linen as nn  # pylint: disable=import-outside-toplevel

  class NoBN(nn.Module):
    @nn.compact
    def __call__(self, x):
      return nn.Dense(1000)(jnp.mean(x, axis=(1, 2))), {}

  pp = Preprocessing(input_size=8, resize_size=8, resize_method="bilinear", mean=(0.0,) * 3, std=(1.0,) * 3)
  bundle = ModelBundle("no_bn_net", NoBN(), NoBN().init(jax.random.PRNGKey(0), jnp.zeros((1, 8, 8, 3))), pp)
  for method in ("bn_adapt", "tent", "eata", "sar"):
    with pytest.raises(ValueError, match=f"model 'no_bn_net' .*method='{method}'"):
      tta_job.build_stream_method(online_config(method), bundle, np.ones(1000, bool))
