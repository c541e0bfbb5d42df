"""The data root (lm/data/data_root.py) and `python -m lm.data.download`, offline: each download
is served from a local folder through --mirror=file://..."""

import gzip
import hashlib
import io
import os
import subprocess
import sys
import tarfile
import zipfile

import pytest

from lm.data import data_root, download, text_files
from lm.errors import UserError
from tests.conftest import FIXTURES, REPO


def test_env_var_wins_and_default_is_beside_the_repository(monkeypatch, tmp_path):
  monkeypatch.setenv("LM_DATA_DIR", str(tmp_path))
  assert data_root.root() == str(tmp_path)
  assert data_root.path("wnut17", "a.conll") == str(tmp_path / "wnut17" / "a.conll")
  monkeypatch.delenv("LM_DATA_DIR")
  assert data_root.root() == str(REPO.parent / "shared" / "data")
  assert data_root.vendored("tinyshakespeare", "input.txt") == str(
      REPO / "data" / "tinyshakespeare" / "input.txt")


def test_the_suite_reads_the_fixtures():
  assert data_root.root() == str(FIXTURES)


def test_missing_dataset_names_the_download_command(monkeypatch, tmp_path):
  monkeypatch.setenv("LM_DATA_DIR", str(tmp_path))
  with pytest.raises(UserError, match=r"dataset 'wnut17' is not in the data root .*"
                     r"`python -m lm\.data\.download wnut17`"):
    data_root.require("wnut17", "emerging.dev.conll")
  # Readers add the same hint: the config builds, reading names the command.
  entry = data_root.path("imdb", "aclImdb_train.tar.gz") + ":aclImdb/train/*/*.txt"
  with pytest.raises(UserError, match=r"python -m lm\.data\.download imdb"):
    text_files.resolve_files(data_root.path("imdb", "aclImdb_train.tar.gz"))
  assert "lm.data.download imdb" in data_root.missing_hint(entry)
  assert data_root.missing_hint(str(tmp_path.parent / "elsewhere.txt")) == ""


def test_experiment_configs_build_without_data_and_name_absolute_paths(monkeypatch, tmp_path):
  monkeypatch.setenv("LM_DATA_DIR", str(tmp_path))
  from experiments import shakespeare_char, wnut17  # pylint: disable=g-import-not-at-top
  assert os.path.isabs(shakespeare_char.get_config("cpu").data.source)
  assert os.path.isfile(shakespeare_char.get_config("cpu").data.source)
  assert os.path.isabs(wnut17.get_config("scratch").data.source)


def _mirror(tmp_path, files: dict[str, bytes]) -> str:
  mirror = tmp_path / "mirror"
  mirror.mkdir()
  for name, data in files.items():
    (mirror / name).write_bytes(data)
  return mirror.as_uri()


def _with_checksums(monkeypatch, name, files):
  """Replaces dataset `name`'s files (their checksums are those of the full files)."""
  monkeypatch.setitem(download.DATASETS, name, download.Dataset("test", tuple(files)))


def test_download_plain_gzip_and_archive_members(monkeypatch, tmp_path):
  text = b"Stabilized\tO\n\n"
  packed = io.BytesIO()
  with zipfile.ZipFile(packed, "w") as z:
    z.writestr("SST-2/dev.tsv", "sentence\tlabel\nfine\t1\n")
  mirror = _mirror(tmp_path, {"a.conll": text, "b.txt.gz": gzip.compress(b"one\n"),
                              "SST-2.zip": packed.getvalue()})
  _with_checksums(monkeypatch, "x", [
      download.File("a.conll", "https://example.org/a.conll",
                    sha256=hashlib.sha256(text).hexdigest()),
      download.File("big.txt.gz", "https://example.org/b.txt.gz", gzip=True),
      download.File("dev.tsv", "https://example.org/SST-2.zip", member="dev.tsv"),
  ])
  written = download.download("x", str(tmp_path / "root"), mirror=mirror, log=lambda _: None)
  root = tmp_path / "root" / "x"
  assert written == [str(root / n) for n in ("a.conll", "big.txt.gz", "dev.tsv")]
  assert (root / "a.conll").read_bytes() == text
  assert gzip.decompress((root / "big.txt.gz").read_bytes()) == b"one\n"
  assert (root / "dev.tsv").read_text() == "sentence\tlabel\nfine\t1\n"
  assert os.stat(root / "a.conll").st_mode & 0o044  # Readable by others, as a plain write.
  assert sorted(os.listdir(root)) == ["a.conll", "big.txt.gz", "dev.tsv"]  # No temporary file.
  # Files already there are kept, not fetched again.
  assert download.download("x", str(tmp_path / "root"), mirror="file:///nowhere",
                           log=lambda _: None) == []


