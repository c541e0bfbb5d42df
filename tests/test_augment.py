"""Tests for lm.data.augment: EDA operations, rates, reproducibility, records and errors."""

import collections

import numpy as np
import pytest

from lm.data.augment import augment_records, augment_text
from lm.data.reader import Record
from lm.errors import UserError

SENTENCE = "the quick brown fox jumps over the lazy sleeping dog"  # 10 words.
WORDS = SENTENCE.split()


def _augment(seed, **kwargs):
  return augment_text(SENTENCE, np.random.default_rng(seed), **kwargs)


def test_swap_keeps_the_words_and_changes_the_order():
  outputs = [_augment(seed, rate=0.2, operations=("swap",)) for seed in range(20)]
  for output in outputs:
    assert collections.Counter(output.split()) == collections.Counter(WORDS)
  assert sum(output != SENTENCE for output in outputs) >= 15
  # n = round(0.2 * 10) = 2 swaps move at most 4 words.
  assert all(sum(a != b for a, b in zip(o.split(), WORDS)) <= 4 for o in outputs)


def test_insert_adds_n_words_of_the_sentence():
  for seed in range(10):
    words = _augment(seed, rate=0.3, operations=("insert",)).split()
    assert len(words) == 13  # n = round(0.3 * 10) = 3.
    added = collections.Counter(words) - collections.Counter(WORDS)
    assert sum(added.values()) == 3 and set(added) <= set(WORDS)
  assert len(augment_text("one two", np.random.default_rng(0), rate=0.1,
                          operations=("insert",)).split()) == 3  # At least one operation.


def test_delete_drops_about_rate_of_the_words_but_never_all():
  rng = np.random.default_rng(0)
  kept = [len(augment_text(SENTENCE, rng, rate=0.3, operations=("delete",)).split())
          for _ in range(400)]
  assert 0.25 < 1 - np.mean(kept) / 10 < 0.35
  for output in (augment_text("a b", rng, rate=0.99, operations=("delete",)) for _ in range(50)):
    assert output in ("a", "b", "a b")
  assert augment_text("alone", rng, rate=0.9, operations=("delete",)) == "alone"


def test_operations_are_chosen_at_random_and_runs_are_reproducible():
  outputs = [_augment(seed, rate=0.1) for seed in range(60)]
  assert outputs == [_augment(seed, rate=0.1) for seed in range(60)]
  lengths = collections.Counter(len(o.split()) for o in outputs)
  assert lengths[11] > 0 and lengths[10] > 0  # insert (11 words) and swap / delete (10 or fewer)
  assert any(len(o.split()) < 10 for o in outputs)


def test_rate_zero_and_blank_text_are_unchanged():
  rng = np.random.default_rng(0)
  assert augment_text("  keep   spacing ", rng, rate=0.0) == "  keep   spacing "
  assert augment_text("   ", rng, rate=0.5) == "   "


def _records():
  return [Record({"text": f"w{i} x{i} y{i} z{i}", "label": str(i % 2)}, f"t.tsv: line {i + 2}")
          for i in range(5)]


def test_augment_records_appends_copies_with_labels_kept():
  records = _records()
  out = augment_records(records, rate=0.25, copies=2, operations=("swap", "delete"), seed=7)
  assert len(out) == 15 and out[:5] == records
  for copy in (1, 2):
    for original, augmented in zip(records, out[5 * copy:5 * copy + 5]):
      assert augmented.values["label"] == original.values["label"]
      assert augmented.where == f"{original.where} (augmented copy {copy})"
      assert set(augmented.values["text"].split()) <= set(original.values["text"].split())
  assert sum(a.values["text"] != o.values["text"] for a, o in zip(out[5:], records * 2)) >= 8
  assert out == augment_records(records, rate=0.25, copies=2, operations=("swap", "delete"),
                                seed=7)
  assert out != augment_records(records, rate=0.25, copies=2, operations=("swap", "delete"),
                                seed=8)


def test_augment_records_rate_or_copies_zero_is_identity():
  records = _records()
  assert augment_records(records, rate=0.0, copies=3, operations=("swap",), seed=0) == records
  assert augment_records(records, rate=0.5, copies=0, operations=("swap",), seed=0) == records


def test_augment_errors_name_the_config_key():
  records = _records()
  with pytest.raises(UserError, match=r"config.augment.operations: unknown operation 'synonym'"):
    augment_records(records, rate=0.1, copies=1, operations=("swap", "synonym"), seed=0)
  with pytest.raises(UserError, match=r"config.augment.operations is empty"):
    augment_records(records, rate=0.1, copies=1, operations=(), seed=0)
  for rate in (-0.1, 1.0, 2, "0.1"):
    with pytest.raises(UserError, match=r"config.augment.rate must be a number in \[0, 1\)"):
      augment_records(records, rate=rate, copies=1, operations=("swap",), seed=0)
  with pytest.raises(UserError, match=r"config.augment.copies must be an integer >= 0"):
    augment_records(records, rate=0.1, copies=-1, operations=("swap",), seed=0)
  with pytest.raises(UserError, match=r"sft.jsonl: line 1: no text to augment"):
    augment_records([Record({"prompt": "p"}, "sft.jsonl: line 1")], rate=0.1, copies=1,
                    operations=("swap",), seed=0)
