"""Transformer: shapes, causality (by token changes and by gradients), KV cache, sizes."""

import dataclasses
import functools
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lm.models.config import ModelConfig, preset_fields
from lm.models.transformer import Transformer, stack_layers, unstack_layers

B, T = 2, 8

CONFIGS = {
    "gpt2":
        dict(norm="layernorm", mlp="gelu", positions="learned", use_bias=True),
    "llama":
        dict(norm="rmsnorm", mlp="swiglu", positions="rope", num_kv_heads=2, tie_embeddings=False),
    "mqa-exact-gelu":
        dict(norm="layernorm", mlp="gelu_exact", positions="rope", num_kv_heads=1),
    "gqa-learned":
        dict(norm="rmsnorm",
             mlp="gelu",
             positions="learned",
             num_kv_heads=2,
             use_bias=True,
             tie_embeddings=False),
}


@pytest.fixture(autouse=True, scope="module")
def strict_rank_promotion():
  with jax.numpy_rank_promotion("raise"):
    yield


def small_config(name: str, **overrides) -> ModelConfig:
  fields = dict(vocab_size=37, num_layers=2, num_heads=4, embed_dim=32, max_len=16)
  return ModelConfig(**{**fields, **CONFIGS[name], **overrides}).validate()


def param_shapes(model: Transformer):
  tokens = jnp.zeros((1, 1), jnp.int32)
  return nn.meta.unbox(jax.eval_shape(model.init, jax.random.PRNGKey(0), tokens)["params"])


def random_params(model: Transformer, seed: int = 0):
  """Parameters drawn in NumPy (fast: no XLA compile of the initializers), large enough that
  attention is far from uniform and biases are nonzero."""
  rng = np.random.default_rng(seed)

  def draw(path, leaf):
    mean = 1.0 if path[-1].key == "scale" else 0.0
    return jnp.asarray(rng.normal(mean, 0.2, leaf.shape), jnp.float32)

  return jax.tree_util.tree_map_with_path(draw, param_shapes(model))


def random_tokens(cfg: ModelConfig, seed: int = 0, shape=(B, T)) -> jax.Array:
  return jnp.asarray(np.random.default_rng(seed).integers(0, cfg.vocab_size, shape), jnp.int32)


# Jitted once per model (Transformer is hashable), so the tests below share compilations.
@functools.partial(jax.jit, static_argnames="model")
def forward(model, params, tokens_BxT):
  return model.apply({"params": params}, tokens_BxT)


@functools.partial(jax.jit, static_argnames="model")
def decode(model, params, cache, tokens_BxT, positions_BxT):
  logits_BxTxV, updated = model.apply({
      "params": params,
      "cache": cache
  },
                                      tokens_BxT,
                                      positions_BxT,
                                      decode=True,
                                      mutable=["cache"])
  return logits_BxTxV, updated["cache"]


@functools.partial(jax.jit, static_argnames="model")
def empty_cache(model):
  # Only the cache is returned, so XLA drops the (slow to compile) parameter initializers.
  return model.init(jax.random.PRNGKey(0), jnp.zeros((B, 1), jnp.int32), decode=True)["cache"]


def count(tree) -> int:
  return sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(tree))


@pytest.mark.parametrize("name", CONFIGS)
def test_shapes_and_finite(name):
  cfg = small_config(name)
  logits_BxTxV = forward(Transformer(cfg), random_params(Transformer(cfg)), random_tokens(cfg))
  assert logits_BxTxV.shape == (B, T, cfg.vocab_size)
  assert logits_BxTxV.dtype == jnp.float32
  assert np.all(np.isfinite(logits_BxTxV))


# Between them these two cover every norm, MLP, position kind, tying and GQA; eager (op by op)
# execution is slow to run for all configs.
@pytest.mark.parametrize("name", ["gpt2", "llama"])
def test_without_jit_matches_jit(name):
  cfg = small_config(name)
  model = Transformer(cfg)
  params = random_params(model)
  tokens_BxT = random_tokens(cfg)
  eager_BxTxV = model.apply({"params": params}, tokens_BxT)
  assert eager_BxTxV.shape == (B, T, cfg.vocab_size) and np.all(np.isfinite(eager_BxTxV))
  np.testing.assert_allclose(eager_BxTxV, forward(model, params, tokens_BxT), atol=1e-5, rtol=1e-5)


