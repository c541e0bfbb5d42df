"""Fetch a public dataset from its canonical source into the data root (lm/data/data_root.py).

  python -m lm.data.download NAME [NAME ...] [--data_dir=DIR] [--mirror=URL]

NAME is a directory of the data root (e.g. wnut17, sst2, wikitext2; no NAME lists them). Files
land under the names the experiments read, each written atomically (a failed or interrupted
download leaves no partial file), and are checked against the sha256 of the copies this
project was tested with. Files already there are kept. `--mirror` fetches each file from
URL/<its file name> instead (e.g. file:///path/to/copies when the machine is offline).
"""

import contextlib
import dataclasses
import gzip
import hashlib
import os
import sys
import tarfile
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from typing import Iterator

from lm.data import data_root
from lm.data.atomic import atomic_writer
from lm.errors import UserError

_CHUNK = 1 << 20
_TIMEOUT_S = 60


@dataclasses.dataclass(frozen=True)
class File:
  """One file of a dataset and where its bytes come from.

  Attributes:
    name: path in the dataset's directory.
    url: the canonical source: the file itself, a `.gz` of it, or an archive holding it.
    member: in a zip or tar archive, the member's path (its tail, after any top folder).
    sha256: of the file's uncompressed content ('' skips the check).
    gzip: write it gzip-compressed (large text, as the experiments read it).
  """
  name: str
  url: str
  member: str = ""
  sha256: str = ""
  gzip: bool = False


@dataclasses.dataclass(frozen=True)
class Repack:
  """A tar.gz made of some members of a larger tar archive (IMDB's train and unsup halves).

  Attributes:
    name: path in the dataset's directory.
    url: the archive.
    prefixes: members whose path starts with one of these go in.
    counts: member path prefix -> the number of files expected under it.
  """
  name: str
  url: str
  prefixes: tuple[str, ...]
  counts: tuple[tuple[str, int], ...]


@dataclasses.dataclass(frozen=True)
class Dataset:
  source: str  # Who publishes it, for messages.
  files: tuple[File | Repack, ...] = ()
  note: str = ""  # Why there is no download, when `files` is empty.


_GH = "https://raw.githubusercontent.com"
_WIKITEXT = f"{_GH}/pytorch/examples/main/word_language_model/data/wikitext-2"
_MULTI30K = f"{_GH}/multi30k/dataset/master/data/task1/raw"
_SST2 = "https://dl.fbaipublicfiles.com/glue/data/SST-2.zip"
_FORTUNES = "https://deb.debian.org/debian/pool/main/f/fortunes-zh/fortunes-zh_2.98.tar.xz"
_IMDB = "https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz"
_WNUT = f"{_GH}/leondz/emerging_entities_17/master"
_WEIBO = f"{_GH}/hltcoe/golden-horse/master/data"
_CMRC = f"{_GH}/ymcui/cmrc2018/master/squad-style-data"

