"""How a job runs: shards and resumption, processes and devices, atomic files, the console, progress, scalars,
command-line plumbing.

  atomic    files written whole or not at all (write to a temporary name, then rename).
  shards    a dataset cut into shards, each written once, resumed by key, merged in order.
  parallel  processes and devices: jax.distributed, the data mesh, host-local batches.
  console   every message once: `say` (progress, results) and `warn`.
  progress  the compile announcement and the images/s / ETA line.
  scalars   TensorBoard event files without TensorFlow.
  cli       `--config` parsing, overrides, one-line user errors, a quiet backend start.
  interrupt Ctrl-C / SIGTERM: stop at once, keep every finished image, say so in one line.
  config    what every config shares (the `:args` parser, common blocks); where `--config NAME.py` is found.

Nothing here imports another part of zoomjax but `zoomjax.errors` (tests/test_import_graph.py).
"""
