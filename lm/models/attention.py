"""Multi-head self-attention (causal or bidirectional) with grouped-query heads, rotary positions
and a KV cache.

Heads are the unit of tensor parallelism: the query and key/value projections are split by
head (column-parallel) and the output projection by its input heads (row-parallel).
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from lm.models import attention_kernels, layers
from lm.models.config import ModelConfig


def attention_scale(cfg: ModelConfig) -> float | None:
  """The scale of the scores: None (1 / sqrt(head_dim)) or 1 (config.scale_attention=False)."""
  return None if cfg.scale_attention else 1.0


class SelfAttention(nn.Module):
  """Self-attention over flat inputs x_NxD reshaped to [B, T, ...] for the attention itself.

  Causal (a decoder) or bidirectional (an encoder) as config.causal says; segment ids keep
  packed sequences, and padding (segment 0), apart.

  With `decode=True` keys and values are appended to a cache of `cache_slots` positions (max_len
  unless config.cache_len says fewer) held in the `cache` collection, so generation processes
  only new tokens (the prompt once, then one token per step).
  """
  config: ModelConfig
  deterministic: bool = True  # No dropout (of LoRA adapters' inputs).

  @nn.compact
  def __call__(self,
               x_NxD: jax.Array,
               positions_BxT: jax.Array,
               rope: tuple[jax.Array, jax.Array] | None = None,
               segment_ids_BxT: jax.Array | None = None,
               *,
               bias_BxHxTxS: jax.Array | None = None,
               decode: bool = False) -> jax.Array:
    """`bias_BxHxTxS`: added to the scores (relative positions); S is the cache's slots when
    decoding."""
    cfg = self.config
    dtype = jnp.dtype(cfg.dtype)
    B, T = positions_BxT.shape
    K, Dh = cfg.kv_heads, cfg.head_dim
    q_BxTxHxDh = _queries(cfg, x_NxD, B, self.deterministic)
    k_BxTxKxDh, v_BxTxKxDh = _keys_values(cfg, x_NxD, B, self.deterministic)

    if cfg.positions == "rope":
      # The Transformer passes tables computed once for all layers (`rope`).
      cos, sin = rope if rope is not None else layers.rope_tables(positions_BxT, cfg)
      q_BxTxHxDh = layers.apply_rope(q_BxTxHxDh, cos, sin)
      k_BxTxKxDh = layers.apply_rope(k_BxTxKxDh, cos, sin)

    implementation = attention_kernels.resolve_implementation(cfg.attention, dtype)
    if decode:
      cache = self._cache_variables(B, K, Dh, k_BxTxKxDh.dtype)
    # Init (creating an empty cache of the batch's shape) takes the plain causal path.
    if decode and not self.is_initializing():
      k_BxKxSxDh, v_BxKxSxDh, mask_BxTxS = self._append_to_cache(cache, k_BxTxKxDh, v_BxTxKxDh)
      out_BxTxHxDh = attention_kernels.cached_attention(q_BxTxHxDh,
                                                        k_BxKxSxDh,
                                                        v_BxKxSxDh,
                                                        mask_BxTxS,
                                                        bias_BxHxTxS=bias_BxHxTxS,
                                                        scale=attention_scale(cfg))
    else:
      out_BxTxHxDh = attention_kernels.dot_product_attention(q_BxTxHxDh,
                                                             k_BxTxKxDh,
                                                             v_BxTxKxDh,
                                                             implementation=implementation,
                                                             segment_ids_BxT=segment_ids_BxT,
                                                             bias_BxHxTxS=bias_BxHxTxS,
                                                             scale=attention_scale(cfg),
                                                             causal=cfg.causal)
    return _output(cfg, out_BxTxHxDh, self.deterministic)

  def _cache_variables(self, B, K, Dh, dtype):
    """Keys and values [B, K, S, Dh] (heads-major: no decoding step transposes the cache)."""
    S = self.config.cache_slots
    return (self.variable("cache", "key", jnp.zeros, (B, K, S, Dh),
                          dtype), self.variable("cache", "value", jnp.zeros, (B, K, S, Dh), dtype),
            self.variable("cache", "index", lambda: jnp.array(0, jnp.int32)))

  def _append_to_cache(self, cache, k_BxTxKxDh, v_BxTxKxDh):
    """Writes the new keys/values at the cache index; returns the whole cache and its mask."""
    cached_k, cached_v, index = cache
    B, T = k_BxTxKxDh.shape[:2]
    S = self.config.cache_slots
    start = index.value
    for cached, new_BxTxKxDh in ((cached_k, k_BxTxKxDh), (cached_v, v_BxTxKxDh)):
      cached.value = jax.lax.dynamic_update_slice(cached.value,
                                                  jnp.swapaxes(new_BxTxKxDh, 1, 2),
                                                  (0, 0, start, 0))
    index.value = start + T
    # Query t (at absolute position start + t) sees cache slots 0 .. start + t.
    query_pos_T = start + jnp.arange(T)
    mask_TxS = jnp.arange(S)[None, :] <= query_pos_T[:, None]
    return cached_k.value, cached_v.value, jnp.broadcast_to(mask_TxS, (B, T, S))


class CrossAttention(nn.Module):
  """Attention of a decoder's positions x_NxD ([B, T] flattened) to the encoder's output
  memory_BxSxD: queries from x, keys and values from the memory, source padding masked.

  With `decode=True` the memory's keys and values are kept in the `cache` collection: the call
  that passes `memory_BxSxD` computes and stores them, later calls (memory None) read them, so
  each decoding step projects only its new queries.
  """
  config: ModelConfig
  deterministic: bool = True  # No dropout (of LoRA adapters' inputs).

  @nn.compact
  def __call__(self,
               x_NxD: jax.Array,
               memory_BxSxD: jax.Array | None,
               source_mask_BxS: jax.Array,
               *,
               decode: bool = False) -> jax.Array:
    cfg = self.config
    B, S = source_mask_BxS.shape
    T = x_NxD.shape[0] // B
    q_BxTxHxDh = _queries(cfg, x_NxD, B, self.deterministic)
    if memory_BxSxD is not None:
      k_BxSxKxDh, v_BxSxKxDh = _keys_values(cfg, memory_BxSxD.reshape(B * S, -1), B,
                                            self.deterministic)
    mask_BxTxS = jnp.broadcast_to(source_mask_BxS[:, None, :], (B, T, S))
    if decode:  # The memory's keys and values, heads-major [B, K, S, Dh], computed once.
      cached_k = self.variable("cache", "key", lambda: jnp.swapaxes(k_BxSxKxDh, 1, 2))
      cached_v = self.variable("cache", "value", lambda: jnp.swapaxes(v_BxSxKxDh, 1, 2))
      if memory_BxSxD is not None:
        cached_k.value = jnp.swapaxes(k_BxSxKxDh, 1, 2)
        cached_v.value = jnp.swapaxes(v_BxSxKxDh, 1, 2)
      out_BxTxHxDh = attention_kernels.cached_attention(q_BxTxHxDh, cached_k.value,
                                                        cached_v.value, mask_BxTxS,
                                                        scale=attention_scale(cfg))
    else:
      out_BxTxHxDh = attention_kernels.dot_product_attention(q_BxTxHxDh,
                                                             k_BxSxKxDh,
                                                             v_BxSxKxDh,
                                                             implementation="xla",
                                                             mask_BxTxS=mask_BxTxS,
                                                             scale=attention_scale(cfg),
                                                             causal=False)
    return _output(cfg, out_BxTxHxDh, self.deterministic)


# Logical axes of per-head activations [B, T, heads, Dh].
_HEADS = ("act_batch", None, "act_heads", None)


def _queries(cfg: ModelConfig, x_NxD: jax.Array, B: int, deterministic: bool) -> jax.Array:
  """The `query` projection of x_NxD as q_BxTxHxDh (built in the calling module)."""
  H, Dh = cfg.num_heads, cfg.head_dim
  q_NxHDh = layers.projection(cfg, "query", (cfg.embed_dim, H, Dh),
                              ("embed", "heads", "head_dim"), deterministic=deterministic)(x_NxD)
  return nn.with_logical_constraint(q_NxHDh.reshape(B, -1, H, Dh), _HEADS)


def _keys_values(cfg: ModelConfig, x_NxD: jax.Array, B: int,
                 deterministic: bool) -> tuple[jax.Array, jax.Array]:
  """Keys and values [B, T, K, Dh] of x_NxD in one matmul (`key_value`); heads outermost, so a
  split over heads stays contiguous."""
  K, Dh = cfg.kv_heads, cfg.head_dim
  kv_NxK2Dh = layers.projection(cfg, "key_value", (cfg.embed_dim, K, 2, Dh),
                                ("embed", "kv_heads", None, "head_dim"),
                                deterministic=deterministic)(x_NxD)
  kv_BxTxKx2xDh = kv_NxK2Dh.reshape(B, -1, K, 2, Dh)
  return (nn.with_logical_constraint(kv_BxTxKx2xDh[:, :, :, 0], _HEADS),
          nn.with_logical_constraint(kv_BxTxKx2xDh[:, :, :, 1], _HEADS))


def _output(cfg: ModelConfig, out_BxTxHxDh: jax.Array, deterministic: bool) -> jax.Array:
  """The `out` projection of the heads' outputs: [N, D]."""
  B, T, H, Dh = out_BxTxHxDh.shape
  out_NxHDh = nn.with_logical_constraint(out_BxTxHxDh, _HEADS).reshape(B * T, H * Dh)
  return layers.projection(cfg,
                           "out", (H, Dh, cfg.embed_dim), ("heads", "head_dim", "embed"),
                           num_input_axes=2,
                           residual=True,
                           deterministic=deterministic)(out_NxHDh)
