"""Tests of lm.data.reader.read_documents (language-model text: formats, units, errors, TFDS) and
lm.data.splits.split_train_valid."""

import gzip
import json
import os

import pytest

from lm.data import reader, splits
from lm.errors import UserError
from tests.conftest import FIXTURES, REPO

DATA = str(FIXTURES)
SHAKESPEARE = str(REPO / "data" / "tinyshakespeare" / "input.txt")


def _write(path, content, mode="w"):
  if mode == "w":
    with open(path, "w", encoding="utf-8", newline="") as f:
      f.write(content)
  else:
    with open(path, "wb") as f:
      f.write(content)
  return str(path)


def _read(source, **kwargs):
  return reader.read_documents(str(source), split="train", **kwargs)


# --- Plain text and txt_unit --------------------------------------------------------------------

TEXT = "First line\n  second line  \n\n\n Third block\nstill third\n"


def test_txt_file_unit_is_the_whole_file_verbatim(tmp_path):
  path = _write(tmp_path / "a.txt", TEXT)
  assert _read(path) == [TEXT]


def test_txt_line_unit_keeps_non_blank_lines_verbatim(tmp_path):
  path = _write(tmp_path / "a.txt", TEXT + "   \n")
  expected = ["First line", "  second line  ", " Third block", "still third"]
  assert _read(path, txt_unit="line") == expected


def test_txt_paragraph_unit_splits_on_blank_lines(tmp_path):
  path = _write(tmp_path / "a.txt", TEXT)
  expected = ["First line\n  second line  ", " Third block\nstill third"]
  assert _read(path, txt_unit="paragraph") == expected


def test_crlf_line_endings_are_stripped_in_line_units(tmp_path):
  path = _write(tmp_path / "a.txt", "one\r\ntwo\r\n\r\nthree")
  assert _read(path, txt_unit="line") == ["one", "two", "three"]
  assert _read(path, txt_unit="paragraph") == ["one\ntwo", "three"]
  assert _read(path) == ["one\r\ntwo\r\n\r\nthree"]


def test_unknown_extension_is_read_as_text(tmp_path):
  path = _write(tmp_path / "corpus.data", "hello\nworld\n")
  assert _read(path, txt_unit="line") == ["hello", "world"]


def test_leading_utf8_bom_is_dropped(tmp_path):
  path = _write(tmp_path / "a.txt", b"\xef\xbb\xbfhi", mode="wb")
  assert _read(path) == ["hi"]


# --- JSONL, CSV, TSV ----------------------------------------------------------------------------


def test_jsonl_reads_text_field_and_skips_blank_lines(tmp_path):
  lines = [json.dumps({"text": "héllo\nworld", "id": 1}), "", json.dumps({"text": "二"})]
  path = _write(tmp_path / "a.jsonl", "\n".join(lines) + "\n")
  assert _read(path) == ["héllo\nworld", "二"]


def test_jsonl_custom_text_field(tmp_path):
  path = _write(tmp_path / "a.jsonl", '{"body": "x", "text": "y"}\n')
  assert _read(path, text_field="body") == ["x"]


def test_csv_with_quoted_commas_and_newlines(tmp_path):
  path = _write(tmp_path / "a.csv", 'id,text\n1,"a, b"\n2,"multi\nline ""quoted"""\n3,plain\n')
  assert _read(path) == ["a, b", 'multi\nline "quoted"', "plain"]


def test_tsv_keeps_bare_quotes(tmp_path):
  path = _write(tmp_path / "a.tsv", 'sentence\tlabel\n"quoted" start \t1\nit\'s "fine\t0\n')
  assert _read(path, text_field="sentence") == ['"quoted" start ', 'it\'s "fine']


def test_real_sst2_dev_tsv():
  documents = _read(os.path.join(DATA, "sst2", "dev.tsv"), text_field="sentence")
  assert len(documents) == 120  # The fixture's slice of the 872.
  assert all("\t" not in d for d in documents)


def test_gzip_files_are_read_in_place(tmp_path):
  with gzip.open(tmp_path / "a.txt.gz", "wt", encoding="utf-8") as f:
    f.write("one\ntwo\n")
  with gzip.open(tmp_path / "b.jsonl.gz", "wt", encoding="utf-8") as f:
    f.write('{"text": "three"}\n')
  assert _read(tmp_path / "a.txt.gz", txt_unit="line") == ["one", "two"]
  assert _read(tmp_path / "b.jsonl.gz") == ["three"]


def test_real_wikitext_gzip_train_lines():
  path = os.path.join(DATA, "wikitext2", "tokens", "train.txt.gz")
  documents = _read(path, txt_unit="line")
  with gzip.open(path, "rt", encoding="utf-8") as f:
    expected = [line.rstrip("\n") for line in f if line.strip()]
  assert documents == expected
  assert documents[0] == " = Valkyria Chronicles III = "


