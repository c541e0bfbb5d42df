"""Hugging Face tokenizers behind the project's `Tokenizer` interface, for `lm.convert --from_hf`.

`import_tokenizer(DIR)` reads a Hugging Face model directory: `tokenizer.json` (any model of the
`tokenizers` library), else Marian's `source.spm` + `target.spm` + `vocab.json`
(`marian_tokenizer.py`), else `tokenizer.model` or `spiece.model` (SentencePiece, e.g. Llama,
T5), else `vocab.txt` (BERT WordPiece), else `vocab.json` + `merges.txt` (GPT-2 byte-level
BPE). Imported tokenizers keep
their own ids, special ones included (`Tokenizer.special_ids`): BERT's [CLS] is 101, GPT-2's
<|endoftext|> is 50256. Texts are encoded without the post-processor's special tokens; the
tasks add [CLS]/[SEP]/EOS themselves.

Special roles come from `tokenizer_config.json` and `special_tokens_map.json` (the latter wins,
as in transformers), else from the SentencePiece model, else from the conventional token names
(`_CONVENTIONAL`, transformers' class defaults). A role still missing gets a stand-in
(`_STAND_INS`): BERT's bos/eos are [CLS]/[SEP], GPT-2's pad/cls/sep are <|endoftext|>, Llama's
pad is </s>; only mask may stay None.
"""

import dataclasses
import json
import os
import re
from typing import Any, Callable, Iterable

import numpy as np
import sentencepiece as spm
import tokenizers
from tokenizers import implementations, pre_tokenizers

from lm.data import marian_tokenizer, tokenizer_base
from lm.data.sentencepiece_tokenizer import MODEL_FILE, SPACE_MARKER, SentencePieceTokenizer
from lm.data.tokenizer_base import ImportedIds, SpecialIds, Tokenizer
from lm.errors import UserError

HF_FILE = "hf_tokenizer.json"  # The base class's metadata file is `tokenizer.json`.
SETTINGS_FILE = "hf_settings.json"  # Padded vocab_size and the resolved special ids.
CONFIG_FILES = ("tokenizer_config.json", "special_tokens_map.json")  # Later files win.
SOURCE_FILES = ("tokenizer.json", "source.spm + target.spm + vocab.json", "tokenizer.model",
                "spiece.model", "vocab.txt", "vocab.json + merges.txt")

ROLES = tuple(field.name for field in dataclasses.fields(SpecialIds))
# Token names tried for a role that the config does not mention.
_CONVENTIONAL = {
    "pad": ("<pad>", "[PAD]"),
    "bos": ("<s>", "<|endoftext|>"),
    "eos": ("</s>", "<|endoftext|>"),
    "unk": ("<unk>", "[UNK]", "<|endoftext|>"),
    "mask": ("<mask>", "[MASK]"),
    "cls": ("[CLS]",),
    "sep": ("[SEP]",),
}
# The first role of the chain that the tokenizer has; else eos (or bos); mask stays None.
_STAND_INS = {
    "pad": ("pad",),
    "bos": ("bos", "cls"),
    "eos": ("eos", "sep"),
    "unk": ("unk",),
    "mask": ("mask",),
    "cls": ("cls", "bos"),
    "sep": ("sep", "eos"),
}
_BYTE_PIECE = re.compile(r"<0x[0-9A-Fa-f]{2}>")  # SentencePiece-style byte fallback.


