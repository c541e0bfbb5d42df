"""Contamination reports (lm/data/prepare/contamination.py): eval examples planted in real
training text."""

import json
import re

import numpy as np
import pytest

from benchmarks import dedup_quality
from lm.data.prepare import contamination, dedup
from lm.errors import UserError

NGRAM, CHAR_NGRAM = contamination.DEFAULT_NGRAM, contamination.DEFAULT_CHAR_NGRAM


def units_of(text: str, unit: str) -> list[str]:
  units = dedup.UnitText(text, unit)
  return [units.text(i, i + 1) for i in range(len(units))]


def brute_force_contaminated(eval_texts: list[str], train_texts: list[str], unit: str,
                             n: int) -> set[int]:
  """Eval examples sharing a run of n units with a training text, or found whole in one if
  shorter: by comparing unit strings, without the module's hashing and tables."""
  sep = " " if unit == "word" else ""
  train_units = [units_of(text, unit) for text in train_texts]
  runs = {tuple(units[i:i + n]) for units in train_units for i in range(len(units) - n + 1)}
  joined = "|".join(sep + sep.join(units) + sep for units in train_units)
  found = set()
  for k, text in enumerate(eval_texts):
    units = units_of(text, unit)
    if len(units) >= n:
      hit = any(tuple(units[i:i + n]) in runs for i in range(len(units) - n + 1))
    else:
      hit = bool(units) and sep + sep.join(units) + sep in joined
    if hit:
      found.add(k)
  return found


