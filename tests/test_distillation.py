"""Knowledge distillation into a classifier, a tagger and an encoder–decoder: the KL and MSE
losses against a float64 reference (and plain cross-entropy at alpha = 1), teacher outputs
computed once and reused by a resumed run, teachers with another tokenizer, and bad teachers."""

import os
import shutil

import jax.numpy as jnp
import numpy as np
import pytest

from experiments import multi30k, sst2, wnut17
from lm.data import tagged, tokenizers
from lm.errors import UserError
from lm.tasks import distillation, seq2seq, token_classification
from lm.training import checkpoints, steps, trainer
from tests.conftest import FIXTURES
from tests.sst2_students import classifier_config, trained_teacher, write_slices


def test_loss_equals_a_float64_reference_and_alpha_one_is_cross_entropy():
  rng = np.random.default_rng(0)
  student_BxC = rng.normal(size=(5, 3)) * 3
  teacher_BxC = rng.normal(size=(5, 3)) * 2  # Logits.
  labels_B = rng.integers(0, 3, size=5)
  hard_B = steps.classification_loss(jnp.asarray(student_BxC, jnp.float32),
                                     {"labels": jnp.asarray(labels_B)})
  for alpha, t in ((0.5, 2.0), (0.1, 4.0), (1.0, 2.0), (0.0, 1.0)):
    got = distillation.distillation_loss(jnp.asarray(student_BxC, jnp.float32),
                                         jnp.asarray(teacher_BxC, jnp.float32), hard_B,
                                         alpha=alpha, temperature=t)

    def log_softmax(x):
      x = x - x.max(-1, keepdims=True)
      return x - np.log(np.exp(x).sum(-1, keepdims=True))

    p_teacher = np.exp(log_softmax(teacher_BxC / t))
    kl = (p_teacher * (log_softmax(teacher_BxC / t) - log_softmax(student_BxC / t))).sum(-1)
    ce = -log_softmax(student_BxC)[np.arange(5), labels_B]
    np.testing.assert_allclose(got, alpha * ce + (1 - alpha) * t * t * kl, rtol=2e-5, atol=1e-6)
    mse = distillation.distillation_loss(jnp.asarray(student_BxC, jnp.float32),
                                         jnp.asarray(teacher_BxC, jnp.float32), hard_B,
                                         alpha=alpha, temperature=t, loss="mse")
    np.testing.assert_allclose(
        mse, alpha * ce + (1 - alpha) * ((student_BxC - teacher_BxC)**2).mean(-1), rtol=2e-5,
        atol=1e-6)
  np.testing.assert_array_equal(
      distillation.distillation_loss(jnp.asarray(student_BxC, jnp.float32),
                                     jnp.asarray(teacher_BxC, jnp.float32), hard_B, alpha=1.0,
                                     temperature=3.0), hard_B)


def counted(monkeypatch, module, name: str) -> list:
  """The calls of module.name (the teacher runner) from now on, one entry each."""
  calls, function = [], getattr(module, name)
  monkeypatch.setattr(module, name, lambda *args: calls.append(1) or function(*args))
  return calls


@pytest.fixture(scope="module")
def files(tmp_path_factory):
  return write_slices(tmp_path_factory.mktemp("sst2"), train=300, valid=60)


@pytest.fixture(scope="module")
def teacher(files):
  """A character-level classifier: the students below use SentencePiece or words."""
  return trained_teacher(files, tokenizer="char")


