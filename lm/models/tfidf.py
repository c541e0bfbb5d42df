"""TF-IDF n-grams + logistic regression (scikit-learn): the classic baseline inside the project.

`config.model.architecture='tfidf'` with config.task.kind='classification' fits, in closed form
instead of training steps, on the same records as a neural classifier (config.data: sources,
fields, sentence pairs, train_examples, cleaning, lowercasing) and reports the same validation
metrics, eval_report.json and confusion matrix. config.tfidf sets it:
  analyzer      'word' (scikit-learn's word tokens, or config.data.word_segmenter's: 'jieba'
                for Chinese words), 'char' or 'char_wb' (character n-grams)
  ngram_max     n-grams of 1..ngram_max units
  min_df        a feature is kept if seen in at least this many training texts
  max_features  keep the most frequent ones (0: all)
  sublinear_tf  1 + log(tf) instead of raw counts
  C, max_iter   inverse L2 strength and iteration limit of the logistic regression (lbfgs)
The fitted pipeline is saved as WORKDIR/tfidf.joblib with the label set; `lm.predict` reads it.
"""

import os
import time
from typing import Any

import numpy as np

from lm.data import atomic, labels, segmenter
from lm.errors import UserError
from lm.tasks import classification, supervised
from lm.training import checkpoints, metrics_log

ANALYZERS = ("word", "char", "char_wb")
MODEL_FILE = "tfidf.joblib"
PAIR_SEPARATOR = "\n"  # Between a sentence pair's texts, so no word n-gram spans both.


def check_config(values: dict) -> None:
  """UserError naming the config.tfidf key (or config.init_from, config.task.kind) a TF-IDF run
  cannot use."""
  if values["task"]["kind"] != "classification":
    raise UserError(f"config.model.architecture='tfidf' fits text classifiers only "
                    f"(config.task.kind='classification'), not {values['task']['kind']!r}")
  if values["init_from"]:
    raise UserError("config.init_from: a TF-IDF model has no pretrained weights to start from;"
                    " set config.init_from=''")
  cfg = values["tfidf"]
  checks = (("analyzer", cfg["analyzer"] in ANALYZERS, f"one of {', '.join(ANALYZERS)}"),
            ("ngram_max", _int(cfg["ngram_max"]) and cfg["ngram_max"] >= 1, "an integer >= 1"),
            ("min_df", _int(cfg["min_df"]) and cfg["min_df"] >= 1, "an integer >= 1"),
            ("max_features", _int(cfg["max_features"]) and cfg["max_features"] >= 0,
             "an integer >= 0 (0: all)"),
            ("C", _number(cfg["C"]) and cfg["C"] > 0, "a number > 0"),
            ("max_iter", _int(cfg["max_iter"]) and cfg["max_iter"] >= 1, "an integer >= 1"))
  for key, ok, wanted in checks:
    if not ok:
      raise UserError(f"config.tfidf.{key}={cfg[key]!r}: must be {wanted}")


def fit_and_evaluate(config: Any, workdir: str) -> dict[str, float]:
  """Fits config.tfidf's pipeline on the training records, evaluates it on the validation ones,
  writes the report, the model and the final metrics to `workdir`; returns the metrics.
  config.tfidf was checked with the rest of the config (lm.config_checks, `check_config`)."""
  train, valid = _records(config)
  label_set = labels.load_saved(workdir) or labels.LabelSet.from_config(config.data.labels, train)
  targets = [np.array([label_set.index(r.values["label"], r.where) for r in records], np.int32)
             for records in (train, valid)]
  start = time.perf_counter()
  pipeline = _pipeline(config.tfidf, config.data.word_segmenter)
  try:
    pipeline.fit([_text(r) for r in train], targets[0])
  except ValueError as e:  # An empty vocabulary, or one class only.
    raise UserError(f"config.tfidf / config.data: cannot fit on the {len(train):,} training "
                    f"texts: {e}") from None
  fit_seconds = time.perf_counter() - start
  probs_NxC = probabilities(pipeline, [_text(r) for r in valid], len(label_set.names))
  metrics = classification.validation_metrics(targets[1], probs_NxC, list(label_set.names))
  metrics["train/fit_seconds"] = fit_seconds
  metrics["train/features"] = float(len(pipeline[0].vocabulary_))
  labels.save(workdir, label_set)
  _save(pipeline, os.path.join(workdir, MODEL_FILE))
  classification.write_report(workdir, 0, metrics, targets[1], probs_NxC, list(label_set.names))
  checkpoints.save_config(workdir, config.to_dict())
  log = metrics_log.MetricsLog(workdir, 0, 0)
  try:
    log.message(f"TF-IDF ({config.tfidf.analyzer} 1-{config.tfidf.ngram_max}-grams, "
                f"{len(pipeline[0].vocabulary_):,} features) + logistic regression: fitted on "
                f"{len(train):,} texts in {fit_seconds:.1f} s; {len(valid):,} validation texts")
    log.write(0, metrics)
  finally:
    log.close()
  metrics_log.write_final(workdir, 0, metrics)
  return metrics