def test_checksum_mismatch_and_network_failure_leave_nothing(monkeypatch, tmp_path):
  mirror = _mirror(tmp_path, {"a.conll": b"changed\n"})
  _with_checksums(monkeypatch, "x", [
      download.File("a.conll", "https://example.org/a.conll", sha256="0" * 64)])
  with pytest.raises(UserError, match="has sha256 .* nothing was written"):
    download.download("x", str(tmp_path / "root"), mirror=mirror, log=lambda _: None)
  with pytest.raises(UserError, match="download failed .* --mirror"):
    download.download("x", str(tmp_path / "root"), mirror=(tmp_path / "none").as_uri(),
                      log=lambda _: None)
  assert os.listdir(tmp_path / "root" / "x") == []


def test_interrupted_download_leaves_no_partial_file(monkeypatch, tmp_path):
  _with_checksums(monkeypatch, "x", [download.File("a.conll", "https://example.org/a.conll")])

  class Interrupted(io.BytesIO):
    def read(self, *_):  # Ctrl-C in the middle of the transfer.
      raise KeyboardInterrupt
  monkeypatch.setattr(download.urllib.request, "urlopen", lambda *_, **__: Interrupted())
  with pytest.raises(KeyboardInterrupt):
    download.download("x", str(tmp_path / "root"), log=lambda _: None)
  assert os.listdir(tmp_path / "root" / "x") == []


def test_imdb_is_repacked_into_its_two_archives(monkeypatch, tmp_path):
  packed = io.BytesIO()
  with tarfile.open(fileobj=packed, mode="w:gz") as tar:
    for name in ("aclImdb/README", "aclImdb/train/neg/0_3.txt", "aclImdb/train/pos/1_9.txt",
                 "aclImdb/train/unsup/2_0.txt", "aclImdb/test/neg/5_1.txt"):
      info = tarfile.TarInfo(name)
      info.size = len(name)
      tar.addfile(info, io.BytesIO(name.encode()))
  mirror = _mirror(tmp_path, {"aclImdb_v1.tar.gz": packed.getvalue()})
  real = download.DATASETS["imdb"].files
  _with_checksums(monkeypatch, "imdb", [
      real[0].__class__(real[0].name, real[0].url, real[0].prefixes,
                        (("aclImdb/train/neg/", 1), ("aclImdb/train/pos/", 1))),
      real[1].__class__(real[1].name, real[1].url, real[1].prefixes,
                        (("aclImdb/train/unsup/", 1),)),
  ])
  download.download("imdb", str(tmp_path), mirror=mirror, log=lambda _: None)
  records = text_files.iter_archive(str(tmp_path / "imdb" / "aclImdb_train.tar.gz"),
                                 "aclImdb/train/*/*.txt", "strict")
  assert [name for name, _ in records] == ["aclImdb/train/neg/0_3.txt",
                                          "aclImdb/train/pos/1_9.txt"]
  with tarfile.open(tmp_path / "imdb" / "aclImdb_unsup.tar.gz") as tar:
    assert tar.getnames() == ["aclImdb/train/unsup/2_0.txt"]
  # A count that differs from the real archive's is refused, with nothing written.
  _with_checksums(monkeypatch, "imdb", [
      real[0].__class__("other.tar.gz", real[0].url, real[0].prefixes,
                        (("aclImdb/train/neg/", 12_500),))])
  with pytest.raises(UserError, match="expected .* nothing was written"):
    download.download("imdb", str(tmp_path), mirror=mirror, log=lambda _: None)
  assert not (tmp_path / "imdb" / "other.tar.gz").exists()


def test_every_dataset_the_experiments_read_has_a_download():
  assert set(os.listdir(FIXTURES)) - {"README.md"} <= set(download.DATASETS)
  for name, dataset in download.DATASETS.items():
    assert dataset.files or dataset.note, name


def test_command_line_errors_are_one_line(tmp_path):
  def run(*args):
    return subprocess.run([sys.executable, "-m", "lm.data.download", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
  for args, message in ((("nope",), "unknown dataset 'nope'"), ((), "name a dataset"),
                        (("wnut17", f"--data_dir={tmp_path}",
                          f"--mirror={(tmp_path / 'none').as_uri()}"), "download failed")):
    result = run(*args)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.startswith("error: ") and message in result.stderr
  mirror = tmp_path / "mirror"
  mirror.mkdir()
  for name in ("wnut17train.conll", "emerging.dev.conll"):  # The fixtures' slices: their
    (mirror / name).write_bytes((FIXTURES / "wnut17" / name).read_bytes())  # sha256 differs.
  result = run("wnut17", f"--data_dir={tmp_path / 'root'}", f"--mirror={mirror.as_uri()}")
  assert result.returncode == 2 and "has sha256" in result.stderr
