"""The one reader of data sources: records (labeled examples) and documents (language-model text)
from local files, tar archives and TFDS.

A `Record` maps roles ("text", "label", "prompt", "response", ...) to string values; `fields`
says which column, JSONL key, TFDS feature or archive property holds each role. A *document* is
the "text" role of a record (`read_documents`); the token store later joins documents with EOS.

  PATH.csv / .tsv / .jsonl (optionally .gz)   one record per row; fields name columns / keys
  PATH.json (optionally .gz)                   a JSON list of objects: one record per object
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

Every problem with the data raises `UserError` naming the file and line (or example) and the
config key. `Reader.records` streams one entry of a source (constant memory, except a whole-file
document); `read_records` and `read_documents` collect a whole source.
"""

import csv
import dataclasses
import os
from typing import Any, Iterable, Iterator

import numpy as np

from lm.data import setting_names
from lm.data import text_files as files
from lm.errors import UserError

TFDS_PREFIX = "tfds:"
DIR_FIELD = "@dir"
FILE_FIELD = "@file"
PATH_FIELDS = (DIR_FIELD, FILE_FIELD)  # Fields that come from where a record is stored.
# What happens to a record whose required roles are blank: an error naming its line, skipped
# (language-model documents), or kept (predictions keep one output row per input row).
BLANK_POLICIES = ("error", "skip", "keep")


@dataclasses.dataclass(frozen=True)
class Record:
  """One example: role -> value, and where it came from (`path: line 17`) for error messages;
  with keep_columns=True, every column / key of its row as read."""
  values: dict[str, str]
  where: str
  columns: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Entry:
  """One entry of a source: a local file, the matching members of a tar archive, or a TFDS
  dataset's split."""
  kind: str  # 'file', 'archive' or 'tfds'.
  path: str  # File path, archive path or TFDS name.
  member_glob: str = ""
  split: str = ""

  @property
  def name(self) -> str:
    if self.kind == "tfds":
      return f"tfds:{self.path} (split {self.split!r})"
    return f"{self.path}:{self.member_glob}" if self.kind == "archive" else self.path


def resolve_source(source: str,
                   *,
                   split: str = "train",
                   config_key: str = "config.data.source",
                   directories: bool = False) -> list[Entry]:
  """The entries of `source`: comma-separated paths, globs, `ARCHIVE:MEMBER_GLOB` and `tfds:NAME`
  (read with `split`), in order, without duplicates. With `directories`, a directory stands for
  every file below it; otherwise it is an error."""
  if not isinstance(source, str) or not source.strip():
    raise UserError(f"{config_key} is empty: set it to a file, a glob or 'tfds:NAME'")
  entries = []
  for item in (e.strip() for e in source.split(",") if e.strip()):
    if item.startswith(TFDS_PREFIX):
      name = item[len(TFDS_PREFIX):].strip()
      if not name:
        raise UserError(f"{config_key}: 'tfds:' needs a dataset name, e.g. 'tfds:imdb_reviews'")
      entries.append(Entry("tfds", name, split=split))
      continue
    match = files.ARCHIVE_RE.match(item)
    if match is None:
      entries.extend(
          Entry("file", path)
          for path in files.resolve_files(item, config_key=config_key, directories=directories))
      continue
    archive, member_glob = match.group(1), (match.group(2) or "").strip()
    if not member_glob:
      raise UserError(f"{config_key}: name the archive members to read after a colon, e.g."
                      f" '{archive}:*/train/*/*.txt' (got '{item}')")
    entries.extend(
        Entry("archive", path, member_glob)
        for path in files.resolve_files(archive, config_key=config_key))
  return list(dict.fromkeys(entries))


def source_fingerprint(source: str, *, config_key: str = "config.data.source") -> dict:
  """A JSON-able identity of `source` for cache keys: path, size and mtime of every file."""
  source = source.strip()
  if source.startswith(TFDS_PREFIX):
    return {"tfds": source[len(TFDS_PREFIX):].strip()}
  fingerprint = []
  for entry in resolve_source(source, config_key=config_key):
    if entry.kind == "tfds":  # Beside local files.
      fingerprint.append({"tfds": entry.path})
      continue
    stat = os.stat(entry.path)
    fingerprint.append({
        "path": os.path.abspath(entry.path),
        "members": entry.member_glob or None,
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns
    })
  return {"files": fingerprint}


