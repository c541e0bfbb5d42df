"""Checks of a whole experiment config before any work: types, ranges and cross-field rules.

`validate_config(config)` raises one UserError naming the full key and its value, e.g.
`config.train.batch_size=0: must be >= 1`. Types come from `lm.defaults.base_config()`: a key
whose default is an int takes an int (not a bool, float or string), a float key an int or a
finite float, a string key a string; unknown and missing keys are errors. Checks that need the
data, the tokenizer or the devices (vocabulary sizes, labels, seq_len against the model, the
mesh against the device count) stay where those are known.
"""

import difflib
import math
from typing import Any, Callable

import numpy as np

from lm import defaults
from lm.data import augment, batches, reader, segmenter, splits, text_files, tokenizers
from lm.data.sentencepiece_tokenizer import MODEL_TYPES
from lm.errors import UserError
from lm.models import config as model_config
from lm.models import tfidf
from lm.tasks import registry, supervised, transfer_set
from lm.training import (checkpoints, init_from, optimizer, partitioning, student_embeddings,
                         trainable)

# Sections whose keys are free-form (any logical axis name), with values of this type.
_OPEN_SECTIONS = {"mesh.rules": str}
# Keys of more than one type: 'latest', 'best' or a step number.
_STEP_KEYS = ("init_step",)


def validate_config(config: Any) -> None:
  """Raises UserError for the first key of `config` (a ConfigDict) that is wrong."""
  values = config.to_dict() if hasattr(config, "to_dict") else config
  _check_types(values, defaults.base_config().to_dict(), "")
  for key, ok, problem in _rules(values):
    if not ok(_get(values, key)):
      raise UserError(f"config.{key}={_show(_get(values, key))}: {problem}")
  _check_cross_fields(values)


# --- Types ----------------------------------------------------------------------------------------


def _check_types(value: Any, default: Any, key: str) -> None:
  where = f"config.{key}" if key else "config"
  if isinstance(default, dict):
    if not isinstance(value, dict):
      raise UserError(f"{where}={_show(value)}: must be a section of keys, as in lm/defaults.py")
    if key in _OPEN_SECTIONS:
      for name, item in value.items():
        if not isinstance(item, _OPEN_SECTIONS[key]):
          raise UserError(f"{where}.{name}={_show(item)}: must be a string")
      return
    for name in sorted(map(str, set(value) - set(default))):
      close = difflib.get_close_matches(name, list(default), n=1)
      hint = f"did you mean {close[0]}?" if close else "see lm/defaults.py for the keys"
      raise UserError(f"{where}.{name}: unknown key ({hint})")
    missing = sorted(set(default) - set(value))
    if missing:
      raise UserError(f"{where}: missing key(s) {', '.join(missing)}; start from "
                      f"lm.defaults.base_config()")
    for name, item in value.items():
      _check_types(item, default[name], f"{key}.{name}" if key else name)
    return
  if key in _STEP_KEYS:
    if not (_is_int(value) or isinstance(value, str)):
      raise UserError(f"{where}={_show(value)}: must be 'latest', 'best' or a step number")
    return
  problem = _type_problem(value, type(default))
  if problem:
    raise UserError(f"{where}={_show(value)}: {problem}")


def _type_problem(value: Any, kind: type) -> str | None:
  """Why `value` cannot stand for a value of type `kind` (None if it can)."""
  if kind is bool:
    return None if isinstance(value, (bool, np.bool_)) else "must be True or False"
  if kind is int:
    return None if _is_int(value) else "must be an integer"
  if kind is float:
    if not _is_number(value):
      return "must be a number"
    return None if math.isfinite(value) else "must be a finite number"
  if kind is str:
    return None if isinstance(value, str) else "must be a string"
  return None if isinstance(value, kind) else f"must be a {kind.__name__}"


def _is_int(value: Any) -> bool:
  return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _is_number(value: Any) -> bool:
  return _is_int(value) or isinstance(value, (float, np.floating))


# --- Ranges and choices ---------------------------------------------------------------------------

Rule = tuple[str, Callable[[Any], bool], str]


def _at_least(key: str, low: float) -> Rule:
  return key, lambda v: v >= low, f"must be >= {low}"


