"""Character, byte, word and SentencePiece tokenizers behind one interface, plus build/load.

A trained tokenizer is saved in the run's workdir (e.g. `WORKDIR/tokenizer/`): `tokenizer.json`
says which kind it is; `chars.json` or `sentencepiece.model` holds the vocabulary. Tokenizers
imported from Hugging Face (`hf_tokenizer.py`, kinds "hf" and "hf_sentencepiece";
`marian_tokenizer.py`, "hf_marian") load the same way but cannot be trained. A chat template
saved beside a tokenizer (`chat_template.py`) is loaded with it.
"""

import json
import os
from typing import Any, Iterable, Sequence

import numpy as np

from lm.data import chat_template, tokenizer_base
from lm.data.hf_tokenizer import HFTokenizer, ImportedSentencePieceTokenizer
from lm.data.marian_tokenizer import MarianTokenizer
from lm.data.sentencepiece_tokenizer import SentencePieceTokenizer
from lm.data.word_tokenizer import WordTokenizer
from lm.data.tokenizer_base import (  # pylint: disable=unused-import  # Re-exported.
    BOS_ID, CLS_ID, EOS_ID, MASK_ID, NUM_SPECIAL, PAD_ID, SEP_ID, SPECIAL_TOKENS, UNK_ID, Tokenizer,
)
from lm.errors import UserError

KINDS = ("char", "byte", "word", "sentencepiece")  # Trainable.
IMPORTED_KINDS = ("hf", "hf_sentencepiece", "hf_marian")  # Made by `python -m lm.convert --from_hf`.
CHARS_FILE = "chars.json"
_NUM_BYTES = 256


