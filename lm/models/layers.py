"""Building blocks of the Transformer: dense projections, norms, embeddings, rotary positions.

Activations in the residual stream are kept flat as [N, D] with N = B * T: on XLA:CPU a matmul
on a 2-D input runs markedly faster forward+backward than the same one on [B, T, D] (see
shared PERF-NOTES), and on accelerators it costs nothing.

Shape letters: B batch, T query length, S key length, N = B*T, D embed, H query heads,
K key/value heads, Dh head dim, F MLP hidden, V vocabulary.
Every parameter carries logical axis names (`embed`, `heads`, `kv_heads`, `head_dim`, `mlp`,
`vocab`, `position`) that a rule table maps onto the device mesh.
"""

import math
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np


def normal_init(std: float, axes: Sequence[str | None]):
  return nn.with_logical_partitioning(nn.initializers.normal(std), tuple(axes))


class DenseGeneral2D(nn.Module):
  """y = x @ W (+ b) for flat x_NxIn, with W stored in the shape of `kernel_shape`.

  The kernel keeps its structured shape (e.g. [D, H, Dh]) so that each axis can be sharded by
  its logical name; it is reshaped to 2-D only for the matmul. With `lora_rank` r > 0 a LoRA
  adapter (Hu et al. 2021) adds (alpha / r) * dropout(x) @ A @ B, with A [In, r] drawn from a
  normal distribution and B [r, Out] starting at zero, so training starts from the base model.
  """
  kernel_shape: tuple[int, ...]
  kernel_axes: tuple[str | None, ...]
  num_input_axes: int = 1
  init_std: float = 0.02
  use_bias: bool = False
  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32
  lora_rank: int = 0
  lora_alpha: float = 16.0
  lora_dropout: float = 0.0
  deterministic: bool = True

  @nn.compact
  def __call__(self, x_NxIn: jax.Array) -> jax.Array:
    kernel = self.param("kernel", normal_init(self.init_std, self.kernel_axes), self.kernel_shape,
                        self.param_dtype)
    n_in = self.num_input_axes
    fan_in = math.prod(self.kernel_shape[:n_in])
    kernel_InxOut = jnp.reshape(kernel, (fan_in, -1)).astype(self.dtype)
    x_NxIn = x_NxIn.astype(self.dtype)
    y_NxOut = jnp.dot(x_NxIn, kernel_InxOut)
    if self.lora_rank:
      r = self.lora_rank
      a = self.param("lora_a", normal_init(fan_in**-0.5, self.kernel_axes[:n_in] + (None,)),
                     self.kernel_shape[:n_in] + (r,), self.param_dtype)
      b = self.param(
          "lora_b",
          nn.with_logical_partitioning(nn.initializers.zeros, (None,) + self.kernel_axes[n_in:]),
          (r,) + self.kernel_shape[n_in:], self.param_dtype)
      h_NxIn = nn.Dropout(self.lora_dropout)(x_NxIn, deterministic=self.deterministic)
      h_Nxr = jnp.dot(h_NxIn, jnp.reshape(a, (fan_in, r)).astype(self.dtype))
      y_NxOut = y_NxOut + (self.lora_alpha / r) * jnp.dot(
          h_Nxr,
          jnp.reshape(b, (r, -1)).astype(self.dtype))
    if self.use_bias:
      out_shape, out_axes = self.kernel_shape[n_in:], self.kernel_axes[n_in:]
      bias = self.param("bias", nn.with_logical_partitioning(nn.initializers.zeros, out_axes),
                        out_shape, self.param_dtype)
      y_NxOut = y_NxOut + jnp.reshape(bias, (1, -1)).astype(self.dtype)
    return y_NxOut


def projection(cfg,
               name: str,
               kernel_shape: tuple[int, ...],
               kernel_axes: tuple[str | None, ...],
               *,
               num_input_axes: int = 1,
               residual: bool = False,
               deterministic: bool = True) -> DenseGeneral2D:
  """The model's projection `name` (query, key_value, out, wi, wi_gate, wi_up, wo) as
  configured by ModelConfig `cfg`: its dtypes, bias, initializer (residual outputs scaled by
  1 / sqrt(2 L), GPT-2) and a LoRA adapter when `name` is one of cfg.lora_targets."""
  lora = cfg.lora_rank if name in cfg.lora_target_names else 0
  std = cfg.init_std / (2 * cfg.num_layers)**0.5 if residual else cfg.init_std
  return DenseGeneral2D(kernel_shape,
                        kernel_axes,
                        num_input_axes=num_input_axes,
                        init_std=std,
                        use_bias=cfg.has_bias(name),
                        dtype=jnp.dtype(cfg.dtype),
                        param_dtype=jnp.dtype(cfg.param_dtype),
                        lora_rank=lora,
                        lora_alpha=cfg.lora_alpha,
                        lora_dropout=cfg.lora_dropout,
                        deterministic=deterministic,
                        name=name)


