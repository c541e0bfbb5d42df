"""Token-tagged files for named-entity recognition: reading sentences, writing predictions back.

The format comes from the extension: `.jsonl` (or `.ndjson`) is JSONL, anything else (`.conll`,
`.txt`, `.dev`, no extension, ...) is CoNLL-style text; either may be gzipped (`.gz`).

  CoNLL   one token a line, columns separated by tabs or spaces (`token<TAB>tag`, or more
          columns with the token first and the tag last); a blank line ends a sentence; lines
          whose first column is `-DOCSTART-` belong to no sentence (and end none). Columns are
          split as /work/shared/tools/score.py splits them: on runs of tabs and spaces, after
          stripping the line. Every token line has as many columns as the file's first one.
  JSONL   one object a line: {"tokens": [...], "tags": [...]} (lists of strings of equal
          length; other keys are kept when writing); blank lines are skipped.

A file has tags or not as a whole (`has_tags`). Predictions are written in the input's format,
line for line (`write_predictions`), so that a scorer reads the same sentences from both.

Weibo NER writes each character with its position in its word (`口0 腔1 溃2 疡3`). With
position_digits='drop' a token loses its trailing ASCII digits, always keeping its first
character (`口0` -> `口`, `30` -> `3`, the digit 3 at position 0); 'keep' (the default) leaves
tokens as written; 'segment' drops them from the token too, but keeps them as the sentence's
word `positions` (a token without them is an error), from which `softword_types` gives each
character its place in its word, B/M/E/S (the "softword" feature of Zhang and Yang 2018). Written
predictions always keep the tokens as the input wrote them.
"""

import dataclasses
import itertools
import json
import re
from typing import Any

from lm.data import atomic
from lm.data import setting_names
from lm.data import text_files
from lm.errors import UserError

FORMATS = ("conll", "jsonl")
POSITION_DIGITS = ("keep", "drop", "segment")
# softword_types: 0 for no character (specials, padding), then a character that begins a word
# of several (B), is inside one (M), ends one (E), or is a word alone (S).
SOFTWORD_TYPES = ("none", "B", "M", "E", "S")
DOCSTART = "-DOCSTART-"
_COLUMN_SEPARATOR_RE = re.compile(r"[\t ]+")  # As score.py splits columns.
_POSITION_DIGITS_RE = re.compile(r"[0-9]+$")


@dataclasses.dataclass(frozen=True)
class Sentence:
  """The tokens of one sentence, their tags (None in an untagged file), 1-based line numbers,
  and with position_digits='segment' each token's position in its word."""
  tokens: tuple[str, ...]
  tags: tuple[str, ...] | None
  lines: tuple[int, ...]
  positions: tuple[int, ...] | None = None


@dataclasses.dataclass(frozen=True)
class TaggedFile:
  """The sentences of a tagged file and what `write_predictions` needs to write it back.

  `raw_lines` are the file's lines without their "\\n" (a trailing "\\r" kept); the last one is
  "" when the file ends with a newline. `objects` are the parsed JSONL objects, one per sentence
  (empty for CoNLL).
  """
  path: str
  format: str
  has_tags: bool
  sentences: list[Sentence]
  raw_lines: tuple[str, ...] = dataclasses.field(repr=False)
  objects: tuple[dict[str, Any], ...] = dataclasses.field(default=(), repr=False)

  def where(self, sentence_index: int, token_index: int) -> str:
    """Where a token is, for error messages: `path: line N`."""
    return f"{self.path}: line {self.sentences[sentence_index].lines[token_index]}"