def read_records(source: str,
                 *,
                 fields: dict[str, str],
                 split: str = "train",
                 config_key: str = "config.data.source",
                 **options: Any) -> list[Record]:
  """The records of `source`, in file order (archive members sorted by name, so that the order
  does not depend on how the archive was packed); each entry must give at least one.

  `source` holds comma-separated local paths, globs and `ARCHIVE:MEMBER_GLOB` entries, or
  `tfds:NAME` (read with `split`; local files have no splits: point `source` at the split's
  files). `fields` and `options` are `Reader`'s; `config_key` names `source` in errors.
  """
  reader = Reader(fields, config_key=config_key, **options)
  records = []
  for entry in resolve_source(source, split=split, config_key=config_key):
    found = list(reader.records(entry))
    if not found:
      raise UserError(f"{entry.name}: no records found (only blank text)")
    if entry.kind == "archive":
      found.sort(key=lambda record: record.where)
    records.extend(found)
  return records


def read_documents(source: str,
                   *,
                   split: str,
                   text_field: str = "text",
                   txt_unit: str = "file",
                   **options: Any) -> list[str]:
  """The non-blank texts (`text_field`) of `source`, in order: `read_records` with blank texts
  skipped, a plain text file read as one document by default (`txt_unit`)."""
  found = read_records(source,
                       fields={"text": text_field},
                       required=("text",),
                       split=split,
                       txt_unit=txt_unit,
                       blank="skip",
                       **options)
  return [record.values["text"] for record in found]


