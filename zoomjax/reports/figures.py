"""Every figure of the reports: a sweep's anchor heatmaps, accuracy vs scale, greedy coverage curve and held-out
selection curves, the cascade's accuracy against views spent and the risk-coverage curves; the study's overlays of
many runs (accuracy vs scale, held-out curves) and its 1-crop vs upper bound scatter.

Figures are `matplotlib.figure.Figure` objects rendered straight to PNG, without pyplot, so importing this
module changes no global matplotlib state (the user's backend stays as it is). Each function draws what it is
given (fractions; the paper's numbers in percent) and returns the PNG's path.
"""
from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np
from matplotlib.figure import Figure

from zoomjax.reports import html

__all__ = ["anchor_heatmap", "accuracy_vs_scale", "coverage_curve", "held_out_curves", "cascade_curve",
           "risk_coverage_curves", "accuracy_vs_scale_overlay", "one_crop_vs_upper_bound", "held_out_overlay"]


def _subplots(figsize: Tuple[float, float]):
  fig = Figure(figsize=figsize)
  return fig, fig.subplots()


def _save(fig, path: str) -> str:
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  return path


def anchor_heatmap(values, path: str, *, title: str, percent: bool = True, deltas: bool = True,
                   cmap: str = "viridis") -> str:
  """3x3 heatmap drawn as the image is seen (row 0 on top); non-centre cells annotated with delta to centre."""
  v = np.asarray(values, np.float64) * (100.0 if percent else 1.0)
  fig, ax = _subplots((3.6, 3.3))
  im = ax.imshow(v, cmap=cmap, origin="upper")
  n = v.shape[0]
  c = v[n // 2, n // 2]
  lo, hi = np.nanmin(v), np.nanmax(v)
  for r in range(n):
    for col in range(v.shape[1]):
      val = v[r, col]
      text = "n/a" if np.isnan(val) else (f"{val:.1f}" if percent else f"{val:.0f}")
      if deltas and not np.isnan(val) and (r, col) != (n // 2, n // 2):
        text += f"\n({val - c:+.1f})"
      dark = hi > lo and (val - lo) / (hi - lo) < 0.5
      ax.text(col, r, text, ha="center", va="center", fontsize=8, color="white" if dark else "black")
  ax.set_xticks(range(v.shape[1]), [f"c={i}" for i in range(v.shape[1])])
  ax.set_yticks(range(n), [f"r={i}" for i in range(n)])
  ax.set_title(title, fontsize=9)
  fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
  return _save(fig, path)


def accuracy_vs_scale(avs: Dict[str, list], path: str, *, title: str, one_crop_scale: int = 256) -> str:
  """Best-of-anchors ('waterfall') and centre-anchor accuracy per scale, dashed line at the 1-crop scale."""
  s = np.asarray(avs["scales"])
  fig, ax = _subplots((6, 3.4))
  ax.plot(s, 100 * np.asarray(avs["best_of_anchors"], float), "o-", ms=3, label="best of the anchors at S")
  ax.plot(s, 100 * np.asarray(avs["centre"], float), "s-", ms=3, label="centre anchor only")
  ax.axvline(one_crop_scale, ls="--", color="grey", lw=1)
  ax.set_xlabel("scale S (shorter side, px)")
  ax.set_ylabel("accuracy (%)")
  ax.set_ylim(0, 100)
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8)
  ax.set_title(title, fontsize=9)
  return _save(fig, path)


def coverage_curve(curve: Sequence[float], path: str, *, title: str, upper_bound: float,
                   one_crop: Optional[float] = None, k: int = 36) -> str:
  """Cumulative accuracy of the greedy min-cover picks; marks top-k and the full cover."""
  y = 100 * np.asarray(curve, float)
  x = np.arange(1, len(y) + 1)
  fig, ax = _subplots((6, 3.4))
  ax.plot(np.r_[0, x], np.r_[0.0, y], "-", marker="o" if len(y) <= 40 else None, ms=3, lw=1.5,
          drawstyle="steps-post", label="greedy cover")
  ax.set_xlim(0, max(len(y), 1) * 1.05 + 0.5)
  ax.axhline(100 * upper_bound, color="C2", ls=":", lw=1, label=f"upper bound {html.percent(upper_bound)}")
  if one_crop is not None:
    ax.axhline(100 * one_crop, color="C3", ls="--", lw=1, label=f"1-crop {html.percent(one_crop)}")
  if len(y) >= 1:
    kk = min(k, len(y))
    ax.plot([kk], [y[kk - 1]], "o", color="C1", label=f"top-{k}: {html.percent(y[kk - 1] / 100)}")
    ax.axvline(len(y), color="grey", ls="--", lw=1)
  ax.set_xlabel("number of zoom views (greedy order)")
  ax.set_ylabel("images solved (%)")
  ax.set_ylim(0, 100)
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8, loc="lower right")
  ax.set_title(title, fontsize=9)
  return _save(fig, path)


