"""Document quality rules in the style of Gopher (Rae et al. 2021, appendix A) and C4, and
script statistics, without assuming whitespace-separated words.

A "word" is a whitespace-separated token, except that every character of a script written
without spaces (CJK ideographs, kana, hangul syllables) is a word of its own, so the same
thresholds apply to Chinese or Japanese text.
"""

import collections
import functools
import sys
import types
from typing import Any

import numpy as np

from lm.data.prepare import hashing

# Characters of scripts written without spaces: CJK ideographs (and extensions, compatibility
# ideographs), hiragana, katakana, hangul syllables, bopomofo (inclusive ranges).
_NO_SPACE_RANGES = ((0x2E80, 0x2FDF), (0x3040, 0x30FF), (0x3100, 0x312F), (0x31A0, 0x31FF),
                    (0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xAC00, 0xD7AF), (0xF900, 0xFAFF),
                    (0x20000, 0x3134F))
# Code points from here on hold no letters and no whitespace (private use, tags, unassigned).
_LETTER_PLANES_END = 0x40000
# Flags of a code point: whitespace (str.isspace, what str.split splits on), a word on its own
# (_NO_SPACE_RANGES), a letter of any script (the regex class [^\W\d_]).
_SPACE, _ALONE, _LETTER = 1, 2, 4
_GRAM_WEIGHT = 0xD6E8FEB86659FD93  # Odd: combines the word hashes of an n-gram.

# Rules in the order they are tried; the first failing one is the reason a document is dropped.
RULES = ("min_chars", "max_chars", "min_words", "max_words", "max_symbol_ratio",
         "min_alpha_word_share", "max_duplicate_line_share", "max_top_ngram_share",
         "max_duplicate_ngram_share")
SCRIPTS = ("latin", "cjk", "digits", "whitespace", "cjk_punctuation", "punctuation", "other")
# Gopher's symbols: '#' and ellipses ('...' or the single character).
SYMBOLS = ("#", "...", "\u2026")


@functools.cache
def _flags() -> np.ndarray:
  """The flags (_SPACE, _ALONE, _LETTER) of every code point."""
  chars = map(chr, range(_LETTER_PLANES_END))
  flags = np.zeros(sys.maxunicode + 1, np.uint8)
  flags[:_LETTER_PLANES_END] = np.fromiter(
      (_SPACE * c.isspace() | _LETTER * (c.isalnum() and not c.isdecimal() and c != "_")
       for c in chars), np.uint8, count=_LETTER_PLANES_END)
  for low, high in _NO_SPACE_RANGES:
    flags[low:high + 1] |= _ALONE
  return flags


