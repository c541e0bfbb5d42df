"""Exact and near-duplicate detection (lm/data/prepare/dedup.py) on real English and Chinese
text."""

import re

import numpy as np
import pytest

from benchmarks import dedup_quality
from lm.data.prepare import dedup
from lm.errors import UserError


@pytest.fixture(scope="module")
def paragraphs():
  """Distinct WikiText-2 validation paragraphs (>= 50 words)."""
  return dedup_quality.distinct_documents(dedup_quality.wikitext_paragraphs("valid"))


@pytest.fixture(scope="module")
def fortunes():
  """Distinct Chinese fortunes of >= 40 characters (some mix in English passages)."""
  return dedup_quality.distinct_documents(dedup_quality.fortune_entries(min_chars=40))


def exact_jaccard(a: str, b: str) -> float:
  sa, sb = dedup.shingles(a), dedup.shingles(b)
  return len(np.intersect1d(sa, sb)) / len(np.union1d(sa, sb))


# --- Exact duplicates ----------------------------------------------------------------------------


def test_exact_key_ignores_case_width_and_whitespace_only():
  key = dedup.exact_key("Straße  ABC\t１２３\n")
  assert dedup.exact_key(" STRASSE abc 123") == key  # Case folding, NFKC (full-width digits).
  assert dedup.exact_key("Strasse abc 124") != key
  assert dedup.exact_key("Strasse, abc 123") != key  # Punctuation counts for exact duplicates.
  assert len(key) == 16


def test_exact_deduper_returns_the_first_identical_document(paragraphs):
  deduper = dedup.ExactDeduper()
  assert [deduper.add(i, text) for i, text in enumerate(paragraphs[:3])] == [None] * 3
  assert deduper.add(10, paragraphs[1].upper() + "  ") == 1
  assert deduper.add(11, paragraphs[1]) == 1
  assert len(deduper) == 3


# --- Units and shingles --------------------------------------------------------------------------


def test_units_ignore_case_and_punctuation_but_keep_word_boundaries():
  assert np.array_equal(dedup.shingles("Hello, World! It's here."),
                        dedup.shingles("hello world it s here"))
  assert not np.array_equal(dedup.shingles("ab c d e f"), dedup.shingles("a bc d e f"))
  assert len(dedup.shingles("one two three four five six", n=5)) == 2
  assert len(dedup.shingles("one two", n=5)) == 1  # Shorter than n: one shingle, all of it.
  assert len(dedup.shingles(" ,;! ")) == 0


def test_auto_units_are_characters_for_scripts_without_spaces(fortunes):
  chinese = next(entry for entry in fortunes if dedup.choose_unit(entry) == "char")
  hanzi = [c for c in chinese if "\u4e00" <= c <= "\u9fff"]
  units = dedup.UnitText(chinese, "auto")
  assert len(units) >= len(hanzi)  # Every ideograph is a unit (digits and Latin words too).
  assert len(dedup.UnitText(chinese, "word")) < len(hanzi) / 4  # Sentences would be "words".
  assert dedup.UnitText("Python是一种语言, OK", "auto").text(0, 7) == "python 是 一 种 语 言 ok"
  assert dedup.choose_unit("The quick brown fox jumps over the lazy dog") == "word"
  for text in (chinese, "日本語の文章です", "ภาษาไทยเป็นภาษาราชการ"):
    assert dedup.choose_unit(text) == "char", text
  assert dedup.choose_unit("한국어 문장은 띄어 씁니다") == "word"  # Korean is written with spaces.
  assert dedup.UnitText("हिन्दी भाषा", "word").text(0, 2) == "हिन्दी भाषा"  # Vowel signs stay.


@pytest.mark.parametrize("unit", dedup.UNITS)
def test_run_hashes_do_not_depend_on_position(paragraphs, fortunes, unit):
  for text in (paragraphs[0], fortunes[0]):
    inner = dedup.UnitText(text, unit).ngram_hashes(5)
    outer = dedup.UnitText("Some words before it, 前言。 " + text + " and after", unit)
    assert np.isin(inner, outer.ngram_hashes(5)).all()
    units = dedup.UnitText(text, unit)
    runs = {units.text(i, i + 5) for i in range(len(units) - 4)}
    assert len(np.unique(inner)) == len(runs)  # Equal hashes exactly for equal runs.


