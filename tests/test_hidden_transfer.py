"""Hidden-state transfer in distillation (config.distill.hidden_weight): the pooled vector a
classifier sows, the teacher's cached pooled vectors, the student's loss against a float64
reference (through the learned map to the teacher's width), lm.predict on such a student, and
bad configurations."""

import os

import flax
import jax
import numpy as np
import pytest

from lm import config_paths
from lm.data import buckets, examples
from lm.errors import UserError
from lm.models.config import TRANSFER
from lm.models.transformer import Transformer
from lm.tasks import classification_predict, distillation, registry, supervised
from lm.training import checkpoints, steps, trainer
from tests.sst2_students import classifier_config, trained_teacher, write_slices

WEIGHT = 0.7


@pytest.fixture(scope="module")
def files(tmp_path_factory):
  return write_slices(tmp_path_factory.mktemp("sst2"), train=120, valid=40)


@pytest.fixture(scope="module")
def teacher(files):
  """A classifier of width 32 (sst2.py's smoke encoder)."""
  return trained_teacher(files)


def student_config(files, teacher, width: int):
  config = classifier_config(files, teacher=teacher, alpha=0.4, temperature=2.0,
                             hidden_weight=WEIGHT)
  config.model.update(embed_dim=width, dropout=0.0)  # No dropout: the loss is deterministic.
  config.train.update(steps=2, checkpoint_every=2)
  return config


def _pool64(hidden_BxTxD, segment_ids_BxT):
  """float64 mean of the non-padding positions (sst2.py pools by the mean)."""
  real_BxTx1 = (np.asarray(segment_ids_BxT) != 0)[:, :, None].astype(np.float64)
  total_BxD = (np.asarray(hidden_BxTxD, np.float64) * real_BxTx1).sum(1)
  return total_BxD / np.maximum(real_BxTx1.sum(1), 1.0)  # A padding row: zeros.


def _log_softmax64(x_BxC):
  x_BxC = np.asarray(x_BxC, np.float64)
  shifted = x_BxC - x_BxC.max(-1, keepdims=True)
  return shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))


