"""BERT masked-LM corruption: selection counts, 80/10/10 statistics and whole-word masking."""

import numpy as np
import pytest
from scipy import stats

from lm.data import masking
from lm.data.sentencepiece_tokenizer import SentencePieceTokenizer
from lm.data.tokenizers import ByteTokenizer, CharTokenizer
from lm.errors import UserError
from tests.conftest import REPO

NUM_SPECIAL = 7
MASK_ID = 4


def _batch(rng, batch, length, vocab_size, special_share=0.2):
  """Random tokens with special ids (PAD/BOS/EOS/CLS/SEP) sprinkled in, and padded tails."""
  tokens_BxT = rng.integers(NUM_SPECIAL, vocab_size, size=(batch, length))
  specials = rng.choice([0, 1, 2, 5, 6], size=(batch, length))
  tokens_BxT = np.where(rng.random((batch, length)) < special_share, specials, tokens_BxT)
  lengths_B = rng.integers(0, length + 1, size=batch)
  tokens_BxT[np.arange(length)[None, :] >= lengths_B[:, None]] = 0
  return tokens_BxT


def test_selection_counts_specials_and_targets():
  rng = np.random.default_rng(0)
  tokens_BxT = _batch(rng, 400, 64, vocab_size=50)
  tokens_BxT[0] = 0  # A row with nothing to mask.
  tokens_BxT[1, :] = 0
  tokens_BxT[1, 5] = 20  # A row with one maskable token still gets a target.
  out = masking.mask_tokens(tokens_BxT, np.random.default_rng(1), vocab_size=50)
  assert out["inputs"].dtype == np.int32 and out["targets"].dtype == np.int32
  assert out["weights"].dtype == np.float32
  np.testing.assert_array_equal(out["targets"], tokens_BxT)
  maskable_BxT = tokens_BxT >= NUM_SPECIAL
  num_maskable_B = maskable_BxT.sum(axis=1)
  expected_B = np.where(num_maskable_B > 0, np.maximum(np.rint(0.15 * num_maskable_B), 1), 0)
  np.testing.assert_array_equal(out["weights"].sum(axis=1), expected_B)
  assert out["weights"][1, 5] == 1.0
  selected_BxT = out["weights"] == 1.0
  assert not (selected_BxT & ~maskable_BxT).any()
  np.testing.assert_array_equal(out["inputs"][~selected_BxT], tokens_BxT[~selected_BxT])
  assert set(np.unique(out["weights"])) <= {0.0, 1.0}


def test_80_10_10_and_uniform_random_tokens():
  vocab_size = 2000
  tokens_BxT = _batch(np.random.default_rng(2), 1000, 128, vocab_size, special_share=0.05)
  out = masking.mask_tokens(tokens_BxT, np.random.default_rng(3), vocab_size=vocab_size)
  selected_BxT = out["weights"] == 1.0
  inputs_S, originals_S = out["inputs"][selected_BxT], tokens_BxT[selected_BxT]
  num_selected = len(inputs_S)
  assert num_selected > 5000
  masked = np.mean(inputs_S == MASK_ID)
  kept = np.mean(inputs_S == originals_S)
  replaced = 1.0 - masked - kept
  tolerance = 4 * np.sqrt(0.25 / num_selected)
  assert abs(masked - 0.8) < tolerance
  assert abs(kept - 0.1) < tolerance  # A random draw equals the original 1 time in 1993.
  assert abs(replaced - 0.1) < tolerance


def test_random_tokens_are_uniform_over_non_special_ids():
  vocab_size = 20
  tokens_BxT = np.full((2000, 40), 10)
  tokens_BxT[:, 0] = 1  # BOS
  out = masking.mask_tokens(tokens_BxT,
                            np.random.default_rng(4),
                            vocab_size=vocab_size,
                            mask_token_fraction=0.0,
                            random_token_fraction=1.0)
  replaced_S = out["inputs"][out["weights"] == 1.0]
  assert replaced_S.min() >= NUM_SPECIAL and replaced_S.max() < vocab_size
  counts = np.bincount(replaced_S, minlength=vocab_size)[NUM_SPECIAL:]
  assert stats.chisquare(counts).pvalue > 1e-3


