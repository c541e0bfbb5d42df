"""Reading raw documents: local text/JSONL/CSV/TSV files (optionally gzip'ed) or a TFDS dataset.

A *document* is one string; the token store later joins documents with EOS. Every problem with
the data the user pointed at raises `UserError` naming the file, the line or the config key.
`iter_file` and `iter_archive` stream (constant memory, except a whole-file document); the
`read_*` functions collect them into lists for training.
"""

import bisect
import csv
import fnmatch
import glob
import gzip
import io
import json
import os
import re
import tarfile
import zlib
from typing import Iterable, Iterator

from lm.data import data_root, setting_names, tfds_source
from lm.errors import UserError

TFDS_PREFIX = "tfds:"
TXT_UNITS = ("file", "line", "paragraph", "entry")
# In txt_unit='entry' files (fortune(6) style), a line holding just this closes an entry.
DEFAULT_ENTRY_SEPARATOR = "%"
ENCODING_ERRORS = ("strict", "replace")
JSONL_EXTENSIONS = (".jsonl", ".ndjson")
TABLE_DELIMITERS = {".csv": ",", ".tsv": "\t"}
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
    entry_separator: str = DEFAULT_ENTRY_SEPARATOR,
) -> list[str]:
  """Reads all documents of `source`.

  Args:
    source: comma-separated local paths or globs, or `tfds:NAME` (e.g. `tfds:lm1b`).
    split: the TFDS split (`train`, `validation`, `train[:90%]`, ...); local files have no
      splits (point `source` at the split's files), so it is ignored for them.
    text_field: JSONL key, CSV/TSV column or TFDS feature holding the text.
    txt_unit: what one document is in a plain text file: the whole `file`, each non-blank
      `line`, each blank-line separated `paragraph`, or each `entry` between lines holding
      just `entry_separator`.
    encoding_errors: `strict` (undecodable UTF-8 is an error) or `replace` (U+FFFD).
    config_key: the config key `source` came from, for error messages.
    tfds_data_dir: where TFDS datasets are prepared (default: TFDS's own default).
    entry_separator: the separator line of txt_unit='entry'.

  Returns:
    The non-blank documents, in file order.
  """
  check_choice(txt_unit, TXT_UNITS, setting_names.name("txt_unit"))
  check_choice(encoding_errors, ENCODING_ERRORS, setting_names.name("encoding_errors"))
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
        read_file(path, text_field=text_field, txt_unit=txt_unit, encoding_errors=encoding_errors,
                  entry_separator=entry_separator))
  return documents


def resolve_files(source: str,
                  *,
                  config_key: str = "config.data.source",
                  directories: bool = False) -> list[str]:
  """Expands a comma-separated list of paths and globs into existing files (globs sorted).

  With `directories`, a directory stands for every file below it (sorted); otherwise it is an
  error.
  """
  entries = [entry.strip() for entry in source.split(",") if entry.strip()]
  if not entries:
    raise UserError(f"{config_key} is empty: set it to a file, a glob or 'tfds:NAME'")
  paths = []
  for entry in entries:
    pattern = os.path.expanduser(entry)
    if _GLOB_CHARS.intersection(pattern):
      matches = sorted(p for p in glob.glob(pattern, recursive=True) if os.path.isfile(p))
      if not matches:
        raise UserError(f"{config_key}: no file matches '{entry}'"
                        f"{data_root.missing_hint(entry)}")
      paths.extend(matches)
    elif os.path.isdir(pattern) and directories:
      below = sorted(p for p in glob.glob(os.path.join(pattern, "**", "*"), recursive=True)
                     if os.path.isfile(p))
      if not below:
        raise UserError(f"{config_key}: directory '{entry}' holds no files")
      paths.extend(below)
    elif os.path.isdir(pattern):
      raise UserError(
          f"{config_key}: '{entry}' is a directory; name the files, e.g. '{entry}/*.txt'")
    elif not os.path.isfile(pattern):
      raise UserError(f"{config_key}: file not found: '{entry}'{data_root.missing_hint(entry)}")
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
              encoding_errors: str = "strict",
              entry_separator: str = DEFAULT_ENTRY_SEPARATOR) -> list[str]:
  """Reads the documents of one local file; the format comes from its extension."""
  documents = list(
      iter_file(path, text_field=text_field, txt_unit=txt_unit, encoding_errors=encoding_errors,
                entry_separator=entry_separator))
  if not documents:
    raise UserError(f"{path}: no documents found (the file holds only blank text)")
  return documents


