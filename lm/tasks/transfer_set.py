"""Unlabelled texts for a distilled classifier (config.distill.transfer): Tang et al.'s (2019)
transfer set grown with in-domain text, e.g. IMDB's unlabelled reviews for an SST-2 student.

The texts are read from any source config.data.source could be (files, globs,
ARCHIVE:MEMBER_GLOB, tfds:NAME; the column or key config.data.text_field), split into sentences
when config.distill.transfer_unit='sentence' (a review is ten of SST-2's), and the first
config.distill.transfer_examples of a fixed shuffle are kept (the same texts for every seed, so
that the teacher's outputs over them are computed once). The teacher labels them: each becomes a
training example with the teacher's logits as its soft target and its most probable label as
the hard one (weighted by config.distill.alpha).
"""

import re
from typing import Any, Sequence

import numpy as np

from lm.data import reader, splits
from lm.data.augment import units
from lm.data.reader import Record
from lm.errors import UserError
from lm.tasks import supervised

UNITS = ("text", "sentence")
MIN_UNITS = 3  # Shorter sentences ("10/10", "Why?") say little a classifier can learn from.
_BREAK_RE = re.compile(r"<br\s*/?>", re.IGNORECASE)  # IMDB's line breaks.
# After ., ! or ? (and closing quotes or brackets) before a space; after 。！？ anywhere.
_SENTENCE_END_RE = re.compile(r"(?<=[.!?][\"')\]])\s+|(?<=[.!?])\s+|(?<=[。！？])")
SHUFFLE_SEED = 0


def sentences(text: str) -> list[str]:
  """The sentences of `text` with at least MIN_UNITS units (augment.units: words, CJK
  characters), in order."""
  found = []
  for line in _BREAK_RE.sub("\n", text).splitlines():
    for part in _SENTENCE_END_RE.split(line):
      part = part.strip()
      if len(units(part)) >= MIN_UNITS:
        found.append(part)
  return found


def read(config: Any) -> list[Record]:
  """The transfer texts of config.distill (module doc) as records with a "text" role, read as
  training reads its texts (config.data.clean, lowercase); [] when config.distill.transfer is
  empty."""
  distill, data_cfg = config.distill, config.data
  if not distill.transfer:
    return []
  records = reader.read_records(distill.transfer,
                                fields={"text": data_cfg.text_field},
                                split=data_cfg.train_split,
                                config_key="config.distill.transfer",
                                required=("text",),
                                blank="skip",
                                **supervised.reading_options(data_cfg))
  if distill.transfer_unit == "sentence":
    records = [Record({"text": sentence}, f"{record.where}, sentence {i + 1}")
               for record in records for i, sentence in enumerate(sentences(record.values["text"]))]
  wanted = distill.transfer_examples
  if wanted > len(records):
    raise UserError(f"config.distill.transfer_examples={wanted:,} but config.distill.transfer="
                    f"{distill.transfer!r} gives only {len(records):,} "
                    f"{distill.transfer_unit}s")
  records = splits.first_examples(records, wanted, SHUFFLE_SEED)
  return supervised.as_trained(records, data_cfg.clean, data_cfg.lowercase)


def labelled(records: Sequence[Record], logits_NxC: np.ndarray,
             names: Sequence[str]) -> list[Record]:
  """`records` with the teacher's most probable label (of `logits_NxC`) as their "label"."""
  best = np.argmax(logits_NxC, axis=-1)
  return [Record({**record.values, "label": names[int(i)]}, record.where)
          for record, i in zip(records, best)]
