"""The global pass over every shard: exact and near-duplicate removal (lm/data/prepare/dedup.py),
the train/valid split, and example duplicate clusters for the report.

Documents are ordered by global id (input order), evaluation documents first, so the result
does not depend on the number of shards: of a group of duplicates the first document is kept; a
training document that duplicates an evaluation document is dropped (config.dedup.against_valid)
or kept as training data (the contamination report lists it).

Out of core and vectorized (numpy); what stays in memory is a few dozen bytes per document
(its shard and row, its 16-byte exact key, what it duplicates, its decision), never a Python
object per document:
  exact  the exact keys of all documents in order -> np.unique(return_index): the first
         document of each key is kept, the others are exact duplicates of it.
  near   among the documents that are not exact duplicates (and have shingles), the LSH band
         keys of their MinHash signatures (`dedup.NearDuplicateIndex.band_keys`, the streaming
         index's banding) go to a scratch file in dedup/, band-major, written block by block.
         Then band by band: sort the band's keys, and in each run of equal keys pair every
         member with the run's earliest member and with its predecessor; pairs whose estimated
         Jaccard (share of equal signature values) is >= config.dedup.near_threshold are joined
         with union-find (a parent array, the root of a set is its earliest document). In each
         connected component the earliest document is kept, the others are near duplicates of
         it. Components are transitive: A ~ B and B ~ C drop B and C even if A !~ C.
Signature blocks are read through short-lived memory maps (unmapped after each block), so the
mapped pages do not add up in this process's memory.
"""

import hashlib
import os
from typing import Any

import numpy as np

from lm.data import atomic

from lm.data.prepare import dedup, layout, shards

_SNIPPET_CHARS = 240
_BLOCK = 2048  # Documents (or candidate pairs) per block: 1 MB of signatures at 128 permutations.
_EMPTY = np.uint32(0xFFFFFFFF)  # Every value of the signature of a text without shingles.


class _Corpus:
  """Every document of both groups by position: evaluation documents first, each group in
  global-id order; per position its shard (index into `shards`) and row."""

  def __init__(self, workdir: str, groups: list[str], num_shards: int):
    self.shards: list[shards.Shard] = []
    self.shard_group: list[tuple[str, int]] = []  # (group, shard index) of each shard.
    shard_of, row_of = [], []
    self.num_valid = 0
    for group in groups:
      first = len(self.shards)
      for i in range(num_shards):
        self.shards.append(shards.Shard(layout.shard_dir(workdir, group, i)))
        self.shard_group.append((group, i))
      group_shards = self.shards[first:]
      if not group_shards:
        continue
      ids = np.concatenate([_read(s, "ids.bin", np.int64) for s in group_shards])
      which = np.concatenate([np.full(len(s), first + i, np.int32)
                              for i, s in enumerate(group_shards)])
      rows = np.concatenate([np.arange(len(s), dtype=np.int64) for s in group_shards])
      order = np.argsort(ids, kind="stable")
      del ids
      shard_of.append(which[order])
      row_of.append(rows[order])
      if group == "valid_inputs":
        self.num_valid = len(order)
    self.shard_of = np.concatenate(shard_of) if shard_of else np.zeros(0, np.int32)
    self.row_of = np.concatenate(row_of) if row_of else np.zeros(0, np.int64)

  def __len__(self) -> int:
    return len(self.shard_of)

  def keys(self) -> np.ndarray:
    """The exact keys (S16) of all documents, by position."""
    keys = np.empty(len(self), np.dtype(f"S{shards.KEY_BYTES}"))
    for k, shard in enumerate(self.shards):
      mine = self.shard_of == k
      if np.any(mine):
        keys[mine] = _read(shard, "keys.bin", keys.dtype)[self.row_of[mine]]
    return keys

  def signatures(self, positions: np.ndarray, num_perm: int) -> np.ndarray:
    """uint32 [len(positions), num_perm] MinHash signatures, through a memory map per shard
    that is dropped (unmapped) before returning."""
    out = np.empty((len(positions), num_perm), np.uint32)
    which, rows = self.shard_of[positions], self.row_of[positions]
    for k in np.unique(which).tolist():
      mine = which == k
      mapped = np.memmap(os.path.join(self.shards[k].directory, "signatures.bin"),
                         dtype=np.uint32, mode="r").reshape(-1, num_perm)
      out[mine] = mapped[rows[mine]]
      del mapped
    return out

  def describe(self, position: int) -> dict[str, str]:
    k = int(self.shard_of[position])
    return describe(self.shards[k], self.shard_group[k][0], int(self.row_of[position]))


