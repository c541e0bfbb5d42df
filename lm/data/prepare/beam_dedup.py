"""The global pass of duplicates.py as Apache Beam transforms (`--runner=beam`): the same
decisions, clusters and report, with no step that holds the corpus on one machine.

A document's place in the global order is its `order` key: evaluation documents first, each
group by global id (duplicates.py's positions, as one integer), so "the earliest document" is
the smallest key, whatever the workers and shards.

  edges      exact duplicates: group by exact key, the smallest order survives. Near-duplicate
             candidates: each survivor (with shingles) under its LSH band keys, grouped; in a
             bucket sorted by order, every member is paired with the bucket's first and its
             predecessor (duplicates.py's rule); the pairs are joined with both signatures and
             kept if duplicates.is_similar.
  components the similar pairs' connected components by the alternating large-star /
             small-star algorithm (Kiveris et al. 2014, "Connected Components in MapReduce and
             Beyond"): one Beam pipeline per round, until every component is a star around its
             smallest order (O(log^2 n) rounds; a handful on real duplicate clusters).
  decisions  the exact groups again, each survivor joined with its component's root; per shard
             duplicates.decide (the local runner's function), written as dedup/GROUP-NNNNN.npy;
             removal counts, cluster sizes and example clusters by Beam combiners.

Intermediate edges are text files under dedup/beam/ (removed at the end); every written file
has a deterministic name, so a retried worker rewrites it instead of adding to it.
"""

import dataclasses
import json
import os
import shutil
from typing import Any, Callable, Iterable, Iterator

import apache_beam as beam
import ml_collections
import numpy as np

from lm.data import atomic

from lm.data.prepare import dedup, duplicates, layout, shards

_GROUP_BIT = 62  # order = (0 for evaluation documents, 1 for training ones) << 62 | global id.
_EMPTY = 0xFFFFFFFF  # Every value of the signature of a text without shingles.
MAX_ROUNDS = 64
EDGE_FILES = 16  # Text files per round of edges (_write_edges).


@dataclasses.dataclass(frozen=True)
class Doc:
  order: int
  shard: int  # Index into the pass's shard list.
  row: int
  key: bytes
  signature: bytes | None = None  # uint32 [num_perm], raw.


def order_key(group: str, doc_id: int) -> int:
  return (0 if group == "valid_inputs" else 1) << _GROUP_BIT | doc_id


def is_evaluation(order: int) -> bool:
  return order < 1 << _GROUP_BIT


def shard_list(cfg: Any, num_shards: int) -> list[tuple[str, int]]:
  """(group, index) of every shard, evaluation groups first (the pass's shard numbering)."""
  return [(g, i) for g in ("valid_inputs", "inputs") if cfg[g].strip() for i in range(num_shards)]


def read_shard(k: int, workdir: str, shard_names: list[tuple[str, int]],
               signatures: bool) -> Iterator[Doc]:
  group, index = shard_names[k]
  shard = shards.Shard(layout.shard_dir(workdir, group, index))
  ids = np.fromfile(os.path.join(shard.directory, "ids.bin"), np.int64)
  keys = np.fromfile(os.path.join(shard.directory, "keys.bin"), f"S{shards.KEY_BYTES}")
  for row in range(len(shard)):
    yield Doc(order_key(group, int(ids[row])), k, row, bytes(keys[row]),
              shard.signature(row).tobytes() if signatures else None)


# --- Plain functions of the transforms (tested without Beam) ------------------------------------


def exact_group(members: Iterable[Doc]) -> Iterator[tuple[str, Any]]:
  """One exact key's documents -> ('doc', (doc, original order, kind)) for each, the survivor
  first, and ('cluster', (size, first order, [(order, shard, row)] of the first 5)) if repeated."""
  members = sorted(members, key=lambda d: d.order)
  first = members[0]
  yield "doc", (first, first.order, 0)
  for doc in members[1:]:
    yield "doc", (doc, first.order, layout.EXACT_DUPLICATE)
  if len(members) > 1:
    yield "cluster", (len(members), first.order, [(d.order, d.shard, d.row) for d in members[:5]])