def test_positions_are_selected_uniformly():
  tokens_BxT = np.full((4000, 20), 9)
  out = masking.mask_tokens(tokens_BxT, np.random.default_rng(5), vocab_size=30)
  assert (out["weights"].sum(axis=1) == 3).all()
  counts_T = out["weights"].sum(axis=0)
  assert stats.chisquare(counts_T).pvalue > 1e-3


def test_reproducible_from_the_seed():
  tokens_BxT = _batch(np.random.default_rng(6), 16, 32, vocab_size=100)
  starts_V = np.random.default_rng(7).random(100) < 0.5
  for word_starts_V in (None, starts_V):
    a = masking.mask_tokens(tokens_BxT,
                            np.random.default_rng(8),
                            vocab_size=100,
                            word_starts_V=word_starts_V)
    b = masking.mask_tokens(tokens_BxT,
                            np.random.default_rng(8),
                            vocab_size=100,
                            word_starts_V=word_starts_V)
    c = masking.mask_tokens(tokens_BxT,
                            np.random.default_rng(9),
                            vocab_size=100,
                            word_starts_V=word_starts_V)
    for key in ("inputs", "targets", "weights"):
      np.testing.assert_array_equal(a[key], b[key])
    assert not np.array_equal(a["weights"], c["weights"])


def _words(tokens_T, starts_V):
  """Lists of positions, one per word, computed one token at a time."""
  words = []
  for t, token in enumerate(tokens_T):
    if token < NUM_SPECIAL:
      continue
    if starts_V[token] or t == 0 or tokens_T[t - 1] < NUM_SPECIAL:
      words.append([t])
    else:
      words[-1].append(t)
  return words


def test_whole_word_masking_selects_complete_words():
  vocab_size = 40
  starts_V = np.zeros(vocab_size, dtype=bool)
  starts_V[NUM_SPECIAL:25] = True  # Ids 25..39 continue a word.
  rng = np.random.default_rng(10)
  tokens_BxT = _batch(rng, 500, 48, vocab_size, special_share=0.05)
  out = masking.mask_tokens(tokens_BxT,
                            np.random.default_rng(11),
                            vocab_size=vocab_size,
                            word_starts_V=starts_V)
  filled = []
  for b in range(tokens_BxT.shape[0]):
    words = _words(tokens_BxT[b], starts_V)
    weights_T, inputs_T = out["weights"][b], out["inputs"][b]
    budget = max(1, round(0.15 * sum(map(len, words)))) if words else 0
    selected = [w for w in words if weights_T[w].any()]
    for word in selected:
      assert weights_T[word].all()  # Whole words only.
      masked = inputs_T[word] == MASK_ID
      assert masked.all() or not masked.any()  # One decision per word.
    count = int(weights_T.sum())
    assert count == sum(len(w) for w in selected)
    if budget:
      assert count <= budget or (len(selected) == 1 and min(len(w) for w in words) > budget
                                )  # The fallback word.
      filled.append(count / budget)
    else:
      assert count == 0
  assert np.mean(filled) > 0.95


def test_whole_word_masks_multi_token_words_together():
  # Every word has 3 tokens: selection comes in threes, and a budget of 1 still takes a word.
  starts_V = np.zeros(30, dtype=bool)
  starts_V[10] = True
  tokens_BxT = np.tile([10, 20, 21], (300, 10))  # 10 words of 3 tokens.
  out = masking.mask_tokens(tokens_BxT,
                            np.random.default_rng(12),
                            vocab_size=30,
                            word_starts_V=starts_V,
                            mask_rate=0.2)
  weights_BxWx3 = out["weights"].reshape(300, 10, 3)
  assert (weights_BxWx3.sum(axis=(1, 2)) == 6).all()  # Budget 0.2 * 30 = 6: two words.
  assert (weights_BxWx3.min(axis=2) == weights_BxWx3.max(axis=2)).all()
  short = masking.mask_tokens(tokens_BxT[:, :6],
                              np.random.default_rng(13),
                              vocab_size=30,
                              word_starts_V=starts_V)
  assert (short["weights"].sum(axis=1) == 3).all()  # budget 1 < 3: one word anyway.


