"""Weight-decay targets, learning-rate schedules and the optimizer choice (each trains and
resumes exactly)."""

import os
import shutil

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lm import defaults
from lm.errors import UserError
from lm.models.config import ModelConfig
from lm.models.transformer import Transformer
from lm.training import optimizer, trainer
from tests.test_trainer import read_metrics, smoke_config


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


@pytest.mark.parametrize("name", sorted(optimizer.OPTIMIZERS))
def test_every_optimizer_trains_and_resumes_exactly(name, tmp_path):
  """The smoke decoder's loss falls under each optimizer, and a run resumed from its step-2
  checkpoint (parameters and the optimizer's own state) ends bit for bit as the straight one."""
  learning_rate = {"sgd": 0.3, "lion": 1e-3, "adafactor": 3e-2}.get(name, 3e-3)

  def config():
    return smoke_config(steps=4, optimizer=name, learning_rate=learning_rate, warmup_steps=0)

  straight = trainer.train_and_evaluate(config(), str(tmp_path / "a"))
  first = read_metrics(str(tmp_path / "a"))[0]
  assert straight["train/loss"] < first["train/loss"]
  workdir = str(tmp_path / "b")
  trainer.train_and_evaluate(config(), workdir)
  shutil.rmtree(os.path.join(workdir, "checkpoints", "4"))
  resumed = trainer.train_and_evaluate(config(), workdir)
  assert (resumed["train/loss"], resumed["eval/loss"]) == (straight["train/loss"],
                                                           straight["eval/loss"])


def test_sgd_and_adam_weight_decay_is_an_l2_gradient_term():
  """PyTorch's semantics: SGD (no momentum) moves p by -lr * (g + wd * p) on decayed leaves."""
  params = {"dense": {"kernel": jnp.full((2, 2), 2.0), "bias": jnp.full((2,), 2.0)}}
  grads = jax.tree.map(jnp.ones_like, params)
  cfg = _train_cfg(optimizer="sgd", momentum=0.0, weight_decay=0.1, learning_rate=0.5,
                   warmup_steps=0, schedule="constant", grad_clip=0.0)
  tx, _ = optimizer.make_optimizer(cfg, params)
  updates, _ = tx.update(grads, tx.init(params), params)
  np.testing.assert_allclose(updates["dense"]["kernel"], -0.5 * (1 + 0.1 * 2.0))
  np.testing.assert_allclose(updates["dense"]["bias"], -0.5)  # Biases are never decayed.


def test_unknown_optimizer_is_named():
  with pytest.raises(UserError, match="config.train.optimizer='adagrad': choose one of adamw"):
    optimizer.make_optimizer(_train_cfg(optimizer="adagrad"), _params())