def bucket_pairs(orders: Iterable[int]) -> Iterator[tuple[int, int]]:
  """Candidate pairs (earlier, later) of one LSH bucket: each member with the bucket's first
  and with its predecessor (duplicates._near_duplicates's rule)."""
  orders = sorted(orders)
  for i in range(1, len(orders)):
    yield orders[0], orders[i]
    if i > 1:
      yield orders[i - 1], orders[i]


def large_star(node: int, neighbors: Iterable[int]) -> Iterator[tuple[int, int]]:
  """Every larger neighbour of `node` linked to the smallest of its closed neighbourhood;
  edges are (larger, smaller)."""
  neighbors = set(neighbors)
  smallest = min(min(neighbors), node)
  for v in neighbors:
    if v > node:
      yield v, smallest


def small_star(node: int, smaller: Iterable[int]) -> Iterator[tuple[int, int]]:
  """`node` and its smaller neighbours linked to the smallest of them."""
  smaller = set(smaller)
  smallest = min(smaller)
  for v in smaller | {node}:
    if v != smallest:
      yield v, smallest


def star_violations(node: int, roles: Iterable[tuple[str, int]]) -> int:
  """1 if `node` keeps the edges from being stars around their smallest node: it has a smaller
  neighbour and a larger one, or more than one smaller neighbour."""
  roles = list(roles)
  centers = {v for role, v in roles if role == "center"}
  has_leaves = any(role == "leaf" for role, _ in roles)
  return int(len(centers) > 1 or (bool(centers) and has_leaves))


def components(edges: set[tuple[int, int]]) -> set[tuple[int, int]]:
  """The star form, (node, its component's smallest node), of undirected edges (a, b) with
  a > b, by the same rounds as the pipeline (in memory: for tests and small graphs)."""
  for _ in range(MAX_ROUNDS):
    if not sum(star_violations(n, r) for n, r in _group(_roles(edges)).items()):
      return edges
    both = [(a, b) for a, b in edges] + [(b, a) for a, b in edges]
    edges = {e for n, vs in _group(both).items() for e in large_star(n, vs)}
    edges = {e for n, vs in _group(edges).items() for e in small_star(n, vs)}
  raise RuntimeError(f"connected components did not converge in {MAX_ROUNDS} rounds")


def _roles(edges: Iterable[tuple[int, int]]) -> Iterator[tuple[int, tuple[str, int]]]:
  for a, b in edges:
    yield a, ("center", b)
    yield b, ("leaf", a)


def _group(pairs: Iterable[tuple[int, Any]]) -> dict[int, list]:
  grouped: dict[int, list] = {}
  for k, v in pairs:
    grouped.setdefault(k, []).append(v)
  return grouped


# --- The pipelines --------------------------------------------------------------------------------


def resolve(cfg: Any, workdir: str, num_shards: int, pipeline: Callable[[], Any]) -> dict:
  """Writes dedup/GROUP-NNNNN.npy for every shard; returns the duplicates summary, equal to
  duplicates.resolve's. `with pipeline() as p:` builds a Beam pipeline (the runner's options)
  that runs at the end of the block."""
  names = shard_list(cfg, num_shards)
  scratch = os.path.join(workdir, "dedup", "beam")
  if os.path.exists(scratch):
    shutil.rmtree(scratch)
  os.makedirs(scratch)
  edges_prefix = None
  if cfg.dedup.near:
    edges_prefix = os.path.join(scratch, "edges-0")
    with pipeline() as p:
      docs = _docs(p, workdir, names, signatures=True)
      survivors = _exact(docs, cfg).survivors
      _write_edges(_similar_pairs(survivors, cfg), edges_prefix)
    edges_prefix = _components(edges_prefix, scratch, pipeline)
  with pipeline() as p:
    docs = _docs(p, workdir, names, signatures=False)
    exact = _exact(docs, cfg)
    assigned = exact.assigned
    near_clusters = None
    if edges_prefix:
      roots = (p | "ReadRoots" >> beam.io.ReadFromText(edges_prefix + "-*")
               | "ParseRoots" >> beam.Map(_parse_edge))
      assigned, near_clusters = _join_roots(assigned, roots)
    decisions = (assigned | "ByShard" >> beam.Map(lambda a: (a[0].shard, a))
                 | "GroupShards" >> beam.GroupByKey()
                 | "Decide" >> beam.FlatMap(_decide_shard, cfg=cfg.to_dict(), workdir=workdir,
                                            names=names))
    _write_json(decisions | "CountDecisions" >> beam.combiners.Count.PerElement()
                | "Counts" >> beam.combiners.ToList(), os.path.join(scratch, "decisions.json"))
    _write_clusters(exact.clusters, "Exact", cfg, os.path.join(scratch, "exact.json"))
    if near_clusters is not None:
      _write_clusters(near_clusters, "Near", cfg, os.path.join(scratch, "near.json"))
  summary = _summary(cfg, workdir, names, scratch)
  for group, index in names:  # A shard without documents got no decisions from the pipeline.
    path = layout.decisions_path(workdir, group, index)
    if not os.path.exists(path):
      duplicates.save(path, np.zeros(0, np.int8))
  shutil.rmtree(scratch)
  return summary


