"""BERT masked-LM corruption (Devlin et al. 2019), in numpy and reproducible from a Generator.

Per row, round(mask_rate * maskable tokens) tokens (Python's round: halves to even; at least 1)
are selected for prediction, uniformly among the non-special ones; of those,
`mask_token_fraction` become [MASK], `random_token_fraction` a uniformly random non-special id,
and the rest stay unchanged. Which ids are special comes from the tokenizer
(`Tokenizer.special_mask`).
With whole-word masking, whole words are selected and share that 80/10/10 decision.
"""

import unicodedata
from typing import Any

import numpy as np

from lm.data.sentencepiece_tokenizer import SentencePieceTokenizer
from lm.data.tokenizer_base import MASK_ID, NUM_SPECIAL
from lm.errors import UserError

SPACE_MARKER = "\u2581"  # "▁": SentencePiece's space, at the start of word-initial pieces.
_NEWLINE = "\n"


def mask_tokens(tokens_BxT: np.ndarray,
                rng: np.random.Generator,
                *,
                vocab_size: int,
                mask_rate: float = 0.15,
                mask_token_fraction: float = 0.8,
                random_token_fraction: float = 0.1,
                word_starts_V: np.ndarray | None = None,
                special_V: np.ndarray | None = None,
                mask_id: int | None = MASK_ID,
                word_starts_BxT: np.ndarray | None = None) -> dict[str, np.ndarray]:
  """Corrupts a batch for masked-LM training.

  Special tokens (True in `special_V`, bool [vocab_size]; by default the ids < NUM_SPECIAL:
  padding, BOS, EOS, CLS, SEP, ...) are never selected nor drawn as random replacements.
  `mask_id` None (a tokenizer without [MASK]) only works with mask_token_fraction 0.
  With `word_starts_V` (bool [vocab_size], True for ids that begin a word) a word is a
  word-start token and the non-start tokens after it (a non-start token right after a
  special token or at the row start begins a word too); `word_starts_BxT` (bool [B, T]) gives
  the starts per position instead (words found by segmenting the text: `segment_starts`).
  Words are then taken in random order,
  skipping any that would overshoot the row's budget (as in BERT's whole-word masking); if no
  word fits, the first word in that order is taken so that every row with maskable tokens has
  at least one target.

  Returns `inputs` (int32 [B, T], corrupted), `targets` (int32 [B, T], the original tokens)
  and `weights` (float32 [B, T], 1.0 at the selected positions).
  """
  _check_options(mask_rate, mask_token_fraction, random_token_fraction, mask_id)
  if special_V is None:
    special_V = np.arange(vocab_size) < NUM_SPECIAL
  special_V = np.asarray(special_V, dtype=bool)
  if special_V.shape != (vocab_size,):
    raise ValueError(f"special_V must have shape ({vocab_size},), got {special_V.shape}")
  text_ids = np.flatnonzero(~special_V)
  if not text_ids.size:
    raise ValueError(f"vocab_size={vocab_size} has no ids beyond the special ones")
  tokens_BxT = np.asarray(tokens_BxT)
  if tokens_BxT.ndim != 2 or not np.issubdtype(tokens_BxT.dtype, np.integer):
    raise ValueError(f"tokens must be a [B, T] integer array, got {tokens_BxT.dtype} "
                     f"{tokens_BxT.shape}")
  if tokens_BxT.size and (tokens_BxT.min() < 0 or tokens_BxT.max() >= vocab_size):
    raise ValueError(f"token ids must be in [0, {vocab_size}); got values in "
                     f"[{tokens_BxT.min()}, {tokens_BxT.max()}]")
  B, T = tokens_BxT.shape
  maskable_BxT = ~special_V[tokens_BxT]
  num_maskable_B = maskable_BxT.sum(axis=1)
  budget_B = np.where(num_maskable_B > 0, np.maximum(np.rint(mask_rate * num_maskable_B), 1),
                      0).astype(np.int64)

  # Unit = what is selected and decided on together: a word, or else each maskable token.
  # unit_BxT is the unit's index in its row (< T), -1 at special tokens.
  whole_words = word_starts_V is not None or word_starts_BxT is not None
  if not whole_words:
    unit_BxT = np.where(maskable_BxT, np.arange(T)[None, :], -1)
  else:
    if word_starts_BxT is None:
      word_starts_V = np.asarray(word_starts_V, dtype=bool)
      if word_starts_V.shape != (vocab_size,):
        raise ValueError(f"word_starts must have shape ({vocab_size},), got "
                         f"{word_starts_V.shape}")
      word_starts_BxT = word_starts_V[tokens_BxT]
    elif np.shape(word_starts_BxT) != (B, T):
      raise ValueError(f"word_starts_BxT must have shape ({B}, {T}), got "
                       f"{np.shape(word_starts_BxT)}")
    follows_special_BxT = np.ones((B, T), dtype=bool)
    follows_special_BxT[:, 1:] = ~maskable_BxT[:, :-1]
    begins_BxT = maskable_BxT & (np.asarray(word_starts_BxT, bool) | follows_special_BxT)
    unit_BxT = np.where(maskable_BxT, np.cumsum(begins_BxT, axis=1) - 1, -1)
  # Tokens per unit; units are numbered 0..T-1 in each row.
  flat_unit = (np.arange(B)[:, None] * T + unit_BxT)[maskable_BxT]
  size_BxU = np.bincount(flat_unit, minlength=B * T).reshape(B, T)

  # Units in a uniformly random order (empty units last), taken greedily up to the budget.
  keys_BxU = np.where(size_BxU > 0, rng.random((B, T)), np.inf)
  order_BxU = np.argsort(keys_BxU, axis=1, kind="stable")
  sizes_in_order_BxU = np.take_along_axis(size_BxU, order_BxU, axis=1)
  if not whole_words:  # All sizes are 1: the first `budget` units, vectorized.
    taken_in_order_BxU = np.arange(T)[None, :] < budget_B[:, None]
  else:
    taken_in_order_BxU = _take_greedily(sizes_in_order_BxU, budget_B)
  selected_BxU = np.zeros((B, T), dtype=bool)
  np.put_along_axis(selected_BxU, order_BxU, taken_in_order_BxU, axis=1)

  unit_or_0_BxT = np.maximum(unit_BxT, 0)
  selected_BxT = maskable_BxT & np.take_along_axis(selected_BxU, unit_or_0_BxT, axis=1)
  decision_BxU = rng.random((B, T))  # One draw per unit: [MASK], random token or unchanged.
  decision_BxT = np.take_along_axis(decision_BxU, unit_or_0_BxT, axis=1)
  random_ids_BxT = text_ids[rng.integers(0, text_ids.size, size=(B, T))]
  to_mask_BxT = selected_BxT & (decision_BxT < mask_token_fraction)
  to_random_BxT = selected_BxT & ~to_mask_BxT & (decision_BxT
                                                 < mask_token_fraction + random_token_fraction)
  inputs_BxT = np.where(to_mask_BxT, mask_id, np.where(to_random_BxT, random_ids_BxT, tokens_BxT))
  return {
      "inputs": inputs_BxT.astype(np.int32),
      "targets": tokens_BxT.astype(np.int32),
      "weights": selected_BxT.astype(np.float32),
  }


