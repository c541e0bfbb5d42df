"""train_and_evaluate(config, workdir): the whole pretraining run, resumable from its workdir."""

import math
import os
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from lm import config_checks, config_paths, defaults
from lm.errors import UserError
from lm.models.config import ModelConfig
from lm.models import attention_kernels, tfidf
from lm.models import config as model_config
from lm.tasks import registry
from lm.training import (checkpoints, flops, init_from, metrics_log, nonfinite, parallel,
                         preemption, student_embeddings)


# Raised under config.train.on_nonfinite='stop'; lm/training/nonfinite.py.
TrainingDiverged = nonfinite.TrainingDiverged


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, float]:
  """Trains config.model on config.task for config.train.steps; returns the final metrics.
  With steps=0 it only evaluates config.init_from's parameters (e.g. other decoding settings)
  and writes the report and final metrics, no checkpoint.

  Running it again on the same workdir resumes from the latest checkpoint (same parameters,
  optimizer state, data stream and best-checkpoint record), so an interrupted run ends exactly
  as an uninterrupted one. SIGTERM or SIGINT saves a checkpoint at the current step and raises
  preemption.Preempted.
  """
  config_checks.validate_config(config)
  nonfinite.validate(config.train)
  config = init_from.adopt_architecture(config_paths.absolute_paths(config))
  config_dict = config.to_dict()
  _prepare_workdir(workdir, config_dict)
  if model_config.is_tfidf(config):  # Fitted in closed form: no steps.
    return tfidf.fit_and_evaluate(config, workdir)
  train_cfg = config.train
  task = registry.build_task(config, workdir,
                             checkpoints.lora_fields(config.finetune.to_dict()))
  model = task.make_model()
  layout = parallel.make_parallel(model, config, task.seq_len, task.loss)
  checkpoints.check_free_space(workdir, layout.abstract_state)
  is_main = jax.process_index() == 0
  if is_main:  # Saved once the data and model are known to be good: a failed start leaves none.
    checkpoints.save_config(workdir, config_dict)
  metric, higher_is_better = best_metric(config, task)
  tracker = BestTracker(metric, higher_is_better, train_cfg.early_stopping_patience)
  guard = nonfinite.Guard(train_cfg, layout.abstract_state.params)

  rng = jax.random.PRNGKey(config.seed)
  init_rng, dropout_rng = jax.random.split(rng)
  sampler = task.train_batches(layout.rows(train_cfg.batch_size))
  checkpointer = checkpoints.Checkpointer(workdir, train_cfg.keep_checkpoints)
  # The newest checkpoint that restores: a damaged one is moved aside with a warning.
  start_step, state, data_state = (checkpointer.restore_latest(layout.abstract_state) or
                                   (0, None, None))
  if start_step:
    state = layout.from_checkpoint(state)
    sampler.set_state(data_state["sampler"])
    tracker.set_state(data_state["best"])
    guard.set_state(data_state.get("nonfinite"))
  else:
    state, init_note = _initial_state(config, layout, init_rng)
  initial_data = {"sampler": sampler.get_state(), "best": tracker.get_state()}

  log = metrics_log.MetricsLog(workdir, train_cfg.steps, start_step, enabled=is_main)
  if is_main and start_step == 0:
    log.message(_describe_run(task, layout, workdir))
    log.message(init_note)
  elif is_main:
    log.message(f"Resuming from step {start_step} in {workdir}")
  peak = flops.peak_flops(layout.num_devices, train_cfg.peak_flops)

  final_metrics: dict[str, float] = {}
  pending: list[dict[str, jax.Array]] = []
  interval = _Throughput(task.model_config, train_cfg.batch_size, peak)
  step = start_step
  signals = preemption.SignalFlag()  # SIGTERM/SIGINT: save at the current step and stop.
  signals.install()
  preempted = False
  first_call = True
  try:
    if train_cfg.steps == 0:  # Evaluation only.
      final_metrics = task.evaluate(layout, state.params, train_cfg.final_eval_batches)
      final_metrics.update(task.evaluate_test(layout, state.params))
      if is_main:
        task.save_report(workdir, 0, final_metrics)
      log.write(0, final_metrics)
    # A resumed run may have stopped early already.
    while step < train_cfg.steps and not tracker.should_stop():
      num_steps = _steps_this_call(step, train_cfg)
      batches = [sampler.next_batch() for _ in range(num_steps)]
      controls = [guard.controls(s) for s in range(step + 1, step + num_steps + 1)]
      state, metrics = layout.train_on_batches(state, batches, dropout_rng, controls)
      guard.take(range(step + 1, step + num_steps + 1), metrics)
      step += num_steps
      pending.append(metrics)
      for batch in batches:
        interval.count(batch["inputs"].shape[1])
      log.advance(num_steps)
      if first_call:  # Keep compilation out of the first throughput interval.
        jax.block_until_ready(state)
        interval.restart()
        first_call = False
      # Each step number in turn: every process must pass JAX's preemption sync point.
      preempted = [signals.requested(s) for s in range(step - num_steps + 1, step + 1)][-1]
      bad_step = guard.check() if preempted or _reads_metrics(step, train_cfg) else None
      if bad_step is not None:  # Rollback; under 'stop' check() raised.
        state = None  # Freed before the good state is loaded.
        good_step, state = _roll_back(checkpointer, layout, sampler, tracker,
                                      lambda: (_initial_state(config, layout, init_rng)[0],
                                               initial_data))
        log.message(f"Step {bad_step} was not finite: rolled back to step {good_step}, learning "
                    f"rate x{guard.lr_scale:g} (rollback {guard.rollbacks} of "
                    f"{train_cfg.max_rollbacks})")
        log.advance(good_step - step)
        step, pending = good_step, []
        interval.restart()
        continue
      record = {}
      if step % train_cfg.log_every == 0 or step == train_cfg.steps:
        record.update(_mean_metrics(pending))
        record.update(guard.metrics())
        record.update(interval.rates())
        pending = []
      improved = False
      if step % train_cfg.eval_every == 0 or step == train_cfg.steps:
        last = step == train_cfg.steps
        max_batches = train_cfg.final_eval_batches if last else train_cfg.eval_batches
        record.update(task.evaluate(layout, state.params, max_batches))
        improved = tracker.update(step, record)
        if last:  # After the tracker: nothing is chosen on the test split.
          record.update(task.evaluate_test(layout, state.params))
        if improved and is_main:
          task.save_report(workdir, step, record)
      stop = tracker.should_stop()
      if record:
        log.write(step, record)
        final_metrics.update(record)
      if (step % train_cfg.checkpoint_every == 0 or step == train_cfg.steps or improved or stop or
          preempted):
        checkpointer.save(step,
                          layout.to_checkpoint(state), {
                              "sampler": sampler.get_state(),
                              "best": tracker.get_state(),
                              "nonfinite": guard.get_state()
                          },
                          config_dict,
                          is_best=improved)
      if stop:
        log.message(f"Early stopping at step {step}: {metric} has not improved for "
                    f"{train_cfg.early_stopping_patience} evaluations (best "
                    f"{tracker.best_value:.4g} at step {tracker.best_step})")
        break
      if preempted and step < train_cfg.steps:
        checkpointer.wait_until_finished()
        log.message(f"Preempted at step {step}: checkpoint saved; run the same command to resume")
        break
      if record or step % train_cfg.checkpoint_every == 0:
        interval.restart()
  finally:
    signals.restore()
    checkpointer.wait_until_finished()
    checkpointer.close()
    log.close()
  if preempted and step < train_cfg.steps and not tracker.should_stop():
    raise preemption.Preempted(step, signals.signum)

  # Only when this call reached the end: a rerun of a finished run trains and logs nothing.
  finished_now = bool(final_metrics) and (step == train_cfg.steps or tracker.should_stop())
  if tracker.best_step is not None:
    final_metrics["best/step"] = tracker.best_step
    final_metrics[f"best/{metric.removeprefix('eval/')}"] = tracker.best_value
  if is_main and finished_now:
    metrics_log.write_final(workdir, step, final_metrics)
  if is_main:
    task.finish(jax.device_get(layout.to_checkpoint(state).params))
  return final_metrics


