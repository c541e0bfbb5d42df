"""The documents of the prepare inputs, streamed, and each process's deterministic slice of them.

Every document gets a global id `input_index * 2**40 + position in its input`, so which
duplicate is kept ("the first") and the held-out split do not depend on how many processes run.
"""

import dataclasses
from typing import Any, Iterator

from lm.data import setting_names, sources, tfds_source
from lm.errors import UserError

ID_STRIDE = 1 << 40
# config.reader keys that the readers' errors name (they say config.data.KEY in training).
_READER_KEYS = ("text_field", "txt_unit", "encoding_errors")


@dataclasses.dataclass(frozen=True)
class Input:
  """One entry of config.inputs: a local file, the members of an archive, or a TFDS split."""
  kind: str  # 'file', 'archive' or 'tfds'.
  path: str  # File path, archive path or TFDS name.
  member_glob: str = ""
  split: str = ""


@dataclasses.dataclass(frozen=True)
class Document:
  id: int
  where: str
  text: str


def resolve_inputs(spec: str, *, split: str, config_key: str) -> list[Input]:
  """The files, archives and TFDS datasets named by `spec` (comma-separated), in order."""
  if not spec.strip():
    raise UserError(f"{config_key} is empty: name files, globs, directories, archives or tfds:NAME")
  inputs = []
  for entry in (e.strip() for e in spec.split(",") if e.strip()):
    if entry.startswith(sources.TFDS_PREFIX):
      inputs.append(Input("tfds", entry[len(sources.TFDS_PREFIX):].strip(), split=split))
      continue
    match = sources.ARCHIVE_RE.match(entry)
    if match:
      member_glob = (match.group(2) or "").strip()
      if not member_glob:
        raise UserError(f"{config_key}: name the archive members to read after a colon, e.g."
                        f" '{match.group(1)}:*/train/*/*.txt' (got '{entry}')")
      for path in sources.resolve_files(match.group(1), config_key=config_key):
        inputs.append(Input("archive", path, member_glob))
      continue
    for path in sources.resolve_files(entry, config_key=config_key, directories=True):
      inputs.append(Input("file", path))
  return list(dict.fromkeys(inputs))


def iter_documents(inputs: list[Input], reader_cfg: Any, *, tfds_data_dir: str = "",
                   process_index: int = 0, num_processes: int = 1) -> Iterator[Document]:
  """This process's documents: whole inputs round-robin when there are at least as many
  inputs as processes, else every num_processes-th document of each input."""
  by_input = len(inputs) >= num_processes
  for input_index, item in enumerate(inputs):
    if by_input and input_index % num_processes != process_index:
      continue
    for position, (where, text) in enumerate(_read(item, reader_cfg, tfds_data_dir)):
      if position >= ID_STRIDE:
        raise UserError(f"{item.path}: more than {ID_STRIDE:,} documents in one input")
      if by_input or position % num_processes == process_index:
        yield Document(input_index * ID_STRIDE + position, where, text)


def _read(item: Input, reader_cfg: Any, tfds_data_dir: str) -> Iterator[tuple[str, str]]:
  """(where, text) of the non-blank documents of one input; errors name config.reader keys."""
  with setting_names.named(**{key: f"config.reader.{key}" for key in _READER_KEYS}):
    yield from _read_input(item, reader_cfg, tfds_data_dir)


def _read_input(item: Input, reader_cfg: Any, tfds_data_dir: str) -> Iterator[tuple[str, str]]:
  if item.kind == "archive":
    for name, text in sources.iter_archive(item.path, item.member_glob,
                                           reader_cfg.encoding_errors):
      if text.strip():
        yield f"{item.path}: {name}", text
  elif item.kind == "tfds":
    for index, text in enumerate(
        tfds_source.iter_tfds(item.path, split=item.split, text_field=reader_cfg.text_field,
                              encoding_errors=reader_cfg.encoding_errors,
                              data_dir=tfds_data_dir or None, config_key="config.inputs")):
      yield f"tfds:{item.path} ({item.split}) example {index}", text
  else:
    documents = sources.iter_file(item.path, text_field=reader_cfg.text_field,
                                  txt_unit=reader_cfg.txt_unit,
                                  encoding_errors=reader_cfg.encoding_errors,
                                  entry_separator=reader_cfg.entry_separator)
    for index, text in enumerate(documents):
      yield f"{item.path}: document {index}", text