def test_teacher_outputs_are_cached_and_a_resumed_student_reuses_them(files, teacher, tmp_path,
                                                                       monkeypatch):
  config = classifier_config(files, teacher=teacher, alpha=0.3, temperature=2.0)
  config.train.update(steps=4, checkpoint_every=2)
  workdir = str(tmp_path / "student")
  calls = counted(monkeypatch, distillation, "run_teacher")
  straight = trainer.train_and_evaluate(config, workdir)
  assert len(calls) == 1 and np.isfinite(straight["train/loss"])
  with np.load(os.path.join(workdir, distillation.OUTPUTS_FILE)) as cached:
    logits = cached["logits"]
  assert logits.shape == (300, 2)
  # The teacher's own predictions of those texts (lm.predict's path).
  from lm.tasks import classification_predict  # pylint: disable=g-import-not-at-top
  from lm.tasks import supervised  # pylint: disable=g-import-not-at-top
  train, _ = supervised.read_splits(config, {"text": "sentence", "label": "label"})
  probs, *_ = classification_predict.model_probabilities(teacher, "best", train[:8], None, 4)
  softmax = np.exp(logits[:8] - logits[:8].max(1, keepdims=True))
  np.testing.assert_allclose(softmax / softmax.sum(1, keepdims=True), probs, rtol=1e-5,
                             atol=1e-6)

  shutil.rmtree(os.path.join(workdir, "checkpoints", "4"))
  resumed = trainer.train_and_evaluate(config, workdir)
  assert len(calls) == 1  # The cache, not the teacher.
  assert resumed["train/loss"] == straight["train/loss"]

  undistilled = classifier_config(files, alpha=1.0)
  undistilled.train.update(steps=4, checkpoint_every=2)
  plain = trainer.train_and_evaluate(undistilled, str(tmp_path / "plain"))
  assert plain["train/loss"] != straight["train/loss"]  # The soft targets changed training.


def test_a_labels_only_student_runs_no_teacher_pass(files, teacher, tmp_path, monkeypatch):
  calls = counted(monkeypatch, distillation, "run_teacher")
  config = classifier_config(files, teacher=teacher, alpha=1.0)
  config.train.update(steps=2)
  workdir = tmp_path / "labels_only"
  trainer.train_and_evaluate(config, str(workdir))
  assert not calls and not os.path.exists(workdir / distillation.OUTPUTS_FILE)
  config.data.labels = "1,0"  # Its teacher is still checked.
  with pytest.raises(UserError, match=r"its labels \(0, 1\) differ from the student's"):
    trainer.train_and_evaluate(config, str(tmp_path / "other_labels"))


def test_students_of_other_seeds_share_the_cache_dir(files, teacher, tmp_path, monkeypatch):
  calls = counted(monkeypatch, distillation, "run_teacher")
  cache_dir = str(tmp_path / "cache")
  for seed in (0, 1):  # Augmented copies fixed by augment.seed: the same transfer set.
    config = classifier_config(files, teacher=teacher, alpha=0.3, cache_dir=cache_dir)
    config.augment.update(rate=0.2, copies=2, operations="mask,ngram", seed=5)
    config.update(seed=seed)
    config.train.update(steps=2)
    trainer.train_and_evaluate(config, str(tmp_path / f"seed{seed}"))
    assert not os.path.exists(tmp_path / f"seed{seed}" / distillation.OUTPUTS_FILE)
  assert len(calls) == 1 and len(os.listdir(cache_dir)) == 1
  config.augment.seed = -1  # config.seed's copies: another transfer set, another file.
  trainer.train_and_evaluate(config, str(tmp_path / "own_copies"))
  assert len(calls) == 2 and len(os.listdir(cache_dir)) == 2
  with np.load(os.path.join(cache_dir, sorted(os.listdir(cache_dir))[0])) as cached:
    assert cached["logits"].shape == (300 * 3, 2)


def test_bad_teachers_are_named(files, teacher, tmp_path):
  other_labels = tmp_path / "labels.tsv"
  rows = open(files["train"], encoding="utf-8").read().replace("\t1\n", "\tpos\n")
  other_labels.write_text(rows.replace("\t0\n", "\tneg\n"), encoding="utf-8")
  config = classifier_config(files, teacher=teacher)
  config.data.update(source=str(other_labels), valid_source="", labels="")
  with pytest.raises(UserError, match=r"its labels \(0, 1\) differ from the student's \(neg, "
                     r"pos"):
    trainer.train_and_evaluate(config, str(tmp_path / "a"))
  language_model = str(files["dir"] / "lm")
  lm_config = sst2.get_config("pretrain,smoke")
  lm_config.data.source = files["train"]
  trainer.train_and_evaluate(lm_config, language_model)
  with pytest.raises(UserError, match="'masked_lm' run, not a trained classifier"):
    trainer.train_and_evaluate(classifier_config(files, teacher=language_model),
                               str(tmp_path / "b"))
  with pytest.raises(UserError, match="config.distill.alpha"):
    trainer.train_and_evaluate(classifier_config(files, teacher=teacher, alpha=1.5),
                               str(tmp_path / "c"))


