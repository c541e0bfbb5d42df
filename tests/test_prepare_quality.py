"""Tests of lm/data/prepare/quality.py: each Gopher/C4-style rule fires on the text it targets
and passes ordinary text, in English and in Chinese (no spaces)."""

import collections

import ml_collections
import numpy as np
import pytest

from lm.data.prepare import config as prepare_config
from lm.data.prepare import quality

PROSE = ("The film opens on a quiet harbor town where nothing much happens. Over two hours the "
         "director builds a patient portrait of its people, their work and their small feuds.")
POEM = "床前明月光，疑是地上霜。举头望明月，低头思故乡。"


def gopher() -> ml_collections.ConfigDict:
  cfg = prepare_config.base_config().quality
  cfg.update(min_words=10, max_words=1000, max_symbol_ratio=0.1, min_alpha_word_share=0.8,
             max_duplicate_line_share=0.3, max_top_ngram_share=0.2,
             max_duplicate_ngram_share=0.15, max_chars=20000)
  return cfg


def test_ordinary_prose_and_poetry_pass_every_rule():
  rules = quality.QualityFilter(gopher())
  assert rules.reason(PROSE) is None
  assert rules.reason(POEM) is None


@pytest.mark.parametrize("text, rule", [
    ("", "min_chars"),
    ("too few words here", "min_words"),
    ("word " * 1500, "max_words"),
    ("x" * 25000, "max_chars"),
    ("# tag # tag # tag # tag words words words words words words", "max_symbol_ratio"),
    ("1 2 3 4 5 6 7 8 9 10 11 12 and words", "min_alpha_word_share"),
    ("\n".join(["Buy now, limited offer today only!"] * 3 + ["A real sentence here."]),
     "max_duplicate_line_share"),
])
def test_each_rule_fires_on_its_text(text, rule):
  assert quality.QualityFilter(gopher()).reason(text) == rule


def test_repeated_ngrams_fire_their_rules():
  cfg = gopher()
  repeated = "click here to win big " * 6 + PROSE
  assert quality.QualityFilter(cfg).reason(repeated) == "max_top_ngram_share"
  cfg.max_top_ngram_share = 0.0
  assert quality.QualityFilter(cfg).reason(repeated) == "max_duplicate_ngram_share"


def test_rules_switched_off_with_zero():
  cfg = prepare_config.base_config().quality  # Only min_chars=1 is on.
  rules = quality.QualityFilter(cfg)
  assert rules.reason("# # # 1 2 3") is None and rules.reason("") == "min_chars"


def test_chinese_characters_count_as_words():
  assert quality.words("我爱 NLP。好") == ["我", "爱", "NLP。", "好"]
  assert len(quality.words(POEM)) == len(POEM)
  cfg = gopher()
  cfg.min_words = 30
  assert quality.QualityFilter(cfg).reason("床前明月光") == "min_words"


def test_ngram_shares():
  tokens = "a b c d e a b c d e x".split()
  assert quality.duplicate_ngram_share(tokens, 5) == pytest.approx(10 / 11)
  assert quality.top_ngram_share("a b a b a b".split(), 2) == pytest.approx(1.0)
  assert quality.top_ngram_share("a b c d".split(), 2) == 0.0
  assert quality.duplicate_line_share("a\nb\na\n\na") == pytest.approx(2 / 4)


def test_script_counts_cover_every_character():
  text = "Hi 床前，月光。 42! ＡＢ é"
  counts = quality.script_counts(text)
  assert sum(counts.values()) == len(text)
  assert counts["cjk"] == 4 and counts["cjk_punctuation"] == 2 and counts["digits"] == 2
  assert counts["latin"] == 5  # H, i, the two full-width letters and é.
  assert set(counts) <= set(quality.SCRIPTS)


def test_alpha_word_share_agrees_between_fast_and_cjk_paths():
  rng = np.random.default_rng(0)
  pieces = ["word", "12", "a1", "--", "naïve", "x_y", "3.5"]
  text = " ".join(rng.choice(pieces, size=50))
  tokens = text.split()
  letter = quality._LETTER_RE  # pylint: disable=protected-access
  slow = sum(bool(letter.search(w)) for w in tokens) / len(tokens)
  assert quality.alpha_word_share(text, tokens) == pytest.approx(slow)


def _reference_top_ngram_share(tokens, n):
  """Gopher's rule written plainly over tuples (the first most common n-gram of a Counter)."""
  grams = collections.Counter(zip(*(tokens[k:] for k in range(n)))) if len(tokens) >= n else {}
  if not grams:
    return 0.0
  gram, count = grams.most_common(1)[0]
  return count * sum(map(len, gram)) / sum(map(len, tokens)) if count > 1 else 0.0


def _reference_duplicate_ngram_share(tokens, n):
  grams = collections.Counter(zip(*(tokens[k:] for k in range(n)))) if len(tokens) >= n else {}
  if not grams or max(grams.values()) < 2:
    return 0.0
  covered = [False] * len(tokens)
  for i, gram in enumerate(zip(*(tokens[k:] for k in range(n)))):
    if grams[gram] > 1:
      covered[i:i + n] = [True] * n
  return sum(len(t) for t, c in zip(tokens, covered) if c) / sum(map(len, tokens))


def test_ngram_rules_with_their_shortcuts_equal_the_plain_definition():
  rng = np.random.default_rng(0)
  vocabulary = ["a", "bb", "ccc", "dd", "e", "猫", "狗狗", "x" * 7]
  for trial in range(300):
    size = int(rng.integers(0, 40))
    tokens = [vocabulary[k] for k in rng.integers(0, 2 + trial % 7, size=size)]
    for n in (1, 2, 3, 5):
      assert quality.top_ngram_share(tokens, n) == _reference_top_ngram_share(tokens, n)
      assert quality.duplicate_ngram_share(tokens, n) == _reference_duplicate_ngram_share(
          tokens, n)