# --- MinHash -------------------------------------------------------------------------------------


def test_minhash_estimates_jaccard_without_bias(paragraphs):
  hasher = dedup.MinHasher(128, seed=0)
  rng = np.random.default_rng(0)
  vocabulary = sorted({word for text in paragraphs for word in text.split()})
  errors, bounds = [], []
  for i, text in enumerate(paragraphs[:200]):
    copy = dedup_quality.edited_copy(text, [0.02, 0.05, 0.1, 0.2][i % 4], vocabulary, rng)
    jaccard = exact_jaccard(text, copy)
    errors.append(dedup.estimated_jaccard(hasher.signature(text), hasher.signature(copy)) - jaccard)
    bounds.append(4 * np.sqrt(jaccard * (1 - jaccard) / 128) + 1e-9)
  errors = np.array(errors)
  assert (np.abs(errors) <= bounds).all()
  assert abs(errors.mean()) < 0.01  # Unbiased: 200 pairs, each with sd ~0.04.
  assert 0.02 < errors.std() < 0.06  # The binomial sd, sqrt(J (1 - J) / 128), at J ~0.3-0.9.


@pytest.mark.parametrize("unit", dedup.UNITS)
def test_batched_signatures_equal_the_definition_per_document(paragraphs, fortunes, unit,
                                                              monkeypatch):
  """Several documents hashed in one batch, through blocks smaller than a document: each
  signature is the minimum over that document's own shingles of a_k * x + b_k mod 2^32."""
  monkeypatch.setattr(dedup, "_CHUNK_ELEMENTS", 128 * 37)
  documents = [paragraphs[0], "", fortunes[0], "!?", "two words", "猫", paragraphs[1][:90], "",
               fortunes[1] + " " + paragraphs[2]]
  hasher = dedup.MinHasher(128, seed=7, unit=unit)
  batched = hasher.signatures(documents)
  for document, signature in zip(documents, batched):
    shingles = dedup.shingles(document, unit=unit)
    if not len(shingles):
      assert dedup.is_empty_signature(signature)
      continue
    values = (shingles >> np.uint64(32)).astype(np.uint64)
    # pylint: disable-next=protected-access
    expected = (values[:, None] * hasher._multipliers + hasher._offsets) % (1 << 32)
    np.testing.assert_array_equal(signature, expected.min(axis=0).astype(np.uint32))
    np.testing.assert_array_equal(signature, hasher.signature(document))


def test_signatures_are_seeded_and_deterministic(paragraphs):
  text = paragraphs[0]
  first = dedup.MinHasher(seed=3).signature(text)
  assert first.dtype == np.uint32 and first.shape == (128,)
  assert np.array_equal(first, dedup.MinHasher(seed=3).signature(text))
  assert dedup.estimated_jaccard(first, dedup.MinHasher(seed=4).signature(text)) < 0.1
  assert dedup.is_empty_signature(dedup.MinHasher().signature("!?"))


# --- LSH -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("threshold", [0.4, 0.6, 0.8])
def test_lsh_bands_put_the_s_curve_at_the_threshold(threshold):
  bands, rows = dedup.lsh_bands(threshold, 128)
  assert bands * rows <= 128
  candidate = lambda s: 1 - (1 - s**rows)**bands
  assert candidate(min(1.0, threshold + 0.15)) > 0.9
  assert candidate(threshold - 0.2) < 0.15
  assert dedup.lsh_bands(threshold + 0.1, 128)[1] >= rows  # Stricter: more rows per band.


