"""The LSTM language model: causality, a float64 reference, parameter counts, decoding with its
carried state, learning. Training it with lm.main (checkpoints, resuming, evaluation, sampling
from the workdir) is the smoke sweep of tests/test_sweep.py, whose runs are this model."""

import functools
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from experiments import shakespeare_char
from lm import config_checks
from lm.errors import UserError
from lm.models import architecture, lstm
from lm.models.config import ModelConfig
from lm.sampling import generate_tokens, init_cache
from lm.training import flops
from lm.training.steps import token_nll


def lstm_config(**fields) -> ModelConfig:
  base = dict(vocab_size=23, architecture="lstm", num_layers=2, embed_dim=8, lstm_hidden_dim=12,
              max_len=16)
  return ModelConfig(**{**base, **fields}).validate()


def init(cfg: ModelConfig, tokens_BxT):
  return nn.meta.unbox(lstm.LSTM(cfg).init(jax.random.key(0), tokens_BxT)["params"])


def random_tokens(cfg: ModelConfig, shape, seed=0):
  return jnp.asarray(np.random.default_rng(seed).integers(0, cfg.vocab_size, shape), jnp.int32)


def test_changing_future_tokens_leaves_past_logits_unchanged():
  cfg = lstm_config()
  tokens = random_tokens(cfg, (2, 10))
  params = init(cfg, tokens)
  changed = tokens.at[:, 6:].set((tokens[:, 6:] + 5) % cfg.vocab_size)
  apply = jax.jit(lstm.LSTM(cfg).apply)
  logits, logits_changed = (apply({"params": params}, t) for t in (tokens, changed))
  assert logits.shape == (2, 10, cfg.vocab_size)
  np.testing.assert_array_equal(logits[:, :6], logits_changed[:, :6])
  assert not np.allclose(logits[:, 6:], logits_changed[:, 6:])


def reference_logits(params, tokens_BxT, widths, tie):
  """The LSTM equations (Gers et al. 2000) in numpy float64, gates ordered i, f, g, o."""
  p = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
  sigmoid = lambda z: 1 / (1 + np.exp(-z))
  x = p["token_embed"]["embedding"][np.asarray(tokens_BxT)]
  B, T, _ = x.shape
  for i, H in enumerate(widths):
    layer = p[f"lstm_{i}"]
    w_in, w_rec = layer["input"]["kernel"], layer["step"]["kernel"]
    bias = layer["bias"].reshape(-1)
    c, h, outputs = np.zeros((B, H)), np.zeros((B, H)), []
    for t in range(T):
      z = x[:, t] @ w_in + h @ w_rec + bias
      gate_i, gate_f, gate_g, gate_o = np.split(z, 4, axis=-1)
      c = sigmoid(gate_f) * c + sigmoid(gate_i) * np.tanh(gate_g)
      h = sigmoid(gate_o) * np.tanh(c)
      outputs.append(h)
    x = np.stack(outputs, axis=1)
  head = p["token_embed"]["embedding"].T if tie else p["lm_head"]["kernel"]
  return x @ head


@pytest.mark.parametrize("tie", [True, False])
def test_matches_float64_numpy_reference(tie):
  cfg = lstm_config(tie_embeddings=tie, init_std=0.5)
  tokens = random_tokens(cfg, (3, 5), seed=1)
  params = init(cfg, tokens)
  # Non-trivial biases, so that a gate taken from the wrong slice shows.
  params = jax.tree_util.tree_map_with_path(
      lambda path, a: a + 0.3 * np.random.default_rng(len(str(path))).standard_normal(a.shape)
      if "bias" in str(path) else a, params)
  expected = reference_logits(params, tokens, lstm.layer_widths(cfg), tie)
  actual = jax.jit(lstm.LSTM(cfg).apply)({"params": params}, tokens)
  np.testing.assert_allclose(np.asarray(actual, np.float64), expected, rtol=2e-5, atol=2e-6)


@pytest.mark.parametrize("fields", [
    dict(),
    dict(tie_embeddings=False),
    dict(lstm_hidden_dim=0, num_layers=3),
    dict(num_layers=1, tie_embeddings=False, lstm_hidden_dim=20),
])
def test_param_count_in_closed_form_matches_the_module(fields):
  cfg = lstm_config(**fields)
  shapes = jax.eval_shape(lambda: init(cfg, jnp.zeros((1, 1), jnp.int32)))
  counted = sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(shapes))
  assert lstm.num_params(cfg) == counted == architecture.count_params(cfg)


