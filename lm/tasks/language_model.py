"""Language modelling on windows of a token stream: causal (GPT) or masked (BERT)."""

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils

from lm.data import batches, masking, pipeline
from lm.errors import UserError
from lm.models.config import model_config_from
from lm.tasks import base
from lm.training import steps

# How the log names each kind's objective.
_OBJECTIVES = {"causal_lm": "causal LM", "masked_lm": "masked-LM (bidirectional)",
               "electra": "ELECTRA"}
# Seed of the masks of the validation windows: the same positions are predicted in every run.
_EVAL_MASK_SEED = 0


class LanguageModelTask(base.Task):
  """causal_lm: predict each next token. masked_lm: predict the masked tokens (config.mlm) of
  windows seen in both directions."""

  data_roles = ("text",)
  token_stream = True

  @classmethod
  def from_config(cls, config: Any, workdir: str, model_fields: dict[str, Any]) -> base.Task:
    kind = config.task.kind
    if (kind != "causal_lm") == config.model.causal:
      raise UserError(f"config.task.kind={kind!r} needs config.model.causal="
                      f"{kind == 'causal_lm'} (masked LM and ELECTRA train an encoder, causal LM "
                      f"a decoder)")
    base.copy_init_tokenizer(config, workdir)
    return cls(config, prepare_data_once(config.data, workdir), model_fields)

  @classmethod
  def check_config(cls, values: dict) -> None:
    if values["task"]["kind"] != "causal_lm":  # Recurrent networks: causal LM, not masked.
      super().check_config(values)

  @classmethod
  def generation_ids(cls, config: dict, tokenizer: Any, prompt: str) -> list[int]:
    """The prompt's ids, as the training stream encodes text; a masked LM is refused."""
    if config["task"]["kind"] != "causal_lm":
      return super().generation_ids(config, tokenizer, prompt)
    return tokenizer.encode(prompt)

  def __init__(self, config: Any, data: pipeline.PreparedData, task_fields: dict[str, Any]):
    self.config = config
    self.masked = config.task.kind != "causal_lm"  # masked_lm, electra.
    self.tokenizer = data.tokenizer
    self.data = data
    self.model_config = model_config_from(config.model, data.tokenizer.vocab_size, **task_fields)
    self.seq_len = base.check_seq_len(config, self.model_config)
    self.token_bytes_V = jnp.asarray(self.tokenizer.token_bytes(), jnp.float32)
    if self.masked:
      self.mask = Masker(config.mlm, self.tokenizer, self.seq_len, config.data.word_segmenter)
    self._check_sample_prompt(config.train)

  def _check_sample_prompt(self, train_cfg: Any) -> None:
    """Now, not after training: the sample's prompt must fit the model's context."""
    if self.masked or not (train_cfg.sample_prompt and train_cfg.sample_tokens):
      return
    length, max_len = len(self.tokenizer.encode(train_cfg.sample_prompt)), self.model_config.max_len
    if not 0 < length <= max_len:
      raise UserError(f"config.train.sample_prompt is {length} tokens; the sample after training "
                      f"needs 1 to config.model.max_len={max_len} ('' skips the sample)")

  def loss_fn(self, logits, batch):
    return steps.lm_loss(logits, batch)

  def train_batches(self, rows: np.ndarray) -> base.Batches:
    sampler = batches.WindowSampler(self.data.train.tokens,
                                    batch_size=self.config.train.batch_size,
                                    seq_len=self.seq_len,
                                    mode=self.config.data.sampling,
                                    seed=self.config.seed,
                                    rows=rows)
    return MaskedWindows(sampler, self.mask, self.config.seed, rows) if self.masked else sampler

  def evaluate(self, layout, params, max_batches: int) -> dict[str, float]:
    return self._metrics(self.data.valid, layout, params, max_batches)

  def evaluate_test(self, layout, params) -> dict[str, float]:
    if self.data.test is None:
      return {}
    metrics = self._metrics(self.data.test, layout, params, max_batches=0)
    return {"test/" + name.removeprefix("eval/"): value for name, value in metrics.items()}

  def _metrics(self, split, layout, params, max_batches: int) -> dict[str, float]:
    batch_size = self.config.train.eval_batch_size
    rows = layout.rows(batch_size)
    windows = batches.eval_batches(split.tokens,
                                   batch_size=batch_size,
                                   seq_len=self.seq_len,
                                   max_batches=max_batches or None,
                                   rows=rows,
                                   pad_id=self.tokenizer.special_ids.pad)
    if self.masked:
      windows = (self.mask.windows(batch["inputs"], _EVAL_MASK_SEED, index, rows)
                 for index, batch in enumerate(windows))
    metrics = base.language_model_metrics(layout, params, windows, batch_size, self.token_bytes_V)
    if self.masked:  # Bits per byte needs every token predicted; MLM predicts 15%.
      metrics.pop("eval/bpb")
    return metrics

  def describe(self) -> str:
    objective = _OBJECTIVES[self.config.task.kind]
    test = f" / {self.data.test.num_tokens:,} test" if self.data.test is not None else ""
    return (f"Data: {self.data.train.num_tokens:,} training / {self.data.valid.num_tokens:,} "
            f"validation{test} tokens; {objective} windows of {self.seq_len}")

  def finish(self, params) -> None:
    train_cfg = self.config.train
    if self.masked or not (train_cfg.sample_prompt and train_cfg.sample_tokens):
      return
    from lm import sampling  # pylint: disable=g-import-not-at-top
    text, = sampling.generate_text(self.model_config,
                                   params,
                                   self.tokenizer, [train_cfg.sample_prompt],
                                   max_new_tokens=train_cfg.sample_tokens,
                                   temperature=0.8,
                                   top_k=0,
                                   top_p=1.0,
                                   seed=0)
    print(f"--- sample ---\n{text}\n--------------")


