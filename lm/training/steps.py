"""The pure, jitted step functions: one optimizer update, and one evaluation batch."""

import functools
import math
from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax
from flax.training import train_state

from lm.models.config import TRANSFER

Batch = dict[str, jax.Array]
# Metrics of train_step that are flags, not scalars to average: whether the step was finite,
# and per parameter group (in `param_groups` order) whether its gradients and update were.
FINITE = "nonfinite/finite"
GROUPS = "nonfinite/groups"


class TrainState(train_state.TrainState):
  """Optax train state: step, params, optimizer state, and the model's apply function."""


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def token_nll(logits_BxTxV: jax.Array,
              targets_BxT: jax.Array,
              label_smoothing: float = 0.0) -> jax.Array:
  """Negative log-likelihood of each target token, in float32 (logits in any float dtype); with
  `label_smoothing` s the cross-entropy against (1 - s) one_hot + s / V instead:
  (1 - s) NLL + s (logsumexp - mean logit).

  The same function as `optax.softmax_cross_entropy_with_integer_labels` on float32 logits,
  with a hand-written gradient: softmax - (1 - s) one_hot - s / V computed straight from the
  logits in their own dtype, one pass over [B, T, V] each way. Differentiating the float32
  formula instead makes XLA keep a float32 copy of the [B, T, V] logits for the backward pass:
  for GPT-2's 50k vocabulary in bfloat16 that copy and its reads were ~9% of a training step on
  an H100 (BENCHMARKS.md); and smoothing by autodiff doubles the softmax passes.
  """
  return _token_nll_forward(logits_BxTxV, targets_BxT, label_smoothing)[0]


def _token_nll_forward(logits_BxTxV, targets_BxT, label_smoothing):
  logits_BxTxV32 = logits_BxTxV.astype(jnp.float32)
  max_BxTx1 = jax.lax.stop_gradient(jnp.max(logits_BxTxV32, axis=-1, keepdims=True))
  logsumexp_BxTx1 = max_BxTx1 + jnp.log(
      jnp.sum(jnp.exp(logits_BxTxV32 - max_BxTx1), axis=-1, keepdims=True))
  target_BxT = jnp.take_along_axis(logits_BxTxV32, targets_BxT[..., None], axis=-1)[..., 0]
  if label_smoothing:
    target_BxT = ((1.0 - label_smoothing) * target_BxT +
                  label_smoothing * jnp.mean(logits_BxTxV32, axis=-1))
  return logsumexp_BxTx1[..., 0] - target_BxT, (logits_BxTxV, targets_BxT, logsumexp_BxTx1)


def _token_nll_backward(label_smoothing, residuals, nll_cotangent_BxT):
  logits_BxTxV, targets_BxT, logsumexp_BxTx1 = residuals
  V = logits_BxTxV.shape[-1]
  probs_BxTxV = jnp.exp(logits_BxTxV.astype(jnp.float32) - logsumexp_BxTx1)
  one_hot_BxTxV = jax.nn.one_hot(targets_BxT, V, dtype=jnp.float32)
  if label_smoothing:
    one_hot_BxTxV = (1.0 - label_smoothing) * one_hot_BxTxV + label_smoothing / V
  grad_BxTxV = (probs_BxTxV - one_hot_BxTxV) * nll_cotangent_BxT[..., None]
  return grad_BxTxV.astype(logits_BxTxV.dtype), None


token_nll.defvjp(_token_nll_forward, _token_nll_backward)


def batch_logits(apply_fn, params: Any, batch: Batch, **apply_kwargs) -> jax.Array:
  """The model's logits ([B, T, V], or [B, C] for a classifier) for a batch's inputs (and its
  positions and segment ids)."""
  return apply_fn({"params": params},
                  batch["inputs"],
                  batch.get("positions"),
                  batch.get("segment_ids"),
                  batch.get("output_positions"),
                  batch.get("token_types"),
                  **apply_kwargs)


