"""Weight-decay targets and learning-rate schedules."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import pytest

from lm import defaults
from lm.errors import UserError
from lm.models.config import ModelConfig
from lm.models.transformer import Transformer
from lm.training import optimizer


def _params(**overrides):
  cfg = ModelConfig(vocab_size=20, num_layers=1, num_heads=2, embed_dim=8, max_len=4, **overrides)
  variables = jax.eval_shape(
      Transformer(cfg).init, jax.random.PRNGKey(0), jnp.zeros((1, 4), jnp.int32))
  return nn.meta.unbox(variables["params"])


def _decayed_names(mask):
  flat = jax.tree_util.tree_flatten_with_path(mask)[0]
  return sorted("/".join(str(k.key) for k in path) for path, decays in flat if decays)


def test_weight_decay_only_on_matrices_unless_embeddings_requested():
  params = _params(use_bias=True)
  decayed = _decayed_names(optimizer.weight_decay_mask(params, decay_embeddings=False))
  assert decayed == [
      "block_0/attn/key_value/kernel", "block_0/attn/out/kernel", "block_0/attn/query/kernel",
      "block_0/mlp/wi/kernel", "block_0/mlp/wo/kernel"
  ]
  with_embeddings = _decayed_names(optimizer.weight_decay_mask(params, decay_embeddings=True))
  assert set(with_embeddings) - set(decayed) == {
      "position_embed/embedding", "token_embed/embedding"
  }


def _train_cfg(**overrides):
  cfg = defaults.base_config().train
  cfg.update({
      **dict(steps=1000, warmup_steps=100, learning_rate=1e-3, min_learning_rate=1e-4),
      **overrides
  })
  return cfg


@pytest.mark.parametrize("schedule, midpoint", [("cosine", 5.5e-4), ("linear", 5.5e-4),
                                                ("constant", 1e-3)])
def test_schedules(schedule, midpoint):
  fn = optimizer.learning_rate_schedule(_train_cfg(schedule=schedule))
  assert float(fn(0)) == 0.0
  assert float(fn(50)) == pytest.approx(5e-4)
  assert float(fn(100)) == pytest.approx(1e-3)
  assert float(fn(550)) == pytest.approx(midpoint, rel=1e-5)
  assert float(fn(1000)) == pytest.approx(1e-3 if schedule == "constant" else 1e-4, rel=1e-5)


def test_bad_schedule_values_name_the_key():
  with pytest.raises(UserError, match="config.train.schedule"):
    optimizer.learning_rate_schedule(_train_cfg(schedule="exp"))
  with pytest.raises(UserError, match="config.train.warmup_steps"):
    optimizer.learning_rate_schedule(_train_cfg(warmup_steps=2000))
  with pytest.raises(UserError, match="config.train.learning_rate"):
    optimizer.make_optimizer(_train_cfg(learning_rate=-1.0), _params())
