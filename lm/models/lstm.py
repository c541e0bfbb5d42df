"""Recurrent networks in Flax Linen: the LSTM and GRU baselines of the Transformer, as language
models, classifiers and taggers.

Token embedding -> `num_layers` recurrent layers -> logits over the vocabulary (tied to the
embedding or separate), a classifier on a pooled state, or a classifier at every token. Cells:
the LSTM (config.model.architecture='lstm'; Hochreiter & Schmidhuber 1997, with the forget gate
of Gers et al. 2000) or the GRU ('gru'; Cho et al. 2014, in cuDNN's and PyTorch's form, the
reset gate applied to the recurrent term after its matmul). Dropout on the non-recurrent
connections only (Zaremba et al. 2014): the embeddings, between layers and before the output.

Unidirectional (config.model.causal=True): causal by construction, the state at step t has
read tokens 0..t only. Bidirectional (config.model.bidirectional, causal=False): each layer
runs a second recurrence from each row's last real token back to its first (padding, segment
id 0 at a row's end, is never read) and concatenates both states; for classifiers and taggers.

The input projection of all T steps is one [B*T, I] x [I, G] matmul outside the recurrence,
as cuDNN does; only the [B, H] x [H, G] recurrent matmul runs inside the `nn.scan` over time.

Shape letters: B batch, T time, I layer input width, H units, G gates x H (LSTM: input, forget,
cell, output; GRU: reset, update, new, in this order along the kernels' gate axis), V
vocabulary, C classes.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from lm.errors import UserError
from lm.models import layers
from lm.models.config import ModelConfig
from lm.models.layer_groups import LayerGroups
from lm.models.transformer import pool

RECURRENT = ("lstm", "gru")
GATES = {"lstm": 4, "gru": 3}


def layer_widths(cfg: ModelConfig) -> tuple[int, ...]:
  """Units of each layer (per direction): lstm_hidden_dim (0 = embed_dim); the last layer has
  embed_dim units when the language-model output is tied to the embedding."""
  hidden = cfg.lstm_hidden_dim or cfg.embed_dim
  widths = [hidden] * cfg.num_layers
  if _tied(cfg):
    widths[-1] = cfg.embed_dim
  return tuple(widths)


def _tied(cfg: ModelConfig) -> bool:
  return cfg.tie_embeddings and not cfg.num_classes


def _directions(cfg: ModelConfig) -> int:
  return 2 if cfg.bidirectional else 1


def num_params(cfg: ModelConfig) -> int:
  """Parameters of `RNN(cfg)` in closed form: embedding; per layer and direction G (I + H)
  kernels and the biases (LSTM: G; GRU: 2G, input and recurrent); the output projection
  unless tied, or the classifier."""
  gates, directions = GATES[cfg.architecture], _directions(cfg)
  biases = gates if cfg.architecture == "lstm" else 2 * gates
  total = cfg.vocab_size * cfg.embed_dim
  inputs = cfg.embed_dim
  for hidden in layer_widths(cfg):
    total += directions * hidden * (gates * (inputs + hidden) + biases)
    inputs = directions * hidden
  if cfg.num_classes:
    return total + (inputs + 1) * cfg.num_classes
  if not cfg.tie_embeddings:
    total += inputs * cfg.vocab_size
  return total


def matmul_params(cfg: ModelConfig) -> int:
  """Parameters that take part in matrix multiplies (for FLOPs per token): every recurrent
  kernel and the output layer (tied or not) or classifier; not the embedding lookup nor the
  biases."""
  gates, directions = GATES[cfg.architecture], _directions(cfg)
  total, inputs = 0, cfg.embed_dim
  for hidden in layer_widths(cfg):
    total += directions * gates * hidden * (inputs + hidden)
    inputs = directions * hidden
  return total + inputs * (cfg.num_classes or cfg.vocab_size)


def hidden_dim_for(cfg: ModelConfig, target_params: int) -> int:
  """The largest lstm_hidden_dim whose model has at most `target_params` parameters (to compare
  with a Transformer at equal parameter count); UserError if even 1 unit has more."""
  count = lambda hidden: num_params(cfg.replace(lstm_hidden_dim=hidden))
  if count(1) > target_params:
    raise UserError(f"a recurrent network with this vocabulary and embed_dim={cfg.embed_dim} has "
                    f"more than {target_params:,} parameters at any lstm_hidden_dim")
  low, high = 1, 2
  while count(high) <= target_params:
    low, high = high, 2 * high
  while high - low > 1:  # count(low) <= target < count(high)
    middle = (low + high) // 2
    low, high = (middle, high) if count(middle) <= target_params else (low, middle)
  return low


def _recurrent_init(gates: int):
  """An orthogonal [H, H] matrix per gate (Saxe et al. 2014), as Keras and Flax start RNNs."""

  def init(key, shape, dtype=jnp.float32):
    H = shape[0]
    blocks = [nn.initializers.orthogonal()(k, (H, H), dtype) for k in jax.random.split(key, gates)]
    return jnp.concatenate(blocks, axis=1)

  return init


class _Step(nn.Module):
  """One LSTM time step, given the input's share of the gates."""
  config: ModelConfig
  features: int

  @nn.compact
  def __call__(self, carry, gates_in_BxG):
    cfg, H = self.config, self.features
    c_BxH, h_BxH = carry
    kernel_HxG = self.param("kernel", _recurrent_init(4), (H, 4 * H), jnp.dtype(cfg.param_dtype))
    dtype = jnp.dtype(cfg.dtype)
    gates_BxG = (gates_in_BxG + jnp.dot(h_BxH.astype(dtype), kernel_HxG.astype(dtype))).astype(
        jnp.float32)
    i_BxH, f_BxH, g_BxH, o_BxH = jnp.split(gates_BxG, 4, axis=-1)
    c_BxH = nn.sigmoid(f_BxH) * c_BxH + nn.sigmoid(i_BxH) * jnp.tanh(g_BxH)
    h_BxH = nn.sigmoid(o_BxH) * jnp.tanh(c_BxH)
    return (c_BxH, h_BxH), h_BxH