# A training loss: (apply_fn, params, batch, rng) -> (per-item loss, {name: scalar metric}).
# The per-item loss ([B] or [B, T]) is weighed by batch['weights'] in `train_step`; the metrics
# (e.g. a component of the loss) are averaged over micro-batches and devices and logged as
# train/<name>. `rng` is the step's dropout key (also for objectives that sample).
LossFn = Callable[[Callable, Any, Batch, jax.Array], tuple[jax.Array, dict[str, jax.Array]]]


def logits_loss(per_item: Callable[[jax.Array, Batch], jax.Array]) -> LossFn:
  """The LossFn of a loss of the model's outputs: `per_item(logits, batch)` on the model applied
  to the batch in training mode (dropout on, drawn from `rng`)."""

  def loss(apply_fn, params, batch, rng):
    logits = batch_logits(apply_fn, params, batch, deterministic=False, rngs={"dropout": rng})
    return per_item(logits, batch), {}

  return loss


def lm_loss(logits_BxTxV: jax.Array, batch: Batch) -> jax.Array:
  """Per-token loss of language modelling (causal or masked): NLL of batch['targets']."""
  return token_nll(logits_BxTxV, batch["targets"])


def classification_loss(logits_BxC: jax.Array,
                        batch: Batch,
                        *,
                        label_smoothing: float = 0.0,
                        class_weights_C: jax.Array | None = None) -> jax.Array:
  """Per-example cross-entropy against labels smoothed by `label_smoothing` (Szegedy et al.
  2016: the target puts 1 - s on the label and s / C on every class), scaled by the weight of
  the example's class."""
  C = logits_BxC.shape[-1]
  targets_BxC = optax.smooth_labels(jax.nn.one_hot(batch["labels"], C), label_smoothing)
  loss_B = optax.softmax_cross_entropy(logits_BxC.astype(jnp.float32), targets_BxC)
  if class_weights_C is not None:
    loss_B = loss_B * class_weights_C[batch["labels"]]
  return loss_B


