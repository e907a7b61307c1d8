"""Config blocks shared by several experiments."""
import ml_collections


def distributed_config() -> ml_collections.ConfigDict:
  """The multi-host block read by `zoomjax.parallel.initialize_from_config` (zoomjax.main)."""
  c = ml_collections.ConfigDict()
  c.enabled = False  # Multi-host: jax.distributed.initialize() first (zoomjax.parallel).
  c.coordinator_address = ""  # 'host:port' of process 0 ('' = auto / $ZOOMJAX_COORDINATOR_ADDRESS).
  c.num_processes = 0  # 0 = auto / $ZOOMJAX_NUM_PROCESSES.
  c.process_id = -1  # -1 = auto / $ZOOMJAX_PROCESS_ID.
  c.initialization_timeout_s = 300  # Seconds to wait for every process to join.
  return c
