"""The encoder–decoder Transformer (Vaswani et al. 2017; the T5, BART and Marian family).

The encoder is the Transformer's blocks with bidirectional attention over the source; each
decoder block adds a cross-attention sublayer between its causal self-attention and its MLP:
x + SelfAttn(Norm(x)), x + CrossAttn(Norm(x), memory), x + MLP(Norm(x)) (pre-norm, T5), or
Norm(x + f(x)) after each (post-norm, BART and Marian). One token embedding serves source,
target and (tied) output; positions are a learned table per side (BART), fixed sinusoids
(Marian), or T5's relative position buckets: a learned bias per bucket and head, one table per
side shared by all its self-attention layers. Blocks are `block_0 .. block_{L-1}` for the encoder's L = num_layers, then
`block_L ..` for the decoder's num_decoder_layers, bottom to top.

Generation encodes the source once (`source` given, `decode=True`: the cross-attention keys and
values and the source mask go into the `cache` collection) and then feeds one target token a
step (`source=None`), the decoder's self-attention keys and values growing in the cache.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from lm.models import layers
from lm.models.attention import CrossAttention, SelfAttention
from lm.models.config import ModelConfig
from lm.models.layer_groups import LayerGroups
from lm.models.transformer import EMBED, Block, Mlp, norm_options


class DecoderBlock(nn.Module):
  """Causal self-attention, cross-attention to the encoder's memory, MLP; pre- or post-norm."""
  config: ModelConfig
  decode: bool = False
  deterministic: bool = True

  @nn.compact
  def __call__(self, x_NxD, positions_BxT, segment_ids_BxT, memory_BxSxD, source_mask_BxS,
               bias_BxHxTxS=None):
    cfg = self.config
    dropout = nn.Dropout(cfg.dropout, deterministic=self.deterministic)
    sublayers = (
        (SelfAttention(cfg, self.deterministic, name="attn"),
         lambda f, h: f(h, positions_BxT, None, segment_ids_BxT, bias_BxHxTxS=bias_BxHxTxS,
                        decode=self.decode)),
        (CrossAttention(cfg, self.deterministic, name="cross_attn"),
         lambda f, h: f(h, memory_BxSxD, source_mask_BxS, decode=self.decode)),
        (Mlp(cfg, self.deterministic, name="mlp"), lambda f, h: f(h)),
    )
    norms = [layers.Norm(name=name, **norm_options(cfg))
             for name in ("attn_norm", "cross_norm", "mlp_norm")]
    x_NxD = nn.with_logical_constraint(x_NxD, EMBED)
    for (module, call), norm in zip(sublayers, norms):
      if cfg.norm_position == "post":
        x_NxD = norm(x_NxD + dropout(call(module, x_NxD)))
      else:
        x_NxD = x_NxD + dropout(call(module, norm(x_NxD)))
    return nn.with_logical_constraint(x_NxD, EMBED)


