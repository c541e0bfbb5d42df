"""Labeled and structured examples (records) from local files, tar archives and TFDS.

A `Record` maps roles ("text", "label", "prompt", "response") to string values; `fields` says
which column, JSONL key, TFDS feature or archive property holds each role:

  PATH.csv / .tsv / .jsonl (optionally .gz)   one record per row; fields name columns / keys
  any other local file                         role "text" only: one record per non-blank line,
                                               or per paragraph, per entry (fortune(6) style,
                                               between lines holding `%`) or per file (txt_unit)
  PATH.tar[.gz]:MEMBER_GLOB                    one record per matching regular-file member (sorted
                                               by name): its whole text is the "text" role
  tfds:NAME                                    one record per example; integer features become
                                               their decimal string

The special field name `@dir` gives the name of the directory holding the member or file, so
`aclImdb_train.tar.gz:aclImdb/train/*/*.txt` with fields={"label": "@dir"} labels reviews by
their `pos`/`neg` folder; `@file` gives the name of the file or member itself, without its
format extension (`.txt`, `.jsonl`, ...; through `.gz`), so `zh-fortunes/*` with
fields={"label": "@file"} and txt_unit='entry' labels each entry `chinese`, `song100` or
`tang300`. Roles whose field a source lacks are absent from its records, unless
they are `required`: then the source is a `UserError` naming the file and the config key.
"""

import csv
import dataclasses
import json
import os
import re
from typing import Any, Iterable, Sequence

import numpy as np

from lm.data import setting_names, sources
from lm.data import tfds_source
from lm.data.sources import (JSONL_EXTENSIONS, TABLE_DELIMITERS, check_choice, inner_extension,
                             read_bytes)
from lm.errors import UserError

DIR_FIELD = "@dir"
FILE_FIELD = "@file"
PATH_FIELDS = (DIR_FIELD, FILE_FIELD)  # Fields that come from where a record is stored.
_INTEGER_RE = re.compile(r"^[+-]?\d+$")


@dataclasses.dataclass(frozen=True)
class Record:
  """One example: role -> value, and where it came from (`path: line 17`) for error messages;
  with read_records(keep_columns=True), every column / key of its row as read."""
  values: dict[str, str]
  where: str
  columns: dict[str, Any] = dataclasses.field(default_factory=dict)


def read_records(
    source: str,
    *,
    fields: dict[str, str],
    split: str = "train",
    encoding_errors: str = "strict",
    config_key: str = "config.data.source",
    tfds_data_dir: str | None = None,
    required: tuple[str, ...] = (),
    txt_unit: str = "line",
    entry_separator: str = sources.DEFAULT_ENTRY_SEPARATOR,
    keep_blank: bool = False,
    keep_columns: bool = False,
) -> list[Record]:
  """Reads the records of `source`.

  Args:
    source: comma-separated local paths, globs and `ARCHIVE:MEMBER_GLOB` entries, or
      `tfds:NAME` (e.g. `tfds:imdb_reviews`).
    fields: role -> column / JSONL key / TFDS feature / `@dir` / `@file`, e.g. {"text":
      "sentence", "label": "label"}. A required role missing here is read from the field of
      its own name; plain text files and archives always give the "text" role.
    split: the TFDS split; local sources have none (point `source` at the split's files).
    encoding_errors: `strict` (undecodable UTF-8 is an error) or `replace` (U+FFFD).
    config_key: the config key `source` came from, for error messages.
    tfds_data_dir: where TFDS datasets are prepared (default: TFDS's own default).
    required: roles every record must have, with non-blank values.
    txt_unit: what one record is in a plain text file (not in tables, JSONL or archives): each
      non-blank `line`, each blank-line separated `paragraph`, each `entry` between lines
      holding just `entry_separator`, or the whole `file`.
    entry_separator: the separator line of txt_unit='entry'.
    keep_blank: keep records whose roles are blank (every line of a plain text file is one,
      blank or not), for predictions that keep one output row per input row.
    keep_columns: fill each record's `columns` with its row's columns / JSON keys.

  Returns:
    The records in file (and member) order.
  """
  check_choice(encoding_errors, sources.ENCODING_ERRORS,
               setting_names.name("encoding_errors"))
  check_choice(txt_unit, sources.TXT_UNITS, setting_names.name("txt_unit"))
  _check_fields(fields)
  if not isinstance(source, str) or not source.strip():
    raise UserError(f"{config_key} is empty: set it to a file, a glob or 'tfds:NAME'")
  source = source.strip()
  reader = _Reader(fields, required, encoding_errors, txt_unit, entry_separator, keep_blank,
                   keep_columns)
  if source.startswith(sources.TFDS_PREFIX):
    records = reader.tfds(source[len(sources.TFDS_PREFIX):].strip(), split, tfds_data_dir,
                          config_key)
    if not records:
      raise UserError(f"{config_key}='{source}' (split {split!r}): no records found")
    return records
  records = []
  for path, member_glob in _resolve(source, config_key):
    if member_glob is None:
      new = reader.file(path)
    else:
      new = reader.archive(path, member_glob)
    if not new:
      name = path if member_glob is None else f"{path}:{member_glob}"
      raise UserError(f"{name}: no records found (only blank text)")
    records.extend(new)
  return records


