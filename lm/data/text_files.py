"""Local text files as the readers see them: paths and globs, gzip, UTF-8 with errors that name
the line and byte, lines, JSONL objects, CSV/TSV rows, tar members, and plain text split into
documents (lines, paragraphs, fortune(6)-style entries).

Every problem with a file the user pointed at raises `UserError` naming the file and the line;
everything here streams, except the functions that return a whole file.
"""

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

from lm.data import data_root, setting_names
from lm.errors import UserError

TXT_UNITS = ("file", "line", "paragraph", "entry")
# In txt_unit='entry' files (fortune(6) style), a line holding just this closes an entry.
DEFAULT_ENTRY_SEPARATOR = "%"
ENCODING_ERRORS = ("strict", "replace")
JSONL_EXTENSIONS = (".jsonl", ".ndjson")
JSON_EXTENSION = ".json"  # A JSON list of objects.
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


def check_choice(value: str, choices: tuple[str, ...], config_key: str) -> None:
  if value not in choices:
    raise UserError(f"{config_key} must be one of {', '.join(choices)}; got {value!r}")


def inner_extension(path: str) -> str:
  """The extension that decides the format, looking through a trailing `.gz`."""
  name = os.path.basename(path).lower().removesuffix(".gz")
  return os.path.splitext(name)[1]


def open_binary(path: str):
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
  with open_binary(path) as f:
    try:
      return f.read()
    except (gzip.BadGzipFile, EOFError, zlib.error) as e:
      raise UserError(f"{path}: not a valid gzip file ({e})") from None


def decode_utf8(data: bytes, encoding_errors: str, *, where: str) -> str:
  """Decodes UTF-8 (dropping a leading BOM); strict failures name the line and byte offset."""
  offset = len(_UTF8_BOM) if data.startswith(_UTF8_BOM) else 0
  try:
    return data[offset:].decode("utf-8", errors=encoding_errors)
  except UnicodeDecodeError as e:
    position = offset + e.start
    line = data.count(b"\n", 0, position) + 1
    raise _utf8_error(where, line, position, data[position], data.startswith(_UTF16_BOMS)) from None


def decoded_lines(path: str, encoding_errors: str) -> Iterator[tuple[int, str]]:
  """(line number, decoded line with its newline) of a file, streamed; a leading BOM dropped."""
  try:
    with open_binary(path) as f:
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


def _utf8_error(where: str, line: int, position: int, byte: int, utf16: bool) -> UserError:
  hint = ("it starts with a UTF-16 byte-order mark: save it as UTF-8"
          if utf16 else
          f"fix the file or set {setting_names.name('encoding_errors')}='replace'")
  return UserError(f"{where}: line {line}: invalid UTF-8 byte 0x{byte:02x} at byte "
                   f"offset {position}; {hint}")


def iter_archive(path: str,
                 member_glob: str,
                 encoding_errors: str = "strict") -> Iterator[tuple[str, str]]:
  """Streams (member name, text) of the regular-file members of tar archive `path` whose
  names match `member_glob`, in archive order, reading the (compressed) archive once."""
  matched, examples = 0, []
  last = None  # The last member read whole, to say where a broken archive breaks.
  try:
    with _open_tar_stream(path) as tar:
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


def _open_tar_stream(path: str) -> tarfile.TarFile:
  try:
    return tarfile.open(path, "r|*")
  except TypeError:  # Python 3.11's tarfile, on a .gz cut inside its header (b"\x1f\x8b\x08").
    raise tarfile.ReadError("truncated gzip header") from None


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


def read_json_list(path: str, encoding_errors: str) -> list[dict]:
  """A .json file holding a list of JSON objects (read whole); every problem a UserError."""
  data = read_bytes(path)
  if not data.strip():
    raise UserError(f"{path}: file is empty")
  text = decode_utf8(data, encoding_errors, where=path)
  try:
    items = json.loads(text)
  except json.JSONDecodeError as e:
    raise UserError(f"{path}: line {e.lineno}: not valid JSON ({e.msg} at column {e.colno})"
                   ) from None
  except (RecursionError, ValueError) as e:
    raise UserError(f"{path}: not valid JSON ({type(e).__name__})") from None
  if not isinstance(items, list):
    raise UserError(f"{path}: expected a JSON list of objects (one per record), got a "
                    f"{type(items).__name__}; JSONL files (one object a line) end in .jsonl")
  for number, item in enumerate(items, start=1):
    if not isinstance(item, dict):
      raise UserError(f"{path}: item {number}: expected a JSON object, got "
                      f"{type(item).__name__}")
  return items


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