@pytest.fixture(scope="module")
def shakespeare():
  return (REPO / "data" / "tinyshakespeare" / "input.txt").read_text(encoding="utf-8")[:60_000]


@pytest.fixture(scope="module")
def spm_tokenizer(shakespeare):
  return SentencePieceTokenizer.train([shakespeare], vocab_size=400)


def test_sentencepiece_word_starts(spm_tokenizer):
  starts_V = masking.require_word_starts(spm_tokenizer)
  assert starts_V.shape == (spm_tokenizer.vocab_size,) and starts_V.dtype == bool
  assert not starts_V[:NUM_SPECIAL].any()
  for token_id in range(NUM_SPECIAL, spm_tokenizer.vocab_size):
    piece = spm_tokenizer.id_to_piece(token_id)
    if piece.startswith("\u2581") or piece in ("\n", ",", ".", "!", "'"):
      assert starts_V[token_id], piece
    elif piece.isalnum() or piece.startswith("<0x"):
      assert not starts_V[token_id], piece
  ids = spm_tokenizer.encode("Hello, world!\nFirst Citizen: good morrow")
  pieces = [spm_tokenizer.id_to_piece(i) for i in ids]
  words, word = [], ""
  for token_id, piece in zip(ids, pieces):
    if starts_V[token_id] and word:
      words.append(word)
      word = ""
    word += piece
  words.append(word)
  assert words == [
      "Hello", ",", "\u2581world", "!", "\nFirst", "\u2581Citizen", ":", "\u2581good",
      "\u2581morrow"
  ]


def test_sentencepiece_whole_word_masking_on_text(spm_tokenizer, shakespeare):
  ids = np.array(spm_tokenizer.encode(shakespeare[:20_000]))
  tokens_BxT = ids[:len(ids) // 64 * 64].reshape(-1, 64)
  starts_V = masking.word_starts(spm_tokenizer)
  out = masking.mask_tokens(tokens_BxT,
                            np.random.default_rng(14),
                            vocab_size=spm_tokenizer.vocab_size,
                            word_starts_V=starts_V)
  selected_BxT = out["weights"] == 1.0
  continues_BxT = ~starts_V[tokens_BxT] & (tokens_BxT >= NUM_SPECIAL)
  continues_BxT[:, 0] = False
  # A selected continuation has its predecessor selected, and vice versa.
  np.testing.assert_array_equal(selected_BxT[:, 1:] & continues_BxT[:, 1:],
                                selected_BxT[:, :-1] & continues_BxT[:, 1:])
  assert (continues_BxT & selected_BxT).any()  # Some multi-piece words were masked.


def test_char_and_byte_tokenizers_have_no_word_starts():
  for tokenizer in (CharTokenizer.train(["ab c"]), ByteTokenizer()):
    assert masking.word_starts(tokenizer) is None
    with pytest.raises(UserError, match="config.mlm.whole_word"):
      masking.require_word_starts(tokenizer)


@pytest.mark.parametrize("options, key", [
    (dict(mask_rate=0.0), "config.mlm.mask_rate"),
    (dict(mask_rate=1.5), "config.mlm.mask_rate"),
    (dict(mask_token_fraction=-0.1), "config.mlm.mask_token_fraction"),
    (dict(random_token_fraction=1.1), "config.mlm.random_token_fraction"),
    (dict(mask_token_fraction=0.8, random_token_fraction=0.3), "config.mlm.mask_token_fraction"),
])
def test_bad_options_name_the_key(options, key):
  with pytest.raises(UserError, match=key):
    masking.mask_tokens(np.full((1, 4), 9), np.random.default_rng(0), vocab_size=20, **options)
