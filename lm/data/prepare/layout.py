"""Where a prepare workdir keeps what, and loading its output for training.

  config.json              the resolved prepare config (a rerun must match it)
  plan.json                inputs and the number of shards (fixed by the first run)
  stages/NAME.json         written when stage NAME is complete: a rerun skips it
  shards/GROUP-NNNNN/      cleaned documents, exact keys, MinHash signatures (shards.py)
  dedup/GROUP-NNNNN.npy    per document: train, valid or the reason it was dropped
  dedup/duplicates.json    duplicate counts and example clusters
  tokenizer/               the tokenizer the tokens are written with
  tokens/train.npy/.json   the training token stream (lm.data.token_store format), memory-mapped
  tokens/valid.npy/.json   by training with config.data.prepared=WORKDIR; `.documents.npy`
                           holds the start offset of every document (the index),
                           `.document_ids.npy` its global id (readers.py; augmented copies
                           repeat their original's)
  stats.json, report.md, length_histogram.png, token_frequency.png
  beam.log                 what Beam's workers printed (--runner=beam)
"""

import json
import os

from lm.data import atomic, token_store, tokenizers
from lm.data.token_store import TokenStream
from lm.data.tokenizer_base import Tokenizer
from lm.errors import UserError

GROUPS = ("inputs", "valid_inputs")  # The config keys documents come from.
SPLITS = ("train", "valid")
# What the merge decides for each document (dedup/GROUP-NNNNN.npy, int8).
TRAIN, VALID, EXACT_DUPLICATE, NEAR_DUPLICATE, DUPLICATE_OF_VALID = 0, 1, -1, -2, -3
DROP_REASONS = {EXACT_DUPLICATE: "exact_duplicate", NEAR_DUPLICATE: "near_duplicate",
                DUPLICATE_OF_VALID: "duplicate_of_valid"}
DONE_STAGE = "finalize"


def shard_name(group: str, index: int) -> str:
  return f"{group}-{index:05d}"


def shard_dir(workdir: str, group: str, index: int) -> str:
  return os.path.join(workdir, "shards", shard_name(group, index))


def decisions_path(workdir: str, group: str, index: int) -> str:
  return os.path.join(workdir, "dedup", shard_name(group, index) + ".npy")


def stage_path(workdir: str, stage: str) -> str:
  return os.path.join(workdir, "stages", stage.replace("/", "_") + ".json")


def stage_record(workdir: str, stage: str) -> dict | None:
  """What a finished stage recorded, or None if it has not finished."""
  path = stage_path(workdir, stage)
  return read_json(path) if os.path.exists(path) else None


def record_stage(workdir: str, stage: str, record: dict) -> None:
  atomic.atomic_write_text(stage_path(workdir, stage), json.dumps(record, indent=2))


def tokens_path(workdir: str, split: str) -> str:
  return os.path.join(workdir, "tokens", split)


def beam_log_path(workdir: str) -> str:
  """What Beam's local workers print (--runner=beam)."""
  return os.path.join(workdir, "beam.log")


def tokenizer_dir(workdir: str) -> str:
  return os.path.join(workdir, "tokenizer")


def load_prepared(directory: str) -> tuple[Tokenizer, TokenStream, TokenStream]:
  """The tokenizer and memory-mapped train/valid streams of a finished prepare workdir."""
  if not os.path.exists(stage_path(directory, DONE_STAGE)):
    what = "is not a prepare workdir" if not os.path.isdir(directory) else "is not finished"
    raise UserError(f"config.data.prepared={directory!r} {what}: run `python -m lm.data.prepare"
                    f" --config=experiments/data/NAME.py --workdir={directory}` (again) first")
  tokenizer = tokenizers.load_tokenizer(tokenizer_dir(directory))
  streams = [token_store.load_stream(tokens_path(directory, split)) for split in SPLITS]
  for split, stream in zip(SPLITS, streams):
    written_with = read_json(tokens_path(directory, split) + ".json").get("tokenizer")
    if written_with != tokenizer.fingerprint():
      raise UserError(f"{tokens_path(directory, split)}.npy was not written with the tokenizer in"
                      f" {tokenizer_dir(directory)}; prepare the corpus again in a new workdir")
    if not stream.num_tokens:
      raise UserError(f"config.data.prepared={directory!r}: the {split} split is empty")
  return tokenizer, streams[0], streams[1]


def read_json(path: str) -> dict:
  with open(path, encoding="utf-8") as f:
    return json.load(f)
