"""SentencePiece (BPE or unigram) trained in-process, set up so that decode(encode(x)) == x.

Exact round trips come from: the `identity` normalization (no NFKC), keeping repeated and
leading spaces (`remove_extra_whitespaces=False`), no dummy space prefix, byte fallback for
characters outside the vocabulary, the space marker "▁" always in the vocabulary, and a
user-defined piece for "\\n" (SentencePiece models one line at a time, so newlines are split
off and encoded as that piece). The character U+2581 "▁" itself, which SentencePiece reads as
a space, is spelled with its three byte pieces (these decode as "▁"); without byte fallback
it decodes as a space, and characters outside the vocabulary as nothing (UNK).
"""

import io
import os
import re
from typing import Iterable, Iterator

import numpy as np
import sentencepiece as spm
from sentencepiece import sentencepiece_model_pb2

from lm.data import tokenizer_base
from lm.data.tokenizer_base import NUM_SPECIAL, SPECIAL_TOKENS
from lm.errors import UserError

MODEL_FILE = "sentencepiece.model"
MODEL_TYPES = ("bpe", "unigram")
NEWLINE = "\n"
NEWLINE_ID = NUM_SPECIAL  # The first id after the special tokens.
SPACE_MARKER = "\u2581"  # "▁": how SentencePiece writes a space inside pieces.
_NUM_BYTE_PIECES = 256


class SentencePieceTokenizer(tokenizer_base.Tokenizer):
  """A SentencePiece model with the fixed special ids 0..6 and "\\n" at id 7."""

  name = "sentencepiece"

  def __init__(self, model_proto: bytes, *, where: str = MODEL_FILE):
    self._model_proto = bytes(model_proto)
    try:
      # One thread: a batch call would otherwise start a thread pool per call (twice the CPU
      # per document, and workers in parallel oversubscribe the cores).
      self._processor = spm.SentencePieceProcessor(model_proto=self._model_proto, num_threads=1)
    except Exception as e:  # pylint: disable=broad-except  # RuntimeError or protobuf errors.
      raise UserError(f"{where}: corrupt SentencePiece model ({e})") from None
    p = self._processor
    if not p.get_piece_size():  # An empty proto loads as a model without pieces.
      raise UserError(f"{where}: corrupt SentencePiece model (no pieces)")
    # Pieces that stand for no text (in models trained here exactly the ids 0..6).
    self._special_V = np.array(
        [p.is_control(i) or p.is_unknown(i) or p.is_unused(i) for i in range(p.get_piece_size())],
        dtype=bool)
    self._check_layout()
    # The byte pieces of "▁" (empty without byte fallback).
    marker_ids = [p.piece_to_id(f"<0x{b:02X}>") for b in SPACE_MARKER.encode("utf-8")]
    self._marker_ids = marker_ids if all(map(p.is_byte, marker_ids)) else []

  def _check_layout(self) -> None:
    pieces = [self._processor.id_to_piece(i) for i in range(NUM_SPECIAL + 1)]
    if pieces != [*SPECIAL_TOKENS, NEWLINE]:
      raise UserError(f"SentencePiece model has pieces {pieces} at ids 0..{NUM_SPECIAL}; expected"
                      f" {[*SPECIAL_TOKENS, NEWLINE]} (train it with SentencePieceTokenizer.train)")

  @classmethod
  def train(
      cls,
      texts: Iterable[str],
      *,
      vocab_size: int,
      model_type: str = "bpe",
      character_coverage: float = 1.0,
      byte_fallback: bool = True,
      seed: int = 0,
      max_sentence_length: int = 16384,
      input_sentence_size: int = 200_000,
      num_threads: int = 1,
      config_section: str = "config.data",
  ) -> "SentencePieceTokenizer":
    """Trains on the lines of `texts`.

    Deterministic for the same texts, options and `num_threads` (unigram's float sums depend
    on the thread count, hence the default of 1). At most `input_sentence_size` lines, drawn
    with `seed`, are used, so a large corpus trains in seconds; lines longer than
    `max_sentence_length` bytes are cut into pieces rather than silently skipped. Errors name
    the options as keys of `config_section` (config.data in training, config.tokenizer in
    `python -m lm.data.prepare`).
    """
    if model_type not in MODEL_TYPES:
      raise UserError(
          f"{config_section}.model_type must be one of {', '.join(MODEL_TYPES)}; got {model_type!r}")
    minimum = NUM_SPECIAL + 2 + (_NUM_BYTE_PIECES if byte_fallback else 0)
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size < minimum:
      raise UserError(
          f"{config_section}.vocab_size must be an integer >= {minimum} for SentencePiece"
          f" ({NUM_SPECIAL} special ids, the newline and space pieces"
          f"{' and 256 byte-fallback pieces' if byte_fallback else ''}); got {vocab_size!r}")
    # SentencePiece itself rejects coverage below 0.98.
    if not 0.98 <= character_coverage <= 1.0:
      raise UserError(
          f"{config_section}.character_coverage must be in [0.98, 1]; got {character_coverage!r}")
    sentences = _training_sentences(texts, max_sentence_length, input_sentence_size, seed)
    if not sentences:
      raise UserError("no training text for the SentencePiece tokenizer (config.data.source)")
    spm.set_random_generator_seed(seed)
    model = io.BytesIO()
    try:
      spm.SentencePieceTrainer.train(
          sentence_iterator=iter(sentences),
          model_writer=model,
          model_type=model_type,
          vocab_size=vocab_size,
          character_coverage=character_coverage,
          byte_fallback=byte_fallback,
          pad_id=0,
          bos_id=1,
          eos_id=2,
          unk_id=3,
          pad_piece=SPECIAL_TOKENS[0],
          bos_piece=SPECIAL_TOKENS[1],
          eos_piece=SPECIAL_TOKENS[2],
          unk_piece=SPECIAL_TOKENS[3],
          # Control symbols get the next free ids in order (4, 5, 6); user-defined symbols
          # follow (7). Control pieces never match input text, user-defined ones always do.
          control_symbols=list(SPECIAL_TOKENS[4:]),
          user_defined_symbols=[NEWLINE],
          normalization_rule_name="identity",
          remove_extra_whitespaces=False,
          add_dummy_prefix=False,
          split_digits=True,
          # The space marker must be a piece even if spaces are rare (e.g. Chinese text):
          # byte fallback would spell a space as the bytes of "▁" and decode it as "▁".
          required_chars=SPACE_MARKER,
          max_sentence_length=max_sentence_length,
          shuffle_input_sentence=False,  # Sampling is done above, with `seed`.
          num_threads=num_threads,
          minloglevel=2,
      )
    except RuntimeError as e:
      raise _training_error(str(e), vocab_size, config_section) from None
    return cls(model.getvalue())

  @property
  def vocab_size(self) -> int:
    return self._processor.get_piece_size()

  @property
  def model_proto(self) -> bytes:
    return self._model_proto

  def id_to_piece(self, token_id: int) -> str:
    return self._processor.id_to_piece(token_id)

  def encode(self, text: str) -> list[int]:
    ids = []
    # Lines are encoded separately (several times faster than one long string, same ids since
    # "\n" is always a piece of its own), each as a string (SentencePiece's list call costs
    # ~100 us more per document).
    for i, line in enumerate(text.split(NEWLINE)):
      if i:
        ids.append(NEWLINE_ID)
      if self._marker_ids and SPACE_MARKER in line:
        ids.extend(self._encode_literal_markers(line))
      else:
        ids.extend(self._processor.encode(line))
    return ids

  def _encode_literal_markers(self, line: str) -> list[int]:
    """`line` with each literal "▁" spelled as its byte pieces (so it decodes as "▁")."""
    ids = []
    for i, part_ids in enumerate(self._processor.encode(line.split(SPACE_MARKER))):
      if i:
        ids.extend(self._marker_ids)
      ids.extend(part_ids)
    return ids

  def special_mask(self) -> np.ndarray:
    return tokenizer_base.pad_special_mask(self._special_V, self.vocab_size)

  def decode(self, ids: Iterable[int]) -> str:
    return self._processor.decode(tokenizer_base.text_ids(ids, self._special_V))

  def token_bytes(self) -> np.ndarray:
    counts = np.zeros(self.vocab_size, dtype=np.int32)
    p = self._processor
    for i in np.flatnonzero(~self._special_V).tolist():
      if p.is_byte(i):
        counts[i] = 1
      else:  # Normal and user-defined pieces; "▁" stands for one space.
        counts[i] = len(p.id_to_piece(i).replace(SPACE_MARKER, " ").encode("utf-8"))
    return counts

  def _payload(self) -> dict[str, bytes]:
    return {MODEL_FILE: self._model_proto}

  def _metadata(self) -> dict:
    spec = sentencepiece_model_pb2.ModelProto.FromString(self._model_proto).trainer_spec
    return {
        "model_type": sentencepiece_model_pb2.TrainerSpec.ModelType.Name(spec.model_type).lower(),
        "byte_fallback": spec.byte_fallback,
        "character_coverage": spec.character_coverage,
    }

  @classmethod
  def load(cls, directory: str) -> "SentencePieceTokenizer":
    return cls(tokenizer_base.read_payload(directory, MODEL_FILE),
               where=os.path.join(directory, MODEL_FILE))


