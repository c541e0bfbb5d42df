"""Tests of the streaming readers (lm/data/reader.py Reader.records, lm/data/text_files.py
iter_archive / split_lines, lm/data/prepare/readers.py): fortune-style entries, directories, slices per process."""

import gzip
import tarfile

import ml_collections
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from lm.data import reader, text_files
from lm.data.prepare import readers
from lm.errors import UserError

FORTUNES = "first\nentry\n%\n\x1b[32mtitle\x1b[m\n\nbody\n%\n%\n  \n%\nlast\n"


def stream(path: str, **options) -> list[str]:
  """The documents of one file as Reader.records streams them (as prepare reads its inputs)."""
  documents = reader.Reader({"text": "text"}, required=("text",), blank="skip", **options)
  return [record.values["text"] for record in documents.records(reader.Entry("file", path))]


def reader_cfg(**changes):
  cfg = ml_collections.ConfigDict(dict(text_field="text", txt_unit="entry",
                                       entry_separator="%", encoding_errors="strict"))
  cfg.update(changes)
  return cfg


def test_entries_between_separator_lines_keep_their_inner_lines(tmp_path):
  path = tmp_path / "fortunes"
  path.write_text(FORTUNES, encoding="utf-8")
  expected = ["first\nentry", "\x1b[32mtitle\x1b[m\n\nbody", "last"]
  assert reader.read_documents(str(path), split="train", txt_unit="entry") == expected
  assert text_files.split_text(FORTUNES, "entry") == expected


def test_entry_separator_is_configurable_and_crlf_is_dropped():
  text = "a\r\n---\r\nb\r\n"
  assert text_files.split_text(text, "entry", entry_separator="---") == ["a", "b"]
  with pytest.raises(UserError, match="entry_separator"):
    text_files.split_text(text, "entry", entry_separator=" ")


def test_streaming_lines_match_whole_file_reading(tmp_path):
  text = "one\n\ntwo\nthree\n\n\nfour"
  path = tmp_path / "t.txt.gz"
  with gzip.open(path, "wt", encoding="utf-8") as f:
    f.write(text)
  for unit in ("line", "paragraph", "entry"):
    assert stream(str(path), txt_unit=unit) == text_files.split_text(text, unit)


def test_directories_stand_for_their_files(tmp_path):
  (tmp_path / "sub").mkdir()
  (tmp_path / "b.txt").write_text("b")
  (tmp_path / "sub" / "a.txt").write_text("a")
  assert text_files.resolve_files(str(tmp_path), directories=True) == [
      str(tmp_path / "b.txt"), str(tmp_path / "sub" / "a.txt")]
  with pytest.raises(UserError, match="is a directory"):
    text_files.resolve_files(str(tmp_path))


def test_archive_members_stream_in_archive_order(tmp_path):
  archive = tmp_path / "a.tar.gz"
  with tarfile.open(archive, "w:gz") as tar:
    for name in ("z.txt", "a.txt", "skip.md"):
      (tmp_path / name).write_text(f"text of {name}")
      tar.add(tmp_path / name, arcname=f"d/{name}")
  assert list(text_files.iter_archive(str(archive), "d/*.txt")) == [
      ("d/z.txt", "text of z.txt"), ("d/a.txt", "text of a.txt")]
  with pytest.raises(UserError, match="no archive member matches"):
    list(text_files.iter_archive(str(archive), "x/*"))


def test_slices_partition_the_documents(tmp_path):
  for i in range(2):
    (tmp_path / f"{i}.txt").write_text("\n".join(f"doc {i}-{j}" for j in range(7)))
  inputs = readers.resolve_inputs(str(tmp_path / "*.txt"), split="train",
                                  config_key="config.inputs")
  cfg = reader_cfg(txt_unit="line")
  everything = list(readers.iter_documents(inputs, cfg))
  for num_processes in (2, 3):  # By input (2 files, 2 processes) and by document.
    slices = [list(readers.iter_documents(inputs, cfg, process_index=i,
                                          num_processes=num_processes))
              for i in range(num_processes)]
    assert sorted((d.id, d.text) for s in slices for d in s) == [(d.id, d.text)
                                                                  for d in everything]
  assert everything[7].id == readers.ID_STRIDE  # Second input, first document.


FUZZ = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(st.binary(max_size=300), st.sampled_from(["line", "paragraph", "entry", "file"]))
def test_streaming_reader_raises_only_user_errors_on_arbitrary_bytes(data, unit):
  import tempfile, os  # pylint: disable=g-import-not-at-top,multiple-imports
  with tempfile.TemporaryDirectory() as directory:
    path = os.path.join(directory, "x.txt")
    with open(path, "wb") as f:
      f.write(data)
    try:
      documents = stream(path, txt_unit=unit, encoding_errors="replace")
    except UserError:
      return
    assert all(d.strip() for d in documents)
