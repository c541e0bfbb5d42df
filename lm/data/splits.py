"""Validation data split off the training data (the tail of a text corpus, held-out records, or
held-out whole texts of a phrase treebank), and the first N training records of a fixed shuffle
(low-resource runs)."""

import bisect
from typing import Sequence

import numpy as np

from lm.data.reader import Record
from lm.errors import UserError


def split_train_valid(documents: list[str], valid_fraction: float) -> tuple[list[str], list[str]]:
  """Splits off the last `valid_fraction` of the text as validation data.

  One document is cut at character `int(len * (1 - valid_fraction))` (nanoGPT's split of Tiny
  Shakespeare); several are cut at the first document boundary where the running character
  count reaches `1 - valid_fraction` of the total, keeping at least one document per side.
  """
  if (isinstance(valid_fraction, bool) or not isinstance(valid_fraction, (int, float)) or
      not 0.0 < valid_fraction < 1.0):
    raise UserError(
        f"config.data.valid_fraction must be a number in (0, 1), got {valid_fraction!r}")
  if not documents:
    raise UserError("no documents to split into train and validation data (config.data.source)")
  if len(documents) == 1:
    text = documents[0]
    cut = int(len(text) * (1.0 - valid_fraction))
    if not 0 < cut < len(text):
      raise UserError(f"the single document has {len(text)} characters: too short to split with"
                      f" config.data.valid_fraction={valid_fraction}")
    return [text[:cut]], [text[cut:]]
  cumulative, total = [], 0
  for document in documents:
    total += len(document)
    cumulative.append(total)
  # Smallest k with cumulative[k - 1] >= target, i.e. train = documents[:k].
  k = bisect.bisect_left(cumulative, total * (1.0 - valid_fraction)) + 1
  k = min(max(k, 1), len(documents) - 1)
  return documents[:k], documents[k:]


def held_out_split(records: Sequence[Record],
                   fraction: float,
                   seed: int = 0) -> tuple[list[Record], list[Record]]:
  """Randomly holds out round(fraction * n) records (1..n-1) for validation.

  Which records are held out comes from `np.random.default_rng(seed).permutation(n)`; both parts
  keep file order. Returns (train, valid).
  """
  if (isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or
      not 0.0 < fraction < 1.0):
    raise UserError(f"config.data.valid_fraction must be a number in (0, 1), got {fraction!r}")
  n = len(records)
  if n < 2:
    raise UserError(f"{n} record(s) cannot be split into train and validation data"
                    " (config.data.valid_fraction); use more data or a validation source")
  num_valid = min(max(round(fraction * n), 1), n - 1)
  permutation = np.random.default_rng(seed).permutation(n)
  is_valid = np.zeros(n, dtype=bool)
  is_valid[permutation[:num_valid]] = True
  train = [r for r, v in zip(records, is_valid) if not v]
  valid = [r for r, v in zip(records, is_valid) if v]
  return train, valid


# How config.data.valid_fraction holds out validation records (config.data.valid_holdout).
HOLDOUTS = ("records", "whole_texts")


def held_out(records: Sequence[Record], fraction: float, seed: int = 0,
             holdout: str = "records") -> tuple[list[Record], list[Record]]:
  """(train, valid): `held_out_split` for holdout 'records', `whole_text_split` for
  'whole_texts'."""
  if holdout == "whole_texts":
    return whole_text_split(records, fraction, seed)
  return held_out_split(records, fraction, seed)


def whole_text_split(records: Sequence[Record], fraction: float,
                     seed: int = 0) -> tuple[list[Record], list[Record]]:
  """Holds out whole texts of a phrase treebank, and none of their pieces for training.

  SST-2's training split lists every sentence and each of its sub-phrases as records, so a
  random record held out has most of its words' phrases (and their labels) in training. Here a
  whole text is a record whose text (its "text" value, as whitespace-separated tokens) lies
  inside no other record's; round(fraction * wholes) of them (1..wholes-1) are held out, chosen
  by `np.random.default_rng(seed).permutation`, and every record whose text lies inside a
  held-out one (or equals it) leaves training. Both parts keep file order. Returns (train, valid).
  """
  if (isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or
      not 0.0 < fraction < 1.0):
    raise UserError(f"config.data.valid_fraction must be a number in (0, 1), got {fraction!r}")
  if records and "text" not in records[0].values:
    raise UserError("config.data.valid_holdout='whole_texts' holds out texts: the records have "
                    "no text field (config.data.text_field)")
  words = [tuple(r.values["text"].split()) for r in records]
  whole = _whole_texts(words)
  if len(whole) < 2:
    raise UserError(f"{len(whole)} whole text(s) cannot be split into train and validation data"
                    " (config.data.valid_holdout='whole_texts'); use more data")
  num_valid = min(max(round(fraction * len(whole)), 1), len(whole) - 1)
  chosen = {whole[i] for i in np.random.default_rng(seed).permutation(len(whole))[:num_valid]}
  inside_chosen = set().union(*(_pieces(text) for text in chosen)) | chosen
  valid_texts = set()  # One record per held-out text (a duplicate row is not a second one).
  train, valid = [], []
  for record, text in zip(records, words):
    if text in chosen:
      if text not in valid_texts:
        valid.append(record)
        valid_texts.add(text)
    elif text not in inside_chosen:
      train.append(record)
  return train, valid


