"""Checkpoint reading (never imports torch, never runs code from a file) and the load-and-merge gate."""
from zoomjax.checkpoints.errors import CheckpointError
from zoomjax.checkpoints.merge import merge_into
from zoomjax.checkpoints.readers import read_checkpoint

__all__ = ["CheckpointError", "merge_into", "read_checkpoint"]