# Validation metrics that are better when lower; every other one is better when higher.
_MINIMIZED = ("loss", "perplexity", "bpb")


def best_metric(config: Any, task: Any) -> tuple[str, bool]:
  """config.train.best_metric (or the task's default) and whether higher is better."""
  name = config.train.best_metric or task.default_best_metric
  if not name.startswith("eval/"):
    raise UserError(f"config.train.best_metric={name!r}: name a validation metric, e.g. "
                    f"'eval/loss' or 'eval/accuracy'")
  return name, not any(word in name for word in _MINIMIZED)


class BestTracker:
  """The best value of one validation metric so far, and early stopping after `patience`
  evaluations without a new best (0 = never)."""

  def __init__(self, metric: str, higher_is_better: bool, patience: int):
    self.metric = metric
    self.higher_is_better = higher_is_better
    self.patience = patience
    self.best_step: int | None = None
    self.best_value: float | None = None
    self.evaluations_since_best = 0

  def update(self, step: int, record: dict[str, float]) -> bool:
    """Takes an evaluation's metrics; True if it is a new best."""
    if self.metric not in record:
      raise UserError(f"config.train.best_metric={self.metric!r} is not among the validation "
                      f"metrics: {', '.join(k for k in sorted(record) if k.startswith('eval/'))}")
    value = record[self.metric]
    better = self.best_value is None or (value > self.best_value
                                         if self.higher_is_better else value < self.best_value)
    if better:
      self.best_step, self.best_value, self.evaluations_since_best = step, value, 0
    else:
      self.evaluations_since_best += 1
    return better

  def should_stop(self) -> bool:
    return bool(self.patience) and self.evaluations_since_best >= self.patience

  def get_state(self) -> dict:
    return {
        "step": self.best_step,
        "value": self.best_value,
        "evaluations_since_best": self.evaluations_since_best
    }

  def set_state(self, state: dict) -> None:
    self.best_step, self.best_value = state["step"], state["value"]
    self.evaluations_since_best = state["evaluations_since_best"]


