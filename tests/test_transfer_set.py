"""Unlabelled transfer texts for a distilled classifier (config.distill.transfer): sentence
splitting (English and Chinese), the teacher's labels on them, a fixed shuffle shared by every
seed, and bad settings."""

import os

import numpy as np
import pytest

from lm.errors import UserError
from lm.tasks import classification, distillation, transfer_set
from lm.training import trainer
from tests.sst2_students import classifier_config, sst2_rows, write_slices


def test_sentences_split_reviews_and_chinese_and_drop_fragments():
  review = ('I loved this film. It was great!<br /><br />The ending (2001) is weak... but the '
            'cast is fine?  "Ten out of ten." Yes.')
  assert transfer_set.sentences(review) == [
      "I loved this film.", "It was great!", "The ending (2001) is weak...",
      "but the cast is fine?", '"Ten out of ten."']
  assert transfer_set.sentences("这部电影很好看。我喜欢它！演员们很出色？是的") == [
      "这部电影很好看。", "我喜欢它！", "演员们很出色？"]
  assert transfer_set.sentences("Yes. No.<br />") == []


@pytest.fixture(scope="module")
def files(tmp_path_factory):
  files = write_slices(tmp_path_factory.mktemp("sst2"), train=120, valid=40)
  directory = files["dir"]
  # Unlabelled reviews: two sentences per line, as a plain-text file.
  texts = [text for text in (line.split("\t")[0].strip() for line in sst2_rows()[161:])
           if len(text.split()) >= 3 and not set(text) & set(".!?")][:60]
  reviews = [f"{a}. {b}!" for a, b in zip(texts[::2], texts[1::2])]
  (directory / "reviews.txt").write_text("\n".join(reviews) + "\n", encoding="utf-8")
  return {**files, "reviews": str(directory / "reviews.txt")}


def classifier(files, **distill):
  config = classifier_config(files, **distill)
  config.train.steps = 2
  return config


@pytest.fixture(scope="module")
def teacher(files):
  workdir = str(files["dir"] / "teacher")
  config = classifier(files)
  config.train.steps = 6
  trainer.train_and_evaluate(config, workdir)
  return workdir


def test_the_teacher_labels_the_transfer_sentences(files, teacher, tmp_path):
  config = classifier(files, teacher=teacher, alpha=0.5, transfer=files["reviews"],
                      transfer_unit="sentence", transfer_examples=40)
  workdir = str(tmp_path / "student")
  task = classification.ClassificationTask(config, workdir, {})
  assert task.transferred == 40 and len(task.train) == 120 + 40
  assert sorted(name for name in os.listdir(workdir) if name.endswith(".npz")) == [
      "teacher_outputs.npz", "teacher_outputs_transfer.npz"]  # Cached apart.
  assert "40 from config.distill.transfer, labelled by the teacher" in task.describe()
  every = transfer_set.sentences(open(files["reviews"], encoding="utf-8").read())
  chosen = transfer_set.read(config)
  assert len(every) == 60 and len(chosen) == 40
  assert {r.values["text"] for r in chosen} <= {s.lower() for s in every}  # Lower-cased as sst2.
  assert [r.values["text"] for r in chosen] == [r.values["text"] for r in
                                                transfer_set.read(config)]  # A fixed shuffle.
  # The soft targets are the teacher's own logits, the hard labels their argmax.
  expected = distillation.run_teacher(teacher, "best", chosen, 16)
  np.testing.assert_allclose(task.train.teacher_logits[120:], expected, rtol=1e-5, atol=1e-6)
  np.testing.assert_array_equal(task.train.labels[120:], np.argmax(expected, axis=-1))
  whole = classifier(files, teacher=teacher, transfer=files["reviews"])  # Unit 'text'.
  assert len(transfer_set.read(whole)) == 30
  result = trainer.train_and_evaluate(config, str(tmp_path / "trained"))
  assert np.isfinite(result["train/loss"])


def test_bad_transfer_settings_are_named(files, teacher, tmp_path):
  with pytest.raises(UserError, match="config.distill.transfer=.*labelled by config.distill"
                     ".teacher"):
    trainer.train_and_evaluate(classifier(files, transfer=files["reviews"]), str(tmp_path / "a"))
  with pytest.raises(UserError, match="config.distill.transfer_examples=1,000 but "
                     "config.distill.transfer=.* gives only 60 sentences"):
    trainer.train_and_evaluate(
        classifier(files, teacher=teacher, transfer=files["reviews"], transfer_unit="sentence",
                   transfer_examples=1000), str(tmp_path / "b"))
  with pytest.raises(UserError, match="config.distill.transfer_unit='word'"):
    trainer.train_and_evaluate(
        classifier(files, teacher=teacher, transfer=files["reviews"], transfer_unit="word"),
        str(tmp_path / "c"))
  with pytest.raises(UserError, match="config.distill.transfer"):
    trainer.train_and_evaluate(
        classifier(files, teacher=teacher, transfer=str(tmp_path / "missing.txt")),
        str(tmp_path / "d"))
  for name in "bcd":
    assert not os.path.exists(tmp_path / name / distillation.OUTPUTS_FILE)