def probabilities(pipeline: Any, texts: list[str], num_classes: int) -> np.ndarray:
  """[N, C] class probabilities; a class absent from the training texts gets 0."""
  probs_NxC = np.zeros((len(texts), num_classes), np.float64)
  if texts:
    probs_NxC[:, pipeline.classes_] = pipeline.predict_proba(texts)
  return probs_NxC


def load(workdir: str) -> Any:
  """The fitted pipeline saved in `workdir`."""
  import joblib  # pylint: disable=g-import-not-at-top
  path = os.path.join(workdir, MODEL_FILE)
  if not os.path.exists(path):
    raise UserError(f"{workdir}: no {MODEL_FILE}; fit it first with python -m lm.main "
                    f"--config=... --config.model.architecture=tfidf --workdir={workdir}")
  return joblib.load(path)


def count_params(workdir: str) -> int:
  """The fitted logistic regression's weights and biases (the TF-IDF vocabulary is not
  counted: it is a lookup table, not learned weights)."""
  classifier = load(workdir)[-1]
  return int(classifier.coef_.size + classifier.intercept_.size)


def is_tfidf_run(workdir: str) -> bool:
  return os.path.exists(os.path.join(workdir, MODEL_FILE))


def text_of(text: str, text_pair: str | None = None) -> str:
  """The text a TF-IDF model reads for a text (and the second of a pair)."""
  return text if text_pair is None else text + PAIR_SEPARATOR + text_pair


def _records(config: Any) -> tuple[list, list]:
  data = config.data
  fields = {"text": data.text_field, "label": data.label_field}
  if data.text_pair_field:
    fields["text_pair"] = data.text_pair_field
  return supervised.read_splits(config, fields)


def _text(record: Any) -> str:
  return text_of(record.values["text"], record.values.get("text_pair"))


def _pipeline(cfg: Any, word_segmenter: str) -> Any:
  """The vectorizer and the classifier; 'word' units are config.data.word_segmenter's (jieba:
  Chinese words), else scikit-learn's word pattern."""
  from sklearn.feature_extraction.text import TfidfVectorizer  # pylint: disable=g-import-not-at-top
  from sklearn.linear_model import LogisticRegression  # pylint: disable=g-import-not-at-top
  from sklearn.pipeline import Pipeline  # pylint: disable=g-import-not-at-top
  words = {}
  if cfg.analyzer == "word" and word_segmenter:
    words = dict(tokenizer=segmenter.splitter(word_segmenter), token_pattern=None)
  vectorizer = TfidfVectorizer(analyzer=cfg.analyzer,
                               **words,
                               ngram_range=(1, cfg.ngram_max),
                               min_df=cfg.min_df,
                               max_features=cfg.max_features or None,
                               sublinear_tf=cfg.sublinear_tf,
                               lowercase=False)  # config.data.lowercase decides, as for models.
  return Pipeline([("tfidf", vectorizer),
                   ("logreg", LogisticRegression(C=cfg.C, max_iter=cfg.max_iter))])


def _save(pipeline: Any, path: str) -> None:
  import joblib  # pylint: disable=g-import-not-at-top
  with atomic.atomic_writer(path) as f:
    joblib.dump(pipeline, f)


def _int(value: Any) -> bool:
  return isinstance(value, int) and not isinstance(value, bool)


def _number(value: Any) -> bool:
  return isinstance(value, (int, float)) and not isinstance(value, bool)
