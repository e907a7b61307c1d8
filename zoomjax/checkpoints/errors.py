"""The one error type of checkpoint reading and merging."""


class CheckpointError(ValueError):
  """A checkpoint that cannot be read or does not fit the model; the message names the file and key."""
