"""Log-likelihood of candidate continuations of a context, under a trained run's model.

`Scorer(run_config, model_config, tokenizer).score(params, items)` gives, for every candidate
of every (context, candidates) item, the sum over the candidate's tokens of log p(token |
context, the candidate's tokens before it) in nats, and their number (so also the per-token
mean). `lm.score` is the command; `lm.tasks.fewshot` classifies with it.

Ids, as the run's task feeds a prompt to `lm.generate`:
- Decoders (`causal_lm`, `sft`, imported GPT-2 / Llama ...): the context's ids
  (`base.Task.generation_ids`: `[BOS]` first for an `sft` run, nothing added for `causal_lm`),
  then the candidate's; only the candidate's tokens are scored. Context and candidate together
  must fit the model's context: a longer context loses its first tokens (`Score.truncated`).
- Encoder–decoders (`seq2seq`): the context is the source, encoded as the task encodes sources
  (prefix, EOS, cut to the context); the candidate is the target after the decoder's start
  token. Its EOS is not scored (as it is not for a decoder).
The candidate is encoded on its own (`tokenizer.encode(candidate)`), never merged with the
context: a space between them is the candidate's to carry (' great', as a word inside a text
is tokenized with its space), and nothing is added.

Batching. An item with several candidates is one jitted call: its context runs once through
the KV cache (an encoder–decoder's source is encoded once and the start token fed), the cache
is repeated for every candidate, and all candidates run in one forward pass from it. Items with
one candidate (and, with `share_prefix=False`, or for an LSTM, every (context, candidate) row)
go in length-bucketed batches of whole sequences, one forward pass per batch. Either way the
scores equal the log-softmax of one full forward pass gathered at the candidate's tokens
(tests/test_score.py). Shapes are padded to `buckets.bucket_lengths`, so few are compiled.

Shape letters: C candidates, P prefix, S source, T candidate tokens, V vocabulary.
"""

import dataclasses
import functools
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from lm import sampling
from lm.data import buckets
from lm.errors import UserError
from lm.models.architecture import make_model
from lm.models.config import ModelConfig
from lm.tasks import registry, seq2seq
from lm.training import steps


@dataclasses.dataclass(frozen=True)
class Score:
  """One candidate's log-likelihood (nats) given its context, over its `tokens` tokens."""
  logprob_sum: float
  tokens: int
  # The context did not fit with the candidate: a decoder's lost its first tokens; an
  # encoder–decoder's source filled the context (its end may have been cut, as in training).
  truncated: bool = False

  @property
  def logprob_mean(self) -> float:
    return self.logprob_sum / self.tokens


@dataclasses.dataclass(frozen=True)
class _Item:
  """An item's ids: the decoder's prefix, the encoder's source (None for a decoder), and the
  candidates."""
  prefix: list[int]
  source: list[int] | None
  candidates: list[list[int]]
  truncated: bool


