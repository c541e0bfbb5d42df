"""Properties (hypothesis) of the trainable tokenizers over arbitrary Unicode: CJK, Arabic,
combining marks, emoji, control characters and text never seen in training.

With byte fallback, char, byte and SentencePiece tokenizers are lossless: every id is in range,
`decode(encode(x)) == x`, no id is UNK, and the ids' `token_bytes` add up to the UTF-8 length
of `x` (what bits-per-byte divides by).
"""

import functools

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from lm.data import tokenizers
from lm.data.sentencepiece_tokenizer import SPACE_MARKER

PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# A small training corpus mixing scripts; the property texts go far beyond it.
CORPUS = [
    "The quick brown fox jumps over the lazy dog.  Twice,\tover.",
    "床前明月光，疑是地上霜。举头望明月，低头思故乡。",
    "مرحبا بالعالم",
    "naïve café e\u0301 ｅｘａｍｐｌｅ",
    "emoji 😀🎉 👩\u200d👩\u200d👧",
    "line one\nline two\n\n",
] * 8

# Pieces that tokenizers trip over, mixed with arbitrary text. st.text() never draws lone
# surrogates (category Cs): they are not characters and no decoded file holds them.
TRICKY = st.sampled_from([
    "床前明月光", "《春望》", "\u3000", "，。！？", "مرحبا", "\u064b\u0650", "e\u0301\u0327",
    "\u0915\u094d\u0937", "👩\u200d👩\u200d👧", "🇫🇷", "\U0001F600", "\ufeff", "\u200b", "\x00",
    "\x1b[32m", "\r\n", "\t", " ", "  ", "\n", SPACE_MARKER, "<0xE2>", "<unk>", "[MASK]", "𠀀",
    "\U0010FFFF",
])
SCRIPT_RANGES = [(0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x0600, 0x06FF),
                 (0x0300, 0x036F), (0x1F300, 0x1FAFF), (0xAC00, 0xD7A3), (0x0, 0x7F)]
SCRIPT_CHARS = st.sampled_from(SCRIPT_RANGES).flatmap(
    lambda r: st.characters(min_codepoint=r[0], max_codepoint=r[1]))
TEXTS = st.one_of(
    st.text(max_size=80),
    st.lists(st.one_of(TRICKY, SCRIPT_CHARS, st.text(max_size=5)), max_size=30).map("".join),
)


@functools.cache
def trained(kind: str) -> tokenizers.Tokenizer:
  """Each tokenizer trained once (SentencePiece: byte fallback on, the project's default)."""
  if kind == "sentencepiece":
    return tokenizers.build_tokenizer(kind, CORPUS, vocab_size=400, byte_fallback=True)
  return tokenizers.build_tokenizer(kind, CORPUS, byte_fallback=True)


KINDS = ("char", "byte", "sentencepiece")


@pytest.mark.parametrize("kind", KINDS)
@PROPERTY
@given(text=TEXTS)
def test_tokenizers_round_trip_any_unicode(kind, text):
  tokenizer = trained(kind)
  ids = tokenizer.encode(text)
  assert all(tokenizers.NUM_SPECIAL <= i < tokenizer.vocab_size for i in ids)
  assert tokenizer.decode(ids) == text
  np.testing.assert_array_equal(tokenizer.encode_array(text), ids)
  assert int(tokenizer.token_bytes()[ids].sum()) == len(text.encode("utf-8"))


@pytest.mark.parametrize("kind", KINDS)
@PROPERTY
@given(ids=st.lists(st.integers(-5, 800), max_size=60))
def test_decoding_any_ids_gives_text(kind, ids):
  # Sampled models emit any id, e.g. byte ids that form no UTF-8: decoding never fails.
  assert isinstance(trained(kind).decode(ids), str)


@PROPERTY
@given(text=TEXTS)
def test_char_byte_fallback_keeps_the_ids_of_seen_characters(text):
  plain = tokenizers.CharTokenizer.train(CORPUS)
  fallback = trained("char")
  assert fallback.vocab_size == plain.vocab_size + 256
  seen = "".join(c for c in text if c in set(plain.chars))
  assert fallback.encode(seen) == plain.encode(seen)


@PROPERTY
@given(text=TEXTS)
def test_without_byte_fallback_unseen_characters_are_unk_and_seen_ones_survive(text):
  tokenizer = tokenizers.CharTokenizer.train(CORPUS, byte_fallback=False)
  ids = tokenizer.encode(text)
  vocabulary = set(tokenizer.chars)
  assert ids.count(tokenizers.UNK_ID) == sum(c not in vocabulary for c in text)
  assert tokenizer.decode(ids) == "".join(c for c in text if c in vocabulary)
