"""EDA-style text augmentation (Wei & Zou 2019, "EDA") without synonyms.

An augmented text applies one randomly chosen operation to the whitespace-separated words
(joined back with single spaces):
  swap    n times, swap two words at distinct random positions
  delete  drop each word with probability `rate`, never all of them
  insert  n times, insert a random word of the sentence at a random position
with n = max(1, round(rate * num_words)). EDA's synonym replacement and synonym insertion need
a thesaurus; here insertion copies a word of the same sentence instead.
"""

from typing import Sequence

import numpy as np

from lm.data.reader import Record
from lm.errors import UserError

OPERATIONS = ("swap", "delete", "insert")


def augment_text(text: str,
                 rng: np.random.Generator,
                 *,
                 rate: float,
                 operations: Sequence[str] = OPERATIONS) -> str:
  """One augmented variant of `text` (see module doc); rate 0 returns `text` unchanged."""
  _check_rate(rate)
  operations = _check_operations(operations)
  words = text.split()
  if rate == 0 or not words:
    return text
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
  else:  # insert
    for _ in range(n):
      word = words[rng.integers(len(words))]
      words.insert(int(rng.integers(len(words) + 1)), word)
  return " ".join(words)


def augment_records(records: Sequence[Record], *, rate: float, copies: int,
                    operations: Sequence[str], seed: int) -> list[Record]:
  """`records` followed by `copies` rounds of augmented copies of each (other roles kept).

  Reproducible from `seed`; rate 0 or copies 0 returns the records unchanged.
  """
  _check_rate(rate)
  operations = _check_operations(operations)
  if isinstance(copies, bool) or not isinstance(copies, (int, np.integer)) or copies < 0:
    raise UserError(f"config.augment.copies must be an integer >= 0, got {copies!r}")
  records = list(records)
  if rate == 0 or copies == 0:
    return records
  rng = np.random.default_rng(seed)
  augmented = []
  for copy in range(1, copies + 1):
    for record in records:
      if "text" not in record.values:
        raise UserError(f"{record.where}: no text to augment (config.augment applies to the"
                        " text of classification examples)")
      text = augment_text(record.values["text"], rng, rate=rate, operations=operations)
      values = {**record.values, "text": text}
      augmented.append(Record(values, f"{record.where} (augmented copy {copy})"))
  return records + augmented


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