def held_out_curves(held_out: Dict, path: str, *, title: str, one_crop: Optional[float] = None,
                    labels: Optional[Dict[str, str]] = None) -> str:
  """Accuracy vs views per image of the held-out selection curves (`zoomjax.analysis.selection`), each with its 95 %
  bootstrap band; dashed line at the 1-crop."""
  k = np.asarray(held_out["budgets"])
  fig, ax = _subplots((6.4, 3.8))
  for i, (name, c) in enumerate(held_out["curves"].items()):
    y = 100 * _values(c["accuracy"])
    ci = np.asarray([[np.nan, np.nan] if v is None else v for v in c["ci95"]], float).reshape(-1, 2) * 100
    ls = ":" if name.startswith("oracle") else "-"
    ax.plot(k, y, ls, color=f"C{i}", marker="o" if len(k) <= 40 else None, ms=2.5, lw=1.5,
            label=(labels or {}).get(name, name))
    ax.fill_between(k, ci[:, 0], ci[:, 1], color=f"C{i}", alpha=0.15, lw=0)
  if one_crop is not None:
    ax.axhline(100 * one_crop, color="grey", ls="--", lw=1, label=f"1-crop {html.percent(one_crop)}")
  ax.set_xlabel("views per image (k)")
  ax.set_ylabel("accuracy (%)")
  ax.set_xlim(0.5, max(int(k.max()) if k.size else 1, 1) + 0.5)
  ax.set_ylim(0, 100)
  ax.grid(alpha=0.3)
  ax.legend(fontsize=7, loc="lower right")
  ax.set_title(title, fontsize=9)
  return _save(fig, path)


def cascade_curve(cascade: Dict, path: str, *, title: str, held_out: Optional[Dict] = None,
                  one_crop: Optional[float] = None) -> str:
  """Held-out accuracy vs mean views per image of the cascade (`zoomjax.analysis.cascade`, 95 % bars, budgets
  annotated), next to the fixed-k curves of `held_out` (every image spends k views); dashed line at the 1-crop."""
  fig, ax = _subplots((6.4, 3.8))
  if held_out and held_out.get("curves"):
    k = np.asarray(held_out["budgets"])
    for i, name in enumerate(("held_out_max_confidence", "held_out_mean_softmax")):
      if name in held_out["curves"]:
        ax.plot(k, 100 * _values(held_out["curves"][name]["accuracy"]), "-", color=f"C{i + 1}", lw=1.2,
                label={"held_out_max_confidence": "fixed k views + most confident",
                       "held_out_mean_softmax": "fixed k views + mean softmax"}[name])
  curve = cascade.get("curve") or {}
  if curve:
    x = np.asarray(curve["mean_views"], float)
    y = 100 * _values(curve["accuracy"])
    ci = np.asarray([[np.nan, np.nan] if v is None else v for v in curve["ci95"]], float).reshape(-1, 2) * 100
    err = np.stack([y - ci[:, 0], ci[:, 1] - y])
    ax.errorbar(x, y, yerr=err, fmt="o-", color="C0", ms=3.5, lw=1.6, capsize=2, label="cascade (held-out)")
    i = 0
    while i < len(x):  # One label per distinct point: budgets past the cascade's needs give the same one.
      j = i
      while j + 1 < len(x) and x[j + 1] == x[i] and y[j + 1] == y[i]:
        j += 1
      b = cascade["budgets"]
      ax.annotate(f"B={b[i]:g}" + (f"-{b[j]:g}" if j > i else ""), (x[i], y[i]), fontsize=6, xytext=(2, -9),
                  textcoords="offset points")
      i = j + 1
  if one_crop is not None:
    ax.axhline(100 * one_crop, color="grey", ls="--", lw=1, label=f"1-crop {html.percent(one_crop)}")
  ax.set_xscale("log", base=2)
  ax.set_xlabel("mean views per image (log scale)")
  ax.set_ylabel("accuracy (%)")
  ax.set_ylim(0, 100)
  ax.grid(alpha=0.3)
  ax.legend(fontsize=7, loc="lower right")
  ax.set_title(title, fontsize=9)
  return _save(fig, path)


def risk_coverage_curves(curves: Sequence[Tuple[str, str, Dict]], path: str, *, title: str) -> str:
  """curves [(method, score, {"coverage": [...], "risk": [...]})]: risk (error on the answered images) vs
  coverage, a colour per method and a line style per confidence score."""
  fig, ax = _subplots((6.4, 3.8))
  methods = list(dict.fromkeys(m for m, _, _ in curves))
  scores = list(dict.fromkeys(s for _, s, _ in curves))
  styles = ("-", "--", ":", "-.")
  for m, sc, c in curves:
    ax.plot(100 * _values(c["coverage"]), 100 * _values(c["risk"]), color=f"C{methods.index(m) % 10}",
            ls=styles[scores.index(sc) % len(styles)], lw=1.3, label=f"{m} ({sc})")
  ax.set_xlabel("coverage (% of images answered, most confident first)")
  ax.set_ylabel("risk (% wrong among answered)")
  ax.set_xlim(0, 100)
  ax.set_ylim(bottom=0)
  ax.grid(alpha=0.3)
  ax.legend(fontsize=6, loc="upper left", ncol=2)
  ax.set_title(title, fontsize=9)
  return _save(fig, path)