class Reader:
  """Turns the rows, lines, members or examples of a source's entries into records.

  Args:
    fields: role -> column / JSONL key / TFDS feature / `@dir` / `@file`, e.g. {"text":
      "sentence", "label": "label"}. A required role missing here is read from the field of
      its own name; plain text files and archives always give the "text" role.
    required: roles every record must have.
    encoding_errors: `strict` (undecodable UTF-8 is an error) or `replace` (U+FFFD).
    txt_unit: what one record is in a plain text file (not in tables, JSONL or archives): each
      non-blank `line`, each blank-line separated `paragraph`, each `entry` between lines
      holding just `entry_separator`, or the whole `file`.
    entry_separator: the separator line of txt_unit='entry'.
    blank: a record whose required roles are blank is an `error` naming its line, or `skip`ped,
      or `keep`t (then every line of a plain text file is one, blank or not).
    keep_columns: fill each record's `columns` with its row's columns / JSON keys.
    tfds_data_dir: where TFDS datasets are prepared (default: TFDS's own default).
    config_key: the config key of the source, for error messages.
  """

  def __init__(self,
               fields: dict[str, str],
               *,
               required: tuple[str, ...] = (),
               encoding_errors: str = "strict",
               txt_unit: str = "line",
               entry_separator: str = files.DEFAULT_ENTRY_SEPARATOR,
               blank: str = "error",
               keep_columns: bool = False,
               tfds_data_dir: str | None = None,
               config_key: str = "config.data.source"):
    files.check_choice(encoding_errors, files.ENCODING_ERRORS,
                       setting_names.name("encoding_errors"))
    files.check_choice(txt_unit, files.TXT_UNITS, setting_names.name("txt_unit"))
    if blank not in BLANK_POLICIES:
      raise ValueError(f"blank must be one of {BLANK_POLICIES}, got {blank!r}")
    _check_fields(fields)
    # A required role without a field is looked up under its own name ("text" -> column "text").
    self.fields = {role: role for role in required}
    self.fields.update((role, field.strip()) for role, field in fields.items())
    self.required = tuple(required)
    self.encoding_errors = encoding_errors
    self.txt_unit = txt_unit
    self.entry_separator = entry_separator
    self.blank = blank
    self.keep_columns = keep_columns
    self.tfds_data_dir = tfds_data_dir
    self.config_key = config_key

  def records(self, entry: Entry) -> Iterator[Record]:
    """The records of one entry, streamed in its own order (archive members as packed)."""
    if entry.kind == "tfds":
      return self._tfds(entry)
    if entry.kind == "archive":
      return self._archive(entry.path, entry.member_glob)
    extension = files.inner_extension(entry.path)
    origin = _origin(os.path.abspath(entry.path), os.sep)
    if extension in files.JSONL_EXTENSIONS:
      return self._jsonl(entry.path, origin)
    if extension == files.JSON_EXTENSION:
      return self._json_list(entry.path, origin)
    if extension in files.TABLE_DELIMITERS:
      return self._table(entry.path, origin, files.TABLE_DELIMITERS[extension])
    return self._plain_text(entry.path, origin)

  def _keeps(self, values: dict[str, str], where: str) -> bool:
    """Whether a record with `values` is kept under the blank policy (or an error)."""
    if self.blank == "keep" or all(values[role].strip() for role in self.required):
      return True
    if self.blank == "skip":
      return False
    role = next(role for role in self.required if not values[role].strip())
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

  # --- Local files ------------------------------------------------------------------------------

  def _plain_text(self, path: str, origin: dict[str, str]) -> Iterator[Record]:
    """Blank lines, paragraphs and files separate records: skipped unless blank='keep'."""
    path_roles = self._path_roles(path, f"a plain text file holds one text per {self.txt_unit}")
    origin_values = {role: origin[self.fields[role]] for role in path_roles}
    if self.txt_unit == "file":
      data = files.read_bytes(path)
      if not data:
        raise UserError(f"{path}: file is empty")
      texts = [(path, files.decode_utf8(data, self.encoding_errors, where=path))]
    elif self.txt_unit == "line":  # Records name their line.
      texts = ((f"{path}: line {number}", line.removesuffix("\n").removesuffix("\r"))
               for number, line in files.decoded_lines(path, self.encoding_errors))
    else:
      lines = (
          line.removesuffix("\n") for _, line in files.decoded_lines(path, self.encoding_errors))
      documents = files.split_lines(lines, self.txt_unit, self.entry_separator)
      texts = ((f"{path}: {self.txt_unit} {number}", document)
               for number, document in enumerate(documents, start=1))
    for where, text in texts:
      if text.strip() or self.blank == "keep":
        yield Record({"text": text, **origin_values}, where)

  def _jsonl(self, path: str, origin: dict[str, str]) -> Iterator[Record]:
    for line_number, line in files.decoded_lines(path, self.encoding_errors):
      if line.strip():
        where = f"{path}: line {line_number}"
        yield from self._json_object(files.parse_json_line(line, where), where, origin)

  def _json_list(self, path: str, origin: dict[str, str]) -> Iterator[Record]:
    """A .json file: a list of objects (SAMSum's format), each a record `path: item N`."""
    for number, obj in enumerate(files.read_json_list(path, self.encoding_errors), start=1):
      yield from self._json_object(obj, f"{path}: item {number}", origin)

  def _json_object(self, obj: dict, where: str, origin: dict[str, str]) -> Iterator[Record]:
    values = {}
    for role, field in self._present((k for k, v in obj.items() if v is not None), where,
                                     "key").items():
      values[role] = origin[field] if field in PATH_FIELDS else files.check_text(
          _json_string(obj[field], field, where), self.encoding_errors, where=where)
    if self._keeps(values, where):
      yield Record(values, where, obj if self.keep_columns else {})

  def _table(self, path: str, origin: dict[str, str], delimiter: str) -> Iterator[Record]:
    lines = (line for _, line in files.decoded_lines(path, self.encoding_errors))
    reader = files.table_reader(lines, delimiter)
    line_number = 1  # Where the row being read starts.
    try:
      header = next(reader, None)
      if header is None:
        return
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
        if self._keeps(values, where):
          yield Record(values, where, dict(zip(header, row)) if self.keep_columns else {})
    except csv.Error as e:
      raise files.table_error(e, path, line_number, delimiter) from None

  # --- Tar archives -----------------------------------------------------------------------------

  def _archive(self, path: str, member_glob: str) -> Iterator[Record]:
    path_roles = self._path_roles(f"{path}:{member_glob}", "an archive member is read as one text")
    for name, text in files.iter_archive(path, member_glob, self.encoding_errors):
      where = f"{path}: {name}"
      origin = _origin(name, "/")
      values = {"text": text, **{role: origin[self.fields[role]] for role in path_roles}}
      if self._keeps(values, where):
        yield Record(values, where)

  # --- TFDS -------------------------------------------------------------------------------------

  def _tfds(self, entry: Entry) -> Iterator[Record]:
    where = f"{self.config_key}='tfds:{entry.path}' (split {entry.split!r})"
    if any(field in PATH_FIELDS for field in self.fields.values()):
      raise UserError(f"{where}: TFDS examples have no file or directory; '{DIR_FIELD}' and"
                      f" '{FILE_FIELD}' work only for local files and archives")
    data_source = _open_tfds(entry.path, entry.split, self.tfds_data_dir, self.config_key, where)
    for index, example in enumerate(data_source):
      example_where = f"{entry.name}, example {index}"
      if not isinstance(example, dict):
        raise UserError(f"{example_where}: expected a dict of features, got"
                        f" {type(example).__name__}")
      values = {}
      for role, field in self._present(example, example_where, "feature").items():
        values[role] = _tfds_string(example, field, self.encoding_errors, example_where)
      if self._keeps(values, example_where):
        yield Record(values, example_where)


