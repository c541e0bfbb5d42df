"""Entity-level scores for named-entity recognition (seqeval), tag schemes and the eval report.

Tags are 'O' or PREFIX-TYPE: prefixes B and I (IOB1, IOB2), plus E and S (BIOES). A type may
itself hold '-' or '.' (`B-creative-work`, `B-PER.NAM`): a tag splits at its first '-'. Tags are
converted to IOB2 on reading (`to_iob2`, `check_tags`); an I-X that continues no X entity is
read as B-X, as conlleval and seqeval's default mode read it (`repair_iob2`).
"""

import json
import math
import os
import warnings
from typing import Any, Callable, Sequence

from lm.data import atomic
from lm.errors import UserError

SCHEMES = ("iob1", "iob2", "bioes")
MODES = ("default", "strict")
OUTSIDE = "O"
_PREFIXES = {"iob1": ("B", "I"), "iob2": ("B", "I"), "bioes": ("B", "I", "E", "S")}
_SCORES = ("precision", "recall", "f1")


def split_tag(tag: str, scheme: str = "bioes") -> tuple[str, str | None]:
  """(prefix, type) of a tag, ('O', None) for 'O'; ValueError for a tag that `scheme` lacks."""
  if tag == OUTSIDE:
    return OUTSIDE, None
  prefix, dash, entity_type = tag.partition("-")
  if not dash or not entity_type or prefix not in _PREFIXES[scheme]:
    prefixes = "/".join(f"{p}-" for p in _PREFIXES[scheme])
    raise ValueError(f"tag {tag!r} is neither 'O' nor {prefixes}TYPE ({scheme.upper()})")
  return prefix, entity_type


def to_iob2(tags: Sequence[str], scheme: str) -> list[str]:
  """One sentence's tags converted from `scheme` to IOB2 (IOB2 tags are returned as they are).

  IOB1: an I-X that continues no X entity starts one (B-X). BIOES: S-X -> B-X, E-X -> I-X.
  ValueError for a tag that `scheme` lacks.
  """
  _check_scheme(scheme)
  for tag in tags:
    split_tag(tag, scheme)
  if scheme == "iob2":
    return list(tags)
  if scheme == "iob1":
    return repair_iob2(tags)[0]
  renamed = {"S": "B", "E": "I"}
  converted = []
  for tag in tags:
    prefix, entity_type = split_tag(tag, scheme)
    converted.append(tag if entity_type is None else f"{renamed.get(prefix, prefix)}-{entity_type}")
  return converted


def repair_iob2(tags: Sequence[str]) -> tuple[list[str], int]:
  """IOB2 tags with every I-X that continues no X entity (after O, at the start, after another
  type) turned into B-X, as conlleval reads it; and the number of tags turned."""
  repaired, repairs = [], 0
  previous_type = None  # The type of the entity the previous tag is in; None after O.
  for tag in tags:
    prefix, _, entity_type = tag.partition("-")
    if tag == OUTSIDE or prefix not in ("B", "I"):
      previous_type = None
    elif prefix == "I" and entity_type != previous_type:
      tag = f"B-{entity_type}"
      repairs += 1
    previous_type = entity_type if tag != OUTSIDE and prefix in ("B", "I") else None
    repaired.append(tag)
  return repaired, repairs


def check_tags(sentences_tags: Sequence[Sequence[str]],
               *,
               scheme: str,
               strict: bool,
               where_of: Callable[[int, int], str]) -> tuple[list[list[str]], int]:
  """Checks the gold tags of a file and converts them to IOB2, for training and evaluation.

  Args:
    sentences_tags: each sentence's tags, in `scheme`.
    scheme: 'iob1', 'iob2' or 'bioes'.
    strict: an I- (or BIOES E-) tag that continues no entity of its type is an error; otherwise
      it is read as B- (as conlleval reads it) and counted. IOB1 has no such error: starting an
      entity with I- is how IOB1 writes it.
    where_of: (sentence index, token index) -> where that token is, e.g. `TaggedFile.where`
      ("path: line N").

  Returns:
    The IOB2 tags of every sentence, and the number of tags repaired (always 0 when strict).
    A tag that is not 'O' or PREFIX-TYPE of the scheme is a UserError naming where it is.
  """
  _check_scheme(scheme)
  converted, total_repairs = [], 0
  for sentence_index, tags in enumerate(sentences_tags):
    for token_index, tag in enumerate(tags):
      try:
        split_tag(tag, scheme)
      except ValueError as e:
        raise UserError(f"{where_of(sentence_index, token_index)}: {e}") from None
    iob2 = to_iob2(tags, scheme)
    repaired, repairs = repair_iob2(iob2)
    if repairs and strict:
      token_index = next(i for i, (a, b) in enumerate(zip(iob2, repaired)) if a != b)
      raise UserError(
          f"{where_of(sentence_index, token_index)}: tag {tags[token_index]!r} continues no"
          f" {split_tag(tags[token_index], scheme)[1]!r} entity ({scheme.upper()}); fix the tag"
          " or turn off strict tag checking to read it as the start of one")
    converted.append(repaired)
    total_repairs += repairs
  return converted, total_repairs