def test_near_duplicate_index_links_duplicates_into_clusters(paragraphs):
  hasher = dedup.MinHasher()
  index = dedup.NearDuplicateIndex()
  rng = np.random.default_rng(1)
  vocabulary = paragraphs[0].split()
  first, second = paragraphs[0], paragraphs[1]
  copy = dedup_quality.edited_copy(first, 0.02, vocabulary, rng)
  copy_of_copy = dedup_quality.edited_copy(copy, 0.02, vocabulary, rng)
  assert index.add(10, hasher.signature(first)) is None
  assert index.add(11, hasher.signature(second)) is None
  assert index.add(12, hasher.signature(copy)) == 10
  assert index.add(13, hasher.signature(copy_of_copy)) == 10  # Duplicates are not kept.
  assert index.add(14, hasher.signature("")) is None  # No shingles: never a duplicate.
  assert len(index) == 2
  assert index.clusters() == [[10, 12, 13]]
  (match, jaccard), = index.query(hasher.signature(copy))
  assert match == 10 and jaccard == pytest.approx(exact_jaccard(first, copy), abs=0.2)


# --- Recall and precision on synthetic near-duplicates (the acceptance criterion) --------


# Copies of most documents of the fixtures (59 paragraphs, 54 fortunes; tests/fixtures).
@pytest.mark.parametrize("corpus, copies", [("paragraphs", 50), ("fortunes", 20)])
def test_near_duplicates_with_5_percent_of_words_edited_are_found(request, corpus, copies):
  documents = request.getfixturevalue(corpus)
  edited = dedup_quality.make_copies(documents, copies, rate=0.05, seed=0)
  quality = dedup_quality.near_duplicate_quality(documents, edited)  # Default threshold.
  assert quality.recall >= 0.9, quality
  assert quality.precision >= 0.99, quality


def test_distinct_documents_are_not_flagged(paragraphs, fortunes):
  quality = dedup_quality.near_duplicate_quality(paragraphs + fortunes, {})
  assert quality.false_flags == 0


def test_deduplicator_counts_exact_and_near_duplicates(paragraphs):
  rng = np.random.default_rng(2)
  near = dedup_quality.edited_copy(paragraphs[0], 0.03, paragraphs[5].split(), rng)
  stream = [paragraphs[0], paragraphs[1], paragraphs[1].upper(), near, paragraphs[2], near]
  deduplicator = dedup.Deduplicator()
  found = [deduplicator.add(i, text) for i, text in enumerate(stream)]
  assert found == [None, None, dedup.Duplicate("exact", 1), dedup.Duplicate("near", 0), None,
                   dedup.Duplicate("exact", 3)]
  assert deduplicator.stats.as_dict() == {"documents": 6, "exact": 2, "near": 1, "kept": 3}
  assert deduplicator.clusters() == [[0, 3]]
  only_exact = dedup.Deduplicator(near=False)
  assert [only_exact.add(i, text) for i, text in enumerate(stream)][3] is None


# --- Bad arguments -------------------------------------------------------------------------------


@pytest.mark.parametrize("build, key", [
    (lambda: dedup.NearDuplicateIndex(0.0), "config.dedup.near_threshold=0.0"),
    (lambda: dedup.NearDuplicateIndex(1.5), "config.dedup.near_threshold=1.5"),
    (lambda: dedup.NearDuplicateIndex(True), "config.dedup.near_threshold=True"),
    (lambda: dedup.NearDuplicateIndex(0.5, 100, bands=30), "config.dedup.lsh_bands=30"),
    (lambda: dedup.MinHasher(8), "config.dedup.num_perm=8"),
    (lambda: dedup.MinHasher(128.0), "config.dedup.num_perm=128.0"),
    (lambda: dedup.MinHasher(unit="token"), "config.dedup.shingle_unit='token'"),
    (lambda: dedup.MinHasher(n=-1), "config.dedup.shingle_size=-1"),
    (lambda: dedup.Deduplicator(seed=-1, config_key="cfg.d"), "cfg.d.seed=-1"),
    (lambda: dedup.lsh_bands(2, 128, config_key="cfg.d"), "cfg.d.near_threshold=2"),
])
def test_bad_arguments_name_their_config_key(build, key):
  with pytest.raises(UserError, match=re.escape(key)):
    build()