def iter_file(path: str,
              *,
              text_field: str = "text",
              txt_unit: str = "file",
              encoding_errors: str = "strict",
              entry_separator: str = DEFAULT_ENTRY_SEPARATOR) -> Iterator[str]:
  """Streams the non-blank documents of one local file (format from its extension).

  Memory stays constant in the file size, except for txt_unit='file' (one document is the
  whole file).
  """
  check_choice(txt_unit, TXT_UNITS, setting_names.name("txt_unit"))
  check_choice(encoding_errors, ENCODING_ERRORS, setting_names.name("encoding_errors"))
  extension = inner_extension(path)
  if extension in JSONL_EXTENSIONS:
    yield from _jsonl_documents(_decoded_lines(path, encoding_errors), path, text_field,
                                encoding_errors)
  elif extension in TABLE_DELIMITERS:
    lines = (line for _, line in _decoded_lines(path, encoding_errors))
    yield from _table_documents(lines, path, text_field, TABLE_DELIMITERS[extension])
  elif txt_unit == "file":
    data = read_bytes(path)
    if not data:
      raise UserError(f"{path}: file is empty")
    text = decode_utf8(data, encoding_errors, where=path)
    if text.strip():
      yield text
  else:
    lines = (line.removesuffix("\n") for _, line in _decoded_lines(path, encoding_errors))
    yield from split_lines(lines, txt_unit, entry_separator)


def iter_archive(path: str,
                 member_glob: str,
                 encoding_errors: str = "strict") -> Iterator[tuple[str, str]]:
  """Streams (member name, text) of the regular-file members of tar archive `path` whose
  names match `member_glob`, in archive order, reading the (compressed) archive once."""
  matched, examples = 0, []
  last = None  # The last member read whole, to say where a broken archive breaks.
  try:
    with tarfile.open(path, "r|*") as tar:
      for member in tar:
        if not member.isfile():
          continue
        if len(examples) < 3:
          examples.append(member.name)
        if fnmatch.fnmatchcase(member.name, member_glob):
          data = tar.extractfile(member).read()
          matched += 1
          yield member.name, decode_utf8(data, encoding_errors, where=f"{path}: {member.name}")
        last = member.name
  except FileNotFoundError:
    raise UserError(f"{path}: file not found{data_root.missing_hint(path)}") from None
  except (tarfile.TarError, EOFError, OSError, zlib.error) as e:
    if last is None and "could not be opened" in str(e):
      reason = "not a valid tar archive (plain, .gz, .bz2 or .xz)"
    else:
      after = f" after member '{last}'" if last else ""
      reason = f"not a valid tar archive: truncated or corrupt{after} ({' '.join(str(e).split())})"
    raise UserError(f"{path}: {reason}") from None
  if not matched:
    names = ", ".join(examples) or "none"
    raise UserError(
        f"{path}: no archive member matches '{member_glob}' (members are named like {names})")


def decode_utf8(data: bytes, encoding_errors: str, *, where: str) -> str:
  """Decodes UTF-8 (dropping a leading BOM); strict failures name the line and byte offset."""
  offset = len(_UTF8_BOM) if data.startswith(_UTF8_BOM) else 0
  try:
    return data[offset:].decode("utf-8", errors=encoding_errors)
  except UnicodeDecodeError as e:
    position = offset + e.start
    line = data.count(b"\n", 0, position) + 1
    raise _utf8_error(where, line, position, data[position], data.startswith(_UTF16_BOMS)) from None


