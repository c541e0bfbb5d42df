"""What a finished run left in its workdir: final metrics, loss curves, parameters and FLOPs.

Training compute is tokens seen x lm.training.flops.flops_per_token: the final step x
config.train.batch_size x the window (config.data.seq_len, or config.model.max_len), the
trainer's own count (padded tokens count; for classifiers the window is an upper bound).
"""

import dataclasses
import functools
import json
import os

from lm.data import pipeline, tokenizers
from lm.errors import UserError
from lm.models import architecture, tfidf
from lm.models import config as model_config
from lm.models.config import ModelConfig, model_config_from
from lm.sweep.plan import Run
from lm.training import checkpoints, flops, metrics_log

# The final metrics in the tables: every validation metric, and the last training loss.
TRAIN_LOSS = "train/loss"
CURVES = ("train/loss", "eval/loss")


@dataclasses.dataclass
class Outcome:
  run: Run
  step: int  # The last step (train.steps, or where it stopped early).
  metrics: dict[str, float]  # eval/* of the final evaluation and train/loss.
  curves: dict[str, list[tuple[int, float]]]  # CURVES name -> [(step, value)].
  params: int
  flops: float  # Training FLOPs (forward and backward).


def read_outcome(run: Run) -> Outcome:
  """The outcome of a finished run (runner.is_finished); UserError if its files are broken."""
  final = _read_json(os.path.join(run.workdir, metrics_log.FINAL_FILE))
  try:
    step = int(final["step"])
    metrics = {
        k: float(v)
        for k, v in final["metrics"].items()
        if k.startswith(("eval/", "test/")) or k == TRAIN_LOSS
    }
  except (KeyError, TypeError, ValueError, AttributeError):
    raise UserError(f"{run.workdir}/{metrics_log.FINAL_FILE}: not the file lm.main writes; "
                    f"delete it to run the run again") from None
  config = checkpoints.load_config(run.workdir)
  if config is None:
    raise UserError(f"{run.workdir}: no config.json beside {metrics_log.FINAL_FILE}")
  if model_config.is_tfidf(config):  # Fitted in closed form, no steps.
    return Outcome(run=run, step=step, metrics=metrics, curves=read_curves(run.workdir),
                   params=tfidf.count_params(run.workdir), flops=0.0)
  model_cfg = _model_config(run.workdir, config)
  window = config["data"]["seq_len"] or model_cfg.max_len
  tokens = step * config["train"]["batch_size"] * window
  return Outcome(run=run,
                 step=step,
                 metrics=metrics,
                 curves=read_curves(run.workdir),
                 params=_count_params(model_cfg),
                 flops=tokens * flops.flops_per_token(model_cfg, window))


def read_curves(workdir: str) -> dict[str, list[tuple[int, float]]]:
  """(step, value) of each CURVES metric in WORKDIR/metrics.jsonl; a resumed run's repeated
  steps keep their last value."""
  path = os.path.join(workdir, metrics_log.METRICS_FILE)
  curves = {name: {} for name in CURVES}
  try:
    with open(path, encoding="utf-8") as f:
      for number, line in enumerate(f, 1):
        if not line.strip():
          continue
        try:
          record = json.loads(line)
          for name in CURVES:
            if name in record:
              curves[name][int(record["step"])] = float(record[name])
        except (ValueError, KeyError, TypeError):
          raise UserError(f"{path}, line {number}: not a metrics record") from None
  except FileNotFoundError:
    pass
  return {name: sorted(points.items()) for name, points in curves.items()}


def _model_config(workdir: str, config: dict) -> ModelConfig:
  """The run's ModelConfig: config.model, its tokenizer's vocabulary and the task's fields."""
  vocab_size = tokenizers.load_tokenizer(os.path.join(workdir, pipeline.TOKENIZER_DIR)).vocab_size
  fields = {"vocab_size": vocab_size, **checkpoints.task_fields(config, workdir)}
  return model_config_from(config["model"], **fields)


@functools.lru_cache(maxsize=None)
def _count_params(model_cfg: ModelConfig) -> int:
  return architecture.count_params(model_cfg)


def _read_json(path: str) -> dict:
  try:
    with open(path, encoding="utf-8") as f:
      return json.load(f)
  except (OSError, ValueError) as e:
    raise UserError(f"{path}: cannot read it ({e})") from None