class LabelSet:
  """The class names of a classifier, in the order of its outputs."""

  def __init__(self, names: Sequence[str], config_key: str = "config.data.labels"):
    names = tuple(names)
    if len(names) < 2:
      raise UserError(f"{config_key}: a classifier needs at least 2 labels, got {list(names)}")
    if len(set(names)) != len(names):
      raise UserError(f"{config_key}: duplicate labels in {', '.join(names)}")
    self._names = names
    self._index = {name: i for i, name in enumerate(names)}
    self._config_key = config_key

  @classmethod
  def from_config(cls,
                  labels: str,
                  records: Iterable[Record],
                  config_key: str = "config.data.labels") -> "LabelSet":
    """`labels`: comma-separated names, or '' for the sorted distinct labels of `records`.

    Inferred names sort numerically when all are integers. Every record's label must be in the
    set (checked here, so the error names the first bad line).
    """
    records = list(records)
    if not isinstance(labels, str):
      raise UserError(f"{config_key} must be a comma-separated string of labels, got {labels!r}")
    if labels.strip():
      names = [name.strip() for name in labels.split(",")]
      if not all(names):
        raise UserError(f"{config_key}: empty label name in {labels!r}")
    else:
      distinct = {r.values["label"].strip() for r in records if "label" in r.values}
      if not distinct:
        raise UserError(f"{config_key} is empty and the training records have no labels; set"
                        f" {setting_names.name('label_field')} to the label column, or list the"
                        " labels")
      names = sort_labels(distinct)
    label_set = cls(names, config_key)
    for record in records:
      if "label" in record.values:
        label_set.index(record.values["label"], record.where)
    return label_set

  @property
  def names(self) -> tuple[str, ...]:
    return self._names

  def __len__(self) -> int:
    return len(self._names)

  def __eq__(self, other: Any) -> bool:
    return isinstance(other, LabelSet) and self._names == other.names

  def __repr__(self) -> str:
    return f"LabelSet({list(self._names)})"

  def index(self, value: str, where: str) -> int:
    """The class id of label `value` (surrounding whitespace ignored)."""
    i = self._index.get(value.strip())
    if i is None:
      raise UserError(f"{where}: label {value!r} is not one of {', '.join(self._names)}"
                      f" ({self._config_key})")
    return i

  def to_json(self) -> str:
    return json.dumps({"labels": list(self._names)}, ensure_ascii=False)

  @classmethod
  def from_json(cls, text: str, where: str = "labels.json") -> "LabelSet":
    try:
      names = json.loads(text)["labels"]
    except (json.JSONDecodeError, TypeError, KeyError) as e:
      raise UserError(f"{where}: corrupt label set ({e!r})") from None
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
      raise UserError(f"{where}: corrupt label set (expected a list of strings)")
    return cls(names, where)


def sort_labels(names: Iterable[str]) -> list[str]:
  """Sorted label names: numerically if all are integers, else as strings."""
  names = list(names)
  if all(_INTEGER_RE.match(name) for name in names):
    return sorted(names, key=lambda name: (int(name), name))
  return sorted(names)