def word_starts(tokenizer: Any) -> np.ndarray | None:
  """bool [vocab_size]: ids that begin a word, for whole-word masking; None if unknown.

  For SentencePiece: pieces starting with "▁" (a space), the newline piece, and pieces made of
  punctuation only (as ALBERT does), so "Hello," splits into the words "Hello" and "," (and
  "don't" into "don" and "'t"). Pieces after them (including byte-fallback pieces and split
  digits) continue the word. Since models are trained without a dummy space prefix, the first
  word of a text or line has no "▁" and joins the preceding newline or starts a word at the
  row start.

  Char and byte tokenizers give None: whether a character starts a word depends on its
  neighbours, which a per-id table cannot express.
  """
  if not isinstance(tokenizer, SentencePieceTokenizer):
    return None
  starts_V = np.zeros(tokenizer.vocab_size, dtype=bool)
  for token_id in np.flatnonzero(~tokenizer.special_mask()).tolist():
    piece = tokenizer.id_to_piece(token_id)
    starts_V[token_id] = (piece.startswith(SPACE_MARKER) or piece == _NEWLINE or
                          (bool(piece) and all(_is_punctuation(c) for c in piece)))
  return starts_V


def token_texts(tokenizer: Any) -> list[str]:
  """The text of every id: its character (char tokenizers) or its piece with "▁" as a space
  (SentencePiece); '' for special ids and byte pieces (a byte is not a character)."""
  special_V = tokenizer.special_mask()
  if isinstance(tokenizer, SentencePieceTokenizer):
    piece = lambda i: tokenizer.id_to_piece(i)
    text_of = lambda i: "" if _is_byte_piece(piece(i)) else piece(i).replace(SPACE_MARKER, " ")
  else:
    text_of = lambda i: tokenizer.decode([i])
  return ["" if special_V[i] else text_of(i) for i in range(tokenizer.vocab_size)]


