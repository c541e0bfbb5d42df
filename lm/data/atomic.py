"""Atomic file writes: a reader sees the old file or the complete new one, never a partial one."""

import contextlib
import os
import tempfile
from typing import BinaryIO, Iterator


def _read_umask() -> int:
  mask = os.umask(0)  # The only way to read it; set back at once (at import, before threads).
  os.umask(mask)
  return mask


_UMASK = _read_umask()
# What open() and os.mkdir() give a new file and directory under this process's umask.
FILE_MODE, DIRECTORY_MODE = 0o666 & ~_UMASK, 0o777 & ~_UMASK


@contextlib.contextmanager
def atomic_writer(path: str | os.PathLike) -> Iterator[BinaryIO]:
  """Yields a binary file that replaces `path` only once the block finishes without error.

  The temporary file lives in the same directory so that `os.replace` is a rename within
  one file system (atomic on POSIX); on error it is removed and `path` is left untouched.
  The file gets the permissions of any new file (0666 less the umask), not mkstemp's 0600.
  """
  path = os.fspath(path)
  directory = os.path.dirname(path) or "."
  os.makedirs(directory, exist_ok=True)
  fd, tmp_path = tempfile.mkstemp(dir=directory,
                                  prefix=f".{os.path.basename(path)}.",
                                  suffix=".tmp")
  try:
    with os.fdopen(fd, "wb") as f:
      yield f
      f.flush()
      os.fsync(f.fileno())
    os.chmod(tmp_path, FILE_MODE)
    os.replace(tmp_path, path)
  except BaseException:
    with contextlib.suppress(FileNotFoundError):
      os.remove(tmp_path)
    raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
  """Writes `data` to `path` atomically."""
  with atomic_writer(path) as f:
    f.write(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
  """Writes UTF-8 `text` to `path` atomically."""
  atomic_write_bytes(path, text.encode("utf-8"))
