"""Tokenize once, cache the flat token stream on disk (.npy + .json), memory-map it on load."""

import dataclasses
import json
import os
import shutil
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from lm.data import atomic
from lm.data.tokenizer_base import Tokenizer
from lm.errors import UserError

FORMAT_VERSION = 1
_UINT16_MAX_VOCAB = 65535


@dataclasses.dataclass(frozen=True)
class TokenStream:
  """Documents tokenized and joined into one 1-D array, each followed by EOS.

  Attributes:
    tokens: uint16 (vocab_size <= 65535) or uint32 ids; memory-mapped when loaded.
    num_bytes: UTF-8 bytes of the source text (for bits-per-byte).
    num_documents: how many documents the stream holds.
  """

  tokens: np.ndarray
  num_bytes: int
  num_documents: int

  @property
  def num_tokens(self) -> int:
    return int(self.tokens.shape[0])


def token_dtype(vocab_size: int) -> np.dtype:
  """The smallest unsigned dtype used for a vocabulary of `vocab_size` ids."""
  return np.dtype(np.uint16 if vocab_size <= _UINT16_MAX_VOCAB else np.uint32)


def tokenize_documents(documents: Iterable[str], tokenizer: Tokenizer) -> TokenStream:
  """Concatenates `encode(doc) + [EOS]` for every document (the tokenizer's EOS id)."""
  dtype = token_dtype(tokenizer.vocab_size)
  eos = np.array([tokenizer.special_ids.eos], dtype=dtype)
  parts, num_bytes, num_documents = [], 0, 0
  for document in documents:
    ids = tokenizer.encode_array(document)
    if ids.size and (ids.min() < 0 or ids.max() >= tokenizer.vocab_size):
      raise ValueError(f"{tokenizer!r} produced ids outside [0, {tokenizer.vocab_size})")
    parts.append(ids.astype(dtype))
    parts.append(eos)
    num_bytes += len(document.encode("utf-8", errors="surrogatepass"))
    num_documents += 1
  tokens = np.concatenate(parts) if parts else np.zeros(0, dtype=dtype)
  return TokenStream(tokens=tokens, num_bytes=num_bytes, num_documents=num_documents)


def save_stream(path: str | os.PathLike,
                stream: TokenStream,
                *,
                extra: dict[str, Any] | None = None) -> None:
  """Writes `path.npy` and `path.json` (`path` has no extension), each atomically.

  The old metadata goes first and the new one is written last, so an interrupted save leaves
  no `.json` (a cache miss), never a `.json` describing a different `.npy`.
  """
  path = os.fspath(path)
  text = _metadata_text(stream.num_tokens, stream.tokens.dtype, stream.num_bytes,
                        stream.num_documents, extra)
  _remove_metadata(path)
  with atomic.atomic_writer(path + ".npy") as f:
    np.save(f, np.ascontiguousarray(stream.tokens), allow_pickle=False)
  atomic.atomic_write_text(path + ".json", text)


def save_stream_from_files(path: str | os.PathLike,
                           token_files: Sequence[str],
                           *,
                           dtype: np.dtype,
                           num_bytes: int,
                           num_documents: int,
                           extra: dict[str, Any] | None = None) -> None:
  """`save_stream` of the raw token arrays in `token_files` (concatenated in order), copied
  file to file, never loaded: for corpora larger than memory (lm.data.prepare)."""
  path, dtype = os.fspath(path), np.dtype(dtype)
  sizes = [os.path.getsize(f) for f in token_files]
  if any(size % dtype.itemsize for size in sizes):
    raise ValueError(f"token files of {dtype} must hold whole items: {token_files}")
  num_tokens = sum(sizes) // dtype.itemsize
  text = _metadata_text(num_tokens, dtype, num_bytes, num_documents, extra)
  _remove_metadata(path)
  with atomic.atomic_writer(path + ".npy") as f:
    header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False,
              "shape": (num_tokens,)}
    np.lib.format.write_array_header_1_0(f, header)
    for name in token_files:
      with open(name, "rb") as part:
        shutil.copyfileobj(part, f, 1 << 20)
  atomic.atomic_write_text(path + ".json", text)


def _metadata_text(num_tokens: int, dtype: np.dtype, num_bytes: int, num_documents: int,
                   extra: dict[str, Any] | None) -> str:
  metadata = {
      "format_version": FORMAT_VERSION,
      "num_tokens": int(num_tokens),
      "dtype": str(np.dtype(dtype)),
      "num_bytes": int(num_bytes),
      "num_documents": int(num_documents),
      **(extra or {}),
  }
  return json.dumps(metadata, indent=2, sort_keys=True)  # Fails early if `extra` is not JSON.


def _remove_metadata(path: str) -> None:
  """The old metadata goes first, so an interrupted save is a cache miss (see save_stream)."""
  try:
    os.remove(path + ".json")
  except FileNotFoundError:
    pass


def load_stream(path: str | os.PathLike) -> TokenStream:
  """Loads a stream saved by `save_stream`; the tokens are memory-mapped read-only."""
  stream, _ = _load(os.fspath(path))
  return stream


def cached_stream(
    cache_dir: str | os.PathLike,
    name: str,
    fingerprint: dict[str, Any],
    build: Callable[[], TokenStream],
) -> TokenStream:
  """Returns the cached stream `cache_dir/name` if its fingerprint matches, else builds it.

  `fingerprint` is a JSON-able dict of everything the tokens depend on (source files with
  sizes and mtimes, split, tokenizer fingerprint, options).
  """
  path = os.path.join(os.fspath(cache_dir), name)
  wanted = json.loads(json.dumps(fingerprint, sort_keys=True))  # Normalized as stored.
  if os.path.exists(path + ".json") and os.path.exists(path + ".npy"):
    try:
      stream, metadata = _load(path)
      if metadata.get("fingerprint") == wanted:
        return stream
    except UserError:
      pass  # A damaged cache is rebuilt, not reported.
  save_stream(path, build(), extra={"fingerprint": wanted})
  return load_stream(path)


def _load(path: str) -> tuple[TokenStream, dict[str, Any]]:
  try:
    with open(path + ".json", encoding="utf-8") as f:
      metadata = json.load(f)
    tokens = np.load(path + ".npy", mmap_mode="r", allow_pickle=False)
  except FileNotFoundError as e:
    raise UserError(f"{e.filename}: token cache file not found") from None
  except (ValueError, OSError) as e:  # Includes JSONDecodeError and bad .npy headers.
    raise UserError(f"{path}.npy/.json: corrupt token cache ({e}); delete it to rebuild") from None
  if (not isinstance(metadata, dict) or metadata.get("format_version") != FORMAT_VERSION or
      tokens.ndim != 1 or metadata.get("num_tokens") != tokens.shape[0] or
      metadata.get("dtype") != str(tokens.dtype)):
    raise UserError(
        f"{path}.npy/.json: token cache does not match its metadata; delete it to rebuild")
  stream = TokenStream(
      tokens=tokens,
      num_bytes=int(metadata["num_bytes"]),
      num_documents=int(metadata["num_documents"]),
  )
  return stream, metadata