def segment_starts(tokens_BxT: np.ndarray, texts_V: list[str]) -> np.ndarray:
  """bool [B, T]: the tokens that begin a word of the row's text as jieba segments it (Chinese
  BERT-wwm's whole words; lm/data/segmenter.py), or that begin with a space. A token spanning
  the start of a word begins it; tokens without text (special ids, bytes) never do."""
  from lm.data import segmenter  # pylint: disable=g-import-not-at-top  # Loads jieba lazily.
  starts_BxT = np.zeros(np.shape(tokens_BxT), dtype=bool)
  for b, row in enumerate(np.asarray(tokens_BxT).tolist()):
    texts = [texts_V[i] for i in row]
    lengths = np.array([len(t) for t in texts])
    begins_T = np.cumsum(lengths) - lengths
    text = "".join(texts)
    word_start_C = np.zeros(len(text) + 1, dtype=np.int64)  # 1 where a word begins.
    position = 0
    for piece in segmenter.pieces(text):
      if piece.strip():
        word_start_C[position + len(piece) - len(piece.lstrip())] = 1
      position += len(piece)
    before_C = np.concatenate([[0], np.cumsum(word_start_C)])  # Word starts before each offset.
    spans_start_T = before_C[begins_T + lengths] > before_C[begins_T]
    spaced_T = np.array([bool(t) and t[0].isspace() for t in texts])
    starts_BxT[b] = (lengths > 0) & (spans_start_T | spaced_T)
  return starts_BxT


def require_word_starts(tokenizer: Any) -> np.ndarray:
  """`word_starts(tokenizer)`, or a UserError when whole-word masking is impossible."""
  starts_V = word_starts(tokenizer)
  if starts_V is None:
    raise UserError(
        "config.mlm.whole_word needs a sentencepiece tokenizer (config.data.tokenizer); the"
        f" {getattr(tokenizer, 'name', type(tokenizer).__name__)} tokenizer has no word"
        " boundaries: set config.mlm.whole_word=False")
  return starts_V


def _take_greedily(sizes_BxU: np.ndarray, budget_B: np.ndarray) -> np.ndarray:
  """bool [B, U]: units taken in order while they fit in the budget; the first if none fits."""
  B, U = sizes_BxU.shape
  taken_BxU = np.zeros((B, U), dtype=bool)
  total_B = np.zeros(B, dtype=np.int64)
  for u in range(U):
    size_B = sizes_BxU[:, u]
    open_B = (total_B < budget_B) & (size_B > 0)
    if not open_B.any():  # Empty units come last, so no later unit can be taken either.
      break
    fits_B = open_B & (total_B + size_B <= budget_B)
    taken_BxU[:, u] = fits_B
    total_B += np.where(fits_B, size_B, 0)
  none_fit_B = (total_B == 0) & (budget_B > 0)
  taken_BxU[none_fit_B, 0] = True  # Unit 0 in order is a real word when the budget is > 0.
  return taken_BxU


def _is_byte_piece(piece: str) -> bool:
  return len(piece) == 6 and piece.startswith("<0x") and piece.endswith(">")


def _is_punctuation(char: str) -> bool:
  """Unicode punctuation or symbol; this covers all of ASCII's punctuation."""
  return unicodedata.category(char)[0] in "PS"


def _check_options(mask_rate: float, mask_token_fraction: float, random_token_fraction: float,
                   mask_id: int | None) -> None:
  if not 0.0 < mask_rate <= 1.0:
    raise UserError(f"config.mlm.mask_rate must be in (0, 1]; got {mask_rate!r}")
  fractions = dict(mask_token_fraction=mask_token_fraction,
                   random_token_fraction=random_token_fraction)
  for key, value in fractions.items():
    if not 0.0 <= value <= 1.0:
      raise UserError(f"config.mlm.{key} must be in [0, 1]; got {value!r}")
  if mask_token_fraction + random_token_fraction > 1.0 + 1e-9:
    raise UserError(
        f"config.mlm.mask_token_fraction + config.mlm.random_token_fraction must be <= 1; got"
        f" {mask_token_fraction!r} + {random_token_fraction!r}")
  if mask_id is None and mask_token_fraction > 0:
    raise UserError(
        f"config.mlm.mask_token_fraction={mask_token_fraction!r} needs a [MASK] token and the"
        " tokenizer has none (e.g. GPT-2's): set config.mlm.mask_token_fraction=0 or use a"
        " tokenizer with a mask token")