def _utf8_error(where: str, line: int, position: int, byte: int, utf16: bool) -> UserError:
  hint = ("it starts with a UTF-16 byte-order mark: save it as UTF-8"
          if utf16 else
          f"fix the file or set {setting_names.name('encoding_errors')}='replace'")
  return UserError(f"{where}: line {line}: invalid UTF-8 byte 0x{byte:02x} at byte "
                   f"offset {position}; {hint}")


def _decoded_lines(path: str, encoding_errors: str) -> Iterator[tuple[int, str]]:
  """(line number, decoded line with its newline) of a file, streamed; a leading BOM dropped."""
  try:
    with _open_binary(path) as f:
      offset, line_number, utf16 = 0, 0, False
      for line_number, raw in enumerate(f, start=1):
        start = 0
        if line_number == 1:
          utf16 = raw.startswith(_UTF16_BOMS)
          start = len(_UTF8_BOM) if raw.startswith(_UTF8_BOM) else 0
        try:
          yield line_number, raw[start:].decode("utf-8", errors=encoding_errors)
        except UnicodeDecodeError as e:
          position = start + e.start
          raise _utf8_error(path, line_number, offset + position, raw[position], utf16) from None
        offset += len(raw)
  except (gzip.BadGzipFile, EOFError, zlib.error) as e:
    raise UserError(f"{path}: not a valid gzip file ({e})") from None
  if line_number == 0:
    raise UserError(f"{path}: file is empty")


def check_text(text: str, encoding_errors: str, *, where: str) -> str:
  """`text` from a JSON string, whose escapes may hold unpaired surrogates (no characters):
  an error naming `where`, or each replaced by U+FFFD with encoding_errors='replace'."""
  match = _SURROGATE_RE.search(text)
  if match is None:
    return text
  if encoding_errors == "replace":
    return _SURROGATE_RE.sub("\ufffd", text)
  raise UserError(f"{where}: unpaired surrogate \\u{ord(match.group()):04x} (not a character); "
                  f"fix the file or set {setting_names.name('encoding_errors')}='replace'")


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


def split_text(text: str,
               txt_unit: str,
               entry_separator: str = DEFAULT_ENTRY_SEPARATOR) -> list[str]:
  """Splits plain text into documents; blank documents are dropped."""
  check_choice(txt_unit, TXT_UNITS, setting_names.name("txt_unit"))
  if txt_unit == "file":
    return [text] if text.strip() else []
  return list(split_lines(text.split("\n"), txt_unit, entry_separator))


def split_lines(lines: Iterable[str],
                txt_unit: str,
                entry_separator: str = DEFAULT_ENTRY_SEPARATOR) -> Iterator[str]:
  """Groups lines (without their newline) into the non-blank documents of `txt_unit`.

  'line': each line; 'paragraph': blocks of non-blank lines; 'entry': the lines between lines
  that hold just `entry_separator` (surrounding spaces ignored), joined with newlines as they
  are, inner blank lines included (leading and trailing ones dropped). A trailing CR is dropped
  from every line.
  """
  check_choice(txt_unit, ("line", "paragraph", "entry"), setting_names.name("txt_unit"))
  if txt_unit == "entry" and not entry_separator.strip():
    raise UserError("config.data.entry_separator is blank: set it to the line that separates"
                    " entries, e.g. '%'")
  separator = entry_separator.strip()
  block = []
  for line in lines:
    line = line.removesuffix("\r")
    if txt_unit == "line":
      if line.strip():
        yield line
    elif txt_unit == "entry" and line.strip() != separator:
      block.append(line)
    elif txt_unit == "paragraph" and line.strip():
      block.append(line)
    else:  # The end of a paragraph or an entry.
      if any(b.strip() for b in block):
        yield _join_block(block)
      block = []
  if any(b.strip() for b in block):
    yield _join_block(block)


def _join_block(lines: list[str]) -> str:
  """The lines of a paragraph or entry, without blank lines at its start and end."""
  first = next(i for i, line in enumerate(lines) if line.strip())
  last = max(i for i, line in enumerate(lines) if line.strip())
  return "\n".join(lines[first:last + 1])


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