class CharTokenizer(Tokenizer):
  """One id per Unicode code point seen in training (ids from NUM_SPECIAL).

  Other code points are UNK, or, with `byte_fallback`, spelled as their UTF-8 bytes with 256
  byte ids placed after the characters (so the character ids are those of the same vocabulary
  without byte fallback). With byte fallback every string round-trips exactly.
  """

  name = "char"

  def __init__(self, chars: Sequence[str], *, byte_fallback: bool = False):
    chars = list(chars)
    if any(not isinstance(c, str) or len(c) != 1 for c in chars) or len(set(chars)) != len(chars):
      raise ValueError("CharTokenizer needs distinct single characters")
    if not isinstance(byte_fallback, bool):
      raise ValueError(f"byte_fallback must be True or False, got {byte_fallback!r}")
    self._chars = chars
    self._byte_fallback = byte_fallback
    self._first_byte_id = NUM_SPECIAL + len(chars)
    # Sorted code points with their ids, for vectorized lookup in encode_array.
    codes = np.array([ord(c) for c in chars], dtype=np.int64)
    order = np.argsort(codes)
    self._sorted_codes = codes[order]
    self._sorted_ids = (order + NUM_SPECIAL).astype(np.int32)

  @classmethod
  def train(cls, texts: Iterable[str], *, byte_fallback: bool = False) -> "CharTokenizer":
    """Vocabulary = the sorted set of code points in `texts`."""
    chars = set()
    for text in texts:
      chars.update(text)
    if not chars:
      raise UserError("no training text for the char tokenizer (config.data.source)")
    return cls(sorted(chars), byte_fallback=byte_fallback)

  @property
  def vocab_size(self) -> int:
    return self._first_byte_id + (_NUM_BYTES if self._byte_fallback else 0)

  @property
  def chars(self) -> list[str]:
    return list(self._chars)

  @property
  def byte_fallback(self) -> bool:
    return self._byte_fallback

  @property
  def format_version(self) -> int:
    return 2 if self._byte_fallback else tokenizer_base.FORMAT_VERSION

  def encode(self, text: str) -> list[int]:
    return self.encode_array(text).tolist()

  def encode_array(self, text: str) -> np.ndarray:
    codes = np.frombuffer(text.encode("utf-32-le", errors="surrogatepass"), dtype=np.uint32)
    if not len(self._sorted_codes):
      return np.full(len(codes), UNK_ID, dtype=np.int32)
    index = np.searchsorted(self._sorted_codes, codes)
    index = np.minimum(index, len(self._sorted_codes) - 1)
    found = self._sorted_codes[index] == codes
    ids = np.where(found, self._sorted_ids[index], UNK_ID).astype(np.int32)
    if not self._byte_fallback or found.all():
      return ids
    # Unseen code points are rare in text like the training text: a loop over them is cheap.
    parts, start = [], 0
    for position in np.flatnonzero(~found).tolist():
      parts.append(ids[start:position])
      data = chr(codes[position]).encode("utf-8", errors="surrogatepass")
      parts.append(np.frombuffer(data, dtype=np.uint8).astype(np.int32) + self._first_byte_id)
      start = position + 1
    parts.append(ids[start:])
    return np.concatenate(parts)

  def decode(self, ids: Iterable[int]) -> str:
    pieces, pending = [], bytearray()
    for i in map(int, ids):
      if NUM_SPECIAL <= i < self._first_byte_id:
        if pending:
          pieces.append(_decode_bytes(pending))
          pending.clear()
        pieces.append(self._chars[i - NUM_SPECIAL])
      elif self._byte_fallback and self._first_byte_id <= i < self.vocab_size:
        pending.append(i - self._first_byte_id)
    if pending:
      pieces.append(_decode_bytes(pending))
    return "".join(pieces)

  def token_bytes(self) -> np.ndarray:
    counts = [len(c.encode("utf-8", errors="surrogatepass")) for c in self._chars]
    byte_counts = [1] * _NUM_BYTES if self._byte_fallback else []
    return np.array([0] * NUM_SPECIAL + counts + byte_counts, dtype=np.int32)

  def _payload(self) -> dict[str, bytes]:
    # Without byte fallback: the format-1 file (a JSON list), so its fingerprint is unchanged.
    content = {"chars": self._chars, "byte_fallback": True} if self._byte_fallback else self._chars
    return {CHARS_FILE: json.dumps(content).encode("utf-8")}

  def _metadata(self) -> dict[str, Any]:
    return {"byte_fallback": self._byte_fallback}

  @classmethod
  def load(cls, directory: str) -> "CharTokenizer":
    path = os.path.join(directory, CHARS_FILE)
    try:
      content = json.loads(tokenizer_base.read_payload(directory, CHARS_FILE))
      if isinstance(content, dict):  # Format 2.
        return cls(content["chars"], byte_fallback=content["byte_fallback"])
      return cls(content)
    except (ValueError, TypeError, KeyError, RecursionError) as e:  # ValueError: JSON, Unicode.
      raise UserError(f"{path}: corrupt character vocabulary ({e!r})") from None


def _decode_bytes(data: bytes) -> str:
  """UTF-8 `data` as text: lone surrogates come back as encoded; bytes that are no UTF-8 (a
  sampled model may emit them) become U+FFFD."""
  try:
    return bytes(data).decode("utf-8", errors="surrogatepass")
  except UnicodeDecodeError:
    return bytes(data).decode("utf-8", errors="replace")


class ByteTokenizer(Tokenizer):
  """UTF-8 bytes: id = byte + NUM_SPECIAL (vocab 263). Needs no training."""

  name = "byte"

  @property
  def vocab_size(self) -> int:
    return NUM_SPECIAL + 256

  def encode(self, text: str) -> list[int]:
    return self.encode_array(text).tolist()

  def encode_array(self, text: str) -> np.ndarray:
    data = np.frombuffer(text.encode("utf-8", errors="surrogatepass"), dtype=np.uint8)
    return data.astype(np.int32) + NUM_SPECIAL

  def decode(self, ids: Iterable[int]) -> str:
    end = NUM_SPECIAL + 256
    data = bytes(i - NUM_SPECIAL for i in map(int, ids) if NUM_SPECIAL <= i < end)
    return data.decode("utf-8", errors="replace")  # Sampled bytes need not be valid UTF-8.

  def token_bytes(self) -> np.ndarray:
    return np.array([0] * NUM_SPECIAL + [1] * 256, dtype=np.int32)

  def _payload(self) -> dict[str, bytes]:
    return {}


