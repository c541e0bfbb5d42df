"""The device mesh and how arrays are laid out on it (data parallel for now).

Parameters and optimizer state are replicated; every batch is split along its first axis over
the `data` mesh axis. On a CPU host, `lm.runtime` exposes one XLA device per core, so the same
data-parallel program keeps both cores of a laptop busy without threading tiny matmuls.
"""

import math
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from lm.errors import UserError


def data_parallel_size(requested: int, batch_size: int, num_devices: int) -> int:
  """config.mesh.data, with -1 meaning the most devices the (micro-)batch divides evenly over."""
  if requested == -1:
    return max(d for d in range(1, num_devices + 1) if batch_size % d == 0 and num_devices % d == 0)
  if requested < 1 or requested > num_devices:
    raise UserError(
        f"config.mesh.data={requested}: must be -1 or between 1 and the {num_devices} devices")
  if batch_size % requested:
    raise UserError(
        f"config.mesh.data={requested} does not divide the (micro-)batch of {batch_size}")
  return requested


def make_mesh(mesh_cfg: Any, batch_size: int) -> Mesh:
  devices = jax.devices()
  size = data_parallel_size(mesh_cfg.data, batch_size, len(devices))
  return Mesh(np.array(devices[:size]), ("data",))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def batch_sharding(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P("data"))


def mesh_size(mesh: Mesh) -> int:
  return math.prod(mesh.devices.shape)


def needs_synchronous_steps(mesh: Mesh) -> bool:
  """Whether to wait for each multi-device program before dispatching the next.

  XLA:CPU runs each device's part of a program on a shared pool of executor threads. With
  several programs with collectives queued (say an evaluation step and the next one), queued
  parts can hold every thread while the part an all-reduce waits for gets none: a deadlock,
  seen on this 2-core machine ("Termination timeout for all reduce ... only 1 of them
  arrived"). Waiting costs only the overlap of host work (preparing the next batch, well under
  a millisecond) with the step.
  """
  return mesh.devices.flat[0].platform == "cpu" and mesh_size(mesh) > 1
