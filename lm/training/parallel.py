"""Training over many devices: one `jax.jit` program over the device mesh, or `jax.pmap`.

Both layouts give the trainer the same interface: create the train state in place, run the
train and evaluation steps, turn this process's rows of a global batch into a device batch,
and convert the state to and from the checkpointed form, which does not depend on the layout
(a run checkpointed under one layout resumes under another).
"""

import functools
from typing import Any

import flax.jax_utils
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from lm.errors import UserError
from lm.training import init_from, optimizer, partitioning, steps

Batch = dict[str, np.ndarray]
# The train step's controls (steps.train_step) when the trainer sets none.
DEFAULT_CONTROLS = {"lr_scale": np.float32(1.0)}


def make_parallel(model: nn.Module,
                  config: Any,
                  seq_len: int,
                  loss_fn: steps.LossFn | None = None) -> "MeshParallel | PmapParallel":
  """The layout config.mesh asks for, checked against the devices and batch sizes; its train
  step minimizes `loss_fn` (a `steps.LossFn`; default: language modelling)."""
  micro_batch = config.train.batch_size // config.train.grad_accum_steps
  layout = PmapParallel if config.mesh.use_pmap else MeshParallel
  return layout(model, config, seq_len, micro_batch, loss_fn)


class _Layout:
  """What both layouts share: the model, the optimizer and the abstract train state."""

  def __init__(self, model: nn.Module, config: Any, seq_len: int, loss_fn):
    self.model = model
    self.train_cfg = train_cfg = config.train
    self.seq_len = seq_len
    self.schedule = optimizer.learning_rate_schedule(train_cfg)
    self.boxed_params = jax.eval_shape(self._init_params, jax.random.PRNGKey(0))
    # One optimizer object, so that every state built from it has the same tree structure.
    # The model family's layer groups, which fine-tuning acts on (None: it states none).
    self.groups = model.layer_groups() if hasattr(model, "layer_groups") else None
    optimizer_args = (train_cfg, nn.meta.unbox(self.boxed_params), config.finetune, self.groups,
                      init_from.new_tokens(config, model.config.vocab_size))
    self.tx, self.trainable = optimizer.make_optimizer(*optimizer_args)
    # The same optimizer (same state) with its learning rate scaled inside the step.
    scaled_tx = lambda scale: optimizer.make_optimizer(*optimizer_args, lr_scale=scale)[0]
    self.step_fn = functools.partial(steps.train_step,
                                     loss_fn=loss_fn,
                                     grad_accum_steps=train_cfg.grad_accum_steps,
                                     schedule=self.schedule,
                                     scaled_tx=scaled_tx,
                                     skip_nonfinite=train_cfg.on_nonfinite == "skip")
    self.steps_fn = functools.partial(steps.train_steps, step_fn=self.step_fn)

  def _init_params(self, rng: jax.Array) -> Any:
    """Parameters boxed with their logical axis names (`nn.Partitioned`)."""
    return self.model.init(rng, jnp.zeros((1, self.seq_len), jnp.int32))["params"]

  def _init_state(self, rng: jax.Array) -> steps.TrainState:
    return steps.TrainState.create(apply_fn=self.model.apply,
                                   params=nn.meta.unbox(self._init_params(rng)),
                                   tx=self.tx)

  def predict_step(self, params, batch):
    """Class probabilities of a device batch: [B, C] (classifier) or [B, T, C] (tagger)."""
    return self.per_row(steps.predict_step)(params, batch)

  def train_on(self,
               state: steps.TrainState,
               local: Batch,
               rng: jax.Array,
               controls: dict[str, np.ndarray] | None = None
              ) -> tuple[steps.TrainState, dict[str, jax.Array]]:
    """One train step on this process's rows of a global batch of config.train.batch_size,
    with `controls` (steps.train_step; default: the learning rate unscaled); on multi-device
    CPU it waits for the step (partitioning.needs_synchronous_steps)."""
    batch = self.put_batch(local, self.train_cfg.batch_size)
    state, metrics = self.train_step(state, batch, rng, controls or DEFAULT_CONTROLS)
    if self.synchronous:
      jax.block_until_ready(metrics)
    return state, metrics

  def train_on_batches(self,
                       state: steps.TrainState,
                       locals_: list[Batch],
                       rng: jax.Array,
                       controls: list[dict[str, np.ndarray]]
                      ) -> tuple[steps.TrainState, dict[str, jax.Array]]:
    """Consecutive train steps on batches of one shape, with their controls, in one call
    (config.train.steps_per_call): `train_on` for one batch; for several, one program
    (steps.train_steps) whose metrics are stacked, [steps]."""
    if len(locals_) == 1:
      return self.train_on(state, locals_[0], rng, controls[0])
    stacked = {key: np.stack([local[key] for local in locals_]) for key in locals_[0]}
    batch = self.put_batches(stacked, self.train_cfg.batch_size)
    stacked_controls = {key: np.stack([c[key] for c in controls]) for key in controls[0]}
    state, metrics = self.train_steps(state, batch, rng, stacked_controls)
    if self.synchronous:
      jax.block_until_ready(metrics)
    return state, metrics

  def _check_eval_batch(self, ways: int) -> None:
    if self.train_cfg.eval_batch_size % ways:
      raise UserError(f"config.train.eval_batch_size={self.train_cfg.eval_batch_size} must be "
                      f"divisible by the {ways} devices that split the batch")


