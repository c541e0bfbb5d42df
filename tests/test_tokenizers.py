"""Tests for lm.data.tokenizers: round trips on real text, special ids, save/load, token_bytes."""

import functools
import json
import os

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from lm.data import tokenizers
from lm.data.tokenizers import (
    BOS_ID,
    CLS_ID,
    EOS_ID,
    MASK_ID,
    NUM_SPECIAL,
    PAD_ID,
    SEP_ID,
    UNK_ID,
    ByteTokenizer,
    CharTokenizer,
    SentencePieceTokenizer,
)
from lm.errors import UserError
from tests.conftest import FIXTURES, REPO

DATA = str(FIXTURES)


@pytest.fixture(scope="module")
def shakespeare():
  with open(REPO / "data" / "tinyshakespeare" / "input.txt", encoding="utf-8") as f:
    return f.read()


@pytest.fixture(scope="module")
def wikitext():
  with open(os.path.join(DATA, "wikitext2", "tokens", "valid.txt"), encoding="utf-8") as f:
    return f.read()[:100_000]


@pytest.fixture(scope="module")
def chinese():
  # Real, dirty text: Tang poems with ANSI color escapes and `%` separators.
  with open(os.path.join(DATA, "zh-fortunes", "tang300"), encoding="utf-8") as f:
    return f.read()[:20_000]


@pytest.fixture(scope="module")
def train_text(shakespeare, wikitext):
  return [shakespeare[:150_000], wikitext[:50_000]]  # ~200 KB


@pytest.fixture(scope="module", params=["bpe", "unigram"])
def spm_tokenizer(request, train_text):
  return tokenizers.build_tokenizer("sentencepiece",
                                    train_text,
                                    vocab_size=400,
                                    model_type=request.param)


@pytest.fixture(scope="module")
def char_tokenizer(shakespeare):
  return tokenizers.build_tokenizer("char", [shakespeare])


TRICKY = [
    "",
    "\n",
    "\n\nstarts with newlines",
    "  two leading spaces, trailing  ",
    "repeated    spaces\tand\ttabs",
    "windows\r\nline\r\nendings\r\n",
    "digits 1234567890 and 3.14",
    "unicode: café naïve 日本語 emoji 🙂",
    "literal [MASK] <s> </s> <unk> <pad> are plain text",
]


def _all_texts(shakespeare, wikitext, chinese):
  return [shakespeare[-5_000:], wikitext[-5_000:], chinese, *TRICKY]


# --- Special ids --------------------------------------------------------------------------------


def test_special_id_constants():
  ids = (PAD_ID, BOS_ID, EOS_ID, UNK_ID, MASK_ID, CLS_ID, SEP_ID, NUM_SPECIAL)
  assert ids == (0, 1, 2, 3, 4, 5, 6, 7)


def test_sentencepiece_special_pieces_at_fixed_ids(spm_tokenizer):
  pieces = [spm_tokenizer.id_to_piece(i) for i in range(8)]
  assert pieces == ["<pad>", "<s>", "</s>", "<unk>", "[MASK]", "[CLS]", "[SEP]", "\n"]
  assert spm_tokenizer.vocab_size == 400


# --- Char tokenizer -----------------------------------------------------------------------------


def test_char_tokenizer_on_tiny_shakespeare(char_tokenizer, shakespeare):
  assert char_tokenizer.vocab_size == 72  # 65 characters + 7 special ids.
  assert char_tokenizer.chars == sorted(set(shakespeare))
  ids = char_tokenizer.encode(shakespeare[:10_000])
  assert min(ids) >= NUM_SPECIAL
  assert char_tokenizer.decode(ids) == shakespeare[:10_000]
  assert char_tokenizer.encode("\n") == [NUM_SPECIAL]  # "\n" sorts first.


def test_char_unseen_characters_are_unk(char_tokenizer):
  ids = char_tokenizer.encode("a日b")
  assert ids[1] == UNK_ID and ids[0] >= NUM_SPECIAL and ids[2] >= NUM_SPECIAL
  assert char_tokenizer.decode(ids) == "ab"  # UNK is special, so skipped.