def test_glob_is_sorted_and_comma_list_keeps_order(tmp_path):
  for name in ("b.txt", "a.txt", "c.jsonl"):
    _write(tmp_path / name, name if name.endswith(".txt") else json.dumps({"text": name}))
  assert _read(tmp_path / "*.txt") == ["a.txt", "b.txt"]
  source = f"{tmp_path / 'c.jsonl'}, {tmp_path / '*.txt'},{tmp_path / 'a.txt'}"
  # The duplicate a.txt is read once.
  assert _read(source) == ["c.jsonl", "a.txt", "b.txt"]


def test_recursive_glob(tmp_path):
  os.makedirs(tmp_path / "x" / "y")
  _write(tmp_path / "x" / "y" / "deep.txt", "deep")
  assert _read(tmp_path / "**" / "*.txt") == ["deep"]


# --- Encoding errors ----------------------------------------------------------------------------

BAD_UTF8 = b"good line\nsecond\nbad \xff byte\n"


def test_undecodable_bytes_strict_names_file_line_and_offset(tmp_path):
  path = _write(tmp_path / "bad.txt", BAD_UTF8, mode="wb")
  with pytest.raises(UserError) as e:
    _read(path)
  message = str(e.value)
  assert path in message and "line 3" in message
  offset = BAD_UTF8.index(b"\xff")
  assert f"byte offset {offset}" in message
  assert "encoding_errors" in message


def test_undecodable_bytes_replace(tmp_path):
  path = _write(tmp_path / "bad.txt", BAD_UTF8, mode="wb")
  assert _read(path, encoding_errors="replace", txt_unit="line")[2] == "bad \ufffd byte"


def test_undecodable_bytes_in_jsonl_strict(tmp_path):
  path = _write(tmp_path / "bad.jsonl", b'{"text": "ok"}\n{"text": "\xc3("}\n', mode="wb")
  with pytest.raises(UserError, match="line 2"):
    _read(path)


# --- User errors --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "setup, match",
    [
        (lambda d: str(d / "*.txt"), "no file matches"),
        (lambda d: str(d / "missing.txt"), "file not found"),
        (lambda d: str(d), "is a directory"),
        (lambda d: _write(d / "empty.txt", ""), "file is empty"),
        (lambda d: _write(d / "blank.txt", " \n\n \n"), "no records found"),
        (lambda d: _write(d / "blank.jsonl", '{"text": "  "}\n'), "no records found"),
        (lambda d: _write(d / "header.csv", "text\n"), "no records found"),
        (lambda d: _write(d / "not.txt.gz", "not gzip"), "not a valid gzip"),
    ],
)
def test_file_errors_name_the_file(tmp_path, setup, match):
  source = setup(tmp_path)
  with pytest.raises(UserError, match=match) as e:
    _read(source, txt_unit="line")
  assert os.path.basename(source) in str(e.value)


def test_empty_gzip_is_empty(tmp_path):
  with gzip.open(tmp_path / "e.txt.gz", "wb"):
    pass
  with pytest.raises(UserError, match="e.txt.gz: file is empty"):
    _read(tmp_path / "e.txt.gz")


def test_missing_file_in_comma_list_names_source_key(tmp_path):
  good = _write(tmp_path / "a.txt", "a")
  with pytest.raises(UserError, match=r"config.data.train_source: file not found: 'nope.txt'"):
    reader.read_documents(f"{good},nope.txt", split="train", config_key="config.data.train_source")


def test_empty_source_names_config_key():
  with pytest.raises(UserError, match="config.data.source is empty"):
    _read(" ")


def test_jsonl_invalid_json_names_line(tmp_path):
  path = _write(tmp_path / "a.jsonl", '{"text": "ok"}\n\n{"text": broken}\n')
  with pytest.raises(UserError, match=r"a\.jsonl: line 3: not valid JSON"):
    _read(path)


def test_jsonl_missing_field_names_line_and_fields(tmp_path):
  path = _write(tmp_path / "a.jsonl", '{"text": "ok"}\n{"body": "x", "id": 2}\n')
  match = r"a\.jsonl: line 2: no key 'text' for the text \(keys: 'body', 'id'\)"
  with pytest.raises(UserError, match=match):
    _read(path)


@pytest.mark.parametrize("line, match", [('["a"]', "JSON object"),
                                         ('{"text": [3]}', "is list, not a string or integer")])
def test_jsonl_wrong_types(tmp_path, line, match):
  path = _write(tmp_path / "a.jsonl", line + "\n")
  with pytest.raises(UserError, match=match):
    _read(path)


@pytest.mark.parametrize("name, header", [("a.csv", "id,body\n1,x\n"),
                                          ("a.tsv", "id\tbody\n1\tx\n")])
def test_table_without_column_lists_columns(tmp_path, name, header):
  path = _write(tmp_path / name, header)
  match = r"line 1: no column 'text' for the text \(columns: 'id', 'body'\)"
  with pytest.raises(UserError, match=match) as e:
    _read(path)
  assert name in str(e.value) and "config.data.text_field" in str(e.value)


