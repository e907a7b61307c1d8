"""The aggregator family (zoomjax.analysis.aggregators) and its online twin (zoomjax.tta.zoom_tta.aggregate):
hand-computed answers on fake records, a dense NumPy reference of every definition, the official TPT/ZERO
selection rule, records from older sweeps, and the online aggregate over a sweep's own views giving the same
answers as the offline aggregators over its records."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from zoomjax import sweep, zoom
from zoomjax.analysis import aggregators as G
from zoomjax.analysis import records as R
from zoomjax.errors import UserError
from zoomjax.tta import zoom_tta

# One image, 4 views, k = 2 of 5 classes. Entropies are given (not derived) so each rule is visible.
TOPK = np.array([[[1, 2], [1, 3], [2, 1], [3, 0]]])
TOPK_P = np.array([[[.6, .3], [.5, .4], [.9, .05], [.7, .2]]])
ENT = np.array([[1.0, 1.2, 0.3, 0.9]])


def _predict(how, **kw):
  return int(G.predict_views(TOPK, TOPK_P, ENT, TOPK_P[..., 0], how, num_classes=5, **kw)[0])


def test_hand_computed_answers():
  # mean over the top-k: class 1: .6+.5+.05, class 2: .3+.9, class 3: .4+.7 -> 2.
  assert _predict("mean") == 2
  assert _predict("max") == 2  # View 2 (p .9).
  assert _predict("vote") == 1  # Top-1s 1, 1, 2, 3.
  # rho .5 keeps int(.5 * 4) = 2 views of lowest entropy: 2 (.3) and 3 (.9). tpt: class 2 .9 > class 3 .7.
  assert _predict("tpt", rho=0.5) == 2
  # zero: kept views vote 2 and 3, a tie broken by the most confident voter (view 2, entropy .3) -> 2.
  assert _predict("zero", rho=0.5) == 2
  # rho .25 keeps 1 view (view 2); rho .1 keeps max(1, int(.4)) = 1 view too.
  assert _predict("zero", rho=0.1) == _predict("tpt", rho=0.25) == 2
  # entropy_weighted: w = softmax(-H) = exp(-H) / sum; weighted sums by hand.
  w = np.exp(-ENT[0]) / np.exp(-ENT[0]).sum()
  sums = {1: w[0] * .6 + w[1] * .5 + w[2] * .05, 2: w[0] * .3 + w[2] * .9, 3: w[1] * .4 + w[3] * .7, 0: w[3] * .2}
  assert _predict("entropy_weighted") == max(sums, key=sums.get)
  # geometric: a class outside a view's top-2 gets min(p_2, 1 - p_1 - p_2) there.
  fill = np.minimum(TOPK_P[0, :, 1], 1 - TOPK_P[0].sum(-1))
  logp = np.log(np.tile(fill[:, None], (1, 5)))
  for v in range(4):
    logp[v, TOPK[0, v]] = np.log(TOPK_P[0, v])
  assert _predict("geometric") == int(np.argmax(logp.sum(0)))
  with pytest.raises(ValueError, match="rho"):
    G.kept_count(10, 0.0)
  with pytest.raises(ValueError, match="median"):
    _predict("median")


def test_vote_ties_and_truncation_stated():
  # Two views vote 4, two vote 7: the class of the lowest-entropy voter wins whatever the class ids.
  top1 = np.array([[4, 7, 4, 7], [4, 7, 4, 7], [4, 7, 7, 4]])
  ent = np.array([[.5, .4, .9, .9], [.3, .4, .9, .9], [.6, .6, .9, .9]])  # Last row: equal -> lower id.
  assert G.vote_prediction(top1, ent, 10).tolist() == [7, 4, 4]
  # Truncation: mass outside the top-1 is dropped, so one confident view beats two views whose mass is split.
  topk = np.array([[[5], [6], [6]]])
  p = np.array([[[.5], [.3], [.3]]])  # Densely class 6 could win (its views put .3 each; 5's view .5).
  assert G.predict_views(topk, p, np.zeros((1, 3)), p[..., 0], "mean", num_classes=10)[0] == 6
  assert G.predict_views(topk, np.array([[[.7], [.3], [.3]]]), np.zeros((1, 3)), p[..., 0], "mean",
                         num_classes=10)[0] == 5


def _dense_reference(probs, how, rho):
  """Every definition straight from the full softmax (N, V, C), one image at a time: an independent oracle."""
  out = []
  for pr in probs:
    logp = np.log(np.maximum(pr, 1e-300))
    ent = -(pr * logp).sum(-1)
    if how == "mean":
      out.append(np.argmax(pr.mean(0)))
    elif how == "max":
      out.append(np.argmax(pr[np.argmax(pr.max(-1))]))
    elif how == "geometric":  # Probabilities floored at 2**-24, float16's smallest (as the records hold them).
      out.append(np.argmax(np.log(np.maximum(pr, 2.0 ** -24)).mean(0)))
    elif how == "entropy_weighted":
      w = np.exp(-ent) / np.exp(-ent).sum()
      out.append(np.argmax((w[:, None] * pr).sum(0)))
    else:
      keep = np.argsort(ent, kind="stable")
      keep = keep[:max(1, int(rho * len(ent)))] if how in ("tpt", "zero") else keep
      if how == "tpt":
        out.append(np.argmax(pr[keep].mean(0)))
      else:  # vote / zero: most votes, then the class of the most confident voter (keep is by entropy).
        votes = np.bincount(pr[keep].argmax(-1), minlength=pr.shape[-1])
        tied = set(np.flatnonzero(votes == votes.max()))
        out.append(next(c for c in pr[keep].argmax(-1) if c in tied))
  return np.array(out)


def _online_all(logits, mask=None, rho=0.25):
  """{aggregator: (N,) argmax of zoom_tta.aggregate} for (N, V, C) logits, every aggregator in one program."""
  fn = jax.jit(lambda x: jnp.stack([jnp.argmax(jax.vmap(lambda v, h=h: zoom_tta.aggregate(v, h, mask, rho=rho))(x),
                                               -1) for h in G.ONLINE]))
  return dict(zip(G.ONLINE, np.asarray(fn(jnp.asarray(logits)))))


@pytest.fixture(scope="module")
def dense_case():
  rng = np.random.default_rng(0)
  logits = (rng.normal(size=(40, 12, 9)) * rng.uniform(0.5, 3.0, (40, 12, 1))).astype(np.float32)
  logits[:5, :, 3] += 2.0  # A few images where many views agree (votes with a clear winner).
  return logits


def test_offline_and_online_match_a_dense_reference(dense_case):
  logits = dense_case
  probs = np.asarray(jax.nn.softmax(jnp.asarray(logits), -1), np.float64)
  ent = np.asarray(zoom_tta.view_entropy(jax.nn.log_softmax(jnp.asarray(logits), -1)))
  order = np.argsort(-probs, axis=-1, kind="stable")
  topk_p = np.take_along_axis(probs, order, -1)  # k = C: nothing truncated.
  online = _online_all(logits)
  for how in G.ONLINE:
    want = _dense_reference(probs, how, 0.25)
    offline = G.predict_views(order, topk_p, ent, topk_p[..., 0], how, rho=0.25, num_classes=9)
    np.testing.assert_array_equal(offline, want, err_msg=how)
    np.testing.assert_array_equal(online[how], want, err_msg=how)
  # The answers differ between aggregators on these images, so each comparison above can tell them apart.
  assert len({tuple(_dense_reference(probs, h, 0.25)) for h in G.ONLINE}) >= 5


def test_official_selection_rule():
  # TPT's and ZERO's code keep logits[argsort(entropy)[:int(n * top)]]: 64 views at 0.1 -> the 6 lowest.
  ent = np.random.default_rng(1).random((3, 64))
  keep = G.select_confident(ent, 0.1)
  assert keep.shape == (3, 6)
  np.testing.assert_array_equal(keep, np.argsort(ent, axis=1)[:, :6])
  assert G.kept_count(334) == 33 and G.kept_count(9) == 1 and G.kept_count(10, 0.3) == 3
  assert G.random_views(334, 64, seed=3).tolist() == G.random_views(334, 64, seed=3).tolist()
  assert len(set(G.random_views(334, 64).tolist())) == 64 and G.random_views(10, 64).tolist() == list(range(10))


def _records(topk, topk_p, ent, labels, names, crops=0):
  n, t, k = topk.shape
  return R.Records(
      index=np.arange(n), ids=np.array([f"im{i}" for i in range(n)]), labels=labels, topk=topk.astype(np.int16),
      topk_p=topk_p.astype(np.float16), entropy=ent.astype(np.float32), p_true=np.zeros((n, t), np.float32),
      p_max=topk_p[..., 0].astype(np.float32), crop_topk=np.zeros((n, crops, k), np.int16),
      crop_topk_p=np.zeros((n, crops, k), np.float16), crop_entropy=np.zeros((n, crops), np.float32),
      crop_p_true=np.zeros((n, crops), np.float32), crop_p_max=np.zeros((n, crops), np.float32),
      agg_top5=np.zeros((n, 5, 5), np.int16), agg_p=np.zeros((n, 5, 5), np.float32), view_names=np.array(names),
      crop_names=np.array(list(R.CROP_NAMES[:crops])), agg_names=np.array(R.AGG_SETS))


def test_table_subsets_paired_and_older_records(tmp_path, monkeypatch):
  names = ["LOC:1_1_Size:256", "LOC:0_0_Size:512", "LOC:1_1_Size:128"]
  # 4 images; the 1-crop (view 0) is right on images 0, 1; view 1 right on 1, 2, 3; view 2 never.
  labels = np.array([[1], [2], [3], [4]], np.int32)
  top1 = np.array([[1, 9, 9], [2, 2, 9], [9, 3, 9], [9, 4, 9]])
  topk = np.stack([top1, np.full_like(top1, 8)], -1)
  p = np.stack([np.array([[.5, .9, .6], [.5, .9, .6], [.5, .9, .6], [.5, .9, .6]]), np.full((4, 3), .05)], -1)
  ent = 1 - p[..., 0]
  rec = _records(topk, p, ent, labels, names)
  c = G.correct_by_aggregator(rec, [0, 1])
  assert c["1-crop"].tolist() == [1, 1, 0, 0] and c["oracle"].tolist() == [1, 1, 1, 1]
  assert c["max"].tolist() == [0, 1, 1, 1]  # View 1 is always the more confident.
  assert G.correct_by_aggregator(rec, np.array([True, False, True]))["max"].tolist() == [0, 0, 0, 0]
  table = G.aggregator_table(rec, {"two": [0, 1], "all": None}, n_boot=200)
  two = table["sets"]["two"]
  assert two["num_views"] == 2 and two["accuracy"]["max"] == 0.75 and two["accuracy"]["oracle"] == 1.0
  assert two["paired"]["max"]["a_only"] == 2 and two["paired"]["max"]["b_only"] == 1
  assert two["paired"]["max"]["diff"] == pytest.approx(0.25) and "oracle" not in two["paired"]
  assert table["sets"]["all"]["num_views"] == 3 and table["missing"] == {}
  # Predictions the caller already has for a set are used as they are, not computed again.
  calls = []
  real = G.predictions
  known = {"two": real(rec, [0, 1])}
  monkeypatch.setattr(G, "predictions", lambda *a, **k: calls.append(a[1]) or real(*a, **k))
  again = G.aggregator_table(rec, {"two": [0, 1], "all": None}, n_boot=200, known=known)
  monkeypatch.undo()
  assert again == table and len(calls) == 1  # Only the "all" set's.
  # Records of an older sweep: top5 ids only. They load, the top-1 aggregators still work, the others say why.
  old = {f: getattr(rec, f) for f in R.PER_IMAGE + R.NAMES if f not in R.OPTIONAL and getattr(rec, f) is not None}
  old["top5"], old["crop_top5"] = old.pop("topk"), old.pop("crop_topk")
  path = tmp_path / "old" / R.FINAL_FILE
  path.parent.mkdir()
  np.savez(path, **old)
  legacy = R.load(str(path))
  assert legacy.missing() == list(R.OPTIONAL) and legacy.top1.tolist() == top1.tolist()
  t2 = G.aggregator_table(legacy, {"two": [0, 1]}, n_boot=50)
  assert set(t2["sets"]["two"]["accuracy"]) == {"1-crop", "oracle", "max"} and "zero" in t2["missing"]
  with pytest.raises(UserError, match=r"aggregator 'zero' needs topk_p, entropy, which the sweep in .*old lacks"):
    G.predictions(legacy, [0, 1], names=["zero"])


# --- The online aggregate over a sweep's own views: a real zoom grid, a fixed random linear "model". ---

CROP = 32
GRID = zoom.ZoomGrid((24, 40), anchors=3, crop=CROP)  # 18 views: zoom-out and zoom-in.


def _model():
  w = np.random.default_rng(7).normal(0, 1, (4 * 4 * 3, 1000)).astype(np.float32)

  def predict(variables, pixels):
    """(n, 32, 32, 3) -> (n, 1000): a random linear map of 4x4 mean-pooled pixels, sharp enough to be confident."""
    pooled = pixels.reshape(pixels.shape[0], 4, 8, 4, 8, 3).mean((2, 4)).reshape(pixels.shape[0], -1)
    return variables["scale"] * (pooled / 255.0 - 0.5) @ jnp.asarray(w)

  return predict


@pytest.fixture(scope="module")
def sweep_case():
  rng = np.random.default_rng(5)
  canvas = np.zeros((2, 64, 64, 3), np.uint8)
  canvas[0, :48, :60] = rng.integers(0, 255, (48, 60, 3))
  canvas[1, :64, :40] = rng.integers(0, 255, (64, 40, 3))
  hw = np.array([[48, 60], [64, 40]], np.int32)
  labels = np.array([[1], [2]], np.int32)
  mask = np.ones(1000, bool)
  mask[::3] = False  # A dataset's label space: the softmax runs over the other classes only.
  predict, variables = _model(), {"scale": jnp.float32(6.0)}
  spec = sweep.ViewSpec(tuple(GRID.transforms), crop=CROP, extra_crops=False)
  # The grid's views of both images, as zoom-TTA computes them; the sweep step gets the very same pixels.
  views = jax.jit(jax.vmap(zoom_tta.grid_views(GRID)))(jnp.asarray(canvas), jnp.asarray(hw))  # (2, 18, 32, 32, 3)
  step = sweep.make_step(predict, lambda canvas, hw: views, spec, logit_mask=mask, view_chunk=7, record_k=1000)
  rows = sweep.split_outputs(jax.device_get(step(variables, canvas, hw, labels)), len(GRID.transforms))
  rec = R.Records(index=np.arange(2), ids=np.array(["a", "b"]), labels=labels, **rows,
                  view_names=np.array(spec.view_names), crop_names=np.array([]), agg_names=np.array(R.AGG_SETS))
  logits = jax.jit(jax.vmap(lambda v: predict(variables, v)))(views)
  return rec, logits, mask


@pytest.mark.parametrize("views", [None, [0, 2, 4, 6, 9, 11, 13, 15, 17]])
def test_online_aggregate_equals_offline_over_a_sweeps_views(sweep_case, views):
  rec, logits, mask = sweep_case
  idx = np.arange(logits.shape[1]) if views is None else np.asarray(views)
  offline = G.predictions(rec, idx, rho=0.2)
  trunc = rec.select(np.arange(2))
  trunc.topk, trunc.topk_p = rec.topk[..., :10], rec.topk_p[..., :10]  # The default k: selection rules exact.
  offline_k10 = G.predictions(trunc, idx, names=("max", "vote", "zero"), rho=0.2)
  online = _online_all(logits[:, idx], mask, rho=0.2)
  for how in G.ONLINE:
    np.testing.assert_array_equal(offline[how], online[how], err_msg=how)
    if how in offline_k10:
      np.testing.assert_array_equal(offline_k10[how], online[how], err_msg=f"{how} at k=10")
  assert not mask[rec.topk[..., 0]].size or mask[rec.topk[..., 0]].all()  # No view predicts a masked class.


def test_tta_and_sweep_configs_take_the_aggregator_fields(tmp_path):
  from configs import tta as tta_config  # pylint: disable=import-outside-toplevel
  from configs import zoom_sweep as sweep_config  # pylint: disable=import-outside-toplevel
  from zoomjax.runtime import config as config_lib  # pylint: disable=import-outside-toplevel
  c = tta_config.get_config("method=zoom_tta,aggregate=zero,rho=0.2")
  assert (c.zoom.aggregate, c.zoom.rho) == ("zero", 0.2)
  assert tta_config.get_config("method=zoom_tta").zoom.aggregate == "mean"
  assert tta_config.get_config("method=zoom_max").zoom.aggregate == "max"  # The older names stay aliases.
  with pytest.raises(UserError, match="aggregate='zero' is for method=zoom_tta"):
    tta_config.get_config("method=memo_rrc,aggregate=zero")
  c.zoom.aggregate = "median"
  with pytest.raises(UserError, match="zoom.aggregate='median'"):
    config_lib.check_job(c, str(tmp_path))
  s = sweep_config.get_config("runlocal")
  assert (s.record_k, s.rho) == (R.RECORD_K, G.TPT_RHO)
  s.record_k = 0
  with pytest.raises(UserError, match="record_k"):
    config_lib.check_job(s, str(tmp_path))


def test_tta_job_episode_runs_the_configured_aggregator(monkeypatch):
  import flax.linen as nn  # pylint: disable=import-outside-toplevel
  from configs import tta as tta_config  # pylint: disable=import-outside-toplevel
  from zoomjax.jobs import tta as tta_job  # pylint: disable=import-outside-toplevel
  from zoomjax.models.bundle import ModelBundle, Preprocessing  # pylint: disable=import-outside-toplevel

  class MeanColour(nn.Module):
    @nn.compact
    def __call__(self, x):
      return jnp.concatenate([jnp.mean(x, axis=(1, 2)), jnp.mean(x[:, :4], axis=(1, 2))], -1), {}

  pp = Preprocessing(input_size=8, resize_size=8, resize_method="bilinear", mean=(0.0,) * 3, std=(20.0,) * 3)
  bundle = ModelBundle("mean_colour", MeanColour(), {}, pp, num_classes=6)
  config = tta_config.get_config("runlocal=1,method=zoom_tta,aggregate=zero,rho=0.5")
  config.zoom.scales, config.view.crop = (8, 12), 8
  mask = np.array([1, 1, 0, 1, 1, 1], bool)
  # The grid's views are the zoom kernel's business (tests/test_zoom*.py); here fixed pixels stand in for them.
  views = jnp.asarray(np.random.default_rng(2).uniform(0, 255, (18, 8, 8, 3)), jnp.float32)
  grids = []
  monkeypatch.setattr(zoom_tta, "grid_views", lambda grid, **kw: grids.append(grid) or (lambda canvas, hw: views))
  episode = tta_job.build_episode(config, bundle, mask)
  assert grids[0].num_transforms == 18
  got, every = jax.jit(episode)(bundle.variables, jnp.zeros((10, 12, 3), jnp.uint8), jnp.array([10, 12]),
                                jax.random.PRNGKey(0))
  logits = bundle.predict_fn()(bundle.variables, views)
  np.testing.assert_allclose(got, zoom_tta.aggregate(logits, "zero", mask, rho=0.5), rtol=1e-5)
  # The job's episode also returns every aggregator's prediction over the same views.
  np.testing.assert_array_equal(every, zoom_tta.aggregate_every(logits, mask, rho=0.5))
  assert float(jnp.sum(got)) == pytest.approx(G.kept_count(18, 0.5) + 0.5)  # 9 votes plus the winner's half.
