"""The intermediate files of one process's slice: cleaned documents with their ids, exact keys
and MinHash signatures, appended as they come (constant memory) and read back memory-mapped.

A shard directory holds `text.bin` (UTF-8 documents back to back), `ends.bin` (uint64 end
offset of each document), `ids.bin` (int64 global ids), `keys.bin` (16-byte exact-duplicate
keys), `signatures.bin` (uint32 MinHash values, num_perm per document, if computed),
`where.bin` + `where_ends.bin` (where each document came from, e.g. an archive member's name)
and `shard.json` (counts), written last: a shard without it is incomplete.
"""

import json
import os
import shutil
from typing import Iterator

import numpy as np

from lm.data import atomic

KEY_BYTES = 16
_FILES = ("text.bin", "ends.bin", "ids.bin", "keys.bin", "signatures.bin", "where.bin",
          "where_ends.bin")


class ShardWriter:
  """Appends documents to a new shard directory (replacing an incomplete one)."""

  def __init__(self, directory: str, num_perm: int = 0):
    if os.path.exists(directory):
      shutil.rmtree(directory)
    os.makedirs(directory)
    self.directory = directory
    self.num_perm = num_perm
    self._files = {name: open(os.path.join(directory, name), "wb") for name in _FILES}
    self._offset = self._where_offset = 0
    self.num_documents = 0

  def add(self, doc_id: int, text: str, key: bytes, signature: np.ndarray | None = None,
          where: str = "") -> None:
    data = text.encode("utf-8")
    self._files["text.bin"].write(data)
    self._offset += len(data)
    self._files["ends.bin"].write(np.uint64(self._offset).tobytes())
    self._files["ids.bin"].write(np.int64(doc_id).tobytes())
    if len(key) != KEY_BYTES:
      raise ValueError(f"exact keys must have {KEY_BYTES} bytes, got {len(key)}")
    self._files["keys.bin"].write(key)
    if self.num_perm:
      self._files["signatures.bin"].write(np.asarray(signature, dtype=np.uint32).tobytes())
    where_data = where.encode("utf-8", errors="replace")
    self._files["where.bin"].write(where_data)
    self._where_offset += len(where_data)
    self._files["where_ends.bin"].write(np.uint64(self._where_offset).tobytes())
    self.num_documents += 1

  def close(self) -> None:
    for f in self._files.values():
      f.close()
    metadata = {"num_documents": self.num_documents, "num_bytes": self._offset,
                "num_perm": self.num_perm}
    atomic.atomic_write_text(os.path.join(self.directory, "shard.json"), json.dumps(metadata))


class Shard:
  """A complete shard, memory-mapped."""

  def __init__(self, directory: str):
    self.directory = directory
    with open(os.path.join(directory, "shard.json"), encoding="utf-8") as f:
      metadata = json.load(f)
    self.num_documents = metadata["num_documents"]
    self.num_perm = metadata["num_perm"]
    self.ends = self._map("ends.bin", np.uint64)
    self.ids = self._map("ids.bin", np.int64)
    self.keys = self._map("keys.bin", np.dtype(f"S{KEY_BYTES}"))
    # Texts and signatures are read with pread, not memory-mapped: pages mapped while streaming
    # over a large corpus would count as this process's memory.
    self._text_path = os.path.join(directory, "text.bin")
    self._signatures_path = os.path.join(directory, "signatures.bin")
    self._fd = None
    self._signatures_fd = None

  def _map(self, name: str, dtype) -> np.ndarray:
    path = os.path.join(self.directory, name)
    if os.path.getsize(path) == 0:
      return np.zeros(0, dtype=dtype)
    return np.memmap(path, dtype=dtype, mode="r")

  def texts(self, rows: np.ndarray | None = None) -> Iterator[tuple[int, str]]:
    """(row, text) of `rows` (default: all), in the order given."""
    rows = np.arange(self.num_documents) if rows is None else rows
    with open(self._text_path, "rb") as f:
      fd = f.fileno()
      for row in rows:
        row = int(row)
        start = int(self.ends[row - 1]) if row else 0
        yield row, os.pread(fd, int(self.ends[row]) - start, start).decode("utf-8")

  def text(self, row: int) -> str:
    """One document, read through a file descriptor kept open for random access."""
    if self._fd is None:
      self._fd = os.open(self._text_path, os.O_RDONLY)
    start = int(self.ends[row - 1]) if row else 0
    return os.pread(self._fd, int(self.ends[row]) - start, start).decode("utf-8")

  def __del__(self):
    for fd in (getattr(self, "_fd", None), getattr(self, "_signatures_fd", None)):
      if fd is not None:
        os.close(fd)

  def signature(self, row: int) -> np.ndarray:
    """The MinHash signature (uint32 [num_perm]) of document `row`."""
    if not self.num_perm:
      raise ValueError(f"{self.directory}: this shard has no MinHash signatures")
    if self._signatures_fd is None:
      self._signatures_fd = os.open(self._signatures_path, os.O_RDONLY)
    size = 4 * self.num_perm
    return np.frombuffer(os.pread(self._signatures_fd, size, row * size), dtype=np.uint32)

  def where(self, row: int) -> str:
    """Where document `row` came from (file and document, or archive and member)."""
    ends = self._map("where_ends.bin", np.uint64)
    start = int(ends[row - 1]) if row else 0
    with open(os.path.join(self.directory, "where.bin"), "rb") as f:
      f.seek(start)
      return f.read(int(ends[row]) - start).decode("utf-8", errors="replace")

  def __len__(self) -> int:
    return self.num_documents


def is_complete(directory: str) -> bool:
  return os.path.exists(os.path.join(directory, "shard.json"))
