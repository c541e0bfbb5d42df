"""What the supervised tasks (classification, token classification, SFT) share: reading records,
the validation split, bucketed training batches over tokenized examples, and prediction in
length order."""

import dataclasses
from typing import Any, Callable

import jax
import numpy as np

from lm.data import buckets, reader, splits
from lm.data.prepare import cleaning
from lm.errors import UserError

# The held-out validation split of a training file is drawn with this seed, not config.seed,
# so that runs with different seeds are measured on the same examples.
SPLIT_SEED = 0
# The cleaning steps config.data.clean may name (stop-word removal needs a word list).
CLEAN_STEPS = tuple(step for step in cleaning.STEPS if step != "stopwords")


def read_splits(config: Any, fields: dict[str, str], blank: str = "error",
                keep_columns: bool = False) -> tuple[list, list]:
  """Training and validation records: fold config.data.fold of config.data.folds of the
  training records (cross-validation, `splits.fold_split`), config.data.valid_source, the TFDS
  valid_split, or a held-out valid_fraction of the training records (or of its whole texts:
  config.data.valid_holdout; then
  config.data.train_examples of the rest, `splits.first_examples`); a record with a blank
  field is an error, or kept (`blank='keep'`, for a task that skips and counts them); with
  `keep_columns`, each record's columns / JSON keys as read too (values that are not text:
  chat messages)."""
  data_cfg = config.data
  read = dict(fields=fields,
              keep_columns=keep_columns,
              required=tuple(fields),
              blank=blank,
              **reading_options(data_cfg))
  train = reader.read_records(data_cfg.source, split=data_cfg.train_split, **read)
  if data_cfg.get("folds", 0):  # Cross-validation: fold `fold` of the training records.
    train, valid = splits.fold_split(train, data_cfg.folds, data_cfg.fold, SPLIT_SEED)
  elif data_cfg.valid_source:
    valid = reader.read_records(data_cfg.valid_source,
                                split=data_cfg.valid_split,
                                config_key="config.data.valid_source",
                                **read)
  elif data_cfg.source.strip().startswith(reader.TFDS_PREFIX):
    valid = reader.read_records(data_cfg.source, split=data_cfg.valid_split, **read)
  else:
    train, valid = splits.held_out(train, data_cfg.valid_fraction, SPLIT_SEED,
                                   data_cfg.get("valid_holdout", "records"))
  if not train or not valid:
    raise UserError(f"config.data.source: no {'training' if not train else 'validation'} "
                    f"examples were read from {data_cfg.source!r}")
  train = splits.first_examples(train, data_cfg.get("train_examples", 0), SPLIT_SEED)
  return (as_trained(train, data_cfg.clean, data_cfg.lowercase),
          as_trained(valid, data_cfg.clean, data_cfg.lowercase))


def as_trained(recs: list, clean: str, lower: bool) -> list:
  """`recs` as training reads them: cleaned by the `clean` steps (config.data.clean), then
  lower-cased when `lower` (config.data.lowercase). lm.predict reads new texts the same way."""
  if clean.strip():
    recs = clean_records(recs, cleaner_from(clean))
  return lowercase(recs) if lower else recs


def reading_options(data_cfg: Any) -> dict[str, Any]:
  """`reader.read_records`' options for how config.data reads any source (encoding errors,
  TFDS directory, the record unit of plain text)."""
  return dict(encoding_errors=data_cfg.encoding_errors,
              tfds_data_dir=data_cfg.tfds_data_dir or None,
              txt_unit=records_txt_unit(data_cfg.txt_unit),
              entry_separator=data_cfg.entry_separator)


def records_txt_unit(txt_unit: str) -> str:
  """The record unit of plain text files for config.data.txt_unit: its default, 'file' (one
  language-model document per file), reads one record per line, as records always were."""
  return "line" if txt_unit == "file" else txt_unit


def cleaner_from(steps: str) -> cleaning.Cleaner:
  """A Cleaner running the comma-separated `steps` (config.data.clean) and no others."""
  names = {name.strip() for name in steps.split(",") if name.strip()}
  unknown = sorted(names - set(CLEAN_STEPS))
  if unknown:
    raise UserError(f"config.data.clean: unknown step(s) {', '.join(unknown)}; choose from"
                    f" {', '.join(CLEAN_STEPS)}")
  return cleaning.Cleaner(**{step: step in names for step in CLEAN_STEPS})


def clean_records(recs: list, cleaner: cleaning.Cleaner) -> list:
  """`recs` with every text role cleaned (labels stay as they are)."""
  return [
      dataclasses.replace(r, values={k: v if k == "label" else cleaner.clean(v)[0]
                                     for k, v in r.values.items()}) for r in recs
  ]


def lowercase(recs: list) -> list:
  return [dataclasses.replace(r, values={k: v.lower() for k, v in r.values.items()}) for r in recs]


def predict_in_order(run_batch: Callable[[dict], Any],
                     lengths: np.ndarray,
                     batch_size: int,
                     bucket_lengths,
                     make_batch: Callable[[np.ndarray, np.ndarray, int], dict],
                     rows: np.ndarray | None = None) -> list[np.ndarray]:
  """The model's output row for every example, in example order.

  Examples are batched by length (buckets.eval_order) and each global batch is padded to the
  bucket of its longest example, the same length in every process. `make_batch(indices,
  weights, length)` builds the batch of this process's `rows` (default all) of a global batch;
  `run_batch(batch)` maps it to the outputs of the whole global batch.
  """
  outputs: list[Any] = [None] * len(lengths)
  rows = np.arange(batch_size) if rows is None else rows
  for indices, weights in buckets.eval_order(lengths, batch_size):
    length = buckets.bucket_length(int(lengths[indices].max()), bucket_lengths)
    batch_out = np.asarray(jax.device_get(run_batch(make_batch(indices[rows], weights[rows],
                                                               length))))
    for index, weight, out in zip(indices, weights, batch_out):
      if weight > 0:
        outputs[index] = out
  return outputs


def bucketed_train_batches(config: Any, lengths: np.ndarray, bucket_lengths, rows: np.ndarray,
                           make_batch: Callable) -> "BucketedTrainBatches":
  """The training batches of config.train.batch_size, shuffled by config.seed."""
  return BucketedTrainBatches(lengths,
                              batch_size=config.train.batch_size,
                              seed=config.seed,
                              bucket_lengths=bucket_lengths,
                              rows=rows,
                              make_batch=make_batch)


class BucketedTrainBatches:
  """Length-bucketed training batches (`buckets.BucketedBatches`) built by
  `make_batch(indices, row_weights, buckets)`. The padded length comes from the whole global
  batch, so every process pads its rows alike."""

  def __init__(self, lengths: np.ndarray, *, batch_size: int, seed: int, bucket_lengths,
               rows: np.ndarray, make_batch: Callable):
    self._order = buckets.BucketedBatches(lengths,
                                          batch_size=batch_size,
                                          seed=seed,
                                          buckets=bucket_lengths)
    self._lengths = lengths
    self._rows = rows
    self._buckets = bucket_lengths
    self._make_batch = make_batch

  def next_batch(self) -> dict[str, np.ndarray]:
    indices, weights = self._order.global_indices(self._order.step)
    self._order.set_state({"step": self._order.step + 1})
    length = buckets.bucket_length(int(self._lengths[indices].max()), self._buckets)
    return self._make_batch(indices[self._rows], weights[self._rows], (length,))

  def get_state(self) -> dict:
    return self._order.get_state()

  def set_state(self, state: dict) -> None:
    self._order.set_state(state)
