"""SelfAttention against a float64 NumPy reference written independently of the model."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lm.models.attention import SelfAttention
from lm.models.config import ModelConfig

B, T = 2, 7


@pytest.fixture(autouse=True, scope="module")
def strict_rank_promotion():
  with jax.numpy_rank_promotion("raise"):
    yield


def random_params(cfg: ModelConfig, seed: int):
  """The module's parameter tree, refilled with O(1/sqrt(fan_in)) values (biases too).

  The default init (std 0.02, zero biases) would make attention almost uniform and leave the
  biases untested.
  """
  module = SelfAttention(cfg)
  x_NxD = jnp.zeros((B * T, cfg.embed_dim))
  positions_BxT = jnp.zeros((B, T), jnp.int32)
  shapes = jax.eval_shape(module.init, jax.random.PRNGKey(0), x_NxD, positions_BxT)["params"]
  rng = np.random.default_rng(seed)
  leaves, treedef = jax.tree.flatten(nn.meta.unbox(shapes))
  scale = 1.5 / np.sqrt(cfg.embed_dim)
  leaves = [jnp.asarray(rng.normal(0.0, scale, leaf.shape), jnp.float32) for leaf in leaves]
  return jax.tree.unflatten(treedef, leaves)


def rotate_half_rope(x_BxTxHxDh: np.ndarray, positions_BxT: np.ndarray, theta: float):
  """RoPE as in GPT-NeoX / Llama: x * cos + rotate_half(x) * sin, with duplicated frequencies."""
  Dh = x_BxTxHxDh.shape[-1]
  half = Dh // 2
  freqs = np.array([theta**(-2.0 * i / Dh) for i in range(half)])
  angles_BxTxDh = np.concatenate([positions_BxT[..., None] * freqs] * 2, axis=-1)
  cos_BxTx1xDh = np.cos(angles_BxTxDh)[:, :, None, :]
  sin_BxTx1xDh = np.sin(angles_BxTxDh)[:, :, None, :]
  rotated = np.concatenate([-x_BxTxHxDh[..., half:], x_BxTxHxDh[..., :half]], axis=-1)
  return x_BxTxHxDh * cos_BxTx1xDh + rotated * sin_BxTx1xDh


def reference_attention(params, x_BxTxD: np.ndarray, positions_BxT: np.ndarray,
                        cfg: ModelConfig) -> np.ndarray:
  """Causal multi-head attention in float64 with explicit loops over batch, heads and queries."""
  p = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
  x = x_BxTxD.astype(np.float64)
  H, K, Dh = cfg.num_heads, cfg.kv_heads, cfg.head_dim
  q_BxTxHxDh = np.einsum("btd,dhe->bthe", x, p["query"]["kernel"])
  kv_BxTxKx2xDh = np.einsum("btd,dkce->btkce", x, p["key_value"]["kernel"])
  if cfg.use_bias:
    q_BxTxHxDh = q_BxTxHxDh + p["query"]["bias"]
    kv_BxTxKx2xDh = kv_BxTxKx2xDh + p["key_value"]["bias"]
  k_BxTxKxDh, v_BxTxKxDh = kv_BxTxKx2xDh[:, :, :, 0], kv_BxTxKx2xDh[:, :, :, 1]
  if cfg.positions == "rope":
    q_BxTxHxDh = rotate_half_rope(q_BxTxHxDh, positions_BxT, cfg.rope_theta)
    k_BxTxKxDh = rotate_half_rope(k_BxTxKxDh, positions_BxT, cfg.rope_theta)
  # Grouped-query attention: query head h reads key/value head h // (H / K).
  k_BxTxHxDh = np.repeat(k_BxTxKxDh, H // K, axis=2)
  v_BxTxHxDh = np.repeat(v_BxTxKxDh, H // K, axis=2)
  out_BxTxHxDh = np.zeros_like(q_BxTxHxDh)
  for b in range(x.shape[0]):
    for h in range(H):
      for t in range(x.shape[1]):
        scores = k_BxTxHxDh[b, :t + 1, h] @ q_BxTxHxDh[b, t, h] / np.sqrt(Dh)
        weights = np.exp(scores - scores.max())
        weights /= weights.sum()
        out_BxTxHxDh[b, t, h] = weights @ v_BxTxHxDh[b, :t + 1, h]
  out_BxTxD = np.einsum("bthe,hed->btd", out_BxTxHxDh, p["out"]["kernel"])
  if cfg.use_bias:
    out_BxTxD = out_BxTxD + p["out"]["bias"]
  return out_BxTxD


HEADS = [  # (num_heads, num_kv_heads, embed_dim)
    pytest.param(4, 4, 32, id="mha"),
    pytest.param(4, 2, 32, id="gqa4/2"),
    pytest.param(6, 3, 48, id="gqa6/3"),
    pytest.param(6, 1, 48, id="mqa6/1"),
]


@pytest.mark.parametrize("use_bias", [False, True], ids=["nobias", "bias"])
@pytest.mark.parametrize("positions", ["learned", "rope"])
@pytest.mark.parametrize("num_heads,num_kv_heads,embed_dim", HEADS)
def test_matches_reference(num_heads, num_kv_heads, embed_dim, positions, use_bias):
  cfg = ModelConfig(vocab_size=11,
                    num_layers=1,
                    num_heads=num_heads,
                    num_kv_heads=num_kv_heads,
                    embed_dim=embed_dim,
                    max_len=16,
                    positions=positions,
                    use_bias=use_bias)
  params = random_params(cfg, seed=num_heads * 10 + num_kv_heads)
  rng = np.random.default_rng(1)
  x_BxTxD = rng.normal(size=(B, T, embed_dim)).astype(np.float32)
  # Offset and different per row, so RoPE sees absolute positions other than 0..T-1.
  positions_BxT = np.stack([np.arange(T), np.arange(T) + 5]).astype(np.int32)

  out_NxD = jax.jit(SelfAttention(cfg).apply)({
      "params": params
  }, jnp.asarray(x_BxTxD.reshape(B * T, -1)), jnp.asarray(positions_BxT))

  assert out_NxD.dtype == jnp.float32
  expected = reference_attention(params, x_BxTxD, positions_BxT, cfg)
  np.testing.assert_allclose(np.asarray(out_NxD).reshape(B, T, -1), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("positions", ["learned", "rope"])
def test_decode_matches_reference(positions):
  """Prefilling 3 tokens, then feeding one token per call, reproduces the causal reference."""
  cfg = ModelConfig(vocab_size=11,
                    num_layers=1,
                    num_heads=4,
                    num_kv_heads=2,
                    embed_dim=32,
                    max_len=16,
                    positions=positions,
                    use_bias=True)
  params = random_params(cfg, seed=3)
  x_BxTxD = np.random.default_rng(2).normal(size=(B, T, cfg.embed_dim)).astype(np.float32)
  positions_BxT = np.broadcast_to(np.arange(T, dtype=np.int32), (B, T))
  module = SelfAttention(cfg)
  # Only the (empty) cache is returned, so jit drops the slow random init of the parameters.
  cache = jax.jit(lambda: module.init(jax.random.PRNGKey(0),
                                      jnp.zeros((B, cfg.embed_dim)),
                                      jnp.zeros((B, 1), jnp.int32),
                                      decode=True)["cache"])()
  apply = jax.jit(module.apply, static_argnames=("decode", "mutable"))

  outputs = []
  for start, end in [(0, 3)] + [(t, t + 1) for t in range(3, T)]:
    out_NxD, updated = apply({
        "params": params,
        "cache": cache
    },
                             jnp.asarray(x_BxTxD[:, start:end].reshape(-1, 32)),
                             jnp.asarray(positions_BxT[:, start:end]),
                             decode=True,
                             mutable=("cache",))
    cache = updated["cache"]
    outputs.append(np.asarray(out_NxD).reshape(B, end - start, -1))

  assert int(cache["index"]) == T
  expected = reference_attention(params, x_BxTxD, positions_BxT, cfg)
  np.testing.assert_allclose(np.concatenate(outputs, axis=1), expected, atol=1e-5, rtol=1e-5)
