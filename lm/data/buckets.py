"""Length-bucketed batches of variable-length examples, reproducible from a step counter alone.

A batch is padded on the right to the smallest bucket length >= its longest row; the buckets
(16, 32, 64, ..., max_len) keep the number of distinct shapes, hence jit compilations, small.
Every batch has exactly `batch_size` rows: rows that fill up a short batch repeat an example of
the batch with row weight 0; batch builders turn them into all-padding rows (segment ids 0).
"""

from typing import Iterator, Sequence

import numpy as np

from lm.data import batches
from lm.data.examples import ClassificationExamples
from lm.data.tokenizer_base import PAD_ID
from lm.errors import UserError


def bucket_lengths(max_len: int, multiple: int = 16) -> tuple[int, ...]:
  """multiple, 2 * multiple, 4 * multiple, ... below max_len, then max_len."""
  if max_len < 1 or multiple < 1:
    raise UserError(f"bucket lengths need max_len >= 1 and multiple >= 1, got {max_len} and"
                    f" {multiple}")
  lengths, length = [], multiple
  while length < max_len:
    lengths.append(length)
    length *= 2
  return tuple(lengths) + (max_len,)


def bucket_length(longest: int, buckets: Sequence[int]) -> int:
  """The smallest bucket length >= `longest`."""
  for length in buckets:
    if length >= longest:
      return int(length)
  raise ValueError(f"a row of {longest} tokens is longer than the largest bucket {buckets[-1]}")