def _values(v: Sequence[Optional[float]]) -> np.ndarray:
  """JSON's nulls (analyses of empty groups) as NaN, so lines break there instead of failing."""
  return np.asarray([np.nan if x is None else x for x in v], float)


def accuracy_vs_scale_overlay(curves: Sequence[Tuple[str, Dict[str, list]]], path: str, *, title: str,
                              one_crop_scale: int = 256) -> str:
  """curves [(label, accuracy_vs_scale dict)]: best-of-anchors (left) and centre anchor (right), a line per run."""
  fig = Figure(figsize=(10, 3.8))
  axes = fig.subplots(1, 2, sharey=True)
  fig.suptitle(title, fontsize=10)
  for i, (label, avs) in enumerate(curves):
    s = np.asarray(avs["scales"])
    for ax, key in zip(axes, ("best_of_anchors", "centre")):
      ax.plot(s, 100 * _values(avs[key]), "o-", ms=3, color=f"C{i % 10}", label=label)
  for ax, sub in zip(axes, ("best of the anchors at S", "centre anchor only")):
    ax.set_title(sub, fontsize=9)
    ax.axvline(one_crop_scale, ls="--", color="grey", lw=1)
    ax.set_xlabel("scale S (shorter side, px)")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
  axes[0].set_ylabel("accuracy (%)")
  axes[0].legend(fontsize=7)
  return _save(fig, path)


def one_crop_vs_upper_bound(points: Sequence[Dict[str, Any]], path: str, *,
                            paper_points: Sequence[Tuple[float, float]] = ()) -> str:
  """Per run (1-crop, upper bound) with 95 % intervals, a colour per group; `paper_points` (percent, the paper's
  Table 1 (a) vs (c)) in grey. points: {label, group, x, y (fractions), xci, yci ([lo, hi] or None)}."""
  fig, ax = _subplots((6, 5))
  if paper_points:
    px, py = zip(*paper_points)
    ax.scatter(px, py, s=18, facecolors="none", edgecolors="#999", label="paper, Table 1 (a) vs (c)")
  groups = list(dict.fromkeys(p["group"] for p in points))
  for p in points:
    if p["x"] is None or p["y"] is None:
      continue
    c = f"C{groups.index(p['group']) % 10}"
    xe = None if not p["xci"] else [[100 * (p["x"] - p["xci"][0])], [100 * (p["xci"][1] - p["x"])]]
    ye = None if not p["yci"] else [[100 * (p["y"] - p["yci"][0])], [100 * (p["yci"][1] - p["y"])]]
    ax.errorbar([100 * p["x"]], [100 * p["y"]], xerr=xe, yerr=ye, fmt="o", ms=5, color=c, lw=0.8, capsize=2)
    ax.annotate(p["label"], (100 * p["x"], 100 * p["y"]), fontsize=7, xytext=(3, 3), textcoords="offset points")
  for g in groups:
    ax.plot([], [], "o", color=f"C{groups.index(g) % 10}", label=g)
  ax.plot([0, 100], [0, 100], ":", color="grey", lw=1)
  ax.set_xlim(0, 100)
  ax.set_ylim(0, 101)
  ax.set_xlabel("1-crop accuracy (%)")
  ax.set_ylabel("upper bound, all views (%)")
  ax.grid(alpha=0.3)
  ax.legend(fontsize=7, loc="lower right")
  ax.set_title("zoom's headroom: 1-crop vs upper bound", fontsize=9)
  return _save(fig, path)


def held_out_overlay(curves: Sequence[Tuple[str, Dict]], path: str, *, title: str,
                     labels: Optional[Dict[str, str]] = None) -> str:
  """curves [(label, metrics.json "held_out")]: accuracy vs views per image, a colour per run; dotted: the
  in-sample oracle, dashed: held-out views' upper bound, solid: held-out views + the most confident one (no
  oracle). labels: curve name -> legend text (`zoomjax.analysis.selection.CURVE_LABELS`)."""
  fig, ax = _subplots((6.5, 3.8))
  styles = (("oracle_in_sample", ":"), ("held_out_upper_bound", "--"), ("held_out_max_confidence", "-"))
  for i, (label, h) in enumerate(curves):
    for c, style in styles:
      ax.plot(h["budgets"], 100 * _values(h["curves"][c]["accuracy"]), style, color=f"C{i % 10}", lw=1.3,
              label=label if c == "held_out_max_confidence" else None)
  for c, style in styles:
    ax.plot([], [], style, color="grey", label=(labels or {}).get(c, c))
  ax.set_xlabel("views per image (k)")
  ax.set_ylabel("accuracy (%)")
  ax.set_ylim(0, 100)
  ax.grid(alpha=0.3)
  ax.legend(fontsize=6, loc="lower right")
  ax.set_title(f"{title}: zoom without an oracle", fontsize=9)
  return _save(fig, path)
