"""Tests for lm.data.token_store: EOS joining, dtypes, on-disk cache and atomic writes."""

import json
import os

import numpy as np
import pytest

from lm.data import token_store
from lm.data.token_store import TokenStream
from lm.data.tokenizers import EOS_ID, NUM_SPECIAL, ByteTokenizer, CharTokenizer
from lm.errors import UserError
from tests.conftest import REPO

SHAKESPEARE = str(REPO / "data" / "tinyshakespeare" / "input.txt")


class _BigVocab(ByteTokenizer):
  """A byte tokenizer pretending to have a vocabulary too large for uint16."""

  @property
  def vocab_size(self) -> int:
    return 70_000

  def encode_array(self, text):
    return np.array([69_999, 65_536], dtype=np.int32)


def _stream(values, dtype=np.uint16):
  return TokenStream(tokens=np.asarray(values, dtype=dtype), num_bytes=11, num_documents=2)


def _files(directory):
  return sorted(os.listdir(directory))


def test_documents_are_each_followed_by_eos():
  tokenizer = CharTokenizer(["a", "b", "c"])
  stream = token_store.tokenize_documents(["ab", "c"], tokenizer)
  a, b, c = NUM_SPECIAL, NUM_SPECIAL + 1, NUM_SPECIAL + 2
  assert stream.tokens.tolist() == [a, b, EOS_ID, c, EOS_ID]
  assert (stream.num_documents, stream.num_bytes, stream.num_tokens) == (2, 3, 5)


def test_single_document_corpus_ends_with_one_eos():
  with open(SHAKESPEARE, encoding="utf-8") as f:
    text = f.read()
  tokenizer = CharTokenizer.train([text])
  stream = token_store.tokenize_documents([text], tokenizer)
  assert stream.num_tokens == len(text) + 1
  assert stream.tokens[-1] == EOS_ID and EOS_ID not in stream.tokens[:-1]
  assert stream.num_bytes == 1_115_394 and stream.num_documents == 1
  assert tokenizer.decode(stream.tokens) == text


def test_num_bytes_counts_utf8_bytes():
  stream = token_store.tokenize_documents(["héllo", "日本"], ByteTokenizer())
  assert stream.num_bytes == 6 + 6
  assert stream.num_tokens == 12 + 2


def test_dtype_choice():
  assert token_store.token_dtype(72) == np.uint16
  assert token_store.token_dtype(65_535) == np.uint16
  assert token_store.token_dtype(65_536) == np.uint32
  assert token_store.tokenize_documents(["x"], ByteTokenizer()).tokens.dtype == np.uint16
  stream = token_store.tokenize_documents(["x"], _BigVocab())
  assert stream.tokens.dtype == np.uint32
  assert stream.tokens.tolist() == [69_999, 65_536, EOS_ID]


def test_save_load_round_trip_is_memory_mapped(tmp_path):
  stream = _stream([5, 6, 2, 7, 2])
  token_store.save_stream(tmp_path / "train", stream)
  assert _files(tmp_path) == ["train.json", "train.npy"]
  loaded = token_store.load_stream(tmp_path / "train")
  assert isinstance(loaded.tokens, np.memmap) and not loaded.tokens.flags.writeable
  assert loaded.tokens.dtype == np.uint16
  np.testing.assert_array_equal(loaded.tokens, stream.tokens)
  assert (loaded.num_bytes, loaded.num_documents) == (11, 2)


def test_load_missing_or_mismatched_cache_is_user_error(tmp_path):
  with pytest.raises(UserError, match="token cache file not found"):
    token_store.load_stream(tmp_path / "nothing")
  token_store.save_stream(tmp_path / "s", _stream([1, 2, 3]))
  metadata = json.loads((tmp_path / "s.json").read_text())
  (tmp_path / "s.json").write_text(json.dumps({**metadata, "num_tokens": 4}))
  with pytest.raises(UserError, match="does not match its metadata"):
    token_store.load_stream(tmp_path / "s")


def test_cached_stream_hits_and_rebuilds_on_fingerprint_change(tmp_path):
  calls = []

  def build():
    calls.append(1)
    return _stream([len(calls), 2])

  files = [{"path": "/x", "size": 3, "mtime_ns": 1}]
  fingerprint = {"files": files, "split": "train", "tokenizer": "ab"}
  first = token_store.cached_stream(tmp_path, "train", fingerprint, build)
  assert first.tokens.tolist() == [1, 2] and len(calls) == 1
  # Same fingerprint, keys in another order: served from disk.
  again = token_store.cached_stream(tmp_path, "train", dict(reversed(fingerprint.items())), build)
  assert again.tokens.tolist() == [1, 2] and len(calls) == 1
  assert isinstance(again.tokens, np.memmap)
  changed = {**fingerprint, "tokenizer": "cd"}
  rebuilt = token_store.cached_stream(tmp_path, "train", changed, build)
  assert rebuilt.tokens.tolist() == [2, 2] and len(calls) == 2
  assert token_store.cached_stream(tmp_path, "train", changed, build).tokens.tolist() == [2, 2]
  assert len(calls) == 2
  assert _files(tmp_path) == ["train.json", "train.npy"]


def test_cached_stream_rebuilds_a_damaged_cache(tmp_path):
  token_store.cached_stream(tmp_path, "s", {"k": 1}, lambda: _stream([3, 4]))
  (tmp_path / "s.npy").write_bytes(b"garbage")
  rebuilt = token_store.cached_stream(tmp_path, "s", {"k": 1}, lambda: _stream([5]))
  assert rebuilt.tokens.tolist() == [5]


def test_interrupted_save_leaves_no_partial_files(tmp_path, monkeypatch):
  token_store.cached_stream(tmp_path, "s", {"k": 1}, lambda: _stream([3, 4]))
  real_save = np.save

  def save_then_crash(f, array, **kwargs):
    real_save(f, array[:len(array) // 2], **kwargs)  # Half written...
    raise KeyboardInterrupt  # ...then the run is killed.

  monkeypatch.setattr(np, "save", save_then_crash)
  with pytest.raises(KeyboardInterrupt):
    token_store.cached_stream(tmp_path, "s", {"k": 2}, lambda: _stream(np.arange(100)))
  monkeypatch.undo()
  # No temporary file and no metadata claiming the half-written data; the old array is intact.
  assert _files(tmp_path) == ["s.npy"]
  assert np.load(tmp_path / "s.npy").tolist() == [3, 4]
  rebuilt = token_store.cached_stream(tmp_path, "s", {"k": 2}, lambda: _stream(np.arange(100)))
  assert rebuilt.tokens.tolist() == list(range(100))


def test_build_failure_keeps_a_valid_cache(tmp_path):
  token_store.cached_stream(tmp_path, "s", {"k": 1}, lambda: _stream([3, 4]))

  def failing_build():
    raise UserError("bad data")

  with pytest.raises(UserError, match="bad data"):
    token_store.cached_stream(tmp_path, "s", {"k": 2}, failing_build)
  assert token_store.cached_stream(tmp_path, "s", {"k": 1}, failing_build).tokens.tolist() == [3, 4]
