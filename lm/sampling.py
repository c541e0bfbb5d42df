"""Autoregressive sampling from a `Transformer` with its KV cache (or an LSTM with its state).

Prompts of different lengths are decoded together: their common prefix (the first `min_len`
tokens of every row) is prefilled in one forward pass; after that one token per step is fed to
every row inside a single jitted `lax.scan`. A row that is still inside its prompt is fed its
next prompt token (teacher forcing) and otherwise the token just sampled, so all rows share
one cache index and one position per step. Past the model's context, generation goes on over a
sliding window of the last `max_len` tokens (as nanoGPT does), recomputed for every token.

Shape letters: B batch (prompts), L total length (longest prompt + new tokens), P prefill
length, S context (config.max_len), V vocabulary.
"""

import functools
from typing import Any, Callable, Iterator

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from lm.data.tokenizer_base import Tokenizer
from lm.errors import UserError
from lm.models.architecture import make_model
from lm.models.config import ModelConfig


def filter_logits(logits_BxV: jax.Array, *, top_k: int = 0, top_p: float = 1.0) -> jax.Array:
  """Sets logits outside the top-k set, then outside the nucleus (top-p) set, to -inf.

  top-k keeps the k largest logits (`top_k <= 0` keeps all). top-p keeps the smallest set of
  most likely tokens whose probability adds up to at least `top_p`, always at least the most
  likely one (Holtzman et al. 2019); `top_p >= 1` keeps all. Entries tied with the last kept
  one are kept too.
  """
  V = logits_BxV.shape[-1]
  neg_inf = jnp.array(-jnp.inf, logits_BxV.dtype)
  if 0 < top_k < V:
    kth_largest_Bx1 = jax.lax.top_k(logits_BxV, top_k)[0][:, -1:]
    logits_BxV = jnp.where(logits_BxV >= kth_largest_Bx1, logits_BxV, neg_inf)
  if top_p < 1.0:
    sorted_BxV = -jnp.sort(-logits_BxV, axis=-1)  # Descending.
    probs_BxV = jax.nn.softmax(sorted_BxV.astype(jnp.float32), axis=-1)
    # Token i is needed while the more likely tokens before it sum to less than top_p.
    before_BxV = jnp.cumsum(probs_BxV, axis=-1) - probs_BxV
    num_kept_Bx1 = jnp.maximum(jnp.sum(before_BxV < top_p, axis=-1, keepdims=True), 1)
    threshold_Bx1 = jnp.take_along_axis(sorted_BxV, num_kept_Bx1 - 1, axis=-1)
    logits_BxV = jnp.where(logits_BxV >= threshold_Bx1, logits_BxV, neg_inf)
  return logits_BxV


def sample_logits(logits_BxV: jax.Array, rng: jax.Array, *, temperature: float, top_k: int,
                  top_p: float) -> jax.Array:
  """Next tokens [B] int32: greedy for temperature 0, else sampled from the filtered logits."""
  logits_BxV = logits_BxV.astype(jnp.float32)
  if temperature == 0:
    return jnp.argmax(logits_BxV, axis=-1).astype(jnp.int32)
  logits_BxV = filter_logits(logits_BxV / temperature, top_k=top_k, top_p=top_p)
  return jax.random.categorical(rng, logits_BxV, axis=-1).astype(jnp.int32)


@functools.partial(jax.jit, static_argnames=("model", "batch_size"))
def _init_cache(model: nn.Module, batch_size: int) -> Any:
  # Under jit the unused parameter initializers are dead code: only the cache is computed.
  tokens_Bx1 = jnp.zeros((batch_size, 1), jnp.int32)
  return model.init(jax.random.PRNGKey(0), tokens_Bx1, decode=True)["cache"]


def init_cache(model: nn.Module, batch_size: int) -> Any:
  """An empty KV cache (index 0) of `model.config.max_len` positions for `batch_size` rows."""
  return _init_cache(model, batch_size)


def forward(model, params, cache, tokens_BxT, start):
  """Feeds tokens at positions start.. through the cache; returns (logits_BxTxV, cache)."""
  B, T = tokens_BxT.shape
  positions_BxT = jnp.broadcast_to(start + jnp.arange(T, dtype=jnp.int32), (B, T))
  variables = {"params": params, "cache": cache}
  logits_BxTxV, updated = model.apply(variables, tokens_BxT, positions_BxT, decode=True,
                                      mutable=["cache"])
  return logits_BxTxV, updated["cache"]


@functools.partial(jax.jit,
                   static_argnames=("model", "prefill_len", "temperature", "top_k", "top_p"))
