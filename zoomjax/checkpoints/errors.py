"""The one error type of checkpoint reading and merging."""
from zoomjax.errors import UserError


class CheckpointError(UserError):
  """A checkpoint that cannot be read or does not fit the model; the message names the file and key.

  A `UserError` (so a `ValueError`): `zoomjax.main` prints it as one line."""
