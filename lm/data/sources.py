"""Reading raw documents: local text/JSONL/CSV/TSV files (optionally gzip'ed) or a TFDS dataset.

A *document* is one string; the token store later joins documents with EOS. Every problem with
the data the user pointed at raises `UserError` naming the file, the line or the config key.
"""

import bisect
import csv
import glob
import gzip
import io
import json
import os
import re
import zlib

from lm.data import tfds_source
from lm.errors import UserError

TFDS_PREFIX = "tfds:"
TXT_UNITS = ("file", "line", "paragraph")
ENCODING_ERRORS = ("strict", "replace")
_JSONL_EXTENSIONS = (".jsonl", ".ndjson")
_TABLE_DELIMITERS = {".csv": ",", ".tsv": "\t"}
_UTF8_BOM = b"\xef\xbb\xbf"
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
# A JSON escape such as "\ud800" that is half of a UTF-16 pair: no character, not encodable.
_SURROGATE_RE = re.compile("[\ud800-\udfff]")
# The longest JSONL line or CSV/TSV field accepted, in characters. In these formats a record
# this long is nearly always a broken file (a missing newline, an unclosed quote), not data.
# Plain text files and archive members have no limit.
MAX_RECORD_CHARS = 1 << 24
_GLOB_CHARS = frozenset("*?[")
# An archive entry of a source: PATH.tar[.gz|...] and, after a colon, a glob of its members.
ARCHIVE_RE = re.compile(r"^(.*?\.(?:tar|tar\.gz|tgz|tar\.bz2|tbz2|tar\.xz|txz))(?::(.*))?$",
                        re.IGNORECASE)


def read_documents(
    source: str,
    *,
    split: str,
    text_field: str = "text",
    txt_unit: str = "file",
    encoding_errors: str = "strict",
    config_key: str = "config.data.source",
    tfds_data_dir: str | None = None,
) -> list[str]:
  """Reads all documents of `source`.

  Args:
    source: comma-separated local paths or globs, or `tfds:NAME` (e.g. `tfds:lm1b`).
    split: the TFDS split (`train`, `validation`, `train[:90%]`, ...); local files have no
      splits (point `source` at the split's files), so it is ignored for them.
    text_field: JSONL key, CSV/TSV column or TFDS feature holding the text.
    txt_unit: what one document is in a plain text file: the whole `file`, each non-blank
      `line`, or each blank-line separated `paragraph`.
    encoding_errors: `strict` (undecodable UTF-8 is an error) or `replace` (U+FFFD).
    config_key: the config key `source` came from, for error messages.
    tfds_data_dir: where TFDS datasets are prepared (default: TFDS's own default).

  Returns:
    The non-blank documents, in file order.
  """
  _check_choice(txt_unit, TXT_UNITS, "config.data.txt_unit")
  _check_choice(encoding_errors, ENCODING_ERRORS, "config.data.encoding_errors")
  if not isinstance(source, str) or not source.strip():
    raise UserError(f"{config_key} is empty: set it to a file, a glob or 'tfds:NAME'")
  source = source.strip()
  if source.startswith(TFDS_PREFIX):
    return tfds_source.read_tfds(
        source[len(TFDS_PREFIX):].strip(),
        split=split,
        text_field=text_field,
        encoding_errors=encoding_errors,
        data_dir=tfds_data_dir,
        config_key=config_key,
    )
  if _has_archive(source):
    from lm.data import records  # pylint: disable=g-import-not-at-top  # records imports us.
    found = records.read_records(source,
                                 fields={"text": text_field},
                                 encoding_errors=encoding_errors,
                                 config_key=config_key)
    return [r.values["text"] for r in found if r.values.get("text", "").strip()]
  documents = []
  for path in resolve_files(source, config_key=config_key):
    documents.extend(
        read_file(path, text_field=text_field, txt_unit=txt_unit, encoding_errors=encoding_errors))
  return documents


def resolve_files(source: str, *, config_key: str = "config.data.source") -> list[str]:
  """Expands a comma-separated list of paths and globs into existing files (globs sorted)."""
  entries = [entry.strip() for entry in source.split(",") if entry.strip()]
  if not entries:
    raise UserError(f"{config_key} is empty: set it to a file, a glob or 'tfds:NAME'")
  paths = []
  for entry in entries:
    pattern = os.path.expanduser(entry)
    if _GLOB_CHARS.intersection(pattern):
      matches = sorted(p for p in glob.glob(pattern, recursive=True) if os.path.isfile(p))
      if not matches:
        raise UserError(f"{config_key}: no file matches '{entry}'")
      paths.extend(matches)
    elif os.path.isdir(pattern):
      raise UserError(
          f"{config_key}: '{entry}' is a directory; name the files, e.g. '{entry}/*.txt'")
    elif not os.path.isfile(pattern):
      raise UserError(f"{config_key}: file not found: '{entry}'")
    else:
      paths.append(pattern)
  return list(dict.fromkeys(paths))  # Drops duplicates, keeps order.


