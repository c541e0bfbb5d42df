"""The LSTM language model in Flax Linen: the classic recurrent baseline of the Transformer.

Token embedding -> `num_layers` LSTM layers (Hochreiter & Schmidhuber 1997, with the forget gate
of Gers et al. 2000) -> logits over the vocabulary, tied to the embedding or separate. Dropout
on the non-recurrent connections only (Zaremba et al. 2014): the embeddings, between layers
and before the output. Causal by construction: the state at step t has read tokens 0..t only.

The input projection of all T steps is one [B*T, I] x [I, 4H] matmul outside the recurrence,
as cuDNN does; only the [B, H] x [H, 4H] recurrent matmul runs inside the `nn.scan` over time.

Shape letters: B batch, T time, I layer input width, H LSTM units, G = 4H gates (input, forget,
cell, output, in this order along the kernels' and the bias's gate axis), V vocabulary.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from lm.errors import UserError
from lm.models import layers
from lm.models.config import ModelConfig
from lm.models.layer_groups import LayerGroups

def layer_widths(cfg: ModelConfig) -> tuple[int, ...]:
  """LSTM units of each layer: lstm_hidden_dim (0 = embed_dim); the last layer has embed_dim
  units when the output is tied to the embedding."""
  hidden = cfg.lstm_hidden_dim or cfg.embed_dim
  widths = [hidden] * cfg.num_layers
  if cfg.tie_embeddings:
    widths[-1] = cfg.embed_dim
  return tuple(widths)


def num_params(cfg: ModelConfig) -> int:
  """Parameters of `LSTM(cfg)` in closed form: embedding, per layer 4H (I + H + 1), and the
  output projection unless tied."""
  total = cfg.vocab_size * cfg.embed_dim
  inputs = cfg.embed_dim
  for hidden in layer_widths(cfg):
    total += 4 * hidden * (inputs + hidden + 1)
    inputs = hidden
  if not cfg.tie_embeddings:
    total += inputs * cfg.vocab_size
  return total


def matmul_params(cfg: ModelConfig) -> int:
  """Parameters that take part in matrix multiplies (for FLOPs per token): every LSTM kernel and
  the output projection, tied or not; not the embedding lookup nor the biases."""
  total, inputs = 0, cfg.embed_dim
  for hidden in layer_widths(cfg):
    total += 4 * hidden * (inputs + hidden)
    inputs = hidden
  return total + inputs * cfg.vocab_size


def hidden_dim_for(cfg: ModelConfig, target_params: int) -> int:
  """The largest lstm_hidden_dim whose model has at most `target_params` parameters (to compare
  with a Transformer at equal parameter count); UserError if even 1 unit has more."""
  count = lambda hidden: num_params(cfg.replace(lstm_hidden_dim=hidden))
  if count(1) > target_params:
    raise UserError(f"an LSTM with this vocabulary and embed_dim={cfg.embed_dim} has more than "
                    f"{target_params:,} parameters at any lstm_hidden_dim")
  low, high = 1, 2
  while count(high) <= target_params:
    low, high = high, 2 * high
  while high - low > 1:  # count(low) <= target < count(high)
    middle = (low + high) // 2
    low, high = (middle, high) if count(middle) <= target_params else (low, middle)
  return low


def _recurrent_init(key, shape, dtype=jnp.float32):
  """An orthogonal [H, H] matrix per gate (Saxe et al. 2014), as Keras and Flax start LSTMs."""
  H = shape[0]
  gates = [nn.initializers.orthogonal()(k, (H, H), dtype) for k in jax.random.split(key, 4)]
  return jnp.concatenate(gates, axis=1)


class _Step(nn.Module):
  """One time step of the recurrence, given the input's share of the gates."""
  config: ModelConfig
  features: int

  @nn.compact
  def __call__(self, carry, gates_in_BxG):
    cfg, H = self.config, self.features
    c_BxH, h_BxH = carry
    kernel_HxG = self.param("kernel", _recurrent_init, (H, 4 * H), jnp.dtype(cfg.param_dtype))
    dtype = jnp.dtype(cfg.dtype)
    gates_BxG = (gates_in_BxG + jnp.dot(h_BxH.astype(dtype), kernel_HxG.astype(dtype))).astype(
        jnp.float32)
    i_BxH, f_BxH, g_BxH, o_BxH = jnp.split(gates_BxG, 4, axis=-1)
    c_BxH = nn.sigmoid(f_BxH) * c_BxH + nn.sigmoid(i_BxH) * jnp.tanh(g_BxH)
    h_BxH = nn.sigmoid(o_BxH) * jnp.tanh(c_BxH)
    return (c_BxH, h_BxH), h_BxH


