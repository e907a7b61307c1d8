"""zoomjax.data: evaluation sets by name, their label spaces, and the host input pipeline.

  ds = get_dataset("imagenet_a", manual_dir="~/data/imagenet-a")   # or "folder:PATH", "demo_photos", ...
  ds = get_dataset("folder:PATH", corruption="fog/5")               # ImageNet-C's fog at severity 5, on the fly
  ds = from_config(config.data)                                      # the same, from a job's `data` block
  ds.read(0) -> {'image': uint8 (H, W, 3), 'labels': int32 (L,), 'id': str}
  for batch in device_prefetch(make_batches(ds, batch_size=8, canvas_fn=zoom.canvas_size)): ...
  correct = is_correct(predict(logits, ds.label_space), batch['labels']) & batch['mask']

Importing this package does not import TensorFlow (nor TFDS until a TFDS-backed dataset is asked for).
"""
import inspect
from typing import Any, Mapping

from zoomjax.data.classes import class_names, index_of, wnids
from zoomjax.data.corruptions import CORRUPTIONS, corrupt, corrupt_image
from zoomjax.data.dataset import Dataset
from zoomjax.data.datasets import NAMES, get_dataset
from zoomjax.data.decode import DecodeError, decode_pil, decode_rgb
from zoomjax.data.label_space import (LABEL_SPACES, LabelSpace, get_label_space, is_correct, mask_logits, pad_labels,
                                      predict, topk_correct)
from zoomjax.data.pipeline import decode_threads, device_prefetch, make_batches, num_steps, plan_steps
from zoomjax.errors import UserError

__all__ = [
    "get_dataset", "from_config", "NAMES", "Dataset",
    "LabelSpace", "LABEL_SPACES", "get_label_space", "is_correct", "topk_correct", "predict", "mask_logits",
    "pad_labels", "class_names", "wnids", "index_of",
    "decode_rgb", "decode_pil", "DecodeError",
    "make_batches", "device_prefetch", "num_steps", "plan_steps", "decode_threads",
    "CORRUPTIONS", "corrupt", "corrupt_image",
]


def from_config(block: Mapping[str, Any], **kwargs: Any) -> Dataset:
  """The dataset a job's `data` config block names: `get_dataset(block['name'], **its other fields)`.

  The one reading of a `data` block (sweep, TTA and evaluation jobs, and a finished sweep's config.json): fields
  that are None or '' keep `get_dataset`'s defaults. `kwargs` (e.g. num_workers) are added and win over the block.
  A field `get_dataset` does not take is a UserError naming it.
  """
  fields = block.to_dict() if hasattr(block, "to_dict") else dict(block)
  name = fields.pop("name", None)
  if not name:
    raise UserError(f"data block {fields}: no dataset name (data.name=...; see zoomjax.data.NAMES)")
  kw = {k: v for k, v in fields.items() if v not in (None, "")}
  kw.update(kwargs)
  accepted = inspect.signature(get_dataset).parameters
  unknown = sorted(k for k in kw if k not in accepted)
  if unknown:
    raise UserError(f"data block of {name!r}: unknown field(s) {', '.join(unknown)}; known: "
                    f"{', '.join(k for k in accepted if k != 'name')}")
  return get_dataset(name, **kw)
