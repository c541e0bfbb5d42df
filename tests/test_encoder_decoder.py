"""The encoder–decoder: cross-attention against float64, what each side sees (through
gradients), padding on both sides, decoding with the KV cache against full forward passes, and
beam search against greedy decoding and brute-force enumeration."""

import itertools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lm import seq2seq_decoding
from lm.models.attention import CrossAttention
from lm.models.config import ModelConfig
from lm.models.encoder_decoder import EncoderDecoder

V = 29


def make_model(seed=0, vocab=V, **fields):
  cfg = ModelConfig(vocab_size=vocab,
                    architecture="encoder_decoder",
                    num_layers=2,
                    num_decoder_layers=2,
                    num_heads=2,
                    embed_dim=16,
                    max_len=12,
                    init_std=0.3,
                    **fields)
  model = EncoderDecoder(cfg)
  params = model.init(jax.random.key(seed), jnp.zeros((1, 4), jnp.int32))["params"]
  return model, nn.meta.unbox(params)


def test_cross_attention_matches_a_float64_reference_with_source_padding():
  cfg = ModelConfig(vocab_size=5, num_heads=3, num_kv_heads=1, embed_dim=12, init_std=0.5)
  B, T, S, D = 2, 3, 5, 12
  x_NxD = jax.random.normal(jax.random.key(1), (B * T, D))
  memory_BxSxD = jax.random.normal(jax.random.key(2), (B, S, D))
  mask_BxS = jnp.array([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0]], bool)
  module = CrossAttention(cfg)
  params = nn.meta.unbox(module.init(jax.random.key(0), x_NxD, memory_BxSxD, mask_BxS))["params"]
  out = np.asarray(module.apply({"params": params}, x_NxD, memory_BxSxD, mask_BxS))

  f64 = lambda a: np.asarray(a, np.float64)
  wq, wkv, wo = (f64(params[n]["kernel"]) for n in ("query", "key_value", "out"))
  q = np.einsum("btd,dhk->bthk", f64(x_NxD).reshape(B, T, D), wq)  # H=3 heads.
  kv = np.einsum("bsd,dgck->bsgck", f64(memory_BxSxD), wkv)  # One shared key/value head.
  k, v = kv[:, :, 0, 0], kv[:, :, 0, 1]
  scores = np.einsum("bthk,bsk->bhts", q, k) / np.sqrt(q.shape[-1])
  scores = np.where(np.asarray(mask_BxS)[:, None, None, :], scores, -np.inf)
  weights = np.exp(scores - scores.max(-1, keepdims=True))
  weights /= weights.sum(-1, keepdims=True)
  expected = np.einsum("bhts,bsk,hkd->btd", weights, v, wo).reshape(B * T, D)
  np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)


def _unique_tokens(S, T):
  """Source ids 1..S and target ids S+1..S+T: each position's token has its own embedding row."""
  return (jnp.arange(1, S + 1, dtype=jnp.int32)[None], jnp.arange(S + 1, S + T + 1,
                                                                   dtype=jnp.int32)[None])


T5_LIKE = dict(positions="relative", relative_buckets=8, relative_max_distance=10, norm="rmsnorm",
               mlp="geglu", scale_attention=False, scale_tied_output=True)
MARIAN_LIKE = dict(norm_position="post", positions="sinusoidal", embed_norm=False, mlp="silu",
                   scale_embeddings=True, use_bias=True, output_bias=True)


@pytest.mark.parametrize("fields", [dict(norm_position="pre"), dict(norm_position="post"), T5_LIKE],
                         ids=["pre", "post", "t5"])
def test_decoder_sees_the_past_and_the_whole_source_through_gradients(fields):
  model, params = make_model(**{"tie_embeddings": False, **fields})
  S, T = 5, 4
  source, target = _unique_tokens(S, T)
  for t in range(T):
    loss = lambda p: jnp.sum(model.apply({"params": p}, source, target)[0, t])
    rows = np.abs(np.asarray(jax.grad(loss)(params)["token_embed"]["embedding"])).sum(-1)
    assert np.all(rows[1:S + 1] > 0), "every source token reaches every target position"
    assert np.all(rows[S + 1:S + 2 + t] > 0) and np.all(rows[S + 2 + t:] == 0), t


def test_encoder_is_bidirectional_through_gradients():
  model, params = make_model(tie_embeddings=False)
  source, target = _unique_tokens(5, 3)

  def first_memory_position(p):
    _, state = model.apply({"params": p},
                           source,
                           target,
                           capture_intermediates=lambda m, _: m.name == "encoder_norm",
                           mutable=["intermediates"])
    first = state["intermediates"]["encoder_norm"]["__call__"][0][0]  # Source token 0.
    # Weighted: a plain sum of a LayerNorm's output (unit scale at init) does not depend on its
    # input, so its gradient is zero but for rounding.
    return jnp.dot(first, weights)

  weights = jax.random.normal(jax.random.PRNGKey(1), (model.config.embed_dim,))

  rows = np.abs(np.asarray(jax.grad(first_memory_position)(params)["token_embed"]["embedding"]))
  assert np.all(rows.sum(-1)[1:6] > 0), "the first source position sees the last ones"


