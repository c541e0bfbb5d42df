"""lm.beam_search: against greedy decoding, against brute-force enumeration of every output
(length penalty included), and batched against one prompt at a time."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lm import beam_search, sampling
from lm.errors import UserError
from tests.test_sampling import make_model


@pytest.fixture(autouse=True, scope="module")
def strict_rank_promotion():
  with jax.numpy_rank_promotion("raise"):
    yield


def next_logprobs(model, params, tokens):
  """log p(next token | tokens) from a full forward pass, without the cache."""
  logits = model.apply({"params": params}, jnp.asarray([tokens], jnp.int32))
  return np.asarray(jax.nn.log_softmax(logits[0, -1].astype(jnp.float32)), np.float64)


def test_one_beam_without_length_penalty_is_greedy_decoding():
  model, params = make_model(seed=1)
  prompts = [[3, 5, 7], [4, 4, 9], [11, 2]]
  free = sampling.generate_tokens(model, params, prompts, max_new_tokens=8,
                                  rng=jax.random.PRNGKey(0), temperature=0)
  eos = free[0][3]  # The first prompt's 4th token: its output ends there.
  greedy = sampling.generate_tokens(model, params, prompts, max_new_tokens=8,
                                    rng=jax.random.PRNGKey(0), temperature=0, eos_id=eos)
  beams = beam_search.beam_search_tokens(model, params, prompts, max_new_tokens=8, beam_size=1,
                                         length_penalty=0.0, eos_id=eos)
  assert beams == greedy
  assert len(beams[0]) <= 3


@pytest.mark.parametrize("alpha", [0.0, 0.6, 2.0])
@pytest.mark.parametrize("scan_layers", [False, True])
def test_a_beam_as_wide_as_the_vocabulary_returns_the_best_outputs_by_enumeration(
    alpha, scan_layers):
  V = 9
  model, params = make_model(vocab_size=V, seed=2, scan_layers=scan_layers)
  prompt = [1, 2, 3]
  first = next_logprobs(model, params, prompt)
  eos = int(np.argsort(first)[-2])  # The second most likely first token: EOS-first competes.
  norm = lambda length: ((5 + length) / 6)**alpha
  scores = {(eos,): first[eos] / norm(1)}  # Every output of at most 2 new tokens.
  for a in range(V):
    if a != eos:
      second = next_logprobs(model, params, prompt + [a])
      scores.update({(a, b): (first[a] + second[b]) / norm(2) for b in range(V)})
  ranked = sorted(scores, key=scores.get, reverse=True)

  tokens, lengths, found = beam_search._decoder_beam_search(  # pylint: disable=protected-access
      model, params, jnp.asarray([prompt], jnp.int32), beam_size=V, max_new_tokens=2,
      eos_id=eos, length_penalty=alpha)
  outputs = [tuple(np.asarray(tokens)[0, k, :int(lengths[0, k])].tolist()) for k in range(V)]
  assert outputs[0] == ranked[0]
  assert outputs == ranked[:V]
  np.testing.assert_allclose(np.asarray(found)[0], [scores[o] for o in ranked[:V]], rtol=1e-5)


def test_prompts_searched_together_equal_each_alone():
  model, params = make_model(seed=3)
  prompts = [[3, 5, 7], [4, 4, 9], [11, 2], [6, 6, 6]]
  options = dict(max_new_tokens=6, beam_size=3, length_penalty=0.6, eos_id=1)
  together = beam_search.beam_search_tokens(model, params, prompts, **options)
  alone = [beam_search.beam_search_tokens(model, params, [p], **options)[0] for p in prompts]
  assert together == alone


def test_bad_settings_are_user_errors():
  model, params = make_model(seed=0)
  options = dict(length_penalty=0.6, eos_id=1)
  with pytest.raises(UserError, match="beam_size must be >= 1"):
    beam_search.beam_search_tokens(model, params, [[1]], max_new_tokens=2, beam_size=0, **options)
  with pytest.raises(UserError, match="17 tokens, more than the model.s context .*=16"):
    beam_search.beam_search_tokens(model, params, [[1, 2]], max_new_tokens=15, beam_size=2,
                                   **options)
  with pytest.raises(UserError, match="prompt 1 is empty"):
    beam_search.beam_search_tokens(model, params, [[]], max_new_tokens=2, beam_size=2, **options)
