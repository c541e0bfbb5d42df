"""The per-shard work of a prepare run, one function per stage, run in worker processes.

clean_shard:    read this shard's slice of the inputs, clean, filter, compute exact keys and
                MinHash signatures, write the shard (shards.py) and its Stats.
tokenize_shard: encode the documents the merge kept (and augmented copies of training ones)
                into raw token files per split, with their global ids, token counts and
                round-trip checks; a part of a shard at a time.
"""

import dataclasses
import os
import time
from typing import Any, Iterator

import ml_collections
import numpy as np

from lm.data import atomic, augment, token_store, tokenizers

from lm.data.prepare import cleaning, contamination, dedup, layout, quality, readers, shards
from lm.data.prepare import config as prepare_config
from lm.data.prepare.stats import Stats, length_bin


@dataclasses.dataclass(frozen=True)
class ShardTask:
  """What one worker does: shard `index` of `num_shards` of config key `group`; in the
  tokenize stage, part `part` of `num_parts` of that shard's documents."""
  config: dict
  workdir: str
  group: str
  index: int
  num_shards: int
  part: int = 0
  num_parts: int = 1

  @property
  def name(self) -> str:
    name = layout.shard_name(self.group, self.index)
    return name if self.num_parts == 1 else f"{name}.{self.part}-of-{self.num_parts}"

  def parts(self, num_parts: int) -> list["ShardTask"]:
    return [dataclasses.replace(self, part=p, num_parts=num_parts) for p in range(num_parts)]

  def cfg(self) -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(self.config)


def clean_shard(task: ShardTask) -> dict[str, Any]:
  """Stage 1 of one shard; returns (and writes as the stage record) its Stats as JSON."""
  start = time.perf_counter()
  cfg = task.cfg()
  cleaner = prepare_config.cleaner_from(cfg.clean)
  hasher = (dedup.MinHasher(cfg.dedup.num_perm, seed=cfg.dedup.seed, unit=cfg.dedup.shingle_unit,
                            n=cfg.dedup.shingle_size) if cfg.dedup.near else None)
  split = cfg.train_split if task.group == "inputs" else cfg.valid_split
  inputs = readers.resolve_inputs(cfg[task.group], split=split, config_key=f"config.{task.group}")
  stats = Stats()
  writer = shards.ShardWriter(layout.shard_dir(task.workdir, task.group, task.index),
                              num_perm=cfg.dedup.num_perm if hasher else 0)
  batch = _CleanBatch(writer, quality.QualityFilter(cfg.quality), hasher, stats)
  for document in readers.iter_documents(inputs, cfg.reader, tfds_data_dir=cfg.tfds_data_dir,
                                         process_index=task.index,
                                         num_processes=task.num_shards):
    stats.counts["documents_in"] += 1
    stats.counts["bytes_in"] += len(document.text.encode("utf-8", errors="surrogatepass"))
    stats.counts["chars_in"] += len(document.text)
    stats.lengths_in[length_bin(len(document.text))] += 1
    stats.counts["escapes_in"] += cleaning.count_escapes([document.text])
    text, counts = cleaner.clean(document.text)
    stats.cleaning_items.update(counts)
    stats.cleaning_documents.update(counts.keys())
    if not text.strip():
      stats.removed["empty_after_cleaning"] += 1
      continue
    batch.add(document, text)
  batch.flush()
  writer.close()
  stats.counts["clean_seconds"] = time.perf_counter() - start
  return stats.to_json()


class _CleanBatch:
  """Cleaned documents on their way to the shard, a batch at a time (one pass of numpy calls
  for many documents): the quality rules, then the exact keys and MinHash signatures of those
  they keep, written in order."""

  MAX_DOCUMENTS, MAX_CHARS = 256, 1 << 22

  def __init__(self, writer: shards.ShardWriter, rules: quality.QualityFilter,
               hasher: dedup.MinHasher | None, stats: Stats):
    self.writer, self.rules, self.hasher, self.stats = writer, rules, hasher, stats
    self.documents, self.texts, self.chars = [], [], 0

  def add(self, document: readers.Document, text: str) -> None:
    self.documents.append(document)
    self.texts.append(text)
    self.chars += len(text)
    if len(self.documents) >= self.MAX_DOCUMENTS or self.chars >= self.MAX_CHARS:
      self.flush()

  def flush(self) -> None:
    kept = []
    for document, text, reason in zip(self.documents, self.texts, self.rules.reasons(self.texts)):
      if reason:
        self.stats.removed[reason] += 1
      else:
        kept.append((document, text))
    folded = [dedup.fold(text) for _, text in kept]  # Once for both kinds of duplicate.
    signatures = (self.hasher.signatures(folded, folded=True) if self.hasher and folded
                  else [None] * len(folded))
    for (document, text), text_folded, signature in zip(kept, folded, signatures):
      self.writer.add(document.id, text, dedup.exact_key(text_folded, folded=True), signature,
                      where=document.where)
      self.stats.counts["documents_clean"] += 1
      self.stats.counts["bytes_clean"] += len(text.encode("utf-8"))
    self.documents, self.texts, self.chars = [], [], 0


