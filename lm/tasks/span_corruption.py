"""T5's span-corruption pretraining of an encoder–decoder on any text corpus (Raffel et al.
2020): windows of the token stream lose random spans (config.task.noise_density of the tokens,
spans of config.task.mean_noise_span_length on average) to sentinels; the decoder writes the
dropped spans, each after its sentinel (lm/data/span_corruption.py).

The sentinels are the config.data.extra_ids ids after the tokenizer's vocabulary, as T5's
extra ids. A window is as many tokens as corrupt to exactly config.model.max_len encoder
inputs; the corruption of a window comes from (seed, step, global row), so it does not depend on
the number of processes, and a resumed run continues it exactly.
"""

from typing import Any

import numpy as np

from lm.data import batches, span_corruption
from lm.errors import UserError
from lm.tasks import base, language_model, seq2seq

# Seed of the corruption of the validation windows: the same spans in every run.
_EVAL_SEED = 0


class SpanCorruptionTask(seq2seq.EncoderDecoderTask):
  """Span corruption: eval/loss is the NLL per target token of the validation windows."""

  data_roles = ("text",)

  @classmethod
  def from_config(cls, config: Any, workdir: str, model_fields: dict[str, Any]):
    seq2seq.check_init_from(config)
    base.copy_init_tokenizer(config, workdir)
    return cls(config, language_model.prepare_data_once(config.data, workdir), model_fields)

  @classmethod
  def add_config_keys(cls, config) -> None:
    # Span corruption: the share of each window's tokens dropped, in spans of this mean length.
    config.task.noise_density = 0.15
    config.task.mean_noise_span_length = 3.0

  def __init__(self, config: Any, data, task_fields: dict[str, Any]):
    self.config = config
    self.data = data
    self.tokenizer = data.tokenizer
    self.model_config = self._model_config(config, task_fields)
    self.seq_len = self.model_config.max_len
    task_cfg = config.task
    self.window, self.target_len = span_corruption.input_and_target_lengths(
        self.seq_len, task_cfg.noise_density, task_cfg.mean_noise_span_length)
    spans = round(round(self.window * task_cfg.noise_density) / task_cfg.mean_noise_span_length)
    if config.data.extra_ids < spans + 1:
      raise UserError(f"config.data.extra_ids={config.data.extra_ids}: span corruption of "
                      f"{self.window}-token windows needs at least {spans + 1} sentinel ids")
    vocab = self.tokenizer.vocab_size
    self.corruption = span_corruption.SpanCorruption(
        sentinel_ids=tuple(range(vocab, vocab + config.data.extra_ids)),
        eos_id=self.tokenizer.special_ids.eos,
        noise_density=task_cfg.noise_density,
        mean_noise_span_length=task_cfg.mean_noise_span_length)

  def corrupt(self, windows_BxW: np.ndarray, weights_B: np.ndarray, seed: int, step: int,
              rows: np.ndarray) -> dict[str, np.ndarray]:
    """The encoder–decoder batch of token windows (`seq2seq.padded_pairs`), global row r's
    corruption drawn from (seed, step, r)."""
    sources, targets = [], []
    bos = self.tokenizer.special_ids.bos
    for window, row in zip(windows_BxW, rows):
      inputs, outputs = self.corruption(window, np.random.default_rng([seed, step, int(row)]))
      sources.append(inputs)
      targets.append(np.concatenate([[bos], outputs]))
    return seq2seq.padded_pairs(sources, targets, weights_B, self.seq_len, self.target_len,
                                self.tokenizer.special_ids.pad)

  def train_batches(self, rows: np.ndarray):
    sampler = batches.WindowSampler(self.data.train.tokens,
                                    batch_size=self.config.train.batch_size,
                                    seq_len=self.window,
                                    mode=self.config.data.sampling,
                                    seed=self.config.seed,
                                    rows=rows)
    return CorruptedWindows(sampler, self, rows)

  def evaluate(self, layout, params, max_batches: int) -> dict[str, float]:
    batch_size = self.config.train.eval_batch_size
    rows = layout.rows(batch_size)
    windows = batches.eval_batches(self.data.valid.tokens,
                                   batch_size=batch_size,
                                   seq_len=self.window,
                                   max_batches=max_batches or None,
                                   rows=rows,
                                   pad_id=self.tokenizer.special_ids.pad)
    # Whole windows only (the stream's last one is shorter): each corrupts to the same lengths.
    corrupted = (self.corrupt(batch["inputs"], (batch["weights"].sum(1) == self.window) * 1.0,
                              _EVAL_SEED, index, rows) for index, batch in enumerate(windows))
    return {"eval/loss": self.pair_loss(layout, params, corrupted)}

  def describe(self) -> str:
    return (f"Data: {self.data.train.num_tokens:,} training / {self.data.valid.num_tokens:,} "
            f"validation tokens; span corruption of {self.window}-token windows into "
            f"{self.seq_len} encoder inputs and {self.target_len} targets")


class CorruptedWindows:
  """Training windows (`batches.WindowSampler`) span-corrupted per (seed, step, global row)."""

  def __init__(self, sampler: batches.WindowSampler, task: SpanCorruptionTask, rows: np.ndarray):
    self._sampler, self._task, self._rows = sampler, task, rows

  def next_batch(self) -> dict[str, np.ndarray]:
    step = self._sampler.step
    windows = self._sampler.next_batch()["inputs"]
    return self._task.corrupt(windows, np.ones(len(windows), np.float32),
                              self._task.config.seed, step, self._rows)

  def get_state(self) -> dict:
    return self._sampler.get_state()

  def set_state(self, state: dict) -> None:
    self._sampler.set_state(state)