class _Throughput:
  """Tokens/s, step time and MFU over an interval of steps (padded tokens count)."""

  def __init__(self, model_cfg: ModelConfig, batch_size: int, peak: float):
    self._model_cfg, self._batch_size, self._peak = model_cfg, batch_size, peak
    self.restart()

  def restart(self) -> None:
    self._start, self._steps, self._tokens, self._flops = time.perf_counter(), 0, 0, 0.0

  def count(self, seq_len: int) -> None:
    tokens = self._batch_size * seq_len
    self._steps += 1
    self._tokens += tokens
    self._flops += flops.flops_per_token(self._model_cfg, seq_len) * tokens

  def rates(self) -> dict[str, float]:
    if not self._steps:
      return {}
    seconds = time.perf_counter() - self._start
    rates = {
        "perf/tokens_per_s": self._tokens / seconds,
        "perf/step_time_ms": 1000 * seconds / self._steps
    }
    if self._peak:
      rates["perf/mfu"] = self._flops / seconds / self._peak
    return rates


def _mean_metrics(pending: list[dict[str, jax.Array]]) -> dict[str, float]:
  """Means over the steps (a call's metrics are scalars, or stacked over its steps), of the
  finite values only (steps that on_nonfinite='skip' dropped are counted in
  train/skipped_steps instead)."""
  calls = jax.device_get(pending)
  means = {}
  for key in calls[0]:
    values = np.concatenate([np.reshape(m[key], -1) for m in calls])
    values = values[np.isfinite(values)]
    means[key] = float(np.mean(values)) if values.size else math.nan
  return means


