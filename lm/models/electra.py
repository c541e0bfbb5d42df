"""ELECTRA (Clark et al. 2020): a small masked-LM generator and a discriminator that detects
which tokens the generator replaced.

Both are `Transformer` encoders of the same width; the generator has a fraction of the
discriminator's layers (config.electra.generator_fraction; the paper shrinks the width
instead, to 1/4-1/2, which would rule out sharing the embeddings). The generator reads the
discriminator's token (and learned position) embeddings, as the paper ties them: its own
tables exist in the parameter tree only because `Transformer` builds them, and never train.
The parameters are {"discriminator": the backbone that fine-tunes (config.init_from picks it),
"generator": ..., "rtd_head": a logit per token}.
"""

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from lm.models.config import ModelConfig
from lm.models.transformer import Transformer

DISCRIMINATOR, GENERATOR, HEAD = "discriminator", "generator", "rtd_head"
SHARED = ("token_embed", "position_embed")  # Tables the generator takes from the discriminator.


def generator_config(config: ModelConfig, fraction: float) -> ModelConfig:
  """The generator: the discriminator's width, max(1, round(fraction * L)) layers."""
  return dataclasses.replace(config, num_layers=max(1, round(fraction * config.num_layers)))


def generator_params(params: Any) -> Any:
  """The generator's parameters with the discriminator's embedding tables in place of its own."""
  shared = {name: params[DISCRIMINATOR][name] for name in SHARED if name in params[DISCRIMINATOR]}
  return {**params[GENERATOR], **shared}


class Electra(nn.Module):
  """Calling it gives the generator's masked-LM logits (what the masked-LM evaluation reads);
  `discriminate` gives the discriminator's replaced-token logits [B, T]."""
  config: ModelConfig  # The discriminator's.
  generator_config: ModelConfig

  def setup(self):
    cfg = self.config
    self.discriminator = Transformer(cfg)
    self.generator = Transformer(self.generator_config)
    self.rtd_head = nn.Dense(1, dtype=jnp.dtype(cfg.dtype), param_dtype=jnp.dtype(cfg.param_dtype),
                             kernel_init=nn.with_logical_partitioning(
                                 nn.initializers.normal(cfg.init_std), ("embed", None)),
                             bias_init=nn.with_logical_partitioning(nn.initializers.zeros, (None,)))

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
    del token_types_BxT, decode, return_hidden  # Pretraining windows: one text, no cache.
    args = (tokens_BxT, positions_BxT, segment_ids_BxT, output_positions_BxM)
    if self.is_initializing():  # Builds every parameter.
      self.discriminate(tokens_BxT, segment_ids_BxT, deterministic=deterministic)
      return self.generator(*args, deterministic=deterministic)
    rngs = {} if deterministic else {"dropout": self.make_rng("dropout")}
    return Transformer(self.generator_config, parent=None).apply(
        {"params": generator_params(self.variables["params"])}, *args,
        deterministic=deterministic, rngs=rngs)

  def discriminate(self, tokens_BxT: jax.Array, segment_ids_BxT: jax.Array | None = None, *,
                   deterministic: bool = True) -> jax.Array:
    hidden_BxTxD = self.discriminator(tokens_BxT, segment_ids_BxT=segment_ids_BxT,
                                      deterministic=deterministic, return_hidden=True)
    return self.rtd_head(hidden_BxTxD)[..., 0].astype(jnp.float32)