def held_out_split(records: Sequence[Record],
                   fraction: float,
                   seed: int = 0) -> tuple[list[Record], list[Record]]:
  """Randomly holds out round(fraction * n) records (1..n-1) for validation.

  Which records are held out comes from `np.random.default_rng(seed).permutation(n)`; both parts
  keep file order. Returns (train, valid).
  """
  if (isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or
      not 0.0 < fraction < 1.0):
    raise UserError(f"config.data.valid_fraction must be a number in (0, 1), got {fraction!r}")
  n = len(records)
  if n < 2:
    raise UserError(f"{n} record(s) cannot be split into train and validation data"
                    " (config.data.valid_fraction); use more data or a validation source")
  num_valid = min(max(round(fraction * n), 1), n - 1)
  permutation = np.random.default_rng(seed).permutation(n)
  is_valid = np.zeros(n, dtype=bool)
  is_valid[permutation[:num_valid]] = True
  train = [r for r, v in zip(records, is_valid) if not v]
  valid = [r for r, v in zip(records, is_valid) if v]
  return train, valid


def _check_fields(fields: dict[str, str]) -> None:
  if not isinstance(fields, dict):
    raise TypeError(f"fields must be a dict role -> field name, got {fields!r}")
  for role, field in fields.items():
    if not isinstance(field, str) or not field.strip():
      raise UserError(f"{_field_key(role)} is empty: set it to a column / key / feature name")


def _field_key(role: str) -> str:
  return setting_names.name(f"{role}_field")


def _resolve(source: str, config_key: str) -> list[tuple[str, str | None]]:
  """(path, member glob or None) for every file / archive entry of `source`, deduplicated."""
  entries = [entry.strip() for entry in source.split(",") if entry.strip()]
  if not entries:
    raise UserError(f"{config_key} is empty: set it to a file, a glob or 'tfds:NAME'")
  resolved = []
  for entry in entries:
    match = sources.ARCHIVE_RE.match(entry)
    if match is None:
      resolved.extend((path, None) for path in sources.resolve_files(entry, config_key=config_key))
      continue
    archive, member_glob = match.group(1), (match.group(2) or "").strip()
    paths = sources.resolve_files(archive, config_key=config_key)
    if not member_glob:
      raise UserError(f"{config_key}: name the archive members to read after a colon, e.g."
                      f" '{archive}:*/train/*/*.txt' (got '{entry}')")
    resolved.extend((path, member_glob) for path in paths)
  return list(dict.fromkeys(resolved))