def _whole_texts(texts: Sequence[tuple[str, ...]]) -> list[tuple[str, ...]]:
  """The distinct texts that lie inside no other text, in first-seen order. Longest first, a
  text is whole unless it is a piece of an earlier whole one (a piece of a piece is a piece)."""
  distinct = list(dict.fromkeys(texts))
  pieces: set[tuple[str, ...]] = set()
  whole = set()
  for text in sorted(distinct, key=len, reverse=True):
    if text and text not in pieces:
      whole.add(text)
      pieces |= _pieces(text)
  return [text for text in distinct if text in whole]


def _pieces(text: tuple[str, ...]) -> set[tuple[str, ...]]:
  """Every contiguous run of `text`'s tokens shorter than the text."""
  n = len(text)
  return {text[a:b] for a in range(n) for b in range(a + 1, n + 1) if b - a < n}


def first_examples(records: Sequence[Record], num: int, seed: int = 0) -> list[Record]:
  """The records at the first `num` places of `np.random.default_rng(seed).permutation(n)`, in
  file order (all for num=0): every variant and seed of a learning curve trains on the same
  examples, and a smaller N's examples are among a larger one's. UserError (config key
  config.data.train_examples) for a num that is not an integer in [0, n]."""
  n = len(records)
  if isinstance(num, bool) or not isinstance(num, (int, np.integer)) or num < 0:
    raise UserError(f"config.data.train_examples must be an integer >= 0 (0: all), got {num!r}")
  if num > n:
    raise UserError(f"config.data.train_examples={num} but the training split has only {n:,} "
                    f"examples")
  if not num:
    return list(records)
  chosen = np.sort(np.random.default_rng(seed).permutation(n)[:num])
  return [records[i] for i in chosen]


def fold_split(records: Sequence[Record], folds: int, fold: int,
               seed: int = 0) -> tuple[list[Record], list[Record]]:
  """(train, valid) of k-fold cross-validation: fold `fold` of `folds` is the validation part.

  Records with a "label" are stratified: each label's records, shuffled by
  `np.random.default_rng(seed)`, are dealt round-robin to the folds, so every fold holds a
  label's share within one record; the others are shuffled and dealt the same way. The folds
  are disjoint, cover the records, and are the same in every run; both parts keep file order.
  UserError (config.data.folds / fold) for bad numbers or a label with fewer records than folds.
  """
  if isinstance(folds, bool) or not isinstance(folds, (int, np.integer)) or folds < 2:
    raise UserError(f"config.data.folds must be an integer >= 2 (0: no cross-validation), got "
                    f"{folds!r}")
  if isinstance(fold, bool) or not isinstance(fold, (int, np.integer)) or not 0 <= fold < folds:
    raise UserError(f"config.data.fold={fold!r}: must be an integer in [0, {folds}) "
                    f"(config.data.folds={folds})")
  groups: dict[str, list[int]] = {}
  for i, record in enumerate(records):
    groups.setdefault(record.values.get("label", ""), []).append(i)
  rng = np.random.default_rng(seed)
  fold_of = np.empty(len(records), np.int64)
  dealt = 0  # Continue the round-robin across labels, so fold sizes differ by at most one.
  for label, indices in sorted(groups.items()):
    if len(indices) < folds:
      what = f"label {label!r}" if label else "the training split"
      raise UserError(f"config.data.folds={folds}: {what} has only {len(indices)} examples, "
                      f"fewer than the folds")
    fold_of[rng.permutation(indices)] = (dealt + np.arange(len(indices))) % folds
    dealt += len(indices)
  train = [r for r, f in zip(records, fold_of) if f != fold]
  valid = [r for r, f in zip(records, fold_of) if f == fold]
  return train, valid