class HFTokenizer(ImportedIds, Tokenizer):
  """A `tokenizers.Tokenizer` (from its tokenizer.json text) with resolved special ids.

  `vocab_size` may pad the vocabulary to a model's embedding rows; ids past the tokenizer's own
  are never produced, decode to nothing and count as special.
  """

  name = "hf"

  def __init__(self,
               tokenizer_json: str,
               special_ids: SpecialIds,
               *,
               vocab_size: int | None = None,
               source: str = "tokenizer.json"):
    try:
      self._tokenizer = tokenizers.Tokenizer.from_str(tokenizer_json)
    except Exception as e:  # pylint: disable=broad-except  # tokenizers raises plain Exception.
      raise UserError(f"{source}: corrupt Hugging Face tokenizer ({e})") from None
    # Saved tokenizer.json files often truncate to the model's context (MiniLM: 128 tokens).
    self._tokenizer.no_truncation()
    self._tokenizer.no_padding()
    self._special_ids = special_ids
    vocab = self._tokenizer.get_vocab(with_added_tokens=True)
    own_size = max(self._tokenizer.get_vocab_size(with_added_tokens=True), max(vocab.values()) + 1)
    self._vocab_size = max(own_size, vocab_size or 0)
    self._special_V = np.zeros(own_size, dtype=bool)
    self._special_V[[i for i in special_ids.all if i < own_size]] = True
    for token_id, token in self._tokenizer.get_added_tokens_decoder().items():
      self._special_V[token_id] |= token.special

  def special_mask(self) -> np.ndarray:
    return tokenizer_base.pad_special_mask(self._special_V, self.vocab_size)

  def encode(self, text: str) -> list[int]:
    return self._tokenizer.encode(text, add_special_tokens=False).ids

  def id_to_piece(self, token_id: int) -> str | None:
    """The token string of `token_id` (as SentencePieceTokenizer.id_to_piece)."""
    return self._tokenizer.id_to_token(token_id)

  def decode(self, ids: Iterable[int]) -> str:
    return self._tokenizer.decode(tokenizer_base.text_ids(ids, self._special_V),
                                  skip_special_tokens=True)

  def token_bytes(self) -> np.ndarray:
    """UTF-8 bytes per id: exact for byte-level BPE (GPT-2) and byte-fallback pieces; WordPiece
    continuations "##x" count x, "▁" counts one space. Normalizers (lowercasing, accents) and
    dropped or prepended spaces make other counts approximate."""
    spec = json.loads(self._tokenizer.to_str())
    model = spec.get("model") or {}
    byte_level = "ByteLevel" in _types(spec.get("decoder")) | _types(spec.get("pre_tokenizer"))
    alphabet = set(pre_tokenizers.ByteLevel.alphabet())
    prefix = model.get("continuing_subword_prefix") or ""
    suffix = model.get("end_of_word_suffix") or ""
    added = self._tokenizer.get_added_tokens_decoder()
    counts = np.zeros(self.vocab_size, dtype=np.int32)
    for token, i in self._tokenizer.get_vocab(with_added_tokens=True).items():
      if self._special_V[i]:
        continue
      if i in added:  # Added tokens match raw text.
        counts[i] = len(added[i].content.encode("utf-8"))
      elif model.get("byte_fallback") and _BYTE_PIECE.fullmatch(token):
        counts[i] = 1
      elif byte_level and set(token) <= alphabet:  # One character per byte.
        counts[i] = len(token)
      else:
        if prefix and token.startswith(prefix) and len(token) > len(prefix):
          token = token[len(prefix):]
        if suffix and token.endswith(suffix) and len(token) > len(suffix):
          token = token[:-len(suffix)]
        counts[i] = len(token.replace(SPACE_MARKER, " ").encode("utf-8"))
    return counts

  def _payload(self) -> dict[str, bytes]:
    return {HF_FILE: self._tokenizer.to_str().encode("utf-8"), SETTINGS_FILE: _settings(self)}

  def _metadata(self) -> dict[str, Any]:
    return {"model_type": type(self._tokenizer.model).__name__}

  @classmethod
  def load(cls, directory: str) -> "HFTokenizer":
    special_ids, vocab_size = _read_settings(directory)
    text = tokenizer_base.read_payload(directory, HF_FILE).decode("utf-8", errors="replace")
    return cls(text, special_ids, vocab_size=vocab_size, source=os.path.join(directory, HF_FILE))