class _Reader:
  """Turns rows / members / examples into records for one `fields` and `required`."""

  def __init__(self, fields: dict[str, str], required: tuple[str, ...], encoding_errors: str,
               txt_unit: str, entry_separator: str, keep_blank: bool = False,
               keep_columns: bool = False):
    # A required role without a field is looked up under its own name ("text" -> column "text").
    self.fields = {role: role for role in required}
    self.fields.update((role, field.strip()) for role, field in fields.items())
    self.required = tuple(required)
    self.encoding_errors = encoding_errors
    self.txt_unit = txt_unit
    self.entry_separator = entry_separator
    self.keep_blank = keep_blank
    self.keep_columns = keep_columns

  def _check_blank(self, values: dict[str, str], where: str) -> None:
    if self.keep_blank:
      return
    for role in self.required:
      if not values[role].strip():
        raise UserError(f"{where}: empty {role}")

  def _present(self, available: Iterable[str], where: str, kind: str) -> dict[str, str]:
    """Role -> field of the roles `available` provides; a required one it lacks is an error."""
    available = list(available)
    present = {}
    for role, field in self.fields.items():
      if field in PATH_FIELDS or field in available:
        present[role] = field
      elif role in self.required:
        names = ", ".join(map(repr, available)) or "none"
        raise UserError(f"{where}: no {kind} {field!r} for the {role} ({kind}s: {names});"
                        f" set {_field_key(role)}")
    return present

  # --- Local files ------------------------------------------------------------------------------

  def file(self, path: str) -> list[Record]:
    data = read_bytes(path)
    if not data:
      raise UserError(f"{path}: file is empty")
    text = sources.decode_utf8(data, self.encoding_errors, where=path)
    extension = inner_extension(path)
    origin = _origin(os.path.abspath(path), os.sep)
    if extension in JSONL_EXTENSIONS:
      return self._jsonl(text, path, origin)
    if extension in TABLE_DELIMITERS:
      return self._table(text, path, origin, TABLE_DELIMITERS[extension])
    return self._plain_text(text, path, origin)

  def _plain_text(self, text: str, path: str, origin: dict[str, str]) -> list[Record]:
    path_roles = self._path_roles(path, f"a plain text file holds one text per {self.txt_unit}")
    origin_values = {role: origin[self.fields[role]] for role in path_roles}
    if self.txt_unit == "line":  # Records name their line.
      lines = text.removesuffix("\n").split("\n")  # No record after the last newline.
      texts = [(f"{path}: line {number}", line.removesuffix("\r"))
               for number, line in enumerate(lines, start=1)]
    else:
      documents = sources.split_text(text, self.txt_unit, self.entry_separator)
      texts = [(f"{path}: {self.txt_unit} {number}", document)
               for number, document in enumerate(documents, start=1)]
    return [
        Record({"text": t, **origin_values}, where)
        for where, t in texts
        if t.strip() or self.keep_blank
    ]

  def _path_roles(self, where: str, what: str) -> list[str]:
    """The `@dir` / `@file` roles of a source that holds only text (always the "text" role)."""
    path_roles = []
    for role, field in self.fields.items():
      if field in PATH_FIELDS:
        path_roles.append(role)
      elif role in self.required and role != "text":
        raise UserError(f"{where}: {what}, so it has no field {field!r} for the {role}; use a"
                        f" .tsv, .csv or .jsonl file, or set {_field_key(role)}='{DIR_FIELD}' or"
                        f" '{FILE_FIELD}'")
    return path_roles

  def _jsonl(self, text: str, path: str, origin: dict[str, str]) -> list[Record]:
    records = []
    for line_number, line in enumerate(text.split("\n"), start=1):
      if not line.strip():
        continue
      where = f"{path}: line {line_number}"
      obj = sources.parse_json_line(line, where)
      values = {}
      for role, field in self._present((k for k, v in obj.items() if v is not None), where,
                                       "key").items():
        values[role] = origin[field] if field in PATH_FIELDS else sources.check_text(
            _json_string(obj[field], field, where), self.encoding_errors, where=where)
      self._check_blank(values, where)
      records.append(Record(values, where, obj if self.keep_columns else {}))
    return records

  def _table(self, text: str, path: str, origin: dict[str, str], delimiter: str) -> list[Record]:
    reader = sources.table_reader(text, delimiter)
    records = []
    line_number = 1  # Where the row being read starts.
    try:
      header = next(reader, None)
      if header is None:
        return []
      present = self._present(header, f"{path}: line 1", "column")
      columns = {
          role: header.index(field) for role, field in present.items() if field not in PATH_FIELDS
      }
      line_number = reader.line_num + 1
      for row in reader:
        where = f"{path}: line {line_number}"
        line_number = reader.line_num + 1
        if not row:
          continue
        if len(row) != len(header):
          raise UserError(f"{where}: row has {len(row)} fields, the header has {len(header)}"
                          f" ({', '.join(map(repr, header))})")
        values = {
            role: row[columns[role]] if role in columns else origin[present[role]]
            for role in present
        }
        self._check_blank(values, where)
        records.append(Record(values, where, dict(zip(header, row)) if self.keep_columns else {}))
    except csv.Error as e:
      raise sources.table_error(e, path, line_number, delimiter) from None
    return records

  # --- Tar archives -----------------------------------------------------------------------------

  def archive(self, path: str, member_glob: str) -> list[Record]:
    path_roles = self._path_roles(f"{path}:{member_glob}", "an archive member is read as one text")
    # Sorted by member name: the record order does not depend on how the archive was packed.
    texts = sorted(sources.iter_archive(path, member_glob, self.encoding_errors))
    records = []
    for name, text in texts:
      where = f"{path}: {name}"
      origin = _origin(name, "/")
      values = {"text": text, **{role: origin[self.fields[role]] for role in path_roles}}
      self._check_blank(values, where)
      records.append(Record(values, where))
    return records

  # --- TFDS -------------------------------------------------------------------------------------

  def tfds(self, name: str, split: str, data_dir: str | None, config_key: str) -> list[Record]:
    where = f"{config_key}='tfds:{name}' (split {split!r})"
    data_source = _open_tfds(name, split, data_dir, config_key, where)
    if any(field in PATH_FIELDS for field in self.fields.values()):
      raise UserError(f"{where}: TFDS examples have no file or directory; '{DIR_FIELD}' and"
                      f" '{FILE_FIELD}' work only for local files and archives")
    records = []
    for index, example in enumerate(data_source):
      example_where = f"tfds:{name} (split {split!r}), example {index}"
      if not isinstance(example, dict):
        raise UserError(f"{example_where}: expected a dict of features, got"
                        f" {type(example).__name__}")
      values = {}
      for role, field in self._present(example, example_where, "feature").items():
        values[role] = _tfds_string(example, field, self.encoding_errors, example_where)
      self._check_blank(values, example_where)
      records.append(Record(values, example_where))
    return records