def source_fingerprint(source: str, *, config_key: str = "config.data.source") -> dict:
  """A JSON-able identity of `source` for cache keys: path, size and mtime of every file."""
  source = source.strip()
  if source.startswith(TFDS_PREFIX):
    return {"tfds": source[len(TFDS_PREFIX):].strip()}
  files = []
  for entry in filter(str.strip, source.split(",")):
    match = ARCHIVE_RE.match(entry.strip())
    path_glob = match.group(1) if match else entry
    for path in resolve_files(path_glob, config_key=config_key):
      stat = os.stat(path)
      files.append({
          "path": os.path.abspath(path),
          "members": match.group(2) if match else None,
          "size": stat.st_size,
          "mtime_ns": stat.st_mtime_ns
      })
  return {"files": files}


def _has_archive(source: str) -> bool:
  return any(ARCHIVE_RE.match(entry.strip()) for entry in source.split(","))


def read_file(path: str,
              *,
              text_field: str = "text",
              txt_unit: str = "file",
              encoding_errors: str = "strict") -> list[str]:
  """Reads the documents of one local file; the format comes from its extension."""
  data = _read_bytes(path)
  if not data:
    raise UserError(f"{path}: file is empty")
  text = decode_utf8(data, encoding_errors, where=path)
  extension = _inner_extension(path)
  if extension in _JSONL_EXTENSIONS:
    documents = _parse_jsonl(text, path, text_field, encoding_errors)
  elif extension in _TABLE_DELIMITERS:
    documents = _parse_table(text, path, text_field, _TABLE_DELIMITERS[extension])
  else:
    documents = split_text(text, txt_unit)
  if not documents:
    raise UserError(f"{path}: no documents found (the file holds only blank text)")
  return documents


def decode_utf8(data: bytes, encoding_errors: str, *, where: str) -> str:
  """Decodes UTF-8 (dropping a leading BOM); strict failures name the line and byte offset."""
  offset = len(_UTF8_BOM) if data.startswith(_UTF8_BOM) else 0
  try:
    return data[offset:].decode("utf-8", errors=encoding_errors)
  except UnicodeDecodeError as e:
    position = offset + e.start
    line = data.count(b"\n", 0, position) + 1
    hint = ("it starts with a UTF-16 byte-order mark: save it as UTF-8"
            if data.startswith(_UTF16_BOMS) else
            "fix the file or set config.data.encoding_errors='replace'")
    raise UserError(f"{where}: line {line}: invalid UTF-8 byte 0x{data[position]:02x} at byte "
                    f"offset {position}; {hint}") from None


def check_text(text: str, encoding_errors: str, *, where: str) -> str:
  """`text` from a JSON string, whose escapes may hold unpaired surrogates (no characters):
  an error naming `where`, or each replaced by U+FFFD with encoding_errors='replace'."""
  match = _SURROGATE_RE.search(text)
  if match is None:
    return text
  if encoding_errors == "replace":
    return _SURROGATE_RE.sub("\ufffd", text)
  raise UserError(f"{where}: unpaired surrogate \\u{ord(match.group()):04x} (not a character); "
                  f"fix the file or set config.data.encoding_errors='replace'")


def parse_json_line(line: str, where: str) -> dict:
  """One JSONL line as a JSON object; every problem a UserError naming `where`."""
  if len(line) > MAX_RECORD_CHARS:
    raise UserError(f"{where}: {len(line):,} characters on one line, more than the"
                    f" {MAX_RECORD_CHARS:,} of a record; is a newline missing?")
  try:
    record = json.loads(line)
  except json.JSONDecodeError as e:
    raise UserError(f"{where}: not valid JSON ({e.msg} at column {e.colno})") from None
  except RecursionError:
    raise UserError(f"{where}: not valid JSON here (nested too deeply)") from None
  except ValueError as e:  # E.g. an integer of more than 4300 digits.
    raise UserError(f"{where}: not valid JSON here ({str(e).split(';')[0]})") from None
  if not isinstance(record, dict):
    raise UserError(f"{where}: expected a JSON object, got {type(record).__name__}")
  return record


def split_text(text: str, txt_unit: str) -> list[str]:
  """Splits plain text into documents; blank documents are dropped."""
  _check_choice(txt_unit, TXT_UNITS, "config.data.txt_unit")
  if txt_unit == "file":
    return [text] if text.strip() else []
  lines = [line.removesuffix("\r") for line in text.split("\n")]
  if txt_unit == "line":
    return [line for line in lines if line.strip()]
  paragraphs, block = [], []
  for line in lines + [""]:  # The sentinel blank line closes the last block.
    if line.strip():
      block.append(line)
    elif block:
      paragraphs.append("\n".join(block))
      block = []
  return paragraphs