class ImportedSentencePieceTokenizer(ImportedIds, SentencePieceTokenizer):
  """A foreign SentencePiece model (e.g. Llama's tokenizer.model), ids as they are.

  Unlike the project's own models it encodes lines together and keeps its own normalization
  (e.g. Llama's dummy space prefix, counted as a byte in `token_bytes`). `vocab_size` pads the
  vocabulary as in `HFTokenizer`.
  """

  name = "hf_sentencepiece"

  def __init__(self, model_proto: bytes, special_ids: SpecialIds, *, vocab_size: int | None = None):
    super().__init__(model_proto)
    self._special_ids = special_ids
    self._vocab_size = max(len(self._special_V), vocab_size or 0)
    self._special_V[[i for i in special_ids.all if i < len(self._special_V)]] = True

  def _check_layout(self) -> None:
    pass  # Any layout: the special ids come from the model and the config.

  def encode(self, text: str) -> list[int]:
    return self._processor.encode(text)

  def _payload(self) -> dict[str, bytes]:
    return {**super()._payload(), SETTINGS_FILE: _settings(self)}

  @classmethod
  def load(cls, directory: str) -> "ImportedSentencePieceTokenizer":
    special_ids, vocab_size = _read_settings(directory)
    return cls(tokenizer_base.read_payload(directory, MODEL_FILE),
               special_ids,
               vocab_size=vocab_size)


def import_tokenizer(src_dir: str | os.PathLike, vocab_size: int | None = None) -> Tokenizer:
  """The tokenizer of a Hugging Face model directory (see the module doc for the files read).

  Args:
    src_dir: the directory (local; nothing is downloaded).
    vocab_size: the model's embedding rows, if more than the tokenizer's ids.
  """
  src_dir = os.fspath(src_dir)
  path = lambda name: os.path.join(src_dir, name)
  config = _read_config(src_dir)
  if os.path.isfile(path("tokenizer.json")):
    tokenizer = _load_json(path("tokenizer.json"))
  elif marian_tokenizer.is_marian(src_dir):
    return marian_tokenizer.import_marian(src_dir, config, vocab_size, resolve_special_ids)
  elif os.path.isfile(path("tokenizer.model")):
    return _import_sentencepiece(path("tokenizer.model"), config, vocab_size)
  elif os.path.isfile(path("spiece.model")):
    return _import_sentencepiece(path("spiece.model"), config, vocab_size)
  elif os.path.isfile(path("vocab.txt")):
    tokenizer = _build(path("vocab.txt"), lambda: implementations.BertWordPieceTokenizer(
        path("vocab.txt"),
        lowercase=bool(config.get("do_lower_case", True)),
        strip_accents=config.get("strip_accents"),
        handle_chinese_chars=bool(config.get("tokenize_chinese_chars", True)),
        **{f"{role}_token": _token(config, role, "") or f"[{role.upper()}]"
           for role in ("unk", "sep", "cls", "pad", "mask")}))
  elif os.path.isfile(path("vocab.json")) and os.path.isfile(path("merges.txt")):
    tokenizer = _build(path("vocab.json"), lambda: implementations.ByteLevelBPETokenizer(
        path("vocab.json"), path("merges.txt"),
        add_prefix_space=bool(config.get("add_prefix_space", False))))
  else:
    raise UserError(f"{src_dir}: no Hugging Face tokenizer here (looked for"
                    f" {', '.join(SOURCE_FILES)})")
  special_ids = resolve_special_ids(config, tokenizer.token_to_id, {}, src_dir)
  # As in transformers, the role tokens are never split, e.g. "<|endoftext|>" in GPT-2 text.
  tokenizer.add_special_tokens([tokenizer.id_to_token(i) for i in special_ids.all])
  return HFTokenizer(tokenizer.to_str(), special_ids, vocab_size=vocab_size)


def resolve_special_ids(config: dict[str, Any], token_to_id: Callable[[str], int | None],
                        known: dict[str, int | None], where: str) -> SpecialIds:
  """Role ids: the config's `<role>_token`, else `known`, else conventional names, else stand-ins.

  Raises UserError (naming `where`) if the tokenizer has no eos, sep, bos or cls token.
  """
  found = {}
  for role in ROLES:
    if f"{role}_token" in config:  # A null value says the tokenizer has no such token.
      token = _token(config, role, None)
      found[role] = None if token is None else token_to_id(token)
    elif known.get(role) is not None:
      found[role] = known[role]
    else:
      found[role] = next(
          (i for i in map(token_to_id, _CONVENTIONAL[role]) if i is not None), None)
  ids = {
      role: next((found[r] for r in _STAND_INS[role] if found[r] is not None), None)
      for role in ROLES
  }
  eos = ids["eos"] if ids["eos"] is not None else ids["bos"]
  if eos is None:
    raise UserError(f"{where}: the tokenizer has no end-of-sequence token; name one as eos_token"
                    f" in {CONFIG_FILES[0]}")
  return SpecialIds(**{r: eos if i is None and r != "mask" else i for r, i in ids.items()})