def build_tokenizer(kind: str,
                    train_texts: Sequence[str],
                    *,
                    config_section: str = "config.data",
                    **options: Any) -> Tokenizer:
  """Trains (or creates) a tokenizer of `kind` on `train_texts`.

  `options` go to `SentencePieceTokenizer.train` (vocab_size, model_type, character_coverage,
  byte_fallback, seed, ...); the char tokenizer takes `byte_fallback` (default False) and
  ignores the others; the word tokenizer takes vocab_size; the byte tokenizer has no options.
  Errors name the options as keys of `config_section`.
  """
  if kind == "char":
    return CharTokenizer.train(train_texts, byte_fallback=options.get("byte_fallback", False))
  if kind == "byte":
    return ByteTokenizer()
  if kind == "word":
    return WordTokenizer.train(train_texts, options["vocab_size"], options.get("segmenter", ""))
  if kind == "sentencepiece":
    if "vocab_size" not in options:
      raise UserError(f"{config_section}.vocab_size must be set for the sentencepiece tokenizer")
    return SentencePieceTokenizer.train(train_texts, config_section=config_section, **options)
  if kind in IMPORTED_KINDS:
    raise UserError(f"config.data.tokenizer={kind!r} cannot be trained: import a Hugging Face"
                    " model's tokenizer with `python -m lm.convert --from_hf=DIR` and fine-tune"
                    " from the converted run (config.init_from)")
  raise UserError(f"config.data.tokenizer must be one of {', '.join(KINDS)}; got {kind!r}")


def tokenizer_options(kind: str, section: Any, seed: int = 0) -> dict[str, Any]:
  """The options of `build_tokenizer(kind, ...)` taken from a config section holding
  vocab_size, model_type, character_coverage and byte_fallback (config.data in training,
  config.tokenizer in `python -m lm.data.prepare`); SentencePiece samples with `seed`."""
  if kind == "sentencepiece":
    return dict(vocab_size=section.vocab_size,
                model_type=section.model_type,
                character_coverage=section.character_coverage,
                byte_fallback=section.byte_fallback,
                seed=seed)
  if kind == "char":
    return dict(byte_fallback=section.byte_fallback)
  if kind == "word":
    return dict(vocab_size=section.vocab_size, segmenter=section.get("word_segmenter", ""))
  return {}


def load_tokenizer(directory: str | os.PathLike) -> Tokenizer:
  """Loads a tokenizer written by `Tokenizer.save(directory)`."""
  directory = os.fspath(directory)
  metadata = tokenizer_base.read_metadata(directory)
  kind = metadata["kind"]
  if kind == "char":
    tokenizer = CharTokenizer.load(directory)
  elif kind == "byte":
    tokenizer = ByteTokenizer()
  elif kind == "word":
    tokenizer = WordTokenizer.load(directory)
  elif kind == "sentencepiece":
    tokenizer = SentencePieceTokenizer.load(directory)
  elif kind == "hf":
    tokenizer = HFTokenizer.load(directory)
  elif kind == "hf_sentencepiece":
    tokenizer = ImportedSentencePieceTokenizer.load(directory)
  elif kind == "hf_marian":
    tokenizer = MarianTokenizer.load(directory)
  else:
    raise UserError(
        f"{os.path.join(directory, tokenizer_base.METADATA_FILE)}: unknown tokenizer kind {kind!r}")
  if metadata.get("vocab_size") != tokenizer.vocab_size:
    raise UserError(
        f"{directory}: tokenizer.json says vocab_size {metadata.get('vocab_size')} but the saved"
        f" vocabulary has {tokenizer.vocab_size}; the tokenizer directory is inconsistent")
  tokenizer.chat_template = chat_template.load(directory, tokenizer)
  return tokenizer