class Norm(nn.Module):
  """LayerNorm (optionally without bias, as GPT-2 with bias=False) or RMSNorm; math in float32."""
  kind: str = "layernorm"
  eps: float = 1e-5
  use_bias: bool = False
  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x_NxD: jax.Array) -> jax.Array:
    x = x_NxD.astype(jnp.float32)
    features = x.shape[-1]
    if self.kind == "layernorm":
      x = x - jnp.mean(x, axis=-1, keepdims=True)
    x = x * jax.lax.rsqrt(jnp.mean(jnp.square(x), axis=-1, keepdims=True) + self.eps)
    scale = self.param("scale", nn.with_logical_partitioning(nn.initializers.ones, ("embed",)),
                       (features,), self.param_dtype)
    x = x * scale.astype(jnp.float32)[None, :]
    if self.use_bias and self.kind == "layernorm":
      bias = self.param("bias", nn.with_logical_partitioning(nn.initializers.zeros, ("embed",)),
                        (features,), self.param_dtype)
      x = x + bias.astype(jnp.float32)[None, :]
    return x.astype(self.dtype)


class Embed(nn.Module):
  """A [num_embeddings, D] table: lookup for ids, and `attend` for tied output logits."""
  num_embeddings: int
  features: int
  axes: tuple[str, str] = ("vocab", "embed")
  init_std: float = 0.02
  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32

  def setup(self):
    self.embedding = self.param("embedding", normal_init(self.init_std, self.axes),
                                (self.num_embeddings, self.features), self.param_dtype)

  def __call__(self, ids: jax.Array) -> jax.Array:
    return jnp.take(self.embedding, ids, axis=0).astype(self.dtype)

  def attend(self, x_NxD: jax.Array) -> jax.Array:
    return jnp.dot(x_NxD.astype(self.dtype), self.embedding.astype(self.dtype).T)