def test_initialized_model_gives_finite_logits():
  cfg = small_config("llama")
  model = Transformer(cfg)
  tokens_BxT = random_tokens(cfg)
  # The rbg generator compiles much faster on CPU than the default threefry.
  variables = jax.jit(model.init)(jax.random.key(0, impl="rbg"), tokens_BxT)
  logits_BxTxV = forward(model, nn.meta.unbox(variables["params"]), tokens_BxT)
  assert logits_BxTxV.shape == (B, T, cfg.vocab_size)
  assert np.all(np.isfinite(logits_BxTxV))


@pytest.mark.parametrize("name", CONFIGS)
def test_future_tokens_leave_logits_bit_identical(name):
  cfg = small_config(name)
  model = Transformer(cfg)
  params = random_params(model)
  tokens_BxT = random_tokens(cfg, seed=1)
  logits_BxTxV = np.asarray(forward(model, params, tokens_BxT))

  for t in range(T - 1):
    changed_BxT = tokens_BxT.at[:, t + 1:].set((tokens_BxT[:, t + 1:] + 1) % cfg.vocab_size)
    changed_BxTxV = np.asarray(forward(model, params, changed_BxT))
    np.testing.assert_array_equal(changed_BxTxV[:, :t + 1], logits_BxTxV[:, :t + 1])
    assert not np.allclose(changed_BxTxV[:, t + 1:], logits_BxTxV[:, t + 1:])


def logits_with_embedding_offset(model, params, tokens_BxT, offset_BxTxD):
  """The model's logits with `offset` added to the token embeddings (a continuous input)."""

  def add_offset(next_fun, args, kwargs, context):
    out = next_fun(*args, **kwargs)
    if context.module.name == "token_embed" and context.method_name == "__call__":
      out = out + offset_BxTxD.reshape(out.shape).astype(out.dtype)
    return out

  with nn.intercept_methods(add_offset):
    return model.apply({"params": params}, tokens_BxT)


@pytest.mark.parametrize("name", ["gpt2", "llama"])
def test_causality_by_gradients(name):
  """d logits[b, t] / d embedding[b', s] is exactly 0 for s > t or b' != b, nonzero for s <= t."""
  cfg = small_config(name)
  model = Transformer(cfg)
  params = random_params(model)
  tokens_BxT = random_tokens(cfg, seed=2)
  weights_BxTxV = jnp.asarray(
      np.random.default_rng(3).normal(size=(B, T, cfg.vocab_size)), jnp.float32)

  @jax.jit
  def input_gradients(offset_BxTxD):
    forward = lambda o: logits_with_embedding_offset(model, params, tokens_BxT, o)
    _, pullback = jax.vjp(forward, offset_BxTxD)
    # One cotangent per (row, query position): a random weighting of that position's logits.
    eye_BTxBxT = jnp.eye(B * T, dtype=jnp.float32).reshape(B * T, B, T)
    cotangents = eye_BTxBxT[..., None] * weights_BxTxV[None]
    return jax.vmap(pullback)(cotangents)[0]

  grads = np.asarray(input_gradients(jnp.zeros((B, T, cfg.embed_dim))))
  grads_BxTxBxTxD = grads.reshape(B, T, B, T, cfg.embed_dim)
  for b in range(B):
    for t in range(T):
      norms = np.abs(grads_BxTxBxTxD[b, t]).sum(-1)  # [B, T] over the inputs.
      assert np.all(norms[np.arange(B) != b] == 0), f"row {b} depends on other rows"
      assert np.all(norms[b, t + 1:] == 0), f"logits at {t} depend on later positions"
      assert np.all(norms[b, :t + 1] > 0), f"logits at {t} ignore some earlier position"


@pytest.mark.parametrize("prefill", [1, 3])
@pytest.mark.parametrize("name", CONFIGS)
def test_kv_cache_decoding_matches_full_forward(name, prefill):
  """Prefill `prefill` tokens, then one token per call: every position's logits as in one pass."""
  cfg = small_config(name)
  model = Transformer(cfg)
  params = random_params(model)
  tokens_BxT = random_tokens(cfg, seed=4)
  cache = empty_cache(model)
  pieces = []
  for start, end in [(0, prefill)] + [(t, t + 1) for t in range(prefill, T)]:
    positions_BxT = jnp.broadcast_to(jnp.arange(start, end, dtype=jnp.int32), (B, end - start))
    logits_BxTxV, cache = decode(model, params, cache, tokens_BxT[:, start:end], positions_BxT)
    pieces.append(logits_BxTxV)

  assert int(cache["block_0"]["attn"]["index"]) == T
  np.testing.assert_allclose(jnp.concatenate(pieces, axis=1),
                             forward(model, params, tokens_BxT),
                             atol=1e-5,
                             rtol=1e-5)