def train_step(state: TrainState,
               batch: Batch,
               rng: jax.Array,
               controls: dict[str, jax.Array] | None = None,
               *,
               loss_fn: LossFn | None = None,
               grad_accum_steps: int = 1,
               schedule: optax.Schedule | None = None,
               axis_name: str | None = None,
               scaled_tx: Callable[[jax.Array], optax.GradientTransformation] | None = None,
               skip_nonfinite: bool = False) -> tuple[TrainState, dict[str, jax.Array]]:
  """One optimizer update on `batch`; returns the new state and metrics.

  The batch has `inputs` [B, T], what `loss_fn` (a `LossFn`; default: language modelling)
  needs for the per-item loss (`targets` [B, T] for language models, `labels` [B] for
  classifiers), and optionally
  `weights` (loss weight of each item, 0 for padding), `positions` and `segment_ids` (packed
  sequences, or padding as segment 0). The loss is the weighted mean over the whole batch.
  With `grad_accum_steps` = A, the gradients of A micro-batches (rows a, a + A, a + 2A, ...,
  so each device's rows split evenly) are summed inside the step.
  Under `jax.pmap`, `axis_name` names the device axis: the step then sums over devices too.

  `controls` are scalars the host sets per step without a recompilation: `lr_scale`
  multiplies the learning rate (lowered by config.train.on_nonfinite='rollback'; it needs
  `scaled_tx(lr_scale)`, state.tx with its schedule times lr_scale), and `inject_nan`,
  present only with the testing hook config.train.debug_nonfinite_step, makes the step's loss
  and gradients NaN. Besides scalar metrics, the step reports FINITE (loss, gradients and
  updated parameters all finite) and GROUPS (the same, per `param_groups` entry). With
  `skip_nonfinite`, a step that is not FINITE keeps the parameters and the optimizer's
  moments; its step counters still advance, so the schedule stays tied to the step number.
  """
  controls = controls or {}
  loss_fn = loss_fn or logits_loss(lm_loss)
  dropout_rng = jax.random.fold_in(rng, state.step)
  if axis_name is not None:
    dropout_rng = jax.random.fold_in(dropout_rng, jax.lax.axis_index(axis_name))
  weights = batch.get("weights")
  total_weight = (jnp.sum(weights, dtype=jnp.float32)
                  if weights is not None else jnp.float32(batch["targets"].size))
  if axis_name is not None:
    total_weight = jax.lax.psum(total_weight, axis_name)
  total_weight = jnp.maximum(total_weight, 1e-9)  # An all-padding batch has loss 0, not NaN.

  def mean_loss(params, micro_batch, micro_rng):
    loss, aux = loss_fn(state.apply_fn, params, micro_batch, micro_rng)
    if "weights" in micro_batch:
      loss = loss * micro_batch["weights"]
    if "inject_nan" in controls:  # Testing hook (debug_nonfinite_step); not traced when off.
      loss = loss * jnp.where(controls["inject_nan"], jnp.nan, 1.0)
    return jnp.sum(loss) / total_weight, aux

  value_and_grad = jax.value_and_grad(mean_loss, has_aux=True)
  grad_fn = lambda *args: _flat_aux(value_and_grad(*args))
  if grad_accum_steps == 1:
    loss, grads, aux = grad_fn(state.params, batch, dropout_rng)
  else:
    A = grad_accum_steps
    micro_batches = jax.tree.map(
        lambda x: x.reshape(x.shape[0] // A, A, *x.shape[1:]).swapaxes(0, 1), batch)

    def accumulate(carry, micro):
      micro_batch, index = micro
      loss, grads, aux = grad_fn(state.params, micro_batch, jax.random.fold_in(dropout_rng, index))
      return jax.tree.map(jnp.add, carry, (loss, grads)), aux

    zeros = (jnp.zeros((), jnp.float32), jax.tree.map(jnp.zeros_like, state.params))
    (loss, grads), aux_A = jax.lax.scan(accumulate, zeros, (micro_batches, jnp.arange(A)))
    aux = jax.tree.map(lambda x: jnp.mean(x, axis=0), aux_A)
  if axis_name is not None:
    loss, grads = jax.lax.psum((loss, grads), axis_name)
    aux = jax.lax.pmean(aux, axis_name)

  lr_scale = controls.get("lr_scale")
  if lr_scale is not None and scaled_tx is None:
    raise ValueError("controls['lr_scale'] needs train_step's scaled_tx")
  new_state = _apply_gradients(state, grads, scaled_tx(lr_scale) if lr_scale is not None else None)
  finite_G = jnp.stack([
      _all_finite(grads[group]) & _all_finite(new_state.params[group])
      for group in param_groups(grads)
  ])
  finite = jnp.isfinite(loss) & jnp.all(finite_G)
  if skip_nonfinite:
    keep = lambda new, old: jnp.where(finite, new, old) if _is_float(new) else new
    new_state = new_state.replace(params=jax.tree.map(keep, new_state.params, state.params),
                                  opt_state=jax.tree.map(keep, new_state.opt_state,
                                                         state.opt_state))
  metrics = {"train/loss": loss, "train/grad_norm": optax.tree.norm(grads)}
  metrics.update({f"train/{name}": value for name, value in aux.items()})
  if schedule is not None:
    rate = schedule(state.step)
    metrics["train/learning_rate"] = rate if lr_scale is None else rate * lr_scale
  metrics.update({FINITE: finite, GROUPS: finite_G})
  return new_state, metrics


def train_steps(state: TrainState, batches: Batch, rng: jax.Array,
                controls: dict[str, jax.Array], *, step_fn) -> tuple[TrainState, dict]:
  """Several consecutive `step_fn` updates (train_step with its options) in one program
  (`lax.scan`), which saves the host a dispatch per step: `batches` and `controls` hold each
  step's on a leading axis, and the metrics come back stacked the same way."""

  def one_step(state, inputs):
    batch, step_controls = inputs
    return step_fn(state, batch, rng, step_controls)

  return jax.lax.scan(one_step, state, (batches, controls))


def _flat_aux(value_and_grads):
  """((loss, aux), grads) -> (loss, grads, aux)."""
  (loss, aux), grads = value_and_grads
  return loss, grads, aux


def param_groups(params: Any) -> list[str]:
  """The top-level parameter modules (token_embed, block_0, ..., final_norm), in the order of
  train_step's GROUPS flags."""
  return sorted(params)


def _apply_gradients(state: TrainState, grads: Any,
                     tx: optax.GradientTransformation | None) -> TrainState:
  """TrainState.apply_gradients, with `tx` (same state, another learning rate) if given.

  The scale goes into the schedule, not onto the updates: a scale of 1 then changes no bit
  (scaled updates would round before the parameter add that XLA fuses into one FMA).
  """
  if tx is None:
    return state.apply_gradients(grads=grads)
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  return state.replace(step=state.step + 1,
                       params=optax.apply_updates(state.params, updates),
                       opt_state=opt_state)


def _all_finite(tree: Any) -> jax.Array:
  leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]
  return jnp.all(jnp.stack(leaves)) if leaves else jnp.bool_(True)


def _is_float(x: jax.Array) -> bool:
  return jnp.issubdtype(x.dtype, jnp.inexact)


def eval_step(params: Any,
              batch: Batch,
              token_bytes_V: jax.Array,
              *,
              apply_fn,
              axis_name: str | None = None) -> dict[str, jax.Array]:
  """Sums over one batch: NLL (nats), predicted tokens, and the UTF-8 bytes they stand for."""
  logits_BxTxV = batch_logits(apply_fn, params, batch, deterministic=True)
  weights_BxT = batch["weights"]
  sums = {
      "nll": jnp.sum(token_nll(logits_BxTxV, batch["targets"]) * weights_BxT),
      "tokens": jnp.sum(weights_BxT),
      "bytes": jnp.sum(token_bytes_V[batch["targets"]] * weights_BxT),
  }
  return sums if axis_name is None else jax.lax.psum(sums, axis_name)


def predict_step(params: Any, batch: Batch, *, apply_fn, logits: bool = False,
                 pooled: bool = False) -> jax.Array:
  """Class probabilities (with `logits`, the logits) of one batch (float32): [B, C] of a
  classifier, [B, T, C] of a token classifier; with `pooled`, a classifier's logits and its
  pooled vector (`transferred`) side by side, [B, C + D]."""
  if pooled:
    logits_BxC, pooled_BxD = transferred(apply_fn, params, batch, deterministic=True)
    return jnp.concatenate([logits_BxC, pooled_BxD], axis=-1).astype(jnp.float32)
  logits_BxC = batch_logits(apply_fn, params, batch, deterministic=True).astype(jnp.float32)
  return logits_BxC if logits else jax.nn.softmax(logits_BxC, axis=-1)


def transferred(apply_fn, params: Any, batch: Batch, **apply_kwargs) -> tuple[jax.Array, jax.Array]:
  """A classifier's logits [B, C] and the pooled vector it sows for hidden-state transfer
  [B, W] (lm/models/config.py TRANSFER), from one forward pass."""
  logits_BxC, state = batch_logits(apply_fn, params, batch, mutable=["intermediates"],
                                   **apply_kwargs)
  return logits_BxC, state["intermediates"][TRANSFER][0]


def summarize_eval(sums: dict[str, float]) -> dict[str, float]:
  """Mean loss, perplexity and bits-per-byte (total NLL in bits over the text's UTF-8 bytes)."""
  loss = sums["nll"] / sums["tokens"]
  return {
      "eval/loss": loss,
      "eval/perplexity": math.exp(min(loss, 700.0)),
      "eval/bpb": sums["nll"] / math.log(2) / max(sums["bytes"], 1.0),
  }
