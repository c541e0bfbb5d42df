"""Document quality rules in the style of Gopher (Rae et al. 2021, appendix A) and C4, and
script statistics, without assuming whitespace-separated words.

A "word" is a whitespace-separated token, except that every character of a script written
without spaces (CJK ideographs, kana, hangul syllables) is a word of its own, so the same
thresholds apply to Chinese or Japanese text.
"""

import collections
import re
from typing import Any

import numpy as np

# Characters of scripts written without spaces: CJK ideographs (and extensions, compatibility
# ideographs), hiragana, katakana, hangul syllables, bopomofo.
_NO_SPACE_CHARS = ("\u2e80-\u2fdf\u3040-\u30ff\u3100-\u312f\u31a0-\u31ff\u3400-\u4dbf"
                   "\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff\U00020000-\U0003134f")
_WORD_RE = re.compile(rf"[{_NO_SPACE_CHARS}]|[^\s{_NO_SPACE_CHARS}]+")
_CJK_RE = re.compile(rf"[{_NO_SPACE_CHARS}]")
# Gopher's symbols: '#' and ellipses ('...' or the single character).
_SYMBOL_RE = re.compile(r"#|\.\.\.|…")
_LETTER_RE = re.compile(r"[^\W\d_]")
_ALPHA_WORD_RE = re.compile(r"\S*?[^\W\d_]\S*")

# Rules in the order they are tried; the first failing one is the reason a document is dropped.
RULES = ("min_chars", "max_chars", "min_words", "max_words", "max_symbol_ratio",
         "min_alpha_word_share", "max_duplicate_line_share", "max_top_ngram_share",
         "max_duplicate_ngram_share")
SCRIPTS = ("latin", "cjk", "digits", "whitespace", "cjk_punctuation", "punctuation", "other")


def words(text: str) -> list[str]:
  """Whitespace-separated tokens, with each no-space-script character a token of its own."""
  return _WORD_RE.findall(text) if _CJK_RE.search(text) else text.split()


class QualityFilter:
  """`reason(text)`: the first rule of config.quality that `text` fails, or None."""

  def __init__(self, quality_cfg: Any):
    self.cfg = quality_cfg

  def reason(self, text: str) -> str | None:
    cfg = self.cfg
    if len(text) < cfg.min_chars:
      return "min_chars"
    if cfg.max_chars and len(text) > cfg.max_chars:
      return "max_chars"
    tokens = words(text)
    if len(tokens) < cfg.min_words:
      return "min_words"
    if cfg.max_words and len(tokens) > cfg.max_words:
      return "max_words"
    if not tokens:
      return None
    if cfg.max_symbol_ratio and len(_SYMBOL_RE.findall(text)) / len(tokens) > cfg.max_symbol_ratio:
      return "max_symbol_ratio"
    if cfg.min_alpha_word_share and alpha_word_share(text, tokens) < cfg.min_alpha_word_share:
      return "min_alpha_word_share"
    if cfg.max_duplicate_line_share and duplicate_line_share(text) > cfg.max_duplicate_line_share:
      return "max_duplicate_line_share"
    if cfg.max_top_ngram_share and top_ngram_share(tokens,
                                                   cfg.top_ngram_size) > cfg.max_top_ngram_share:
      return "max_top_ngram_share"
    if cfg.max_duplicate_ngram_share and duplicate_ngram_share(
        tokens, cfg.duplicate_ngram_size) > cfg.max_duplicate_ngram_share:
      return "max_duplicate_ngram_share"
    return None


def duplicate_line_share(text: str) -> float:
  """The share of non-blank lines that repeat an earlier line."""
  lines = [line.strip() for line in text.split("\n") if line.strip()]
  return (len(lines) - len(set(lines))) / len(lines) if lines else 0.0


def alpha_word_share(text: str, tokens: list[str]) -> float:
  """The share of words holding a letter of any script."""
  if not tokens:
    return 0.0
  if _CJK_RE.search(text):
    return sum(bool(_LETTER_RE.search(w)) for w in tokens) / len(tokens)
  return len(_ALPHA_WORD_RE.findall(text)) / len(tokens)  # One C pass for spaced text.


def top_ngram_share(tokens: list[str], n: int) -> float:
  """Characters of the most frequent word n-gram (all its occurrences) / characters of all
  words (Gopher's "top n-gram" rule)."""
  counts = _ngram_counts(tokens, n)
  if not counts or len(counts) == len(tokens) - n + 1:  # No n-gram occurs twice.
    return 0.0
  gram, count = counts.most_common(1)[0]
  return count * sum(map(len, gram)) / sum(map(len, tokens)) if count > 1 else 0.0


def duplicate_ngram_share(tokens: list[str], n: int) -> float:
  """Share of word characters covered by word n-grams that occur more than once."""
  counts = _ngram_counts(tokens, n)
  if not counts or len(counts) == len(tokens) - n + 1:  # No n-gram occurs twice.
    return 0.0
  covered = bytearray(len(tokens))
  for i, gram in enumerate(zip(*(tokens[k:] for k in range(n)))):
    if counts[gram] > 1:
      covered[i:i + n] = b"\x01" * n
  return sum(len(t) for t, c in zip(tokens, covered) if c) / sum(map(len, tokens))


def _ngram_counts(tokens: list[str], n: int) -> collections.Counter:
  if n < 1 or len(tokens) < n:
    return collections.Counter()
  return collections.Counter(zip(*(tokens[k:] for k in range(n))))


def script_counts(text: str) -> collections.Counter:
  """Characters of `text` by class (SCRIPTS), e.g. the share of CJK in a corpus. Vectorized
  over code points: 'other' holds the letters of other scripts, symbols and marks."""
  codes = np.frombuffer(text.encode("utf-32-le", errors="surrogatepass"), dtype=np.uint32)
  counts = collections.Counter()
  for name, ranges in _CLASS_RANGES.items():
    inside = np.zeros(codes.shape, dtype=bool)
    for low, high in ranges:
      inside |= (codes >= low) & (codes <= high)
    counts[name] = int(inside.sum())
  counts["other"] = len(codes) - sum(counts.values())
  return collections.Counter({k: v for k, v in counts.items() if v > 0})


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