# Checksums: /work/shared/data/README.md (the copies the experiments and BENCHMARKS.md used).
DATASETS = {
    "tinyshakespeare": Dataset("Karpathy's char-rnn", (File(
        "input.txt", f"{_GH}/karpathy/char-rnn/master/data/tinyshakespeare/input.txt",
        sha256="86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"),)),
    "wikitext2": Dataset("WikiText-2 v1 (Merity et al.), as in pytorch/examples", (
        File("tokens/train.txt.gz", f"{_WIKITEXT}/train.txt", gzip=True,
             sha256="9e9fa1ad55b1c2c95b08e37dd8e653f638fac2c6de904b79e813611eefbc985f"),
        File("tokens/valid.txt", f"{_WIKITEXT}/valid.txt",
             sha256="f0737ed31fc1329026e95cb8b98e19c2a182c39c240ab909dc31abf2f8af58e8"),
        File("tokens/test.txt", f"{_WIKITEXT}/test.txt",
             sha256="d790b833ef8cf03a90db7bf1271b7520b83c45ce07ba3c1a9699df81e239eca0"),
    )),
    "sst2": Dataset("GLUE", (
        File("train.tsv", _SST2, member="SST-2/train.tsv",
             sha256="48eac26399f8456935f81dd9e3a745c1430adb6c62e233ccfe22db4a0d15d1d1"),
        File("dev.tsv", _SST2, member="SST-2/dev.tsv",
             sha256="54a9c12c77e402fc14d6a66a506f24d999f596b0176eb777c972cccc2f9cc4b0"),
        File("test.tsv", _SST2, member="SST-2/test.tsv",
             sha256="69a938605609b3e6663b4487918fe1565eb293734e6e520d0366d1d412fd2a13"),
    )),
    "zh-fortunes": Dataset("Debian's fortunes-zh 2.98 source package", (
        File("chinese", _FORTUNES, member="chinese",
             sha256="282c8d2d636e7dac0d54f6c4f25c6a22e5a0ac2d2ffa1f53ca994717d69e5ff7"),
        File("tang300", _FORTUNES, member="tang300",
             sha256="b69cab0cb84c49dc1808d95aea7156c8911a7022ec630e194eecf360b78feff5"),
        File("song100", _FORTUNES, member="song100",
             sha256="05a0af125f3572b895e06046c417df0f8f1b8cb9cf0b5115ee9420ae5524683b"),
        File("COPYRIGHT", _FORTUNES, member="debian/copyright"),
    )),
    "imdb": Dataset("Stanford AI Lab (Maas et al. 2011)", (
        Repack("aclImdb_train.tar.gz", _IMDB,
               ("aclImdb/README", "aclImdb/imdb.vocab", "aclImdb/imdbEr.txt",
                "aclImdb/train/neg/", "aclImdb/train/pos/", "aclImdb/train/urls_neg.txt",
                "aclImdb/train/urls_pos.txt"),
               (("aclImdb/train/neg/", 12_500), ("aclImdb/train/pos/", 12_500))),
        Repack("aclImdb_unsup.tar.gz", _IMDB,
               ("aclImdb/train/unsup/", "aclImdb/train/urls_unsup.txt"),
               (("aclImdb/train/unsup/", 50_000),)),
    )),
    "multi30k": Dataset("multi30k/dataset on GitHub", tuple(
        File(f"{split}.{lang}", f"{_MULTI30K}/{split}.{lang}.gz", sha256=sha)
        for (split, lang), sha in {
            ("train", "de"): "2c2b73fd2b548fbcde3a875e0a78d6ee94d498bfdee6bd3eae3945779e9ddf72",
            ("train", "en"): "460a15fbd157e34a7a9957ee388c1ca247fe47af3ef25fb50442af6c274e0fc6",
            ("val", "de"): "660e09eb7e1da2f856ea13ee5ad3cf6d36b3d5b0b733c857e94c5747a3dfc660",
            ("val", "en"): "1f2a23d992769b5b3d209b0a10dd0b77c08cceb1f20dfb97ed0aafa49d107227",
        }.items())),
    "wnut17": Dataset("leondz/emerging_entities_17 on GitHub", (
        File("wnut17train.conll", f"{_WNUT}/wnut17train.conll",
             sha256="731820e13f71af324c6b55a1575ec2ce59fbaa2a0806f8f0400b98d56cd6a7a5"),
        File("emerging.dev.conll", f"{_WNUT}/emerging.dev.conll",
             sha256="e053b752b8155113ca66e7db08af5f2f5f43ab993694e4774f1ec5bad42312d8"),
    )),
    "weibo-ner": Dataset("hltcoe/golden-horse on GitHub", (
        File("weiboNER_2nd_conll.train", f"{_WEIBO}/weiboNER_2nd_conll.train",
             sha256="4e8954c54ab33b0afc9a8abb85715c47422645cc6d1b49fdb24540f4a427e997"),
        File("weiboNER_2nd_conll.dev", f"{_WEIBO}/weiboNER_2nd_conll.dev",
             sha256="e72730d83aac680505280b6301c879b3ba470d29ac308979d48cdc58ee4907cc"),
    )),
    "cmrc2018": Dataset("ymcui/cmrc2018 on GitHub", (
        File("cmrc2018_train.json.gz", f"{_CMRC}/cmrc2018_train.json", gzip=True,
             sha256="5497aa2f81908e31d6b0e27d99b1f90ab63a8f58fa92fffe5d17cf62eba0c212"),
        File("cmrc2018_dev.json", f"{_CMRC}/cmrc2018_dev.json",
             sha256="e9ff74231f05c230c6fa88b84441ee334d97234cbb610991cd94b82db00c7f1f"),
    )),
    "samsum": Dataset("Samsung (Gliwa et al. 2019)", note=(
        "SAMSum has no copy in this layout at its source (a 7z archive; the files here were "
        "re-serialized): load the Hugging Face dataset 'Samsung/samsum' and write its splits "
        "as train.json.gz and val.json, each a JSON list of {id, summary, dialogue}")),
}