@pytest.fixture(scope="module")
def wnut(tmp_path_factory):
  """100 WNUT-17 training sentences and 30 dev ones, and a character-level tagger
  trained on them (the tagger students below use SentencePiece)."""
  directory = tmp_path_factory.mktemp("wnut")
  for name, source, count in (("train", "wnut17train.conll", 100),
                              ("valid", "emerging.dev.conll", 30)):
    blocks = (FIXTURES / "wnut17" / source).read_text(encoding="utf-8").split("\n\n")
    (directory / f"{name}.conll").write_text("\n\n".join(blocks[:count]) + "\n",
                                             encoding="utf-8")
  files = {"train": str(directory / "train.conll"), "valid": str(directory / "valid.conll")}
  config = tagger_config(files)
  config.data.tokenizer = "char"
  files["teacher"] = str(directory / "teacher")
  trainer.train_and_evaluate(config, files["teacher"])
  return files


def tagger_config(files, **distill):
  config = wnut17.get_config("scratch,smoke")
  config.data.update(source=files["train"], valid_source=files["valid"])
  config.distill.update(distill)
  return config


def test_word_rows_map_to_first_pieces_and_back_across_split_windows():
  sentences = [("a", "bbbbbbb", "cc"), ("dddddd", "e", "ffffffff", "g", "hh")]
  tokenizer = tokenizers.build_tokenizer("char", ["".join(s) for s in sentences],
                                         byte_fallback=False)
  per_word = [np.arange(len(s) * 3, dtype=np.float32).reshape(len(s), 3) + 10 * i
              for i, s in enumerate(sentences)]
  windows = token_classification.encode_windows(sentences, None, tokenizer, max_len=12,
                                                causal=False)
  assert windows.num_split == 1  # The second sentence takes two windows.
  rows = token_classification.at_first_pieces(windows, per_word)
  for row, weights in zip(rows, windows.weights):
    assert row.shape == (len(weights), 3) and not row[weights == 0].any()
  back = token_classification.word_probs(windows, rows, [len(s) for s in sentences])
  for got, want in zip(back, per_word):
    np.testing.assert_array_equal(got, want)


def test_a_tagger_distills_from_a_tagger_with_another_tokenizer(wnut, tmp_path, monkeypatch):
  config = tagger_config(wnut, teacher=wnut["teacher"], alpha=0.2, temperature=2.0)
  config.train.update(steps=4, checkpoint_every=2)
  workdir = str(tmp_path / "student")
  calls = counted(monkeypatch, token_classification, "teacher_word_logits")
  straight = trainer.train_and_evaluate(config, workdir)
  assert len(calls) == 1 and np.isfinite(straight["train/loss"])
  train = tagged.read_tagged(wnut["train"], config_key="test")
  with np.load(os.path.join(workdir, distillation.OUTPUTS_FILE)) as cached:
    logits = cached["logits"]
  assert logits.shape == (sum(len(s.tokens) for s in train.sentences), len(wnut_tags(wnut)))
  # The teacher's own tags of those words, as lm.predict writes them.
  predicted = tmp_path / "train.pred.conll"
  token_classification.predict_tags(wnut["teacher"], wnut["train"], str(predicted),
                                    checkpoint="best", batch_size=8)
  written = tagged.read_tagged(str(predicted), config_key="test")
  names = wnut_tags(wnut)
  assert [names[i] for i in logits.argmax(-1)] == [t for s in written.sentences for t in s.tags]

  shutil.rmtree(os.path.join(workdir, "checkpoints", "4"))
  resumed = trainer.train_and_evaluate(config, workdir)
  assert len(calls) == 1  # The cache, not the teacher.
  assert resumed["train/loss"] == straight["train/loss"]
  plain = tagger_config(wnut)
  plain.train.update(steps=4, checkpoint_every=2)
  assert trainer.train_and_evaluate(plain, str(tmp_path / "plain"))["train/loss"] != (
      straight["train/loss"])


def wnut_tags(wnut):
  from lm.data import labels  # pylint: disable=g-import-not-at-top
  return labels.load(wnut["teacher"]).names


