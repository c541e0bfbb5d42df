"""Tests for lm.data.augment: EDA operations, rates, reproducibility, records and errors."""

import collections

import numpy as np
import pytest

from lm.data.augment import OPERATIONS, augment_records, augment_text, join, units
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
  out, counts = augment_records(records, rate=0.25, copies=2, operations=("swap", "delete"),
                                seed=7)
  assert len(out) == 15 and out[:5] == records
  assert set(counts) == {"swap", "delete"} and sum(counts.values()) == 10
  for copy in (1, 2):
    for original, augmented in zip(records, out[5 * copy:5 * copy + 5]):
      assert augmented.values["label"] == original.values["label"]
      assert augmented.where == f"{original.where} (augmented copy {copy})"
      assert set(augmented.values["text"].split()) <= set(original.values["text"].split())
  assert sum(a.values["text"] != o.values["text"] for a, o in zip(out[5:], records * 2)) >= 8
  assert out == augment_records(records, rate=0.25, copies=2, operations=("swap", "delete"),
                                seed=7)[0]
  assert out != augment_records(records, rate=0.25, copies=2, operations=("swap", "delete"),
                                seed=8)[0]


def test_augment_records_rate_or_copies_zero_is_identity():
  records = _records()
  assert augment_records(records, rate=0.0, copies=3, operations=("swap",), seed=0) == (records,
                                                                                       {})
  assert augment_records(records, rate=0.5, copies=0, operations=("swap",), seed=0) == (records,
                                                                                       {})


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


CHINESE = "我们今天在公园里散步"  # 10 characters, no spaces.


def test_chinese_is_augmented_a_character_at_a_time():
  assert units(CHINESE) == list(CHINESE) and join(list(CHINESE)) == CHINESE
  assert units("用 JAX 训练，好") == ["用", "JAX", "训", "练", "，", "好"]
  assert join(["the", "model", "用", "JAX"]) == "the model用JAX"
  for seed in range(10):
    rng = np.random.default_rng(seed)
    inserted = augment_text(CHINESE, rng, rate=0.2, operations=("insert",))
    assert len(inserted) == 12 and " " not in inserted  # Two characters, not the whole text.
    assert collections.Counter(inserted) - collections.Counter(CHINESE)
    swapped = augment_text(CHINESE, rng, rate=0.2, operations=("swap",))
    assert sorted(swapped) == sorted(CHINESE)


def test_tang_masking_replacement_and_ngram_sampling():
  vocabulary = ["alpha", "beta"]
  for seed in range(20):
    rng = np.random.default_rng(seed)
    masked = augment_text(SENTENCE, rng, rate=0.3, operations=("mask",)).split()
    assert len(masked) == 10 and "[MASK]" in masked
    assert all(m in ("[MASK]", w) for m, w in zip(masked, WORDS))
    replaced = augment_text(SENTENCE, rng, rate=0.3, operations=("replace",),
                            vocabulary=vocabulary).split()
    assert len(replaced) == 10 and all(r in (w, *vocabulary) for r, w in zip(replaced, WORDS))
    assert set(replaced) - set(WORDS)
    ngram = augment_text(SENTENCE, rng, rate=0.3, operations=("ngram",))
    assert 1 <= len(ngram.split()) <= 5 and f" {ngram} " in f" {SENTENCE} "
    assert augment_text(CHINESE, rng, rate=0.3, operations=("ngram",)) in CHINESE


def test_every_operation_keeps_labels_and_never_empties_a_text():
  records = [Record({"text": text, "label": str(i % 2)}, f"t.tsv: line {i + 2}")
             for i, text in enumerate(["one", "a b", CHINESE, "好", SENTENCE, "x y z"])]
  out, counts = augment_records(records, rate=0.9, copies=20, operations=OPERATIONS, seed=3)
  assert set(counts) == set(OPERATIONS) and sum(counts.values()) == 20 * len(records)
  for i, record in enumerate(out[len(records):]):
    assert record.values["text"].strip()
    assert record.values["label"] == records[i % len(records)].values["label"]
  replaced = [r.values["text"] for r in out[len(records):]]
  assert out == augment_records(records, rate=0.9, copies=20, operations=OPERATIONS, seed=3)[0]
  assert len(set(replaced)) > 30