class MeshParallel(_Layout):
  """`jax.jit` over a (data, fsdp, tensor) mesh with explicit input and output shardings.

  Parameters and optimizer state are created directly in their shards (from `eval_shape`;
  nothing is materialized whole first) and stay sharded; the model's logical activation
  constraints apply inside the steps.
  """

  def __init__(self, model, config, seq_len, micro_batch, loss_fn):
    super().__init__(model, config, seq_len, loss_fn)
    mesh_cfg = config.mesh
    self.mesh = partitioning.make_mesh(mesh_cfg, micro_batch)
    self.rules = partitioning.parse_rules(mesh_cfg.rules)
    self._check_heads(model.config)
    mesh, rules = self.mesh, self.rules
    self.batch_sharding = partitioning.batch_sharding(mesh, rules)
    self._rows: dict[int, np.ndarray] = {}
    self._check_eval_batch(partitioning.batch_ways(mesh, rules))
    replicated = partitioning.replicated(mesh)
    param_shardings = partitioning.param_shardings(mesh, rules, self.boxed_params)
    abstract = jax.eval_shape(self._init_state, jax.random.PRNGKey(0))
    # Optimizer state shaped like its parameter is sharded like it; other per-parameter state
    # (Adafactor's factored row and column moments) is replicated.
    opt_shardings = optax.tree_map_params(
        self.tx,
        lambda leaf, sharding, param: sharding if leaf.shape == param.shape else replicated,
        abstract.opt_state,
        param_shardings,
        abstract.params,
        transform_non_params=lambda _: replicated)
    self.state_shardings = abstract.replace(step=replicated,
                                            params=param_shardings,
                                            opt_state=opt_shardings)
    self.abstract_state = jax.tree.map(
        lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract,
        self.state_shardings)
    self.synchronous = partitioning.needs_synchronous_steps(list(mesh.devices.flat))
    self.train_step = jax.jit(partitioning.traced_under(mesh, rules, self.step_fn),
                              in_shardings=(self.state_shardings, self.batch_sharding, replicated,
                                            replicated),
                              out_shardings=(self.state_shardings, replicated),
                              donate_argnums=0)
    self.stacked_batch_sharding = partitioning.stacked_batch_sharding(mesh, rules)
    self.train_steps = jax.jit(partitioning.traced_under(mesh, rules, self.steps_fn),
                               in_shardings=(self.state_shardings, self.stacked_batch_sharding,
                                             replicated, replicated),
                               out_shardings=(self.state_shardings, replicated),
                               donate_argnums=0)
    self.eval_step = jax.jit(
        partitioning.traced_under(mesh, rules,
                                  functools.partial(steps.eval_step, apply_fn=model.apply)),
        in_shardings=(self.state_shardings.params, self.batch_sharding, replicated),
        out_shardings=replicated)
    self._replicated = replicated
    self._per_row: dict[Any, Any] = {}

  def per_row(self, fn):
    """`fn(params, batch, *, apply_fn)` -> outputs with a leading batch axis (a task's own
    evaluation or prediction step), jitted over the mesh once per `fn`; the returned callable
    takes params and a device batch (`put_batch`) and returns the whole global batch's
    outputs, replicated."""
    if fn not in self._per_row:
      step = functools.partial(fn, apply_fn=self.model.apply)
      self._per_row[fn] = jax.jit(partitioning.traced_under(self.mesh, self.rules, step),
                                  in_shardings=(self.state_shardings.params,
                                                self.batch_sharding),
                                  out_shardings=self._replicated)
    return self._per_row[fn]

  def _check_heads(self, model_cfg) -> None:
    tensor = self.mesh.shape["tensor"]
    if model_cfg.num_heads % tensor:
      raise UserError(f"config.mesh.tensor={tensor} does not divide config.model.num_heads="
                      f"{model_cfg.num_heads}; tensor parallelism splits whole heads")

  def describe(self) -> str:
    return f"{partitioning.describe(self.mesh)} (jax.jit over a device mesh)"

  @property
  def num_devices(self) -> int:
    return partitioning.mesh_size(self.mesh)

  def create_state(self, rng: jax.Array) -> steps.TrainState:
    return jax.jit(self._init_state, out_shardings=self.state_shardings)(rng)

  def rows(self, batch_size: int) -> np.ndarray:
    """The rows of a global batch of `batch_size` that this process reads."""
    if batch_size not in self._rows:
      self._rows[batch_size] = partitioning.process_rows(self.batch_sharding, batch_size)
    return self._rows[batch_size]

  def put_batch(self, local: Batch, batch_size: int) -> dict[str, jax.Array]:
    return partitioning.global_batch(local, self.rows(batch_size), batch_size, self.batch_sharding)

  def put_batches(self, stacked: Batch, batch_size: int) -> dict[str, jax.Array]:
    """Several steps' batches, stacked on axis 0, as one array each (rows on axis 1)."""
    return partitioning.global_batch(stacked, self.rows(batch_size), batch_size,
                                     self.stacked_batch_sharding, batch_axis=1)

  def lower_train_step(self, state, batch, rng) -> jax.stages.Lowered:
    """The train step lowered for these arguments (for its compiled cost and memory)."""
    return self.train_step.lower(state, batch, rng, DEFAULT_CONTROLS)

  def to_checkpoint(self, state: steps.TrainState) -> steps.TrainState:
    return state

  def from_checkpoint(self, state: steps.TrainState) -> steps.TrainState:
    return state

  def host_params(self, params: Any) -> Any:
    """The train state's `params`, whole, on the host."""
    return jax.device_get(params)

  def with_params(self, state: steps.TrainState, params: Any) -> steps.TrainState:
    """`state` with host `params` (same tree) placed in its shards."""
    return state.replace(params=jax.device_put(params, self.state_shardings.params))


