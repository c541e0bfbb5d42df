"""The tokenizer interface and the special token ids of the project's own tokenizers."""

import abc
import dataclasses
import hashlib
import json
import os
from typing import Any, Iterable

import numpy as np

from lm.data import atomic
from lm.errors import UserError

# The ids of every tokenizer trained here; imported ones have their own (`Tokenizer.special_ids`).
PAD_ID = 0
BOS_ID = 1
EOS_ID = 2
UNK_ID = 3
MASK_ID = 4  # MASK, CLS and SEP are reserved for a future encoder.
CLS_ID = 5
SEP_ID = 6
NUM_SPECIAL = 7
SPECIAL_TOKENS = ("<pad>", "<s>", "</s>", "<unk>", "[MASK]", "[CLS]", "[SEP]")

METADATA_FILE = "tokenizer.json"
# tokenizer.json format versions: 1, and 2 for a char vocabulary with byte fallback (its
# chars.json is an object). Every tokenizer is written in the lowest version that describes it,
# so older code still loads all others and refuses, by version, what it would misread.
FORMAT_VERSION = 1
SUPPORTED_FORMAT_VERSIONS = (1, 2)


@dataclasses.dataclass(frozen=True)
class SpecialIds:
  """The id of each special role. A tokenizer lacking a role names a stand-in (GPT-2 uses
  <|endoftext|> for all but mask); None only where no stand-in makes sense (mask)."""
  pad: int
  bos: int
  eos: int
  unk: int
  mask: int | None
  cls: int
  sep: int

  @property
  def all(self) -> tuple[int, ...]:
    """The distinct role ids, sorted."""
    return tuple(sorted({i for i in dataclasses.astuple(self) if i is not None}))


DEFAULT_SPECIAL_IDS = SpecialIds(pad=PAD_ID, bos=BOS_ID, eos=EOS_ID, unk=UNK_ID, mask=MASK_ID,
                                 cls=CLS_ID, sep=SEP_ID)


class Tokenizer(abc.ABC):
  """Text <-> token ids, with the special ids in `special_ids` (by default 0..6 above)."""

  name: str  # "char" | "byte" | "sentencepiece" | "hf" | "hf_sentencepiece" | "hf_marian"
  # The chat template saved beside it (lm/data/chat_template.py), set by `load_tokenizer`.
  chat_template: Any = None

  @property
  @abc.abstractmethod
  def vocab_size(self) -> int:
    """Number of ids, special tokens included."""

  @property
  def special_ids(self) -> SpecialIds:
    return DEFAULT_SPECIAL_IDS

  def special_mask(self) -> np.ndarray:
    """bool [vocab_size]: ids that stand for no text (the special roles, other control tokens,
    ids the tokenizer never produces). Masked LM never selects or draws them."""
    mask_V = np.zeros(self.vocab_size, dtype=bool)
    mask_V[[i for i in self.special_ids.all if i < self.vocab_size]] = True
    return mask_V

  @abc.abstractmethod
  def encode(self, text: str) -> list[int]:
    """Token ids of `text`, without BOS/EOS."""

  @abc.abstractmethod
  def decode(self, ids: Iterable[int]) -> str:
    """The text of `ids`; special and out-of-range ids are skipped."""

  @abc.abstractmethod
  def token_bytes(self) -> np.ndarray:
    """int32 [vocab_size]: UTF-8 bytes each id stands for (0 for special tokens)."""

  @abc.abstractmethod
  def _payload(self) -> dict[str, bytes]:
    """Files (name -> content) that, with the metadata, fully define this tokenizer."""

  def _metadata(self) -> dict[str, Any]:
    """Extra, informational fields for `tokenizer.json`."""
    return {}

  @property
  def format_version(self) -> int:
    """The `tokenizer.json` format version this tokenizer is saved in."""
    return FORMAT_VERSION

  def encode_array(self, text: str) -> np.ndarray:
    """Like `encode`, as an int32 array (subclasses make this fast for long texts)."""
    return np.asarray(self.encode(text), dtype=np.int32)

  def fingerprint(self) -> str:
    """A hash that changes whenever the id mapping changes; used in cache keys."""
    digest = hashlib.sha256(self.name.encode())
    for file_name, content in sorted(self._payload().items()):
      digest.update(file_name.encode() + b"\0" + content)
    return digest.hexdigest()[:16]

  def save(self, directory: str | os.PathLike) -> None:
    """Writes `tokenizer.json` plus the vocabulary files into `directory`, atomically."""
    directory = os.fspath(directory)
    os.makedirs(directory, exist_ok=True)
    for file_name, content in self._payload().items():
      atomic.atomic_write_bytes(os.path.join(directory, file_name), content)
    metadata = {
        "format_version": self.format_version,
        "kind": self.name,
        "vocab_size": self.vocab_size,
        "special_ids": dataclasses.asdict(self.special_ids),
        "files": sorted(self._payload()),
        **self._metadata(),
    }
    # Written last: a directory with tokenizer.json always has complete vocabulary files.
    atomic.atomic_write_text(os.path.join(directory, METADATA_FILE),
                             json.dumps(metadata, indent=2, ensure_ascii=False))

  def __repr__(self) -> str:
    return f"{type(self).__name__}(vocab_size={self.vocab_size})"