def download(name: str, data_dir: str | None = None, *, mirror: str = "",
             log=print) -> list[str]:
  """Fetches dataset `name` into `data_dir` (default: the data root); returns the paths written.

  Raises UserError for an unknown name, a network failure or a checksum mismatch; no partial
  file is ever left behind.
  """
  if name not in DATASETS:
    raise UserError(f"unknown dataset '{name}'; known: {', '.join(sorted(DATASETS))}")
  dataset = DATASETS[name]
  if not dataset.files:
    raise UserError(f"{name}: {dataset.note}")
  directory = os.path.join(os.path.abspath(data_dir or data_root.root()), name)
  todo = [f for f in dataset.files if not os.path.exists(os.path.join(directory, f.name))]
  for f in dataset.files:
    if f not in todo:
      log(f"{os.path.join(directory, f.name)}: exists, kept")
  written = []
  for url in dict.fromkeys(f.url for f in todo):  # One fetch per URL (an archive or a file).
    source = _mirrored(url, mirror)
    log(f"{name}: fetching {source}")
    with _fetched(source, directory) as local:
      for f in (f for f in todo if f.url == url):
        target = os.path.join(directory, f.name)
        if isinstance(f, Repack):
          _repack(local, f, target, source)
        else:
          _write(_content(local, f, source), f, target, source)
        _readable(target)
        log(f"{target}: written")
        written.append(target)
  return written


def _mirrored(url: str, mirror: str) -> str:
  if not mirror:
    return url
  return f"{mirror.rstrip('/')}/{urllib.parse.urlsplit(url).path.rsplit('/', 1)[-1]}"


@contextlib.contextmanager
def _fetched(url: str, directory: str) -> Iterator[str]:
  """Downloads `url` to a temporary file in `directory` (removed afterwards, even on Ctrl-C)."""
  os.makedirs(directory, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=directory, prefix=".download.", suffix=".tmp")
  try:
    with os.fdopen(fd, "wb") as out:
      try:
        with urllib.request.urlopen(url, timeout=_TIMEOUT_S) as response:
          while chunk := response.read(_CHUNK):
            out.write(chunk)
      except (OSError, ValueError) as e:  # URLError, HTTPError and timeouts are OSErrors.
        reason = getattr(e, "reason", None) or e
        raise UserError(f"{url}: download failed ({reason}); check the network, or fetch the "
                        f"file elsewhere and pass --mirror=file:///DIR holding it") from None
    yield tmp
  finally:
    with contextlib.suppress(FileNotFoundError):
      os.remove(tmp)


def _content(local: str, f: File, url: str) -> bytes:
  """The file's bytes out of the download: itself, gunzipped, or an archive's member."""
  if f.member:
    return _member(local, f.member, url)
  with open(local, "rb") as src:
    data = src.read()
  if url.endswith(".gz"):
    try:
      return gzip.decompress(data)
    except (OSError, EOFError) as e:
      raise UserError(f"{url}: not a complete gzip file ({e})") from None
  return data