def test_char_encode_array_matches_encode(char_tokenizer):
  text = "Hello, World!\nzz~"
  np.testing.assert_array_equal(char_tokenizer.encode_array(text), char_tokenizer.encode(text))
  assert char_tokenizer.encode_array(text).dtype == np.int32


def test_char_tokenizer_multibyte(chinese):
  tokenizer = CharTokenizer.train([chinese])
  assert tokenizer.decode(tokenizer.encode(chinese)) == chinese
  ids = tokenizer.encode(chinese)
  assert int(tokenizer.token_bytes()[ids].sum()) == len(chinese.encode("utf-8"))


# --- Byte tokenizer -----------------------------------------------------------------------------


def test_byte_tokenizer(shakespeare, wikitext, chinese):
  tokenizer = tokenizers.build_tokenizer("byte", [])
  assert tokenizer.vocab_size == 263
  for text in _all_texts(shakespeare, wikitext, chinese):
    ids = tokenizer.encode(text)
    assert ids == [b + NUM_SPECIAL for b in text.encode("utf-8")]
    assert tokenizer.decode(ids) == text
  assert tokenizer.token_bytes().tolist() == [0] * 7 + [1] * 256


def test_byte_decode_skips_specials_and_replaces_invalid_utf8():
  tokenizer = ByteTokenizer()
  assert tokenizer.decode([BOS_ID, ord("a") + 7, EOS_ID, 0xFF + 7, PAD_ID, 999]) == "a\ufffd"


# --- SentencePiece ------------------------------------------------------------------------------


def test_sentencepiece_round_trips_real_and_tricky_text(spm_tokenizer, shakespeare, wikitext,
                                                        chinese):
  for text in _all_texts(shakespeare, wikitext, chinese):
    ids = spm_tokenizer.encode(text)
    assert all(NUM_SPECIAL <= i < spm_tokenizer.vocab_size for i in ids)
    assert spm_tokenizer.decode(ids) == text


def test_sentencepiece_line_by_line_encoding_equals_the_list_call(spm_tokenizer, shakespeare,
                                                                   wikitext, chinese):
  processor = spm_tokenizer._processor  # pylint: disable=protected-access
  for text in _all_texts(shakespeare, wikitext, chinese):
    lines = text.split("\n")
    expected = [i for k, ids in enumerate(processor.encode(lines))
                for i in [NUM_SPECIAL] * bool(k) + ids]  # "\n" is id NUM_SPECIAL.
    assert spm_tokenizer.encode(text) == expected


def test_sentencepiece_compresses_and_uses_byte_fallback(spm_tokenizer, shakespeare, chinese):
  text = shakespeare[-20_000:]
  assert len(spm_tokenizer.encode(text)) < 0.8 * len(text)
  # Chinese is absent from training: it is spelled with byte pieces, one per UTF-8 byte.
  hanzi = "床前明月光"
  assert len(spm_tokenizer.encode(hanzi)) == len(hanzi.encode("utf-8"))


def test_sentencepiece_newlines_are_a_single_piece(spm_tokenizer):
  ids = spm_tokenizer.encode("a\n\nb\n")
  assert ids.count(NUM_SPECIAL) == 3
  assert spm_tokenizer.decode(ids) == "a\n\nb\n"


def test_sentencepiece_decode_skips_special_ids(spm_tokenizer):
  ids = spm_tokenizer.encode("hello there")
  assert spm_tokenizer.decode([BOS_ID, *ids, EOS_ID, PAD_ID, UNK_ID, MASK_ID]) == "hello there"


def test_sentencepiece_training_is_deterministic(train_text):
  a = SentencePieceTokenizer.train(train_text, vocab_size=350, model_type="unigram", seed=3)
  b = SentencePieceTokenizer.train(train_text, vocab_size=350, model_type="unigram", seed=3)
  assert a.model_proto == b.model_proto
  assert a.fingerprint() == b.fingerprint()


def test_sentencepiece_input_sentence_size_caps_training_lines(train_text):
  a = SentencePieceTokenizer.train(train_text, vocab_size=350, input_sentence_size=500, seed=0)
  b = SentencePieceTokenizer.train(train_text, vocab_size=350, input_sentence_size=500, seed=1)
  assert a.model_proto != b.model_proto  # Different seeds draw different lines.
  assert a.decode(a.encode(train_text[0][:3000])) == train_text[0][:3000]