def _docs(p, workdir: str, names: list, signatures: bool):
  return (p | "Shards" >> beam.Create(list(range(len(names)))) | "Spread" >> beam.Reshuffle()
          | "Read" >> beam.FlatMap(read_shard, workdir=workdir, shard_names=names,
                                   signatures=signatures))


@dataclasses.dataclass
class _Exact:
  assigned: Any  # (doc, original order, kind) for every document.
  survivors: Any  # The documents no exact duplicate precedes.
  clusters: Any  # (size, first order, first members) of each repeated key.


def _exact(docs, cfg: Any) -> _Exact:
  if not cfg.dedup.exact:
    assigned = docs | "Unique" >> beam.Map(lambda d: (d, d.order, 0))
    return _Exact(assigned, docs, docs | "NoClusters" >> beam.Filter(lambda d: False))
  tagged = (docs | "ByKey" >> beam.Map(lambda d: (d.key, d)) | "GroupKeys" >> beam.GroupByKey()
            | "ExactGroups" >> beam.FlatMap(lambda kv: exact_group(kv[1])))
  assigned = (tagged | "Docs" >> beam.Filter(lambda t: t[0] == "doc")
              | "Assigned" >> beam.Map(lambda t: t[1]))
  clusters = (tagged | "Repeated" >> beam.Filter(lambda t: t[0] == "cluster")
              | "Clusters" >> beam.Map(lambda t: t[1]))
  survivors = (assigned | "Survivors" >> beam.Filter(lambda a: a[2] == 0)
               | "SurvivorDocs" >> beam.Map(lambda a: a[0]))
  return _Exact(assigned, survivors, clusters)


class _BandKeys(beam.DoFn):
  """((band, key), order) for each LSH band of a document with shingles."""

  def __init__(self, cfg: dict):
    self._cfg = cfg

  def setup(self):
    d = self._cfg["dedup"]
    self._index = dedup.NearDuplicateIndex(d["near_threshold"], d["num_perm"],
                                           bands=d["lsh_bands"])

  def process(self, doc: Doc):
    signature = np.frombuffer(doc.signature, np.uint32)
    if np.all(signature == _EMPTY):
      return
    for band, key in enumerate(self._index.band_keys(signature[None])[0].tolist()):
      yield (band, key), doc.order


def _similar_pairs(survivors, cfg: Any):
  """(later, earlier) pairs of survivors in a common LSH bucket with similar signatures."""
  index = dedup.NearDuplicateIndex(cfg.dedup.near_threshold, cfg.dedup.num_perm,
                                   bands=cfg.dedup.lsh_bands)
  threshold = index.threshold
  pairs = (survivors | "BandKeys" >> beam.ParDo(_BandKeys(cfg.to_dict()))
           | "Buckets" >> beam.GroupByKey()
           | "Pairs" >> beam.FlatMap(lambda kv: bucket_pairs(kv[1]))
           | "DistinctPairs" >> beam.Distinct())
  signatures = survivors | "Signatures" >> beam.Map(lambda d: (d.order, d.signature))
  with_left = ({"pairs": pairs, "signature": signatures} | "JoinLeft" >> beam.CoGroupByKey()
               | "Left" >> beam.FlatMap(_with_signature))
  return ({"pairs": with_left, "signature": signatures} | "JoinRight" >> beam.CoGroupByKey()
          | "Similar" >> beam.FlatMap(_similar, threshold=threshold))


