"""Decoding an encoder–decoder (`lm.models.encoder_decoder`): greedy, sampling and beam search,
batched and jitted, the source encoded once and the decoder fed one token a step through its
KV cache (the cross-attention keys and values are computed with the source, once).

Shape letters: B sources, S source length, K beams, N = B * K decoder rows, V vocabulary.
"""

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from lm import beam_search, sampling
from lm.errors import UserError


def _prefill(model, params, source_BxS, segments_BxS, bos_id):
  """Encodes the sources and feeds BOS: (log-probabilities of the first token [B, V], cache)."""
  B = source_BxS.shape[0]
  bos_Bx1 = jnp.full((B, 1), bos_id, jnp.int32)
  logits_Bx1xV, variables = model.apply({"params": params},
                                        source_BxS,
                                        bos_Bx1,
                                        segments_BxS,
                                        None,
                                        jnp.zeros((B, 1), jnp.int32),
                                        decode=True,
                                        mutable=["cache"])
  return beam_search.log_probs(logits_Bx1xV[:, 0]), variables["cache"]


def _step(model, params, cache, tokens_N, position):
  """Feeds token `position` of every row; returns (next-token log-probabilities [N, V], cache)."""
  N = tokens_N.shape[0]
  logits_Nx1xV, variables = model.apply({"params": params, "cache": cache},
                                        None,
                                        tokens_N[:, None],
                                        None,
                                        None,
                                        jnp.full((N, 1), position, jnp.int32),
                                        decode=True,
                                        mutable=["cache"])
  return beam_search.log_probs(logits_Nx1xV[:, 0]), variables["cache"]


def _rows(cache, rows_N):
  """The cache with decoder row n taking row rows_N[n]'s entries (scalars, the index, kept)."""
  return jax.tree.map(lambda x: jnp.take(x, rows_N, axis=0) if x.ndim else x, cache)


@functools.partial(jax.jit,
                   static_argnames=("model", "beam_size", "max_new_tokens", "bos_id", "eos_id",
                                    "length_penalty"))
def _beam_search(model, params, source_BxS, segments_BxS, *, beam_size, max_new_tokens, bos_id,
                 eos_id, length_penalty):
  first_BxV, cache = _prefill(model, params, source_BxS, segments_BxS, bos_id)
  B = source_BxS.shape[0]
  cache = _rows(cache, jnp.repeat(jnp.arange(B), beam_size))
  step = lambda cache, tokens_N, t: _step(model, params, cache, tokens_N, t + 1)
  return beam_search.beam_search(step,
                                 _rows,
                                 cache,
                                 first_BxV,
                                 beam_size=beam_size,
                                 max_new_tokens=max_new_tokens,
                                 eos_id=eos_id,
                                 length_penalty=length_penalty)


@functools.partial(jax.jit,
                   static_argnames=("model", "max_new_tokens", "bos_id", "eos_id", "temperature",
                                    "top_k", "top_p"))
def _sample(model, params, source_BxS, segments_BxS, rng, *, max_new_tokens, bos_id, eos_id,
            temperature, top_k, top_p):
  """Tokens [B, max_new_tokens]: greedy (temperature 0) or sampled; EOS then padding (EOS)."""
  logprobs_BxV, cache = _prefill(model, params, source_BxS, segments_BxS, bos_id)
  B = source_BxS.shape[0]

  def choose(logprobs_BxV, t, ended_B):
    token_B = sampling.sample_logits(logprobs_BxV,
                                     jax.random.fold_in(rng, t),
                                     temperature=temperature,
                                     top_k=top_k,
                                     top_p=top_p)
    return jnp.where(ended_B, eos_id, token_B)

  def body(carry):
    t, tokens_BxT, logprobs_BxV, cache, ended_B = carry
    token_B = choose(logprobs_BxV, t, ended_B)
    tokens_BxT = tokens_BxT.at[:, t].set(token_B)
    ended_B = ended_B | (token_B == eos_id)
    logprobs_BxV, cache = _step(model, params, cache, token_B, t + 1)
    return t + 1, tokens_BxT, logprobs_BxV, cache, ended_B

  def cond(carry):
    t, _, _, _, ended_B = carry
    return (t < max_new_tokens - 1) & ~jnp.all(ended_B)

  tokens_BxT = jnp.full((B, max_new_tokens), eos_id, jnp.int32)
  t, tokens_BxT, logprobs_BxV, _, ended_B = jax.lax.while_loop(
      cond, body, (jnp.array(0, jnp.int32), tokens_BxT, logprobs_BxV, cache,
                   jnp.zeros((B,), jnp.bool_)))
  # The last token needs no step after it.
  return tokens_BxT.at[:, t].set(choose(logprobs_BxV, t, ended_B))


def decode_batch(model: nn.Module,
                 params: Any,
                 sources: list[list[int]],
                 *,
                 bos_id: int,
                 eos_id: int,
                 pad_id: int,
                 max_new_tokens: int,
                 beam_size: int = 1,
                 length_penalty: float = 0.6,
                 temperature: float = 0.0,
                 top_k: int = 0,
                 top_p: float = 1.0,
                 rng: jax.Array | None = None,
                 pad_to: int = 0) -> list[list[int]]:
  """The output tokens of each source (before its EOS), decoded together in one batch: the best
  beam with `beam_size` > 1, else greedy (temperature 0) or sampled. Sources are padded to
  `pad_to` (or the longest); `max_new_tokens` is capped by the decoder's context."""
  if beam_size < 1:
    raise UserError(f"beam_size must be >= 1, got {beam_size}")
  if max_new_tokens < 1:
    raise UserError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
  cfg = model.config
  max_new_tokens = min(max_new_tokens, cfg.max_len - 1)
  # A cache of the positions fed (BOS and the new tokens), not max_len: less to attend to and,
  # in beam search, to reorder every step.
  model = type(model)(cfg.replace(cache_len=max_new_tokens + 1))
  S = max(pad_to, max(len(s) for s in sources))
  source_BxS = np.full((len(sources), S), pad_id, np.int32)
  segments_BxS = np.zeros((len(sources), S), np.int32)
  for row, source in enumerate(sources):
    source_BxS[row, :len(source)] = source
    segments_BxS[row, :len(source)] = 1
  params = nn.meta.unbox(params)
  if beam_size > 1:
    tokens_BxKxT, lengths_BxK, _ = _beam_search(model,
                                                params,
                                                source_BxS,
                                                segments_BxS,
                                                beam_size=beam_size,
                                                max_new_tokens=max_new_tokens,
                                                bos_id=bos_id,
                                                eos_id=eos_id,
                                                length_penalty=float(length_penalty))
    tokens_BxKxT, lengths_BxK = np.asarray(tokens_BxKxT), np.asarray(lengths_BxK)
    outputs = [tokens_BxKxT[b, 0, :lengths_BxK[b, 0]].tolist() for b in range(len(sources))]
  else:
    rng = jax.random.PRNGKey(0) if rng is None else rng
    tokens_BxT = np.asarray(
        _sample(model,
                params,
                source_BxS,
                segments_BxS,
                rng,
                max_new_tokens=max_new_tokens,
                bos_id=bos_id,
                eos_id=eos_id,
                temperature=float(temperature),
                top_k=int(top_k),
                top_p=float(top_p)))
    outputs = tokens_BxT.tolist()
  return [tokens[:tokens.index(eos_id)] if eos_id in tokens else tokens for tokens in outputs]
