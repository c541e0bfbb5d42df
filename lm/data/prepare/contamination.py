"""Which evaluation examples also occur in the training data (test-set contamination).

GPT-3's rule (Brown et al. 2020, appendix C): an eval example is contaminated if it shares an
n-gram of `ngram` (13) words with a training document. For scripts written without spaces
(`dedup.choose_unit`) the n-gram is `char_ngram` (50) characters. An example shorter than its
n-gram is contaminated if all of it occurs in a training document. Also contaminated: an example
that is an exact duplicate (`dedup.exact_key`) or a near-duplicate (estimated Jaccard >=
`near_threshold`, `dedup.MinHasher`) of a training document. Text is compared after
`dedup.UnitText` normalization (NFKC, case folding, punctuation ignored).

Memory: the index holds the eval sets (small) and their n-gram hashes, and streams over the
training documents once, keeping none of them, so training corpora larger than RAM work. Scans
split over shards merge into a `ContaminationEvidence`: the eval texts and what was found,
without the index.

Arguments and config keys (`config_key` is the prefix, e.g. `config.contamination`): `ngram` ->
`.ngram`, `char_ngram` -> `.char_ngram`, `near_threshold` -> `.near_threshold`.
"""

import dataclasses
import json
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from lm.data.prepare import dedup

DEFAULT_NGRAM = 13
DEFAULT_CHAR_NGRAM = 50
KINDS = ("exact", "near", "ngram")  # Strongest evidence first.
SNIPPET_CHARS = 80
BATCH = 256  # Training documents per `add_train_batch` in `contamination_report`.


@dataclasses.dataclass(frozen=True)
class Contaminated:
  """An eval example found in the training data.

  Attributes:
    index: position of the example in its eval split.
    snippet: its first SNIPPET_CHARS characters, whitespace collapsed.
    kind: the strongest evidence: 'exact' (same `exact_key` as a training document), 'near'
      (near-duplicate of one) or 'ngram' (shares an n-gram with one).
    train_doc: id of the training document giving that evidence (`add_train`'s doc_id).
    ngram: the first shared n-gram found (normalized text), '' if none was.
    jaccard: estimated Jaccard similarity for kind 'near', else None.
  """

  index: int
  snippet: str
  kind: str
  train_doc: int
  ngram: str = ""
  jaccard: float | None = None


@dataclasses.dataclass(frozen=True)
class SplitReport:
  """The contaminated examples of one eval split, in index order."""

  name: str
  examples: int
  contaminated: tuple[Contaminated, ...]

  @property
  def share(self) -> float:
    return len(self.contaminated) / self.examples if self.examples else 0.0

  @property
  def indices(self) -> list[int]:
    return [found.index for found in self.contaminated]


@dataclasses.dataclass(frozen=True)
class Report:
  """Contamination of every eval split by one training corpus."""

  splits: dict[str, SplitReport]
  train_docs: int
  ngram: int
  char_ngram: int
  near_threshold: float | None

  def to_dict(self) -> dict[str, Any]:
    return {
        "train_docs": self.train_docs,
        "ngram": self.ngram,
        "char_ngram": self.char_ngram,
        "near_threshold": self.near_threshold,
        "splits": {
            name: {"examples": split.examples, "contaminated": len(split.contaminated),
                   "share": split.share,
                   "found": [dataclasses.asdict(found) for found in split.contaminated]}
            for name, split in self.splits.items()
        },
    }

  def to_json(self) -> str:
    return json.dumps(self.to_dict(), ensure_ascii=False, indent=2)

  def to_markdown(self, max_listed: int = 20) -> str:
    """A summary table, then up to `max_listed` contaminated examples per split."""
    near = (f", near-duplicates at Jaccard >= {self.near_threshold}"
            if self.near_threshold is not None else "")
    lines = [f"Eval examples found in the {self.train_docs:,} training documents ({self.ngram}-word"
             f" / {self.char_ngram}-character n-grams, exact duplicates{near}).", "",
             "| eval split | examples | contaminated | share |", "|---|---:|---:|---:|"]
    lines += [f"| {name} | {split.examples:,} | {len(split.contaminated):,} | {split.share:.2%} |"
              for name, split in self.splits.items()]
    for name, split in self.splits.items():
      if not split.contaminated:
        continue
      lines += ["", f"{name}:"]
      for found in split.contaminated[:max_listed]:
        evidence = found.kind
        if found.jaccard is not None:
          evidence += f" (Jaccard ~{found.jaccard:.2f})"
        if found.ngram:
          evidence += f", shares \"{found.ngram}\""
        lines.append(f"- #{found.index} {evidence}, training document {found.train_doc}:"
                     f" \"{found.snippet}\"")
      if len(split.contaminated) > max_listed:
        lines.append(f"- ... and {len(split.contaminated) - max_listed} more (see the JSON report)")
    return "\n".join(lines)


