"""Supervised fine-tuning of a decoder on prompt/response pairs, the loss on the response.

With config.task.eval_generation, every evaluation also generates (greedy) the reply to the
validation prompts (the first config.train.eval_examples, 0 = all) and logs eval/rougeL and
eval/exact_match beside the loss; the replies go to eval_predictions.jsonl. `chat.ChatTask`
(conversations through a chat template) shares all of this.
"""

import dataclasses
import json
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from lm.data import atomic, buckets, examples
from lm.errors import UserError
from lm.models.config import model_config_from
from lm.tasks import base, supervised
from lm.training import steps

PREDICTIONS_FILE = "eval_predictions.jsonl"


@dataclasses.dataclass(frozen=True)
class EvalPrompt:
  """A validation prompt as generation feeds it, and the reply it was trained on."""
  ids: list[int]
  reference: str
  where: str


class SftTask(base.Task):
  """Causal LM on `[BOS] prompt response [EOS]`, predicting only the response and the EOS
  (config.data.prompt_field / response_field); validation loss over responses."""

  data_roles = ("prompt", "response")

  @classmethod
  def add_config_keys(cls, config) -> None:
    # SFT and chat: every evaluation also generates (greedy) the replies to the first
    # config.train.eval_examples validation prompts (0 = all), at most config.task.
    # max_new_tokens tokens each (0 = to the end of the context), and logs eval/rougeL
    # (rouge-score; Chinese by characters) and eval/exact_match (the reply equals the
    # reference but for surrounding spaces, 0-100); the replies go to eval_predictions.jsonl.
    config.task.eval_generation = False

  def __init__(self, config: Any, workdir: str, task_fields: dict[str, Any]):
    self.config = config
    data_cfg = config.data
    fields = {"prompt": data_cfg.prompt_field, "response": data_cfg.response_field}
    train, valid = supervised.read_splits(config, fields)
    tokenizer = base.prepare_tokenizer(
        config, workdir, lambda: [r.values["prompt"] + r.values["response"] for r in train])
    self._set_model(tokenizer, tokenizer.vocab_size, task_fields)
    self.train = examples.sft_examples(train, self.tokenizer, max_len=self.seq_len)
    self.valid = examples.sft_examples(valid, self.tokenizer, max_len=self.seq_len)
    self.stop_id = tokenizer.special_ids.eos
    self.eval_prompts = [
        EvalPrompt(tokens[:int(mask.argmax())].tolist(), record.values["response"], record.where)
        for (tokens, mask), record in zip(self.valid, valid)
    ]

  def _set_model(self, tokenizer, vocab_size: int, task_fields: dict[str, Any]) -> None:
    """The tokenizer, a decoder over `vocab_size` ids, the context and its buckets."""
    self.tokenizer = tokenizer
    self.model_config = model_config_from(self.config.model, vocab_size, **task_fields)
    if not self.model_config.causal:
      raise UserError(f"config.task.kind={self.config.task.kind!r} trains a decoder: set "
                      f"config.model.causal=True")
    self.seq_len = self.model_config.max_len
    self.buckets = buckets.bucket_lengths(self.seq_len)
    token_bytes = tokenizer.token_bytes()  # A chat template's own tokens stand for no text.
    self.token_bytes_V = jnp.asarray(np.pad(token_bytes, (0, vocab_size - len(token_bytes))),
                                     jnp.float32)
    self._predictions: list[dict] = []

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

    metrics = base.language_model_metrics(layout, params, local_batches(), batch_size,
                                          self.token_bytes_V)
    if self.config.task.eval_generation:
      metrics.update(self._generate_and_score(layout.host_params(params)))
    return metrics

  def _generate_and_score(self, params) -> dict[str, float]:
    from lm.evaluation import generation_metrics  # pylint: disable=g-import-not-at-top
    from lm.models.architecture import make_model  # pylint: disable=g-import-not-at-top
    count = self.config.train.eval_examples or len(self.eval_prompts)
    prompts = self.eval_prompts[:count]
    replies = generate_replies(make_model(self.model_config), params, [p.ids for p in prompts],
                               stop_id=self.stop_id,
                               decode=self.decode,
                               batch_size=self.config.train.eval_batch_size,
                               max_new_tokens=self.config.task.max_new_tokens)
    references = [p.reference for p in prompts]
    self._predictions = [{"where": p.where, "reference": p.reference, "prediction": reply}
                         for p, reply in zip(prompts, replies)]
    exact = np.mean([r.strip() == reference.strip() for r, reference in zip(replies, references)])
    return {"eval/rougeL": generation_metrics.rouge(replies, references)["rougeL"],
            "eval/exact_match": 100.0 * float(exact)}

  def decode(self, ids) -> str:
    """The text of generated ids."""
    return self.tokenizer.decode(ids)

  def save_report(self, workdir: str, step: int, metrics: dict[str, float]) -> None:
    if self._predictions:
      lines = [json.dumps({"step": step, **p}, ensure_ascii=False) + "\n"
               for p in self._predictions]
      atomic.atomic_write_text(os.path.join(workdir, PREDICTIONS_FILE), "".join(lines))

  def describe(self) -> str:
    response_tokens = sum(int(mask[1:].sum()) for _, mask in self.train)
    return (f"Data: {len(self.train):,} training pairs ({response_tokens:,} response tokens), "
            f"{len(self.valid):,} validation pairs; padded to buckets "
            f"{', '.join(map(str, self.buckets))}")


def generate_replies(model, params, prompts: list[list[int]], *, stop_id: int, decode,
                     batch_size: int, max_new_tokens: int) -> list[str]:
  """Greedy replies to `prompts` (ids), decoded together in batches of similar length; a reply
  ends at `stop_id`, after `max_new_tokens` (0: no limit) or at the end of the context."""
  from lm import sampling  # pylint: disable=g-import-not-at-top
  lengths = np.array([len(p) for p in prompts], np.int64)
  replies = [""] * len(prompts)
  for indices, weights in buckets.eval_order(lengths, batch_size):
    real = indices[weights > 0]
    room = max(model.config.max_len - int(lengths[real].max()), 0)
    tokens = sampling.generate_tokens(model, params, [prompts[i] for i in real],
                                      max_new_tokens=min(max_new_tokens or room, room),
                                      rng=jax.random.PRNGKey(0),
                                      temperature=0.0,
                                      eos_id=stop_id)
    for index, reply in zip(real, tokens):
      replies[index] = decode(reply)
  return replies


def _input_lengths(pairs) -> np.ndarray:
  """Model input length of each example: its tokens less the last (only ever a target)."""
  return np.array([len(tokens) - 1 for tokens, _ in pairs], np.int64)