def read_tagged(path: str,
                *,
                has_tags: bool | None = None,
                position_digits: str = "keep",
                encoding_errors: str = "strict",
                config_key: str = "config.data.source") -> TaggedFile:
  """Reads the sentences of a CoNLL or JSONL file (format from the extension).

  Args:
    path: the file.
    has_tags: whether the file holds tags: True (CoNLL: the last of 2+ columns; JSONL: every
      object has `tags`), False (CoNLL: the first column is the token, others are ignored;
      JSONL: `tags` are ignored) or None, decided from the first token line (2+ columns) or
      the first object (has non-null `tags`).
    position_digits: 'keep' tokens as written, 'drop' Weibo NER's word-position digits, or
      'segment': drop them and keep them as `Sentence.positions` (see the module docstring).
    encoding_errors: `strict` (undecodable UTF-8 is an error) or `replace` (U+FFFD).
    config_key: the config key `path` came from, for error messages.

  Returns:
    The file's sentences, in file order; every problem with the file is a UserError naming it
    and the line.
  """
  if has_tags not in (True, False, None):
    raise ValueError(f"has_tags must be True, False or None, got {has_tags!r}")
  text_files.check_choice(position_digits, POSITION_DIGITS, "config.data.position_digits")
  text_files.check_choice(encoding_errors, text_files.ENCODING_ERRORS,
                          setting_names.name("encoding_errors"))
  try:
    data = text_files.read_bytes(path)  # Plain or .gz.
  except UserError as e:
    raise UserError(f"{config_key}: {e}") from None
  raw_lines = tuple(text_files.decode_utf8(data, encoding_errors, where=path).split("\n"))
  if tagged_format(path) == "jsonl":
    tagged = _read_jsonl(path, raw_lines, has_tags, position_digits, encoding_errors)
  else:
    tagged = _read_conll(path, raw_lines, has_tags, position_digits)
  if not tagged.sentences:
    raise UserError(f"{config_key}: '{path}' holds no sentences (it is empty or has only blank"
                    f" and {DOCSTART} lines)")
  return tagged


def tagged_format(path: str) -> str:
  """'jsonl' for a `.jsonl` or `.ndjson` file (gzipped or not), else 'conll'."""
  return "jsonl" if text_files.inner_extension(path) in text_files.JSONL_EXTENSIONS else "conll"


def write_predictions(tagged: TaggedFile, predicted: list[list[str]], path: str) -> None:
  """Writes `tagged` with one predicted tag per token to `path` (atomically), line for line.

  CoNLL: every input line is reproduced; a token line gets its tag in place of its last column
  when the input has tags, else appended after a tab (after a space when the line's columns are
  separated by spaces only). JSONL: each object gets `tags` set (its other keys kept, in order);
  blank lines stay. Tokens are written as in the input, and the output ends with a newline
  exactly when the input does.
  """
  if len(predicted) != len(tagged.sentences):
    raise ValueError(f"{len(predicted)} predicted sentences for the {len(tagged.sentences)}"
                     f" sentences of {tagged.path}")
  for index, (sentence, tags) in enumerate(zip(tagged.sentences, predicted)):
    if len(tags) != len(sentence.tokens):
      raise ValueError(f"sentence {index} ({tagged.where(index, 0)}) has"
                       f" {len(sentence.tokens)} tokens but {len(tags)} predicted tags")
    for tag in tags:
      if not isinstance(tag, str) or not tag or _COLUMN_SEPARATOR_RE.search(tag):
        raise ValueError(f"predicted tag {tag!r} is not a non-empty string without blanks")
  lines = list(tagged.raw_lines)
  for sentence, tags, obj in itertools.zip_longest(tagged.sentences, predicted, tagged.objects):
    if tagged.format == "jsonl":
      lines[sentence.lines[0] - 1] = json.dumps({**obj, "tags": list(tags)}, ensure_ascii=False)
      continue
    for line_number, tag in zip(sentence.lines, tags):
      lines[line_number - 1] = _with_tag(lines[line_number - 1], tag, tagged.has_tags)
  atomic.atomic_write_text(path, "\n".join(lines))


def _with_tag(line: str, tag: str, replace_last: bool) -> str:
  """A CoNLL token line with `tag` as its last column (replaced, or appended)."""
  end = len(line.rstrip())
  if replace_last:
    start = end - len(_columns(line)[-1])
    return line[:start] + tag + line[end:]
  content = line[:end].lstrip()
  separator = " " if " " in content and "\t" not in content else "\t"
  return line[:end] + separator + tag + line[end:]


def _columns(line: str) -> list[str]:
  return _COLUMN_SEPARATOR_RE.split(line.strip())


def softword_types(positions: tuple[int, ...]) -> list[int]:
  """Each token's place in its word (an index of SOFTWORD_TYPES) from the word positions."""
  types = []
  for i, position in enumerate(positions):
    last = i + 1 == len(positions) or positions[i + 1] == 0
    types.append((4 if last else 1) if position == 0 else (3 if last else 2))
  return types


def _token(written: str, position_digits: str, where: str) -> tuple[str, int | None]:
  """A written token as read, and its word position (position_digits='segment')."""
  if position_digits == "keep":
    return written, None
  token = written[:1] + _POSITION_DIGITS_RE.sub("", written[1:])
  if position_digits == "drop":
    return token, None
  digits = written[len(token):]
  if not digits:
    raise UserError(f"{where}: token {written!r} has no word-position digits; "
                    "config.data.position_digits='segment' reads tokens written as Weibo NER's "
                    "(`口0 腔1`)")
  return token, int(digits)


