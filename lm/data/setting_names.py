"""How the running command names the readers' settings in its error messages.

The readers (reader, text_files, tagged) say which setting fixes a problem: in
training that is a config key (`config.data.encoding_errors`), but `lm.predict` has flags
(`--encoding_errors`, `--text_column`) and `lm.data.prepare` its own section
(`config.reader.text_field`). A command states its names around its reading:

  with setting_names.named(text_field="--text_column"):
    ...
"""

import contextlib
from typing import Iterator

_names: dict[str, str] = {}  # Of the command running in this process.


def name(setting: str) -> str:
  """What the user sets for reader setting `setting` ('text_field', 'encoding_errors', ...):
  the running command's name for it, else config.data.<setting>."""
  return _names.get(setting, f"config.data.{setting}")


@contextlib.contextmanager
def named(**names: str) -> Iterator[None]:
  """Within the block, errors name reader setting KEY as names[KEY]."""
  global _names
  outer = _names
  _names = {**outer, **names}
  try:
    yield
  finally:
    _names = outer
