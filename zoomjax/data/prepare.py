"""Builds (or checks) a dataset once, before a sweep: `python -m zoomjax.data.prepare --dataset NAME ...`.

  python -m zoomjax.data.prepare --dataset imagenet_a --manual_dir ~/downloads --data_dir ~/tensorflow_datasets
  python -m zoomjax.data.prepare --dataset imagenet2012 --manual_dir ~/downloads   # needs TensorFlow, once
  python -m zoomjax.data.prepare --dataset imagenet2012_real --real_json ~/downloads/real.json

Run it once on one machine before a multi-host sweep: every process then only reads the build (processes
building the same dataset concurrently would race on data_dir). Prints the count, the label space, the
first ids and every image whose header cannot be read.
"""
from absl import app, flags

from zoomjax.runtime import cli
from zoomjax.data import get_dataset

_DATASET = flags.DEFINE_string("dataset", None, "Dataset name, e.g. imagenet_a, imagenet_v2, folder:PATH.")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "TFDS data dir (default: TFDS's).")
_MANUAL_DIR = flags.DEFINE_string("manual_dir", None, "Folder holding the downloaded files.")
_VARIANT = flags.DEFINE_string("variant", None, "imagenet_v2 / imagenet2012_real variant.")
_REAL_JSON = flags.DEFINE_string("real_json", None, "Path of ReaL's real.json.")
_SPLIT = flags.DEFINE_string("split", None, "Split (and optional [a:b] slice).")
_WORKERS = flags.DEFINE_integer("num_workers", 4, "Threads for the header scan.")
_VERBOSE = flags.DEFINE_bool("verbose", False, "Also print the traceback of a user error.")
flags.mark_flag_as_required("dataset")


def main(argv):
  try:
    _prepare(argv)
  except Exception as e:  # pylint: disable=broad-except  User errors end in one line; bugs are re-raised.
    cli.exit_on_user_error(e, _VERBOSE.value)
    raise


def _prepare(argv):
  del argv
  ds = get_dataset(_DATASET.value, data_dir=_DATA_DIR.value, manual_dir=_MANUAL_DIR.value, variant=_VARIANT.value,
                   real_json=_REAL_JSON.value, split=_SPLIT.value, num_workers=_WORKERS.value)
  sizes = ds.sizes(num_workers=_WORKERS.value)
  sizes = sizes[sizes[:, 0] >= 0] if (sizes[:, 0] >= 0).any() else sizes
  print(f"{ds.name}: {len(ds)} examples, label space {ds.label_space.name} "
        f"({ds.label_space.num_scored_classes} scored classes, up to {ds.label_space.max_labels} labels)")
  print(f"source: {ds.info.get('source')}; first ids: {ds.ids[:3]}")
  if ds.info.get("warning"):
    print("warning:", ds.info["warning"])
  print(f"image sizes: h {sizes[:, 0].min()}..{sizes[:, 0].max()}, w {sizes[:, 1].min()}..{sizes[:, 1].max()}")
  for s in ds.skipped:
    print(f"unreadable: {s['id']}: {s['reason']}")
  print(f"{len(ds.skipped)} unreadable")


if __name__ == "__main__":
  app.run(main)