def _read_conll(path: str, raw_lines: tuple[str, ...], has_tags: bool | None,
                position_digits: str) -> TaggedFile:
  sentences = []
  tokens, tags, numbers, positions = [], [], [], []
  first = None  # (line number, column count) of the first token line.

  def close_sentence():
    if tokens:
      sentences.append(
          Sentence(tuple(tokens),
                   tuple(tags) if has_tags else None, tuple(numbers),
                   tuple(positions) if position_digits == "segment" else None))
      for column in (tokens, tags, numbers, positions):
        column.clear()

  for line_number, line in enumerate(raw_lines, start=1):
    if not line.strip():
      close_sentence()
      continue
    columns = _columns(line)
    if columns[0] == DOCSTART:
      continue
    if first is None:
      first = (line_number, len(columns))
      if has_tags is None:
        has_tags = len(columns) >= 2
      elif has_tags and len(columns) < 2:
        raise UserError(f"{path}: line {line_number} has 1 column; a tagged file has the token"
                        " first and its tag last (has_tags=True)")
    elif len(columns) != first[1]:
      raise UserError(f"{path}: line {line_number} has {_plural(len(columns), 'column')}; the"
                      f" file's first token line (line {first[0]}) has {first[1]}")
    token, position = _token(columns[0], position_digits, f"{path}: line {line_number}")
    tokens.append(token)
    positions.append(position)
    tags.append(columns[-1])
    numbers.append(line_number)
  close_sentence()
  return TaggedFile(path, "conll", bool(has_tags), sentences, raw_lines)


def _read_jsonl(path: str, raw_lines: tuple[str, ...], has_tags: bool | None, position_digits: str,
                encoding_errors: str) -> TaggedFile:
  sentences, objects = [], []
  first_line = None  # The line of the first object, which decides has_tags=None.
  explicit = has_tags is not None
  for line_number, line in enumerate(raw_lines, start=1):
    if not line.strip():
      continue
    where = f"{path}: line {line_number}"
    obj = text_files.parse_json_line(line, where)
    tokens = _string_list(obj, "tokens", encoding_errors, where)
    if not tokens:
      raise UserError(f"{where}: 'tokens' is empty; a sentence needs at least one token")
    line_has_tags = obj.get("tags") is not None
    if first_line is None:
      first_line = line_number
      if has_tags is None:
        has_tags = line_has_tags
    if has_tags and not line_has_tags:
      reason = ("has_tags is set" if explicit else
                f"the file's first object (line {first_line}) has them")
      raise UserError(f"{where}: no 'tags', but {reason}: every object needs its tags")
    if line_has_tags and not has_tags and not explicit:
      raise UserError(f"{where}: has 'tags', but the file's first object (line {first_line})"
                      " has none: tag every object or none")
    tags = None
    if has_tags:
      tags = _string_list(obj, "tags", encoding_errors, where)
      if len(tags) != len(tokens):
        raise UserError(f"{where}: {_plural(len(tokens), 'token')} but"
                        f" {_plural(len(tags), 'tag')}")
      tags = tuple(tags)
    read = [_token(t, position_digits, where) for t in tokens]
    sentences.append(
        Sentence(tuple(token for token, _ in read), tags, (line_number,) * len(tokens),
                 tuple(p for _, p in read) if position_digits == "segment" else None))
    objects.append(obj)
  return TaggedFile(path, "jsonl", bool(has_tags), sentences, raw_lines, tuple(objects))


def _string_list(obj: dict[str, Any], key: str, encoding_errors: str, where: str) -> list[str]:
  if key not in obj:
    keys = ", ".join(map(repr, obj)) or "none"
    raise UserError(f"{where}: no key {key!r} (keys: {keys})")
  values = obj[key]
  if not isinstance(values, list):
    raise UserError(f"{where}: {key!r} is {type(values).__name__}, not a list of strings")
  for index, value in enumerate(values):
    if not isinstance(value, str):
      raise UserError(f"{where}: {key!r} item {index} is {type(value).__name__}, not a string")
  return [text_files.check_text(value, encoding_errors, where=where) for value in values]


def _plural(count: int, noun: str) -> str:
  return f"{count} {noun}" if count == 1 else f"{count} {noun}s"
