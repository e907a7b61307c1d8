"""The study's maths over records, pure NumPy: what a sweep's per-view records say about a model.

  records        the per-view record arrays a sweep writes (load, save, fields).
  metrics        correctness, 1-crop and upper-bound accuracy, greedy cover, anchors, scales, intervals.
  selection      held-out view selection: does a zoom chosen on some images generalise to others?
  per_class      per-class accuracy and the classes zoom helps most.
  paper_numbers  the figures the paper publishes, for side-by-side tables.
  sweep_results  a finished sweep workdir, read only.

Nothing here imports `zoomjax.reports` or `zoomjax.jobs` (tests/test_import_graph.py).
"""
