"""Builds (or checks) a dataset once, before a sweep: `python -m zoomjax.data.prepare --dataset NAME ...`.

  python -m zoomjax.data.prepare --dataset imagenet_a --manual_dir ~/downloads --data_dir ~/tensorflow_datasets
  python -m zoomjax.data.prepare --dataset imagenet2012 --manual_dir ~/downloads   # needs TensorFlow, once
  python -m zoomjax.data.prepare --dataset imagenet2012_real --real_json ~/downloads/real.json

Run it once on one machine before a multi-host sweep: every process then only reads the build (processes
building the same dataset concurrently would race on data_dir). Prints the count, the label space, the
first ids and every image whose header cannot be read.
"""
import argparse
from typing import Optional, Sequence

from zoomjax.data import get_dataset
from zoomjax.runtime import cli

__all__ = ["main"]


def main(argv: Optional[Sequence[str]] = None) -> int:
  """`python -m zoomjax.data.prepare --dataset NAME ...`: 0 when built and scanned; a user error (a missing
  download, a bad name) ends in one line on stderr with exit status 2."""
  p = argparse.ArgumentParser(prog="python -m zoomjax.data.prepare", description=__doc__.split("\n\n")[0])
  p.add_argument("--dataset", required=True, help="dataset name, e.g. imagenet_a, imagenet_v2, folder:PATH")
  p.add_argument("--data_dir", default=None, help="TFDS data dir (default: TFDS's)")
  p.add_argument("--manual_dir", default=None, help="folder holding the downloaded files")
  p.add_argument("--variant", default=None, help="imagenet_v2 / imagenet2012_real variant")
  p.add_argument("--real_json", default=None, help="path of ReaL's real.json")
  p.add_argument("--split", default=None, help="split (and optional [a:b] slice)")
  p.add_argument("--num_workers", type=int, default=4, help="threads for the header scan")
  p.add_argument("--verbose", action="store_true", help="also print the traceback of a user error")
  a = p.parse_args(argv)
  try:
    _prepare(a)
  except Exception as e:  # pylint: disable=broad-except  User errors end in one line; bugs are re-raised.
    cli.exit_on_user_error(e, a.verbose)
    raise
  return 0


def _prepare(a: argparse.Namespace) -> None:
  ds = get_dataset(a.dataset, data_dir=a.data_dir, manual_dir=a.manual_dir, variant=a.variant,
                   real_json=a.real_json, split=a.split, num_workers=a.num_workers)
  sizes = ds.sizes(num_workers=a.num_workers)
  sizes = sizes[sizes[:, 0] >= 0] if (sizes[:, 0] >= 0).any() else sizes
  print(f"{ds.name}: {len(ds)} examples, label space {ds.label_space.name} "
        f"({ds.label_space.num_scored_classes} scored classes, up to {ds.label_space.max_labels} labels)")
  print(f"source: {ds.info.get('source')}; first ids: {ds.ids[:3]}")
  print(f"image sizes: h {sizes[:, 0].min()}..{sizes[:, 0].max()}, w {sizes[:, 1].min()}..{sizes[:, 1].max()}")
  for s in ds.skipped:
    print(f"unreadable: {s['id']}: {s['reason']}")
  print(f"{len(ds.skipped)} unreadable")


if __name__ == "__main__":
  raise SystemExit(main())