def _between(key: str, low: float, high: float, closed: str = "[)") -> Rule:
  above = (lambda v: v >= low) if closed[0] == "[" else (lambda v: v > low)
  below = (lambda v: v <= high) if closed[1] == "]" else (lambda v: v < high)
  return key, lambda v: above(v) and below(v), f"must be in {closed[0]}{low}, {high}{closed[1]}"


def _one_of(key: str, choices: tuple[str, ...]) -> Rule:
  return key, lambda v: v in choices, f"choose one of {', '.join(choices)}"


def _some_of(key: str, choices: tuple[str, ...]) -> Rule:
  """A comma-separated list of names from `choices`."""
  ok = lambda v: all(name.strip() in choices for name in v.split(",") if name.strip())
  return key, ok, f"comma-separated names from {', '.join(choices)}"


def _rules(values: dict) -> list[Rule]:
  """Checks of single keys (types already checked), in the order of lm/defaults.py."""
  rules = [
      _between("seed", 0, 2**32),
      ("init_step", _is_step, "must be 'latest', 'best' or a step number >= 0"),
      _one_of("init_architecture", init_from.ARCHITECTURE_MODES),
      _one_of("task.kind", registry.KINDS),
      _one_of("task.pooling", model_config.POOLINGS),
      _between("task.label_smoothing", 0, 1),
      ("task.class_weights", _is_weight_list, "must be '' or comma-separated numbers >= 0"),
      _between("mlm.mask_rate", 0, 1, "(]"),
      _between("mlm.mask_token_fraction", 0, 1, "[]"),
      _between("mlm.random_token_fraction", 0, 1, "[]"),
      _one_of("finetune.method", trainable.METHODS),
      _at_least("finetune.freeze_layers", 0),
      _between("finetune.layer_lr_decay", 0, 1, "(]"),
      _at_least("finetune.lora_rank", 0),
      ("finetune.lora_alpha", lambda v: v > 0, "must be > 0"),
      _between("finetune.lora_dropout", 0, 1),
      _some_of("finetune.lora_targets", model_config.PROJECTIONS),
      _between("distill.alpha", 0, 1, "[]"),
      ("distill.temperature", lambda v: v > 0, "must be > 0"),
      _one_of("distill.loss", ("kl", "mse")),
      _one_of("distill.embeddings", student_embeddings.MODES),
      _one_of("distill.transfer_unit", transfer_set.UNITS),
      _at_least("distill.transfer_examples", 0),
      _at_least("distill.hidden_weight", 0),
      _between("augment.rate", 0, 1),
      _at_least("augment.copies", 0),
      _at_least("augment.seed", -1),
      _some_of("augment.operations", augment.OPERATIONS),
      ("data.source", lambda v: bool(v.strip()), "must name files, globs or 'tfds:NAME'"),
      _between("data.valid_fraction", 0, 1),
      _one_of("data.valid_holdout", splits.HOLDOUTS),
      _one_of("data.txt_unit", text_files.TXT_UNITS),
      ("data.entry_separator", lambda v: bool(v.strip()) and "\n" not in v,
       "must be the non-blank text of the line between entries, e.g. '%'"),
      _one_of("data.encoding_errors", text_files.ENCODING_ERRORS),
      _some_of("data.clean", supervised.CLEAN_STEPS),
      _one_of("data.tokenizer", tokenizers.KINDS + tokenizers.IMPORTED_KINDS),
      _one_of("data.word_segmenter", segmenter.SEGMENTERS),
      _at_least("data.vocab_size", 1),
      _one_of("data.model_type", MODEL_TYPES),
      _between("data.character_coverage", 0, 1, "(]"),
      _at_least("data.seq_len", 0),
      _one_of("data.sampling", batches.MODES),
      _at_least("train.steps", 0),
      _at_least("train.batch_size", 1),
      _at_least("train.grad_accum_steps", 1),
      _at_least("train.steps_per_call", 1),
      _at_least("train.learning_rate", 0),
      _at_least("train.warmup_steps", 0),
      _one_of("train.schedule", optimizer.SCHEDULES),
      _one_of("train.optimizer", tuple(optimizer.OPTIMIZERS)),
      _at_least("train.min_learning_rate", 0),
      _between("train.b1", 0, 1),
      _between("train.b2", 0, 1),
      _between("train.momentum", 0, 1),
      ("train.eps", lambda v: v > 0, "must be > 0"),
      _at_least("train.weight_decay", 0),
      _at_least("train.grad_clip", 0),
      _at_least("train.eval_every", 1),
      _at_least("train.eval_batches", 0),
      _at_least("train.final_eval_batches", 0),
      _at_least("train.eval_batch_size", 1),
      _at_least("train.checkpoint_every", 1),
      _at_least("train.keep_checkpoints", 1),
      _at_least("train.log_every", 1),
      ("train.best_metric", lambda v: not v or v.startswith("eval/"),
       "name a validation metric, e.g. 'eval/loss' or 'eval/accuracy' ('' = the task's)"),
      _at_least("train.early_stopping_patience", 0),
      _at_least("train.peak_flops", 0),
      _at_least("train.sample_tokens", 0),
      _at_least("distributed.num_processes", 0),
      _at_least("distributed.process_id", -1),
  ]
  for axis in partitioning.MESH_AXES:
    rules.append((f"mesh.{axis}", lambda v: v == -1 or v >= 1,
                  "must be -1 (all remaining devices) or >= 1"))
  return rules