def contamination_shard(task: ShardTask) -> dict[str, Any]:
  """The training documents of one shard checked against the validation documents (each worker
  indexes them: a small set); returns its `ContaminationIndex.evidence()`, with training
  documents numbered in input order across shards."""
  cfg = task.cfg()
  groups = [g for g in layout.GROUPS if cfg[g].strip()]
  index = contamination_index(cfg, task.workdir, groups, task.num_shards)
  order = [(g, i) for g in groups for i in range(task.num_shards)]
  before = sum(  # Training documents of the shards before this one.
      int(np.count_nonzero(np.load(layout.decisions_path(task.workdir, g, i)) == layout.TRAIN))
      for g, i in order[:order.index((task.group, task.index))])
  reuse = cfg.dedup.near and bool(cfg.contamination.near_threshold)
  shard = shards.Shard(layout.shard_dir(task.workdir, task.group, task.index))
  decisions = np.load(layout.decisions_path(task.workdir, task.group, task.index))
  rows = np.flatnonzero(decisions == layout.TRAIN)
  for begin in range(0, len(rows), _CleanBatch.MAX_DOCUMENTS):
    batch = rows[begin:begin + _CleanBatch.MAX_DOCUMENTS]
    index.add_train_batch([text for _, text in shard.texts(batch)],
                          range(before + begin, before + begin + len(batch)),
                          np.stack([shard.signature(row) for row in batch]) if reuse else None)
  return index.evidence()


def contamination_index(cfg: ml_collections.ConfigDict, workdir: str, groups: list[str],
                        num_shards: int) -> contamination.ContaminationIndex:
  """An index of the written validation documents, with the deduplication's MinHasher (so that
  the shards' signatures are reused)."""
  hasher = dedup.MinHasher(cfg.dedup.num_perm, seed=cfg.dedup.seed,
                           unit=cfg.dedup.shingle_unit, n=cfg.dedup.shingle_size)
  return contamination.ContaminationIndex(_valid_sets(workdir, groups, num_shards),
                                          hasher=hasher, **_contamination_options(cfg))


def contamination_evidence(cfg: ml_collections.ConfigDict, workdir: str, groups: list[str],
                           num_shards: int) -> contamination.ContaminationEvidence:
  """Where the shards' evidence is merged: the written validation documents, not indexed."""
  return contamination.ContaminationEvidence(_valid_sets(workdir, groups, num_shards),
                                             **_contamination_options(cfg))


def _valid_sets(workdir: str, groups: list[str], num_shards: int) -> dict[str, list[str]]:
  return {"valid": list(kept_texts(workdir, groups, num_shards, layout.VALID))}


def _contamination_options(cfg: ml_collections.ConfigDict) -> dict[str, Any]:
  return {"ngram": cfg.contamination.ngram, "char_ngram": cfg.contamination.char_ngram,
          "near_threshold": cfg.contamination.near_threshold or None,
          "config_key": "config.contamination"}


def kept_texts(workdir: str, groups: list[str], num_shards: int, code: int,
               every: int = 1) -> Iterator[str]:
  """Every `every`-th text the merge assigned `code` (TRAIN or VALID), in global-id (input)
  order, so that what is sampled from them does not depend on the number of shards."""
  found = []
  for group in groups:
    for i in range(num_shards):
      shard = shards.Shard(layout.shard_dir(workdir, group, i))
      rows = np.flatnonzero(np.load(layout.decisions_path(workdir, group, i)) == code)
      found.append((shard, rows, shard.ids[rows].astype(np.int64)))
  if not found:
    return
  ids = np.concatenate([f[2] for f in found])
  which = np.concatenate([np.full(len(f[1]), i) for i, f in enumerate(found)])
  rows = np.concatenate([f[1] for f in found])
  for k in np.argsort(ids, kind="stable")[::every]:
    yield found[which[k]][0].text(int(rows[k]))