class EncoderDecoder(nn.Module):
  """source tokens [B, S] and decoder input tokens [B, T] -> logits [B, T, V].

  `source_segments` [B, S] / `target_segments` [B, T]: 0 marks padding (nonzero: a real
  token); default all real. `target` defaults to the source (initialization). With
  `decode=True`, `target_positions` [B, T] are the tokens' absolute positions, and
  `source=None` reads the encoded source from the cache (see the module docstring).
  """
  config: ModelConfig

  def layer_groups(self) -> LayerGroups:
    cfg = self.config
    return LayerGroups(embeddings=("token_embed", "source_position_embed",
                                   "target_position_embed", "source_embed_norm",
                                   "target_embed_norm", "source_relative_bias",
                                   "target_relative_bias"),
                       block_prefix="block_",
                       head=("encoder_norm", "decoder_norm", "lm_head", "output_bias"),
                       num_layers=cfg.num_layers + cfg.decoder_layers)

  def flops_per_token(self, seq_len: int) -> float:
    """Training FLOPs per target token, the source as long as the target (`seq_len` each):
    6 N + 12 L T D as for the Transformer, with the cross-attention's projections and scores."""
    cfg = self.config
    D, F, T = cfg.embed_dim, cfg.hidden_dim, seq_len
    q_out, kv_out = cfg.num_heads * cfg.head_dim, 2 * cfg.kv_heads * cfg.head_dim
    mlp_in = 2 * F if cfg.gated_mlp else F
    attention = D * (q_out + kv_out) + q_out * D
    mlp = D * mlp_in + F * D
    matmuls = (cfg.num_layers * (attention + mlp) + cfg.decoder_layers * (2 * attention + mlp) +
               D * cfg.vocab_size)
    scores = 12.0 * (cfg.num_layers + 2 * cfg.decoder_layers) * T * D
    return 6.0 * matmuls + scores

  @nn.compact
  def __call__(self,
               source_BxS: jax.Array | None,
               target_BxT: jax.Array | None = None,
               source_segments_BxS: jax.Array | None = None,
               target_segments_BxT: jax.Array | None = None,
               target_positions_BxT: jax.Array | None = None,
               *,
               decode: bool = False,
               deterministic: bool = True) -> jax.Array:
    cfg = self.config
    target_BxT = source_BxS if target_BxT is None else target_BxT
    token_embed = layers.token_embedding(cfg)
    dropout = nn.Dropout(cfg.dropout, deterministic=deterministic)
    memory_BxSxD = None
    if source_BxS is not None:
      B, S = source_BxS.shape
      source_mask_BxS = (jnp.ones((B, S), jnp.bool_)
                         if source_segments_BxS is None else source_segments_BxS != 0)
      x_NxD = self._embed(token_embed, source_BxS, None, "source")
      x_NxD = dropout(x_NxD)
      encoder_cfg = cfg.replace(causal=False)
      segments_BxS = source_mask_BxS.astype(jnp.int32)  # Padding (0) sees only padding.
      positions_BxS = jnp.broadcast_to(jnp.arange(S, dtype=jnp.int32), (B, S))
      bias_BxHxSxS = self._relative_bias("source", positions_BxS, S)
      for i in range(cfg.num_layers):
        x_NxD = Block(encoder_cfg, deterministic=deterministic, name=f"block_{i}")(
            x_NxD, positions_BxS, None, segments_BxS, bias_BxHxSxS)
      if cfg.norm_position == "pre":
        x_NxD = layers.Norm(name="encoder_norm", **norm_options(cfg))(x_NxD)
      memory_BxSxD = x_NxD.reshape(B, S, -1)
    if decode:  # The source mask of the cached memory, for the steps after the first.
      cached_mask = self.variable("cache", "source_mask", lambda: source_mask_BxS)
      if source_BxS is not None:
        cached_mask.value = source_mask_BxS
      source_mask_BxS = cached_mask.value

    B, T = target_BxT.shape
    positions_BxT = (jnp.broadcast_to(jnp.arange(T, dtype=jnp.int32), (B, T))
                     if target_positions_BxT is None else target_positions_BxT)
    x_NxD = dropout(self._embed(token_embed, target_BxT, positions_BxT, "target"))
    decoder_cfg = cfg.replace(causal=True)
    # Decoding attends to the whole KV cache; initialization to the T tokens.
    keys = cfg.cache_slots if decode and not self.is_initializing() else T
    bias_BxHxTxS = self._relative_bias("target", positions_BxT, keys)
    for i in range(cfg.decoder_layers):
      x_NxD = DecoderBlock(decoder_cfg,
                           decode=decode,
                           deterministic=deterministic,
                           name=f"block_{cfg.num_layers + i}")(x_NxD, positions_BxT,
                                                               target_segments_BxT,
                                                               memory_BxSxD, source_mask_BxS,
                                                               bias_BxHxTxS)
    if cfg.norm_position == "pre":
      x_NxD = layers.Norm(name="decoder_norm", **norm_options(cfg))(x_NxD)
    if cfg.scale_tied_output:
      x_NxD = x_NxD * jnp.asarray(cfg.embed_dim**-0.5, x_NxD.dtype)
    logits_NxV = layers.vocabulary_logits(self, cfg, token_embed, x_NxD)
    return logits_NxV.reshape(B, T, -1)

  def _embed(self, token_embed, tokens_BxT, positions_BxT, side: str) -> jax.Array:
    """Token embeddings (scaled by sqrt(D) with config.scale_embeddings) plus absolute
    positions, and a norm under post-norm (BART's layernorm_embedding, config.embed_norm):
    x_NxD."""
    cfg = self.config
    B, T = tokens_BxT.shape
    x_BxTxD = token_embed(tokens_BxT.reshape(B * T)).reshape(B, T, -1)
    if cfg.scale_embeddings:
      x_BxTxD = x_BxTxD * jnp.asarray(cfg.embed_dim**0.5, x_BxTxD.dtype)
    if positions_BxT is None:
      positions_BxT = jnp.arange(T, dtype=jnp.int32)[None, :]
    if cfg.positions == "learned":
      x_BxTxD = x_BxTxD + layers.Embed(cfg.max_len,
                                       cfg.embed_dim,
                                       axes=("position", "embed"),
                                       init_std=cfg.init_std,
                                       dtype=jnp.dtype(cfg.dtype),
                                       param_dtype=jnp.dtype(cfg.param_dtype),
                                       name=f"{side}_position_embed")(positions_BxT)
    elif cfg.positions == "sinusoidal":
      x_BxTxD = x_BxTxD + layers.sinusoidal_positions(positions_BxT,
                                                      cfg.embed_dim).astype(x_BxTxD.dtype)
    x_NxD = x_BxTxD.reshape(B * T, -1)
    if cfg.norm_position == "post" and cfg.embed_norm:
      x_NxD = layers.Norm(name=f"{side}_embed_norm", **norm_options(cfg))(x_NxD)
    return x_NxD

  def _relative_bias(self, side: str, query_positions_BxT: jax.Array,
                     num_keys: int) -> jax.Array | None:
    """T5's position bias [B, H, T, num_keys] of `side`'s self-attention (keys at 0 ..
    num_keys-1; bidirectional on the source, causal on the target); None without
    positions='relative'."""
    cfg = self.config
    if cfg.positions != "relative":
      return None
    span = max(cfg.max_len, num_keys, query_positions_BxT.shape[1])
    buckets_R = jnp.asarray(layers.relative_position_buckets(span, side == "source",
                                                             cfg.relative_buckets,
                                                             cfg.relative_max_distance))
    relative_BxTxS = (jnp.arange(num_keys, dtype=jnp.int32)[None, None, :] -
                      query_positions_BxT[:, :, None])
    table = layers.Embed(cfg.relative_buckets,
                         cfg.num_heads,
                         axes=(None, "heads"),
                         init_std=cfg.init_std,
                         dtype=jnp.dtype(cfg.dtype),
                         param_dtype=jnp.dtype(cfg.param_dtype),
                         name=f"{side}_relative_bias")
    bias_BxTxSxH = table(buckets_R[relative_BxTxS + span])
    return jnp.transpose(bias_BxTxSxH, (0, 3, 1, 2))