def _is_step(value: Any) -> bool:
  if _is_int(value):
    return value >= 0
  return value.strip() in ("latest", "best") or value.strip().isdigit()


def _is_weight_list(text: str) -> bool:
  for item in filter(str.strip, text.split(",")):
    try:
      weight = float(item)
    except ValueError:
      return False
    if not (math.isfinite(weight) and weight >= 0):
      return False
  return True


# --- Rules between keys ---------------------------------------------------------------------------


def _check_cross_fields(values: dict) -> None:
  train, data = values["train"], values["data"]
  if train["batch_size"] % train["grad_accum_steps"]:
    raise UserError(f"config.train.grad_accum_steps={train['grad_accum_steps']} does not divide "
                    f"config.train.batch_size={train['batch_size']}")
  if train["steps"] == 0 and not values["init_from"]:
    raise UserError("config.train.steps=0 evaluates config.init_from's model without training: "
                    "set --config.init_from, or train at least one step")
  if train["warmup_steps"] > train["steps"]:
    raise UserError(f"config.train.warmup_steps={train['warmup_steps']}: must be <= "
                    f"config.train.steps={train['steps']}; for a shorter run lower both, e.g. "
                    f"--config.train.steps={train['steps']} "
                    f"--config.train.warmup_steps={train['steps'] // 10}")
  if values["init_required"] and not values["init_from"]:
    raise UserError("config.init_from is empty, but this config fine-tunes a pretrained run "
                    "(config.init_required=True, set by the experiment's fine-tuning argument): "
                    "pass --config.init_from=<the pretraining workdir>, or train from random "
                    "weights on purpose with --config.init_required=False")
  mlm = values["mlm"]
  if mlm["mask_token_fraction"] + mlm["random_token_fraction"] > 1.0 + 1e-9:
    raise UserError(f"config.mlm.mask_token_fraction={mlm['mask_token_fraction']} + "
                    f"config.mlm.random_token_fraction={mlm['random_token_fraction']}: must be "
                    f"<= 1")
  free = [axis for axis in partitioning.MESH_AXES if values["mesh"][axis] == -1]
  if len(free) > 1:
    raise UserError(f"config.mesh: only one axis may be -1, got {', '.join(free)}")
  partitioning.parse_rules(values["mesh"]["rules"])  # Mesh axes that exist.
  holds_out = not data["valid_source"] and not data["source"].strip().startswith(
      reader.TFDS_PREFIX) and not data["prepared"]
  if holds_out and data["valid_fraction"] <= 0:
    raise UserError(f"config.data.valid_fraction={data['valid_fraction']}: must be > 0 when "
                    f"config.data.valid_source is '' (the validation text is held out)")
  holdout, kind = data.get("valid_holdout", "records"), values["task"]["kind"]
  if holdout != "records" and kind != "classification":
    raise UserError(f"config.data.valid_holdout={holdout!r} is for classification "
                    f"(config.task.kind={kind!r}); use 'records'")
  task = registry.task_class(values["task"]["kind"])
  if data["test_source"] and (not task.token_stream or data["prepared"]):
    raise UserError(f"config.data.test_source={data['test_source']!r}: a test split is for "
                    f"language models trained from config.data.source (classifiers: evaluate the"
                    f" test file with python -m lm.predict); set config.data.test_source=''")
  if data["prepared"] and not task.token_stream:
    raise UserError(f"config.data.prepared={data['prepared']!r}: a prepared corpus is token"
                    f" streams for language-model pretraining, not for config.task.kind="
                    f"{values['task']['kind']!r}; set config.data.prepared=''")
  for role in task.data_roles:
    if not data[f"{role}_field"].strip():
      raise UserError(f"config.data.{role}_field is empty: name the column / key / feature of "
                      f"the {role}")
  if values["distill"]["teacher"] and not task.distills:
    raise UserError(f"config.distill.teacher={values['distill']['teacher']!r}: distillation "
                    f"trains classification, token_classification and seq2seq students, not "
                    f"config.task.kind={values['task']['kind']!r}; set config.distill.teacher=''")
  transfer = values["distill"]["transfer"]
  if transfer and not (values["distill"]["teacher"] and task.distills_unlabelled):
    raise UserError(f"config.distill.transfer={transfer!r}: unlabelled texts are labelled by "
                    f"config.distill.teacher for a classification student (config.task.kind="
                    f"{values['task']['kind']!r}, teacher {values['distill']['teacher']!r}); "
                    f"set config.distill.transfer=''")
  if transfer and values["data"]["text_pair_field"]:
    raise UserError(f"config.distill.transfer={transfer!r}: the transfer texts are single "
                    f"texts, the student classifies pairs (config.data.text_pair_field="
                    f"{values['data']['text_pair_field']!r}); set config.distill.transfer=''")
  embeddings = values["distill"]["embeddings"]
  if embeddings and not values["distill"]["teacher"]:
    raise UserError(f"config.distill.embeddings={embeddings!r} takes the student's embeddings "
                    f"from config.distill.teacher, which is empty: name the teacher's workdir")
  if embeddings and values["init_from"]:
    raise UserError(f"config.distill.embeddings={embeddings!r} and config.init_from="
                    f"{values['init_from']!r} both initialize the student: keep one")
  _check_hidden_transfer(values)
  task.check_config(values)
  _check_model(values)
  if train["steps_per_call"] > 1 and not task.token_stream:
    raise UserError(f"config.train.steps_per_call={train['steps_per_call']} needs batches of one "
                    f"shape (config.task.kind='causal_lm' or 'masked_lm'); "
                    f"config.task.kind={values['task']['kind']!r} pads each batch to its own "
                    f"length: use 1")