def _origin(path: str, separator: str) -> dict[str, str]:
  """The values of the path fields for a file or archive member at `path`."""
  parts = path.rstrip(separator).split(separator)
  name = parts[-1]
  stem = name[:-len(".gz")] if name.lower().endswith(".gz") else name
  stem = os.path.splitext(stem)[0] or stem
  return {DIR_FIELD: parts[-2] if len(parts) > 1 else "", FILE_FIELD: stem}


def _json_string(value: Any, field: str, where: str) -> str:
  if isinstance(value, str):
    return value
  if isinstance(value, bool):
    return "true" if value else "false"
  if isinstance(value, int):
    return str(value)
  raise UserError(f"{where}: field {field!r} is {type(value).__name__}, not a string or integer")


def _open_tfds(name: str, split: str, data_dir: str | None, config_key: str, where: str) -> Any:
  """`tfds.data_source(name, split)` without downloading, with tfds_source's error messages."""
  if not name:
    raise UserError(f"{config_key}: 'tfds:' needs a dataset name, e.g. 'tfds:imdb_reviews'")
  try:
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise UserError(
        f"{config_key}='tfds:{name}' needs tensorflow-datasets: pip install tensorflow-datasets"
    ) from None
  try:
    return tfds.data_source(name, split=split, data_dir=data_dir, download=False)
  except tfds.core.DatasetNotFoundError:
    raise UserError(
        f"{where}: TFDS has no dataset named {name.split('/')[0]!r}; check the name in the"
        " TFDS catalog (https://www.tensorflow.org/datasets/catalog) or use local files") from None
  except Exception as e:  # pylint: disable=broad-except  # TFDS raises many types here.
    reason = tfds_source._open_failure_reason(  # pylint: disable=protected-access
        tfds, name, data_dir, e)
    raise UserError(
        f"{where}: {reason}. Prepare it once (needs network) with `tfds build {name}"
        f" --file_format=array_record` or"
        f" `tfds.builder({name!r}).download_and_prepare(file_format='array_record')`") from None


def _tfds_string(example: dict[str, Any], field: str, encoding_errors: str, where: str) -> str:
  """A feature as a string: integers in decimal, bytes decoded as UTF-8."""
  value = example[field]
  if isinstance(value, np.ndarray) and value.ndim == 0:
    value = value.item()
  if isinstance(value, (bool, np.bool_)):
    return "true" if value else "false"
  if isinstance(value, (int, np.integer)):
    return str(int(value))
  if isinstance(value, (str, bytes)):
    return tfds_source._text_of(  # pylint: disable=protected-access
        {field: value}, field, encoding_errors, where=where)
  raise UserError(f"{where}: feature {field!r} is {type(value).__name__}, not text or an integer")