def plant(eval_texts, train_texts, unit, n, count, seed, split_train_doc):
  """Puts `count` clean eval examples (half shorter than n units) into random training texts."""
  rng = np.random.default_rng(seed)
  clean = sorted(set(range(len(eval_texts))) -
                 brute_force_contaminated(eval_texts, train_texts, unit, n))
  short = [k for k in clean if len(units_of(eval_texts[k], unit)) < n]
  long = [k for k in clean if len(units_of(eval_texts[k], unit)) >= n]
  assert len(short) >= count // 2 and len(long) >= count // 2
  chosen = sorted(rng.choice(short, count // 2, replace=False).tolist() +
                  rng.choice(long, count - count // 2, replace=False).tolist())
  train = list(train_texts)
  for k in chosen:
    doc = int(rng.integers(len(train)))
    before, after = split_train_doc(train[doc], rng)
    train[doc] = before + eval_texts[k] + after
  return train, chosen


@pytest.fixture(scope="module")
def english():
  """WikiText-2: 300 training paragraphs, and 200 validation sentences of >= 4 words."""
  train = dedup_quality.wikitext_paragraphs("train")[:300]
  sentences = (s.strip() + " ." for p in dedup_quality.wikitext_paragraphs("valid")
               for s in p.split(" . "))
  return train, [s for s in sentences if len(s.split()) >= 5][:200]


@pytest.fixture(scope="module")
def chinese():
  """Chinese fortunes (600 entries) as training text, Tang poems (313) as the eval set."""
  return (dedup_quality.fortune_entries("chinese")[:600],
          dedup_quality.fortune_entries("tang300"))


def at_sentence_boundary(text, rng):
  sentences = text.split(" . ")
  k = int(rng.integers(len(sentences) + 1))
  return " . ".join(sentences[:k]) + " . ", " " + " . ".join(sentences[k:])


def in_the_middle(text, rng):
  cut = int(rng.integers(len(text) + 1))
  return text[:cut], text[cut:]


def test_planted_english_sentences_and_only_they_are_reported(english):
  train, valid = english
  planted_train, planted = plant(valid, train, "word", NGRAM, 12, 0, at_sentence_boundary)
  report = contamination.contamination_report(planted_train, {"valid": valid})
  split = report.splits["valid"]
  assert split.indices == planted
  assert split.examples == len(valid) and report.train_docs == len(train)
  for found in split.contaminated:
    words = " ".join(units_of(valid[found.index], "word"))
    assert found.ngram in words  # The shared n-gram comes from the example, ...
    assert len(found.ngram.split()) == min(NGRAM, len(words.split()))  # ... all of a short one.
  assert split.share == pytest.approx(len(planted) / len(valid))


def test_planted_chinese_poems_and_only_they_are_reported(chinese):
  train, poems = chinese
  assert {dedup.choose_unit(poem) for poem in poems} == {"char"}
  planted_train, planted = plant(poems, train, "char", CHAR_NGRAM, 8, 1, in_the_middle)
  report = contamination.contamination_report(planted_train, {"tang300": poems})
  assert report.splits["tang300"].indices == planted
  for found in report.splits["tang300"].contaminated:
    assert found.ngram and found.ngram in "".join(units_of(poems[found.index], "char"))


def test_a_scan_split_in_parts_and_absorbed_in_order_equals_one_scan(chinese, monkeypatch):
  """What stages.contamination_shard relies on: shards scanned apart, merged in their order
  into the evidence alone, without an index (one document at a time here, in batches of 5 in
  the whole scan)."""
  train, poems = chinese
  planted_train, _ = plant(poems, train, "char", CHAR_NGRAM, 8, 1, in_the_middle)
  planted_train += [poems[3], poems[3] + "。", train[0]]  # Stronger evidence after weaker.
  eval_sets = {"tang300": poems, "train_copies": [train[0], train[5]]}
  monkeypatch.setattr(contamination, "BATCH", 5)
  whole = contamination.contamination_report(planted_train, eval_sets)
  merged = contamination.ContaminationEvidence(eval_sets)
  cuts = [0, 7, 7, len(planted_train) // 2, len(planted_train)]
  for begin, end in zip(cuts, cuts[1:]):
    part = contamination.ContaminationIndex(eval_sets)
    for doc in range(begin, end):
      part.add_train(planted_train[doc], doc_id=doc)
    merged.absorb(json.loads(json.dumps(part.evidence())))
  assert merged.report() == whole
  assert {found.kind for found in whole.splits["tang300"].contaminated} >= {"exact", "ngram"}


def test_exact_and_near_duplicates_of_training_documents(chinese):
  train, _ = chinese
  long = next(entry for entry in train[10:]
              if len(entry) > 200 and dedup.choose_unit(entry) == "char")
  # A character replaced every 40: no 50-character run survives, most 5-character shingles do
  # (Jaccard 0.56, well above the 0.4 threshold: LSH finds such a pair 96% of the time).
  edited = "".join("错" if i % 40 == 12 else c for i, c in enumerate(long))
  eval_sets = {"a": ["  " + train[3].upper() + " ", long], "b": [train[7]]}
  hasher = dedup.MinHasher(seed=5)
  index = contamination.ContaminationIndex(eval_sets, hasher=hasher)
  for i, text in enumerate(train[:10] + [edited]):
    index.add_train(text, doc_id=100 + i, signature=hasher.signature(text))
  report = index.report()
  exact, near = report.splits["a"].contaminated
  assert (exact.index, exact.kind, exact.train_doc) == (0, "exact", 103)
  assert (near.index, near.kind, near.train_doc, near.ngram) == (1, "near", 110, "")
  assert near.jaccard >= dedup.DEFAULT_THRESHOLD
  assert [(f.kind, f.train_doc) for f in report.splits["b"].contaminated] == [("exact", 107)]
  for off in (None, 0):
    without_near = contamination.contamination_report([edited], {"a": [long]}, near_threshold=off)
    assert without_near.splits["a"].contaminated == ()


def test_report_renders_as_json_and_markdown(english):
  train, valid = english
  planted_train, planted = plant(valid, train, "word", NGRAM, 6, 2, at_sentence_boundary)
  report = contamination.contamination_report(planted_train, {"valid": valid, "none": valid[:3]},
                                              near_threshold=None)
  data = json.loads(report.to_json())
  assert data["splits"]["valid"]["contaminated"] == len(planted)
  assert [item["index"] for item in data["splits"]["valid"]["found"]] == planted
  markdown = report.to_markdown(max_listed=4)
  share = f"{len(planted) / len(valid):.2%}"
  assert f"| valid | {len(valid)} | {len(planted)} | {share} |" in markdown
  assert "| none | 3 | 0 | 0.00% |" in markdown
  assert f"and {len(planted) - 4} more" in markdown
  assert markdown.count("\n- #") == 4


@pytest.mark.parametrize("kwargs, key", [
    ({"ngram": 0}, "config.contamination.ngram=0"),
    ({"char_ngram": 2.5}, "config.contamination.char_ngram=2.5"),
    ({"near_threshold": -0.1}, "config.contamination.near_threshold=-0.1"),
    ({"near_threshold": 1.5}, "config.contamination.near_threshold=1.5"),
    ({"ngram": True, "config_key": "c"}, "c.ngram=True"),
])
def test_bad_arguments_name_their_config_key(kwargs, key):
  with pytest.raises(UserError, match=re.escape(key)):
    contamination.ContaminationIndex({"valid": ["text"]}, **kwargs)