def test_sentencepiece_long_lines_are_chunked_not_dropped(shakespeare):
  # One 40 KB line (> max_sentence_length): training must still learn from it.
  line = shakespeare[:40_000].replace("\n", " ")
  tokenizer = SentencePieceTokenizer.train([line], vocab_size=400, max_sentence_length=2048)
  assert tokenizer.decode(tokenizer.encode(line)) == line
  assert len(tokenizer.encode(line)) < 0.7 * len(line)


def test_sentencepiece_on_chinese_with_partial_coverage(chinese):
  tokenizer = tokenizers.build_tokenizer("sentencepiece", [chinese],
                                         vocab_size=2600,
                                         character_coverage=0.98)
  ids = tokenizer.encode(chinese)
  # Rare characters fall back to bytes; whitespace-only lines need the "▁" piece.
  assert any(tokenizer.id_to_piece(i).startswith("<0x") for i in ids)
  assert tokenizer.decode(ids) == chinese
  assert int(tokenizer.token_bytes()[ids].sum()) == len(chinese.encode("utf-8"))
  assert len(ids) < len(chinese.encode("utf-8")) / 2


# --- token_bytes --------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["char", "byte", "sentencepiece"])
def test_token_bytes_sum_to_utf8_length(kind, spm_tokenizer, char_tokenizer, shakespeare, wikitext,
                                        chinese):
  tokenizer = {"char": char_tokenizer, "byte": ByteTokenizer(), "sentencepiece": spm_tokenizer}
  tokenizer = tokenizer[kind]
  counts = tokenizer.token_bytes()
  assert counts.dtype == np.int32 and counts.shape == (tokenizer.vocab_size,)
  assert not counts[:NUM_SPECIAL].any()
  texts = [shakespeare[-5_000:], *TRICKY[1:4]]
  if kind != "char":  # The char vocabulary only covers Shakespeare's characters.
    texts += [wikitext[-5_000:], chinese, *TRICKY]
  for text in texts:
    ids = tokenizer.encode(text)
    assert tokenizer.decode(ids) == text
    assert int(counts[ids].sum()) == len(text.encode("utf-8"))


# --- Save / load --------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["char", "byte", "sentencepiece"])
def test_save_load_round_trip(kind, tmp_path, spm_tokenizer, char_tokenizer, shakespeare, chinese):
  tokenizer = {"char": char_tokenizer, "byte": ByteTokenizer(), "sentencepiece": spm_tokenizer}
  tokenizer = tokenizer[kind]
  directory = tmp_path / "tokenizer"
  tokenizer.save(directory)
  metadata = json.loads((directory / "tokenizer.json").read_text())
  assert metadata["kind"] == kind and metadata["vocab_size"] == tokenizer.vocab_size
  loaded = tokenizers.load_tokenizer(directory)
  assert type(loaded) is type(tokenizer) and loaded.name == kind
  assert loaded.vocab_size == tokenizer.vocab_size
  assert loaded.fingerprint() == tokenizer.fingerprint()
  for text in (shakespeare[:5_000], chinese[:2_000], *TRICKY):
    assert loaded.encode(text) == tokenizer.encode(text)
  np.testing.assert_array_equal(loaded.token_bytes(), tokenizer.token_bytes())
  assert not [p for p in os.listdir(directory) if p.endswith(".tmp")]


def test_fingerprints_differ_between_tokenizers(spm_tokenizer, char_tokenizer):
  tokenizers_ = (spm_tokenizer, char_tokenizer, ByteTokenizer())
  fingerprints = {t.fingerprint() for t in tokenizers_}
  assert len(fingerprints) == 3
  assert CharTokenizer(["a", "b"]).fingerprint() != CharTokenizer(["a", "c"]).fingerprint()


