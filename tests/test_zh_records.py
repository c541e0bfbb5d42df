"""Classification records labeled by file name (`@file`), one per entry, cleaned as read (issue 9)."""

import pytest

from lm import defaults
from lm.data.reader import read_records
from lm.errors import UserError
from lm.tasks import supervised
from tests.conftest import FIXTURES

ZH = FIXTURES / "zh-fortunes"


def _write(path, text):
  path.write_text(text, encoding="utf-8")
  return str(path)


def test_file_labels_on_entries(tmp_path):
  tang = _write(tmp_path / "tang300", "\x1b[32m《春望》\x1b[m\n国破山河在\n%\n床前明月光\n\n疑是地上霜\n%\n")
  song = _write(tmp_path / "song100.txt", "大江东去\n%\n")
  found = read_records(f"{tmp_path}/tang300,{song}", fields={"label": "@file"},
                       required=("text", "label"), txt_unit="entry")
  assert [r.values for r in found] == [
      {"text": "\x1b[32m《春望》\x1b[m\n国破山河在", "label": "tang300"},
      {"text": "床前明月光\n\n疑是地上霜", "label": "tang300"},
      {"text": "大江东去", "label": "song100"},
  ]
  assert [r.where for r in found] == [f"{tang}: entry 1", f"{tang}: entry 2", f"{song}: entry 1"]


def test_file_and_dir_labels_in_tables_archives_and_lines(tmp_path):
  (tmp_path / "news").mkdir()
  table = _write(tmp_path / "news" / "sports.tsv", "text\tscore\n好球\t1\n")
  rows = read_records(table, fields={"text": "text", "label": "@file", "topic": "@dir"})
  assert [r.values for r in rows] == [{"text": "好球", "label": "sports", "topic": "news"}]
  lines = read_records(_write(tmp_path / "a.txt", "one\n\ntwo\n"), fields={"label": "@file"})
  assert [r.values["label"] for r in lines] == ["a", "a"]
  paragraphs = read_records(f"{tmp_path}/a.txt", fields={}, txt_unit="paragraph")
  assert [r.values["text"] for r in paragraphs] == ["one", "two"]
  whole = read_records(f"{tmp_path}/a.txt", fields={}, txt_unit="file")
  assert [r.values["text"] for r in whole] == ["one\n\ntwo\n"]


def test_bad_txt_unit_names_the_key():
  with pytest.raises(UserError, match="config.data.txt_unit must be one of"):
    read_records(str(ZH / "song100"), fields={}, txt_unit="sentence")


def _config(**data):
  config = defaults.base_config()
  config.data.update(source=",".join(str(ZH / n) for n in ("chinese", "tang300", "song100")),
                     txt_unit="entry", label_field="@file", valid_fraction=0.1, **data)
  return config


def test_real_collections_labeled_by_file_and_cleaned():
  config = _config(clean="escapes,control,whitespace")
  train, valid = supervised.read_splits(config, {"text": "text", "label": "@file"})
  everything = train + valid
  counts = {name: sum(r.values["label"] == name for r in everything)
            for name in ("chinese", "tang300", "song100")}
  # As sliced in tests/fixtures (the full files: 5,263 / 313 / 96).
  assert counts == {"chinese": 60, "tang300": 31, "song100": 10}
  assert len(valid) == round(0.1 * len(everything))
  assert not any("\x1b" in r.values["text"] for r in everything)
  assert any(r.values["text"].startswith("《春望》") for r in everything)
  # The held-out split is fixed: the same records whatever config.seed says.
  config.seed = 7
  _, again = supervised.read_splits(config, {"text": "text", "label": "@file"})
  assert [r.where for r in again] == [r.where for r in valid]


def test_uncleaned_records_keep_escapes_and_file_default_reads_lines():
  config = _config()
  train, _ = supervised.read_splits(config, {"text": "text", "label": "@file"})
  assert any("\x1b[32m" in r.values["text"] for r in train)
  config.data.txt_unit = "file"  # The default: one record per line, as always.
  lines, _ = supervised.read_splits(config, {"text": "text", "label": "@file"})
  assert len(lines) > 4 * len(train)


def test_clean_steps_are_checked():
  with pytest.raises(UserError, match="config.data.clean: unknown step"):
    supervised.cleaner_from("escapes,stopwords")
  cleaner = supervised.cleaner_from(" escapes , whitespace ")
  assert cleaner.enabled_steps == ("escapes", "whitespace")
