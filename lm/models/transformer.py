"""Decoder-only Transformer (GPT-2 / Llama family) in Flax Linen.

Pre-norm residual blocks: x + Attn(Norm(x)), then x + MLP(Norm(x)); a final norm and an
output projection, tied to the token embedding or separate.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from lm.models import layers
from lm.models.attention import CausalSelfAttention
from lm.models.config import ModelConfig


class Mlp(nn.Module):
  """GELU (tanh approximation as GPT-2, or exact erf) or SwiGLU feed-forward layer."""
  config: ModelConfig

  @nn.compact
  def __call__(self, x_NxD: jax.Array) -> jax.Array:
    cfg = self.config
    D, F = cfg.embed_dim, cfg.hidden_dim
    dense = dict(init_std=cfg.init_std,
                 use_bias=cfg.use_bias,
                 dtype=jnp.dtype(cfg.dtype),
                 param_dtype=jnp.dtype(cfg.param_dtype))
    if cfg.mlp == "swiglu":
      gate_up_Nx2F = layers.DenseGeneral2D((D, 2, F), ("embed", None, "mlp"), name="wi",
                                           **dense)(x_NxD)
      gate_NxF, up_NxF = jnp.split(gate_up_Nx2F, 2, axis=-1)
      h_NxF = nn.silu(gate_NxF) * up_NxF
    else:
      h_NxF = layers.DenseGeneral2D((D, F), ("embed", "mlp"), name="wi", **dense)(x_NxD)
      h_NxF = nn.gelu(h_NxF, approximate=cfg.mlp == "gelu")
    proj = dict(dense, init_std=cfg.init_std / (2 * cfg.num_layers)**0.5)
    return layers.DenseGeneral2D((F, D), ("mlp", "embed"), name="wo", **proj)(h_NxF)


class Block(nn.Module):
  config: ModelConfig

  @nn.compact
  def __call__(self,
               x_NxD,
               positions_BxT,
               rope=None,
               *,
               decode: bool = False,
               deterministic: bool = True):
    cfg = self.config
    norm = dict(kind=cfg.norm,
                eps=cfg.norm_eps,
                use_bias=cfg.use_bias,
                dtype=jnp.dtype(cfg.dtype),
                param_dtype=jnp.dtype(cfg.param_dtype))
    dropout = nn.Dropout(cfg.dropout, deterministic=deterministic)
    h_NxD = layers.Norm(name="attn_norm", **norm)(x_NxD)
    h_NxD = CausalSelfAttention(cfg, name="attn")(h_NxD, positions_BxT, rope, decode=decode)
    x_NxD = x_NxD + dropout(h_NxD)
    h_NxD = layers.Norm(name="mlp_norm", **norm)(x_NxD)
    h_NxD = Mlp(cfg, name="mlp")(h_NxD)
    return x_NxD + dropout(h_NxD)


class Transformer(nn.Module):
  """tokens [B, T] int -> logits [B, T, V].

  `positions` default to 0..T-1; generation passes absolute positions with `decode=True`.
  """
  config: ModelConfig

  def setup(self):
    cfg = self.config
    dtype, param_dtype = jnp.dtype(cfg.dtype), jnp.dtype(cfg.param_dtype)
    self.token_embed = layers.Embed(cfg.vocab_size,
                                    cfg.embed_dim,
                                    init_std=cfg.init_std,
                                    dtype=dtype,
                                    param_dtype=param_dtype)
    if cfg.positions == "learned":
      self.position_embed = layers.Embed(cfg.max_len,
                                         cfg.embed_dim,
                                         axes=("position", "embed"),
                                         init_std=cfg.init_std,
                                         dtype=dtype,
                                         param_dtype=param_dtype)
    self.dropout = nn.Dropout(cfg.dropout)
    self.blocks = [Block(cfg, name=f"block_{i}") for i in range(cfg.num_layers)]
    self.final_norm = layers.Norm(cfg.norm, cfg.norm_eps, cfg.use_bias, dtype, param_dtype)
    if not cfg.tie_embeddings:
      self.lm_head = layers.DenseGeneral2D((cfg.embed_dim, cfg.vocab_size), ("embed", "vocab"),
                                           init_std=cfg.init_std,
                                           dtype=dtype,
                                           param_dtype=param_dtype)

  def __call__(self,
               tokens_BxT: jax.Array,
               positions_BxT: jax.Array | None = None,
               *,
               decode: bool = False,
               deterministic: bool = True) -> jax.Array:
    cfg = self.config
    B, T = tokens_BxT.shape
    # Default positions are the same for every row: [1, T] tables are built once and broadcast.
    positions_bxT = jnp.arange(T,
                               dtype=jnp.int32)[None, :] if positions_BxT is None else positions_BxT
    positions_BxT = jnp.broadcast_to(positions_bxT, (B, T))
    x_NxD = self.token_embed(tokens_BxT.reshape(B * T))
    if cfg.positions == "learned":
      x_BxTxD = x_NxD.reshape(B, T, -1) + self.position_embed(positions_bxT)
      x_NxD = x_BxTxD.reshape(B * T, -1)
    # Rotary tables once for all layers, not per layer.
    rope = layers.rope_tables(positions_bxT, cfg.head_dim,
                              cfg.rope_theta) if cfg.positions == "rope" else None
    x_NxD = self.dropout(x_NxD, deterministic=deterministic)
    for block in self.blocks:
      x_NxD = block(x_NxD, positions_BxT, rope, decode=decode, deterministic=deterministic)
    x_NxD = self.final_norm(x_NxD)
    if self.config.tie_embeddings:
      logits_NxV = self.token_embed.attend(x_NxD)
    else:
      logits_NxV = self.lm_head(x_NxD)
    return logits_NxV.reshape(B, T, -1)
