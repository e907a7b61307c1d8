"""Scale-out: device meshes, data-parallel shardings, multi-process start-up and process-0 barriers.

zoomjax only needs data parallelism: every device holds a full copy of the (small) variables and a slice of the
image batch, and the zoom grid is computed next to the model, so only compact records come back to the host.

Two layouts, both built here:
  * local mesh (`make_mesh()`): the devices of this process. Processes never run a collective computation; each
    sweeps its own shards and they share only the filesystem. This is what the sweep uses, and it is why a run
    resumed on a different number of processes gives the same records (shards are keyed by global image index).
  * global mesh (`make_mesh(scope="global")`): every device of every process, for code that wants one global
    batch per step (every process must then run the same steps in lockstep); `shard_batch` turns each process's
    local numpy batch into the global `jax.Array` with `jax.make_array_from_process_local_data`.

Multi-process start-up is `initialize_from_config(config)`: `jax.distributed.initialize(...)` behind a config
flag (or the environment), before anything touches a device. `data_parallel_jit` builds the one jitted
data-parallel step (shard_map: each device runs the single-device program on its slice of the batch).
"""
import dataclasses
import os
from typing import Any, Callable, Optional, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from zoomjax.errors import UserError

DATA_AXIS = "data"

# Environment fallbacks for `initialize_from_config` (like big_vision's BV_JAX_INIT): set by a launcher script.
ENV_ENABLE = "ZOOMJAX_DISTRIBUTED"
ENV_COORDINATOR = "ZOOMJAX_COORDINATOR_ADDRESS"
ENV_NUM_PROCESSES = "ZOOMJAX_NUM_PROCESSES"
ENV_PROCESS_ID = "ZOOMJAX_PROCESS_ID"


# ---------------------------------------------------------------------------------------------------------------
# Meshes and shardings.


def make_mesh(devices: Optional[Sequence[jax.Device]] = None, *, scope: str = "local") -> Mesh:
  """A 1-D mesh with axis 'data' over `devices`, else this process's devices ('local') or all ('global')."""
  if devices is None:
    if scope not in ("local", "global"):
      raise ValueError(f"mesh scope must be 'local' or 'global', got {scope!r}")
    devices = jax.local_devices() if scope == "local" else jax.devices()
  devices = list(devices)
  if not devices:
    raise ValueError("make_mesh: no devices")
  return Mesh(np.asarray(devices, dtype=object), (DATA_AXIS,))


def data_sharding(mesh: Mesh) -> NamedSharding:
  """Leading (batch) axis split over 'data'; other axes whole."""
  return NamedSharding(mesh, P(DATA_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
  """A full copy on every device of the mesh (parameters, batch statistics)."""
  return NamedSharding(mesh, P())


def is_local(mesh: Mesh) -> bool:
  """True when every device of the mesh belongs to this process."""
  return all(d.process_index == jax.process_index() for d in mesh.devices.flat)


def local_batch_multiple(mesh: Mesh) -> int:
  """The per-process batch size must be a multiple of this (this process's devices in the mesh)."""
  pid = jax.process_index()
  return sum(1 for d in mesh.devices.flat if d.process_index == pid)


def check_batch_size(batch_size: int, mesh: Mesh, what: str = "batch_size") -> None:
  """Clear error when a per-process batch cannot be split evenly over this process's devices."""
  k = local_batch_multiple(mesh)
  if k == 0:
    raise ValueError(f"the mesh {mesh.devices.tolist()} holds none of process {jax.process_index()}'s devices")
  if batch_size % k:
    raise UserError(f"{what}={batch_size} must be a multiple of the {k} devices this process has in the mesh "
                    f"(e.g. {max(k, batch_size - batch_size % k)}); set XLA/CUDA_VISIBLE_DEVICES or the "
                    "batch size accordingly")


def per_process_batch(per_device: int, mesh: Mesh, what: str = "batch_size") -> int:
  """Images per step on this process: `per_device` on each of its devices in the mesh (configs are per device,
  so one command runs unchanged on 1, 8 or 64 devices)."""
  if per_device < 1:
    raise UserError(f"{what}={per_device}: it counts images per device per step and must be at least 1")
  k = local_batch_multiple(mesh)
  if k == 0:
    raise ValueError(f"the mesh {mesh.devices.tolist()} holds none of process {jax.process_index()}'s devices")
  return per_device * k


def replicate(tree: Any, mesh: Mesh) -> Any:
  """Places every leaf (e.g. model variables, identical on every process) in full on every mesh device."""
  sharding = replicated(mesh)
  if is_local(mesh):
    return jax.device_put(tree, sharding)
  # Every process passes the same host values; each fills its own devices.
  return jax.tree.map(lambda x: jax.make_array_from_callback(np.shape(x), sharding,
                                                             lambda idx, x=x: np.asarray(x)[idx]), tree)


def shard_batch(batch: Any, mesh: Mesh) -> Any:
  """This process's batch (numpy leaves, leading axis = local batch) -> arrays split over 'data'.

  On a local mesh this is `device_put` (jit refuses numpy inputs with a non-trivial sharding once
  `jax.distributed` is initialised, so callers must place batches themselves). On a global mesh each process
  passes its own slice and gets the global array (global batch = concatenation in process order).
  """
  sharding = data_sharding(mesh)
  k = local_batch_multiple(mesh)
  for leaf in jax.tree.leaves(batch):
    if np.ndim(leaf) == 0 or np.shape(leaf)[0] % max(k, 1):
      raise ValueError(f"shard_batch: a leaf of shape {np.shape(leaf)} does not split over this process's {k} "
                       "devices along its first axis")
  if is_local(mesh):
    return jax.device_put(batch, sharding)
  return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), batch)


