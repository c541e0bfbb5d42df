"""The TF-IDF + logistic-regression baseline (config.model.architecture='tfidf'): the same
predictions as scikit-learn's own pipeline on the same texts, the classifiers' report and final
metrics, lm.predict on its workdir, a learning-curve subset, Chinese characters, bad config."""

import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, roc_curve

from lm import defaults
from lm.errors import UserError
from lm.tasks import distillation
from lm.training import trainer
from tests.conftest import FIXTURES, REPO

SST2 = os.path.join(FIXTURES, "sst2")


def tfidf_config(**data):
  config = defaults.base_config()
  config.task.kind = "classification"
  config.model.architecture = "tfidf"
  config.data.update(source=os.path.join(SST2, "train.tsv"),
                     valid_source=os.path.join(SST2, "dev.tsv"),
                     text_field="sentence",
                     label_field="label",
                     **data)
  return config


def read_tsv(path):
  with open(path, encoding="utf-8", newline="") as f:
    rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
  return [r["sentence"] for r in rows], np.array([int(r["label"]) for r in rows])


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("tfidf") / "run")
  return workdir, trainer.train_and_evaluate(tfidf_config(), workdir)


def test_predictions_equal_scikit_learns_pipeline(fitted):
  workdir, metrics = fitted
  train_x, train_y = read_tsv(os.path.join(SST2, "train.tsv"))
  valid_x, valid_y = read_tsv(os.path.join(SST2, "dev.tsv"))
  vectorizer = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True, lowercase=False)
  model = LogisticRegression(C=1.0, max_iter=2000).fit(vectorizer.fit_transform(train_x), train_y)
  probs = model.predict_proba(vectorizer.transform(valid_x))
  assert metrics["eval/accuracy"] == pytest.approx(accuracy_score(valid_y, probs.argmax(1)))
  nll = -np.mean(np.log(probs[np.arange(len(valid_y)), valid_y]))
  assert metrics["eval/loss"] == pytest.approx(nll, rel=1e-9)
  assert metrics["train/features"] == len(vectorizer.vocabulary_)
  with open(os.path.join(workdir, "eval_report.json"), encoding="utf-8") as f:
    report = json.load(f)
  assert np.sum(report["confusion_matrix"]["matrix"]) == len(valid_y) == report["num_examples"]
  fpr, tpr, _ = roc_curve(valid_y, probs[:, 1])
  np.testing.assert_allclose(report["curves"]["roc"]["fpr"], fpr, rtol=1e-9)
  np.testing.assert_allclose(report["curves"]["roc"]["tpr"], tpr, rtol=1e-9)
  assert report["curves"]["roc"]["auc"] == pytest.approx(metrics["eval/roc_auc"], rel=1e-9)
  assert os.path.getsize(os.path.join(workdir, "curves.png")) > 0
  with open(os.path.join(workdir, "final_metrics.json"), encoding="utf-8") as f:
    assert json.load(f)["metrics"]["eval/accuracy"] == metrics["eval/accuracy"]

  output = os.path.join(os.path.dirname(workdir), "dev_predictions.tsv")
  result = subprocess.run([sys.executable, "-m", "lm.predict", f"--workdir={workdir}",
                           f"--input={os.path.join(SST2, 'dev.tsv')}", f"--output={output}",
                           "--text_column=sentence", "--label_column=label"],
                          cwd=REPO, capture_output=True, text=True, check=False, timeout=300)
  assert result.returncode == 0, result.stderr
  with open(output, encoding="utf-8", newline="") as f:
    rows = list(csv.DictReader(f, delimiter="\t"))
  np.testing.assert_allclose([float(r["p_1"]) for r in rows], probs[:, 1], rtol=1e-9)
  with open(output + ".metrics.json", encoding="utf-8") as f:
    assert json.load(f)["metrics"]["eval/accuracy"] == metrics["eval/accuracy"]


