"""Near-duplicate detection quality, and deduplication and contamination speed, on real text.

Quality: distinct real documents (WikiText-2 paragraphs, IMDB reviews, Chinese fortunes, Tang
poems; `distinct_documents`) plus a seeded edited copy of some of them, with `rate` (5%) of their
words substituted, inserted or deleted (each Chinese character counts as a word). The originals
are added to a `NearDuplicateIndex` first, then the copies:
  recall     copies flagged as duplicates of their own original / copies
  precision  correct flags / all flags (an original flagged, or a copy matched to another
             document, is a false positive)
Speed (best of `--repeats` runs; one process, one core): `Deduplicator.add` (exact keys, MinHash,
LSH) and `contamination_report` (13-word n-grams, exact and near duplicates) over ~10 MB of IMDB
reviews, all Chinese fortunes and SST-2's short sentences, in documents/s and MB/s (UTF-8).

  .venv/bin/python benchmarks/dedup_quality.py [--thresholds=0.3,0.4,0.5,0.6,0.8] [--speed_mb=10]

About 3 minutes on the 2-vCPU VM (BENCHMARKS.md).
"""

import argparse
import dataclasses
import gzip
import os
import re
import sys
import tarfile
import time
import tracemalloc

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from lm.data import data_root  # pylint: disable=g-import-not-at-top
from lm.data.prepare import contamination, dedup  # pylint: disable=g-import-not-at-top

DATA = data_root.root()  # $LM_DATA_DIR, else ../shared/data beside the repository.
EDIT_KINDS = ("substitute", "insert", "delete")
_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")
_CJK = "\u2e80-\u312f\u31a0-\u9fff\uf900-\ufaff"
_WORD = re.compile(f"[{_CJK}]|[^\\s{_CJK}]+")
_SPACED_WORD = re.compile(f"[^{_CJK}]")


# --- Real documents ------------------------------------------------------------------------------


def wikitext_paragraphs(split: str = "valid", *, min_words: int = 50) -> list[str]:
  """WikiText-2 lines of at least `min_words` words (paragraphs; headings are shorter)."""
  path = os.path.join(DATA, "wikitext2", "tokens", f"{split}.txt")
  opener = gzip.open if split == "train" else open
  with opener(path + (".gz" if split == "train" else ""), "rt", encoding="utf-8") as f:
    return [line.strip() for line in f if len(line.split()) >= min_words]


def imdb_reviews(limit: int, *, archive: str = "aclImdb_unsup.tar.gz") -> list[str]:
  """The first `limit` reviews of an IMDB archive, in archive order."""
  reviews = []
  with tarfile.open(os.path.join(DATA, "imdb", archive), "r:gz") as tar:
    for member in tar:
      if member.isfile() and member.name.endswith(".txt") and "/train/" in member.name:
        reviews.append(tar.extractfile(member).read().decode("utf-8"))
        if len(reviews) == limit:
          break
  return reviews


def fortune_entries(name: str = "chinese", *, min_chars: int = 0) -> list[str]:
  """Entries of a zh-fortunes file (separated by lines holding `%`), color codes removed."""
  with open(os.path.join(DATA, "zh-fortunes", name), encoding="utf-8") as f:
    text = _ANSI_ESCAPE.sub("", f.read())
  entries = [entry.strip() for entry in re.split(r"^%$", text, flags=re.MULTILINE)]
  return [entry for entry in entries if len(entry) >= max(min_chars, 1)]


# --- Synthetic near-duplicates -------------------------------------------------------------------


def edit_units(units: list[str], rate: float, vocabulary: list[str],
               rng: np.random.Generator) -> list[str]:
  """`units` with round(rate * len) (>= 1) random substitutions, insertions or deletions, each
  at a random position; new units are drawn from `vocabulary`."""
  units = list(units)
  for _ in range(max(1, round(rate * len(units)))):
    kind = EDIT_KINDS[rng.integers(len(EDIT_KINDS))]
    position = int(rng.integers(len(units)))
    if kind == "substitute":
      units[position] = vocabulary[rng.integers(len(vocabulary))]
    elif kind == "insert":
      units.insert(position, vocabulary[rng.integers(len(vocabulary))])
    elif len(units) > 1:
      del units[position]
  return units