def _with_signature(joined):
  earlier, found = joined
  for signature in found["signature"]:
    for later in found["pairs"]:
      yield later, (earlier, signature)


def _similar(joined, threshold: float):
  later, found = joined
  for signature in found["signature"]:
    right = np.frombuffer(signature, np.uint32)[None]
    for earlier, left in found["pairs"]:
      if duplicates.is_similar(np.frombuffer(left, np.uint32)[None], right, threshold)[0]:
        yield later, earlier


def _components(prefix: str, scratch: str, pipeline: Callable[[], Any]) -> str:
  """Rounds of large-star + small-star, one pipeline each, until the edges are stars; returns
  the prefix of the files of (node, root) edges."""
  for round_ in range(1, MAX_ROUNDS + 1):
    violations_path = os.path.join(scratch, f"violations-{round_ - 1}.json")
    with pipeline() as p:
      edges = p | "Read" >> beam.io.ReadFromText(prefix + "-*") | "Parse" >> beam.Map(_parse_edge)
      _write_json(edges | "Roles" >> beam.FlatMap(lambda e: _roles([e]))
                  | "ByNode" >> beam.GroupByKey()
                  | "Violations" >> beam.MapTuple(star_violations)
                  | "Sum" >> beam.CombineGlobally(sum), violations_path)
    with open(violations_path, encoding="utf-8") as f:
      if not json.load(f):
        return prefix
    next_prefix = os.path.join(scratch, f"edges-{round_}")
    with pipeline() as p:
      edges = p | "Read" >> beam.io.ReadFromText(prefix + "-*") | "Parse" >> beam.Map(_parse_edge)
      large = (edges | "BothWays" >> beam.FlatMap(lambda e: [e, (e[1], e[0])])
               | "Neighbors" >> beam.GroupByKey() | "LargeStar" >> beam.FlatMapTuple(large_star)
               | "DistinctLarge" >> beam.Distinct())
      small = (large | "Smaller" >> beam.GroupByKey()
               | "SmallStar" >> beam.FlatMapTuple(small_star) | "DistinctSmall" >> beam.Distinct())
      _write_edges(small, next_prefix)
    prefix = next_prefix
  raise RuntimeError(f"connected components did not converge in {MAX_ROUNDS} rounds")


def _join_roots(assigned, roots):
  """Survivors in a near-duplicate component get its root as their original; returns the new
  assignments and the clusters (size, root, first members)."""
  centers = (roots | "Centers" >> beam.Map(lambda e: (e[1], e[1]))
             | "DistinctCenters" >> beam.Distinct())
  root_of = (roots, centers) | "RootOf" >> beam.Flatten()
  by_order = assigned | "ByOrder" >> beam.Map(lambda a: (a[0].order, a))
  tagged = ({"assigned": by_order, "root": root_of} | "JoinRoots" >> beam.CoGroupByKey()
            | "ApplyRoots" >> beam.FlatMap(_apply_root))
  new = (tagged | "RootedDocs" >> beam.Filter(lambda t: t[0] == "doc")
         | "Rooted" >> beam.Map(lambda t: t[1]))
  members = (tagged | "Members" >> beam.Filter(lambda t: t[0] == "member")
             | "Member" >> beam.Map(lambda t: t[1]) | "GroupComponents" >> beam.GroupByKey()
             | "Component" >> beam.MapTuple(_component))
  return new, members


def _apply_root(joined):
  _, found = joined
  roots = list(found["root"])
  for doc, original, kind in found["assigned"]:
    if roots and roots[0] != doc.order and kind == 0:
      original, kind = roots[0], layout.NEAR_DUPLICATE
    yield "doc", (doc, original, kind)
    if roots:
      yield "member", (roots[0], (doc.order, doc.shard, doc.row))


def _component(root: int, members: Iterable[tuple[int, int, int]]):
  members = sorted(members)
  return len(members), root, members[:5]