class LSTMLayer(nn.Module):
  """x [B, T, I] -> h [B, T, H], from a zero state, or, with `decode`, from the state the
  previous call left in the `cache` collection (generation feeds a few tokens at a time)."""
  config: ModelConfig
  features: int

  @nn.compact
  def __call__(self, x_BxTxI: jax.Array, decode: bool = False) -> jax.Array:
    cfg, H = self.config, self.features
    B, T, I = x_BxTxI.shape
    dtype = jnp.dtype(cfg.dtype)
    # LeCun normal (variance 1 / fan-in), the input kernels of Flax's and Keras's LSTMs.
    projection = layers.DenseGeneral2D((I, 4 * H), ("embed", None),
                                       init_std=I**-0.5,
                                       dtype=dtype,
                                       param_dtype=jnp.dtype(cfg.param_dtype),
                                       name="input")
    # Zero, the forget gate's too: a bias of 1 (Jozefowicz et al. 2015) learned Shakespeare
    # characters slower over the first 300 steps (2-layer, 256 units: loss 1.91 vs 1.74).
    bias_4xH = self.param("bias", nn.initializers.zeros, (4, H), jnp.dtype(cfg.param_dtype))
    gates_NxG = projection(x_BxTxI.reshape(B * T, I)) + bias_4xH.reshape(1, 4 * H).astype(dtype)
    zeros = lambda: jnp.zeros((B, H), jnp.float32)
    cached = self.has_variable("cache", "cell")  # False while the cache is being created.
    if decode:
      cell = self.variable("cache", "cell", zeros)
      hidden = self.variable("cache", "hidden", zeros)
      carry = (cell.value, hidden.value)
    else:
      carry = (zeros(), zeros())
    scan = nn.scan(_Step,
                   variable_broadcast="params",
                   split_rngs={"params": False},
                   in_axes=1,
                   out_axes=1)
    (c_BxH, h_BxH), h_BxTxH = scan(cfg, H, name="step")(carry, gates_NxG.reshape(B, T, 4 * H))
    if decode and cached:
      cell.value, hidden.value = c_BxH, h_BxH
    return h_BxTxH.astype(dtype)


class LSTM(nn.Module):
  """tokens [B, T] int -> logits [B, T, V]; the Transformer's call signature.

  `positions` are ignored (the recurrence knows the order). Segment ids (packed or padded
  sequences), output positions (masked LM) and token types are Transformer features: passing
  them is an error. `decode=True` carries the state between calls in the `cache` collection;
  `return_hidden` returns the last layer's states [B, T, H] instead of the logits.
  """
  config: ModelConfig

  def flops_per_token(self, seq_len: int) -> float:
    """No attention: 6 N over the kernels and the output layer (lm/training/flops.py)."""
    del seq_len
    return 6.0 * matmul_params(self.config)

  def layer_groups(self) -> LayerGroups:
    return LayerGroups(embeddings=("token_embed",),
                       block_prefix="lstm_",
                       head=("lm_head",),
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
    for name, value in (("segment ids (packed or padded sequences)", segment_ids_BxT),
                        ("output positions (masked LM)", output_positions_BxM),
                        ("token types", token_types_BxT)):
      if value is not None:
        raise UserError(f"config.model.architecture='lstm' reads one unbroken token stream per "
                        f"row; {name} need the Transformer (config.model.architecture="
                        f"'transformer')")
    dtype, param_dtype = jnp.dtype(cfg.dtype), jnp.dtype(cfg.param_dtype)
    B, T = tokens_BxT.shape
    token_embed = layers.token_embedding(cfg)
    dropout = nn.Dropout(cfg.dropout, deterministic=deterministic)
    x_BxTxI = dropout(token_embed(tokens_BxT))
    for i, hidden in enumerate(layer_widths(cfg)):
      x_BxTxI = dropout(LSTMLayer(cfg, hidden, name=f"lstm_{i}")(x_BxTxI, decode))
    if return_hidden:
      return x_BxTxI
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
