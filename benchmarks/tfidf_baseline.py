"""TF-IDF + logistic regression on the same splits as the fine-tuning experiments, as a table.

The reference point the issues quote (a word unigram+bigram TF-IDF logistic regression) on
exactly the examples the experiment trains and validates on: the records come from the
experiment config through lm's own reader (its validation source, or its held-out split of the
training file), lower-cased as the experiment does. One fixed setting, nothing tuned:
sublinear tf, words and word pairs seen in >= 2 training texts, L2-regularized logistic
regression with C = 1. Needs scikit-learn (requirements-test.txt).

  .venv/bin/python benchmarks/tfidf_baseline.py          # SST-2 (dev) and IMDB (held-out 10%)
  .venv/bin/python benchmarks/tfidf_baseline.py --experiments=imdb.py:finetune
  .venv/bin/python benchmarks/tfidf_baseline.py --experiments=sst2.py:finetune \
      --pilot=runs/pilot/sst2_sentences          # a split from benchmarks/pilot_splits.py
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from experiments import sst2  # pylint: disable=g-import-not-at-top
from lm import config_file  # pylint: disable=g-import-not-at-top
from lm.tasks import supervised  # pylint: disable=g-import-not-at-top

# SST-2 is validated on its dev set, as the 82.2% is.
VALID_SOURCES = {"sst2.py": f"{sst2.DATA}/sst2/dev.tsv"}


def splits(experiment: str, pilot: str = ""):
  """(train texts, train labels, valid texts, valid labels) of `experiment` (FILE:ARGS), or of
  the pilot split PILOT_{train,valid}.jsonl read with the experiment's config."""
  config = config_file.load(os.path.join("experiments", experiment))
  name = experiment.split(":")[0]
  if pilot:
    config.data.source, config.data.valid_source = (f"{pilot}_{part}.jsonl"
                                                    for part in ("train", "valid"))
    config.data.text_field, config.data.label_field = "text", "label"
  elif name in VALID_SOURCES:
    config.data.valid_source = VALID_SOURCES[name]
  fields = {"text": config.data.text_field, "label": config.data.label_field}
  train, valid = supervised.read_splits(config, fields)
  return ([r.values["text"] for r in train], [r.values["label"] for r in train],
          [r.values["text"] for r in valid], [r.values["label"] for r in valid])


def main() -> None:
  from sklearn.feature_extraction.text import TfidfVectorizer  # pylint: disable=g-import-not-at-top
  from sklearn.linear_model import LogisticRegression  # pylint: disable=g-import-not-at-top
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--experiments",
                      default="sst2.py:finetune;imdb.py:finetune",
                      help="';'-separated FILE:ARGS under experiments/")
  parser.add_argument("--pilot", default="",
                      help="PREFIX of pilot split files PREFIX_train.jsonl, PREFIX_valid.jsonl")
  args = parser.parse_args()
  print("| experiment | train texts | valid texts | features | valid accuracy | seconds |")
  print("|---|---:|---:|---:|---:|---:|")
  for experiment in args.experiments.split(";"):
    start = time.perf_counter()
    train_x, train_y, valid_x, valid_y = splits(experiment, args.pilot)
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True)
    features = vectorizer.fit_transform(train_x)
    model = LogisticRegression(C=1.0, max_iter=2000).fit(features, train_y)
    accuracy = model.score(vectorizer.transform(valid_x), valid_y)
    print(f"| {experiment} | {len(train_x):,} | {len(valid_x):,} | {features.shape[1]:,} | "
          f"{100 * accuracy:.2f}% | {time.perf_counter() - start:.0f} |")


if __name__ == "__main__":
  main()