def check_choice(value: str, choices: tuple[str, ...], config_key: str) -> None:
  if value not in choices:
    raise UserError(f"{config_key} must be one of {', '.join(choices)}; got {value!r}")


def _open_binary(path: str):
  """`path` opened for binary reading, through gzip for `.gz`; opening errors as UserError."""
  try:
    return gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb")
  except FileNotFoundError:
    raise UserError(f"{path}: file not found{data_root.missing_hint(path)}") from None
  except IsADirectoryError:
    raise UserError(f"{path}: is a directory, not a file") from None
  except PermissionError:
    raise UserError(f"{path}: permission denied") from None


def read_bytes(path: str) -> bytes:
  with _open_binary(path) as f:
    try:
      return f.read()
    except (gzip.BadGzipFile, EOFError, zlib.error) as e:
      raise UserError(f"{path}: not a valid gzip file ({e})") from None


def inner_extension(path: str) -> str:
  """The extension that decides the format, looking through a trailing `.gz`."""
  name = os.path.basename(path).lower().removesuffix(".gz")
  return os.path.splitext(name)[1]


def _jsonl_documents(lines: Iterable[tuple[int, str]], path: str, text_field: str,
                     encoding_errors: str) -> Iterator[str]:
  for line_number, line in lines:
    if not line.strip():
      continue
    record = parse_json_line(line, f"{path}: line {line_number}")
    if text_field not in record:
      fields = ", ".join(map(repr, record)) or "none"
      raise UserError(f"{path}: line {line_number}: no field {text_field!r} (fields: {fields});"
                      f" set {setting_names.name('text_field')}")
    value = record[text_field]
    if not isinstance(value, str):
      raise UserError(f"{path}: line {line_number}: field {text_field!r} is {type(value).__name__},"
                      " not a string")
    if value.strip():
      yield check_text(value, encoding_errors, where=f"{path}: line {line_number}")


def table_reader(text: str | Iterable[str], delimiter: str):
  """A csv reader over `text` (a string, or lines with their line endings) with the project's
  conventions for CSV and TSV files."""
  # TSV files such as GLUE's are unquoted and may hold bare `"` characters inside the text.
  quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
  # Long documents (whole articles in one cell) exceed csv's default 128 KiB field limit.
  csv.field_size_limit(MAX_RECORD_CHARS)
  # strict: a quoted field never closed is an error, not the rest of the file in one cell.
  lines = io.StringIO(text, newline="") if isinstance(text, str) else text
  return csv.reader(lines, delimiter=delimiter, quoting=quoting, strict=True)


def table_error(error: csv.Error, path: str, line: int, delimiter: str) -> UserError:
  """A csv module error in the row that starts at `line`, as a UserError."""
  reason = str(error)
  if "field larger than field limit" in reason:
    reason = f"a field longer than {MAX_RECORD_CHARS:,} characters; is a quote never closed?"
  elif "unexpected end of data" in reason:
    reason = "a quoted field opened in this row is never closed"
  return UserError(f"{path}: line {line}: malformed {delimiter!r}-separated row ({reason})")


def _table_documents(lines: Iterable[str], path: str, text_field: str,
                     delimiter: str) -> Iterator[str]:
  reader = table_reader(lines, delimiter)
  line = 1  # Where the row being read starts.
  try:
    header = next(reader, None)
    if header is None:
      return
    if text_field not in header:
      columns = ", ".join(map(repr, header))
      raise UserError(
          f"{path}: line 1: no column {text_field!r} in the header (columns: {columns});"
          f" set {setting_names.name('text_field')}")
    column = header.index(text_field)
    line = reader.line_num + 1
    for row in reader:
      if row and column >= len(row):
        raise UserError(f"{path}: line {line}: row has {len(row)} fields, but column"
                        f" {text_field!r} is field {column + 1}")
      if row and row[column].strip():
        yield row[column]
      line = reader.line_num + 1
  except csv.Error as e:
    raise table_error(e, path, line, delimiter) from None
