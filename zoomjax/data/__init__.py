"""zoomjax.data: evaluation sets by name, their label spaces, and the host input pipeline.

  ds = get_dataset("imagenet_a", manual_dir="~/data/imagenet-a")   # or "folder:PATH", "demo_photos", ...
  ds.read(0) -> {'image': uint8 (H, W, 3), 'labels': int32 (L,), 'id': str}
  for batch in device_prefetch(make_batches(ds, batch_size=8, canvas_fn=zoom.canvas_size)): ...
  correct = is_correct(predict(logits, ds.label_space), batch['labels']) & batch['mask']

Importing this package does not import TensorFlow (nor TFDS until a TFDS-backed dataset is asked for).
"""
from zoomjax.data.classes import class_names, index_of, wnids
from zoomjax.data.dataset import Dataset
from zoomjax.data.datasets import NAMES, get_dataset
from zoomjax.data.decode import DecodeError, decode_pil, decode_rgb
from zoomjax.data.label_space import (LABEL_SPACES, LabelSpace, get_label_space, is_correct, mask_logits, pad_labels,
                                      predict)
from zoomjax.data.pipeline import decode_threads, device_prefetch, make_batches, num_steps, plan_steps