def words(text: str) -> list[str]:
  """`text` split on whitespace, with each Chinese or Japanese character a word of its own."""
  return _WORD.findall(text)


def edited_copy(text: str, rate: float, vocabulary: list[str], rng: np.random.Generator) -> str:
  """`text` with `rate` of its `words` edited; new words come from `vocabulary`."""
  edited = edit_units(words(text), rate, vocabulary, rng)
  spaced = [bool(_SPACED_WORD.match(word)) for word in edited]
  return "".join(word + (" " if spaced[i] and i + 1 < len(edited) and spaced[i + 1] else "")
                 for i, word in enumerate(edited))


def distinct_documents(documents: list[str], *, max_jaccard: float = 0.2) -> list[str]:
  """`documents` less those whose shingle set has an exact Jaccard similarity >= max_jaccard with
  that of an earlier one kept (an inverted index of shingles, independent of MinHash)."""
  holders: dict[int, list[int]] = {}  # Shingle -> kept documents holding it.
  sizes, kept = [], []
  for document in documents:
    own = dedup.shingles(document).tolist()
    shared: dict[int, int] = {}
    for shingle in own:
      for other in holders.get(shingle, ()):
        shared[other] = shared.get(other, 0) + 1
    if any(count >= max_jaccard * (len(own) + sizes[other] - count)
           for other, count in shared.items()):
      continue
    for shingle in own:
      holders.setdefault(shingle, []).append(len(kept))
    sizes.append(len(own))
    kept.append(document)
  return kept


@dataclasses.dataclass(frozen=True)
class Quality:
  """Outcome of `near_duplicate_quality`."""

  copies: int
  found: int  # Copies flagged as duplicates of their own original.
  false_flags: int  # Originals flagged, and copies matched to another document.

  @property
  def recall(self) -> float:
    return self.found / self.copies

  @property
  def precision(self) -> float:
    flags = self.found + self.false_flags
    return self.found / flags if flags else 1.0


def near_duplicate_quality(originals: list[str], copies: dict[int, str], *,
                           threshold: float = dedup.DEFAULT_THRESHOLD,
                           num_perm: int = dedup.DEFAULT_NUM_PERM, unit: str = "auto",
                           n: int = 0, seed: int = 0) -> Quality:
  """Adds `originals` (ids 0..N-1), then each copy of original i; counts the flags."""
  hasher = dedup.MinHasher(num_perm, seed=seed, unit=unit, n=n)
  index = dedup.NearDuplicateIndex(threshold, num_perm)
  false_flags = sum(
      index.add(i, hasher.signature(text)) is not None for i, text in enumerate(originals))
  found = 0
  for copy_id, (original, text) in enumerate(copies.items(), start=len(originals)):
    match = index.add(copy_id, hasher.signature(text))
    found += match == original
    false_flags += match not in (None, original)
  return Quality(len(copies), found, false_flags)


def make_copies(documents: list[str], count: int, rate: float, seed: int) -> dict[int, str]:
  """Edited copies of `count` random documents, by index; new words come from all documents."""
  rng = np.random.default_rng(seed)
  vocabulary = sorted({word for document in documents for word in words(document)})
  chosen = sorted(rng.choice(len(documents), size=count, replace=False).tolist())
  return {i: edited_copy(documents[i], rate, vocabulary, rng) for i in chosen}


# --- Speed ---------------------------------------------------------------------------------------


def timed(run, repeats: int):
  """The shortest wall time of `repeats` calls of `run()`, in seconds, and the last result."""
  best = float("inf")
  for _ in range(repeats):
    start = time.perf_counter()
    result = run()
    best = min(best, time.perf_counter() - start)
  return best, result