def test_the_teachers_pooled_vectors_are_cached_with_its_logits(files, teacher, tmp_path):
  config = student_config(files, teacher, width=16)
  workdir = str(tmp_path / "student")
  trainer.train_and_evaluate(config, workdir)
  with np.load(os.path.join(workdir, distillation.OUTPUTS_FILE)) as cached:
    outputs = cached["logits"]
  assert outputs.shape == (120, 2 + 32)  # Logits, then the teacher's width-32 pooled vector.
  # The teacher's own pooled vectors: its final hidden states, mean-pooled (float64).
  model_cfg, params, tokenizer = checkpoints.load_for_inference(teacher, "best")
  train, _ = supervised.read_splits(config, {"text": "sentence", "label": "label"})
  data = examples.classification_examples(train[:8], tokenizer, None, max_len=model_cfg.max_len,
                                          causal=model_cfg.causal)
  batch = buckets.classification_batch(data, np.arange(8), np.ones(8), [model_cfg.max_len])
  hidden = Transformer(model_cfg).apply({"params": params}, batch["inputs"], None,
                                        batch["segment_ids"], return_hidden=True)
  np.testing.assert_allclose(outputs[:8, 2:], _pool64(hidden, batch["segment_ids"]), rtol=1e-5,
                             atol=1e-5)
  logits = distillation.run_teacher(teacher, "best", train[:8], 4)
  np.testing.assert_allclose(outputs[:8, :2], logits, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("width", [16, 32])
def test_the_students_loss_equals_a_float64_reference(files, teacher, tmp_path, width):
  """Width 16: through the learned map to 32; width 32: the pooled vectors compared as they
  are (no map)."""
  config = student_config(files, teacher, width)
  workdir = str(tmp_path / f"student{width}")
  final = trainer.train_and_evaluate(config, workdir)
  assert np.isfinite(final["train/hidden_loss"])
  task = registry.build_task(config_paths.absolute_paths(config), workdir, {})
  model = task.make_model()
  checkpointer = checkpoints.Checkpointer(workdir, read_only=True)
  params = flax.linen.meta.unbox(checkpointer.restore_params(2)[0])
  checkpointer.close()
  assert ("transfer_projection" in params) == (width == 16)
  assert "transfer_projection" not in checkpoints.load_for_inference(workdir)[1]  # Inference.
  batch = buckets.classification_batch(task.train, np.arange(6), np.array([1, 1, 1, 1, 1, 0.]),
                                       task.buckets)
  loss_B, metrics = task.loss(model.apply, params, batch, jax.random.PRNGKey(0))

  hidden = model.apply({"params": params}, batch["inputs"], None, batch["segment_ids"],
                       return_hidden=True)
  pooled = _pool64(hidden, batch["segment_ids"])
  if width == 16:
    projection = params["transfer_projection"]
    pooled = pooled @ np.asarray(projection["kernel"], np.float64) + np.asarray(
        projection["bias"], np.float64)
  hidden_B = np.mean((pooled - np.asarray(batch["teacher_hidden"], np.float64))**2, axis=-1)
  logits = steps.batch_logits(model.apply, params, batch)
  log_p, t = _log_softmax64(logits), 2.0
  hard_B = -log_p[np.arange(6), batch["labels"]]
  student_T, teacher_T = _log_softmax64(np.asarray(logits) / t), _log_softmax64(
      batch["teacher_logits"] / t)
  kl_B = t * t * (np.exp(teacher_T) * (teacher_T - student_T)).sum(-1)
  expected_B = 0.4 * hard_B + 0.6 * kl_B + WEIGHT * hidden_B
  np.testing.assert_allclose(loss_B[:5], expected_B[:5], rtol=2e-5)
  np.testing.assert_allclose(metrics["hidden_loss"], hidden_B[:5].mean(), rtol=2e-5)
  # The sown vector is the pooled one (through the map): what the loss compared.
  _, state = model.apply({"params": params}, batch["inputs"], None, batch["segment_ids"],
                         mutable=["intermediates"])
  np.testing.assert_allclose(state["intermediates"][TRANSFER][0][:5], pooled[:5], rtol=1e-4,
                             atol=1e-5)

  # lm.predict's path reads the student (without the training-only map).
  train, _ = supervised.read_splits(config, {"text": "sentence", "label": "label"})
  probs, *_ = classification_predict.model_probabilities(workdir, "latest", train[:5], None, 4)
  data = examples.classification_examples(train[:5], task.tokenizer, None,
                                          max_len=task.seq_len, causal=False)
  batch = buckets.classification_batch(data, np.arange(5), np.ones(5), task.buckets)
  expected = jax.nn.softmax(steps.batch_logits(model.apply, params, batch), axis=-1)
  np.testing.assert_allclose(probs, expected, rtol=1e-5, atol=1e-6)


def test_pooled_and_logit_only_outputs_are_cached_apart(files, teacher, tmp_path, monkeypatch):
  calls = []
  run = distillation.run_teacher
  monkeypatch.setattr(distillation, "run_teacher",
                      lambda *args: calls.append(args[-1]) or run(*args))
  cache_dir = str(tmp_path / "cache")
  for weight in (WEIGHT, 0.0, WEIGHT):
    config = student_config(files, teacher, width=16)
    config.distill.update(hidden_weight=weight, cache_dir=cache_dir)
    trainer.train_and_evaluate(config, str(tmp_path / f"w{weight}_{len(calls)}"))
  assert calls == [True, False]  # The third run read the first one's file.
  assert len(os.listdir(cache_dir)) == 2


def test_bad_hidden_transfer_configs_are_named(files, teacher, tmp_path):
  config = student_config(files, teacher, width=16)
  config.distill.teacher = ""
  with pytest.raises(UserError, match=r"config.distill.hidden_weight=0.7 transfers the hidden "
                     r"states of config.distill.teacher, which is empty"):
    trainer.train_and_evaluate(config, str(tmp_path / "a"))
  config = student_config(files, teacher, width=16)
  config.model.update(architecture="lstm", causal=False, bidirectional=True)
  with pytest.raises(UserError, match=r"is for a Transformer classifier .*'lstm'"):
    trainer.train_and_evaluate(config, str(tmp_path / "b"))
  config = student_config(files, teacher, width=16)
  config.distill.hidden_weight = -1.0
  with pytest.raises(UserError, match=r"config.distill.hidden_weight=-1.0: must be >= 0"):
    trainer.train_and_evaluate(config, str(tmp_path / "c"))