class Scorer:
  """Scores candidates with the model of a run whose saved config is `run_config` (a dict)."""

  def __init__(self, run_config: dict, model_config: ModelConfig, tokenizer: Any):
    self.run_config, self.model_config, self.tokenizer = run_config, model_config, tokenizer
    kind = run_config["task"]["kind"]
    self.encoder_decoder = model_config.architecture == "encoder_decoder"
    if model_config.num_classes or not (model_config.causal or self.encoder_decoder):
      raise UserError(f"this run's task is config.task.kind={kind!r}: its model gives no "
                      "next-token probabilities. Candidates are scored with a language model: "
                      "a decoder ('causal_lm', 'sft') or an encoder–decoder ('seq2seq')")
    self.task = registry.task_class(kind)
    self.start_id = (seq2seq.decoder_start_id(run_config["task"], tokenizer)
                     if self.encoder_decoder else None)
    self.buckets = buckets.bucket_lengths(model_config.max_len)
    self.model = make_model(model_config)

  def encode(self, context: str, candidates: Sequence[str], name: str = "the item") -> _Item:
    """The ids of an item; UserError (naming it by `name`) for no candidates, one without
    tokens or too long for the model, or a decoder's context without tokens."""
    if not candidates:
      raise UserError(f"{name}: no candidates to score")
    ids = [list(self.tokenizer.encode(text)) for text in candidates]
    for number, (text, tokens) in enumerate(zip(candidates, ids), start=1):
      if not tokens:
        raise UserError(f"{name}: candidate {number} ({text!r}) has no tokens")
    context_ids = list(self.task.generation_ids(self.run_config, self.tokenizer, context))
    max_len, longest = self.model_config.max_len, max(map(len, ids))
    # A decoder keeps at least one context token to predict the candidate's first from.
    room = max_len - longest + (1 if self.encoder_decoder else 0)
    if room < 1:
      raise UserError(f"{name}: a candidate of {longest} tokens is too long for the model's "
                      f"context, config.model.max_len={max_len}")
    if self.encoder_decoder:
      return _Item([self.start_id], context_ids, ids, truncated=len(context_ids) >= max_len)
    if not context_ids:
      raise UserError(f"{name}: the context has no tokens, so nothing predicts the candidate's "
                      f"first token; give a context")
    return _Item(context_ids[-room:], None, ids, truncated=len(context_ids) > room)

  def fits(self, context: str, candidates: Sequence[str]) -> bool:
    """Whether the item is scored with its whole context (`Score.truncated` False)."""
    return not self.encode(context, candidates).truncated

  def score(self,
            params: Any,
            items: Sequence[tuple[str, Sequence[str]]],
            *,
            batch_size: int = 32,
            share_prefix: bool = True,
            names: Sequence[str] | None = None) -> list[list[Score]]:
    """The `Score` of every candidate of every (context, candidates) item, in order.

    `batch_size` candidates (or rows) run together; `share_prefix` runs an item's context once
    for all its candidates (module docstring); `names` name the items in errors (e.g.
    'file: line 3').
    """
    if batch_size < 1:
      raise UserError(f"batch_size must be >= 1, got {batch_size}")
    names = names or [f"item {number}" for number in range(1, len(items) + 1)]
    encoded = [self.encode(context, candidates, name)
               for (context, candidates), name in zip(items, names)]
    params = nn.meta.unbox(params)
    scores: list[list[Any]] = [[None] * len(item.candidates) for item in encoded]
    shared = share_prefix and self.model_config.architecture not in ("lstm", "gru")
    rows = []  # (item, candidate) pairs scored as whole sequences.
    for i, item in enumerate(encoded):
      if not (shared and len(item.candidates) > 1):
        rows += [(i, j) for j in range(len(item.candidates))]
        continue
      for start in range(0, len(item.candidates), batch_size):
        chunk = item.candidates[start:start + batch_size]
        scores[i][start:start + len(chunk)] = self._from_prefix(params, item, chunk, batch_size)
    for (i, j), score in zip(rows, self._score_rows(params, encoded, rows, batch_size)):
      scores[i][j] = score
    return scores

  def _score_rows(self, params, encoded: list[_Item], rows: list[tuple[int, int]],
                  batch_size: int) -> list[Score]:
    """The scores of (item, candidate) `rows`, as whole sequences in length-bucketed batches."""
    lengths = np.array([len(encoded[i].prefix) + len(encoded[i].candidates[j]) for i, j in rows],
                       np.int64)
    scores: list[Any] = [None] * len(rows)
    for indices, row_weights in buckets.eval_order(lengths, batch_size):
      batch = self._rows_batch([encoded[rows[k][0]] for k in indices],
                               [rows[k][1] for k in indices], row_weights)
      logprobs_BxT = np.asarray(_rows_logprobs(self.model, params, batch))
      for k, row_weight, logprobs_T, weights_T in zip(indices, row_weights, logprobs_BxT,
                                                      batch["weights"]):
        if row_weight > 0:
          scores[k] = _score(logprobs_T, weights_T, encoded[rows[k][0]].truncated)
    return scores

  def _rows_batch(self, items: list[_Item], candidates: list[int],
                  row_weights: np.ndarray) -> dict[str, np.ndarray]:
    """A batch of whole sequences whose `weights` mark the candidates' tokens among the
    `targets`: a decoder's `sft_batch` of prefix + candidate, the loss on the candidate; an
    encoder–decoder's `pair_batch` of the source and [start] + candidate."""
    pad = self.tokenizer.special_ids.pad
    indices = np.arange(len(items))
    if self.encoder_decoder:
      pairs = seq2seq.Pairs([np.array(item.source, np.int32) for item in items],
                            [np.array(item.prefix + item.candidates[j], np.int32)
                             for item, j in zip(items, candidates)], [])
      return seq2seq.pair_batch(pairs, indices, row_weights, self.buckets, pad)
    examples = [(np.array(item.prefix + item.candidates[j], np.int32),
                 np.array([0] * len(item.prefix) + [1] * len(item.candidates[j])))
                for item, j in zip(items, candidates)]
    return buckets.sft_batch(examples, indices, row_weights, self.buckets, pad_id=pad)

  def _from_prefix(self, params, item: _Item, candidates: list[list[int]],
                   batch_size: int) -> list[Score]:
    """The scores of some of an item's `candidates`, in one call: one pass of its prefix (and
    source), then all of them (C padded to 1, 2, 4, ... or batch_size rows, T and P to bucket
    lengths)."""
    pad = self.tokenizer.special_ids.pad
    one = np.ones(1, np.float32)
    prefix_1xP, _ = buckets.pad_rows([item.prefix], one, self.buckets, pad)
    count = buckets.bucket_length(len(candidates), buckets.bucket_lengths(batch_size, 1))
    fill = count - len(candidates)  # Rows of weight 0: all padding.
    candidates_CxT, weights_CxT = buckets.pad_rows(candidates + candidates[:1] * fill,
                                                   np.repeat([1.0, 0.0], [len(candidates), fill]),
                                                   self.buckets, pad)
    source = {}
    if self.encoder_decoder:
      source_1xS, segments_1xS = buckets.pad_rows([item.source], one, self.buckets, pad)
      source = dict(source_1xS=source_1xS, source_segments_1xS=segments_1xS)
    # Room in the cache for the padded prefix, then the padded candidates.
    model = make_model(self.model_config.replace(cache_len=prefix_1xP.shape[1] +
                                                 candidates_CxT.shape[1]))
    logprobs_CxT = np.asarray(_prefix_logprobs(model, params, prefix_1xP,
                                               np.int32(len(item.prefix)), candidates_CxT,
                                               **source))
    return [_score(logprobs_CxT[c], weights_CxT[c], item.truncated)
            for c in range(len(candidates))]


