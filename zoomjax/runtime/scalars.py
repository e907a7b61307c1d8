"""TensorBoard scalars without TensorFlow: `ScalarWriter(logdir).write_scalars(step, {name: value})`.

clu's metric writers (and tensorboard's own EventFileWriter, through `tensorboard.compat.tf`) import TensorFlow
when it is installed, which costs every job seconds and about a gigabyte for a few numbers. This writes the same
`events.out.tfevents.*` file with tensorboard's pure-Python record writer and protos; TensorBoard reads it.
"""
import os
import socket
import time
from typing import Mapping

from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.summary.writer.record_writer import RecordWriter


class ScalarWriter:
  """Appends scalar summaries to a new event file in `logdir` (the subset of clu's writer the jobs use)."""

  def __init__(self, logdir: str):
    os.makedirs(logdir, exist_ok=True)
    name = f"events.out.tfevents.{int(time.time())}.{socket.gethostname()}.{os.getpid()}.0"
    self.path = os.path.join(logdir, name)
    self._file = open(self.path, "ab")  # pylint: disable=consider-using-with  Closed by close().
    self._records = RecordWriter(self._file)
    self._write(event_pb2.Event(wall_time=time.time(), file_version="brain.Event:2"))

  def _write(self, event: event_pb2.Event) -> None:
    self._records.write(event.SerializeToString())

  def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
    values = [summary_pb2.Summary.Value(tag=k, simple_value=float(v)) for k, v in scalars.items()]
    self._write(event_pb2.Event(wall_time=time.time(), step=int(step), summary=summary_pb2.Summary(value=values)))

  def flush(self) -> None:
    self._file.flush()

  def close(self) -> None:
    if not self._file.closed:
      self._file.close()