def test_bad_tagger_teachers_and_students_are_named(wnut, files, teacher, tmp_path):
  with pytest.raises(UserError, match="'classification' run, not a trained tagger"):
    trainer.train_and_evaluate(tagger_config(wnut, teacher=teacher), str(tmp_path / "a"))
  reordered = tagger_config(wnut, teacher=wnut["teacher"])
  reordered.data.labels = ",".join(reversed(list(wnut_tags(wnut))))
  with pytest.raises(UserError, match="differ from the student's"):
    trainer.train_and_evaluate(reordered, str(tmp_path / "b"))
  language_model = sst2.get_config("pretrain,smoke")
  language_model.data.source = files["train"]
  language_model.distill.teacher = teacher
  with pytest.raises(UserError, match="distillation trains classification, token_classification"
                     " and seq2seq students, not config.task.kind='masked_lm'"):
    trainer.train_and_evaluate(language_model, str(tmp_path / "c"))


def translation_config(**overrides):
  """Multi30k smoke on its 40 validation pairs (training and validation alike)."""
  config = multi30k.get_config("cpu,smoke")
  config.data.update(source=str(FIXTURES / "multi30k" / "val.en"),
                     target=str(FIXTURES / "multi30k" / "val.de"))
  config.data.update(valid_source=config.data.source, valid_target=config.data.target,
                     tokenizer="char")
  config.train.update(batch_size=8, eval_batch_size=8)
  for key, value in overrides.items():
    section, name = key.split("__")
    config[section][name] = value
  return config


def test_a_seq2seq_student_trains_on_the_teacher_outputs(tmp_path, monkeypatch):
  teacher = str(tmp_path / "teacher")
  trainer.train_and_evaluate(translation_config(train__steps=10), teacher)
  config = translation_config(data__tokenizer="byte", distill__teacher=teacher,
                              distill__teacher_checkpoint="latest", distill__alpha=0.0)
  config.train.update(steps=4, checkpoint_every=2)
  calls = counted(monkeypatch, seq2seq, "teacher_outputs")
  workdir = str(tmp_path / "student")
  straight = trainer.train_and_evaluate(config, workdir)
  assert len(calls) == 1
  with np.load(os.path.join(workdir, distillation.OUTPUTS_FILE)) as cached:
    outputs = [str(text) for text in cached["logits"]]
  # What lm.generate writes for those sources with the teacher's decoding settings.
  saved = checkpoints.load_config(teacher)
  model_config, params, tokenizer = checkpoints.load_for_inference(teacher, "latest")
  sources = (FIXTURES / "multi30k" / "val.en").read_text(encoding="utf-8").splitlines()
  task_cfg = saved["task"]
  assert outputs == seq2seq.Seq2SeqTask.generate(
      saved, model_config, params, tokenizer, sources, beam_size=task_cfg["beam_size"],
      length_penalty=task_cfg["length_penalty"],
      max_new_tokens=task_cfg["max_new_tokens"] or model_config.max_len,
      temperature=0.0, top_k=0, top_p=1.0, seed=0)
  # alpha = 0: the student's targets are the teacher's (non-empty) outputs, and only those.
  task = seq2seq.Seq2SeqTask(config, workdir, {})
  assert task.train.references == [text for text in outputs if text.strip()]
  assert np.all(task.train.weights == 1.0)
  shutil.rmtree(os.path.join(workdir, "checkpoints", "4"))
  assert trainer.train_and_evaluate(config, workdir)["train/loss"] == straight["train/loss"]
  assert len(calls) == 1  # The cache, not the teacher.
  # alpha = 0.25: the gold pairs at weight 0.25 beside the teacher's at 0.75 (from the cache:
  # it is keyed by the teacher and the sources, not by the student's workdir).
  os.makedirs(tmp_path / "mixed")
  shutil.copy(os.path.join(workdir, distillation.OUTPUTS_FILE), tmp_path / "mixed")
  mixed = seq2seq.Seq2SeqTask(translation_config(distill__teacher=teacher, distill__alpha=0.25,
                                                 distill__teacher_checkpoint="latest"),
                              str(tmp_path / "mixed"), {})
  gold = (FIXTURES / "multi30k" / "val.de").read_text(encoding="utf-8").splitlines()
  assert mixed.train.references[:40] == gold
  np.testing.assert_array_equal(mixed.train.weights,
                                [0.25] * 40 + [0.75] * (len(mixed.train.references) - 40))
  assert len(calls) == 1