def test_gpt2_124m_parameter_count():
  # GPT-2 small has biases in every dense layer and LayerNorm, and ties the output to wte.
  cfg = ModelConfig(vocab_size=50257, **{**preset_fields("gpt2-124m"), "use_bias": True})
  assert count(param_shapes(Transformer(cfg))) == 124_439_808


def test_tiny_parameter_count_matches_nanogpt():
  cfg = ModelConfig(vocab_size=65, **preset_fields("tiny"))
  shapes = param_shapes(Transformer(cfg))
  # nanoGPT prints the count without the position table: "number of parameters: 0.80M".
  without_positions = count(shapes) - count(shapes["position_embed"])
  assert without_positions == 795_904
  assert f"{without_positions / 1e6:.2f}M" == "0.80M"
  assert count(shapes) == 804_096


def loss_and_grads(model, params, tokens_BxT):

  def loss(params):
    logits_BxTxV = model.apply({"params": params}, tokens_BxT)
    return jnp.mean(jax.nn.logsumexp(logits_BxTxV, -1) - logits_BxTxV[..., 0])

  return jax.jit(jax.value_and_grad(loss))(params)


@pytest.mark.parametrize("remat", ["none", "full", "save_matmuls"])
@pytest.mark.parametrize("name", ["gpt2", "llama"])
def test_scanned_and_rematerialized_stacks_match_the_unrolled_one(name, remat):
  cfg = small_config(name, num_layers=3)
  unrolled = Transformer(cfg)
  params = random_params(unrolled)
  tokens_BxT = random_tokens(cfg, seed=5)
  expected_loss, expected_grads = loss_and_grads(unrolled, params, tokens_BxT)

  scanned = Transformer(dataclasses.replace(cfg, scan_layers=True, remat=remat))
  assert jax.tree.structure(param_shapes(scanned)) == jax.tree.structure(
      stack_layers(params, cfg.num_layers))
  loss, grads = loss_and_grads(scanned, stack_layers(params, cfg.num_layers), tokens_BxT)
  np.testing.assert_allclose(loss, expected_loss, rtol=1e-6)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6),
               unstack_layers(grads, cfg.num_layers), expected_grads)

  rematted = Transformer(dataclasses.replace(cfg, remat=remat))
  loss, grads = loss_and_grads(rematted, params, tokens_BxT)
  np.testing.assert_allclose(loss, expected_loss, rtol=1e-6)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6), grads,
               expected_grads)


def test_scanned_stack_decodes_with_a_kv_cache():
  cfg = small_config("llama", scan_layers=True)
  model = Transformer(cfg)
  params = stack_layers(random_params(Transformer(small_config("llama"))), cfg.num_layers)
  tokens_BxT = random_tokens(cfg, seed=6)
  cache = empty_cache(model)
  pieces = []
  for start, end in [(0, 3)] + [(t, t + 1) for t in range(3, T)]:
    positions_BxT = jnp.broadcast_to(jnp.arange(start, end, dtype=jnp.int32), (B, end - start))
    logits_BxTxV, cache = decode(model, params, cache, tokens_BxT[:, start:end], positions_BxT)
    pieces.append(logits_BxTxV)
  np.testing.assert_allclose(jnp.concatenate(pieces, axis=1),
                             forward(model, params, tokens_BxT),
                             atol=1e-5,
                             rtol=1e-5)


@pytest.mark.parametrize("name", ["gpt2", "llama"])
def test_packed_sequences_equal_separate_ones(name):
  """Two documents packed in one row, with segment ids and restarting positions, give each
  document the logits it gets alone."""
  cfg = small_config(name)
  model = Transformer(cfg)
  params = random_params(model)
  first, second = random_tokens(cfg, seed=7, shape=(1, 3)), random_tokens(cfg, seed=8,
                                                                           shape=(1, 5))
  packed_1xT = jnp.concatenate([first, second], axis=1)
  segment_ids_1xT = jnp.array([[1, 1, 1, 2, 2, 2, 2, 2]], jnp.int32)
  positions_1xT = jnp.array([[0, 1, 2, 0, 1, 2, 3, 4]], jnp.int32)
  packed = jax.jit(model.apply)({"params": params}, packed_1xT, positions_1xT, segment_ids_1xT)
  np.testing.assert_allclose(packed[:, :3], forward(model, params, first), atol=1e-5, rtol=1e-5)
  np.testing.assert_allclose(packed[:, 3:], forward(model, params, second), atol=1e-5, rtol=1e-5)