def describe(shard: shards.Shard, group: str, row: int) -> dict[str, str]:
  """A document of an example cluster in the report: where it came from and its beginning."""
  text = shard.text(row)
  return {
      "where": f"{group}: {shard.where(row)}",
      "text": text[:_SNIPPET_CHARS] + ("..." if len(text) > _SNIPPET_CHARS else ""),
  }


def _read(shard: shards.Shard, name: str, dtype) -> np.ndarray:
  """A whole per-document file of a shard, read (not mapped)."""
  return np.fromfile(os.path.join(shard.directory, name), dtype=dtype)


def resolve(cfg: Any, workdir: str, num_shards: int) -> dict:
  """Writes dedup/GROUP-NNNNN.npy for every shard; returns the duplicates summary (JSON-able)."""
  groups = [g for g in ("valid_inputs", "inputs") if cfg[g].strip()]
  corpus = _Corpus(workdir, groups, num_shards)
  n = len(corpus)
  positions = np.arange(n, dtype=np.int64)
  keys = corpus.keys()
  # The position of the document each one duplicates (its own if none), and of which kind.
  original = positions.copy()
  kind = np.zeros(n, np.int8)
  exact_sizes, exact_examples = np.zeros(0, np.int64), []
  if cfg.dedup.exact and n:
    _, first, inverse, counts = np.unique(keys, return_index=True, return_inverse=True,
                                          return_counts=True)
    inverse = inverse.reshape(-1)
    original = first[inverse].astype(np.int64)
    kind[original != positions] = layout.EXACT_DUPLICATE
    repeated = np.flatnonzero(counts > 1)
    exact_sizes = counts[repeated]
    chosen = repeated[np.lexsort((first[repeated], -counts[repeated]))]
    exact_examples = [np.flatnonzero(inverse == k)[:5] for k in chosen[:cfg.dedup.report_clusters]]
    del first, inverse, counts
  near_sizes, near_examples = np.zeros(0, np.int64), []
  if cfg.dedup.near and n:
    near_sizes, near_examples = _near_duplicates(cfg, workdir, corpus, original, kind)
  decisions = _decide(cfg, corpus, keys, original, kind)
  del keys, original, kind
  _save_decisions(workdir, corpus, decisions)
  counts = {reason: int(np.count_nonzero(decisions == code))
            for code, reason in layout.DROP_REASONS.items()}
  return {
      "removed": counts,
      "exact_clusters": len(exact_sizes),
      "exact_cluster_sizes": size_histogram(exact_sizes),
      "near_clusters": len(near_sizes),
      "near_cluster_sizes": size_histogram(near_sizes),
      "examples": {
          "exact": [[corpus.describe(p) for p in c.tolist()] for c in exact_examples],
          "near": [[corpus.describe(p) for p in c.tolist()] for c in near_examples],
      },
  }


