"""The pure, jitted step functions: one optimizer update, and one evaluation batch."""

import math
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax.training import train_state

Batch = dict[str, jax.Array]


class TrainState(train_state.TrainState):
  """Optax train state: step, params, optimizer state, and the model's apply function."""


def token_nll(logits_BxTxV: jax.Array, targets_BxT: jax.Array) -> jax.Array:
  """Negative log-likelihood of each target token, in float32."""
  return optax.softmax_cross_entropy_with_integer_labels(logits_BxTxV.astype(jnp.float32),
                                                         targets_BxT)


def train_step(state: TrainState,
               batch: Batch,
               rng: jax.Array,
               *,
               grad_accum_steps: int = 1,
               schedule: optax.Schedule | None = None) -> tuple[TrainState, dict[str, jax.Array]]:
  """One optimizer update on `batch` (inputs/targets [B, T]), averaging the gradients of
  `grad_accum_steps` equal micro-batches; returns the new state and scalar metrics."""
  dropout_rng = jax.random.fold_in(rng, state.step)

  def loss_fn(params, micro_batch, micro_rng):
    logits_BxTxV = state.apply_fn({"params": params},
                                  micro_batch["inputs"],
                                  deterministic=False,
                                  rngs={"dropout": micro_rng})
    return jnp.mean(token_nll(logits_BxTxV, micro_batch["targets"]))

  grad_fn = jax.value_and_grad(loss_fn)
  if grad_accum_steps == 1:
    loss, grads = grad_fn(state.params, batch, dropout_rng)
  else:
    micro_batches = jax.tree.map(
        lambda x: x.reshape(grad_accum_steps, x.shape[0] // grad_accum_steps, *x.shape[1:]), batch)

    def accumulate(carry, micro):
      micro_batch, index = micro
      loss, grads = grad_fn(state.params, micro_batch, jax.random.fold_in(dropout_rng, index))
      return jax.tree.map(jnp.add, carry, (loss, grads)), None

    zeros = (jnp.zeros((), jnp.float32), jax.tree.map(jnp.zeros_like, state.params))
    (loss, grads), _ = jax.lax.scan(accumulate, zeros,
                                    (micro_batches, jnp.arange(grad_accum_steps)))
    loss, grads = jax.tree.map(lambda x: x / grad_accum_steps, (loss, grads))

  metrics = {"train/loss": loss, "train/grad_norm": optax.tree.norm(grads)}
  if schedule is not None:
    metrics["train/learning_rate"] = schedule(state.step)
  return state.apply_gradients(grads=grads), metrics


def eval_step(params: Any, batch: Batch, token_bytes_V: jax.Array, *,
              apply_fn) -> dict[str, jax.Array]:
  """Sums over one batch: NLL (nats), predicted tokens, and the UTF-8 bytes they stand for."""
  logits_BxTxV = apply_fn({"params": params}, batch["inputs"], deterministic=True)
  weights_BxT = batch["weights"]
  return {
      "nll": jnp.sum(token_nll(logits_BxTxV, batch["targets"]) * weights_BxT),
      "tokens": jnp.sum(weights_BxT),
      "bytes": jnp.sum(token_bytes_V[batch["targets"]] * weights_BxT),
  }


def summarize_eval(sums: dict[str, float]) -> dict[str, float]:
  """Mean loss, perplexity and bits-per-byte (total NLL in bits over the text's UTF-8 bytes)."""
  loss = sums["nll"] / sums["tokens"]
  return {
      "eval/loss": loss,
      "eval/perplexity": math.exp(min(loss, 700.0)),
      "eval/bpb": sums["nll"] / math.log(2) / max(sums["bytes"], 1.0),
  }