def _score(logprobs_T: np.ndarray, weights_T: np.ndarray, truncated: bool) -> Score:
  weights_T = np.asarray(weights_T, np.float64)
  return Score(float(np.sum(np.asarray(logprobs_T, np.float64) * weights_T)),
               int(weights_T.sum()), truncated)


@functools.partial(jax.jit, static_argnames="model")
def _rows_logprobs(model: nn.Module, params: Any, batch: dict) -> jax.Array:
  """log p(target) [B, T] of a batch of whole sequences (`Scorer._rows_batch`)."""
  if "decoder_inputs" in batch:
    logits_BxTxV = seq2seq.pair_logits(model.apply, params, batch, deterministic=True)
  else:  # Right padding needs no mask in a causal model (nor can the LSTM take one).
    logits_BxTxV = model.apply({"params": params}, batch["inputs"])
  return -steps.token_nll(logits_BxTxV, batch["targets"])


@functools.partial(jax.jit, static_argnames="model")
def _prefix_logprobs(model, params, prefix_1xP, length, candidates_CxT, source_1xS=None,
                     source_segments_1xS=None):
  """log p(candidate token) [C, T] after the first `length` tokens of the prefix (after the
  source, for an encoder–decoder): the prefix runs through the KV cache once; its cache,
  repeated for every candidate with its index at `length`, feeds the candidates at positions
  length.. (the prefix's padding slots are overwritten or masked)."""
  C, T = candidates_CxT.shape
  P = prefix_1xP.shape[1]
  cache = None if source_1xS is not None else sampling.init_cache(model, 1)
  logits_1xPxV, cache = _feed(model, params, cache, prefix_1xP, jnp.arange(P)[None, :],
                              source_1xS, source_segments_1xS)
  cache = _repeat_rows(cache, C, length)
  # The last candidate token's position may pass the context: it is fed but never read.
  positions_T = jnp.minimum(length + jnp.arange(T), model.config.max_len - 1)
  logits_CxTxV, _ = _feed(model, params, cache, candidates_CxT,
                          jnp.broadcast_to(positions_T, (C, T)))
  # Token t of a candidate is predicted by the prefix's last position (t = 0) or by token t-1.
  last_1x1xV = jax.lax.dynamic_slice_in_dim(logits_1xPxV, length - 1, 1, axis=1)
  predictions_CxTxV = jnp.concatenate(
      [jnp.broadcast_to(last_1x1xV, (C, 1, logits_1xPxV.shape[2])), logits_CxTxV[:, :T - 1]],
      axis=1)
  return -steps.token_nll(predictions_CxTxV, candidates_CxT)


def _feed(model, params, cache, tokens_BxT, positions_BxT, source_BxS=None, segments_BxS=None):
  """Decoder tokens through the KV cache (an encoder–decoder's first call encodes the source
  and creates its cache); returns (logits [B, T, V], cache)."""
  variables = {"params": params} if cache is None else {"params": params, "cache": cache}
  if model.config.architecture == "encoder_decoder":
    args = (source_BxS, tokens_BxT, segments_BxS, None, positions_BxT)
  else:
    args = (tokens_BxT, positions_BxT)
  logits_BxTxV, updated = model.apply(variables, *args, decode=True, mutable=["cache"])
  return logits_BxTxV, updated["cache"]


def _repeat_rows(cache: Any, rows: int, length: jax.Array) -> Any:
  """A one-row cache repeated `rows` times, every layer's index at `length`. Keys and values
  are [..., B, K, S, Dh] (a scanned stack adds the layer axis first); others [B, ...]."""

  def repeat(path, x):
    name = path[-1].key
    if name == "index":
      return jnp.full_like(x, length)
    return jnp.repeat(x, rows, axis=x.ndim - 4 if name in ("key", "value") else 0)

  return jax.tree_util.tree_map_with_path(repeat, cache)
