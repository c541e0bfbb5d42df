"""train_and_evaluate(config, workdir): the whole pretraining run, resumable from its workdir."""

import math
import os
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.experimental import multihost_utils

from lm import defaults
from lm.data import batches, pipeline
from lm.errors import UserError
from lm.models.config import ModelConfig, model_config_from
from lm.models import attention_kernels
from lm.models.transformer import Transformer
from lm.training import checkpoints, flops, metrics_log, parallel, steps


class TrainingDiverged(UserError):
  """The loss became NaN or infinite; nothing after the last good checkpoint is saved."""


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, float]:
  """Trains config.model on config.data for config.train.steps; returns the final metrics.

  Running it again on the same workdir resumes from the latest checkpoint (same parameters,
  optimizer state and data stream), so an interrupted run ends exactly as an uninterrupted one.
  """
  config_dict = config.to_dict()
  _prepare_workdir(workdir, config_dict)
  train_cfg = config.train
  _validate_train_config(train_cfg)
  data = _prepare_data_once(config.data, workdir)
  model_cfg = model_config_from(config.model, data.tokenizer.vocab_size)
  model = Transformer(model_cfg)
  seq_len = config.data.seq_len or model_cfg.max_len
  if config.data.seq_len < 0:
    raise UserError(f"config.data.seq_len={config.data.seq_len} must be >= 0 (0 = max_len)")
  if seq_len > model_cfg.max_len:
    raise UserError(f"config.data.seq_len={seq_len} is longer than the model's position table, "
                    f"config.model.max_len={model_cfg.max_len}")
  layout = parallel.make_parallel(model, config, seq_len)
  is_main = jax.process_index() == 0

  rng = jax.random.PRNGKey(config.seed)
  init_rng, dropout_rng = jax.random.split(rng)
  sampler = batches.WindowSampler(data.train.tokens,
                                  batch_size=train_cfg.batch_size,
                                  seq_len=seq_len,
                                  mode=config.data.sampling,
                                  seed=config.seed,
                                  rows=layout.rows(train_cfg.batch_size))
  checkpointer = checkpoints.Checkpointer(workdir, train_cfg.keep_checkpoints)
  start_step = checkpointer.latest_step() or 0
  if start_step:
    state, data_state = checkpointer.restore(start_step, layout.abstract_state)
    state = layout.from_checkpoint(state)
    sampler.set_state(data_state)
  else:
    state = layout.create_state(init_rng)
  evaluate = _make_evaluator(layout, data, train_cfg, seq_len)

  log = metrics_log.MetricsLog(workdir, train_cfg.steps, start_step, enabled=is_main)
  if is_main and start_step == 0:
    log.message(_describe_run(model_cfg, layout, data, workdir))
  elif is_main:
    log.message(f"Resuming from step {start_step} in {workdir}")
  tokens_per_step = train_cfg.batch_size * seq_len
  flops_per_step = flops.flops_per_token(model_cfg, seq_len) * tokens_per_step
  peak = flops.peak_flops(layout.num_devices, train_cfg.peak_flops)

  final_metrics: dict[str, float] = {}
  pending: list[dict[str, jax.Array]] = []
  interval_start, interval_steps = time.perf_counter(), 0
  step = start_step
  try:
    while step < train_cfg.steps:
      state, metrics = layout.train_on(state, sampler.next_batch(), dropout_rng)
      pending.append(metrics)
      step += 1
      interval_steps += 1
      log.advance(1)
      last = step == train_cfg.steps
      if step == start_step + 1:  # Keep compilation out of the first throughput interval.
        jax.block_until_ready(state)
        interval_start, interval_steps = time.perf_counter(), 0
      record = {}
      if step % train_cfg.log_every == 0 or last:
        record.update(_mean_metrics(pending, step))
        pending = []
        if interval_steps:
          seconds = time.perf_counter() - interval_start
          record["perf/tokens_per_s"] = tokens_per_step * interval_steps / seconds
          record["perf/step_time_ms"] = 1000 * seconds / interval_steps
          if peak:
            record["perf/mfu"] = flops_per_step * interval_steps / seconds / peak
      if step % train_cfg.eval_every == 0 or last:
        record.update(
            evaluate(state.params,
                     train_cfg.final_eval_batches if last else train_cfg.eval_batches))
      if record:
        log.write(step, record)
        final_metrics.update(record)
      if step % train_cfg.checkpoint_every == 0 or last:
        _check_finite(state.params, step)
        checkpointer.save(step, layout.to_checkpoint(state), sampler.get_state(), config_dict)
      if record or step % train_cfg.checkpoint_every == 0:
        interval_start, interval_steps = time.perf_counter(), 0
  finally:
    checkpointer.wait_until_finished()
    checkpointer.close()
    log.close()

  if is_main and train_cfg.sample_prompt and train_cfg.sample_tokens:
    _print_sample(model_cfg, layout.to_checkpoint(state).params, data.tokenizer, train_cfg)
  return final_metrics


def _prepare_data_once(data_cfg: Any, workdir: str) -> pipeline.PreparedData:
  """Process 0 trains the tokenizer and tokenizes; then the others load its cache (or, with a
  workdir that is not shared, build the same one themselves)."""
  if jax.process_count() == 1:
    return pipeline.prepare_data(data_cfg, workdir)
  data = pipeline.prepare_data(data_cfg, workdir) if jax.process_index() == 0 else None
  multihost_utils.sync_global_devices("lm: data prepared")
  return data or pipeline.prepare_data(data_cfg, workdir)


