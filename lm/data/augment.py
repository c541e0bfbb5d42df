"""Text augmentation: EDA's operations (Wei & Zou 2019) without synonyms, and the masking, word
replacement and n-gram sampling of Tang et al. 2019 (a transfer set for distillation).

A text is a sequence of units: a CJK character is a unit of its own (Chinese has no spaces
between words), any other run of non-space characters is one. Units are joined back with a
space, except next to a CJK character. An augmented text applies one randomly chosen operation:
  swap     n times, swap two units at distinct random positions
  delete   drop each unit with probability `rate`, never all of them
  insert   n times, insert a random unit of the text at a random position
  mask     replace each unit with probability `rate` by MASK_TOKEN, at least one
  replace  replace each unit with probability `rate` by a unit drawn from the training texts
           (by frequency; Tang et al. draw one of the same part of speech, which needs a tagger)
  ngram    keep one random n-gram of the text, n uniform in 1..5 (Tang et al.'s n-gram sampling)
with n = max(1, round(rate * num_units)). EDA's synonym replacement and insertion need a
thesaurus; `insert` copies a unit of the same text instead.
"""

import collections
import re
from typing import Sequence

import numpy as np

from lm.data import cjk
from lm.data.reader import Record
from lm.data.segmenter import join
from lm.errors import UserError

EDA_OPERATIONS = ("swap", "delete", "insert")
OPERATIONS = EDA_OPERATIONS + ("mask", "replace", "ngram")
MASK_TOKEN = "[MASK]"  # BERT's: what a teacher labeling a masked text recognizes.
MAX_NGRAM = 5
_UNIT_RE = re.compile(f"[{cjk.IDEOGRAPHS}]|[^\\s{cjk.IDEOGRAPHS}]+")


def units(text: str) -> list[str]:
  """The text's units: each CJK character, and each other run of non-space characters."""
  return _UNIT_RE.findall(text)


def augment_text(text: str,
                 rng: np.random.Generator,
                 *,
                 rate: float,
                 operations: Sequence[str] = EDA_OPERATIONS,
                 vocabulary: Sequence[str] = (),
                 operation: str | None = None) -> str:
  """One augmented variant of `text` (see module doc) by `operation`, or one chosen at random
  from `operations`; rate 0 or a blank text returns `text` unchanged. `vocabulary`: units
  (repeated by frequency) that 'replace' draws from; without one it draws the text's own."""
  _check_rate(rate)
  operations = _check_operations(operations)
  words = units(text)
  if rate == 0 or not words:
    return text
  if operation is None:
    operation = operations[rng.integers(len(operations))]
  n = max(1, round(rate * len(words)))
  if operation == "swap":
    if len(words) >= 2:
      for _ in range(n):
        i = int(rng.integers(len(words)))
        j = (i + 1 + int(rng.integers(len(words) - 1))) % len(words)  # Any position but i.
        words[i], words[j] = words[j], words[i]
  elif operation == "delete":
    keep = rng.random(len(words)) >= rate
    if not keep.any():
      keep[rng.integers(len(words))] = True
    words = [word for word, kept in zip(words, keep) if kept]
  elif operation == "insert":
    for _ in range(n):
      word = words[rng.integers(len(words))]
      words.insert(int(rng.integers(len(words) + 1)), word)
  elif operation in ("mask", "replace"):
    chosen = rng.random(len(words)) < rate
    if not chosen.any():
      chosen[rng.integers(len(words))] = True
    pool = vocabulary or words
    for i in np.flatnonzero(chosen):
      words[i] = MASK_TOKEN if operation == "mask" else pool[rng.integers(len(pool))]
  else:  # ngram
    size = min(int(rng.integers(1, MAX_NGRAM + 1)), len(words))
    start = int(rng.integers(len(words) - size + 1))
    words = words[start:start + size]
  return join(words)


def augment_records(records: Sequence[Record], *, rate: float, copies: int,
                    operations: Sequence[str], seed: int) -> tuple[list[Record], dict[str, int]]:
  """`records` followed by `copies` rounds of augmented copies of each (other roles kept), and
  how many copies each operation made.

  Reproducible from `seed`; rate 0 or copies 0 returns the records unchanged. 'replace' draws
  from the units of all the records' texts, by frequency.
  """
  _check_rate(rate)
  operations = _check_operations(operations)
  if isinstance(copies, bool) or not isinstance(copies, (int, np.integer)) or copies < 0:
    raise UserError(f"config.augment.copies must be an integer >= 0, got {copies!r}")
  records = list(records)
  if rate == 0 or copies == 0:
    return records, {}
  for record in records:
    if "text" not in record.values:
      raise UserError(f"{record.where}: no text to augment (config.augment applies to the"
                      " text of classification examples)")
  vocabulary = ([u for r in records for u in units(r.values["text"])]
                if "replace" in operations else [])
  rng = np.random.default_rng(seed)
  augmented, counts = [], collections.Counter()
  for copy in range(1, copies + 1):
    for record in records:
      operation = operations[rng.integers(len(operations))]
      text = augment_text(record.values["text"], rng, rate=rate, operations=operations,
                          vocabulary=vocabulary, operation=operation)
      counts[operation] += 1
      values = {**record.values, "text": text}
      augmented.append(Record(values, f"{record.where} (augmented copy {copy})"))
  return records + augmented, dict(counts)


def _check_rate(rate: float) -> None:
  if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0.0 <= rate < 1.0:
    raise UserError(f"config.augment.rate must be a number in [0, 1), got {rate!r}")


def _check_operations(operations: Sequence[str]) -> tuple[str, ...]:
  if isinstance(operations, str):
    operations = [op.strip() for op in operations.split(",") if op.strip()]
  operations = tuple(operations)
  if not operations:
    raise UserError(f"config.augment.operations is empty; use some of {', '.join(OPERATIONS)}")
  for operation in operations:
    if operation not in OPERATIONS:
      raise UserError(f"config.augment.operations: unknown operation {operation!r}; use some of"
                      f" {', '.join(OPERATIONS)}")
  return operations