def _decode(model, params, prompts_BxL, lengths_B, rng, *, prefill_len, temperature, top_k, top_p):
  """Fills positions prefill_len.. of `prompts_BxL` past each row's prompt; returns [B, L]."""
  B, L = prompts_BxL.shape
  S = model.config.max_len

  def choose(tokens_BxL, logits_BxV, position):
    """Writes the token at `position`: the prompt's while inside it, else a sample."""
    key = jax.random.fold_in(rng, position)
    sampled_B = sample_logits(logits_BxV, key, temperature=temperature, top_k=top_k, top_p=top_p)
    token_B = jnp.where(position < lengths_B, tokens_BxL[:, position], sampled_B)
    return tokens_BxL.at[:, position].set(token_B)

  cache = init_cache(model, B)
  logits_BxPxV, cache = forward(model, params, cache, prompts_BxL[:, :prefill_len], 0)
  tokens_BxL = choose(prompts_BxL, logits_BxPxV[:, -1], prefill_len)

  def cached_step(carry, position):
    tokens_BxL, cache = carry
    logits_Bx1xV, cache = forward(model, params, cache, tokens_BxL[:, position, None], position)
    return (choose(tokens_BxL, logits_Bx1xV[:, 0], position + 1), cache), None

  # Fed with the cache: positions prefill_len .. min(L, S) - 2. The token at min(L, S) - 1 is
  # chosen but not fed: either it is the last one, or the window below takes over.
  positions = jnp.arange(prefill_len, min(L, S) - 1, dtype=jnp.int32)
  (tokens_BxL, _), _ = jax.lax.scan(cached_step, (tokens_BxL, cache), positions)

  def window_step(tokens_BxL, position):
    # Past the context (nanoGPT's crop): the last S tokens, at positions 0..S-1, are
    # recomputed for every new token, since every token's position changes.
    window_BxS = jax.lax.dynamic_slice_in_dim(tokens_BxL, position - S, S, axis=1)
    logits_BxSxV = model.apply({"params": params}, window_BxS)
    return choose(tokens_BxL, logits_BxSxV[:, -1], position), None

  if L > S:
    tokens_BxL, _ = jax.lax.scan(window_step, tokens_BxL, jnp.arange(S, L, dtype=jnp.int32))
  return tokens_BxL


def check_prompts(prompts: list[list[int]],
                  cfg: ModelConfig,
                  names: list[str] | None = None) -> None:
  """Raises UserError for no prompts, an empty one, one longer than the context, or ids outside
  the vocabulary; the error names the prompt by `names` (e.g. its file and line) or number."""
  if not prompts:
    raise UserError("no prompts to generate from")
  for i, prompt in enumerate(prompts):
    name = names[i] if names else f"prompt {i + 1}"
    if not len(prompt):
      raise UserError(f"{name} is empty; give at least one token")
    if len(prompt) > cfg.max_len:
      raise UserError(f"{name} has {len(prompt)} tokens, more than the model's context"
                      f" config.model.max_len = {cfg.max_len}; use a shorter prompt")
    if min(prompt) < 0 or max(prompt) >= cfg.vocab_size:
      raise UserError(f"{name} has token ids outside the vocabulary [0, {cfg.vocab_size})")


def _check_settings(max_new_tokens: int, temperature: float, top_k: int, top_p: float) -> None:
  if max_new_tokens < 0:
    raise UserError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
  if temperature < 0:
    raise UserError(f"temperature must be >= 0 (0 is greedy), got {temperature}")
  if top_k < 0:
    raise UserError(f"top_k must be >= 0 (0 keeps every token), got {top_k}")
  if not 0 < top_p <= 1:
    raise UserError(f"top_p must be in (0, 1] (1 keeps every token), got {top_p}")


def generate_tokens(model: nn.Module,
                    params: Any,
                    prompts: list[list[int]],
                    *,
                    max_new_tokens: int,
                    rng: jax.Array,
                    temperature: float = 1.0,
                    top_k: int = 0,
                    top_p: float = 1.0,
                    eos_id: int | None = None) -> list[list[int]]:
  """Continues every prompt by `max_new_tokens` tokens, decoded together with the KV cache.

  `params` is the model's "params" collection (boxed or plain). Past `config.max_len` tokens,
  generation goes on over a sliding window of the last `max_len` tokens, without the cache.
  Returns only the new tokens of each row; with `eos_id`, a row ends before its first EOS.
  Raises UserError for an empty prompt or one longer than `max_len`, and for bad settings.
  """
  check_prompts(prompts, model.config)
  _check_settings(max_new_tokens, temperature, top_k, top_p)
  if max_new_tokens == 0:
    return [[] for _ in prompts]

  lengths = [len(p) for p in prompts]
  prompts_BxL = np.zeros((len(prompts), max(lengths) + max_new_tokens), np.int32)
  for row, prompt in enumerate(prompts):
    prompts_BxL[row, :len(prompt)] = prompt
  tokens_BxL = np.asarray(
      _decode(model,
              nn.meta.unbox(params),
              jnp.asarray(prompts_BxL),
              jnp.asarray(lengths, jnp.int32),
              rng,
              prefill_len=min(lengths),
              temperature=float(temperature),
              top_k=int(top_k),
              top_p=float(top_p)))

  outputs = []
  for row, length in enumerate(lengths):
    new = tokens_BxL[row, length:length + max_new_tokens].tolist()
    if eos_id is not None and eos_id in new:
      new = new[:new.index(eos_id)]
    outputs.append(new)
  return outputs


