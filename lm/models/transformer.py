"""The Transformer in Flax Linen: a decoder (GPT-2 / Llama family) or an encoder (BERT family).

Pre-norm residual blocks: x + Attn(Norm(x)), then x + MLP(Norm(x)), and a final norm (GPT-2,
Llama); or post-norm blocks: Norm(x + Attn(x)), then Norm(x + MLP(x)), after a norm of the
embeddings (BERT). Then either an output projection over the vocabulary (tied to the token
embedding or separate) or a classifier on a pooled vector. Decoder and encoder differ only in
the attention mask (config.causal).
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from lm.models import layers
from lm.models.layer_groups import LayerGroups
from lm.models.attention import SelfAttention
from lm.models.config import TRANSFER, ModelConfig

# config.model.remat -> what a block keeps for the backward pass (None: everything).
REMAT_POLICIES = {
    "none": None,
    "full": jax.checkpoint_policies.nothing_saveable,
    # Matmuls without batch dimensions are the projections (flat [N, D] inputs); attention
    # scores/softmax and elementwise work are recomputed.
    "save_matmuls": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
}
EMBED = ("act_batch", "act_embed")  # Logical axes of the residual stream x_NxD.


ACTIVATIONS = {
    "gelu": lambda x: nn.gelu(x, approximate=True),
    "gelu_exact": lambda x: nn.gelu(x, approximate=False),
    "relu": nn.relu,
    "silu": nn.silu,
    "swiglu": nn.silu,
    "geglu": lambda x: nn.gelu(x, approximate=True),
}


class Mlp(nn.Module):
  """Feed-forward layer: act(x W_i) W_o, or gated act(x W_gate) * (x W_up) W_o (SwiGLU,
  GEGLU), the activation as config.mlp names it.

  Tensor parallel over the hidden units: the input projections are split by column and the
  output projection by row.
  """
  config: ModelConfig
  deterministic: bool = True  # No dropout (of LoRA adapters' inputs).

  @nn.compact
  def __call__(self, x_NxD: jax.Array) -> jax.Array:
    cfg = self.config
    D, F = cfg.embed_dim, cfg.hidden_dim
    flags = dict(deterministic=self.deterministic)
    hidden = ("act_batch", "act_mlp")
    activation = ACTIVATIONS[cfg.mlp]
    if cfg.gated_mlp:
      gate_NxF = layers.projection(cfg, "wi_gate", (D, F), ("embed", "mlp"), **flags)(x_NxD)
      up_NxF = layers.projection(cfg, "wi_up", (D, F), ("embed", "mlp"), **flags)(x_NxD)
      h_NxF = activation(nn.with_logical_constraint(gate_NxF, hidden)) * up_NxF
    else:
      h_NxF = layers.projection(cfg, "wi", (D, F), ("embed", "mlp"), **flags)(x_NxD)
      h_NxF = activation(nn.with_logical_constraint(h_NxF, hidden))
    return layers.projection(cfg, "wo", (F, D), ("mlp", "embed"), residual=True, **flags)(h_NxF)


def norm_options(cfg: ModelConfig) -> dict:
  """The keyword arguments of every layers.Norm of the model."""
  return dict(kind=cfg.norm,
              eps=cfg.norm_eps,
              use_bias=cfg.use_bias,
              dtype=jnp.dtype(cfg.dtype),
              param_dtype=jnp.dtype(cfg.param_dtype))


class Block(nn.Module):
  """x + Attn(Norm(x)), then x + MLP(Norm(x)); post-norm: Norm(x + Attn(x)), then
  Norm(x + MLP(x)). Returns (x, None) when `scanned` (nn.scan)."""
  config: ModelConfig
  decode: bool = False
  deterministic: bool = True
  scanned: bool = False

  @nn.compact
  def __call__(self, x_NxD, positions_BxT, rope=None, segment_ids_BxT=None, bias_BxHxTxS=None):
    cfg = self.config
    dropout = nn.Dropout(cfg.dropout, deterministic=self.deterministic)
    attention = SelfAttention(cfg, self.deterministic, name="attn")
    mlp = Mlp(cfg, self.deterministic, name="mlp")
    attn_norm = layers.Norm(name="attn_norm", **norm_options(cfg))
    mlp_norm = layers.Norm(name="mlp_norm", **norm_options(cfg))
    x_NxD = nn.with_logical_constraint(x_NxD, EMBED)
    if cfg.norm_position == "post":
      h_NxD = attention(x_NxD, positions_BxT, rope, segment_ids_BxT, bias_BxHxTxS=bias_BxHxTxS,
                        decode=self.decode)
      x_NxD = attn_norm(x_NxD + dropout(h_NxD))
      x_NxD = mlp_norm(x_NxD + dropout(mlp(x_NxD)))
    else:
      h_NxD = attention(attn_norm(x_NxD), positions_BxT, rope, segment_ids_BxT,
                        bias_BxHxTxS=bias_BxHxTxS, decode=self.decode)
      x_NxD = x_NxD + dropout(h_NxD)
      x_NxD = x_NxD + dropout(mlp(mlp_norm(x_NxD)))
    x_NxD = nn.with_logical_constraint(x_NxD, EMBED)
    return (x_NxD, None) if self.scanned else x_NxD


class Transformer(nn.Module):
  """tokens [B, T] int -> logits [B, T, V], or [B, C] with a classifier (config.num_classes),
  or [B, T, C] with a token classifier (num_classes and pooling='none').

  `positions` default to 0..T-1; generation passes absolute positions with `decode=True`.
  `output_positions` [B, M] computes the vocabulary logits [B, M, V] at those positions only
  (masked LM predicts ~15% of the tokens; the output layer is a large share of the FLOPs).
  `segment_ids` [B, T] mark packed sequences: a token attends only within its own segment.
  Padding has segment id 0: the classifier pools only over tokens with nonzero ids.
  `token_types` [B, T] index the token-type embeddings (config.type_vocab_size; default 0).
  `return_hidden` returns the final hidden states [B, T, D] instead of the head's output.
  A classifier sows its pooled vector as 'intermediates' TRANSFER (through the training-only
  `transfer_projection` when config.transfer_width is set): apply with
  mutable=['intermediates'] to read it (distillation's hidden-state transfer).
  """
  config: ModelConfig

  def flops_per_token(self, seq_len: int) -> float:
    """6 N + 12 L T D (lm/training/flops.py), N the matmul parameters of the blocks and of the
    head in use: the vocabulary projection (tied or not), or a classifier (and BERT's pooler)."""
    cfg = self.config
    D, L, F = cfg.embed_dim, cfg.num_layers, cfg.hidden_dim
    q_out, kv_out = cfg.num_heads * cfg.head_dim, 2 * cfg.kv_heads * cfg.head_dim
    mlp_in = 2 * F if cfg.gated_mlp else F
    per_layer = D * (q_out + kv_out) + q_out * D + D * mlp_in + F * D
    if cfg.num_classes:
      head = D * cfg.num_classes + (D * D if cfg.pooler and cfg.pooling != "none" else 0)
    else:
      head = D * cfg.vocab_size + (D * D if cfg.head_transform else 0)
    return 6.0 * (L * per_layer + head) + 12.0 * L * seq_len * D

  def layer_groups(self) -> LayerGroups:
    return LayerGroups(embeddings=("token_embed", "position_embed", "type_embed", "embed_norm"),
                       block_prefix="block_",
                       scanned="blocks",
                       head=("final_norm", "head_transform", "head_norm", "lm_head",
                             "output_bias", "pooler", "classifier", "transfer_projection"),
                       num_layers=self.config.num_layers,
                       task_inputs=("type_embed",))

  @nn.compact
  def __call__(self,
               tokens_BxT: jax.Array,
               positions_BxT: jax.Array | None = None,
               segment_ids_BxT: jax.Array | None = None,
               output_positions_BxM: jax.Array | None = None,
               token_types_BxT: jax.Array | None = None,
               *,
               decode: bool = False,
               deterministic: bool = True,
               return_hidden: bool = False) -> jax.Array:
    cfg = self.config
    dtype, param_dtype = jnp.dtype(cfg.dtype), jnp.dtype(cfg.param_dtype)
    B, T = tokens_BxT.shape
    # Default positions are the same for every row: [1, T] tables are built once and broadcast.
    positions_bxT = jnp.arange(T,
                               dtype=jnp.int32)[None, :] if positions_BxT is None else positions_BxT
    positions_BxT = jnp.broadcast_to(positions_bxT, (B, T))
    token_embed = layers.token_embedding(cfg)
    x_NxD = token_embed(tokens_BxT.reshape(B * T))
    if cfg.positions == "learned":
      position_embed = layers.Embed(cfg.max_len,
                                    cfg.embed_dim,
                                    axes=("position", "embed"),
                                    init_std=cfg.init_std,
                                    dtype=dtype,
                                    param_dtype=param_dtype,
                                    name="position_embed")
      x_BxTxD = x_NxD.reshape(B, T, -1) + position_embed(positions_bxT)
      x_NxD = x_BxTxD.reshape(B * T, -1)
    if cfg.type_vocab_size:
      type_embed = layers.Embed(cfg.type_vocab_size,
                                cfg.embed_dim,
                                axes=(None, "embed"),
                                init_std=cfg.init_std,
                                dtype=dtype,
                                param_dtype=param_dtype,
                                name="type_embed")
      types_BxT = (jnp.zeros((B, T), jnp.int32) if token_types_BxT is None else token_types_BxT)
      x_NxD = x_NxD + type_embed(types_BxT.reshape(B * T))
    if cfg.norm_position == "post" and cfg.embed_norm:
      x_NxD = layers.Norm(name="embed_norm", **norm_options(cfg))(x_NxD)
    # Rotary tables once for all layers, not per layer.
    rope = layers.rope_tables(positions_bxT, cfg) if cfg.positions == "rope" else None
    x_NxD = nn.Dropout(cfg.dropout)(x_NxD, deterministic=deterministic)
    x_NxD = self._blocks(x_NxD, positions_BxT, rope, segment_ids_BxT, decode, deterministic)
    if cfg.norm_position == "pre":
      x_NxD = layers.Norm(name="final_norm", **norm_options(cfg))(x_NxD)
    if return_hidden:
      return x_NxD.reshape(B, T, -1)
    if output_positions_BxM is not None:  # Logits only where predicted (masked LM): [B, M, V].
      x_BxTxD = x_NxD.reshape(B, T, -1)
      x_BxMxD = jnp.take_along_axis(x_BxTxD, output_positions_BxM[:, :, None], axis=1)
      B, T = output_positions_BxM.shape
      x_NxD = x_BxMxD.reshape(B * T, -1)
    if cfg.num_classes and cfg.pooling == "none":  # A label per token: [B, T, C].
      x_NxD = nn.Dropout(cfg.dropout)(x_NxD, deterministic=deterministic)
      return self._dense(cfg.num_classes, "classifier")(x_NxD).reshape(B, T, -1)
    if cfg.num_classes:
      pooled_BxD = pool(x_NxD.reshape(B, T, -1), segment_ids_BxT, cfg.pooling)
      transfer_BxW = (self._dense(cfg.transfer_width, "transfer_projection")(pooled_BxD)
                      if cfg.transfer_width else pooled_BxD)
      self.sow("intermediates", TRANSFER, transfer_BxW)  # Kept only when asked for (mutable).
      if cfg.pooler:
        pooled_BxD = jnp.tanh(self._dense(cfg.embed_dim, "pooler")(pooled_BxD))
      pooled_BxD = nn.Dropout(cfg.dropout)(pooled_BxD, deterministic=deterministic)
      return self._dense(cfg.num_classes, "classifier")(pooled_BxD)
    if cfg.head_transform:
      x_NxD = self._dense(cfg.embed_dim, "head_transform")(x_NxD)
      x_NxD = ACTIVATIONS[cfg.mlp](x_NxD)
      x_NxD = layers.Norm(name="head_norm", **norm_options(cfg))(x_NxD)
    logits_NxV = layers.vocabulary_logits(self, cfg, token_embed, x_NxD)
    return logits_NxV.reshape(B, T, -1)

  def _dense(self, features: int, name: str) -> nn.Dense:
    """A dense layer of the head (classifier, pooler, masked-LM transform) on [N, D] inputs."""
    cfg = self.config
    return nn.Dense(features,
                    dtype=jnp.dtype(cfg.dtype),
                    param_dtype=jnp.dtype(cfg.param_dtype),
                    kernel_init=nn.with_logical_partitioning(nn.initializers.normal(cfg.init_std),
                                                             ("embed", None)),
                    bias_init=nn.with_logical_partitioning(nn.initializers.zeros, (None,)),
                    name=name)

  def _blocks(self, x_NxD, positions_BxT, rope, segment_ids_BxT, decode, deterministic):
    """The layer stack: L blocks `block_{i}`, or one block scanned over stacked `blocks`."""
    cfg = self.config
    block_cls = Block
    if cfg.remat != "none":
      # Under scan, CSE across iterations is impossible anyway; prevent_cse costs speed.
      block_cls = nn.remat(Block, policy=REMAT_POLICIES[cfg.remat], prevent_cse=not cfg.scan_layers)
    flags = dict(decode=decode, deterministic=deterministic)
    if cfg.scan_layers:
      stack = nn.scan(block_cls,
                      variable_axes={
                          "params": 0,
                          "cache": 0
                      },
                      split_rngs={
                          "params": True,
                          "dropout": True
                      },
                      in_axes=(nn.broadcast, nn.broadcast, nn.broadcast),
                      length=cfg.num_layers,
                      metadata_params={nn.PARTITION_NAME: "layers"})
      x_NxD, _ = stack(cfg, scanned=True, name="blocks", **flags)(x_NxD, positions_BxT, rope,
                                                                  segment_ids_BxT)
      return x_NxD
    for i in range(cfg.num_layers):
      x_NxD = block_cls(cfg, name=f"block_{i}", **flags)(x_NxD, positions_BxT, rope,
                                                         segment_ids_BxT)
    return x_NxD


def pool(x_BxTxD: jax.Array, segment_ids_BxT: jax.Array | None, pooling: str) -> jax.Array:
  """One vector per sequence: the first token ('cls'), the mean of the non-padding tokens
  ('mean') or the last non-padding token ('last'); padding is segment id 0."""
  B, T, _ = x_BxTxD.shape
  real_BxT = (jnp.ones((B, T), jnp.bool_) if segment_ids_BxT is None else segment_ids_BxT != 0)
  if pooling == "cls":
    return x_BxTxD[:, 0]
  if pooling == "mean":
    weights_BxTx1 = real_BxT.astype(jnp.float32)[:, :, None]
    total_BxD = jnp.sum(x_BxTxD.astype(jnp.float32) * weights_BxTx1, axis=1)
    count_Bx1 = jnp.maximum(jnp.sum(weights_BxTx1, axis=1), 1.0)
    return (total_BxD / count_Bx1).astype(x_BxTxD.dtype)
  last_B = jnp.maximum(jnp.sum(real_BxT, axis=1) - 1, 0)
  return jnp.take_along_axis(x_BxTxD, last_B[:, None, None], axis=1)[:, 0]


def stack_layers(params: dict, num_layers: int) -> dict:
  """Parameters of the unrolled stack (`block_{i}`) -> the scanned layout (`blocks`, [L, ...])."""
  return _groups(num_layers).stacked(params)


def unstack_layers(params: dict, num_layers: int) -> dict:
  """The scanned layout (`blocks`, [L, ...]) -> parameters of the unrolled stack."""
  return _groups(num_layers).unstacked(params)


def _groups(num_layers: int) -> LayerGroups:
  return Transformer(ModelConfig(vocab_size=1, num_layers=num_layers)).layer_groups()