def deduplicate(documents: list[str], **kwargs) -> dedup.Deduplicator:
  deduplicator = dedup.Deduplicator(**kwargs)
  for i, document in enumerate(documents):
    deduplicator.add(i, document)
  return deduplicator


def index_bytes_per_document(documents: list[str]) -> float:
  """Traced memory of a NearDuplicateIndex holding `documents`, per document kept."""
  hasher = dedup.MinHasher()
  signatures = [hasher.signature(document) for document in documents]
  tracemalloc.start()
  index = dedup.NearDuplicateIndex()
  for i, signature in enumerate(signatures):
    index.add(i, signature)
  size = tracemalloc.get_traced_memory()[0]
  tracemalloc.stop()
  return size / len(index)


def sst2_sentences() -> list[str]:
  with open(os.path.join(DATA, "sst2", "train.tsv"), encoding="utf-8") as f:
    return [line.split("\t")[0] for line in f.read().splitlines()[1:]]


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--thresholds", default="0.3,0.4,0.5,0.6,0.8")
  parser.add_argument("--rate", type=float, default=0.05, help="share of words edited")
  parser.add_argument("--speed_mb", type=float, default=10.0, help="MB of IMDB reviews timed")
  parser.add_argument("--repeats", type=int, default=2)
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args()
  corpora = {
      "WikiText-2 valid paragraphs": (wikitext_paragraphs("valid"), 500),
      "IMDB unsup reviews (first 3000)": (imdb_reviews(3000), 1000),
      "Chinese fortunes (>= 40 chars)": (fortune_entries(min_chars=40), 1000),
      "Tang poems (tang300)": (fortune_entries("tang300"), 150),
  }
  print("| corpus | distinct documents | edited copies | threshold | recall | precision |")
  print("|---|---:|---:|---:|---:|---:|")
  for name, (documents, count) in corpora.items():
    documents = distinct_documents(documents)
    copies = make_copies(documents, count, args.rate, args.seed)
    for threshold in map(float, args.thresholds.split(",")):
      quality = near_duplicate_quality(documents, copies, threshold=threshold, seed=args.seed)
      print(f"| {name} | {len(documents):,} | {len(copies):,} | {threshold} | "
            f"{quality.recall:.3f} | {quality.precision:.4f} |", flush=True)

  reviews = imdb_reviews(int(args.speed_mb * 1e6 / 1300))  # Reviews average ~1.3 KB.
  eval_sets = {"IMDB train (2000)": imdb_reviews(2000, archive="aclImdb_train.tar.gz"),
               "tang300": fortune_entries("tang300")}
  print("\n| corpus | documents | MB | step | docs/s | MB/s | found |")
  print("|---|---:|---:|---|---:|---:|---|")
  for name, documents in (("IMDB unsup reviews", reviews),
                          ("Chinese fortunes (all)", fortune_entries()),
                          ("SST-2 train sentences", sst2_sentences())):
    megabytes = sum(len(d.encode("utf-8")) for d in documents) / 1e6
    steps = {
        "Deduplicator.add": (lambda: deduplicate(documents, seed=args.seed),
                             lambda d: f"{d.stats.exact} exact, {d.stats.near} near duplicates"),
        "contamination_report": (
            lambda: contamination.contamination_report(documents, eval_sets),
            lambda r: ", ".join(f"{s.name}: {len(s.contaminated)}" for s in r.splits.values())),
    }
    for step, (run, summary) in steps.items():
      seconds, result = timed(run, args.repeats)
      found = summary(result)
      print(f"| {name} | {len(documents):,} | {megabytes:.1f} | {step} | "
            f"{len(documents) / seconds:,.0f} | {megabytes / seconds:.2f} | {found} |", flush=True)
  print(f"\nNearDuplicateIndex memory: {index_bytes_per_document(reviews):,.0f} bytes per kept "
        f"document ({len(reviews):,} IMDB reviews, tracemalloc)")


if __name__ == "__main__":
  main()