def generate_text(model_config: ModelConfig,
                  params: Any,
                  tokenizer: Tokenizer,
                  prompts: list[str],
                  **options: Any) -> list[str]:
  """Each prompt followed by its continuation (`generate_continuations`)."""
  continuations = generate_continuations(model_config, params, tokenizer, prompts, **options)
  return [prompt + continuation for prompt, continuation in zip(prompts, continuations)]


def generate_continuations(model_config: ModelConfig,
                           params: Any,
                           tokenizer: Tokenizer,
                           prompts: list[str],
                           *,
                           max_new_tokens: int,
                           temperature: float,
                           top_k: int,
                           top_p: float,
                           seed: int,
                           encode: Callable[[str], list[int]] | None = None,
                           beam_size: int = 1,
                           length_penalty: float = 0.6,
                           eos_id: int | None = None) -> list[str]:
  """The continuation of each prompt, which ends early at `eos_id` (default: the tokenizer's
  EOS; a chat template's end of turn): sampled, or with `beam_size` > 1 the best beam
  (lm.beam_search; temperature, top_k, top_p and seed unused). `encode` builds a prompt's ids as
  the run's task trained (`base.Task.generation_ids`; default: the plain encoding)."""
  encode = encode or tokenizer.encode
  model, ids = make_model(model_config), [list(encode(p)) for p in prompts]
  eos_id = tokenizer.special_ids.eos if eos_id is None else eos_id
  if beam_size > 1:
    from lm import beam_search  # pylint: disable=g-import-not-at-top  # It imports this module.
    new_tokens = beam_search.beam_search_tokens(model,
                                                params,
                                                ids,
                                                max_new_tokens=max_new_tokens,
                                                beam_size=beam_size,
                                                length_penalty=length_penalty,
                                                eos_id=eos_id)
  else:
    new_tokens = generate_tokens(model,
                                 params,
                                 ids,
                                 max_new_tokens=max_new_tokens,
                                 rng=jax.random.PRNGKey(seed),
                                 temperature=temperature,
                                 top_k=top_k,
                                 top_p=top_p,
                                 eos_id=eos_id)
  return [tokenizer.decode(tokens) for tokens in new_tokens]


# Streaming feeds a prompt in chunks of this many tokens, then one at a time: two compiled
# programs serve every prompt length.
_STREAM_CHUNK = 32
_feed = jax.jit(forward, static_argnames=("model",))
_sample = jax.jit(sample_logits, static_argnames=("temperature", "top_k", "top_p"))


def stream_tokens(model: nn.Module,
                  params: Any,
                  prompt: list[int],
                  *,
                  max_new_tokens: int,
                  rng: jax.Array,
                  temperature: float = 1.0,
                  top_k: int = 0,
                  top_p: float = 1.0,
                  eos_id: int | None = None) -> Iterator[int]:
  """Yields the continuation of one prompt token by token as each is sampled (`lm.chat`), with
  the KV cache; it ends before `eos_id` or after `max_new_tokens`. The prompt and the new tokens
  must fit the context (UserError otherwise). Greedy (temperature 0) gives `generate_tokens`'
  tokens."""
  check_prompts([prompt], model.config)
  _check_settings(max_new_tokens, temperature, top_k, top_p)
  if len(prompt) + max_new_tokens > model.config.max_len:
    raise UserError(f"a prompt of {len(prompt)} tokens plus max_new_tokens={max_new_tokens} is "
                    f"more than the model's context ({model.config.max_len} tokens)")
  params, cache = nn.meta.unbox(params), init_cache(model, 1)
  settings = dict(temperature=float(temperature), top_k=int(top_k), top_p=float(top_p))
  position = 0
  while position < len(prompt):
    size = _STREAM_CHUNK if len(prompt) - position >= _STREAM_CHUNK else 1
    chunk_1xT = jnp.asarray([prompt[position:position + size]], jnp.int32)
    logits_1xTxV, cache = _feed(model, params, cache, chunk_1xT, position)
    position += size
  for step in range(max_new_tokens):
    key = jax.random.fold_in(rng, position)
    token = int(_sample(logits_1xTxV[:, -1], key, **settings)[0])
    if token == eos_id:
      return
    yield token
    if step + 1 < max_new_tokens:
      logits_1xTxV, cache = _feed(model, params, cache, jnp.asarray([[token]], jnp.int32),
                                  position)
      position += 1