def _training_sentences(texts: Iterable[str], max_sentence_length: int, input_sentence_size: int,
                        seed: int) -> list[str]:
  sentences = list(_lines(texts, max_sentence_length))
  if len(sentences) > input_sentence_size:
    rng = np.random.default_rng(seed)
    keep = np.sort(rng.choice(len(sentences), size=input_sentence_size, replace=False))
    sentences = [sentences[i] for i in keep]
  return sentences


def _lines(texts: Iterable[str], max_bytes: int) -> Iterator[str]:
  # A UTF-8 character has at most 4 bytes, so chunks of max_bytes // 4 characters always fit.
  max_chars = max(1, max_bytes // 4)
  for text in texts:
    for line in text.split(NEWLINE):
      if not line.strip():
        continue
      if len(line.encode("utf-8", errors="surrogatepass")) <= max_bytes:
        yield line
      else:
        for start in range(0, len(line), max_chars):
          yield line[start:start + max_chars]


def _training_error(message: str, vocab_size: int, section: str) -> UserError:
  """Turns SentencePiece's internal check failures into actionable messages."""
  if match := re.search(r"smaller than required_chars\. \d+ vs (\d+)", message):
    return UserError(
        f"{section}.vocab_size={vocab_size} is too small: this training text needs at least"
        f" {match.group(1)} pieces (special ids, byte fallback and every character kept by"
        f" {section}.character_coverage); raise vocab_size or lower character_coverage")
  if match := re.search(r"Vocabulary size too high \(\d+\)\. .* <= (\d+)", message):
    return UserError(
        f"{section}.vocab_size={vocab_size} is too large for this training text: SentencePiece"
        f" can build at most {match.group(1)} pieces; lower vocab_size or train on more text")
  last_line = message.strip().splitlines()[-1] if message.strip() else "unknown error"
  return UserError(f"SentencePiece training failed ({section} tokenizer options): {last_line}")