def test_load_errors_name_the_file(tmp_path):
  with pytest.raises(UserError, match="no saved tokenizer"):
    tokenizers.load_tokenizer(tmp_path / "nothing")
  (tmp_path / "tokenizer.json").write_text("{not json")
  with pytest.raises(UserError, match="tokenizer.json: corrupt"):
    tokenizers.load_tokenizer(tmp_path)
  (tmp_path / "tokenizer.json").write_text(json.dumps({"format_version": 1, "kind": "wordpiece"}))
  with pytest.raises(UserError, match="unknown tokenizer kind 'wordpiece'"):
    tokenizers.load_tokenizer(tmp_path)
  metadata = {"format_version": 1, "kind": "char", "vocab_size": 9}
  (tmp_path / "tokenizer.json").write_text(json.dumps(metadata))
  with pytest.raises(UserError, match="chars.json: missing tokenizer file"):
    tokenizers.load_tokenizer(tmp_path)


# --- build_tokenizer errors ---------------------------------------------------------------------


def test_unknown_kind_names_config_key():
  match = "config.data.tokenizer must be one of char, byte, word, sentencepiece"
  with pytest.raises(UserError, match=match):
    tokenizers.build_tokenizer("wordpiece", ["abc"])


def test_sentencepiece_vocab_size_errors_name_config_key(train_text):
  with pytest.raises(UserError, match=r"config.data.vocab_size must be an integer >= 265"):
    tokenizers.build_tokenizer("sentencepiece", train_text, vocab_size=100)
  # 7 special + newline + 256 bytes + every character of the text exceed 300.
  with pytest.raises(UserError, match=r"config.data.vocab_size=300 is too small: .* at least \d+"):
    tokenizers.build_tokenizer("sentencepiece", train_text, vocab_size=300)
  with pytest.raises(UserError, match=r"config.data.vocab_size=100000 is too large"):
    tokenizers.build_tokenizer("sentencepiece", ["tiny text\n"] * 3, vocab_size=100_000)
  with pytest.raises(UserError, match="config.data.vocab_size must be set"):
    tokenizers.build_tokenizer("sentencepiece", train_text)


def test_sentencepiece_bad_model_type_and_empty_text():
  with pytest.raises(UserError, match=r"config.data.character_coverage must be in \[0.98, 1\]"):
    tokenizers.build_tokenizer("sentencepiece", ["abc"], vocab_size=400, character_coverage=0.9)
  with pytest.raises(UserError, match="config.data.model_type"):
    tokenizers.build_tokenizer("sentencepiece", ["abc"], vocab_size=400, model_type="word")
  with pytest.raises(UserError, match="no training text"):
    tokenizers.build_tokenizer("sentencepiece", ["\n \n"], vocab_size=400)
  with pytest.raises(UserError, match="no training text"):
    tokenizers.build_tokenizer("char", [""])


# --- Properties ---------------------------------------------------------------------------------

# Lone surrogates cannot be UTF-8 encoded; they never come out of decoded files.
_UNICODE = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=200)


@settings(max_examples=200, deadline=None)
@given(_UNICODE)
def test_byte_tokenizer_round_trips_any_unicode(text):
  tokenizer = ByteTokenizer()
  ids = tokenizer.encode(text)
  assert tokenizer.decode(ids) == text
  assert int(tokenizer.token_bytes()[ids].sum()) == len(text.encode("utf-8"))


with open(REPO / "data" / "tinyshakespeare" / "input.txt", encoding="utf-8") as _f:
  _VOCAB = sorted(set(_f.read()))


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.sampled_from(_VOCAB), max_size=200))
def test_char_tokenizer_round_trips_its_vocabulary(text):
  tokenizer = CharTokenizer(_VOCAB)
  ids = tokenizer.encode(text)
  assert UNK_ID not in ids
  assert tokenizer.decode(ids) == text


@functools.cache
def _small_spm() -> SentencePieceTokenizer:
  text = "The quick brown fox\njumps over  the lazy dog.\n"
  return SentencePieceTokenizer.train([text] * 50, vocab_size=300)


@settings(max_examples=150, deadline=None)
@given(
    st.text(
        alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\u2581"),
        max_size=100,
    ))
def test_sentencepiece_round_trips_any_unicode_except_the_space_marker(text):
  tokenizer = _small_spm()
  assert tokenizer.decode(tokenizer.encode(text)) == text
