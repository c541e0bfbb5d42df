"""The documents of the prepare inputs, streamed, and each process's deterministic slice of them.

Every document gets a global id `input_index * 2**40 + position in its input`, so which
duplicate is kept ("the first") and the held-out split do not depend on how many processes run.
"""

import dataclasses
from typing import Any, Iterator

from lm.data import reader, setting_names
from lm.errors import UserError

ID_STRIDE = 1 << 40
# config.reader keys that the readers' errors name (they say config.data.KEY in training).
_READER_KEYS = ("text_field", "txt_unit", "encoding_errors")


@dataclasses.dataclass(frozen=True)
class Document:
  id: int
  where: str
  text: str


def resolve_inputs(spec: str, *, split: str, config_key: str) -> list[reader.Entry]:
  """The files (a directory: every file below it), archives and TFDS datasets named by `spec`
  (comma-separated), in order."""
  if not spec.strip():
    raise UserError(f"{config_key} is empty: name files, globs, directories, archives or tfds:NAME")
  return reader.resolve_source(spec, split=split, config_key=config_key, directories=True)


def iter_documents(inputs: list[reader.Entry], reader_cfg: Any, *, tfds_data_dir: str = "",
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


def _read(entry: reader.Entry, reader_cfg: Any, tfds_data_dir: str) -> Iterator[tuple[str, str]]:
  """(where, text) of the non-blank documents of one input; errors name config.reader keys."""
  with setting_names.named(**{key: f"config.reader.{key}" for key in _READER_KEYS}):
    documents = reader.Reader({"text": reader_cfg.text_field},
                              required=("text",),
                              blank="skip",
                              encoding_errors=reader_cfg.encoding_errors,
                              txt_unit=reader_cfg.txt_unit,
                              entry_separator=reader_cfg.entry_separator,
                              tfds_data_dir=tfds_data_dir or None,
                              config_key="config.inputs")
    for record in documents.records(entry):
      yield record.where, record.values["text"]