def entity_scores(gold: Sequence[Sequence[str]],
                  predicted: Sequence[Sequence[str]],
                  *,
                  mode: str = "default") -> dict[str, float]:
  """Entity precision, recall and F1 of IOB2 predictions, with seqeval.

  mode 'default' is seqeval's conlleval-compatible reading (an I-X after O starts an entity);
  'strict' is seqeval's mode='strict' with scheme IOB2 (an entity must start with B- and keep
  its type). Keys: `precision`, `recall`, `f1` (micro: over all entities), `macro_precision`,
  `macro_recall`, `macro_f1` (the mean over the types found in gold or predictions),
  `token_accuracy`, and per type `precision/<TYPE>`, `recall/<TYPE>`, `f1/<TYPE>`,
  `support/<TYPE>` (gold entities). Fractions in [0, 1]; 0.0 where undefined (no entities).
  """
  from seqeval import metrics  # pylint: disable=g-import-not-at-top  # Only NER evaluates so.
  from seqeval import scheme as seqeval_scheme  # pylint: disable=g-import-not-at-top

  if mode not in MODES:
    raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
  gold = [list(tags) for tags in gold]
  predicted = [list(tags) for tags in predicted]
  if [len(tags) for tags in gold] != [len(tags) for tags in predicted]:
    raise ValueError(f"the predictions ({len(predicted)} sentences) do not have the shape of the"
                     f" gold tags ({len(gold)} sentences)")
  options = {"mode": "strict", "scheme": seqeval_scheme.IOB2} if mode == "strict" else {}
  if gold:  # seqeval rejects an empty list of sentences.
    with warnings.catch_warnings():
      # The macro average over no types at all is a mean of nothing (NaN, made 0.0 below).
      warnings.simplefilter("ignore", RuntimeWarning)
      report = metrics.classification_report(gold, predicted, output_dict=True, zero_division=0,
                                             **options)
  else:
    nothing = {"precision": 0.0, "recall": 0.0, "f1-score": 0.0}
    report = {"micro avg": nothing, "macro avg": nothing}
  num_tokens = sum(len(tags) for tags in gold)
  correct = sum(g == p for gold_tags, predicted_tags in zip(gold, predicted)
                for g, p in zip(gold_tags, predicted_tags))
  scores = {
      "precision": _fraction(report["micro avg"]["precision"]),
      "recall": _fraction(report["micro avg"]["recall"]),
      "f1": _fraction(report["micro avg"]["f1-score"]),
      "macro_precision": _fraction(report["macro avg"]["precision"]),
      "macro_recall": _fraction(report["macro avg"]["recall"]),
      "macro_f1": _fraction(report["macro avg"]["f1-score"]),
      "token_accuracy": correct / num_tokens if num_tokens else 0.0,
  }
  for entity_type, row in report.items():
    if entity_type in ("micro avg", "macro avg", "weighted avg"):
      continue
    scores[f"precision/{entity_type}"] = _fraction(row["precision"])
    scores[f"recall/{entity_type}"] = _fraction(row["recall"])
    scores[f"f1/{entity_type}"] = _fraction(row["f1-score"])
    scores[f"support/{entity_type}"] = float(row["support"])
  return scores


def write_entity_report(path: str | os.PathLike,
                        metrics: dict[str, float],
                        extra: dict[str, Any] | None = None) -> None:
  """Writes `entity_scores` as JSON (atomically), nested for reading:

  {"micro": {"precision", "recall", "f1"}, "macro": {...}, "per_type": {TYPE: {"precision",
  "recall", "f1", "support"}}, "token_accuracy", **extra}.
  """
  per_type = {}
  for key, value in metrics.items():
    name, slash, entity_type = key.partition("/")
    if slash:
      per_type.setdefault(entity_type, {})[name] = int(value) if name == "support" else value
  report = {
      "micro": {score: metrics[score] for score in _SCORES},
      "macro": {score: metrics[f"macro_{score}"] for score in _SCORES},
      "per_type": dict(sorted(per_type.items())),
      "token_accuracy": metrics["token_accuracy"],
      **(extra or {}),
  }
  text = json.dumps(report, indent=2, ensure_ascii=False, allow_nan=False)
  atomic.atomic_write_text(path, text + "\n")


def _fraction(value: Any) -> float:
  value = float(value)
  return 0.0 if math.isnan(value) else value


def _check_scheme(scheme: str) -> None:
  if scheme not in SCHEMES:
    raise ValueError(f"the tag scheme must be one of {', '.join(SCHEMES)}, got {scheme!r}")
