"""ELECTRA: replaced-token labels, the generator reading the discriminator's embeddings, a
pretraining run, and a classifier fine-tuned from its discriminator."""


import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import sst2
from lm.errors import UserError
from lm.models import electra
from lm.models.config import ModelConfig
from lm.tasks.electra import replaced_tokens
from lm.training import checkpoints, trainer


def test_labels_mark_exactly_the_replaced_positions():
  mask = 9
  batch = {
      "inputs": jnp.array([[mask, 5, mask, 7], [1, mask, 3, 4]]),
      "output_positions": jnp.array([[0, 2, 0], [1, 0, 0]]),  # Padding predictions at 0.
      "targets": jnp.array([[4, 6, 0], [2, 0, 0]]),
      "weights": jnp.array([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]]),
  }
  sampled = jnp.array([[4, 8, 3], [7, 3, 3]])  # Row 0: position 0 sampled its original 4.
  inputs, labels = replaced_tokens(batch, sampled)
  np.testing.assert_array_equal(inputs, [[4, 5, 8, 7], [1, 7, 3, 4]])
  np.testing.assert_array_equal(labels, [[0, 0, 1, 0], [0, 1, 0, 0]])


@pytest.fixture(scope="module")
def model_and_params():
  cfg = ModelConfig(vocab_size=30, num_layers=3, num_heads=2, embed_dim=16, max_len=12,
                    causal=False)
  model = electra.Electra(cfg, electra.generator_config(cfg, 1 / 3))
  params = nn.meta.unbox(model.init(jax.random.PRNGKey(0), jnp.zeros((2, 12), jnp.int32))["params"])
  return model, params


def test_generator_reads_the_discriminators_embeddings(model_and_params):
  model, params = model_and_params
  assert model.generator_config.num_layers == 1 and set(params) == {"discriminator", "generator",
                                                                    "rtd_head"}
  tokens = jnp.arange(24).reshape(2, 12) % 30
  positions = jnp.array([[1, 5], [0, 11]])

  def generator_loss(p):
    logits = model.apply({"params": p}, tokens, output_positions_BxM=positions)
    return jax.nn.log_softmax(logits)[..., 3].sum()

  grads = jax.grad(generator_loss)(params)
  assert not np.any(grads["generator"]["token_embed"]["embedding"])  # Its own: never used.
  assert np.any(grads["discriminator"]["token_embed"]["embedding"])
  assert np.any(grads["discriminator"]["position_embed"]["embedding"])
  assert not np.any(grads["discriminator"]["block_0"]["attn"]["query"]["kernel"])
  logits = model.apply({"params": params}, tokens, method="discriminate")
  assert logits.shape == (2, 12) and logits.dtype == jnp.float32


def test_pretraining_then_fine_tuning_its_discriminator(tmp_path, capsys):
  pretrain = sst2.get_config("pretrain,smoke")
  pretrain.task.kind = "electra"
  pretrain.mlm.update(mask_token_fraction=1.0, random_token_fraction=0.0)
  pretrain.train.update(steps=6, log_every=3, eval_every=6, sample_prompt="")
  workdir = str(tmp_path / "electra")
  final = trainer.train_and_evaluate(pretrain, workdir)
  assert np.isfinite(final["eval/loss"]) and 0 <= final["train/discriminator_accuracy"] <= 1
  assert 0 < final["train/replaced_fraction"] < 0.2
  assert final["train/loss"] == pytest.approx(
      final["train/generator_loss"] + 50 * final["train/discriminator_loss"], rel=0.05)

  def finetune(name, init_from):
    config = sst2.get_config("finetune,smoke")
    config.init_from = init_from
    config.train.update(steps=2, learning_rate=1e-5, warmup_steps=0, sample_prompt="")
    trainer.train_and_evaluate(config, str(tmp_path / name))
    return _params(str(tmp_path / name))["token_embed"]["embedding"]

  capsys.readouterr()
  tuned = finetune("tuned", workdir)
  assert "(its discriminator; generator, rtd_head left out)" in capsys.readouterr().out
  scratch = finetune("scratch", "")
  discriminator = _params(workdir)["discriminator"]["token_embed"]["embedding"]
  assert np.abs(tuned - discriminator).max() < 1e-3 < np.abs(scratch - discriminator).max()


def _params(workdir):
  checkpointer = checkpoints.Checkpointer(workdir, read_only=True)
  try:
    params, _ = checkpointer.restore_params(checkpointer.latest_step())
  finally:
    checkpointer.close()
  return nn.meta.unbox(params)


def test_bad_electra_settings_are_named(tmp_path):
  config = sst2.get_config("pretrain,smoke")
  config.task.update(kind="electra", generator_fraction=0.0)
  with pytest.raises(UserError, match="config.task.generator_fraction=0.0"):
    trainer.train_and_evaluate(config, str(tmp_path / "run"))
