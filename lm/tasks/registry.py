"""The one table of tasks: config.task.kind -> the class that implements it.

A new task is one module under lm/tasks/ with a `base.Task` subclass, and one line here. The
trainer, the config checks, checkpoints, `lm.sweep` and `lm.predict` look a task up by its kind
and ask the class; none of them names a kind. Classes are imported on first use, so that reading
this table (e.g. for the config checks) imports no task's dependencies.
"""

import importlib
from typing import Any

from lm.errors import UserError

TASKS = {
    "causal_lm": "lm.tasks.language_model:LanguageModelTask",
    "masked_lm": "lm.tasks.language_model:LanguageModelTask",
    "electra": "lm.tasks.electra:ElectraTask",
    "classification": "lm.tasks.classification:ClassificationTask",
    "sft": "lm.tasks.sft:SftTask",
    "chat": "lm.tasks.chat:ChatTask",
    "token_classification": "lm.tasks.token_classification:TokenClassificationTask",
    "seq2seq": "lm.tasks.seq2seq:Seq2SeqTask",
    "span_corruption": "lm.tasks.span_corruption:SpanCorruptionTask",
    "extractive_qa": "lm.tasks.extractive_qa:ExtractiveQATask",
    "fewshot": "lm.tasks.fewshot:FewShotTask",
}
KINDS = tuple(TASKS)


def task_class(kind: str) -> Any:
  """The `base.Task` subclass of config.task.kind `kind`."""
  if kind not in TASKS:
    raise UserError(f"config.task.kind={kind!r}: choose one of {', '.join(KINDS)}")
  module, name = TASKS[kind].split(":")
  return getattr(importlib.import_module(module), name)


def add_config_keys(config: Any) -> None:
  """Adds the config keys of every task (`base.Task.add_config_keys`) to the base config."""
  for cls in dict.fromkeys(task_class(kind) for kind in KINDS):
    cls.add_config_keys(config)


def build_task(config: Any, workdir: str, model_fields: dict[str, Any]) -> Any:
  """The task of `config`, with its data read and tokenized; `model_fields` are ModelConfig
  fields set from outside the task (LoRA)."""
  return task_class(config.task.kind).from_config(config, workdir, model_fields)