class BucketedBatches(batches.StepCounter):
  """Training batches of example indices, grouped by length, reproducible from the step.

  Epoch e: permute the examples with `np.random.default_rng([seed, e])`, sort each chunk of
  `chunk_batches * batch_size` of them by length, cut into batches of `batch_size` and shuffle
  the batches (same rng). Global step s reads batch s % batches_per_epoch of epoch
  s // batches_per_epoch. A process reads only its `rows` of every global batch (all by
  default), as in `WindowSampler`. `buckets` only checks that every example fits.
  """

  def __init__(self,
               lengths: np.ndarray,
               *,
               batch_size: int,
               seed: int,
               buckets: Sequence[int],
               rows: np.ndarray | None = None,
               chunk_batches: int = 64):
    lengths = np.asarray(lengths, dtype=np.int64)
    if lengths.ndim != 1:
      raise ValueError(f"lengths must be 1-D, got shape {lengths.shape}")
    if not lengths.size:
      raise UserError("no training examples to batch (config.data.source)")
    if batch_size < 1 or chunk_batches < 1:
      raise UserError(f"batch_size and chunk_batches must be >= 1, got {batch_size} and"
                      f" {chunk_batches}")
    if not buckets or lengths.max() > max(buckets):
      raise ValueError(f"examples of up to {lengths.max()} tokens do not fit the buckets {buckets}")
    self._lengths = lengths
    self._batch_size = batch_size
    self._seed = seed
    self._chunk_batches = chunk_batches
    self._rows = batches.check_rows(batch_size, 1, rows)
    self._step = 0
    self._epoch_cache: tuple[int, np.ndarray, np.ndarray] | None = None

  @property
  def batches_per_epoch(self) -> int:
    return -(-self._lengths.size // self._batch_size)

  def epoch_batches(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices int64 [batches_per_epoch, batch_size] and row weights float32 of the same shape."""
    if self._epoch_cache is not None and self._epoch_cache[0] == epoch:
      return self._epoch_cache[1], self._epoch_cache[2]
    n, batch_size = self._lengths.size, self._batch_size
    rng = np.random.default_rng([self._seed, epoch])
    order = rng.permutation(n)
    chunk = self._chunk_batches * batch_size
    for start in range(0, n, chunk):
      part = order[start:start + chunk]
      order[start:start + chunk] = part[np.argsort(self._lengths[part], kind="stable")]
    indices_NxB, weights_NxB = _fill_batches(order, batch_size)
    shuffle = rng.permutation(len(indices_NxB))
    indices_NxB, weights_NxB = indices_NxB[shuffle], weights_NxB[shuffle]
    self._epoch_cache = (epoch, indices_NxB, weights_NxB)
    return indices_NxB, weights_NxB

  def global_indices(self, step: int) -> tuple[np.ndarray, np.ndarray]:
    """All `batch_size` example indices (int64) and row weights (float32) of global `step`."""
    if step < 0:
      raise ValueError(f"step must be >= 0, got {step}")
    epoch, batch = divmod(step, self.batches_per_epoch)
    indices_NxB, weights_NxB = self.epoch_batches(epoch)
    return indices_NxB[batch], weights_NxB[batch]

  def indices(self, step: int) -> tuple[np.ndarray, np.ndarray]:
    """This process's rows of `global_indices(step)`."""
    indices_B, weights_B = self.global_indices(step)
    return indices_B[self._rows], weights_B[self._rows]

  def next_indices(self) -> tuple[np.ndarray, np.ndarray]:
    """`indices` of the current step; advances the step."""
    result = self.indices(self._step)
    self._step += 1
    return result

  def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    while True:
      yield self.next_indices()


def eval_order(lengths: np.ndarray, batch_size: int) -> list[tuple[np.ndarray, np.ndarray]]:
  """(indices int64 [B], row weights float32 [B]) batches over every example once, by length.

  Rows with weight 0 fill up the last batch (they repeat one of its examples); skip them when
  mapping predictions back to examples with the indices.
  """
  lengths = np.asarray(lengths, dtype=np.int64)
  if batch_size < 1:
    raise UserError(f"batch_size must be >= 1, got {batch_size}")
  if not lengths.size:
    return []
  indices_NxB, weights_NxB = _fill_batches(np.argsort(lengths, kind="stable"), batch_size)
  return list(zip(indices_NxB, weights_NxB))


def classification_batch(examples: ClassificationExamples, indices: np.ndarray,
                         row_weights: np.ndarray, buckets: Sequence[int]) -> dict[str, np.ndarray]:
  """`inputs`, `segment_ids` int32 [B, L], `labels` int32 [B], `weights` float32 [B],
  `token_types` int32 [B, L] for sentence pairs, and `teacher_logits` float32 [B, C] under
  distillation (and `teacher_hidden` [B, D] with hidden-state transfer).

  L is the smallest bucket >= the longest real row; weight-0 rows are all padding (label 0,
  inputs `examples.pad_id`).
  """
  row_weights = np.asarray(row_weights, dtype=np.float32)
  sequences = [examples.tokens[i] for i in indices]
  inputs_BxL, segment_ids_BxL = pad_rows(sequences, row_weights, buckets, examples.pad_id)
  labels_B = np.where(row_weights > 0, examples.labels[np.asarray(indices)], 0).astype(np.int32)
  batch = {
      "inputs": inputs_BxL,
      "segment_ids": segment_ids_BxL,
      "labels": labels_B,
      "weights": row_weights,
  }
  if examples.token_types is not None:
    types = [examples.token_types[i] for i in indices]
    batch["token_types"] = pad_rows(types, row_weights, buckets, 0)[0]
  for name in ("teacher_logits", "teacher_hidden"):
    outputs = getattr(examples, name)
    if outputs is not None:
      rows = outputs[np.asarray(indices)]
      batch[name] = np.where(row_weights[:, None] > 0, rows, 0.0).astype(np.float32)
  return batch


def sft_batch(examples: Sequence[tuple[np.ndarray, np.ndarray]], indices: np.ndarray,
              row_weights: np.ndarray, buckets: Sequence[int], *,
              pad_id: int = PAD_ID) -> dict[str, np.ndarray]:
  """`inputs` = tokens[:-1], `targets` = tokens[1:], `segment_ids` int32 [B, L], `weights`.

  `weights` float32 [B, L] = loss_mask[1:] (the targets that count) * row weight; L is the
  smallest bucket >= the longest len(tokens) - 1 of the real rows; padding is `pad_id`.
  """
  row_weights = np.asarray(row_weights, dtype=np.float32)
  rows = [examples[i] for i in indices]
  inputs_BxL, segment_ids_BxL = pad_rows([tokens[:-1] for tokens, _ in rows], row_weights, buckets,
                                      pad_id)
  targets_BxL, _ = pad_rows([tokens[1:] for tokens, _ in rows], row_weights, buckets, pad_id)
  mask_BxL, _ = pad_rows([mask[1:] for _, mask in rows], row_weights, buckets, 0)  # 0: False.
  return {
      "inputs": inputs_BxL,
      "targets": targets_BxL,
      "weights": mask_BxL.astype(np.float32) * row_weights[:, None],
      "segment_ids": segment_ids_BxL,
  }


def pad_rows(sequences: Sequence[np.ndarray],
         row_weights: np.ndarray,
         buckets: Sequence[int],
         pad_id: int = PAD_ID) -> tuple[np.ndarray, np.ndarray]:
  """int32 [B, L] right-padded with `pad_id` (rows of weight 0 all padding) and segment ids."""
  real = [seq for seq, weight in zip(sequences, row_weights) if weight > 0]
  length = bucket_length(max((len(seq) for seq in real), default=1), buckets)
  values_BxL = np.full((len(sequences), length), pad_id, dtype=np.int32)
  segment_ids_BxL = np.zeros((len(sequences), length), dtype=np.int32)
  for row, (seq, weight) in enumerate(zip(sequences, row_weights)):
    if weight > 0:
      values_BxL[row, :len(seq)] = seq
      segment_ids_BxL[row, :len(seq)] = 1
  return values_BxL, segment_ids_BxL


def _fill_batches(order: np.ndarray, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
  """`order` as [N, batch_size] rows; the short last one repeats its first index at weight 0."""
  num_batches = -(-order.size // batch_size)
  padding = num_batches * batch_size - order.size
  weights = np.ones(order.size + padding, dtype=np.float32)
  if padding:
    first_of_last = order[(num_batches - 1) * batch_size]
    order = np.concatenate([order, np.full(padding, first_of_last, dtype=order.dtype)])
    weights[-padding:] = 0.0
  return (order.astype(np.int64).reshape(num_batches,
                                         batch_size), weights.reshape(num_batches, batch_size))
