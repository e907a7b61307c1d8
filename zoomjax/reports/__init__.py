"""What a person looks at: HTML pages, figures, tables and the image explorer.

  html      the shared toolkit: escaping, the one value-with-interval format, tables, thumbnails.
  figures   matplotlib figures (Agg backend; pyplot is never imported).
  sweep     a sweep's report.html.
  study     the cross-run study's study.html.
  evaluate  the evaluation job's results.html.
  explorer  the image explorer (a static page over a finished sweep).

Nothing here imports `zoomjax.jobs` (tests/test_import_graph.py).
"""
