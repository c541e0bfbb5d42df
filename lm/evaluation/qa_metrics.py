"""Exact match and F1 of extracted answers, as the official evaluation scripts define them, on a
0-100 scale, each question scored against its best-matching reference.

  'squad'  SQuAD v1.1 (English): answers normalized (lower-cased, punctuation and the articles
           a/an/the removed, whitespace collapsed); F1 over the bag of words.
  'cmrc'   CMRC 2018 (Chinese): answers as characters, lower-cased, punctuation and whitespace
           removed; F1 from the longest common substring, exact match on the characters. (The
           official script keeps a run of Latin letters as one token where this counts its
           characters, as `../shared/tools/score.py` does; they agree on Chinese answers.)
"""

import collections
import re
import string
from typing import Mapping, Sequence

STYLES = ("squad", "cmrc")
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = set(string.punctuation)
# CMRC 2018's punctuation: ASCII and the full-width marks its official script removes.
_CMRC_PUNCTUATION = _PUNCTUATION | set("－：_*^/\\~`+=，。：？！“”；’《》……·、「」（）-～『』")


def squad_words(text: str) -> list[str]:
  text = "".join(c for c in text.lower() if c not in _PUNCTUATION)
  return _ARTICLES.sub(" ", text).split()


def cmrc_chars(text: str) -> list[str]:
  return [c for c in text.lower() if c not in _CMRC_PUNCTUATION and not c.isspace()]


def longest_common_substring(a: Sequence[str], b: Sequence[str]) -> int:
  """The length of the longest run that `a` and `b` share."""
  best, previous = 0, [0] * (len(b) + 1)
  for x in a:
    current = [0] * (len(b) + 1)
    for j, y in enumerate(b):
      if x == y:
        current[j + 1] = previous[j] + 1
        best = max(best, current[j + 1])
    previous = current
  return best


def _harmonic(common: int, predicted: int, reference: int) -> float:
  if common == 0:
    return 0.0
  precision, recall = common / predicted, common / reference
  return 2 * precision * recall / (precision + recall)


def exact_match(prediction: str, reference: str, style: str) -> float:
  units = squad_words if style == "squad" else cmrc_chars
  return float(units(prediction) == units(reference))


def f1(prediction: str, reference: str, style: str) -> float:
  if style == "squad":
    predicted, expected = squad_words(prediction), squad_words(reference)
    common = sum((collections.Counter(predicted) & collections.Counter(expected)).values())
  else:
    predicted, expected = cmrc_chars(prediction), cmrc_chars(reference)
    common = longest_common_substring(predicted, expected)
  return _harmonic(common, len(predicted), len(expected))


def qa_scores(predictions: Mapping[str, str], references: Mapping[str, Sequence[str]],
              style: str) -> dict[str, float]:
  """{"exact_match", "f1"} (0-100) over the questions of `references` (id -> reference texts)
  that have references; a question without a prediction scores 0."""
  if style not in STYLES:
    raise ValueError(f"style {style!r}: one of {STYLES}")
  scored = {qid: texts for qid, texts in references.items() if texts}
  totals = {"exact_match": 0.0, "f1": 0.0}
  for qid, texts in scored.items():
    prediction = predictions.get(qid, "")
    totals["exact_match"] += max(exact_match(prediction, t, style) for t in texts)
    totals["f1"] += max(f1(prediction, t, style) for t in texts)
  return {key: 100.0 * value / max(len(scored), 1) for key, value in totals.items()}
