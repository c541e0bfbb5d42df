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
from lm.models import config as model_config
from lm.models.config import ModelConfig
from lm.training import steps



class Batches(Protocol):
  """Training batches reproducible from a step counter (saved with each checkpoint)."""

  def next_batch(self) -> dict[str, np.ndarray]:
    ...

  def get_state(self) -> dict:
    ...

  def set_state(self, state: dict) -> None:
    ...


class Task(abc.ABC):
  """Built once per run from the config and the workdir (data read and tokenized).

  Registered by its config.task.kind in `lm.tasks.registry`. Besides the instance methods, the
  class answers what the rest of the code asks of a task before (config checks) or after
  (`lm.predict`, `lm.sweep`, loading a checkpoint) a run, so that no other module names a kind.
  """

  # The config.data.<role>_field keys this task reads (each must name a column / key).
  data_roles: tuple[str, ...] = ()
  # True: `lm.generate` continues the prompt in the model's own context (a decoder), so a long
  # prompt slides the context; False: the output is a new sequence (an encoder–decoder's).
  continues_prompt = True
  # True: batches are fixed-shape windows of a token stream, which config.data.prepared,
  # config.data.test_source and config.train.steps_per_call > 1 need.
  token_stream = False

  tokenizer: Tokenizer
  model_config: ModelConfig
  # Sequence length the model is initialized (and, for language models, trained) at.
  seq_len: int
  default_best_metric: str = "eval/loss"

  @classmethod
  def from_config(cls, config: Any, workdir: str, model_fields: dict[str, Any]) -> "Task":
    """The task of a run: reads and tokenizes its data; `model_fields` are ModelConfig fields
    set from outside the task (LoRA adapters)."""
    return cls(config, workdir, model_fields)

  @classmethod
  def add_config_keys(cls, config: Any) -> None:
    """Adds this task's own keys, with their defaults and a comment each, to the base config
    (lm/defaults.py); keys that several tasks read live there instead."""

  # Whether recurrent networks (config.model.architecture='lstm' or 'gru') can train it.
  recurrent_models = False
  # Whether config.distill.teacher can teach it (lm/tasks/distillation.py), and on unlabelled
  # texts of config.distill.transfer too (lm/tasks/transfer_set.py).
  distills = False
  distills_unlabelled = False

  @classmethod
  def check_config(cls, values: dict) -> None:
    """Raises UserError for config values (a dict) that this task cannot train with."""
    architecture = values["model"]["architecture"]
    if architecture == "transformer" or (values["init_architecture"] == "adopt" and
                                         values["init_from"]):
      return
    if architecture == model_config.TFIDF:  # ClassificationTask lets it through.
      raise UserError(f"config.model.architecture='tfidf' fits text classifiers only "
                      f"(config.task.kind='classification'), not {values['task']['kind']!r}")
    if architecture in ("lstm", "gru") and cls.recurrent_models:
      return
    if architecture in ("lstm", "gru"):
      raise UserError(f"config.model.architecture={architecture!r} (a recurrent network) trains "
                      f"causal_lm, classification and token_classification, not "
                      f"{values['task']['kind']!r}")
    raise UserError(f"config.model.architecture={architecture!r} does not train "
                    f"config.task.kind={values['task']['kind']!r}")

  @classmethod
  def head_fields(cls, config: dict, workdir: str) -> dict[str, Any]:
    """The ModelConfig fields of this task's head (e.g. num_classes) in a saved run, from its
    config (a dict) and its workdir."""
    del config, workdir
    return {}

  @classmethod
  def predict_file(cls, workdir: str, input_path: str, output_path: str,
                   options: dict[str, Any]) -> dict[str, float]:
    """`lm.predict`: writes predictions for `input_path` to `output_path`; returns the metrics
    against labels found in the input (else {})."""
    del input_path, output_path, options
    raise UserError(f"--workdir={workdir}: lm.predict has no predictions for a "
                    f"{cls.__name__}; it predicts with classifiers, taggers and QA readers")

  @classmethod
  def generation_ids(cls, config: dict, tokenizer: Tokenizer, prompt: str) -> list[int]:
    """`lm.generate`: the ids fed for `prompt`, built as this task built its training inputs.
    Raises UserError where the run's model does not generate text (the default)."""
    del tokenizer, prompt
    raise UserError(f"this run's task is config.task.kind={config['task']['kind']!r}: its model "
                    "does not generate text. lm.generate samples from decoders trained with "
                    "'causal_lm' or 'sft'; use lm.predict for classifiers and taggers")

  @classmethod
  def generate(cls, config: dict, model_config: ModelConfig, params: Any, tokenizer: Tokenizer,
               prompts: list[str], **options: Any) -> list[str]:
    """`lm.generate`: the continuation of every prompt (`sampling.generate_continuations`, its
    options; prompts encoded by `generation_ids`)."""
    from lm import sampling  # pylint: disable=g-import-not-at-top
    encode = lambda prompt: cls.generation_ids(config, tokenizer, prompt)
    return sampling.generate_continuations(model_config, params, tokenizer, prompts,
                                           encode=encode, **options)

  def make_model(self) -> Any:
    """The Flax module the trainer trains: config.model's architecture for this task's
    `model_config`; a task with a model of its own (ELECTRA's pair) overrides this."""
    from lm.models import architecture  # pylint: disable=g-import-not-at-top
    return architecture.make_model(self.model_config)

  def loss(self, apply_fn: Any, params: Any, batch: dict, rng: Any) -> tuple[Any, dict]:
    """The training loss (`steps.LossFn`): the per-item loss (per token or per example, weighed
    by batch['weights']) and scalar metrics logged as train/<name>. By default, `loss_fn` of
    the model's outputs; a task whose objective runs more than one forward pass, or samples
    (ELECTRA), overrides this."""
    return steps.logits_loss(self.loss_fn)(apply_fn, params, batch, rng)

  @abc.abstractmethod
  def loss_fn(self, logits: Any, batch: dict) -> Any:
    """Per-item loss (per token or per example) of the model's outputs."""

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
  """Copies config.init_from's tokenizer into the workdir (once); or the distillation teacher's
  where the student takes its embeddings (config.distill.embeddings='teacher')."""
  key, origin = "init_from", config.init_from
  if config.get("distill", {}).get("embeddings"):
    key, origin = "distill.teacher", config.distill.teacher
  if not origin:
    return
  source = os.path.join(origin, pipeline.TOKENIZER_DIR)
  target = os.path.join(workdir, pipeline.TOKENIZER_DIR)
  if os.path.exists(os.path.join(target, "tokenizer.json")):
    return
  if not os.path.exists(os.path.join(source, "tokenizer.json")):
    raise UserError(f"config.{key}={origin}: no tokenizer there ({source}); point it at the "
                    f"workdir of a finished run")
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