def split_train_valid(documents: list[str], valid_fraction: float) -> tuple[list[str], list[str]]:
  """Splits off the last `valid_fraction` of the text as validation data.

  One document is cut at character `int(len * (1 - valid_fraction))` (nanoGPT's split of Tiny
  Shakespeare); several are cut at the first document boundary where the running character
  count reaches `1 - valid_fraction` of the total, keeping at least one document per side.
  """
  if (isinstance(valid_fraction, bool) or not isinstance(valid_fraction, (int, float)) or
      not 0.0 < valid_fraction < 1.0):
    raise UserError(
        f"config.data.valid_fraction must be a number in (0, 1), got {valid_fraction!r}")
  if not documents:
    raise UserError("no documents to split into train and validation data (config.data.source)")
  if len(documents) == 1:
    text = documents[0]
    cut = int(len(text) * (1.0 - valid_fraction))
    if not 0 < cut < len(text):
      raise UserError(f"the single document has {len(text)} characters: too short to split with"
                      f" config.data.valid_fraction={valid_fraction}")
    return [text[:cut]], [text[cut:]]
  cumulative, total = [], 0
  for document in documents:
    total += len(document)
    cumulative.append(total)
  # Smallest k with cumulative[k - 1] >= target, i.e. train = documents[:k].
  k = bisect.bisect_left(cumulative, total * (1.0 - valid_fraction)) + 1
  k = min(max(k, 1), len(documents) - 1)
  return documents[:k], documents[k:]


def _check_choice(value: str, choices: tuple[str, ...], config_key: str) -> None:
  if value not in choices:
    raise UserError(f"{config_key} must be one of {', '.join(choices)}; got {value!r}")


def _read_bytes(path: str) -> bytes:
  try:
    if path.endswith(".gz"):
      with gzip.open(path, "rb") as f:
        return f.read()
    with open(path, "rb") as f:
      return f.read()
  except FileNotFoundError:
    raise UserError(f"{path}: file not found") from None
  except IsADirectoryError:
    raise UserError(f"{path}: is a directory, not a file") from None
  except PermissionError:
    raise UserError(f"{path}: permission denied") from None
  except (gzip.BadGzipFile, EOFError, zlib.error) as e:
    raise UserError(f"{path}: not a valid gzip file ({e})") from None


def _inner_extension(path: str) -> str:
  """The extension that decides the format, looking through a trailing `.gz`."""
  name = os.path.basename(path).lower().removesuffix(".gz")
  return os.path.splitext(name)[1]


def _parse_jsonl(text: str, path: str, text_field: str, encoding_errors: str) -> list[str]:
  documents = []
  for line_number, line in enumerate(text.split("\n"), start=1):
    if not line.strip():
      continue
    record = parse_json_line(line, f"{path}: line {line_number}")
    if text_field not in record:
      fields = ", ".join(map(repr, record)) or "none"
      raise UserError(f"{path}: line {line_number}: no field {text_field!r} (fields: {fields});"
                      " set config.data.text_field")
    value = record[text_field]
    if not isinstance(value, str):
      raise UserError(f"{path}: line {line_number}: field {text_field!r} is {type(value).__name__},"
                      " not a string")
    if value.strip():
      documents.append(check_text(value, encoding_errors, where=f"{path}: line {line_number}"))
  return documents


def table_reader(text: str, delimiter: str):
  """A csv reader over `text` with the project's conventions for CSV and TSV files."""
  # TSV files such as GLUE's are unquoted and may hold bare `"` characters inside the text.
  quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
  # Long documents (whole articles in one cell) exceed csv's default 128 KiB field limit.
  csv.field_size_limit(MAX_RECORD_CHARS)
  # strict: a quoted field never closed is an error, not the rest of the file in one cell.
  return csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, quoting=quoting,
                    strict=True)


def table_error(error: csv.Error, path: str, line: int, delimiter: str) -> UserError:
  """A csv module error in the row that starts at `line`, as a UserError."""
  reason = str(error)
  if "field larger than field limit" in reason:
    reason = f"a field longer than {MAX_RECORD_CHARS:,} characters; is a quote never closed?"
  elif "unexpected end of data" in reason:
    reason = "a quoted field opened in this row is never closed"
  return UserError(f"{path}: line {line}: malformed {delimiter!r}-separated row ({reason})")


def _parse_table(text: str, path: str, text_field: str, delimiter: str) -> list[str]:
  reader = table_reader(text, delimiter)
  documents = []
  line = 1  # Where the row being read starts.
  try:
    header = next(reader, None)
    if header is None:
      return []
    if text_field not in header:
      columns = ", ".join(map(repr, header))
      raise UserError(
          f"{path}: line 1: no column {text_field!r} in the header (columns: {columns});"
          " set config.data.text_field")
    column = header.index(text_field)
    line = reader.line_num + 1
    for row in reader:
      if row and column >= len(row):
        raise UserError(f"{path}: line {line}: row has {len(row)} fields, but column"
                        f" {text_field!r} is field {column + 1}")
      if row and row[column].strip():
        documents.append(row[column])
      line = reader.line_num + 1
  except csv.Error as e:
    raise table_error(e, path, line, delimiter) from None
  return documents