def to_host(tree: Any) -> Any:
  """Sharded outputs -> numpy. On a global mesh each process gets the rows of its own local batch."""
  def one(x):
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
      from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
      return np.asarray(multihost_utils.global_array_to_host_local_array(x, x.sharding.mesh, x.sharding.spec))
    return np.asarray(jax.device_get(x))
  return jax.tree.map(one, tree)


def data_parallel_jit(fn: Callable[..., Any], mesh: Mesh, *, num_args: int,
                  replicated_argnums: Sequence[int] = (0,)) -> Callable[..., Any]:
  """One jitted step that runs `fn` on every device of `mesh` over that device's slice of the batch.

  Arguments in `replicated_argnums` (e.g. the variables) are whole on every device; the others and every output
  are split along their leading axis over 'data'. Implemented with `jax.shard_map`: each device runs exactly
  the single-device program on its local slice, so results do not depend on the device count (jit with
  in_shardings of a vmapped MEMO episode returned wrong answers; tests/test_parallel.py). `fn` must be
  per-example independent
  along the batch axis (no cross-example reductions), as the zoom sweep and batched MEMO are.

  E.g. for a vmapped MEMO episode `fn(variables, images, hws, keys)`: `data_parallel_jit(fn, mesh, num_args=4)`.
  """
  in_specs = tuple(P() if i in replicated_argnums else P(DATA_AXIS) for i in range(num_args))
  # check_vma=False: per-device programs may carry unsharded loop state (e.g. a scan accumulator).
  mapped = jax.shard_map(fn, mesh=mesh, in_specs=in_specs, out_specs=P(DATA_AXIS), check_vma=False)
  return jax.jit(mapped)


# ---------------------------------------------------------------------------------------------------------------
# Multi-process start-up and coordination.


@dataclasses.dataclass(frozen=True)
class DistributedSettings:
  """What `jax.distributed.initialize` gets; None fields are auto-detected by JAX (SLURM, TPU pods, ...)."""
  enabled: bool = False
  coordinator_address: Optional[str] = None  # 'host:port' of process 0.
  num_processes: Optional[int] = None
  process_id: Optional[int] = None
  initialization_timeout_s: int = 300


def _get(config: Any, name: str, default: Any = None) -> Any:
  if config is None:
    return default
  if isinstance(config, dict):
    return config.get(name, default)
  getter = getattr(config, "get", None)
  return getter(name, default) if getter is not None else getattr(config, name, default)


def distributed_settings(config: Any = None, environ: Optional[dict] = None) -> DistributedSettings:
  """Settings from `config.distributed` (a block with enabled / coordinator_address / num_processes /
  process_id / initialization_timeout_s; '' / 0 / -1 mean auto) and the ZOOMJAX_* environment variables
  (which fill fields the config leaves on auto)."""
  env = os.environ if environ is None else environ
  block = _get(config, "distributed")
  enabled = bool(_get(block, "enabled", False)) or env.get(ENV_ENABLE, "").lower() in ("1", "true", "yes")
  address = _get(block, "coordinator_address") or env.get(ENV_COORDINATOR) or None
  num = _get(block, "num_processes")
  num = int(num) if num not in (None, "", 0) else (int(env[ENV_NUM_PROCESSES]) if env.get(ENV_NUM_PROCESSES)
                                                    else None)
  pid = _get(block, "process_id")
  pid = int(pid) if pid not in (None, "", -1) else (int(env[ENV_PROCESS_ID]) if env.get(ENV_PROCESS_ID) else None)
  timeout = int(_get(block, "initialization_timeout_s", 300) or 300)
  if num is not None and num < 1:
    raise UserError(f"distributed.num_processes must be >= 1, got {num}")
  if num is not None and pid is not None and not 0 <= pid < num:
    raise UserError(f"distributed.process_id={pid} is not in 0..{num - 1}")
  return DistributedSettings(enabled, address, num, pid, timeout)


def initialize_from_config(config: Any = None) -> bool:
  """Calls `jax.distributed.initialize` when the config (or environment) asks for it; returns whether it did.

  Must run before anything creates a device (the entry point calls it first). Calling it twice is harmless.
  """
  s = distributed_settings(config)
  if not s.enabled:
    return False
  if jax.distributed.is_initialized():
    return True
  jax.distributed.initialize(coordinator_address=s.coordinator_address, num_processes=s.num_processes,
                             process_id=s.process_id, initialization_timeout=s.initialization_timeout_s)
  return True


def is_primary() -> bool:
  """Process 0 is the one that merges records and writes reports."""
  return jax.process_index() == 0


def barrier(name: str) -> None:
  """Every process waits here until all have arrived (no-op with one process). `name` must be the same on all
  processes and should be unique per barrier (a mismatch raises instead of deadlocking silently)."""
  if jax.process_count() == 1:
    return
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
  multihost_utils.sync_global_devices(name)


def broadcast_from_primary(tree: Any) -> Any:
  """Process 0's values on every process (e.g. a run id or timestamp chosen once)."""
  if jax.process_count() == 1:
    return tree
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
  return jax.tree.map(np.asarray, multihost_utils.broadcast_one_to_all(tree))
