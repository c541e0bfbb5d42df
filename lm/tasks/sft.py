"""Supervised fine-tuning of a decoder on prompt/response pairs, the loss on the response."""

from typing import Any

import jax.numpy as jnp
import numpy as np

from lm.data import buckets, examples
from lm.errors import UserError
from lm.models.config import model_config_from
from lm.tasks import base, supervised
from lm.training import steps


class SftTask(base.Task):
  """Causal LM on `[BOS] prompt response [EOS]`, predicting only the response and the EOS
  (config.data.prompt_field / response_field); validation loss over responses."""

  data_roles = ("prompt", "response")

  def __init__(self, config: Any, workdir: str, task_fields: dict[str, Any]):
    self.config = config
    data_cfg = config.data
    fields = {"prompt": data_cfg.prompt_field, "response": data_cfg.response_field}
    train, valid = supervised.read_splits(config, fields)
    self.tokenizer = base.prepare_tokenizer(
        config, workdir, lambda: [r.values["prompt"] + r.values["response"] for r in train])
    self.model_config = model_config_from(config.model, self.tokenizer.vocab_size, **task_fields)
    if not self.model_config.causal:
      raise UserError("config.task.kind='sft' trains a decoder: set config.model.causal=True")
    self.seq_len = self.model_config.max_len
    self.buckets = buckets.bucket_lengths(self.seq_len)
    self.train = examples.sft_examples(train, self.tokenizer, max_len=self.seq_len)
    self.valid = examples.sft_examples(valid, self.tokenizer, max_len=self.seq_len)
    self.token_bytes_V = jnp.asarray(self.tokenizer.token_bytes(), jnp.float32)

  @classmethod
  def generation_ids(cls, config: dict, tokenizer: Any, prompt: str) -> list[int]:
    """`[BOS] prompt`, as `examples.sft_examples` starts every training example."""
    del config
    return [tokenizer.special_ids.bos, *tokenizer.encode(prompt)]

  def loss_fn(self, logits, batch):
    return steps.lm_loss(logits, batch)

  def train_batches(self, rows: np.ndarray) -> base.Batches:
    make = lambda indices, weights, lengths: buckets.sft_batch(
        self.train, indices, weights, lengths, pad_id=self.tokenizer.special_ids.pad)
    return supervised.bucketed_train_batches(self.config, _input_lengths(self.train),
                                             self.buckets, rows, make)

  def evaluate(self, layout, params, max_batches: int) -> dict[str, float]:
    batch_size = self.config.train.eval_batch_size
    rows = layout.rows(batch_size)
    lengths = _input_lengths(self.valid)

    def local_batches():
      for indices, weights in buckets.eval_order(lengths, batch_size)[:max_batches or None]:
        length = buckets.bucket_length(int(lengths[indices].max()), self.buckets)
        yield buckets.sft_batch(self.valid, indices[rows], weights[rows], (length,),
                                pad_id=self.tokenizer.special_ids.pad)

    return base.language_model_metrics(layout, params, local_batches(), batch_size,
                                       self.token_bytes_V)

  def describe(self) -> str:
    response_tokens = sum(int(mask[1:].sum()) for _, mask in self.train)
    return (f"Data: {len(self.train):,} training pairs ({response_tokens:,} response tokens), "
            f"{len(self.valid):,} validation pairs; padded to buckets "
            f"{', '.join(map(str, self.buckets))}")


def _input_lengths(pairs) -> np.ndarray:
  """Model input length of each example: its tokens less the last (only ever a target)."""
  return np.array([len(tokens) - 1 for tokens, _ in pairs], np.int64)