def _make_evaluator(layout, data, train_cfg, seq_len):
  """(params, max_batches) -> {eval/loss, eval/perplexity, eval/bpb} on the validation split
  (its first max_batches batches, or all of it for 0)."""
  token_bytes = jnp.asarray(data.tokenizer.token_bytes(), jnp.float32)
  batch_size = train_cfg.eval_batch_size

  def evaluate(params, max_batches: int) -> dict[str, float]:
    totals = {"nll": 0.0, "tokens": 0.0, "bytes": 0.0}
    for batch in batches.eval_batches(data.valid.tokens,
                                      batch_size=batch_size,
                                      seq_len=seq_len,
                                      max_batches=max_batches or None,
                                      rows=layout.rows(batch_size)):
      sums = layout.eval_step(params, layout.put_batch(batch, batch_size), token_bytes)
      # Summed on the host in float64; fetching each batch's sums also keeps one program with
      # collectives in flight at a time (partitioning.needs_synchronous_steps).
      for key, value in jax.device_get(sums).items():
        totals[key] += float(value)
    return steps.summarize_eval(totals)

  return evaluate


def _mean_metrics(pending: list[dict[str, jax.Array]], step: int) -> dict[str, float]:
  stacked = jax.device_get(pending)
  means = {k: float(np.mean([m[k] for m in stacked])) for k in stacked[0]}
  if not math.isfinite(means["train/loss"]):
    raise TrainingDiverged(
        f"the training loss became {means['train/loss']} by step {step}; lower "
        f"config.train.learning_rate or raise config.train.warmup_steps. The last checkpoint "
        f"(before the divergence) is kept.")
  return means


def _check_finite(params, step: int) -> None:
  """Refuses to checkpoint parameters that are no longer finite."""
  finite = jax.tree.reduce(lambda a, b: a & b,
                           jax.tree.map(lambda x: jnp.all(jnp.isfinite(x)), params))
  if not bool(finite):
    raise TrainingDiverged(f"parameters became NaN or infinite by step {step}; not saving them. "
                           f"Lower config.train.learning_rate and resume from the last checkpoint.")


def _prepare_workdir(workdir: str, config_dict: dict) -> None:
  """Creates the workdir, or checks that a resumed run's command matches the saved config."""
  try:
    os.makedirs(workdir, exist_ok=True)
  except OSError as e:
    raise UserError(f"--workdir={workdir}: cannot create it ({e.strerror})") from None
  if not os.access(workdir, os.W_OK):
    raise UserError(f"--workdir={workdir}: not writable")
  saved = checkpoints.load_config(workdir)
  if saved is not None:
    differences = [
        f"{key}: saved {old!r}, now {new!r}" for key, old, new in _diff(saved, config_dict)
        if not defaults.resumable_change(key)
    ]
    if differences:
      raise UserError(f"--workdir={workdir} holds a run with a different config; resume it with "
                      f"the same settings or choose a new workdir. Differences: " +
                      "; ".join(differences))
  if jax.process_index() == 0:
    checkpoints.save_config(workdir, config_dict)


def _diff(old: dict, new: dict, prefix: str = ""):
  for key in sorted(set(old) | set(new)):
    a, b = old.get(key), new.get(key)
    if isinstance(a, dict) and isinstance(b, dict):
      yield from _diff(a, b, f"{prefix}{key}.")
    elif a != b:
      yield f"{prefix}{key}", a, b


def _validate_train_config(train_cfg: Any) -> None:
  positive = ("steps", "batch_size", "grad_accum_steps", "eval_every", "checkpoint_every",
              "log_every", "eval_batch_size")
  for key in positive:
    if int(train_cfg[key]) < 1:
      raise UserError(f"config.train.{key} must be a positive integer, got {train_cfg[key]!r}")
  if train_cfg.batch_size % train_cfg.grad_accum_steps:
    raise UserError(f"config.train.grad_accum_steps={train_cfg.grad_accum_steps} does not divide "
                    f"config.train.batch_size={train_cfg.batch_size}")


def _describe_run(model_cfg: ModelConfig, layout, data, workdir: str) -> str:
  num_params = sum(x.size for x in jax.tree.leaves(layout.abstract_state.params))
  dtype = jnp.dtype(model_cfg.dtype)
  attention = attention_kernels.resolve_implementation(model_cfg.attention, dtype)
  return (
      f"Model: {num_params / 1e6:.2f}M parameters, {model_cfg.num_layers} layers, width "
      f"{model_cfg.embed_dim}, context {model_cfg.max_len}, vocab {model_cfg.vocab_size} "
      f"({data.tokenizer.name})\n"
      f"{attention_kernels.describe(model_cfg.attention, attention, dtype, jax.default_backend())}"
      f"\nData: {data.train.num_tokens:,} training / {data.valid.num_tokens:,} validation tokens\n"
      f"Devices: {layout.num_devices} x {jax.devices()[0].device_kind}, {layout.describe()}, "
      f"{jax.process_count()} process(es); workdir {workdir}")


def _print_sample(model_cfg, params, tokenizer, train_cfg) -> None:
  """Prints a continuation of config.train.sample_prompt from the trained model."""
  from lm import sampling  # pylint: disable=g-import-not-at-top
  text, = sampling.generate_text(model_cfg,
                                 jax.device_get(params),
                                 tokenizer, [train_cfg.sample_prompt],
                                 max_new_tokens=train_cfg.sample_tokens,
                                 temperature=0.8,
                                 top_k=0,
                                 top_p=1.0,
                                 seed=0)
  print(f"--- sample ---\n{text}\n--------------")