class _NgramTable:
  """Eval n-grams, looked up by the raw hash of their first `key_units` units.

  An example of at least n units (`ngram` or `char_ngram`) enters with each of its n-grams, keyed
  by all n units; a shorter one of m units enters once, whole, keyed by its first 2^floor(log2 m)
  units, so a training document needs a pass per power of two, not per example length.
  """

  def __init__(self, key_units: int, keys: np.ndarray, examples: np.ndarray, starts: np.ndarray,
               lengths: np.ndarray, hashes: np.ndarray):
    order = np.argsort(keys, kind="stable")
    self.key_units = key_units
    self._keys, self._examples = keys[order], examples[order]
    self._starts, self._lengths, self._hashes = starts[order], lengths[order], hashes[order]
    # A bitmap of the keys' top bits (>= 16 bits a key) rules out most queries at once.
    self._shift = np.uint64(64 - max(16, (16 * len(keys)).bit_length()))
    self._filter = np.zeros(1 << (64 - int(self._shift)), dtype=bool)
    self._filter[keys >> self._shift] = True

  def matches(self, units: dedup.UnitText) -> tuple[np.ndarray, ...]:
    """(example, start, length, document) of each eval n-gram found in the documents of
    `units` (as arrays, in document order and by position within each)."""
    document, end = units.unit_documents()
    positions = np.flatnonzero(np.arange(len(units)) + self.key_units <= end)
    keys = units.run_hashes(positions, self.key_units)
    positions = positions[self._filter[keys >> self._shift]]
    rows, hits = _find_sorted(self._keys, units.run_hashes(positions, self.key_units))
    positions = positions[hits]
    lengths = self._lengths[rows]
    fits = positions + lengths <= end[positions]
    rows, positions, lengths = rows[fits], positions[fits], lengths[fits]
    same = units.run_hashes(positions, lengths) == self._hashes[rows]
    rows, positions = rows[same], positions[same]
    return self._examples[rows], self._starts[rows], self._lengths[rows], document[positions]


