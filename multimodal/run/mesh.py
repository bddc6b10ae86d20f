"""Data parallelism the modern way: one `jax.jit` over a device `Mesh` with a `data` axis.

Parameters and optimizer state are replicated (`P()`), batches are split over
`data` (`P('data')`); XLA inserts the gradient all-reduce that `pmap` +
`lax.pmean` used to spell out, and BatchNorm statistics are computed over the
global batch. Multi-host: call `init_distributed()` first on every host; each
host then feeds only its own slice of every global batch.
"""

from __future__ import annotations

import os

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P


def init_distributed() -> None:
    """Join a multi-host run when the launcher says so.

    Set on every host: JAX_COORDINATOR_ADDRESS (host:port of process 0), JAX_NUM_PROCESSES
    and JAX_PROCESS_ID (docs/multihost.md); without the last two, JAX detects them on the
    clusters it knows (SLURM, Open MPI, Cloud TPU...). Nothing happens without an address.
    """
    address = os.environ.get("JAX_COORDINATOR_ADDRESS")
    if not address or jax.distributed.is_initialized():
        return
    count, index = os.environ.get("JAX_NUM_PROCESSES"), os.environ.get("JAX_PROCESS_ID")
    jax.distributed.initialize(address, num_processes=int(count) if count else None,
                               process_id=int(index) if index else None)


def make_mesh(num_devices: int | None = None) -> Mesh:
    devices = jax.devices()[: num_devices or len(jax.devices())]
    return Mesh(np.array(devices), ("data",))


def data_sharding(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P("data"))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def shard_batch(batch: dict, mesh: Mesh) -> dict:
    """Host-local numpy batch -> global arrays split over `data` (strings stay on host)."""
    sharding = data_sharding(mesh)
    return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v))
            for k, v in batch.items() if k != "image_id"}
