"""The jitted steps: evaluation sums and bits-per-byte, and gradient accumulation."""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lm.data import batches, tokenizers
from lm.models.config import ModelConfig
from lm.models.transformer import Transformer
from lm.training import steps


def test_bits_per_byte_of_uniform_model_is_log2_vocab_times_tokens_over_bytes():
  text = "Zwölf Boxkämpfer jagen Viktor quer über den großen Sylter Deich. 春眠不觉晓。"
  tokenizer = tokenizers.ByteTokenizer()
  tokens = np.array(tokenizer.encode(text), dtype=np.int32)
  vocab = tokenizer.vocab_size
  uniform = lambda variables, inputs, *_, deterministic: jnp.zeros((*inputs.shape, vocab))
  token_bytes = jnp.asarray(tokenizer.token_bytes(), jnp.float32)
  totals = {"nll": 0.0, "tokens": 0.0, "bytes": 0.0}
  for batch in batches.eval_batches(tokens, batch_size=4, seq_len=8, max_batches=None):
    sums = steps.eval_step({}, batch, token_bytes, apply_fn=uniform)
    totals = {k: totals[k] + float(sums[k]) for k in totals}
  predicted = len(tokens) - 1  # Every token but the first is a target once.
  assert totals["tokens"] == predicted
  assert totals["bytes"] == predicted  # One byte per byte token.
  result = steps.summarize_eval(totals)
  assert result["eval/bpb"] == pytest.approx(math.log2(vocab) * predicted / totals["bytes"],
                                             rel=1e-6)
  assert result["eval/perplexity"] == pytest.approx(vocab, rel=1e-5)


def test_bits_per_byte_counts_utf8_bytes_of_multibyte_tokens():
  text = "春眠不觉晓，处处闻啼鸟。" * 3
  tokenizer = tokenizers.CharTokenizer.train([text])
  tokens = np.array(tokenizer.encode(text), dtype=np.int32)
  vocab = tokenizer.vocab_size
  uniform = lambda variables, inputs, *_, deterministic: jnp.zeros((*inputs.shape, vocab))
  token_bytes = jnp.asarray(tokenizer.token_bytes(), jnp.float32)
  batch = next(batches.eval_batches(tokens, batch_size=1, seq_len=len(tokens) - 1, max_batches=1))
  sums = jax.device_get(steps.eval_step({}, batch, token_bytes, apply_fn=uniform))
  assert sums["bytes"] == len(text[1:].encode("utf-8"))  # 3 bytes per CJK character.
  bpb = steps.summarize_eval({k: float(v) for k, v in sums.items()})["eval/bpb"]
  assert bpb == pytest.approx(math.log2(vocab) * (len(tokens) - 1) / sums["bytes"], rel=1e-6)


def _state(cfg, tx):
  model = Transformer(cfg)
  params = nn.meta.unbox(model.init(jax.random.PRNGKey(0), jnp.zeros((1, 8), jnp.int32))["params"])
  return steps.TrainState.create(apply_fn=model.apply, params=params, tx=tx)


def test_gradient_accumulation_equals_one_big_batch():
  cfg = ModelConfig(vocab_size=50, num_layers=2, num_heads=2, embed_dim=16, max_len=8)
  tx = optax.sgd(0.1)
  tokens = jax.random.randint(jax.random.PRNGKey(1), (8, 9), 0, 50)
  batch = {"inputs": tokens[:, :-1], "targets": tokens[:, 1:]}
  rng = jax.random.PRNGKey(2)
  one, metrics_one = steps.train_step(_state(cfg, tx), batch, rng, grad_accum_steps=1)
  four, metrics_four = steps.train_step(_state(cfg, tx), batch, rng, grad_accum_steps=4)
  np.testing.assert_allclose(metrics_one["train/loss"], metrics_four["train/loss"], rtol=1e-6)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7), one.params,
               four.params)
  assert int(one.step) == int(four.step) == 1


def test_train_step_reduces_loss_on_a_repeated_batch():
  cfg = ModelConfig(vocab_size=50, num_layers=2, num_heads=2, embed_dim=16, max_len=8)
  state = _state(cfg, optax.adam(1e-2))
  tokens = jax.random.randint(jax.random.PRNGKey(1), (4, 9), 0, 50)
  batch = {"inputs": tokens[:, :-1], "targets": tokens[:, 1:]}
  step = jax.jit(steps.train_step)
  losses = []
  for _ in range(20):
    state, metrics = step(state, batch, jax.random.PRNGKey(0))
    losses.append(float(metrics["train/loss"]))
  assert losses[-1] < 0.5 * losses[0]


