"""Tests of lm/data/prepare/quality.py: each Gopher/C4-style rule fires on the text it targets
and passes ordinary text, in English and in Chinese (no spaces)."""

import collections
import re
import sys

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
  text = "a b c d e a b c d e x"
  assert quality.duplicate_ngram_shares(quality.Words(text), 5) == pytest.approx([10 / 11])
  assert quality.top_ngram_shares(quality.Words("a b a b a b"), 2) == pytest.approx([1.0])
  assert quality.top_ngram_shares(quality.Words("a b c d"), 2) == [0.0]
  assert quality.duplicate_line_share("a\nb\na\n\na") == pytest.approx(2 / 4)


def test_script_counts_cover_every_character():
  text = "Hi 床前，月光。 42! ＡＢ é"
  counts = quality.script_counts(text)
  assert sum(counts.values()) == len(text)
  assert counts["cjk"] == 4 and counts["cjk_punctuation"] == 2 and counts["digits"] == 2
  assert counts["latin"] == 5  # H, i, the two full-width letters and é.
  assert set(counts) <= set(quality.SCRIPTS)


# The plain definitions the arrays of quality.Words must equal: a word is a no-space-script
# character or a run of other non-whitespace characters; a letter is the regex class [^\W\d_].
_NO_SPACE = ("\u2e80-\u2fdf\u3040-\u30ff\u3100-\u312f\u31a0-\u31ff\u3400-\u4dbf"
             "\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff\U00020000-\U0003134f")
_WORD_RE = re.compile(rf"[{_NO_SPACE}]|[^\s{_NO_SPACE}]+")
_LETTER_RE = re.compile(r"[^\W\d_]")


def _reference_words(text):
  return _WORD_RE.findall(text)


def _mixed_text(rng, size):
  pieces = ["word", "12", "a1", "--", "naïve", "x_y", "3.5", "猫", "狗狗", "NLP。", "²", "…",
            "ＡＢ", "\u3000", "\n", "\t", "\x85", "\u00a0", "한국어", "ß", "#", "Ⅻ"]
  separators = [" ", "", "  ", "\n", "\u2003"]
  return "".join(pieces[i] + separators[j] for i, j in zip(
      rng.integers(0, len(pieces), size), rng.integers(0, len(separators), size)))


def test_words_equal_the_regex_definitions():
  rng = np.random.default_rng(0)
  for trial in range(200):
    text = _mixed_text(rng, int(rng.integers(0, 60)))
    tokens = quality.Words(text)
    expected = _reference_words(text)
    assert tokens.strings() == expected, text
    assert tokens.lengths.tolist() == [len(w) for w in expected]
    assert tokens.has_letter.tolist() == [bool(_LETTER_RE.search(w)) for w in expected]
    if "\u3000" not in text and not any("\u2e80" <= c <= "\ufaff" for c in text):
      assert expected == text.split()  # Spaced text: str.split's words.
  slow = sum(bool(_LETTER_RE.search(w)) for w in expected) / len(expected)
  assert quality.alpha_word_shares(tokens) == pytest.approx([slow])


def test_character_flags_equal_python_over_every_code_point():
  flags = quality._flags()  # pylint: disable=protected-access
  letter = np.fromiter((bool(_LETTER_RE.match(chr(c))) for c in range(sys.maxunicode + 1)), bool)
  space = np.fromiter((chr(c).isspace() for c in range(sys.maxunicode + 1)), bool)
  # pylint: disable=protected-access
  np.testing.assert_array_equal((flags & quality._LETTER) > 0, letter)
  np.testing.assert_array_equal((flags & quality._SPACE) > 0, space)


def test_symbol_count_equals_the_regex():
  rng = np.random.default_rng(1)
  for _ in range(100):
    text = "".join(rng.choice(["#", ".", "…", "a", " ", ".."], size=int(rng.integers(0, 30))))
    assert quality.symbol_count(text) == len(re.findall(r"#|\.\.\.|…", text)), text


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


def test_ngram_rules_equal_the_plain_definition():
  """Batches of documents (none, one or several words, Chinese among them) against Gopher's
  rules written plainly over each document's own words."""
  rng = np.random.default_rng(0)
  vocabulary = ["a", "bb", "ccc", "dd", "e", "猫", "狗狗", "x" * 7, "a\u3000b"]
  texts = []
  for trial in range(300):
    size = int(rng.integers(0, 40))
    texts.append(" ".join(vocabulary[k] for k in rng.integers(0, 2 + trial % 8, size=size)))
  for batch in (texts[:1], texts[1:2], texts[:50], texts):
    tokens = quality.Words.of_documents(batch)
    for n in (0, 1, 2, 3, 5):
      top = quality.top_ngram_shares(tokens, n).tolist()
      duplicate = quality.duplicate_ngram_shares(tokens, n).tolist()
      assert top == [_reference_top_ngram_share(_reference_words(t), n) for t in batch]
      assert duplicate == [_reference_duplicate_ngram_share(_reference_words(t), n)
                           for t in batch]


def test_batched_reasons_equal_one_at_a_time():
  rng = np.random.default_rng(2)
  texts = [PROSE, POEM, "", "click here to win big " * 6 + PROSE, "1 2 3 4 5 6 7 8 9 10 11 and x",
           "# # # # # # # # # words words"] + [_mixed_text(rng, int(rng.integers(0, 80)))
                                               for _ in range(100)]
  rules = quality.QualityFilter(gopher())
  reasons = rules.reasons(texts)
  assert reasons == [rules.reason(t) for t in texts]
  assert {None, "min_chars", "max_top_ngram_share", "min_alpha_word_share",
          "max_symbol_ratio"} <= set(reasons)


