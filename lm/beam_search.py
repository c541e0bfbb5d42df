"""Beam search over any autoregressive model state, batched and jitted; and its use with the
decoder's KV cache (`beam_search_tokens`).

`beam_search` keeps, for every batch row, the `beam_size` best unfinished hypotheses ("alive",
by log-probability) and the `beam_size` best finished ones (ended by EOS, by length-normalized
score). Each step extends every alive beam by every token and keeps the 2 x beam_size best
extensions: those ending in EOS among the beam_size best join the finished set (so that one
beam is greedy decoding, as in transformers), and the best others go on. Scores are
normalized by the GNMT length penalty ((5 + length) / 6) ** alpha (Wu et al. 2016; T5 and
Marian use it), length counting the new tokens with the EOS. The search stops when no alive
beam can still beat the worst finished one (early stopping) or after `max_new_tokens` steps;
then beams that reached the limit without EOS compete with the finished ones as they are.

Shape letters: B batch rows, K beams, N = B * K model rows (row b's beams are rows b*K ..
b*K + K - 1), V vocabulary, T new tokens.
"""

import functools
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from lm.errors import UserError
from lm.models.config import ModelConfig
from lm import sampling

# A log-probability no hypothesis reaches: empty beam slots. Finite, so arithmetic stays finite.
_NEG = -1e9


def log_probs(logits_NxV: jax.Array) -> jax.Array:
  """log_softmax in float32, written out: on XLA:CPU `jax.nn.log_softmax` of a [128, 58101]
  batch took twice as long (116 vs 59 ms with the vocabulary matmul before it), most of a beam
  search step over a large vocabulary."""
  logits_NxV = logits_NxV.astype(jnp.float32)
  max_Nx1 = jnp.max(logits_NxV, axis=-1, keepdims=True)
  return logits_NxV - (max_Nx1 + jnp.log(jnp.sum(jnp.exp(logits_NxV - max_Nx1), axis=-1,
                                                 keepdims=True)))


def length_normalizer(length: jax.Array, alpha: float) -> jax.Array:
  """GNMT's length penalty ((5 + length) / 6) ** alpha; scores are log-probability / this."""
  return ((5.0 + length) / 6.0)**alpha


