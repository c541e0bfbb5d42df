"""The device mesh, the logical->mesh rule table, and where every array lives on the mesh.

The mesh has three named axes:
  data    replicas: each holds all parameters and a slice of the batch.
  fsdp    ZeRO-3 style: parameters and optimizer state are split over it (gathered per layer
          by XLA when used) and the batch is split over it too.
  tensor  Megatron style: attention heads and MLP hidden units are split over it (column-split
          input projections, row-split output projections).
Model code names axes logically (`embed`, `heads`, `mlp`, `act_batch`, ...); the rule table
(config.mesh.rules) maps each logical name to mesh axes. A dimension that a rule's mesh axes
do not divide evenly (a vocabulary of 72 over 8 devices, say) stays replicated.
"""

import functools
import math
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import numpy as np
from jax.experimental import mesh_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from lm.errors import UserError

MESH_AXES = ("data", "fsdp", "tensor")
BATCH = "act_batch"  # The logical name of the batch dimension of inputs and activations.

Rules = tuple[tuple[str, tuple[str, ...]], ...]


def parse_rules(rules_cfg: Any) -> Rules:
  """config.mesh.rules ({logical name: 'mesh_axis,mesh_axis' or ''}) -> flax rule tuples."""
  rules = []
  for name, value in rules_cfg.items():
    axes = tuple(a.strip() for a in str(value).split(",") if a.strip())
    unknown = [a for a in axes if a not in MESH_AXES]
    if unknown:
      raise UserError(f"config.mesh.rules.{name}={value!r}: unknown mesh axis {unknown[0]!r}; "
                      f"the mesh axes are {', '.join(MESH_AXES)}")
    rules.append((name, axes))
  return tuple(rules)


def mesh_shape(mesh_cfg: Any, num_devices: int, batch_size: int) -> dict[str, int]:
  """Sizes of (data, fsdp, tensor) from config.mesh; one of them may be -1.

  -1 means all remaining devices; for `data`, the most of them the (micro-)batch divides evenly
  over, so a batch of 12 on 8 devices trains on 4 rather than failing.
  """
  sizes = {axis: int(mesh_cfg[axis]) for axis in MESH_AXES}
  for axis, size in sizes.items():
    if size == 0 or size < -1:
      raise UserError(f"config.mesh.{axis}={size}: must be -1 (all remaining devices) or >= 1")
  free = [axis for axis, size in sizes.items() if size == -1]
  if len(free) > 1:
    raise UserError(f"config.mesh: only one axis may be -1, got {', '.join(free)}")
  fixed = math.prod(size for size in sizes.values() if size != -1)
  if num_devices % fixed:
    raise UserError(f"config.mesh: data x fsdp x tensor = {fixed} does not divide the "
                    f"{num_devices} devices")
  if free:
    remaining = num_devices // fixed
    if free[0] == "data":
      per_replica = sizes["fsdp"]
      remaining = max(d for d in range(1, remaining + 1)
                      if remaining % d == 0 and batch_size % (d * per_replica) == 0)
    sizes[free[0]] = remaining
  batch_ways = sizes["data"] * sizes["fsdp"]
  if batch_size % batch_ways:
    raise UserError(f"config.mesh: the (micro-)batch of {batch_size} cannot be split evenly over "
                    f"data x fsdp = {batch_ways} devices")
  return sizes


def make_mesh(mesh_cfg: Any, batch_size: int, devices: Sequence[jax.Device] | None = None) -> Mesh:
  """A (data, fsdp, tensor) mesh, laid out along the physical topology on TPU/GPU."""
  devices = list(jax.devices() if devices is None else devices)
  sizes = mesh_shape(mesh_cfg, len(devices), batch_size)
  used = math.prod(sizes.values())
  if used < len(devices) and jax.process_count() > 1:
    raise UserError(f"config.mesh: {used} of {len(devices)} devices; a multi-process run must use "
                    f"them all")
  shape = tuple(sizes[axis] for axis in MESH_AXES)
  try:
    grid = mesh_utils.create_device_mesh(shape, devices[:used], allow_split_physical_axes=True)
  except (AssertionError, NotImplementedError, ValueError):
    grid = np.array(devices[:used]).reshape(shape)  # Topologies mesh_utils does not know.
  return Mesh(grid, MESH_AXES)


def mesh_size(mesh: Mesh) -> int:
  return math.prod(mesh.devices.shape)


def describe(mesh: Mesh) -> str:
  parts = [f"{axis}={mesh.shape[axis]}" for axis in MESH_AXES if mesh.shape[axis] > 1]
  return " x ".join(parts) if parts else "1 device"