def _float64_nll(logits_BxTxV, targets_BxT, smoothing=0.0):
  """Cross-entropy against (1 - smoothing) one_hot + smoothing / V and its gradient
  d(sum of loss * cotangent)/d logits, in float64 NumPy."""
  logits = np.asarray(logits_BxTxV, np.float64)
  shifted = logits - logits.max(-1, keepdims=True)
  log_probs = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
  V = logits.shape[-1]
  labels = (1 - smoothing) * np.eye(V)[targets_BxT] + smoothing / V
  return -(labels * log_probs).sum(-1), np.exp(log_probs) - labels


@pytest.mark.parametrize("dtype, tolerance, smoothing", [(jnp.float32, 1e-5, 0.0),
                                                         (jnp.bfloat16, 1e-2, 0.0),
                                                         (jnp.float32, 1e-5, 0.1)])
def test_token_nll_and_its_gradient_match_float64(dtype, tolerance, smoothing):
  rng = np.random.default_rng(0)
  logits = (4 * rng.normal(size=(3, 5, 67))).astype(dtype)
  targets = rng.integers(0, 67, size=(3, 5))
  cotangent = rng.normal(size=(3, 5)).astype(np.float32)
  nll, vjp = jax.vjp(lambda x: steps.token_nll(x, jnp.asarray(targets), smoothing),
                     jnp.asarray(logits))
  (grad,) = vjp(jnp.asarray(cotangent))
  want_nll, want_dlogits = _float64_nll(logits, targets, smoothing)
  assert nll.dtype == jnp.float32 and grad.dtype == dtype
  np.testing.assert_allclose(nll, want_nll, rtol=1e-6, atol=1e-5)  # Float32 math throughout.
  np.testing.assert_allclose(np.asarray(grad, np.float64), want_dlogits * cotangent[..., None],
                             atol=tolerance * np.abs(cotangent).max(), rtol=tolerance)
  # Under jit, and as the optax formula it replaces.
  optax_nll = optax.softmax_cross_entropy(
      jnp.asarray(logits, jnp.float32),
      optax.smooth_labels(jax.nn.one_hot(targets, 67), smoothing))
  np.testing.assert_allclose(jax.jit(steps.token_nll, static_argnums=2)(logits, targets, smoothing),
                             optax_nll, rtol=1e-6, atol=1e-6)


def test_a_loss_with_params_rng_and_metrics_reports_them_per_step():
  """A LossFn sees the parameters and the step's rng (ELECTRA samples with it) and returns
  metrics: they come back as train/<name>, averaged over accumulated micro-batches."""
  cfg = ModelConfig(vocab_size=50, num_layers=1, num_heads=2, embed_dim=16, max_len=8)
  tokens = jax.random.randint(jax.random.PRNGKey(1), (8, 9), 0, 50)
  batch = {"inputs": tokens[:, :-1], "targets": tokens[:, 1:]}
  lm = steps.logits_loss(steps.lm_loss)

  def loss_fn(apply_fn, params, micro_batch, rng):
    per_token, _ = lm(apply_fn, params, micro_batch, rng)
    noise = jax.random.uniform(rng)  # Differs per micro-batch: its rng is folded in.
    return per_token, {"mean_target": jnp.mean(micro_batch["targets"].astype(jnp.float32)),
                       "noise": noise}

  for accum in (1, 4):
    state, metrics = steps.train_step(_state(cfg, optax.sgd(0.1)), batch, jax.random.PRNGKey(2),
                                      loss_fn=loss_fn, grad_accum_steps=accum)
    np.testing.assert_allclose(metrics["train/mean_target"],
                               np.mean(np.asarray(tokens[:, 1:], np.float32)), rtol=1e-6)
    assert 0 < float(metrics["train/noise"]) < 1
    # The same update as the plain language-model loss.
    plain, _ = steps.train_step(_state(cfg, optax.sgd(0.1)), batch, jax.random.PRNGKey(2),
                                grad_accum_steps=accum)
    jax.tree.map(np.testing.assert_array_equal, state.params, plain.params)
