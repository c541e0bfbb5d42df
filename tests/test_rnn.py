"""GRU and bidirectional recurrent networks, as language models, classifiers and taggers: a
float64 reference, causality (unidirectional) and sight of the future (bidirectional) by
gradients, padding that is never read, parameter counts, decoding, and training through the
task seam."""

import functools
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import sst2
from lm.models import architecture, lstm
from lm.models.config import ModelConfig
from lm.sampling import init_cache
from lm.training import trainer
from tests.test_lstm import random_tokens


def rnn_config(**fields) -> ModelConfig:
  base = dict(vocab_size=23, architecture="gru", num_layers=2, embed_dim=8, lstm_hidden_dim=12,
              max_len=16)
  return ModelConfig(**{**base, **fields}).validate()


def init(cfg, tokens_BxT, *args):
  return nn.meta.unbox(lstm.RNN(cfg).init(jax.random.key(0), tokens_BxT, *args)["params"])


def gru_reference(params, tokens_BxT, widths):
  """The GRU equations (cuDNN / PyTorch form) in numpy float64, gates ordered r, z, n."""
  p = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
  sigmoid = lambda v: 1 / (1 + np.exp(-v))
  x = p["token_embed"]["embedding"][np.asarray(tokens_BxT)]
  B, T, _ = x.shape
  for i, H in enumerate(widths):
    layer = p[f"gru_{i}"]
    w_in, bias_in = layer["input"]["kernel"], layer["bias"].reshape(-1)
    w_rec, bias_rec = layer["step"]["kernel"], layer["step"]["bias"]
    h, outputs = np.zeros((B, H)), []
    for t in range(T):
      x_r, x_z, x_n = np.split(x[:, t] @ w_in + bias_in, 3, axis=-1)
      h_r, h_z, h_n = np.split(h @ w_rec + bias_rec, 3, axis=-1)
      r, z = sigmoid(x_r + h_r), sigmoid(x_z + h_z)
      n = np.tanh(x_n + r * h_n)
      h = (1 - z) * n + z * h
      outputs.append(h)
    x = np.stack(outputs, axis=1)
  return x @ p["lm_head"]["kernel"]


def test_gru_matches_a_float64_reference():
  cfg = rnn_config(tie_embeddings=False, init_std=0.5)
  tokens = random_tokens(cfg, (3, 5), seed=1)
  params = init(cfg, tokens)
  params = jax.tree_util.tree_map_with_path(  # Biases that show a gate taken from a wrong slice.
      lambda path, a: a + 0.3 * np.random.default_rng(len(str(path))).standard_normal(a.shape)
      if "bias" in str(path) else a, params)
  expected = gru_reference(params, tokens, lstm.layer_widths(cfg))
  actual = jax.jit(lstm.RNN(cfg).apply)({"params": params}, tokens)
  np.testing.assert_allclose(np.asarray(actual, np.float64), expected, rtol=2e-5, atol=2e-6)


@pytest.mark.parametrize("architecture_name", ["lstm", "gru"])
def test_causal_and_bidirectional_sight_by_gradients(architecture_name):
  """d logits[:, t] / d inputs[:, s]: zero for s > t unidirectionally; nonzero both ways
  bidirectionally, and zero from the padding in either case."""
  T, real = 7, 5
  for bidirectional in (False, True):
    cfg = rnn_config(architecture=architecture_name, bidirectional=bidirectional,
                     causal=not bidirectional, num_classes=3, pooling="none")
    tokens = random_tokens(cfg, (1, T), seed=2)
    segment_ids = jnp.asarray([[1] * real + [0] * (T - real)])
    params = init(cfg, tokens, None, segment_ids)
    model = lstm.RNN(cfg)
    inputs_TxE = params["token_embed"]["embedding"][tokens[0]]
    logits_at = lambda x_TxE, t: _forward_from_vectors(model, params, x_TxE[None],
                                                       segment_ids)[0, t].sum()
    t = 2
    sight = np.abs(np.asarray(jax.grad(logits_at)(inputs_TxE, t))).sum(-1)
    assert sight[:t + 1].min() > 0
    assert np.all(sight[real:] == 0)  # Padding is never read.
    if bidirectional:
      assert sight[t + 1:real].min() > 0
    else:
      assert np.all(sight[t + 1:] == 0)