class Words:
  """The words of one or more documents, as arrays over all of them: a word is a run of
  non-whitespace characters, except that each character of a script written without spaces is a
  word of its own (so for text without such characters the words are `text.split()`).

  Document k holds words documents[k]:documents[k + 1]; `Words(text)` is one document.
  """

  def __init__(self, text: str):
    self._analyze([text])

  @classmethod
  def of_documents(cls, texts: list[str]) -> "Words":
    """The words of several documents, analyzed in one batch (far fewer numpy calls each)."""
    words = cls.__new__(cls)
    words._analyze(list(texts))  # pylint: disable=protected-access
    return words

  def _analyze(self, texts: list[str]) -> None:
    if len(texts) >= 1 << 16:
      raise ValueError(f"at most 65,535 documents per batch, got {len(texts)}")
    self.texts = texts
    # Joined by newlines (whitespace: no word spans two documents).
    text = "\n".join(texts)
    beginnings = np.cumsum([0] + [len(t) + 1 for t in texts])
    codes = hashing.code_points(text)
    flags = _flags()[codes]
    space = (flags & _SPACE).astype(bool)
    alone = (flags & _ALONE).astype(bool)
    separate = np.ones(len(codes) + 2, bool)  # Character i - 1 is whitespace or alone.
    np.logical_or(space, alone, out=separate[1:-1])
    inside = ~space
    self.starts = np.flatnonzero(inside & (separate[:-2] | alone))
    self.ends = np.flatnonzero(inside & (separate[2:] | alone)) + 1
    self.lengths = self.ends - self.starts
    # Whether each word holds a letter: from its start to the next word's (what lies between
    # is whitespace).
    self.has_letter = (np.maximum.reduceat(flags & _LETTER, self.starts).astype(bool)
                       if len(self.starts) else np.zeros(0, bool))
    self.documents = np.searchsorted(self.starts, beginnings)
    self.chars = np.zeros(len(self.starts) + 1, np.int64)  # Characters of words 0 .. i - 1.
    np.cumsum(self.lengths, out=self.chars[1:])
    self._codes = codes
    self._ngrams: dict[int, NGrams] = {}

  def __len__(self) -> int:
    """The number of words of all documents."""
    return len(self.starts)

  def counts(self) -> np.ndarray:
    """Words per document."""
    return np.diff(self.documents)

  def per_document(self, prefix: np.ndarray) -> np.ndarray:
    """Per-document totals of a quantity per word, from its prefix sums over all words."""
    return prefix[self.documents[1:]] - prefix[self.documents[:-1]]

  def strings(self) -> list[str]:
    """The words of a one-document `Words` as strings."""
    text = self.texts[0]
    return [text[s:e] for s, e in zip(self.starts.tolist(), self.ends.tolist())]

  @functools.cached_property
  def _hashes(self) -> np.ndarray:
    """A mixed uint64 hash of every word (equal words, equal hashes)."""
    return hashing.mix64(hashing.PrefixHash(self._codes).runs(self.starts, self.ends))

  def ngrams(self, n: int) -> "NGrams":
    """The word n-grams of each document and how often each occurs in it."""
    if n not in self._ngrams:
      self._ngrams[n] = NGrams(self, n)
    return self._ngrams[n]


class NGrams:
  """The n-grams of each document of a `Words` (none across documents) that may occur more than
  once in it, grouped by value; any other n-gram occurs once.

  positions: the first word of each such n-gram; group: the group (distinct n-gram of a
  document) of every position; per group: its document, occurrences and first position.
  """

  def __init__(self, words: Words, n: int):
    document = np.repeat(np.arange(len(words.documents) - 1), words.counts())
    ends = words.documents[1:][document]  # The end of each word's document.
    self.positions = np.flatnonzero(np.arange(len(words)) + n <= ends) if n >= 1 else ends[:0]
    if n > 2:  # A repeated n-gram's bigrams all repeat: only such positions need sorting.
      bigrams = words.ngrams(2)
      repeated = np.zeros(len(words) + 1, np.int64)  # Repeated bigrams starting before word i.
      repeated[bigrams.positions + 1] = bigrams.occurrences[bigrams.group] > 1
      np.cumsum(repeated, out=repeated)
      self.positions = self.positions[
          repeated[self.positions + n - 1] - repeated[self.positions] == n - 1]
    grams = words._hashes[self.positions].copy()  # pylint: disable=protected-access
    for k in range(1, n):
      grams *= np.uint64(_GRAM_WEIGHT)
      grams += words._hashes[self.positions + k]  # pylint: disable=protected-access
    # Sort keys: the document in the top 16 bits, 48 bits of the n-gram's hash below.
    keys = (document[self.positions].astype(np.uint64) << np.uint64(48)) | (grams >> np.uint64(16))
    order = np.argsort(keys)
    keys = keys[order]
    new = np.ones(len(keys), bool)
    new[1:] = keys[1:] != keys[:-1]
    group_starts = np.flatnonzero(new)
    self.occurrences = np.diff(np.append(group_starts, len(keys)))
    self.group = np.empty(len(keys), np.int64)
    self.group[order] = np.cumsum(new) - 1
    self.first = (np.minimum.reduceat(self.positions[order], group_starts) if len(keys)
                  else self.positions)
    self.document = document[self.first]
    self.documents = np.searchsorted(self.document, np.arange(len(words.documents)))