def test_table_short_row_names_line(tmp_path):
  path = _write(tmp_path / "a.tsv", "id\ttext\n1\tok\n2\n")
  with pytest.raises(UserError, match=r"a\.tsv: line 3: row has 1 fields"):
    _read(path)


def test_unknown_txt_unit_and_encoding_errors_name_config_keys(tmp_path):
  path = _write(tmp_path / "a.txt", "x")
  with pytest.raises(UserError, match="config.data.txt_unit"):
    _read(path, txt_unit="sentence")
  with pytest.raises(UserError, match="config.data.encoding_errors"):
    _read(path, encoding_errors="ignore")


def test_source_fingerprint_tracks_size_and_mtime(tmp_path):
  path = _write(tmp_path / "a.txt", "abc")
  before = reader.source_fingerprint(path)
  assert before["files"][0]["size"] == 3
  os.utime(path, ns=(1, 1))
  assert reader.source_fingerprint(path) != before
  # A TFDS dataset beside local files is named, not looked up on disk.
  assert reader.source_fingerprint(f"{path},tfds:lm1b")["files"][1] == {"tfds": "lm1b"}


# --- TFDS ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tfds():
  return pytest.importorskip("tensorflow_datasets")


def test_tfds_mock_data_source(tfds):
  with tfds.testing.mock_data(num_examples=5):
    documents = _read("tfds:tiny_shakespeare")
  assert len(documents) == 5
  assert all(isinstance(d, str) and d.strip() for d in documents)


def test_tfds_bytes_features_and_text_field(tfds):
  examples = [{"text": "héllo".encode()}, {"text": b"  "}, {"text": b"world"}]
  with tfds.testing.mock_data(as_data_source_fn=lambda *args, **kwargs: examples):
    assert _read("tfds:lm1b") == ["héllo", "world"]
    with pytest.raises(UserError, match=r"no feature 'body' for the text \(features: 'text'\)"):
      _read("tfds:lm1b", text_field="body")


def test_tfds_invalid_utf8_strict_and_replace(tfds):
  examples = [{"text": b"ok \xff"}]
  with tfds.testing.mock_data(as_data_source_fn=lambda *args, **kwargs: examples):
    with pytest.raises(UserError, match="example 0: invalid UTF-8"):
      _read("tfds:lm1b")
    assert _read("tfds:lm1b", encoding_errors="replace") == ["ok \ufffd"]


def test_tfds_not_prepared_says_how_to_prepare(tfds, tmp_path):
  with pytest.raises(UserError) as e:
    reader.read_documents("tfds:tiny_shakespeare", split="train", tfds_data_dir=str(tmp_path))
  message = str(e.value)
  assert "config.data.source='tfds:tiny_shakespeare'" in message
  assert "tfds build tiny_shakespeare --file_format=array_record" in message
  assert "download_and_prepare(file_format='array_record')" in message


def test_tfds_unknown_dataset(tfds, tmp_path):
  with pytest.raises(UserError, match="TFDS has no dataset named 'no_such_dataset_xyz'"):
    reader.read_documents("tfds:no_such_dataset_xyz", split="train", tfds_data_dir=str(tmp_path))


# --- split_train_valid --------------------------------------------------------------------------


def test_split_tiny_shakespeare_matches_nanogpt():
  documents = _read(SHAKESPEARE)
  (text,) = documents
  train, valid = splits.split_train_valid(documents, 0.1)
  n = len(text)
  assert n == 1_115_394
  assert train == [text[:int(n * 0.9)]] and valid == [text[int(n * 0.9):]]
  assert len(train[0]) == 1_003_854 and len(valid[0]) == 111_540


def test_split_multiple_documents_at_boundary():
  documents = ["a" * 10, "b" * 10, "c" * 10, "d" * 10]
  assert splits.split_train_valid(documents, 0.25) == (documents[:3], documents[3:])
  assert splits.split_train_valid(documents, 0.3) == (documents[:3], documents[3:])
  assert splits.split_train_valid(documents, 0.5) == (documents[:2], documents[2:])
  # Extreme fractions still keep one document per side.
  assert splits.split_train_valid(documents, 0.001) == (documents[:3], documents[3:])
  assert splits.split_train_valid(documents, 0.999) == (documents[:1], documents[1:])


@pytest.mark.parametrize("fraction", [0, 1, -0.1, 1.5, True, "0.1", float("nan")])
def test_split_bad_fraction_names_config_key(fraction):
  with pytest.raises(UserError, match="config.data.valid_fraction"):
    splits.split_train_valid(["abc", "def"], fraction)


def test_split_too_short_document():
  assert splits.split_train_valid(["ab"], 0.1) == (["a"], ["b"])
  with pytest.raises(UserError, match="too short"):
    splits.split_train_valid(["a"], 0.1)
  with pytest.raises(UserError, match="no documents"):
    splits.split_train_valid([], 0.1)