def _member(local: str, member: str, url: str) -> bytes:
  """Member `member` of a zip or tar archive; `member` may omit a top folder."""
  def matches(path: str) -> bool:
    return path == member or path.endswith("/" + member)
  try:
    if zipfile.is_zipfile(local):
      with zipfile.ZipFile(local) as archive:
        found = [n for n in archive.namelist() if matches(n)]
        if len(found) == 1:
          return archive.read(found[0])
    else:
      with tarfile.open(local, "r:*") as archive:
        found = [m for m in archive.getmembers() if m.isfile() and matches(m.name)]
        if len(found) == 1:
          return archive.extractfile(found[0]).read()
  except (OSError, EOFError, tarfile.TarError, zipfile.BadZipFile) as e:
    raise UserError(f"{url}: not a readable archive ({e})") from None
  raise UserError(f"{url}: the archive holds {len(found)} members named '{member}', not one")


def _write(data: bytes, f: File, target: str, url: str) -> None:
  got = hashlib.sha256(data).hexdigest()
  if f.sha256 and got != f.sha256:
    raise UserError(f"{url}: '{f.name}' has sha256 {got}, not the {f.sha256} of the copy this "
                    f"project was tested with (the source changed?); nothing was written")
  with atomic_writer(target) as out:
    if f.gzip:
      with gzip.GzipFile(fileobj=out, mode="wb", mtime=0) as packed:
        packed.write(data)
    else:
      out.write(data)


def _repack(local: str, r: Repack, target: str, url: str) -> None:
  counts = dict.fromkeys((prefix for prefix, _ in r.counts), 0)
  try:
    with tarfile.open(local, "r:*") as archive, atomic_writer(target) as out:
      with tarfile.open(fileobj=out, mode="w:gz") as packed:
        for member in archive:
          if not member.name.startswith(r.prefixes):
            continue
          data = archive.extractfile(member) if member.isfile() else None
          packed.addfile(member, data)
          for prefix in counts:
            counts[prefix] += member.isfile() and member.name.startswith(prefix)
        wrong = {p: n for p, n in counts.items() if n != dict(r.counts)[p]}
        if wrong:  # Raising inside atomic_writer leaves no file behind.
          raise UserError(f"{url}: expected {dict(r.counts)} files, found {counts}; nothing "
                          f"was written")
  except (OSError, EOFError, tarfile.TarError) as e:
    raise UserError(f"{url}: not a readable tar archive ({e})") from None


def _readable(path: str) -> None:
  """The mode a plain `open` would give (atomic writes start as 0600 temporary files)."""
  umask = os.umask(0)
  os.umask(umask)
  os.chmod(path, 0o666 & ~umask)


def main(argv: list[str], data_dir: str | None, mirror: str) -> None:
  """The command line: one `error:` line for a mistake (exit 2), one line for Ctrl-C (130)."""
  from lm import cli  # pylint: disable=g-import-not-at-top
  if len(argv) < 2:
    cli.fail(f"name a dataset: python -m lm.data.download NAME; known: "
             f"{', '.join(sorted(DATASETS))}")
  try:
    for name in argv[1:]:
      download(name, data_dir, mirror=mirror)
  except UserError as e:
    cli.fail(str(e))
  except KeyboardInterrupt:
    print("interrupted: no partial file was left", file=sys.stderr)
    sys.exit(130)


def run() -> None:
  """The console command (pyproject.toml [project.scripts]); its flags are defined here, not
  on import (other modules' tests import this one)."""
  from absl import flags  # pylint: disable=g-import-not-at-top
  from lm import cli  # pylint: disable=g-import-not-at-top
  data_dir = flags.DEFINE_string(
      "data_dir", None, f"Data root (default: ${data_root.ENV}, else ../shared/data beside the "
      "repository).")
  mirror = flags.DEFINE_string(
      "mirror", "", "Fetch each file from URL/<its file name> instead (e.g. file:///DIR).")
  cli.run(lambda argv: main(argv, data_dir.value, mirror.value))


if __name__ == "__main__":
  run()