def _check_fields(fields: dict[str, str]) -> None:
  if not isinstance(fields, dict):
    raise TypeError(f"fields must be a dict role -> field name, got {fields!r}")
  for role, field in fields.items():
    if not isinstance(field, str) or not field.strip():
      raise UserError(f"{_field_key(role)} is empty: set it to a column / key / feature name")


def _field_key(role: str) -> str:
  return setting_names.name(f"{role}_field")


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
  """`tfds.data_source(name, split)`, never downloading: a dataset that is not prepared locally
  is a `UserError` saying how to prepare it, so runs and tests stay offline."""
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
    raise UserError(
        f"{where}: {_open_failure_reason(tfds, name, data_dir, e)}. Prepare it once (needs"
        f" network) with `tfds build {name} --file_format=array_record` or"
        f" `tfds.builder({name!r}).download_and_prepare(file_format='array_record')`") from None


def _open_failure_reason(tfds: Any, name: str, data_dir: str | None, error: Exception) -> str:
  """Why `tfds.data_source` failed, in words (TFDS's own message is misleading when unprepared)."""
  try:
    builder = tfds.builder(name, data_dir=data_dir)
    prepared, location = builder.is_prepared(), builder.data_dir
  except Exception:  # pylint: disable=broad-except
    prepared = None
    location = data_dir or os.environ.get("TFDS_DATA_DIR", "~/tensorflow_datasets")
  if prepared is False:
    return f"the dataset is not prepared in {location}"
  if isinstance(error, NotImplementedError):
    return f"the dataset in {location} is prepared as TFRecord, but random access needs ArrayRecord"
  first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
  return f"cannot open it in {location} ({first_line}; check that the split exists)"


def _tfds_string(example: dict[str, Any], field: str, encoding_errors: str, where: str) -> str:
  """A feature as a string: integers in decimal, bytes (TFDS's Text features) decoded as UTF-8."""
  value = example[field]
  if isinstance(value, np.ndarray) and value.ndim == 0:
    value = value.item()
  if isinstance(value, (bool, np.bool_)):
    return "true" if value else "false"
  if isinstance(value, (int, np.integer)):
    return str(int(value))
  if isinstance(value, str):
    return value
  if isinstance(value, bytes):  # Also numpy.bytes_.
    try:
      return value.decode("utf-8", errors=encoding_errors)
    except UnicodeDecodeError as e:
      raise UserError(f"{where}: invalid UTF-8 at byte offset {e.start} of feature {field!r};"
                      f" set {setting_names.name('encoding_errors')}='replace'") from None
  raise UserError(f"{where}: feature {field!r} is {type(value).__name__}, not text or an integer")
