"""The word tokenizer: WikiText-2's published vocabulary and word counts, round trips of
normalized text, the vocabulary cap, save/load and clear errors."""

import gzip
import json
import os

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from lm.data import tokenizers, word_tokenizer
from lm.data.tokenizer_base import NUM_SPECIAL, UNK_ID
from lm.data.word_tokenizer import EOS_WORD_ID, WordTokenizer, normalize
from lm.errors import UserError
from tests.conftest import FIXTURES

WIKITEXT = os.path.join(FIXTURES, "wikitext2", "tokens")


@pytest.fixture(scope="module")
def wikitext_train():
  with gzip.open(os.path.join(WIKITEXT, "train.txt.gz"), "rt", encoding="utf-8") as f:
    return f.read()


@pytest.fixture(scope="module")
def wikitext_tokenizer(wikitext_train):
  return tokenizers.build_tokenizer("word", [wikitext_train], vocab_size=100_000)


def test_wikitext2_vocabulary_and_word_counts(wikitext_tokenizer, wikitext_train):
  """On the full data (Merity et al. 2016): 33,278 words (<eos> and <unk> included);
  2,088,628 / 217,646 / 245,569 words in train / valid / test, one <eos> per line: the
  denominators of the published word-level perplexities. On the fixture's slices (the first
  200 / 150 / 100 lines): 2,395 words, and one id per word and per line."""
  assert wikitext_tokenizer.vocab_size == NUM_SPECIAL + 2_395
  ids = wikitext_tokenizer.encode(wikitext_train)
  assert UNK_ID not in ids  # Rare words are already the text's own word "<unk>".
  counts = {"train": len(ids)}
  for split in ("valid", "test"):
    with open(os.path.join(WIKITEXT, f"{split}.txt"), encoding="utf-8") as f:
      text = f.read()
    counts[split] = len(wikitext_tokenizer.encode(text))
    assert counts[split] == len(text.split()) + text.count("\n")  # Unseen words are <unk>.
  assert counts == {"train": 10_313, "valid": 8_656, "test": 4_819}


def test_most_frequent_words_are_kept(wikitext_tokenizer, wikitext_train):
  capped = tokenizers.build_tokenizer("word", [wikitext_train], vocab_size=NUM_SPECIAL + 1 + 3)
  assert capped.words == wikitext_tokenizer.words[:3] == ["the", ",", "."]
  assert capped.encode("the cat .\n") == [NUM_SPECIAL + 1, UNK_ID, NUM_SPECIAL + 3, EOS_WORD_ID]
  with pytest.raises(UserError, match="config.data.vocab_size=8: the word tokenizer needs more"):
    tokenizers.build_tokenizer("word", ["a b"], vocab_size=NUM_SPECIAL + 1)
  with pytest.raises(UserError, match="no training text"):
    tokenizers.build_tokenizer("word", [" \n "], vocab_size=100)


def test_ties_are_broken_alphabetically():
  tokenizer = WordTokenizer.train(["b a c b a d"], vocab_size=NUM_SPECIAL + 1 + 3)
  assert tokenizer.words == ["a", "b", "c"]


TRICKY = ["", "\n", "\n\n", " = Title = \n", "  spaces   inside \t tabs  \n\nnext", "no newline",
          "ünïcode 日本語 🙂\n"]


@pytest.mark.parametrize("text", TRICKY)
def test_round_trip_is_the_normalized_text(text):
  tokenizer = WordTokenizer.train(TRICKY, vocab_size=1000)
  ids = tokenizer.encode(text)
  assert tokenizer.decode(ids) == normalize(text)
  assert ids.count(EOS_WORD_ID) == text.count("\n")


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.sampled_from("ab c\n\t"), max_size=40))
def test_round_trip_of_any_text_of_known_words(text):
  tokenizer = WordTokenizer(["a", "b", "c", "ab", "ba"])
  ids = tokenizer.encode(text)
  known = all(word in ("a", "b", "c", "ab", "ba") for word in text.split())
  assert (tokenizer.decode(ids) == normalize(text)) or not known
  assert len(ids) == len(text.split()) + text.count("\n")


def test_token_bytes_count_a_separator_per_word():
  tokenizer = WordTokenizer(["über", "a"])
  ids = tokenizer.encode("über a\n")
  assert tokenizer.token_bytes()[ids].tolist() == [6, 2, 1]
  assert tokenizer.token_bytes()[:NUM_SPECIAL].sum() == 0


def test_save_load_round_trip_and_corrupt_file(tmp_path, wikitext_tokenizer):
  wikitext_tokenizer.save(tmp_path / "tok")
  loaded = tokenizers.load_tokenizer(tmp_path / "tok")
  assert isinstance(loaded, WordTokenizer) and loaded.words == wikitext_tokenizer.words
  assert loaded.fingerprint() == wikitext_tokenizer.fingerprint()
  np.testing.assert_array_equal(loaded.token_bytes(), wikitext_tokenizer.token_bytes())
  metadata = json.loads((tmp_path / "tok" / "tokenizer.json").read_text())
  assert metadata["kind"] == "word" and metadata["vocab_size"] == loaded.vocab_size
  (tmp_path / "tok" / word_tokenizer.WORDS_FILE).write_text('["a", "a"]')
  with pytest.raises(UserError, match="words.json: corrupt word vocabulary"):
    tokenizers.load_tokenizer(tmp_path / "tok")