def words(text: str) -> list[str]:
  """The words of `text` (`Words`) as strings."""
  return Words(text).strings()


class QualityFilter:
  """`reason(text)`: the first rule of config.quality that `text` fails, or None; `reasons`
  for a batch of texts (the same answers, faster)."""

  def __init__(self, quality_cfg: Any):
    self.cfg = types.SimpleNamespace(**dict(quality_cfg.items()))  # Plain attributes: fast.

  def reason(self, text: str) -> str | None:
    return self.reasons([text])[0]

  def reasons(self, texts: list[str]) -> list[str | None]:
    cfg = self.cfg
    tokens = Words.of_documents(texts)
    counts = tokens.counts().tolist()
    measures = []  # (rule, per-document values, fails(value)), in the order of RULES.
    if cfg.max_symbol_ratio:
      ratios = [symbol_count(t) / c if c else 0.0 for t, c in zip(texts, counts)]
      measures.append(("max_symbol_ratio", ratios, lambda v: v > cfg.max_symbol_ratio))
    if cfg.min_alpha_word_share:
      measures.append(("min_alpha_word_share", alpha_word_shares(tokens).tolist(),
                       lambda v: v < cfg.min_alpha_word_share))
    if cfg.max_duplicate_line_share:
      measures.append(("max_duplicate_line_share", [duplicate_line_share(t) for t in texts],
                       lambda v: v > cfg.max_duplicate_line_share))
    if cfg.max_top_ngram_share:
      measures.append(("max_top_ngram_share",
                       top_ngram_shares(tokens, cfg.top_ngram_size).tolist(),
                       lambda v: v > cfg.max_top_ngram_share))
    if cfg.max_duplicate_ngram_share:
      measures.append(("max_duplicate_ngram_share",
                       duplicate_ngram_shares(tokens, cfg.duplicate_ngram_size).tolist(),
                       lambda v: v > cfg.max_duplicate_ngram_share))
    reasons = []
    for k, (text, count) in enumerate(zip(texts, counts)):
      reasons.append(
          "min_chars" if len(text) < cfg.min_chars else
          "max_chars" if cfg.max_chars and len(text) > cfg.max_chars else
          "min_words" if count < cfg.min_words else
          "max_words" if cfg.max_words and count > cfg.max_words else
          None if not count else
          next((rule for rule, values, fails in measures if fails(values[k])), None))
    return reasons


def symbol_count(text: str) -> int:
  """Occurrences of SYMBOLS (they share no character, so the counts add up)."""
  return sum(text.count(symbol) for symbol in SYMBOLS)


def duplicate_line_share(text: str) -> float:
  """The share of non-blank lines that repeat an earlier line."""
  lines = [line.strip() for line in text.split("\n") if line.strip()]
  return (len(lines) - len(set(lines))) / len(lines) if lines else 0.0


def alpha_word_shares(tokens: Words) -> np.ndarray:
  """Per document: the share of its words holding a letter of any script (0 without words)."""
  letters = np.zeros(len(tokens) + 1, np.int64)
  np.cumsum(tokens.has_letter, out=letters[1:])
  return _ratio(tokens.per_document(letters), tokens.counts())


def top_ngram_shares(tokens: Words, n: int) -> np.ndarray:
  """Per document: characters of its most frequent word n-gram (all occurrences; the first to
  occur among equally frequent ones) / characters of all its words (Gopher's "top n-gram"
  rule); 0 when no n-gram occurs twice."""
  grams = tokens.ngrams(n)
  top = np.zeros(len(tokens.documents) - 1, np.int64)
  first = np.zeros_like(top)
  has = np.flatnonzero(np.diff(grams.documents) > 0)  # Documents with n-grams.
  if len(has):
    cuts = grams.documents[has]
    top[has] = np.maximum.reduceat(grams.occurrences, cuts)
    is_top = grams.occurrences == top[grams.document]
    first[has] = np.minimum.reduceat(np.where(is_top, grams.first, len(tokens)), cuts)
  top[top < 2] = 0
  last = np.minimum(first + n, len(tokens))
  return _ratio(top * (tokens.chars[last] - tokens.chars[first]),
                tokens.per_document(tokens.chars))