class PmapParallel(_Layout):
  """Data parallel under `jax.pmap` (config.mesh.use_pmap): one replica of the state per
  device, gradients summed with `lax.psum`. Same results as the jit path; one host only."""

  AXIS = "devices"

  def __init__(self, model, config, seq_len, micro_batch, loss_fn):
    super().__init__(model, config, seq_len, loss_fn)
    mesh_cfg = config.mesh
    if jax.process_count() > 1:
      raise UserError("config.mesh.use_pmap runs on one host; multi-host runs use the jit path "
                      "(config.mesh.use_pmap=False)")
    if mesh_cfg.fsdp != 1 or mesh_cfg.tensor != 1:
      raise UserError("config.mesh.use_pmap is data parallel only: set config.mesh.fsdp=1 and "
                      "config.mesh.tensor=1, or use the jit path for sharded layouts")
    sizes = partitioning.mesh_shape(mesh_cfg, jax.local_device_count(), micro_batch)
    self.devices = jax.local_devices()[:sizes["data"]]
    self._check_eval_batch(len(self.devices))
    self.abstract_state = jax.eval_shape(self._init_state, jax.random.PRNGKey(0))
    self.synchronous = partitioning.needs_synchronous_steps(self.devices)
    train_step = functools.partial(self.step_fn, axis_name=self.AXIS)
    self._train_step = jax.pmap(train_step,
                                axis_name=self.AXIS,
                                in_axes=(0, 0, None, None),
                                devices=self.devices,
                                donate_argnums=0)
    self._train_steps = jax.pmap(functools.partial(steps.train_steps, step_fn=train_step),
                                 axis_name=self.AXIS,
                                 in_axes=(0, 0, None, None),
                                 devices=self.devices,
                                 donate_argnums=0)
    eval_step = functools.partial(steps.eval_step, apply_fn=model.apply, axis_name=self.AXIS)
    self._eval_step = jax.pmap(eval_step,
                               axis_name=self.AXIS,
                               in_axes=(0, 0, None),
                               devices=self.devices)
    self._per_row: dict[Any, Any] = {}

  def describe(self) -> str:
    return f"data={len(self.devices)} (jax.pmap)"

  @property
  def num_devices(self) -> int:
    return len(self.devices)

  def create_state(self, rng: jax.Array) -> steps.TrainState:
    return self.from_checkpoint(jax.jit(self._init_state)(rng))

  def rows(self, batch_size: int) -> np.ndarray:
    return np.arange(batch_size)

  def put_batch(self, local: Batch, batch_size: int) -> Batch:
    del batch_size
    n = len(self.devices)
    return {k: v.reshape(n, v.shape[0] // n, *v.shape[1:]) for k, v in local.items()}

  def put_batches(self, stacked: Batch, batch_size: int) -> Batch:
    """[steps, batch, ...] -> [devices, steps, batch / devices, ...]."""
    del batch_size
    n = len(self.devices)
    return {
        k: v.reshape(v.shape[0], n, v.shape[1] // n, *v.shape[2:]).swapaxes(0, 1)
        for k, v in stacked.items()
    }

  def train_step(self, state, batch, rng, controls):
    state, metrics = self._train_step(state, batch, rng, controls)
    return state, jax.tree.map(lambda x: x[0], metrics)

  def train_steps(self, state, batches, rng, controls):
    state, metrics = self._train_steps(state, batches, rng, controls)
    return state, jax.tree.map(lambda x: x[0], metrics)

  def eval_step(self, params, batch, token_bytes):
    return jax.tree.map(lambda x: x[0], self._eval_step(params, batch, token_bytes))

  def per_row(self, fn):
    """`fn(params, batch, *, apply_fn)` -> outputs with a leading batch axis, under jax.pmap
    (compiled once per `fn`); returns the outputs of the whole batch, [devices x rows, ...]."""
    if fn not in self._per_row:
      step = jax.pmap(functools.partial(fn, apply_fn=self.model.apply), devices=self.devices)
      merge = lambda x: x.reshape(-1, *x.shape[2:])  # [devices, rows, ...] -> [batch, ...].
      self._per_row[fn] = lambda params, batch: jax.tree.map(merge, step(params, batch))
    return self._per_row[fn]

  def lower_train_step(self, state, batch, rng) -> jax.stages.Lowered:
    return self._train_step.lower(state, batch, rng, DEFAULT_CONTROLS)

  def to_checkpoint(self, state: steps.TrainState) -> steps.TrainState:
    return flax.jax_utils.unreplicate(state)

  def from_checkpoint(self, state: steps.TrainState) -> steps.TrainState:
    # Laid out as the steps' own outputs are (a mesh axis named after the pmap axis); any
    # other layout costs a second compilation of the train step.
    return flax.jax_utils.replicate(state, self.devices, axis_name=self.AXIS)

  def host_params(self, params: Any) -> Any:
    """The train state's `params` (one replica), on the host."""
    return jax.device_get(jax.tree.map(lambda x: x[0], params))

  def with_params(self, state: steps.TrainState, params: Any) -> steps.TrainState:
    return self.from_checkpoint(self.to_checkpoint(state).replace(params=params))