@pytest.mark.parametrize("norm_position", ["pre", "post"])
def test_padding_on_either_side_changes_no_real_position(norm_position):
  model, params = make_model(norm_position=norm_position)
  source = jnp.array([[3, 4, 5, 6, 7], [8, 9, 10, 0, 0]], jnp.int32)
  source_segments = jnp.array([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]], jnp.int32)
  target = jnp.array([[1, 11, 12, 13], [1, 14, 0, 0]], jnp.int32)
  target_segments = jnp.array([[1, 1, 1, 1], [1, 1, 0, 0]], jnp.int32)
  logits = model.apply({"params": params}, source, target, source_segments, target_segments)
  other_padding = lambda x, seg: jnp.where(seg == 0, 17, x)
  again = model.apply({"params": params}, other_padding(source, source_segments),
                      other_padding(target, target_segments), source_segments, target_segments)
  real = np.asarray(target_segments, bool)
  np.testing.assert_allclose(np.asarray(logits)[real], np.asarray(again)[real], atol=1e-6)
  # Row 1 alone, unpadded, gives the same logits as inside the padded batch.
  alone = model.apply({"params": params}, source[1:, :3], target[1:, :2])
  np.testing.assert_allclose(np.asarray(alone)[0], np.asarray(logits)[1, :2], atol=1e-5)


@pytest.mark.parametrize("fields", [
    dict(norm_position="pre", positions="learned"),
    dict(norm_position="post", positions="sinusoidal", scale_embeddings=True),
    dict(norm_position="pre", positions="learned", tie_embeddings=False, num_kv_heads=1),
    dict(T5_LIKE, cache_len=6),
    dict(T5_LIKE, relative_max_distance=4, mlp="relu"),
    MARIAN_LIKE,
])
def test_decoding_with_the_cache_equals_the_full_forward_pass(fields):
  model, params = make_model(**fields)
  source = jax.random.randint(jax.random.key(1), (3, 7), 1, V)
  segments = jnp.array([[1] * 7, [1] * 5 + [0] * 2, [1] * 3 + [0] * 4], jnp.int32)
  target = jax.random.randint(jax.random.key(2), (3, 6), 1, V)
  full = model.apply({"params": params}, source, target, segments)
  logprobs, cache = seq2seq_decoding._prefill(model, params, source, segments, bos_id=0)
  steps = [logprobs]
  target = target.at[:, 0].set(0)  # The prefill fed BOS = 0 at position 0.
  full = jax.nn.log_softmax(model.apply({"params": params}, source, target, segments))
  for t in range(1, 6):
    logprobs, cache = seq2seq_decoding._step(model, params, cache, target[:, t], t)
    steps.append(logprobs)
  np.testing.assert_allclose(np.stack(steps, 1), np.asarray(full), atol=1e-5)


def _sequence_logprob(model, params, source, bos, outputs):
  """log p(outputs | source) from one full forward pass (teacher forcing), float64."""
  target = jnp.asarray([[bos, *outputs[:-1]]], jnp.int32)
  logp = np.asarray(jax.nn.log_softmax(model.apply({"params": params}, source, target)[0]),
                    np.float64)
  return float(sum(logp[t, token] for t, token in enumerate(outputs)))


def test_one_beam_is_greedy_decoding():
  model, params = make_model(seed=3)
  sources = [[3, 5, 7, 2], [4, 4, 9], [11, 2, 6, 6, 8]]
  greedy = seq2seq_decoding.decode_batch(model, params, sources, bos_id=1, eos_id=2, pad_id=0,
                                         max_new_tokens=8)
  source_BxS = np.zeros((3, 5), np.int32)
  segments_BxS = np.zeros((3, 5), np.int32)
  for row, source in enumerate(sources):
    source_BxS[row, :len(source)], segments_BxS[row, :len(source)] = source, 1
  tokens, lengths, _ = seq2seq_decoding._beam_search(model, params, source_BxS, segments_BxS,
                                                     beam_size=1, max_new_tokens=8, bos_id=1,
                                                     eos_id=2, length_penalty=0.0)
  beams = [np.asarray(tokens)[b, 0, :int(lengths[b, 0])].tolist() for b in range(3)]
  assert [b[:b.index(2)] if 2 in b else b for b in beams] == greedy


@pytest.mark.parametrize("alpha", [0.0, 0.6, 2.0])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_beam_as_wide_as_the_vocabulary_finds_the_best_two_token_output(alpha, seed):
  vocab, bos, eos = 6, 1, 2
  model, params = make_model(seed=seed, vocab=vocab)
  source = jnp.asarray([[3, 4, 5]], jnp.int32)
  normalizer = lambda length: ((5.0 + length) / 6.0)**alpha
  candidates = [(eos,)] + [(a, b) for a, b in itertools.product(range(vocab), repeat=2)
                           if a != eos]
  scored = {c: _sequence_logprob(model, params, source, bos, c) / normalizer(len(c))
            for c in candidates}
  best = max(scored, key=scored.get)
  found = seq2seq_decoding.decode_batch(model, params, [[3, 4, 5]], bos_id=bos, eos_id=eos,
                                        pad_id=0, max_new_tokens=2, beam_size=vocab,
                                        length_penalty=alpha)
  assert tuple(found[0]) == tuple(t for t in best if t != eos), (scored[best], best)


def test_batched_decoding_equals_one_source_at_a_time():
  model, params = make_model(seed=4)
  sources = [[3, 5, 7, 2, 9], [4], [11, 2, 6]]
  for beam_size in (1, 3):
    together = seq2seq_decoding.decode_batch(model, params, sources, bos_id=1, eos_id=2,
                                             pad_id=0, max_new_tokens=6, beam_size=beam_size)
    alone = [seq2seq_decoding.decode_batch(model, params, [s], bos_id=1, eos_id=2, pad_id=0,
                                           max_new_tokens=6, beam_size=beam_size)[0]
             for s in sources]
    assert together == alone