def beam_search(step: Callable[[Any, jax.Array, jax.Array], tuple[jax.Array, Any]],
                reorder: Callable[[Any, jax.Array], Any], state: Any, first_logprobs_BxV: jax.Array,
                *, beam_size: int, max_new_tokens: int, eos_id: int,
                length_penalty: float) -> tuple[jax.Array, jax.Array, jax.Array]:
  """The `beam_size` best continuations of every batch row, best first.

  Args:
    step: `step(state, tokens_N, t) -> (logprobs_NxV, state)` feeds new token t of every model
      row and returns the log-probabilities of the next one.
    reorder: `reorder(state, rows_N) -> state` with model row n taking row rows_N[n]'s state.
    state: the model state for N rows after the prompt (each batch row's state repeated K times).
    first_logprobs_BxV: log-probabilities of the first new token of each batch row.
    beam_size, max_new_tokens, eos_id, length_penalty: K, T, the end token, and alpha.

  Returns:
    tokens [B, K, T] int32 (a finished beam's EOS included, zeros after it), lengths [B, K]
    (new tokens, EOS included) and scores [B, K] (length-normalized log-probabilities).
  """
  B, V = first_logprobs_BxV.shape
  K, T = beam_size, max_new_tokens
  normalize = lambda logp, length: logp / length_normalizer(length, length_penalty)
  take = lambda x_BxJx, index_BxI: jnp.take_along_axis(
      x_BxJx, index_BxI.reshape(index_BxI.shape + (1,) * (x_BxJx.ndim - 2)), axis=1)
  alive = dict(tokens=jnp.zeros((B, K, T), jnp.int32),
               logp=jnp.tile(jnp.where(jnp.arange(K) == 0, 0.0, _NEG), (B, 1)))
  finished = dict(tokens=jnp.zeros((B, K, T), jnp.int32),
                  score=jnp.full((B, K), _NEG),
                  length=jnp.zeros((B, K), jnp.int32))
  logprobs_BxKxV = jnp.broadcast_to(first_logprobs_BxV[:, None].astype(jnp.float32), (B, K, V))

  def extend(t, logprobs_BxKxV, alive, finished):
    """The alive and finished beams after choosing token t."""
    candidates_BxKV = (alive["logp"][:, :, None] + logprobs_BxKxV).reshape(B, K * V)
    logp_Bx2K, index_Bx2K = jax.lax.top_k(candidates_BxKV, 2 * K)
    origin_Bx2K, token_Bx2K = index_Bx2K // V, index_Bx2K % V
    tokens_Bx2KxT = take(alive["tokens"], origin_Bx2K).at[:, :, t].set(token_Bx2K)
    ends_Bx2K = token_Bx2K == eos_id
    _, kept_BxK = jax.lax.top_k(jnp.where(ends_Bx2K, 2 * _NEG, logp_Bx2K), K)
    new_alive = dict(tokens=take(tokens_Bx2KxT, kept_BxK), logp=take(logp_Bx2K, kept_BxK))
    # An extension ending in EOS finishes if it ranks among the K best (as in transformers'
    # beam search; so one beam is greedy decoding) and extends a real beam, not an empty slot.
    finishes_Bx2K = ends_Bx2K & (jnp.arange(2 * K) < K)[None, :] & (logp_Bx2K > _NEG / 2)
    ended_Bx2K = jnp.where(finishes_Bx2K, normalize(logp_Bx2K, t + 1.0), _NEG)
    new_finished = _best(finished, tokens_Bx2KxT, ended_Bx2K,
                         jnp.full(ended_Bx2K.shape, t + 1, jnp.int32), K)
    return new_alive, new_finished, take(origin_Bx2K, kept_BxK), take(token_Bx2K, kept_BxK)

  def done(t, alive, finished):
    """No alive beam of any row can beat that row's worst finished one any more."""
    longest = jnp.maximum(length_normalizer(t + 1.0, length_penalty),
                          length_normalizer(float(T), length_penalty))
    return jnp.all(alive["logp"][:, 0] / longest < finished["score"][:, -1])

  def body(carry):
    t, logprobs_BxKxV, state, alive, finished = carry
    alive, finished, origin_BxK, token_BxK = extend(t, logprobs_BxKxV, alive, finished)
    rows_N = (jnp.arange(B)[:, None] * K + origin_BxK).reshape(B * K)
    logprobs_NxV, state = step(reorder(state, rows_N), token_BxK.reshape(B * K), t)
    return t + 1, logprobs_NxV.astype(jnp.float32).reshape(B, K, V), state, alive, finished

  def cond(carry):
    t, _, _, alive, finished = carry
    return (t < T) & ~done(t, alive, finished)

  t, _, _, alive, finished = jax.lax.while_loop(
      cond, body, (jnp.array(0, jnp.int32), logprobs_BxKxV, state, alive, finished))
  # Beams that reached the limit without EOS compete as they are (not those stopped early:
  # they cannot win, and their scores so far would flatter them under a negative alpha).
  at_limit_BxK = (alive["logp"] > _NEG / 2) & (t >= T)
  unfinished = jnp.where(at_limit_BxK, normalize(alive["logp"], t.astype(jnp.float32)), _NEG)
  final = _best(finished, alive["tokens"], unfinished, jnp.full((B, K), t, jnp.int32), K)
  return final["tokens"], final["length"], final["score"]


def _best(finished: dict, tokens_BxJxT, score_BxJ, length_BxJ, K: int) -> dict:
  """The K best of the finished beams and the new ones, by score."""
  tokens = jnp.concatenate([finished["tokens"], tokens_BxJxT], axis=1)
  score = jnp.concatenate([finished["score"], score_BxJ], axis=1)
  length = jnp.concatenate([finished["length"], length_BxJ], axis=1)
  best_score_BxK, index_BxK = jax.lax.top_k(score, K)
  return dict(tokens=jnp.take_along_axis(tokens, index_BxK[:, :, None], axis=1),
              score=best_score_BxK,
              length=jnp.take_along_axis(length, index_BxK, axis=1))


