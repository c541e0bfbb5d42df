"""Where datasets live: one data root for the public datasets, and the repository's own `data/`.

The data root is `$LM_DATA_DIR` when set, else `../shared/data` beside the repository (this
project's machines have it there). Each dataset is a directory in it, named as
`python -m lm.data.download NAME` names it (e.g. `wnut17/emerging.dev.conll`). Experiments build
their paths with `path()`, which never checks that a file exists: a config builds without the
data, and the reader that finds a file missing adds `missing_hint()`, which names the dataset
and the command that gets it.
"""

import os

from lm.errors import UserError

ENV = "LM_DATA_DIR"
# This file is <repository>/lm/data/data_root.py.
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def root() -> str:
  """The absolute data root: `$LM_DATA_DIR`, else `<repository>/../shared/data`."""
  override = os.environ.get(ENV, "").strip()
  if override:
    return os.path.abspath(os.path.expanduser(override))
  return os.path.normpath(os.path.join(REPO, os.pardir, "shared", "data"))


def path(dataset: str, *parts: str) -> str:
  """The absolute path of `parts` in `dataset`'s directory of the data root (need not exist)."""
  return os.path.join(root(), dataset, *parts)


def vendored(*parts: str) -> str:
  """The absolute path of a file under the repository's own `data/` (e.g. Tiny Shakespeare)."""
  return os.path.join(REPO, "data", *parts)


def download_command(dataset: str) -> str:
  return f"python -m lm.data.download {dataset}"


def require(dataset: str, *parts: str) -> str:
  """`path(dataset, *parts)` if it exists, else a UserError naming the dataset and its command."""
  found = path(dataset, *parts)
  if not os.path.exists(found):
    raise UserError(f"file not found: '{found}'{missing_hint(found)}")
  return found


def missing_hint(entry: str) -> str:
  """For a missing file in the data root: which dataset it belongs to and how to get it.

  Args:
    entry: a path as a config names it (a glob or an `archive:member` suffix is fine).

  Returns:
    '' when `entry` is not in the data root; else e.g. "; dataset 'wnut17' is not in the data
    root /x (LM_DATA_DIR): get it with `python -m lm.data.download wnut17`".
  """
  base = root()
  full = os.path.abspath(os.path.expanduser(entry))
  if not full.startswith(base + os.sep):
    return ""
  dataset = full[len(base) + 1:].split(os.sep, 1)[0].split(":", 1)[0]
  if not dataset:
    return ""
  where = f"the data root {base} (${ENV})"
  if not os.path.isdir(os.path.join(base, dataset)):
    return (f"; dataset '{dataset}' is not in {where}: get it with "
            f"`{download_command(dataset)}`")
  return (f"; dataset '{dataset}' in {where} lacks this file: get it again with "
          f"`{download_command(dataset)}`")
