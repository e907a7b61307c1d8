"""Backend-specific implementations behind the public API (fast forms for XLA:CPU, with their gradients).

  zoom_sparse  the zoom grid as K-tap row gathers (zoomjax.zoom's CPU default).
  depthwise    TF-'SAME' depthwise conv: shift-sum with a hand-written VJP (CPU), grouped conv (accelerators).
  conv1x1      1x1 conv as an einsum with a chunked kernel gradient.
They import neither zoomjax.models nor zoomjax.zoom: those dispatch to them. Figures: BENCHMARKS.md.
"""