class ImportedIds:
  """The padded vocabulary size and the special ids of an imported tokenizer (a mixin)."""
  _vocab_size: int
  _special_ids: SpecialIds

  @property
  def vocab_size(self) -> int:
    return self._vocab_size

  @property
  def special_ids(self) -> SpecialIds:
    return self._special_ids


def unk_rate(tokenizer: Tokenizer, texts: Iterable[str]) -> float:
  """Share of the tokens of `texts` that are the unknown token (0.0 for lossless tokenizers)."""
  unk, total = 0, 0
  for text in texts:
    ids = tokenizer.encode_array(text)
    unk += int(np.count_nonzero(ids == tokenizer.special_ids.unk))
    total += ids.size
  return unk / max(total, 1)


def pad_special_mask(own_V: np.ndarray, vocab_size: int) -> np.ndarray:
  """A tokenizer's special table `own_V` extended with True to `vocab_size` (padding rows for a
  model's embedding, never produced)."""
  mask_V = np.ones(vocab_size, dtype=bool)
  mask_V[:len(own_V)] = own_V
  return mask_V


def text_ids(ids: Iterable[int], special_V: np.ndarray) -> list[int]:
  """`ids` without the special (True in `special_V`) and out-of-range ones, for decoding."""
  if isinstance(ids, np.ndarray):  # Values past int64 wrap to negative ones: dropped below.
    ids = ids.astype(np.int64, copy=False).ravel()
  else:  # Python ints of any size: the range check first.
    ids = np.array([i for i in map(int, ids) if 0 <= i < len(special_V)], dtype=np.int64)
  ids = ids[(ids >= 0) & (ids < len(special_V))]
  return ids[~special_V[ids]].tolist()


def read_metadata(directory: str | os.PathLike) -> dict[str, Any]:
  """Reads and checks `directory/tokenizer.json`."""
  path = os.path.join(os.fspath(directory), METADATA_FILE)
  try:
    with open(path, encoding="utf-8") as f:
      metadata = json.load(f)
  except FileNotFoundError:
    raise UserError(
        f"{path}: no saved tokenizer here (expected the tokenizer.json written by training)"
    ) from None
  except (ValueError, RecursionError) as e:  # ValueError: JSON and Unicode errors.
    raise UserError(f"{path}: corrupt tokenizer metadata ({e})") from None
  if not isinstance(metadata, dict) or "kind" not in metadata:
    raise UserError(f"{path}: corrupt tokenizer metadata (no 'kind')")
  version = metadata.get("format_version")
  if isinstance(version, bool) or version not in SUPPORTED_FORMAT_VERSIONS:
    raise UserError(
        f"{path}: tokenizer format_version {version!r} is not supported (expected one of"
        f" {', '.join(map(str, SUPPORTED_FORMAT_VERSIONS))}; written by a newer lm?)")
  return metadata


def read_payload(directory: str | os.PathLike, file_name: str) -> bytes:
  """Reads one vocabulary file of a saved tokenizer."""
  path = os.path.join(os.fspath(directory), file_name)
  try:
    with open(path, "rb") as f:
      return f.read()
  except FileNotFoundError:
    raise UserError(f"{path}: missing tokenizer file (the saved tokenizer is incomplete)") from None