class _GRUStep(nn.Module):
  """One GRU time step: r, z = sigmoid(x W + b + h U + c), n = tanh(x W_n + b_n + r (h U_n +
  c_n)), h' = (1 - z) n + z h."""
  config: ModelConfig
  features: int

  @nn.compact
  def __call__(self, h_BxH, gates_in_BxG):
    cfg, H = self.config, self.features
    kernel_HxG = self.param("kernel", _recurrent_init(3), (H, 3 * H), jnp.dtype(cfg.param_dtype))
    bias_G = self.param("bias", nn.initializers.zeros, (3 * H,), jnp.dtype(cfg.param_dtype))
    dtype = jnp.dtype(cfg.dtype)
    recurrent_BxG = (jnp.dot(h_BxH.astype(dtype), kernel_HxG.astype(dtype)) +
                     bias_G[None, :].astype(dtype)).astype(jnp.float32)
    x_r, x_z, x_n = jnp.split(gates_in_BxG.astype(jnp.float32), 3, axis=-1)
    h_r, h_z, h_n = jnp.split(recurrent_BxG, 3, axis=-1)
    r_BxH, z_BxH = nn.sigmoid(x_r + h_r), nn.sigmoid(x_z + h_z)
    n_BxH = jnp.tanh(x_n + r_BxH * h_n)
    h_BxH = (1.0 - z_BxH) * n_BxH + z_BxH * h_BxH
    return h_BxH, h_BxH