def _forward_from_vectors(model, params, x_BxTxE, segment_ids):
  """The model with its embedding output replaced by `x_BxTxE` (for input gradients)."""

  def intercept(next_fun, args, kwargs, context):
    if context.module.name == "token_embed" and context.method_name == "__call__":
      return x_BxTxE.astype(jnp.float32)
    return next_fun(*args, **kwargs)

  tokens = jnp.zeros(x_BxTxE.shape[:2], jnp.int32)
  with nn.intercept_methods(intercept):
    return model.apply({"params": params}, tokens, None, segment_ids)


@pytest.mark.parametrize("architecture_name", ["lstm", "gru"])
def test_a_bidirectional_classifier_ignores_padding(architecture_name):
  cfg = rnn_config(architecture=architecture_name, bidirectional=True, causal=False,
                   num_classes=2, pooling="mean", init_std=0.5)
  row = random_tokens(cfg, (1, 5), seed=3)
  short = jnp.concatenate([row, jnp.zeros((1, 2), jnp.int32)], axis=1)
  long = jnp.concatenate([row, random_tokens(cfg, (1, 6), seed=4)], axis=1)
  params = init(cfg, short, None, jnp.ones_like(short))
  apply = jax.jit(lstm.RNN(cfg).apply)
  pad = lambda x: jnp.asarray([[1] * 5 + [0] * (x.shape[1] - 5)])
  a = apply({"params": params}, short, None, pad(short))
  b = apply({"params": params}, long, None, pad(long))
  alone = apply({"params": params}, row, None, jnp.ones_like(row))
  np.testing.assert_allclose(a, alone, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(b, alone, rtol=1e-5, atol=1e-6)
  assert a.shape == (1, 2)


@pytest.mark.parametrize("fields", [
    dict(),
    dict(tie_embeddings=False),
    dict(num_classes=3, pooling="last"),
    dict(bidirectional=True, causal=False, num_classes=2, pooling="mean"),
    dict(architecture="lstm", bidirectional=True, causal=False, num_classes=4, pooling="none"),
])
def test_param_count_in_closed_form(fields):
  cfg = rnn_config(**fields)
  shapes = jax.eval_shape(lambda: init(cfg, jnp.zeros((1, 2), jnp.int32)))
  counted = sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(shapes))
  assert lstm.num_params(cfg) == counted == architecture.count_params(cfg)


def test_gru_decoding_with_carried_state_matches_the_full_forward():
  cfg = rnn_config()
  tokens = random_tokens(cfg, (2, 7), seed=3)
  model = lstm.RNN(cfg)
  params = init(cfg, tokens)
  full = jax.jit(model.apply)({"params": params}, tokens)
  cache = init_cache(model, 2)
  decode = jax.jit(functools.partial(model.apply, decode=True, mutable=["cache"]))
  pieces = []
  for start, end in ((0, 3), (3, 4), (4, 7)):
    logits, updated = decode({"params": params, "cache": cache}, tokens[:, start:end])
    cache = updated["cache"]
    pieces.append(logits)
  np.testing.assert_allclose(np.concatenate(pieces, axis=1), full, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("architecture_name, bidirectional", [("gru", True), ("lstm", False)])
def test_classifiers_train_through_the_task_seam(tmp_path, architecture_name, bidirectional):
  config = sst2.get_config("no_pretrain,smoke")
  config.model.update(architecture=architecture_name, bidirectional=bidirectional,
                      causal=not bidirectional, lstm_hidden_dim=16)
  config.task.pooling = "mean" if bidirectional else "last"
  config.train.update(steps=3, sample_prompt="")
  final = trainer.train_and_evaluate(config, str(tmp_path / "run"))
  assert 0 <= final["eval/accuracy"] <= 1 and np.isfinite(final["eval/loss"])


def test_a_bidirectional_tagger_trains_through_the_task_seam(tmp_path):
  from experiments import wnut17  # pylint: disable=g-import-not-at-top
  config = wnut17.get_config("smoke")
  config.init_from = ""
  config.model.update(architecture="lstm", bidirectional=True, causal=False, lstm_hidden_dim=16)
  config.train.update(steps=3, sample_prompt="")
  final = trainer.train_and_evaluate(config, str(tmp_path / "run"))
  assert 0 <= final["eval/f1"] <= 1 and np.isfinite(final["eval/loss"])