def _find_sorted(sorted_keys: np.ndarray, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Every pair (i, j) with sorted_keys[i] == queries[j], as an array of i and one of j."""
  left = np.searchsorted(sorted_keys, queries)
  hits = np.flatnonzero(sorted_keys[np.minimum(left, len(sorted_keys) - 1)] == queries)
  counts = np.searchsorted(sorted_keys, queries[hits], side="right") - left[hits]
  # Each hit's run of equal keys, left[hit] .. left[hit] + count - 1, laid end to end.
  offsets = np.repeat(left[hits] - (np.cumsum(counts) - counts), counts)
  return np.arange(counts.sum()) + offsets, np.repeat(hits, counts)


def _key_units(count: int, n: int) -> int:
  return n if count >= n else 1 << (count.bit_length() - 1)


class ContaminationEvidence:
  """The eval examples and the first evidence of each kind found against them: all the report
  needs. Scans over the training documents (`ContaminationIndex`, e.g. one per shard) hand
  theirs over as `evidence()`; `absorb` merges them in the scans' order."""

  def __init__(self, eval_sets: Mapping[str, Sequence[str]], *, ngram: int = DEFAULT_NGRAM,
               char_ngram: int = DEFAULT_CHAR_NGRAM,
               near_threshold: float | None = dedup.DEFAULT_THRESHOLD,
               config_key: str = "config.contamination"):
    """Args:
      eval_sets: eval split name -> its examples (texts).
      ngram, char_ngram: n-gram sizes in words and in characters (no-space scripts).
      near_threshold: Jaccard similarity from which an example is a near-duplicate of a
        training document; None or 0 skips the near-duplicate check (and its MinHash cost).
      config_key: prefix of the config keys named in errors.
    """
    dedup.check_int(ngram, f"{config_key}.ngram", low=1)
    dedup.check_int(char_ngram, f"{config_key}.char_ngram", low=1)
    if near_threshold == 0:
      near_threshold = None
    if near_threshold is not None:
      dedup.check_threshold(near_threshold, f"{config_key}.near_threshold")
    self.ngram, self.char_ngram, self.near_threshold = ngram, char_ngram, near_threshold
    self._sizes = {name: len(texts) for name, texts in eval_sets.items()}
    self._texts = [text for texts in eval_sets.values() for text in texts]
    self._indices = [i for texts in eval_sets.values() for i in range(len(texts))]  # In its split.
    # Example -> kind -> the first (train doc, n-gram, Jaccard) giving that evidence.
    self._evidence: dict[int, dict[str, tuple[int, str, float | None]]] = {}
    self._train_docs = 0

  def evidence(self) -> dict[str, Any]:
    """The evidence found so far, as JSON: another `ContaminationEvidence` over the same eval
    sets can `absorb` it (a scan split over shards, merged in their order)."""
    return {"train_docs": self._train_docs,
            "evidence": {str(example): {kind: list(found) for kind, found in kinds.items()}
                         for example, kinds in self._evidence.items()}}

  def absorb(self, evidence: Mapping[str, Any]) -> None:
    """Adds the `evidence()` of a scan over training documents that came after this one's."""
    self._train_docs += evidence["train_docs"]
    for example, kinds in evidence["evidence"].items():
      for kind, found in kinds.items():
        self._record(int(example), kind, *found)

  def report(self) -> Report:
    """The contaminated examples of every split so far: per example the strongest evidence
    (KINDS), from the first training document giving it, and the first shared n-gram."""
    splits = {}
    first = 0
    for name, size in self._sizes.items():
      found = tuple(self._contaminated(e) for e in range(first, first + size)
                    if e in self._evidence)
      splits[name] = SplitReport(name, size, found)
      first += size
    return Report(splits, self._train_docs, self.ngram, self.char_ngram, self.near_threshold)

  def _contaminated(self, example: int) -> Contaminated:
    evidence = self._evidence[example]
    kind = next(k for k in KINDS if k in evidence)
    doc, _, jaccard = evidence[kind]
    snippet = " ".join(self._texts[example].split())
    if len(snippet) > SNIPPET_CHARS:
      snippet = snippet[:SNIPPET_CHARS - 1] + "…"
    ngram = evidence["ngram"][1] if "ngram" in evidence else ""
    return Contaminated(self._indices[example], snippet, kind, doc, ngram, jaccard)

  def _ngram_text(self, example: int, start: int, stop: int) -> str:
    folded = dedup.fold(self._texts[example])
    return dedup.UnitText(folded, dedup.choose_unit(folded), folded=True).text(start, stop)

  def _record(self, example: int, kind: str, doc: int, ngram: str = "",
              jaccard: float | None = None) -> None:
    """Keeps the first evidence of each kind for `example`."""
    self._evidence.setdefault(example, {}).setdefault(kind, (doc, ngram, jaccard))


class ContaminationIndex(ContaminationEvidence):
  """Eval examples indexed by n-gram, exact key and MinHash; `add_train` each training document
  once, then `report()`."""

  def __init__(self, eval_sets: Mapping[str, Sequence[str]], *, ngram: int = DEFAULT_NGRAM,
               char_ngram: int = DEFAULT_CHAR_NGRAM,
               near_threshold: float | None = dedup.DEFAULT_THRESHOLD,
               hasher: dedup.MinHasher | None = None,
               config_key: str = "config.contamination"):
    """Args as `ContaminationEvidence`, and `hasher`: the MinHasher for near-duplicates
    (default `dedup.MinHasher()`); pass the deduplication's to reuse its signatures in
    `add_train`."""
    super().__init__(eval_sets, ngram=ngram, char_ngram=char_ngram,
                     near_threshold=near_threshold, config_key=config_key)
    self.hasher = hasher or dedup.MinHasher()
    self._exact: dict[bytes, list[int]] = {}
    self._near = (dedup.NearDuplicateIndex(self.near_threshold, self.hasher.num_perm)
                  if self.near_threshold is not None else None)
    # (unit, key units) -> per example: keys, example ids, starts, lengths, full hashes.
    parts: dict[tuple[str, int], list[tuple[np.ndarray, ...]]] = {}
    for example, text in enumerate(self._texts):
      folded = dedup.fold(text)
      self._exact.setdefault(dedup.exact_key(folded, folded=True), []).append(example)
      if self._near is not None:
        self._near.insert(example, self.hasher.signature(folded, folded=True))
      unit = dedup.choose_unit(folded)
      units = dedup.UnitText(folded, unit, folded=True)
      if not len(units):
        continue
      size = ngram if unit == "word" else char_ngram
      n, key_units = min(size, len(units)), _key_units(len(units), size)
      starts = np.arange(len(units) - n + 1)
      parts.setdefault((unit, key_units), []).append(
          (units.run_hashes(starts, key_units), np.full(len(starts), example), starts,
           np.full(len(starts), n), units.run_hashes(starts, n)))
    self._tables: dict[str, list[_NgramTable]] = {}
    for (unit, key_units), columns in sorted(parts.items()):
      table = _NgramTable(key_units, *map(np.concatenate, zip(*columns)))
      self._tables.setdefault(unit, []).append(table)

  def add_train(self, text: str, *, doc_id: int | None = None,
                signature: np.ndarray | None = None) -> None:
    """Checks one training document against every eval example.

    Args:
      text: the document.
      doc_id: its id in the report (default: how many documents were added before it).
      signature: `self.hasher.signature(text)` if already computed (by the deduplication).
    """
    self.add_train_batch([text], None if doc_id is None else [doc_id],
                         None if signature is None else np.asarray(signature)[None])

  def add_train_batch(self, texts: Sequence[str], doc_ids: Sequence[int] | None = None,
                      signatures: np.ndarray | None = None) -> None:
    """`add_train` for several documents in order, hashed in one batch (far fewer numpy
    calls per document); `signatures`: [len(texts), num_perm] if already computed."""
    if not texts:
      return
    if doc_ids is None:
      doc_ids = range(self._train_docs, self._train_docs + len(texts))
    doc_ids = [int(doc) for doc in doc_ids]
    self._train_docs += len(texts)
    folded = [dedup.fold(text) for text in texts]
    for doc, text in zip(doc_ids, folded):
      for example in self._exact.get(dedup.exact_key(text, folded=True), ()):
        self._record(example, "exact", doc)
    if self._near is not None:
      if signatures is None:
        signatures = self.hasher.signatures(folded, folded=True)
      for doc, found in zip(doc_ids, self._near.query_many(signatures)):
        for example, jaccard in found:
          self._record(example, "near", doc, jaccard=jaccard)
    for unit, tables in self._tables.items():
      units = dedup.UnitText.of_documents(folded, unit, folded=True)
      for table in tables:
        examples, starts, lengths, documents = table.matches(units)
        # The first match of each example: in the first document, at the first position.
        examples, first = np.unique(examples, return_index=True)
        for example, i in zip(examples.tolist(), first.tolist()):
          if "ngram" not in self._evidence.get(example, ()):
            start, stop = int(starts[i]), int(starts[i] + lengths[i])
            self._record(example, "ngram", doc_ids[documents[i]],
                         ngram=self._ngram_text(example, start, stop))


def contamination_report(train_texts: Iterable[str], eval_sets: Mapping[str, Sequence[str]],
                         **kwargs) -> Report:
  """Streams `train_texts` once through a `ContaminationIndex(eval_sets, **kwargs)`, a batch
  of BATCH documents at a time."""
  index = ContaminationIndex(eval_sets, **kwargs)
  batch = []
  for text in train_texts:
    batch.append(text)
    if len(batch) == BATCH:
      index.add_train_batch(batch)
      batch = []
  index.add_train_batch(batch)
  return index.report()