def _decide_shard(grouped, cfg: dict, workdir: str, names: list):
  """Writes one shard's decisions (duplicates.decide); yields each decision code."""
  k, assigned = grouped
  assigned = sorted(assigned, key=lambda a: a[0].row)
  orders = np.array([a[0].order for a in assigned], dtype=object)
  originals = np.array([a[1] for a in assigned], dtype=object)
  decisions = duplicates.decide(
      ml_collections.ConfigDict(cfg),
      in_valid_group=np.array([is_evaluation(o) for o in orders], bool),
      duplicate=originals != orders,
      original_in_valid=np.array([is_evaluation(o) for o in originals], bool),
      kind=np.array([a[2] for a in assigned], np.int8),
      keys=np.array([a[0].key for a in assigned], f"S{shards.KEY_BYTES}"))
  rows = np.array([a[0].row for a in assigned], np.int64)
  array = np.full(len(rows), layout.TRAIN, np.int8)
  array[rows] = decisions
  duplicates.save(layout.decisions_path(workdir, *names[k]), array)
  yield from decisions.tolist()


def _write_clusters(clusters, name: str, cfg: Any, path: str) -> None:
  sizes = (clusters | f"{name}Sizes" >> beam.Map(lambda c: c[0])
           | f"{name}SizeCounts" >> beam.combiners.Count.PerElement()
           | f"{name}SizeList" >> beam.combiners.ToList())
  top = clusters | f"{name}Top" >> beam.combiners.Top.Of(
      max(1, cfg.dedup.report_clusters), key=lambda c: (c[0], -c[1]))
  both = ((sizes | f"{name}TagSizes" >> beam.Map(lambda s: ("sizes", s))),
          (top | f"{name}TagTop" >> beam.Map(lambda t: ("top", t))))
  _write_json(both | f"{name}Both" >> beam.Flatten() | f"{name}Dict" >> beam.combiners.ToDict(),
              path)


def _write_json(single, path: str) -> None:
  """Writes the one element of `single` as JSON (the driver reads it after the pipeline)."""
  _ = single | f"Write{os.path.basename(path)}" >> beam.Map(
      lambda value: atomic.atomic_write_text(path, json.dumps(value)))


def _write_edges(edges, prefix: str) -> None:
  """Edges as text files PREFIX-NNNNN-of-EDGE_FILES. A fixed number of files: written a file per
  bundle (WriteToText's default), the DirectRunner with 2 workers lost half of the 48,345
  edges of a 1 GB corpus (BENCHMARKS.md, issue 28), and the result changed from run to run."""
  _ = (edges | f"Format{os.path.basename(prefix)}" >> beam.MapTuple(lambda a, b: f"{a} {b}")
       | f"Write{os.path.basename(prefix)}" >> beam.io.WriteToText(prefix, num_shards=EDGE_FILES))


def _parse_edge(line: str) -> tuple[int, int]:
  a, b = line.split()
  return int(a), int(b)


def _summary(cfg: Any, workdir: str, names: list, scratch: str) -> dict:
  """duplicates.resolve's summary from the files the decision pipeline wrote."""
  counts = dict(_read_json(os.path.join(scratch, "decisions.json"), []))
  by_shard = [shards.Shard(layout.shard_dir(workdir, g, i)) for g, i in names]

  def clusters(name):
    found = _read_json(os.path.join(scratch, f"{name}.json"), {})
    sizes = dict(found.get("sizes", []))
    top = found.get("top", []) if cfg.dedup.report_clusters else []
    examples = [[duplicates.describe(by_shard[k], names[k][0], row) for _, k, row in members]
                for _, _, members in top]
    return (sum(sizes.values()), {str(s): sizes[s] for s in sorted(sizes)}, examples)

  exact_count, exact_sizes, exact_examples = clusters("exact")
  near_count, near_sizes, near_examples = clusters("near")
  return {
      "removed": {reason: counts.get(code, 0) for code, reason in layout.DROP_REASONS.items()},
      "exact_clusters": exact_count,
      "exact_cluster_sizes": exact_sizes,
      "near_clusters": near_count,
      "near_cluster_sizes": near_sizes,
      "examples": {"exact": exact_examples, "near": near_examples},
  }


def _read_json(path: str, default):
  if not os.path.exists(path):  # A combiner over an empty collection wrote nothing.
    return default
  with open(path, encoding="utf-8") as f:
    return json.load(f)