def tokenize_shard(task: ShardTask) -> dict[str, Any]:
  """Stage 3 of one part of a shard (a run of its documents, in order): raw token files
  tokens/work/SPLIT-TASK.bin (+ .ends.npy, .ids.npy)."""
  start = time.perf_counter()
  cfg = task.cfg()
  tokenizer = tokenizers.load_tokenizer(layout.tokenizer_dir(task.workdir))
  dtype = token_store.token_dtype(tokenizer.vocab_size)
  shard = shards.Shard(layout.shard_dir(task.workdir, task.group, task.index))
  decisions = np.load(layout.decisions_path(task.workdir, task.group, task.index))
  unk = tokenizer.special_ids.unk
  operations = [op.strip() for op in cfg.augment.operations.split(",") if op.strip()]
  stats = Stats()
  token_counts = TokenCounter(tokenizer.vocab_size)
  for split, code in (("train", layout.TRAIN), ("valid", layout.VALID)):
    path = token_work_path(task.workdir, split, task.name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    ends, doc_ids, total = [], [], 0
    counts = stats.counts
    with atomic.atomic_writer(path + ".bin") as out:
      rows = np.array_split(np.flatnonzero(decisions == code), task.num_parts)[task.part]
      for row, text in shard.texts(rows):
        texts = [text]
        if split == "train" and cfg.augment.rate > 0:
          rng = np.random.default_rng([cfg.seed, int(shard.ids[row]) & (2**63 - 1)])
          texts += [augment.augment_text(text, rng, rate=cfg.augment.rate, operations=operations)
                    for _ in range(cfg.augment.copies)]
          counts["augmented_documents"] += len(texts) - 1
        for i, piece in enumerate(texts):
          ids = tokenizer.encode_array(piece)
          if i == 0:  # Checks on the real document, not its augmented copies.
            counts[f"{split}_roundtrip_failures"] += int(tokenizer.decode(ids) != piece)
            counts[f"{split}_unk_tokens"] += int(np.count_nonzero(ids == unk))
            counts[f"{split}_escapes_out"] += cleaning.count_escapes([piece])
            stats.lengths_out[length_bin(len(piece))] += 1
            stats.scripts.update(quality.script_counts(piece))
          tokens = np.append(ids, tokenizer.special_ids.eos).astype(dtype)
          out.write(tokens.tobytes())
          token_counts.add(tokens)
          total += len(tokens)
          ends.append(total)
          doc_ids.append(int(shard.ids[row]))
          counts[f"{split}_documents"] += 1
          counts[f"{split}_bytes"] += len(piece.encode("utf-8"))
          counts[f"{split}_tokens"] += len(tokens)
    np.save(path + ".ends.npy", np.asarray(ends, dtype=np.int64))
    np.save(path + ".ids.npy", np.asarray(doc_ids, dtype=np.int64))
  np.save(token_work_path(task.workdir, "counts", task.name) + ".npy", token_counts.total())
  stats.counts["tokenize_seconds"] = time.perf_counter() - start
  return stats.to_json()


class TokenCounter:
  """Occurrences of every token id, counted in batches (one bincount per ~1M tokens)."""

  def __init__(self, vocab_size: int):
    self._counts = np.zeros(vocab_size, dtype=np.int64)
    self._pending, self._size = [], 0

  def add(self, tokens: np.ndarray) -> None:
    self._pending.append(tokens)
    self._size += len(tokens)
    if self._size >= 1 << 20:
      self._flush()

  def total(self) -> np.ndarray:
    self._flush()
    return self._counts

  def _flush(self) -> None:
    if self._pending:
      self._counts += np.bincount(np.concatenate(self._pending).astype(np.int64),
                                  minlength=len(self._counts))
      self._pending, self._size = [], 0


def token_work_path(workdir: str, split: str, shard: str) -> str:
  return os.path.join(workdir, "tokens", "work", f"{split}-{shard}")


