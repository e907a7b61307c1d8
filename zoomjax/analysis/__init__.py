"""The study's maths over records, pure NumPy: what a sweep's per-view records say about a model.

  records        the per-view record arrays a sweep writes (load, save, fields).
  metrics        correctness, 1-crop and upper-bound accuracy, greedy cover, anchors, scales, intervals.
  selection      held-out view selection: does a zoom chosen on some images generalise to others?
  cascade        views one by one per image until a confidence rule fires: accuracy vs mean views spent.
  selective      selective classification: risk-coverage, AURC and calibration error of confidence scores.
  aggregators    every test-time aggregator (mean, vote, TPT, ZERO, ...) over any subset of the stored views.
  paired         paired comparisons of two methods or runs on the same images (bootstrap, McNemar).
  per_class      per-class accuracy and the classes zoom helps most.
  study          cross-run statistics: runs grouped by (dataset, grid), Table 1 per run, anchors, unsolved images.
  paper_numbers  the figures the paper publishes, for side-by-side tables.
  sweep_results  a finished sweep workdir, read only.

Nothing here imports `zoomjax.reports` or `zoomjax.jobs` (tests/test_import_graph.py).
"""
from zoomjax.analysis.cascade import cascade_outcomes, record_cascade
from zoomjax.analysis.metrics import (ONE_CROP_VIEW, accuracy_vs_scale, aggregation_accuracy, aggregation_sets,
                                      anchor_upper_bound, best_view, bootstrap_interval, bootstrap_mean_interval,
                                      correctness, coverage_curve, disentangle, greedy_min_cover,
                                      most_confident_prediction, one_crop_accuracy, record_metrics, solved, summary,
                                      tie_order, union_accuracy, upper_bound, view_index, zoom_groups)
from zoomjax.analysis.aggregators import AGGREGATORS, aggregator_table, correct_by_aggregator
from zoomjax.analysis.paired import PairedResult, mcnemar_exact, paired_difference
from zoomjax.analysis.per_class import per_class_table, record_per_class
from zoomjax.analysis.records import Records
from zoomjax.analysis.records import load as load_records
from zoomjax.analysis.selection import record_held_out, select_views
from zoomjax.analysis.selective import aurc, ece, record_selective, risk_coverage
from zoomjax.analysis.sweep_results import Sweep, open_sweep

__all__ = [
    # A correctness matrix C (images x views, bool) and what it says.
    "correctness", "solved", "upper_bound", "one_crop_accuracy", "view_index", "ONE_CROP_VIEW", "union_accuracy",
    "greedy_min_cover", "coverage_curve", "tie_order", "anchor_upper_bound", "accuracy_vs_scale", "zoom_groups",
    "disentangle", "aggregation_sets", "aggregation_accuracy", "most_confident_prediction", "best_view", "summary",
    "bootstrap_interval", "bootstrap_mean_interval",
    # Two methods or runs on the same images.
    "paired_difference", "PairedResult", "mcnemar_exact", "aggregator_table", "correct_by_aggregator", "AGGREGATORS",
    # A sweep's records and workdir.
    "Records", "load_records", "record_metrics", "record_held_out", "select_views", "per_class_table",
    "record_per_class", "Sweep", "open_sweep",
    # Views on demand and abstention.
    "cascade_outcomes", "record_cascade", "risk_coverage", "aurc", "ece", "record_selective",
]