def _check_model(values: dict) -> None:
  """config.model as a ModelConfig (its own checks), unless init_from's replaces it; a TF-IDF
  baseline's config.tfidf."""
  if model_config.is_tfidf(values):
    tfidf.check_config(values)
    return
  if values["init_architecture"] == "adopt" and values["init_from"]:
    return
  fields = checkpoints.lora_fields(values["finetune"])
  # The vocabulary is not known yet; 1 stands in (ModelConfig only needs it positive).
  config = model_config.model_config_from(values["model"], 1, **fields)
  if not 0 <= values["finetune"]["freeze_layers"] <= config.num_layers:
    raise UserError(f"config.finetune.freeze_layers={values['finetune']['freeze_layers']}: must "
                    f"be in [0, config.model.num_layers={config.num_layers}]")


def _get(values: dict, key: str) -> Any:
  for part in key.split("."):
    values = values[part]
  return values


def _show(value: Any, limit: int = 60) -> str:
  text = repr(value)
  return text if len(text) <= limit else text[:limit - 3] + "..."


def _check_hidden_transfer(values: dict) -> None:
  """config.distill.hidden_weight > 0 needs a teacher and a Transformer classifier student."""
  weight, distill = values["distill"].get("hidden_weight", 0.0), values["distill"]
  if not weight:
    return
  if not distill["teacher"]:
    raise UserError(f"config.distill.hidden_weight={weight} transfers the hidden states of "
                    f"config.distill.teacher, which is empty: name the teacher's workdir")
  kind, architecture = values["task"]["kind"], values["model"]["architecture"]
  if kind != "classification" or architecture != "transformer":
    raise UserError(f"config.distill.hidden_weight={weight} is for a Transformer classifier "
                    f"(config.task.kind={kind!r}, config.model.architecture={architecture!r}); "
                    f"set config.distill.hidden_weight=0")
