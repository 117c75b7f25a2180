"""Data parallelism with JAX's own machinery: a device mesh with a ``data`` axis.

Batches are sharded along ``data``; parameters and optimizer states are replicated. The
networks are small (the t4_128 generator and discriminator hold ~45M parameters, ~0.5 GB with
Adam's moments), so a full copy fits on every device, and sharding them (FSDP) would only add
all-gathers to every step; the gradients are all-reduced over ``data`` either way. One jitted
step runs on 1 or N devices unchanged: GSPMD inserts the collectives, and the batch mean inside
BatchNorm is a mean over the global, sharded batch, so statistics match a single-device run.

Several hosts join with ``jax.distributed.initialize()``; each host's input pipeline reads its
own rows of every global batch and ``jax.make_array_from_process_local_data`` assembles them.
"""

from __future__ import annotations

import collections
import os
from collections.abc import Iterable, Iterator
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from colorjax.config import ConfigError, ParallelConfig

DATA_AXIS = "data"
COORDINATOR_ENV = ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID")


def initialize_distributed(mode: str) -> bool:
    """Join a multi-host run. ``auto`` joins when the JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES
    and JAX_PROCESS_ID variables are set (or a cluster JAX detects itself, with ``on``)."""
    if mode not in ("auto", "on", "off"):
        raise ConfigError(f"parallel.distributed must be auto, on or off, got {mode!r}")
    if mode == "off" or (mode == "auto" and not all(k in os.environ for k in COORDINATOR_ENV)):
        return False
    if jax.distributed.is_initialized():
        return True
    if all(k in os.environ for k in COORDINATOR_ENV):
        jax.distributed.initialize(
            coordinator_address=os.environ["JAX_COORDINATOR_ADDRESS"],
            num_processes=int(os.environ["JAX_NUM_PROCESSES"]),
            process_id=int(os.environ["JAX_PROCESS_ID"]),
        )
    else:
        jax.distributed.initialize()
    return True


def make_mesh(config: ParallelConfig) -> Mesh:
    """A 1-D mesh over ``parallel.data`` devices (-1 = all devices of all hosts).

    Devices are ordered by process, each process giving the same number of its own devices, so
    process ``p`` holds rows ``[p * b, (p + 1) * b)`` of the global batch: the rows its input
    pipeline reads (``data.build_pipeline``).
    """
    devices = jax.devices()
    count = len(devices) if config.data == -1 else config.data
    if not 1 <= count <= len(devices):
        raise ConfigError(f"parallel.data={config.data} but {len(devices)} devices are visible")
    processes = jax.process_count()
    if count % processes:
        raise ConfigError(
            f"parallel.data={config.data} does not divide by the {processes} processes; "
            "every process needs the same number of devices on the mesh"
        )
    per_process = count // processes
    chosen = [d for p in range(processes) for d in _devices_of(devices, p)[:per_process]]
    return Mesh(np.asarray(chosen), (DATA_AXIS,))


def _devices_of(devices: list[jax.Device], process: int) -> list[jax.Device]:
    return sorted((d for d in devices if d.process_index == process), key=lambda d: d.id)


def check_batch_size(batch_size: int, mesh: Mesh) -> None:
    """The global batch must split evenly over the data axis and over the hosts."""
    devices = mesh.shape[DATA_AXIS]
    if batch_size % devices:
        raise ConfigError(
            f"data.batch_size={batch_size} does not divide by the {devices} "
            f"devices of the mesh; use a multiple of {devices}"
        )
    if batch_size % jax.process_count():
        raise ConfigError(
            f"data.batch_size={batch_size} does not divide by the {jax.process_count()} hosts"
        )


def replicated(mesh: Mesh) -> NamedSharding:
    """Every device holds the whole array."""
    return NamedSharding(mesh, PartitionSpec())


def batch_sharded(mesh: Mesh) -> NamedSharding:
    """The leading (batch) axis is split over the data axis."""
    return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Place ``tree`` on every device of ``mesh``."""
    return jax.device_put(tree, replicated(mesh))


def global_batch(local: dict[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
    """This host's slice of the batch -> the global batch, sharded over the data axis."""
    sharding = batch_sharded(mesh)
    return {k: jax.make_array_from_process_local_data(sharding, v) for k, v in local.items()}


def device_batches(
    batches: Iterable[dict[str, np.ndarray]], mesh: Mesh, ahead: int = 2
) -> Iterator[dict[str, jax.Array]]:
    """Global device batches, transferred ``ahead`` steps before they are needed."""
    queue: collections.deque = collections.deque()
    for local in batches:
        queue.append(global_batch(local, mesh))
        if len(queue) > ahead:
            yield queue.popleft()
    while queue:
        yield queue.popleft()


def describe(mesh: Mesh) -> dict[str, Any]:
    """Mesh facts for logs and benchmark output."""
    return {
        "mesh": dict(mesh.shape),
        "devices": mesh.size,
        "processes": jax.process_count(),
        "local_devices": jax.local_device_count(),
        "backend": jax.default_backend(),
        "device_kind": jax.devices()[0].device_kind,
    }
