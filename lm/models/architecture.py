"""The model class that config.model.architecture names, and parameter counts of a config."""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from lm.models.config import ModelConfig
from lm.models.encoder_decoder import EncoderDecoder
from lm.models.lstm import LSTM
from lm.models.transformer import Transformer

_CLASSES = {"transformer": Transformer, "lstm": LSTM, "gru": LSTM,
            "encoder_decoder": EncoderDecoder}


def make_model(cfg: ModelConfig) -> nn.Module:
  """Transformer(cfg) or LSTM(cfg) (an LSTM or GRU), which map tokens [B, T] to logits
  [B, T, V] (or [B, C]), or
  EncoderDecoder(cfg): source [B, S] and target [B, T] tokens to logits [B, T, V]."""
  return _CLASSES[cfg.architecture](cfg)


def count_params(cfg: ModelConfig) -> int:
  """Number of parameters of the model `cfg` describes, without allocating them."""
  return sum(math.prod(shape) for shape in param_shapes(cfg).values())


def param_shapes(cfg: ModelConfig) -> dict[str, tuple[int, ...]]:
  """{'/'-joined parameter path: shape} of the model `cfg` describes, without allocating it."""
  tokens_1x1 = jnp.zeros((1, 1), jnp.int32)
  abstract = jax.eval_shape(lambda: make_model(cfg).init(jax.random.key(0), tokens_1x1))
  leaves = jax.tree_util.tree_leaves_with_path(nn.meta.unbox(abstract["params"]))
  return {"/".join(str(k.key) for k in path): tuple(leaf.shape) for path, leaf in leaves}