@functools.partial(jax.jit,
                   static_argnames=("model", "beam_size", "max_new_tokens", "eos_id",
                                    "length_penalty"))
def _decoder_beam_search(model, params, prompts_BxP, *, beam_size, max_new_tokens, eos_id,
                         length_penalty):
  """Beam search continuing equal-length prompts with a decoder and its KV cache."""
  B, P = prompts_BxP.shape
  K = beam_size
  cache = sampling.init_cache(model, B)
  logits_BxPxV, cache = sampling.forward(model, params, cache, prompts_BxP, 0)
  # The prompt is read once; its cache is then copied to each row's K beams.
  batch_axis = 1 if model.config.scan_layers else 0  # Scanned caches are [layers, rows, ...].
  rows = lambda x, rows_N: jnp.take(x, rows_N, axis=batch_axis) if x.ndim > 1 else x
  reorder = lambda state, rows_N: jax.tree.map(lambda x: rows(x, rows_N), state)
  cache = reorder(cache, jnp.repeat(jnp.arange(B), K))

  def step(cache, tokens_N, t):
    logits_Nx1xV, cache = sampling.forward(model, params, cache, tokens_N[:, None], P + t)
    return log_probs(logits_Nx1xV[:, 0]), cache

  first_logprobs_BxV = log_probs(logits_BxPxV[:, -1])
  return beam_search(step,
                     reorder,
                     cache,
                     first_logprobs_BxV,
                     beam_size=K,
                     max_new_tokens=max_new_tokens,
                     eos_id=eos_id,
                     length_penalty=length_penalty)


def beam_search_tokens(model: nn.Module, params: Any, prompts: list[list[int]], *,
                       max_new_tokens: int, beam_size: int, length_penalty: float,
                       eos_id: int) -> list[list[int]]:
  """The best beam's new tokens for every prompt (before its EOS), with the decoder's KV cache.

  Prompts of one length are searched together in one batch. Beam search does not slide past
  the context: a prompt plus `max_new_tokens` longer than `config.max_len` is a UserError.
  """
  cfg: ModelConfig = model.config
  sampling.check_prompts(prompts, cfg)
  if beam_size < 1:
    raise UserError(f"beam_size must be >= 1, got {beam_size}")
  if max_new_tokens < 1:
    raise UserError(f"max_new_tokens must be >= 1 for beam search, got {max_new_tokens}")
  longest = max(len(p) for p in prompts) + max_new_tokens
  if longest > cfg.max_len:
    raise UserError(f"a prompt plus max_new_tokens is {longest} tokens, more than the model's "
                    f"context config.model.max_len={cfg.max_len}: beam search keeps every token "
                    f"in the context; generate fewer tokens or sample instead (beam_size=1)")
  params = nn.meta.unbox(params)
  outputs: list[list[int]] = [[] for _ in prompts]
  by_length: dict[int, list[int]] = {}
  for index, prompt in enumerate(prompts):
    by_length.setdefault(len(prompt), []).append(index)
  for indices in by_length.values():
    tokens_BxKxT, lengths_BxK, _ = _decoder_beam_search(
        model,
        params,
        jnp.asarray(np.array([prompts[i] for i in indices], np.int32)),
        beam_size=beam_size,
        max_new_tokens=max_new_tokens,
        eos_id=eos_id,
        length_penalty=float(length_penalty))
    tokens_BxKxT, lengths_BxK = np.asarray(tokens_BxKxT), np.asarray(lengths_BxK)
    for row, index in enumerate(indices):
      best = tokens_BxKxT[row, 0, :lengths_BxK[row, 0]].tolist()
      outputs[index] = best[:best.index(eos_id)] if eos_id in best else best
  return outputs
