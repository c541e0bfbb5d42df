"""Marian's tokenizer (OPUS-MT, `MarianTokenizer`), as `lm.convert --from_hf` imports it.

Two SentencePiece models split text into pieces, `source.spm` for the encoder's input and
`target.spm` for the decoder's output, and `vocab.json` maps pieces to the model's ids (one id
space for both sides; a piece it lacks is <unk>). A leading language code such as `>>fra<<`
(multilingual models) is one token, decoded as text, as transformers does. Encoding reads like the source side, decoding like the
target side, which is how a translation model uses them (as transformers' MarianTokenizer
decodes by default).
"""

import dataclasses
import json
import os
import re
from typing import Any, Iterable

import numpy as np
import sentencepiece as spm

from lm.data import tokenizer_base
from lm.data.sentencepiece_tokenizer import SPACE_MARKER
from lm.data.tokenizer_base import ImportedIds, SpecialIds, Tokenizer
from lm.errors import UserError

FILES = ("source.spm", "target.spm", "vocab.json")
SETTINGS_FILE = "marian_settings.json"  # Padded vocab_size and the resolved special ids.
_LANGUAGE_CODE = re.compile(r">>.+?<<")


class MarianTokenizer(ImportedIds, Tokenizer):
  """Pieces of `source.spm` (encode) and `target.spm` (decode), ids from `vocab.json`."""

  name = "hf_marian"

  def __init__(self, files: dict[str, bytes], special_ids: SpecialIds, *,
               vocab_size: int | None = None, where: str = ""):
    self._files = dict(files)
    try:
      self._source = spm.SentencePieceProcessor(model_proto=files["source.spm"])
      self._target = spm.SentencePieceProcessor(model_proto=files["target.spm"])
    except Exception as e:  # pylint: disable=broad-except  # RuntimeError or protobuf errors.
      raise UserError(f"{where}: corrupt SentencePiece model in source.spm/target.spm "
                      f"({e})") from None
    try:
      vocab = json.loads(files["vocab.json"])
      self._ids = {str(piece): int(i) for piece, i in vocab.items()}
    except (ValueError, AttributeError, TypeError) as e:
      raise UserError(f"{where}/vocab.json: not a JSON object of piece -> id ({e})") from None
    self._pieces = {i: piece for piece, i in self._ids.items()}
    own_size = max(self._ids.values()) + 1
    self._vocab_size = max(own_size, vocab_size or 0)
    self._special_ids = special_ids
    self._special_V = np.zeros(own_size, dtype=bool)
    self._special_V[[i for i in special_ids.all if i < own_size]] = True
    self._unk = special_ids.unk

  def special_mask(self) -> np.ndarray:
    return tokenizer_base.pad_special_mask(self._special_V, self.vocab_size)

  def encode(self, text: str) -> list[int]:
    code = _LANGUAGE_CODE.match(text)
    ids = []
    if code and code.group(0) in self._ids:
      ids.append(self._ids[code.group(0)])
      text = text[code.end():].lstrip()
    ids += [self._ids.get(piece, self._unk) for piece in self._source.encode(text, out_type=str)]
    return ids

  def decode(self, ids: Iterable[int]) -> str:
    pieces = [self._pieces[i] for i in tokenizer_base.text_ids(ids, self._special_V)
              if i in self._pieces]
    # As transformers: pieces the target model lacks keep their space markers, replaced here.
    return self._target.decode_pieces(pieces).replace(SPACE_MARKER, " ").strip()

  def id_to_piece(self, token_id: int) -> str | None:
    return self._pieces.get(token_id)

  def token_bytes(self) -> np.ndarray:
    counts = np.zeros(self.vocab_size, dtype=np.int32)
    for piece, i in self._ids.items():
      if not self._special_V[i]:
        counts[i] = len(piece.replace(SPACE_MARKER, " ").encode("utf-8"))
    return counts

  def _payload(self) -> dict[str, bytes]:
    settings = {"vocab_size": self.vocab_size,
                "special_ids": dataclasses.asdict(self.special_ids)}
    return {**self._files, SETTINGS_FILE: json.dumps(settings).encode()}

  def hf_files(self) -> dict[str, bytes]:
    """The files MarianTokenizer reads (tokenizer_config.json aside)."""
    return {name: self._files[name] for name in FILES}

  @classmethod
  def load(cls, directory: str) -> "MarianTokenizer":
    files = {name: tokenizer_base.read_payload(directory, name) for name in FILES}
    settings = json.loads(tokenizer_base.read_payload(directory, SETTINGS_FILE))
    return cls(files, SpecialIds(**settings["special_ids"]), vocab_size=settings["vocab_size"],
               where=directory)


def is_marian(src_dir: str) -> bool:
  return all(os.path.isfile(os.path.join(src_dir, name)) for name in FILES)


def import_marian(src_dir: str, config: dict[str, Any], vocab_size: int | None,
                  resolve_special_ids) -> MarianTokenizer:
  """The Marian tokenizer of `src_dir`; special roles from its tokenizer config (`config`),
  resolved by `resolve_special_ids(config, token_to_id, known, where)`."""
  files = {}
  for name in FILES:
    with open(os.path.join(src_dir, name), "rb") as f:
      files[name] = f.read()
  try:
    vocab = json.loads(files["vocab.json"])
  except ValueError as e:
    raise UserError(f"{src_dir}/vocab.json: not JSON ({e})") from None
  special_ids = resolve_special_ids(config, vocab.get, {}, src_dir)
  return MarianTokenizer(files, special_ids, vocab_size=vocab_size, where=src_dir)
