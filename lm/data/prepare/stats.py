"""Counters of a prepare run that add up over processes and serialize to JSON (stats.json)."""

import collections
import dataclasses
from typing import Any

import numpy as np

# Document lengths in characters are counted in bins [2^k, 2^(k+1)), k = 0..LENGTH_BINS-1
# (bin 0 also holds empty documents).
LENGTH_BINS = 32


def length_bin(num_chars: int) -> int:
  return min(max(num_chars, 1).bit_length() - 1, LENGTH_BINS - 1)


@dataclasses.dataclass
class Stats:
  """Everything a stage counts; `merge` adds another process's counts."""

  # Plain counters: documents/bytes/characters in and out, tokens, seconds, ...
  counts: collections.Counter = dataclasses.field(default_factory=collections.Counter)
  # Items removed or changed by each cleaning step, and documents each step changed.
  cleaning_items: collections.Counter = dataclasses.field(default_factory=collections.Counter)
  cleaning_documents: collections.Counter = dataclasses.field(default_factory=collections.Counter)
  # Documents removed, by reason (a quality rule, 'empty_after_cleaning', duplicates).
  removed: collections.Counter = dataclasses.field(default_factory=collections.Counter)
  # Characters of the kept text by script class (quality.SCRIPTS).
  scripts: collections.Counter = dataclasses.field(default_factory=collections.Counter)
  # Document length histograms (length_bin of characters) before and after cleaning/filtering.
  lengths_in: np.ndarray = dataclasses.field(
      default_factory=lambda: np.zeros(LENGTH_BINS, dtype=np.int64))
  lengths_out: np.ndarray = dataclasses.field(
      default_factory=lambda: np.zeros(LENGTH_BINS, dtype=np.int64))

  _COUNTERS = ("counts", "cleaning_items", "cleaning_documents", "removed", "scripts")
  _HISTOGRAMS = ("lengths_in", "lengths_out")

  def merge(self, other: "Stats") -> "Stats":
    for name in self._COUNTERS:
      getattr(self, name).update(getattr(other, name))
    for name in self._HISTOGRAMS:
      setattr(self, name, getattr(self, name) + getattr(other, name))
    return self

  def to_json(self) -> dict[str, Any]:
    result: dict[str, Any] = {name: dict(sorted(getattr(self, name).items()))
                              for name in self._COUNTERS}
    for name in self._HISTOGRAMS:
      result[name] = getattr(self, name).tolist()
    return result

  @classmethod
  def from_json(cls, data: dict[str, Any]) -> "Stats":
    stats = cls()
    for name in cls._COUNTERS:
      getattr(stats, name).update(data.get(name, {}))
    for name in cls._HISTOGRAMS:
      setattr(stats, name, np.array(data.get(name, [0] * LENGTH_BINS), dtype=np.int64))
    return stats
