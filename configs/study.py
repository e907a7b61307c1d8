"""Study: the paper's comparison over finished zoom sweeps (Table 1, anchors, curves, unsolved images, export).

  python -m zoomjax.main --workdir runs/study \
    --config 'configs/study.py:runs=runs/demo;runs/val100_*,export_max_solved=0'

Args (comma-separated key=value, all optional but runs):
  runs               sweep workdirs, ';'-separated; each may be a glob (runs/val100_*), matches sorted.
  export_max_solved  export the images solved by at most k of a group's runs as a folder: dataset (-1 = none).
  mixed              group (runs of other datasets or grids form their own groups) | refuse (they are errors).
  top_k              N of the greedy top-N upper bound (the paper: 36).
  explorers          at most this many images in each run's explorer (0 = no explorers).
  runlocal           small settings for tests (200 bootstrap draws, 8-image explorers, small thumbnails).
Reads the sweeps, never writes into them; rerunning rewrites the study's files. Any field can be overridden
with --config.<field>=value.
"""
import ml_collections

from zoomjax.runtime import config as config_lib

# The allowed values of every numeric field, checked before the job writes anything (config_lib.validate).
RANGES = {
    "top_k": config_lib.Range(1, integer=True),
    "bootstrap_draws": config_lib.Range(1, integer=True),
    "bootstrap_seed": config_lib.Range(0, integer=True),
    "export_max_solved": config_lib.Range(-1, integer=True, note="-1 = no export"),
    "explorer_max_images": config_lib.Range(0, integer=True, note="0 = no explorers"),
    "explorer_thumb_side": config_lib.Range(1, integer=True),
    "runs": config_lib.FreeText("';'-separated sweep workdirs or globs; each checked when read"),
    "mixed": config_lib.OneOf(("group", "refuse"), empty_ok=False),
    "tie_order": config_lib.OneOf(("paper", "grid")),
    "command": config_lib.FreeText("the command line shown in study.html"),
}


def get_config(arg=None):
  a = config_lib.parse_arg(arg, runs="", export_max_solved=-1, mixed="group", top_k=36, explorers=-1,
                           runlocal=False)
  c = ml_collections.ConfigDict()
  c.experiment = "study"  # zoomjax.jobs.study
  c.runs = a.runs  # Sweep workdirs: ';'-separated paths or globs.
  c.mixed = a.mixed  # 'group': other datasets/grids form groups of their own; 'refuse': one (dataset, grid) only.
  c.top_k = a.top_k  # The N of the greedy top-N upper bound and of the anchor counts (the paper's N = 36).
  c.tie_order = ""  # Greedy tie-breaking: '' = each run's own config.tie_order; 'paper' | 'grid' for all runs.
  c.bootstrap_draws = 200 if a.runlocal else 1000  # Bootstrap draws of the 95 % intervals (per-image resampling).
  c.bootstrap_seed = 0  # Seed of the bootstrap.
  # Export the images solved by at most k of their group's runs as a folder: dataset under export/ (-1 = none;
  # 0 = the images no run solves, the paper's ImageNet-Hard seed).
  c.export_max_solved = a.export_max_solved
  # Images per run explorer (explorers/<run>/explorer.html; 0 = none): rescued and never-solved ones first.
  c.explorer_max_images = a.explorers if a.explorers >= 0 else (8 if a.runlocal else 200)
  c.explorer_thumb_side = 256 if a.runlocal else 512  # Longest side of the originals stored for the explorers.
  c.command = ""  # Shown in study.html (set by scripts that know the exact command line).
  return config_lib.add_common(c)