def duplicate_ngram_shares(tokens: Words, n: int) -> np.ndarray:
  """Per document: the share of its word characters covered by word n-grams that occur more
  than once in it."""
  grams = tokens.ngrams(n)
  repeated = np.zeros(len(tokens) + 1, np.int64)  # Repeated n-grams starting before word i.
  starts = np.zeros(len(tokens), bool)
  starts[grams.positions] = grams.occurrences[grams.group] > 1
  np.cumsum(starts, out=repeated[1:])
  # Word i is covered by a repeated n-gram starting at words i - n + 1 .. i (n-grams do not
  # cross documents, so those starting in an earlier document are never counted).
  word = np.arange(len(tokens))
  covered = repeated[word + 1] > repeated[np.maximum(0, word - max(n, 1) + 1)]
  chars = np.zeros(len(tokens) + 1, np.int64)
  np.cumsum(np.where(covered, tokens.lengths, 0), out=chars[1:])
  return _ratio(tokens.per_document(chars), tokens.per_document(tokens.chars))


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
  """numerator / denominator, 0 where the denominator is 0 (exact integer ratios as floats)."""
  return np.divide(numerator, denominator, out=np.zeros(len(numerator)),
                   where=denominator > 0)


def script_counts(text: str) -> collections.Counter:
  """Characters of `text` by class (SCRIPTS), e.g. the share of CJK in a corpus. Vectorized
  over code points: 'other' holds the letters of other scripts, symbols and marks."""
  counts = np.bincount(_script_classes()[hashing.code_points(text)], minlength=len(SCRIPTS))
  return collections.Counter({name: int(c) for name, c in zip(SCRIPTS, counts.tolist()) if c})


@functools.cache
def _script_classes() -> np.ndarray:
  """The index in SCRIPTS of every code point's class."""
  classes = np.full(sys.maxunicode + 1, SCRIPTS.index("other"), np.uint8)
  for name, ranges in _CLASS_RANGES.items():
    for low, high in ranges:
      classes[low:high + 1] = SCRIPTS.index(name)
  return classes


# Disjoint code point ranges (inclusive) of the classes of SCRIPTS, 'other' excepted.
_CLASS_RANGES = {
    "latin": [(0x41, 0x5A), (0x61, 0x7A), (0xC0, 0xD6), (0xD8, 0xF6), (0xF8, 0x24F),
              (0x1E00, 0x1EFF), (0xFF21, 0xFF3A), (0xFF41, 0xFF5A)],
    "cjk": [(0x2E80, 0x2FDF), (0x3040, 0x30FF), (0x3100, 0x312F), (0x31A0, 0x31FF),
            (0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xAC00, 0xD7AF), (0xF900, 0xFAFF),
            (0x20000, 0x3134F)],
    "digits": [(0x30, 0x39), (0xFF10, 0xFF19)],
    "whitespace": [(0x09, 0x0D), (0x20, 0x20), (0x85, 0x85), (0xA0, 0xA0), (0x2000, 0x200A),
                   (0x2028, 0x2029), (0x202F, 0x202F), (0x205F, 0x205F), (0x3000, 0x3000)],
    # CJK symbols and punctuation (、。《》「」) and the full-width punctuation forms (，！？：；).
    "cjk_punctuation": [(0x3001, 0x303F), (0xFF01, 0xFF0F), (0xFF1A, 0xFF20), (0xFF3B, 0xFF40),
                        (0xFF5B, 0xFF65)],
    "punctuation": [(0x21, 0x2F), (0x3A, 0x40), (0x5B, 0x60), (0x7B, 0x7E), (0xA1, 0xBF),
                    (0x2010, 0x2027), (0x2030, 0x205E)],
}