class LSTMLayer(nn.Module):
  """x [B, T, I] -> h [B, T, H] of one recurrence (an LSTM or, with cell='gru', a GRU), from a
  zero state, or, with `decode`, from the state the previous call left in the `cache`
  collection (generation feeds a few tokens at a time)."""
  config: ModelConfig
  features: int
  cell: str = "lstm"

  @nn.compact
  def __call__(self, x_BxTxI: jax.Array, decode: bool = False) -> jax.Array:
    cfg, H = self.config, self.features
    B, T, I = x_BxTxI.shape
    G = GATES[self.cell] * H
    dtype = jnp.dtype(cfg.dtype)
    # LeCun normal (variance 1 / fan-in), the input kernels of Flax's and Keras's RNNs.
    projection = layers.DenseGeneral2D((I, G), ("embed", None),
                                       init_std=I**-0.5,
                                       dtype=dtype,
                                       param_dtype=jnp.dtype(cfg.param_dtype),
                                       name="input")
    # Zero, the LSTM's forget gate's too: a bias of 1 (Jozefowicz et al. 2015) learned
    # Shakespeare characters slower over the first 300 steps (2-layer, 256 units: loss 1.91
    # vs 1.74).
    bias_GxH = self.param("bias", nn.initializers.zeros, (G // H, H), jnp.dtype(cfg.param_dtype))
    gates_NxG = projection(x_BxTxI.reshape(B * T, I)) + bias_GxH.reshape(1, G).astype(dtype)
    zeros = lambda: jnp.zeros((B, H), jnp.float32)
    cached = self.has_variable("cache", "hidden")  # False while the cache is being created.
    hidden = self.variable("cache", "hidden", zeros) if decode else None
    if self.cell == "lstm":
      cell = self.variable("cache", "cell", zeros) if decode else None
      carry = (cell.value, hidden.value) if decode else (zeros(), zeros())
      step = _Step
    else:
      carry, step = (hidden.value if decode else zeros()), _GRUStep
    scan = nn.scan(step, variable_broadcast="params", split_rngs={"params": False}, in_axes=1,
                   out_axes=1)
    carry, h_BxTxH = scan(cfg, H, name="step")(carry, gates_NxG.reshape(B, T, G))
    if decode and cached:
      if self.cell == "lstm":
        cell.value, hidden.value = carry
      else:
        hidden.value = carry
    return h_BxTxH.astype(dtype)


class _Bidirectional(nn.Module):
  """A forward and a backward recurrence over each row's real tokens, states concatenated:
  x [B, T, I] -> [B, T, 2H]; the backward one reads a row from its last real token (lengths_B)
  to its first, and padding positions get the forward pass over them."""
  config: ModelConfig
  features: int
  cell: str

  @nn.compact
  def __call__(self, x_BxTxI: jax.Array, lengths_B: jax.Array) -> jax.Array:
    forward = LSTMLayer(self.config, self.features, self.cell, name="forward")(x_BxTxI)
    reversed_BxT = reverse_indices(lengths_B, x_BxTxI.shape[1])
    flip = lambda a_BxTxD: jnp.take_along_axis(a_BxTxD, reversed_BxT[:, :, None], axis=1)
    backward = flip(LSTMLayer(self.config, self.features, self.cell, name="backward")(
        flip(x_BxTxI)))
    return jnp.concatenate([forward, backward], axis=-1)


def reverse_indices(lengths_B: jax.Array, T: int) -> jax.Array:
  """[B, T]: position t of each row's reversal, lengths_B[b] - 1 - t over its real tokens and t
  itself over the padding after them (an involution: applying it twice is the identity)."""
  t_1xT = jnp.arange(T)[None, :]
  lengths_Bx1 = lengths_B[:, None]
  return jnp.where(t_1xT < lengths_Bx1, lengths_Bx1 - 1 - t_1xT, t_1xT)


class LSTM(nn.Module):
  """tokens [B, T] int -> logits [B, T, V], [B, C] (config.num_classes, pooled by
  config.pooling) or [B, T, C] (pooling='none'); the Transformer's call signature.

  `positions` are ignored (the recurrence knows the order). `segment_ids` mark padding (0) at
  the end of each row, which bidirectional layers and pooling skip; several segments in a row
  (packing), output positions (masked LM) and token types are Transformer features: passing
  the latter two is an error. `decode=True` (unidirectional) carries the state between calls in
  the `cache` collection; `return_hidden` returns the last layer's states [B, T, H].
  """
  config: ModelConfig

  def flops_per_token(self, seq_len: int) -> float:
    """No attention: 6 N over the kernels and the output layer (lm/training/flops.py)."""
    del seq_len
    return 6.0 * matmul_params(self.config)

  def layer_groups(self) -> LayerGroups:
    return LayerGroups(embeddings=("token_embed",),
                       block_prefix=f"{self.config.architecture}_",
                       head=("lm_head", "classifier"),
                       num_layers=self.config.num_layers)

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
    del positions_BxT
    cfg = self.config
    for name, value in (("output positions (masked LM)", output_positions_BxM),
                        ("token types", token_types_BxT)):
      if value is not None:
        raise UserError(f"config.model.architecture={cfg.architecture!r} reads one text per row;"
                        f" {name} need the Transformer (config.model.architecture="
                        f"'transformer')")
    dtype, param_dtype = jnp.dtype(cfg.dtype), jnp.dtype(cfg.param_dtype)
    B, T = tokens_BxT.shape
    lengths_B = (jnp.full((B,), T, jnp.int32) if segment_ids_BxT is None else
                 jnp.sum(segment_ids_BxT != 0, axis=1).astype(jnp.int32))
    token_embed = layers.token_embedding(cfg)
    dropout = nn.Dropout(cfg.dropout, deterministic=deterministic)
    x_BxTxI = dropout(token_embed(tokens_BxT))
    for i, hidden in enumerate(layer_widths(cfg)):
      name = f"{cfg.architecture}_{i}"
      if cfg.bidirectional:
        x_BxTxI = _Bidirectional(cfg, hidden, cfg.architecture, name=name)(x_BxTxI, lengths_B)
      else:
        x_BxTxI = LSTMLayer(cfg, hidden, cfg.architecture, name=name)(x_BxTxI, decode)
      x_BxTxI = dropout(x_BxTxI)
    if return_hidden:
      return x_BxTxI
    if cfg.num_classes:
      per_token = cfg.pooling == "none"  # A label per token: [B, T, C].
      states = x_BxTxI.reshape(B * T, -1) if per_token else pool(x_BxTxI, segment_ids_BxT,
                                                                  cfg.pooling)
      classifier = nn.Dense(cfg.num_classes, dtype=dtype, param_dtype=param_dtype,
                            kernel_init=nn.with_logical_partitioning(
                                nn.initializers.normal(cfg.init_std), ("embed", None)),
                            bias_init=nn.with_logical_partitioning(nn.initializers.zeros,
                                                                   (None,)),
                            name="classifier")
      logits = classifier(states)
      return logits.reshape(B, T, -1) if per_token else logits
    x_NxH = x_BxTxI.reshape(B * T, -1)
    if cfg.tie_embeddings:
      logits_NxV = token_embed.attend(x_NxH)
    else:
      logits_NxV = layers.DenseGeneral2D((x_NxH.shape[-1], cfg.vocab_size), ("embed", "vocab"),
                                         init_std=cfg.init_std,
                                         dtype=dtype,
                                         param_dtype=param_dtype,
                                         name="lm_head")(x_NxH)
    return logits_NxV.reshape(B, T, -1)


RNN = LSTM  # Both cells and directions: the name the class had when it was the LSTM alone.
