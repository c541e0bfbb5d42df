"""Reader errors name the setting that fixes them as the running command calls it."""

import types

import pytest

from lm.data import reader, setting_names
from lm.data.prepare import readers
from lm.errors import UserError


def test_training_names_config_data_keys(tmp_path):
  (tmp_path / "a.jsonl").write_text('{"body": "hi"}\n')
  with pytest.raises(UserError, match=r"no key 'text' .*; set config.data.text_field$"):
    reader.read_documents(str(tmp_path / "a.jsonl"), split="train")


def test_a_command_names_its_own_flags_within_its_block(tmp_path):
  (tmp_path / "a.tsv").write_bytes(b"text\nbad \xff byte\n")
  with setting_names.named(encoding_errors="--encoding_errors", text_field="--text_column"):
    with pytest.raises(UserError, match=r"line 2: .*set --encoding_errors='replace'$"):
      reader.read_records(str(tmp_path / "a.tsv"), fields={"text": "text"}, required=("text",))
    (tmp_path / "b.tsv").write_text("text\nfine\n")
    with pytest.raises(UserError, match=r"no column 'words' .*; set --text_column$"):
      reader.read_records(str(tmp_path / "b.tsv"), fields={"text": "words"}, required=("text",))
  assert setting_names.name("text_field") == "config.data.text_field"  # Restored after.


def test_prepare_names_config_reader_keys(tmp_path):
  (tmp_path / "a.jsonl").write_text('{"body": "hi"}\n')
  reader_cfg = types.SimpleNamespace(text_field="text", txt_unit="file", encoding_errors="strict",
                                     entry_separator="%")
  inputs = [reader.Entry("file", str(tmp_path / "a.jsonl"))]
  with pytest.raises(UserError, match=r"; set config.reader.text_field$"):
    list(readers.iter_documents(inputs, reader_cfg))