def spec_for(mesh: Mesh, rules: Rules, logical_axes: Sequence[str | None],
             shape: Sequence[int]) -> P:
  """The PartitionSpec of an array with these logical axis names and shape.

  A mesh axis is used at most once per array, and only where it divides the dimension.
  """
  table = dict(rules)
  taken: set[str] = set()
  spec = []
  for name, dim in zip(logical_axes, shape):
    axes = []
    for axis in table.get(name, ()) if name else ():
      ways = math.prod(mesh.shape[a] for a in axes) * mesh.shape[axis]
      if axis not in taken and mesh.shape[axis] > 1 and dim % ways == 0:
        axes.append(axis)
    taken.update(axes)
    spec.append(None if not axes else axes[0] if len(axes) == 1 else tuple(axes))
  return P(*spec)


def param_shardings(mesh: Mesh, rules: Rules, boxed_params: Any) -> Any:
  """NamedShardings for (abstract) parameters boxed with logical axis names by `nn.Partitioned`.

  The result has the structure of the unboxed parameters.
  """

  def sharding(leaf):
    if isinstance(leaf, nn.Partitioned):
      return NamedSharding(mesh, spec_for(mesh, rules, leaf.names, leaf.value.shape))
    return NamedSharding(mesh, P())

  return jax.tree.map(sharding, boxed_params, is_leaf=lambda x: isinstance(x, nn.Partitioned))


def _batch_axes(mesh: Mesh, rules: Rules) -> tuple[str, ...]:
  return tuple(a for a in dict(rules).get(BATCH, ()) if mesh.shape[a] > 1)


def batch_sharding(mesh: Mesh, rules: Rules) -> NamedSharding:
  """Inputs [B, ...]: the batch split over the mesh axes of `act_batch` (data x fsdp)."""
  return NamedSharding(mesh, P(_batch_axes(mesh, rules) or None))


def stacked_batch_sharding(mesh: Mesh, rules: Rules) -> NamedSharding:
  """Several steps' inputs stacked, [S, B, ...]: each step's batch split as batch_sharding's."""
  return NamedSharding(mesh, P(None, _batch_axes(mesh, rules) or None))


def batch_ways(mesh: Mesh, rules: Rules) -> int:
  """Into how many parts the batch is split."""
  return math.prod(mesh.shape[a] for a in _batch_axes(mesh, rules))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def traced_under(mesh: Mesh, rules: Rules, fn: Callable) -> Callable:
  """`fn` traced with the mesh and rule table in scope, so that the model's logical activation
  constraints (`nn.with_logical_constraint`) and mesh-aware kernels take effect."""

  @functools.wraps(fn)
  def wrapped(*args, **kwargs):
    with jax.sharding.use_abstract_mesh(mesh.abstract_mesh), nn.logical_axis_rules(rules):
      return fn(*args, **kwargs)

  return wrapped


def process_rows(sharding: NamedSharding, batch_size: int) -> np.ndarray:
  """Rows of a global [batch_size, ...] batch that this process's devices hold (sorted)."""
  indices = sharding.addressable_devices_indices_map((batch_size,))
  rows = set()
  for index in indices.values():
    rows.update(range(*index[0].indices(batch_size)))
  return np.array(sorted(rows), dtype=np.int64)


def global_batch(local: dict[str, np.ndarray],
                 rows: np.ndarray,
                 batch_size: int,
                 sharding: NamedSharding,
                 batch_axis: int = 0) -> dict[str, jax.Array]:
  """Assembles one global batch from this process's `rows` of it (as `process_rows` gave);
  the rows run along `batch_axis` (1 for several steps' batches stacked on axis 0)."""
  if len(rows) == batch_size:  # This process holds the whole batch (one process, say).
    return jax.device_put(local, sharding)
  position = {int(row): i for i, row in enumerate(rows)}

  def assemble(array: np.ndarray) -> jax.Array:
    shape = array.shape[:batch_axis] + (batch_size,) + array.shape[batch_axis + 1:]

    def shard(index):
      wanted = range(*index[batch_axis].indices(batch_size))
      picked = np.take(array, [position[r] for r in wanted], axis=batch_axis)
      return picked[index[:batch_axis] + (slice(None),) + index[batch_axis + 1:]]

    return jax.make_array_from_callback(shape, sharding, shard)

  return {key: assemble(value) for key, value in local.items()}


def needs_synchronous_steps(devices: Sequence[jax.Device]) -> bool:
  """Whether to wait for each multi-device program before dispatching the next.

  XLA:CPU runs each device's part of a program on a shared pool of executor threads. With
  several programs with collectives queued (say an evaluation step and the next one), queued
  parts can hold every thread while the part an all-reduce waits for gets none: a deadlock,
  seen on this 2-core machine ("Termination timeout for all reduce ... only 1 of them
  arrived"). Waiting costs the overlap of host work with the step: for the nanoGPT CPU recipe
  ~1 ms to sample the next batch and ~3 ms to dispatch the step, of ~45-50 ms per step.
  """
  return devices[0].platform == "cpu" and len(devices) > 1