def _steps_this_call(step: int, train_cfg: Any) -> int:
  """How many steps the next call runs after `step`: up to config.train.steps_per_call,
  ending at a multiple of it (so a resumed run groups steps as an uninterrupted one), at the
  last step, or at the first step whose metrics are read (`_reads_metrics`)."""
  end = min((step // train_cfg.steps_per_call + 1) * train_cfg.steps_per_call, train_cfg.steps)
  last = next(s for s in range(step + 1, end + 1) if s == end or _reads_metrics(s, train_cfg))
  return last - step


def _reads_metrics(step: int, train_cfg: Any) -> bool:
  """Log, evaluation and checkpoint steps (and the last): where the step's metrics and
  non-finite flags are read, before anything is evaluated or saved."""
  every = (train_cfg.log_every, train_cfg.eval_every, train_cfg.checkpoint_every)
  return step == train_cfg.steps or any(step % n == 0 for n in every)


def _initial_state(config: Any, layout, rng: jax.Array) -> tuple[Any, str]:
  """A fresh train state, random or with config.init_from's parameters, and a note on which."""
  state = layout.create_state(rng)
  from_teacher = config.distill.get("embeddings")  # Exclusive with init_from (config_checks).
  if not config.init_from and not from_teacher:
    return state, f"Initialized: random weights (seed {config.seed}; config.init_from is empty)"
  fresh = jax.device_get(layout.to_checkpoint(state).params)
  if from_teacher:
    params, note = student_embeddings.from_teacher(config, fresh)
    note = f"Initialized: random weights (seed {config.seed}) but the token embeddings. {note}"
  else:
    params, note = init_from.pretrained_params(config, fresh, layout.groups,
                                               layout.model.config.vocab_size)
  return layout.with_params(state, params), note


def _roll_back(checkpointer, layout, sampler, tracker, initial) -> tuple[int, Any]:
  """Puts back the newest checkpoint (every saved one passed the non-finite check) or, before
  the first, `initial()`'s (state, data state); returns its step and state."""
  checkpointer.wait_until_finished()
  step, state, data_state = checkpointer.restore_latest(layout.abstract_state) or (0, None, None)
  if step:
    state = layout.from_checkpoint(state)
  else:
    state, data_state = initial()
  sampler.set_state(data_state["sampler"])
  tracker.set_state(data_state["best"])
  return step, state


def _prepare_workdir(workdir: str, config_dict: dict) -> None:
  """Creates the workdir, or checks that a resumed run's command matches the saved config."""
  try:
    os.makedirs(workdir, exist_ok=True)
  except OSError as e:
    raise UserError(f"--workdir={workdir}: cannot create it ({e.strerror})") from None
  checkpoints.check_writable(workdir)
  saved = checkpoints.load_config(workdir)
  if saved is not None:
    base = defaults.base_config().to_dict()
    differences = [
        f"{key}: saved {old!r}, now {new!r}" for key, old, new in _diff(saved, config_dict)
        if not defaults.resumable_change(key) and not _added_at_default(key, old, new, base)
    ]
    if differences:
      longer = any(d.startswith("train.steps:") for d in differences)
      how = (" To train a run further, start a new workdir from it: --workdir=NEW "
             f"--config.init_from={workdir} --config.train.steps=MORE (its weights; the "
             "optimizer state and the learning-rate schedule start afresh)." if longer else "")
      raise UserError(f"--workdir={workdir} holds a run with a different config; resume it with "
                      f"the same settings or choose a new workdir. Differences: " +
                      "; ".join(differences) + "." + how)


def _added_at_default(key: str, old: Any, new: Any, base: dict) -> bool:
  """A key that a run saved by an older version lacks, now at its default (which keeps the old
  behaviour): no reason to refuse the resume."""
  if old is not None:
    return False
  default: Any = base
  for part in key.split("."):
    if not isinstance(default, dict) or part not in default:
      return False
    default = default[part]
  return new == default


def _diff(old: dict, new: dict, prefix: str = ""):
  for key in sorted(set(old) | set(new)):
    a, b = old.get(key), new.get(key)
    if isinstance(a, dict) and isinstance(b, dict):
      yield from _diff(a, b, f"{prefix}{key}.")
    elif a != b:
      yield f"{prefix}{key}", a, b


def _describe_run(task: Any, layout, workdir: str) -> str:
  model_cfg = task.model_config
  params = layout.abstract_state.params
  num_params = sum(x.size for x in jax.tree.leaves(params))
  dtype = jnp.dtype(model_cfg.dtype)
  attention = attention_kernels.resolve_implementation(model_cfg.attention, dtype)
  kind = "decoder" if model_cfg.causal else "encoder"
  attention_line = attention_kernels.describe(model_cfg.attention, attention, dtype,
                                              jax.default_backend()) + "\n"
  layers = model_cfg.num_layers
  if model_cfg.architecture in ("lstm", "gru"):
    direction = "bidirectional " if model_cfg.bidirectional else ""
    kind, attention_line = direction + model_cfg.architecture.upper(), ""
  elif model_cfg.architecture == "encoder_decoder":
    kind, layers = "encoder–decoder", f"{model_cfg.num_layers} + {model_cfg.decoder_layers}"
  head = (f"{model_cfg.num_classes}-way classifier ({model_cfg.pooling} pooling)"
          if model_cfg.num_classes else "language-model head")
  if model_cfg.num_classes and model_cfg.pooling == "none":
    head = f"{model_cfg.num_classes}-way classifier at every token"
  if layout.trainable is not None:
    from lm.training import trainable  # pylint: disable=g-import-not-at-top
    count, _ = trainable.count_parameters(params, layout.trainable)
    trained = f"; trainable {count:,} of {num_params:,}"
  else:
    trained = f"; all {num_params:,} trainable"
  return (
      f"Model: {num_params / 1e6:.2f}M parameters{trained}; {kind}, {layers} "
      f"layers, width {model_cfg.embed_dim}, context {model_cfg.max_len}, vocab "
      f"{model_cfg.vocab_size} ({task.tokenizer.name}), {head}\n"
      f"{attention_line}{task.describe()}\n"
      f"Devices: {layout.num_devices} x {jax.devices()[0].device_kind}, {layout.describe()}, "
      f"{jax.process_count()} process(es); workdir {workdir}")