def _import_sentencepiece(path: str, config: dict[str, Any],
                          vocab_size: int | None) -> ImportedSentencePieceTokenizer:
  try:
    with open(path, "rb") as f:
      proto = f.read()
    processor = spm.SentencePieceProcessor(model_proto=proto)
  except Exception as e:  # pylint: disable=broad-except  # RuntimeError or protobuf errors.
    raise UserError(f"{path}: corrupt SentencePiece model ({e})") from None

  def piece_to_id(piece: str) -> int | None:
    i = processor.piece_to_id(piece)  # Unknown pieces map to unk_id.
    return i if processor.id_to_piece(i) == piece else None

  getters = dict(unk=processor.unk_id, bos=processor.bos_id, eos=processor.eos_id,
                 pad=processor.pad_id)
  known = {role: i for role, get in getters.items() if (i := get()) >= 0}  # -1: disabled.
  special_ids = resolve_special_ids(config, piece_to_id, known, path)
  return ImportedSentencePieceTokenizer(proto, special_ids, vocab_size=vocab_size)


def _load_json(path: str) -> tokenizers.Tokenizer:
  try:
    with open(path, encoding="utf-8") as f:
      text = f.read()
    return tokenizers.Tokenizer.from_str(text)
  except Exception as e:  # pylint: disable=broad-except  # tokenizers raises plain Exception.
    raise UserError(f"{path}: corrupt Hugging Face tokenizer ({e})") from None


def _build(path: str, make: Callable[[], Any]) -> tokenizers.Tokenizer:
  """The `tokenizers.Tokenizer` of an implementation built by `make` from the file at `path`."""
  try:
    return make()._tokenizer  # pylint: disable=protected-access  # The wrapped Tokenizer.
  except Exception as e:  # pylint: disable=broad-except  # tokenizers raises plain Exception.
    raise UserError(f"{path}: unreadable vocabulary ({e})") from None


def _read_config(src_dir: str) -> dict[str, Any]:
  config = {}
  for name in CONFIG_FILES:
    path = os.path.join(src_dir, name)
    if not os.path.isfile(path):
      continue
    try:
      with open(path, encoding="utf-8") as f:
        values = json.load(f)
    except (ValueError, RecursionError) as e:  # ValueError: JSON and Unicode errors.
      raise UserError(f"{path}: corrupt JSON ({e})") from None
    if not isinstance(values, dict):
      raise UserError(f"{path}: expected a JSON object")
    config.update(values)
  return config


def _token(config: dict[str, Any], role: str, default: str | None) -> str | None:
  """The config's token for `role` (a string, or a dict with "content")."""
  token = config.get(f"{role}_token", default)
  return token.get("content") if isinstance(token, dict) else token


def _settings(tokenizer: Tokenizer) -> bytes:
  settings = {"vocab_size": tokenizer.vocab_size,
              "special_ids": dataclasses.asdict(tokenizer.special_ids)}
  return json.dumps(settings, sort_keys=True).encode("utf-8")


def _read_settings(directory: str) -> tuple[SpecialIds, int]:
  path = os.path.join(directory, SETTINGS_FILE)
  try:
    settings = json.loads(tokenizer_base.read_payload(directory, SETTINGS_FILE))
    return SpecialIds(**settings["special_ids"]), int(settings["vocab_size"])
  except (KeyError, TypeError, ValueError, RecursionError) as e:
    raise UserError(f"{path}: corrupt tokenizer settings ({e!r})") from None


def _types(node: Any) -> set[str]:
  """Every component "type" in a tokenizer.json part, nested Sequence components included."""
  if isinstance(node, dict):
    return {node.get("type")}.union(*map(_types, node.values()))
  if isinstance(node, list):
    return set().union(*map(_types, node))
  return set()
