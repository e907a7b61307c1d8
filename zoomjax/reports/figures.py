"""The sweep's figures: anchor heatmaps, accuracy vs scale, greedy coverage curve, held-out selection curves.

Figures are `matplotlib.figure.Figure` objects rendered straight to PNG, without pyplot, so importing this
module changes no global matplotlib state (the user's backend stays as it is).
"""
from typing import Dict, Optional, Sequence, Tuple

import numpy as np
from matplotlib.figure import Figure


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
  ax.axhline(100 * upper_bound, color="C2", ls=":", lw=1, label=f"upper bound {100 * upper_bound:.1f}%")
  if one_crop is not None:
    ax.axhline(100 * one_crop, color="C3", ls="--", lw=1, label=f"1-crop {100 * one_crop:.1f}%")
  if len(y) >= 1:
    kk = min(k, len(y))
    ax.plot([kk], [y[kk - 1]], "o", color="C1", label=f"top-{k}: {y[kk - 1]:.1f}%")
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
    y = 100 * np.asarray([np.nan if v is None else v for v in c["accuracy"]], float)
    ci = np.asarray([[np.nan, np.nan] if v is None else v for v in c["ci95"]], float).reshape(-1, 2) * 100
    ls = ":" if name.startswith("oracle") else "-"
    ax.plot(k, y, ls, color=f"C{i}", marker="o" if len(k) <= 40 else None, ms=2.5, lw=1.5,
            label=(labels or {}).get(name, name))
    ax.fill_between(k, ci[:, 0], ci[:, 1], color=f"C{i}", alpha=0.15, lw=0)
  if one_crop is not None:
    ax.axhline(100 * one_crop, color="grey", ls="--", lw=1, label=f"1-crop {100 * one_crop:.1f}%")
  ax.set_xlabel("views per image (k)")
  ax.set_ylabel("accuracy (%)")
  ax.set_xlim(0.5, max(int(k.max()) if k.size else 1, 1) + 0.5)
  ax.set_ylim(0, 100)
  ax.grid(alpha=0.3)
  ax.legend(fontsize=7, loc="lower right")
  ax.set_title(title, fontsize=9)
  return _save(fig, path)