def _near_duplicates(cfg: Any, workdir: str, corpus: _Corpus, original: np.ndarray,
                     kind: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
  """Marks near duplicates in `original`/`kind` (in place); returns the cluster sizes and the
  positions of the first (up to 5) members of the example clusters."""
  index = dedup.NearDuplicateIndex(cfg.dedup.near_threshold, cfg.dedup.num_perm,
                                   bands=cfg.dedup.lsh_bands)
  num_perm, bands, threshold = index.num_perm, index.bands, index.threshold
  candidates = np.flatnonzero(original == np.arange(len(original)))  # Not exact duplicates.
  m0 = len(candidates)
  nonempty = np.zeros(m0, bool)
  scratch = os.path.join(workdir, "dedup", "band_keys.tmp")
  os.makedirs(os.path.dirname(scratch), exist_ok=True)
  try:
    with open(scratch, "wb") as f:
      f.truncate(bands * m0 * 8)
      for start in range(0, m0, _BLOCK):
        signatures = corpus.signatures(candidates[start:start + _BLOCK], num_perm)
        nonempty[start:start + len(signatures)] = np.any(signatures != _EMPTY, axis=1)
        band_keys = index.band_keys(signatures)
        for b in range(bands):  # Band-major: each band's keys are contiguous.
          os.pwrite(f.fileno(), np.ascontiguousarray(band_keys[:, b]).tobytes(),
                    (b * m0 + start) * 8)
    eligible = candidates[nonempty]  # Positions, ascending: union-find index -> position.
    del candidates
    m = len(eligible)
    parent = np.arange(m, dtype=np.int64)
    for b in range(bands):
      column = np.fromfile(scratch, dtype=np.uint64, count=m0, offset=b * m0 * 8)[nonempty]
      order = np.argsort(column, kind="stable")  # Equal keys stay in position order.
      column = column[order]
      starts = np.ones(m, bool)
      starts[1:] = column[1:] != column[:-1]
      del column
      members = np.flatnonzero(~starts)
      if not len(members):
        continue
      run_first = order[np.maximum.accumulate(np.where(starts, np.arange(m), 0))[members]]
      previous = order[members - 1]
      later = order[members]
      del order, starts
      differ = previous != run_first
      _join_similar(parent, eligible, corpus, num_perm, threshold,
                    np.concatenate([run_first, previous[differ]]),
                    np.concatenate([later, later[differ]]))
  finally:
    if os.path.exists(scratch):
      os.remove(scratch)
  roots = _roots(parent, np.arange(m))
  duplicates = np.flatnonzero(roots != np.arange(m))
  original[eligible[duplicates]] = eligible[roots[duplicates]]
  kind[eligible[duplicates]] = layout.NEAR_DUPLICATE
  clustered, sizes = np.unique(roots[duplicates], return_counts=True)
  sizes += 1  # The kept document.
  chosen = clustered[np.lexsort((clustered, -sizes))][:cfg.dedup.report_clusters]
  examples = [eligible[np.flatnonzero(roots == root)[:5]] for root in chosen.tolist()]
  return sizes, examples


def _join_similar(parent: np.ndarray, eligible: np.ndarray, corpus: _Corpus, num_perm: int,
                  threshold: float, a: np.ndarray, b: np.ndarray) -> None:
  """Unions the candidate pairs (a[i], b[i]) (union-find indices) not yet in one set whose
  estimated Jaccard similarity is >= threshold."""
  parent[:] = _roots(parent, parent)
  apart = parent[a] != parent[b]
  a, b = a[apart], b[apart]
  similar = np.zeros(len(a), bool)
  for start in range(0, len(a), _BLOCK):
    left = corpus.signatures(eligible[a[start:start + _BLOCK]], num_perm)
    right = corpus.signatures(eligible[b[start:start + _BLOCK]], num_perm)
    similar[start:start + len(left)] = is_similar(left, right, threshold)
  _union(parent, a[similar], b[similar])


def is_similar(left: np.ndarray, right: np.ndarray, threshold: float) -> np.ndarray:
  """Whether the rows of two [n, num_perm] signature blocks estimate a Jaccard similarity
  >= threshold (the share of equal MinHash values)."""
  return np.mean(left == right, axis=1) >= threshold - 1e-9


def _roots(parent: np.ndarray, x: np.ndarray) -> np.ndarray:
  roots = parent[x]
  while True:
    up = parent[roots]
    if np.array_equal(up, roots):
      return roots
    roots = up


def _union(parent: np.ndarray, a: np.ndarray, b: np.ndarray) -> None:
  """Joins the sets of a[i] and b[i]; the root of a set is its smallest member (parent[i] <= i
  always, so there are no cycles)."""
  while len(a):
    root_a, root_b = _roots(parent, a), _roots(parent, b)
    apart = root_a != root_b
    a, b, root_a, root_b = a[apart], b[apart], root_a[apart], root_b[apart]
    np.minimum.at(parent, np.maximum(root_a, root_b), np.minimum(root_a, root_b))


def _decide(cfg: Any, corpus: _Corpus, keys: np.ndarray, original: np.ndarray,
            kind: np.ndarray) -> np.ndarray:
  """Per position: train, valid or the reason it is dropped (layout codes, int8)."""
  positions = np.arange(len(original))
  return decide(cfg, in_valid_group=positions < corpus.num_valid,
                duplicate=original != positions, original_in_valid=original < corpus.num_valid,
                kind=kind, keys=keys)


def decide(cfg: Any, *, in_valid_group: np.ndarray, duplicate: np.ndarray,
           original_in_valid: np.ndarray, kind: np.ndarray, keys: np.ndarray) -> np.ndarray:
  """The decision (layout codes, int8) for each of a block of documents, from whether it is an
  evaluation document, whether it duplicates an earlier one (of which `kind`), whether that one
  is an evaluation document, and its exact key (which side of the held-out split it falls on).
  Both runners call it, on all documents at once (local) or a shard's (Beam)."""
  crosses = duplicate & original_in_valid & ~in_valid_group
  decisions = np.full(len(duplicate), layout.TRAIN, np.int8)
  decisions[duplicate] = kind[duplicate]
  decisions[crosses] = layout.DUPLICATE_OF_VALID if cfg.dedup.against_valid else layout.TRAIN
  decisions[~duplicate & in_valid_group] = layout.VALID
  if not cfg.valid_inputs.strip():  # Hold out a share of the kept documents.
    kept = np.flatnonzero(~duplicate)
    for start in range(0, len(kept), _BLOCK):
      block = kept[start:start + _BLOCK]
      held = np.fromiter((held_out(bytes(key), cfg.seed, cfg.valid_fraction)
                          for key in keys[block]), dtype=bool, count=len(block))
      decisions[block[held]] = layout.VALID
  return decisions


def _save_decisions(workdir: str, corpus: _Corpus, decisions: np.ndarray) -> None:
  by_shard = np.argsort(corpus.shard_of, kind="stable")
  ends = np.cumsum(np.bincount(corpus.shard_of, minlength=len(corpus.shards)), dtype=np.int64)
  for k, shard in enumerate(corpus.shards):
    mine = by_shard[(ends[k - 1] if k else 0):ends[k]]
    array = np.full(len(shard), layout.TRAIN, np.int8)
    array[corpus.row_of[mine]] = decisions[mine]
    save(layout.decisions_path(workdir, *corpus.shard_group[k]), array)


def held_out(key: bytes, seed: int, fraction: float) -> bool:
  """A fixed pseudo-random `fraction` of exact keys (so copies land on the same side)."""
  digest = hashlib.blake2b(key, digest_size=8, salt=seed.to_bytes(8, "little")).digest()
  return int.from_bytes(digest, "little") < fraction * 2.0**64


def size_histogram(sizes: np.ndarray) -> dict[str, int]:
  values, counts = np.unique(sizes, return_counts=True)
  return {str(int(v)): int(c) for v, c in zip(values, counts)}


def save(path: str, array: np.ndarray) -> None:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with atomic.atomic_writer(path) as f:
    np.save(f, array)