def rope_frequencies(cfg) -> tuple[np.ndarray, float]:
  """Inverse frequencies [Dh/2] of rotary positions (Su et al. 2021) with the context extension
  of ModelConfig `cfg` (rope_scaling), and the factor that scales cos and sin (YaRN)."""
  dim = cfg.head_dim
  inv_freq = 1.0 / cfg.rope_theta**(np.arange(0, dim, 2, dtype=np.float64) / dim)
  factor, scaling = cfg.rope_factor, cfg.rope_scaling
  if scaling == "linear":
    return (inv_freq / factor).astype(np.float32), 1.0
  if scaling == "llama3":
    # Wavelengths above original/low_freq_factor are divided by the factor, those below
    # original/high_freq_factor kept, and a linear ramp in original/wavelength in between.
    wavelength = 2 * math.pi / inv_freq
    smooth = ((cfg.rope_original_max_len / wavelength - cfg.rope_low_freq_factor) /
              (cfg.rope_high_freq_factor - cfg.rope_low_freq_factor))
    smooth = np.clip(smooth, 0.0, 1.0)
    return ((1 - smooth) * inv_freq / factor + smooth * inv_freq).astype(np.float32), 1.0
  if scaling == "yarn":
    # Dimensions turning fewer than beta_slow times over the original context interpolate
    # (frequency / factor), those turning more than beta_fast times extrapolate (kept as is).
    def dimension(rotations):
      return (dim * math.log(cfg.rope_original_max_len / (rotations * 2 * math.pi)) /
              (2 * math.log(cfg.rope_theta)))

    low = max(math.floor(dimension(cfg.rope_beta_fast)), 0)
    high = min(math.ceil(dimension(cfg.rope_beta_slow)), dim - 1)
    ramp = np.clip((np.arange(dim // 2) - low) / max(high - low, 1e-3), 0.0, 1.0)
    inv_freq = inv_freq / factor * ramp + inv_freq * (1 - ramp)
    attention_factor = cfg.rope_attention_factor or (0.1 * math.log(factor) +
                                                     1.0 if factor > 1 else 1.0)
    return inv_freq.astype(np.float32), attention_factor
  return inv_freq.astype(np.float32), 1.0


def rope_tables(positions_BxT: jax.Array, cfg) -> tuple[jax.Array, jax.Array]:
  """Cosine and sine tables [B, T, 1, Dh/2] of rotary positions for ModelConfig `cfg`."""
  inv_freq, attention_factor = rope_frequencies(cfg)
  angles_BxTxHalf = positions_BxT.astype(jnp.float32)[..., None] * inv_freq[None, None, :]
  cos, sin = jnp.cos(angles_BxTxHalf), jnp.sin(angles_BxTxHalf)
  if attention_factor != 1.0:
    cos, sin = cos * attention_factor, sin * attention_factor
  return cos[:, :, None, :], sin[:, :, None, :]


def apply_rope(x_BxTxHxDh: jax.Array, cos: jax.Array, sin: jax.Array) -> jax.Array:
  """Rotates the two halves of each head (the GPT-NeoX / Llama 'rotate half' convention)."""
  x = x_BxTxHxDh.astype(jnp.float32)
  first, second = jnp.split(x, 2, axis=-1)
  rotated = jnp.concatenate([first * cos - second * sin, second * cos + first * sin], axis=-1)
  return rotated.astype(x_BxTxHxDh.dtype)


def sinusoidal_positions(positions_BxT: jax.Array, features: int) -> jax.Array:
  """Fixed position encodings [B, T, features] (Vaswani et al. 2017), laid out as Marian's:
  sin(p / 10000^(2i/D)) in the first half of the features, cos in the second."""
  half = features // 2
  inv_freq_H = 1.0 / 10_000.0**(2.0 * jnp.arange(half, dtype=jnp.float32) / features)
  angles_BxTxH = positions_BxT.astype(jnp.float32)[..., None] * inv_freq_H[None, None, :]
  return jnp.concatenate([jnp.sin(angles_BxTxH), jnp.cos(angles_BxTxH)], axis=-1)


def relative_position_buckets(max_distance_seen: int, bidirectional: bool, num_buckets: int,
                               max_distance: int) -> np.ndarray:
  """T5's bucket (Raffel et al. 2020) of every key-minus-query distance r in
  [-max_distance_seen, max_distance_seen], at index r + max_distance_seen: |r| itself below half
  a side's buckets, then logarithmically wider buckets up to `max_distance`, the last one
  beyond. Bidirectional: keys after the query use the upper half of the buckets; otherwise
  they share bucket 0 with r = 0 (the causal mask hides them). Computed in float32 as
  Mesh TensorFlow and `transformers` do, so that the boundaries fall where theirs do."""
  relative = np.arange(-max_distance_seen, max_distance_seen + 1)
  buckets = np.zeros_like(relative)
  if bidirectional:
    num_buckets //= 2
    buckets += (relative > 0) * num_buckets
    distance = np.abs(relative)
  else:
    distance = np.maximum(-relative, 0)
  exact = num_buckets // 2
  with np.errstate(divide="ignore"):  # log(0) of the distances below `exact`, unused.
    ratio = (np.log(distance.astype(np.float32) / np.float32(exact)) /
             np.float32(math.log(max_distance / exact)) * np.float32(num_buckets - exact))
  wide = exact + np.where(distance < exact, 0, ratio).astype(np.int64)
  wide = np.minimum(wide, num_buckets - 1)
  return (buckets + np.where(distance < exact, distance, wide)).astype(np.int32)


def token_embedding(cfg) -> Embed:
  """The model's token table `token_embed` [vocab_size, embed_dim] (ModelConfig `cfg`), built
  inside the calling module's compact method."""
  return Embed(cfg.vocab_size,
               cfg.embed_dim,
               init_std=cfg.init_std,
               dtype=jnp.dtype(cfg.dtype),
               param_dtype=jnp.dtype(cfg.param_dtype),
               name="token_embed")


def vocabulary_logits(module: nn.Module, cfg, token_embed: Embed, x_NxD: jax.Array) -> jax.Array:
  """Logits [N, V] of the hidden states: tied to `token_embed` or a separate `lm_head`
  (config.tie_embeddings), plus `output_bias` (config.output_bias); called from `module`'s
  compact method, which owns the new parameters."""
  if cfg.tie_embeddings:
    logits_NxV = token_embed.attend(x_NxD)
  else:
    logits_NxV = DenseGeneral2D((cfg.embed_dim, cfg.vocab_size), ("embed", "vocab"),
                                init_std=cfg.init_std,
                                dtype=jnp.dtype(cfg.dtype),
                                param_dtype=jnp.dtype(cfg.param_dtype),
                                name="lm_head")(x_NxD)
  if cfg.output_bias:
    bias_V = module.param("output_bias",
                          nn.with_logical_partitioning(nn.initializers.zeros, ("vocab",)),
                          (cfg.vocab_size,), jnp.dtype(cfg.param_dtype))
    logits_NxV = logits_NxV + bias_V.astype(logits_NxV.dtype)[None, :]
  return nn.with_logical_constraint(logits_NxV, ("act_batch", "act_vocab"))
