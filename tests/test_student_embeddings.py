"""A distillation student's embeddings from its teacher (config.distill.embeddings='teacher'):
the projection against scikit-learn's PCA, the table a student starts from, the tokenizer it
reads with, and bad settings."""

import filecmp
import os

import numpy as np
import pytest
from sklearn.decomposition import PCA

from lm.errors import UserError
from lm.training import checkpoints, student_embeddings, trainer
from tests.sst2_students import classifier_config as classifier
from tests.sst2_students import write_slices


def test_the_projection_is_pca():
  rng = np.random.default_rng(0)
  table = rng.normal(size=(300, 12)) @ rng.normal(size=(12, 12)) + rng.normal(size=12)
  projected, kept = student_embeddings.principal_projection(table.astype(np.float32), 5)
  reference = PCA(n_components=5, svd_solver="full").fit(table)
  expected = reference.transform(table)
  signs = np.sign(np.sum(projected * expected, axis=0))  # Each component's sign is arbitrary.
  np.testing.assert_allclose(projected * signs, expected, rtol=1e-4, atol=1e-4)
  assert kept == pytest.approx(np.sum(reference.explained_variance_ratio_), rel=1e-6)
  assert np.all(np.diff(np.var(projected, axis=0)) <= 0)  # Largest variance first.


@pytest.fixture(scope="module")
def files(tmp_path_factory):
  return write_slices(tmp_path_factory.mktemp("sst2"), train=200, valid=40)


@pytest.fixture(scope="module")
def teacher(files):
  """A width-32 classifier reading characters (the students' own tokenizer: SentencePiece)."""
  workdir = str(files["dir"] / "teacher")
  config = classifier(files)
  config.data.tokenizer = "char"
  trainer.train_and_evaluate(config, workdir)
  return workdir


def _table(workdir: str, which: str = "latest") -> np.ndarray:
  checkpointer = checkpoints.Checkpointer(workdir, read_only=True)
  try:
    params, _ = checkpointer.restore_params(checkpointer.pick_step(which, config_key="x"))
  finally:
    checkpointer.close()
  return np.asarray(params["token_embed"]["embedding"])


def test_a_student_starts_from_the_teachers_table_and_reads_with_its_tokenizer(files, teacher,
                                                                               tmp_path):
  config = classifier(files, teacher=teacher, embeddings="teacher")
  config.model.embed_dim = 16
  config.train.update(steps=1, learning_rate=0.0, warmup_steps=0, checkpoint_every=1)
  workdir = str(tmp_path / "student")
  trainer.train_and_evaluate(config, workdir)
  tokenizer = os.path.join("tokenizer", "tokenizer.json")
  assert filecmp.cmp(os.path.join(teacher, tokenizer), os.path.join(workdir, tokenizer),
                     shallow=False)
  student = _table(workdir)  # Unchanged by a step at learning rate 0.
  projected, _ = student_embeddings.principal_projection(_table(teacher, "best"), 16)
  assert student.shape == projected.shape
  # The projection, rescaled to the initializer's standard deviation (init_std 0.02).
  np.testing.assert_allclose(student, projected * (np.std(student) / np.std(projected)),
                             rtol=1e-4, atol=1e-6)
  assert np.std(student) == pytest.approx(config.model.init_std, rel=0.1)

  plain = classifier(files, teacher=teacher)
  plain.model.embed_dim = 16
  plain.train.update(steps=1, learning_rate=0.0, warmup_steps=0, checkpoint_every=1)
  trainer.train_and_evaluate(plain, str(tmp_path / "plain"))  # Random, its own vocabulary.
  assert not filecmp.cmp(os.path.join(teacher, tokenizer),
                         os.path.join(tmp_path, "plain", tokenizer), shallow=False)


def test_bad_settings_are_named(files, teacher, tmp_path):
  with pytest.raises(UserError, match="config.distill.embeddings='teacher' takes the student's "
                     "embeddings from config.distill.teacher, which is empty"):
    trainer.train_and_evaluate(classifier(files, embeddings="teacher"), str(tmp_path / "a"))
  both = classifier(files, teacher=teacher, embeddings="teacher")
  both.init_from = teacher
  with pytest.raises(UserError, match="both initialize the student"):
    trainer.train_and_evaluate(both, str(tmp_path / "b"))
  with pytest.raises(UserError, match="config.distill.embeddings"):
    trainer.train_and_evaluate(classifier(files, teacher=teacher, embeddings="word2vec"),
                               str(tmp_path / "c"))
  wider = classifier(files, teacher=teacher, embeddings="teacher")
  wider.model.embed_dim = 64
  with pytest.raises(UserError, match=r"the teacher's table is [\d,]+ x 32, the student's "
                     r"[\d,]+ x 64"):
    trainer.train_and_evaluate(wider, str(tmp_path / "d"))
  saved = tmp_path / "d" / "checkpoints"
  assert not (saved.exists() and os.listdir(saved))  # Nothing trained, nothing saved.
