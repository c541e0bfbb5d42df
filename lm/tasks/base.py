"""The seam between the trainer and a task: data, model head, loss and evaluation.

The trainer (lm/training/trainer.py) owns everything else: the device layout, the train state,
the loop, checkpoints, the best checkpoint, early stopping and logging.
"""

import abc
import os
import shutil
from typing import Any, Protocol

import jax
import numpy as np

from lm.data import pipeline, tokenizers
from lm.data.tokenizers import Tokenizer
from lm.errors import UserError
from lm.models.config import ModelConfig
from lm.training import steps

KINDS = ("causal_lm", "masked_lm", "classification", "sft")
_MINIMIZED = ("loss", "perplexity", "bpb")


class Batches(Protocol):
  """Training batches reproducible from a step counter (saved with each checkpoint)."""

  def next_batch(self) -> dict[str, np.ndarray]:
    ...

  def get_state(self) -> dict:
    ...

  def set_state(self, state: dict) -> None:
    ...


class Task(abc.ABC):
  """Built once per run from the config and the workdir (data read and tokenized)."""

  tokenizer: Tokenizer
  model_config: ModelConfig
  # Sequence length the model is initialized (and, for language models, trained) at.
  seq_len: int
  default_best_metric: str = "eval/loss"

  @abc.abstractmethod
  def loss_fn(self, logits: Any, batch: dict) -> Any:
    """Per-item loss (per token or per example) for `steps.train_step`."""

  @abc.abstractmethod
  def train_batches(self, rows: np.ndarray) -> Batches:
    """Training batches of config.train.batch_size, this process's `rows` of each."""

  @abc.abstractmethod
  def evaluate(self, layout: Any, params: Any, max_batches: int) -> dict[str, float]:
    """Validation metrics (`eval/...`) of `params`, on the first `max_batches` batches (0 =
    all of the validation split)."""

  def evaluate_test(self, layout: Any, params: Any) -> dict[str, float]:
    """Test metrics (`test/...`) of the final parameters, when the task has a test split."""
    del layout, params
    return {}

  @abc.abstractmethod
  def describe(self) -> str:
    """One log line about the data."""

  def save_report(self, workdir: str, step: int, metrics: dict[str, float]) -> None:
    """Writes what the task reports about a new best evaluation (e.g. eval_report.json)."""

  def finish(self, params: Any) -> None:
    """Runs after training on process 0 (e.g. prints a text sample)."""


def best_metric(config: Any, task: Task) -> tuple[str, bool]:
  """config.train.best_metric (or the task's default) and whether higher is better."""
  name = config.train.best_metric or task.default_best_metric
  if not name.startswith("eval/"):
    raise UserError(f"config.train.best_metric={name!r}: name a validation metric, e.g. "
                    f"'eval/loss' or 'eval/accuracy'")
  return name, not any(word in name for word in _MINIMIZED)


def prepare_tokenizer(config: Any, workdir: str, train_texts) -> Tokenizer:
  """The workdir's tokenizer: reused when saved (a resumed run), copied from config.init_from
  (fine-tuning keeps the pretrained vocabulary), or trained on `train_texts()`."""
  directory = os.path.join(workdir, pipeline.TOKENIZER_DIR)
  if not os.path.exists(os.path.join(directory, "tokenizer.json")):
    copy_init_tokenizer(config, workdir)
  if os.path.exists(os.path.join(directory, "tokenizer.json")):
    return tokenizers.load_tokenizer(directory)
  tokenizer = tokenizers.build_tokenizer(
      config.data.tokenizer, train_texts(),
      **tokenizers.tokenizer_options(config.data.tokenizer, config.data))
  tokenizer.save(directory)
  return tokenizer


def copy_init_tokenizer(config: Any, workdir: str) -> None:
  """Copies config.init_from's tokenizer into the workdir (once)."""
  if not config.init_from:
    return
  source = os.path.join(config.init_from, pipeline.TOKENIZER_DIR)
  target = os.path.join(workdir, pipeline.TOKENIZER_DIR)
  if os.path.exists(os.path.join(target, "tokenizer.json")):
    return
  if not os.path.exists(os.path.join(source, "tokenizer.json")):
    raise UserError(f"config.init_from={config.init_from}: no tokenizer there ({source}); "
                    f"point it at the workdir of a finished pretraining run")
  shutil.copytree(source, target + ".tmp", dirs_exist_ok=True)
  os.replace(target + ".tmp", target)


def check_seq_len(config: Any, model_config: ModelConfig) -> int:
  """config.data.seq_len (0 = the model's max_len), checked against the model."""
  if config.data.seq_len < 0:
    raise UserError(f"config.data.seq_len={config.data.seq_len} must be >= 0 (0 = max_len)")
  seq_len = config.data.seq_len or model_config.max_len
  if seq_len > model_config.max_len:
    raise UserError(f"config.data.seq_len={seq_len} is longer than the model's position table, "
                    f"config.model.max_len={model_config.max_len}")
  return seq_len


def language_model_metrics(layout: Any, params: Any, local_batches, batch_size: int,
                           token_bytes_V: Any) -> dict[str, float]:
  """eval/loss, eval/perplexity and eval/bpb over `local_batches` (this process's rows of
  global batches of `batch_size`, with `weights` on the predicted targets)."""
  totals = {"nll": 0.0, "tokens": 0.0, "bytes": 0.0}
  for batch in local_batches:
    sums = layout.eval_step(params, layout.put_batch(batch, batch_size), token_bytes_V)
    # Summed on the host in float64; fetching each batch's sums also keeps one program with
    # collectives in flight at a time (partitioning.needs_synchronous_steps).
    for key, value in jax.device_get(sums).items():
      totals[key] += float(value)
  return steps.summarize_eval(totals)
