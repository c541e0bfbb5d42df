"""ELECTRA pretraining (Clark et al. 2020): replaced-token detection (config.task.kind='electra').

Windows are masked as for masked LM (config.mlm; ELECTRA masks 15% and replaces all of them by
[MASK]: mask_token_fraction=1, random_token_fraction=0). The generator (lm/models/electra.py)
learns masked LM on them; at every masked position a token is sampled from its output
distribution (no gradient through the sampling) and the discriminator reads the window with
those samples, predicting for every real token whether it was replaced. A sample equal to the
original token counts as original, as in the paper. The loss is the generator's masked-LM loss
plus config.task.discriminator_weight (the paper's lambda = 50) x the discriminator's mean
binary cross-entropy per window, and the discriminator (the parameters under
"discriminator") is what a classifier fine-tunes with config.init_from.
"""

from typing import Any

import jax
import jax.numpy as jnp
import optax

from lm.errors import UserError
from lm.models import electra
from lm.tasks.language_model import LanguageModelTask
from lm.training import steps


def replaced_tokens(batch: dict, sampled_BxM: jax.Array) -> tuple[jax.Array, jax.Array]:
  """The discriminator's input [B, T] (the original window with the samples at the predicted
  positions) and its labels [B, T] (1.0 where the token differs from the original)."""
  inputs_BxT = batch["inputs"]
  B, T = inputs_BxT.shape
  rows_Bx1 = jnp.arange(B)[:, None]
  # Padding predictions (weight 0) go out of range, where the scatter drops them.
  where_BxM = jnp.where(batch["weights"] > 0, batch["output_positions"], T)
  original_BxT = inputs_BxT.at[rows_Bx1, where_BxM].set(batch["targets"], mode="drop")
  replaced_BxT = original_BxT.at[rows_Bx1, where_BxM].set(sampled_BxM, mode="drop")
  return replaced_BxT, (replaced_BxT != original_BxT).astype(jnp.float32)


class ElectraTask(LanguageModelTask):
  """A generator and a discriminator over masked windows; see the module doc."""

  @classmethod
  def add_config_keys(cls, config: Any) -> None:
    # ELECTRA: the generator's layers as a fraction of the discriminator's (same width, shared
    # embeddings), and the weight of the discriminator's loss (the paper's lambda).
    config.task.generator_fraction = 1 / 3
    config.task.discriminator_weight = 50.0

  @classmethod
  def check_config(cls, values: dict) -> None:
    super().check_config(values)
    task = values["task"]
    if not 0 < task["generator_fraction"] <= 1:
      raise UserError(f"config.task.generator_fraction={task['generator_fraction']}: must be in "
                      f"(0, 1] (of the discriminator's layers)")
    if task["discriminator_weight"] < 0:
      raise UserError(f"config.task.discriminator_weight={task['discriminator_weight']}: must "
                      f"be >= 0")

  def make_model(self) -> electra.Electra:
    generator = electra.generator_config(self.model_config, self.config.task.generator_fraction)
    return electra.Electra(self.model_config, generator)

  def loss(self, apply_fn: Any, params: Any, batch: dict, rng: Any) -> tuple[Any, dict]:
    gen_rng, sample_rng, disc_rng = jax.random.split(rng, 3)
    logits_BxMxV = steps.batch_logits(apply_fn, params, batch, deterministic=False,
                                      rngs={"dropout": gen_rng})
    generator_BxM = steps.token_nll(logits_BxMxV, batch["targets"])
    sampled_BxM = jax.random.categorical(
        sample_rng, jax.lax.stop_gradient(logits_BxMxV).astype(jnp.float32))
    inputs_BxT, labels_BxT = replaced_tokens(batch, sampled_BxM)
    logits_BxT = apply_fn({"params": params}, inputs_BxT, batch.get("segment_ids"),
                          deterministic=False, rngs={"dropout": disc_rng}, method="discriminate")
    real_BxT = (batch["segment_ids"] != 0 if "segment_ids" in batch else
                jnp.ones_like(labels_BxT, jnp.bool_)).astype(jnp.float32)
    bce_BxT = optax.sigmoid_binary_cross_entropy(logits_BxT, labels_BxT) * real_BxT
    discriminator_B = bce_BxT.sum(-1) / jnp.maximum(real_BxT.sum(-1), 1.0)
    weight = self.config.task.discriminator_weight
    # Each window's discriminator loss rides on its masked positions (weights [B, M]).
    per_item_BxM = generator_BxM + weight * discriminator_B[:, None]
    correct_BxT = ((logits_BxT > 0) == (labels_BxT > 0)) * real_BxT
    predicted_BxM = batch["weights"]
    aux = {
        "generator_loss": (generator_BxM * predicted_BxM).sum() / jnp.maximum(
            predicted_BxM.sum(), 1.0),
        "discriminator_loss": discriminator_B.mean(),
        "discriminator_accuracy": correct_BxT.sum() / jnp.maximum(real_BxT.sum(), 1.0),
        "replaced_fraction": (labels_BxT * real_BxT).sum() / jnp.maximum(real_BxT.sum(), 1.0),
    }
    return per_item_BxM, aux

  def describe(self) -> str:
    generator = electra.generator_config(self.model_config, self.config.task.generator_fraction)
    return (super().describe() +
            f"; generator {generator.num_layers} of {self.model_config.num_layers} layers, "
            f"discriminator loss x{self.config.task.discriminator_weight:g}")