def test_hidden_dim_for_a_parameter_budget():
  cfg = lstm_config(vocab_size=1000, embed_dim=64, num_layers=2)
  budget = architecture.count_params(
      ModelConfig(vocab_size=1000, num_layers=2, num_heads=2, embed_dim=64, max_len=16))
  hidden = lstm.hidden_dim_for(cfg, budget)
  assert lstm.num_params(cfg.replace(lstm_hidden_dim=hidden)) <= budget
  assert lstm.num_params(cfg.replace(lstm_hidden_dim=hidden + 1)) > budget
  with pytest.raises(UserError, match="more than 100"):
    lstm.hidden_dim_for(cfg, 100)


def test_flops_per_token_counts_every_matmul():
  cfg = lstm_config(tie_embeddings=False)
  # Layer 0: 8 -> 12 units, layer 1: 12 -> 12; output projection 12 x 23.
  matmuls = 4 * 12 * (8 + 12) + 4 * 12 * (12 + 12) + 12 * 23
  assert flops.flops_per_token(cfg, seq_len=16) == 6 * matmuls


@pytest.mark.parametrize("fields, message", [
    (dict(bidirectional=True), "a bidirectional recurrent network needs causal=False"),
    (dict(causal=False), "causal"),
    (dict(lora_rank=4), "lora_rank"),
    (dict(architecture="rnn"), "choose one of transformer, lstm, gru"),
    (dict(lstm_hidden_dim=-1), "lstm_hidden_dim"),
])
def test_unsupported_settings_are_user_errors(fields, message):
  with pytest.raises(UserError, match=message):
    lstm_config(**fields)


def test_no_masked_lm_and_no_transformer_inputs():
  config = shakespeare_char.get_config("cpu,smoke")
  config.model.update(architecture="lstm", causal=False, bidirectional=True)
  config.task.kind = "masked_lm"
  with pytest.raises(UserError, match="architecture='lstm' .*trains causal_lm, classification"):
    config_checks.validate_config(config)
  cfg = lstm_config()
  tokens = random_tokens(cfg, (1, 4))
  with pytest.raises(UserError, match="output positions"):
    lstm.LSTM(cfg).init(jax.random.key(0), tokens, None, None, jnp.ones_like(tokens))


def test_decoding_with_carried_state_matches_the_full_forward():
  cfg = lstm_config()
  tokens = random_tokens(cfg, (2, 7), seed=3)
  model = lstm.LSTM(cfg)
  params = init(cfg, tokens)
  full = jax.jit(model.apply)({"params": params}, tokens)
  cache = init_cache(model, 2)
  pieces = []
  decode = jax.jit(functools.partial(model.apply, decode=True, mutable=["cache"]))
  for start, end in ((0, 3), (3, 4), (4, 5), (5, 7)):  # A prefill, then steps.
    logits, updated = decode({"params": params, "cache": cache}, tokens[:, start:end])
    cache = updated["cache"]
    pieces.append(logits)
  np.testing.assert_allclose(np.concatenate(pieces, axis=1), full, rtol=1e-5, atol=1e-6)


def test_learns_a_batch():
  cfg = lstm_config(tie_embeddings=False)
  tokens = random_tokens(cfg, (4, 9), seed=4)
  inputs, targets = tokens[:, :-1], tokens[:, 1:]
  model = lstm.LSTM(cfg)
  params = init(cfg, inputs)
  optimizer = optax.adam(0.03)

  @jax.jit
  def step(params, state):
    loss = lambda p: jnp.mean(token_nll(model.apply({"params": p}, inputs), targets))
    value, grads = jax.value_and_grad(loss)(params)
    updates, state = optimizer.update(grads, state)
    return optax.apply_updates(params, updates), state, value

  state = optimizer.init(params)
  losses = []
  for _ in range(40):
    params, state, loss = step(params, state)
    losses.append(float(loss))
  assert losses[0] == pytest.approx(math.log(cfg.vocab_size), abs=0.1)  # Starts near uniform.
  assert losses[-1] < losses[0] - 1.0  # Learns the batch (40 steps: 3.14 -> 1.82 nats).


def test_greedy_generation_matches_argmax_of_full_forward():
  cfg = lstm_config(init_std=1.0)  # Random but decisive logits.
  model = lstm.LSTM(cfg)
  params = init(cfg, random_tokens(cfg, (1, 2)))
  prompts = [[3, 1, 4], [1, 5]]
  new = generate_tokens(model, params, prompts, max_new_tokens=6, rng=jax.random.key(0),
                        temperature=0.0)
  forward = jax.jit(model.apply)
  for prompt, tokens in zip(prompts, new):
    # One length for every step (causal: the zeros ahead are not read), so one compilation.
    row_1xL = np.zeros((1, len(prompt) + 6), np.int32)
    row_1xL[0, :len(prompt)] = prompt
    for position in range(len(prompt), row_1xL.shape[1]):
      logits_1xLxV = forward({"params": params}, jnp.asarray(row_1xL))
      row_1xL[0, position] = int(jnp.argmax(logits_1xLxV[0, position - 1]))
    assert tokens == row_1xL[0, len(prompt):].tolist()