def test_a_sweep_reads_its_outcome(fitted):
  """lm.sweep's tables: the fitted weights as parameters, no training FLOPs, its metrics."""
  from lm.sweep import outcome, plan  # pylint: disable=g-import-not-at-top
  workdir, metrics = fitted
  run = plan.Run(plan.Variant("tfidf", {"model.architecture": "tfidf"}), 0, workdir, "exp.py")
  result = outcome.read_outcome(run)
  train_x, _ = read_tsv(os.path.join(SST2, "train.tsv"))
  features = len(TfidfVectorizer(ngram_range=(1, 2), min_df=2, lowercase=False)
                 .fit(train_x).vocabulary_)
  assert result.params == features + 1  # A binary logistic regression: one weight row, a bias.
  assert result.flops == 0.0 and result.step == 0
  assert result.metrics["eval/accuracy"] == metrics["eval/accuracy"]


def test_a_tfidf_run_is_refused_as_a_distillation_teacher(fitted):
  workdir, _ = fitted
  with pytest.raises(UserError, match=f"teacher={workdir}: a TF-IDF baseline, not a trained"):
    distillation.check_teacher(workdir, "classification", None)


def test_train_examples_fit_on_the_subset(tmp_path):
  few = trainer.train_and_evaluate(tfidf_config(train_examples=100), str(tmp_path / "few"))
  with open(tmp_path / "few" / "labels.json", encoding="utf-8") as f:
    assert json.load(f)
  assert few["train/features"] < 2000  # Fewer n-grams seen twice in 100 sentences than in 400.
  with pytest.raises(UserError, match="train_examples=401 but the training split has only 400"):
    trainer.train_and_evaluate(tfidf_config(train_examples=401), str(tmp_path / "too_many"))


def chinese_reviews_config(tmp_path):
  """A TF-IDF run that trains and validates on a few short Chinese reviews."""
  rows = [("这部电影很好看", "pos"), ("演员的表演非常精彩", "pos"), ("我很喜欢这个故事", "pos"),
          ("剧情无聊又拖沓", "neg"), ("浪费时间，很难看", "neg"), ("我不喜欢这部电影", "neg")] * 3
  source = tmp_path / "zh.tsv"
  source.write_text("text\tlabel\n" + "".join(f"{t}\t{l}\n" for t, l in rows), encoding="utf-8")
  config = tfidf_config()
  config.data.update(source=str(source), valid_source=str(source), text_field="text")
  return config


def test_chinese_texts_with_character_ngrams(tmp_path):
  config = chinese_reviews_config(tmp_path)
  config.tfidf.update(analyzer="char", min_df=1)
  metrics = trainer.train_and_evaluate(config, str(tmp_path / "zh"))
  assert metrics["eval/accuracy"] == 1.0  # Its own training texts.
  config.tfidf.analyzer = "word"  # scikit-learn's word pattern sees whole unspaced sentences.
  words = trainer.train_and_evaluate(config, str(tmp_path / "zh_words"))
  assert words["train/features"] < metrics["train/features"]


@pytest.mark.parametrize("change, error", [
    ({"task.kind": "causal_lm"}, "fits text classifiers only"),
    ({"tfidf.analyzer": "words"}, r"config.tfidf.analyzer='words': must be one of word, char"),
    ({"tfidf.ngram_max": 0}, r"config.tfidf.ngram_max=0: must be an integer >= 1"),
    ({"tfidf.C": -1.0}, r"config.tfidf.C=-1.0: must be a number > 0"),
])
def test_bad_config_is_named_before_anything_is_written(tmp_path, change, error):
  config = tfidf_config()
  for key, value in change.items():
    section, name = key.split(".")
    config[section][name] = value
  with pytest.raises(UserError, match=error):
    trainer.train_and_evaluate(config, str(tmp_path / "run"))
  assert not os.path.exists(tmp_path / "run" / "tfidf.joblib")