class MaskedWindows:
  """Training windows corrupted for masked LM; the masks of step s come from (seed, s) and
  each row's global index, so they do not depend on the number of processes."""

  def __init__(self, sampler: batches.WindowSampler, mask: "Masker", seed: int, rows: np.ndarray):
    self._sampler = sampler
    self._mask = mask
    self._seed = seed
    self._rows = rows

  def next_batch(self) -> dict[str, np.ndarray]:
    step = self._sampler.step
    windows = self._sampler.next_batch()["inputs"]
    return self._mask.windows(windows, self._seed, step, self._rows)

  def get_state(self) -> dict:
    return self._sampler.get_state()

  def set_state(self, state: dict) -> None:
    self._sampler.set_state(state)


class Masker:
  """config.mlm's corruption of token windows, reproducible per (seed, step, global row)."""

  def __init__(self, mlm_cfg: Any, tokenizer, seq_len: int, word_segmenter: str = ""):
    # Predictions per row: the mask budget, plus room for whole words that overshoot it.
    self.max_predictions = min(seq_len, math.ceil(mlm_cfg.mask_rate * seq_len) + 8)
    special_V = tokenizer.special_mask()
    # Whole words of Chinese text: jieba's words of each window (config.data.word_segmenter),
    # else the tokenizer's word-initial pieces.
    segmented = mlm_cfg.whole_word and word_segmenter == "jieba"
    self._texts_V = masking.token_texts(tokenizer) if segmented else None
    self._options = dict(
        vocab_size=tokenizer.vocab_size,
        special_V=special_V,
        mask_id=tokenizer.special_ids.mask,
        mask_rate=mlm_cfg.mask_rate,
        mask_token_fraction=mlm_cfg.mask_token_fraction,
        random_token_fraction=mlm_cfg.random_token_fraction,
        word_starts_V=(masking.require_word_starts(tokenizer)
                       if mlm_cfg.whole_word and not segmented else None))
    # Checks the options now: one window of the first non-special id.
    self.windows(np.full((1, 2), np.argmin(special_V), np.int32), 0, 0, np.arange(1))

  def windows(self, tokens_BxT: np.ndarray, seed: int, step: int,
              rows: np.ndarray) -> dict[str, np.ndarray]:
    """inputs [B, T] (corrupted); output_positions [B, M] (where predicted, left-aligned),
    targets [B, M] (the original tokens there) and weights [B, M] (0 past a row's count)."""
    B, M = len(rows), self.max_predictions
    inputs = np.empty_like(tokens_BxT, dtype=np.int32)
    positions, targets = np.zeros((B, M), np.int32), np.zeros((B, M), np.int32)
    weights = np.zeros((B, M), np.float32)
    starts_BxT = (masking.segment_starts(tokens_BxT, self._texts_V)
                  if self._texts_V is not None else None)
    for i, row in enumerate(rows):
      starts = {} if starts_BxT is None else {"word_starts_BxT": starts_BxT[i:i + 1]}
      masked = masking.mask_tokens(tokens_BxT[i:i + 1],
                                   np.random.default_rng([seed, step, int(row)]), **self._options,
                                   **starts)
      inputs[i] = masked["inputs"][0]
      where = np.flatnonzero(masked["weights"][0])[:M]
      positions[i, :len(where)] = where
      targets[i, :len(where)] = masked["targets"][0, where]
      weights[i, :len(where)] = 1.0
    return {"inputs": inputs, "output_positions": positions, "targets": targets, "weights": weights}


def prepare_data_once(data_cfg: Any, workdir: str) -> pipeline.PreparedData:
  """Process 0 trains the tokenizer and tokenizes; then the others load its cache (or, with a
  workdir that is not shared, build the same one themselves)."""
  if jax.process_count() == 1:
    return pipeline.prepare_data(data_cfg, workdir)
  data = pipeline.prepare_data(data_cfg, workdir) if jax.process_index() == 0 else None
  multihost_utils.sync_global_devices("lm: data prepared")
  return data or pipeline.prepare_data(data_cfg, workdir)
