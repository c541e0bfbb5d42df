"""What a model family (GPT-2, BERT, Llama, GPT-NeoX; T5, BART, Marian) tells the converter, and
the lookup by name."""

import abc
from typing import Any

from lm.convert.tensor_map import Rule
from lm.errors import UserError
from lm.models.config import ModelConfig


class Family(abc.ABC):
  """One Hugging Face architecture family <-> this project's Transformer."""

  # Hugging Face `model_type` values this family reads.
  model_types: tuple[str, ...] = ()
  # Prefix of the base model's tensors inside a model with a head (GPT2LMHeadModel:
  # 'transformer.'); import also accepts the bare base model's names without it.
  base_prefix: str = ""
  # Tensor name prefixes of the heads, which sit outside the base model.
  head_prefixes: tuple[str, ...] = ()
  # Tensors that are buffers, not weights (causal masks, position ids), or copies of tied
  # weights: ignored on import.
  ignored_suffixes: tuple[str, ...] = ()
  # The config.model.architecture this family holds.
  architecture_kind: str = "transformer"

  @abc.abstractmethod
  def model_fields(self, hf: dict[str, Any], tensor_names: set[str],
                   source: str) -> dict[str, Any]:
    """config.model fields (and `vocab_size`) from a Hugging Face config.json; UserError naming
    `source` and the key for what this project cannot represent exactly."""

  def task_fields(self, hf: dict[str, Any]) -> dict[str, Any]:
    """config.task of an imported model beyond its kind: causal_lm / masked_lm by default;
    encoder–decoders name 'seq2seq' and their decoder_start_id."""
    del hf
    return {}

  @abc.abstractmethod
  def rules(self, cfg: ModelConfig, param_paths: set[str]) -> list[Rule]:
    """The tensor rules of a model `cfg` whose parameters are `param_paths`."""

  @abc.abstractmethod
  def export_problem(self, cfg: ModelConfig) -> str | None:
    """Why `cfg` cannot be written as this family (None: it can, after adding zero biases)."""

  @abc.abstractmethod
  def hf_config(self, cfg: ModelConfig, special_ids: dict[str, int | None]) -> dict[str, Any]:
    """The Hugging Face config.json of `cfg` (`architectures` names the head class);
    `special_ids` are the tokenizer's by role, and 'decoder_start' for an encoder–decoder."""

  def exported_as(self, cfg: ModelConfig) -> ModelConfig:
    """The config that is written: `cfg` with whatever the family always has (e.g. biases)."""
    return cfg

  def hf_name(self, name: str, cfg: ModelConfig) -> str:
    """Tensor name in an exported file: base tensors get `base_prefix` when there is a head."""
    del cfg
    return name if name.startswith(self.head_prefixes) else self.base_prefix + name


def check(ok: bool, source: str, key: str, message: str) -> None:
  """Raises UserError "SOURCE/config.json: KEY: MESSAGE" unless `ok`."""
  if not ok:
    raise UserError(f"{source}/config.json: {key}: {message}")


def mismatch(cfg: ModelConfig,
             family: str,
             wanted: dict[str, Any],
             grouped_query: bool = False) -> str | None:
  """The first config.model field of `cfg` outside `wanted` (field -> value or tuple of values),
  as an export problem; grouped-query attention too unless the family has it."""
  for key, allowed in wanted.items():
    allowed = allowed if isinstance(allowed, tuple) else (allowed,)
    if getattr(cfg, key) not in allowed:
      return (f"config.model.{key}={getattr(cfg, key)!r} ({family} has "
              f"{' or '.join(map(repr, allowed))})")
  if not grouped_query and cfg.kv_heads != cfg.num_heads:
    return f"grouped-query attention ({family} has as many key/value heads as query heads)"
  return None


def families() -> list[Family]:
  from lm.convert import bart, bert, gpt2, gpt_neox, llama, t5  # pylint: disable=g-import-not-at-top
  return [gpt2.GPT2(), bert.Bert(), llama.Llama(), gpt_neox.GPTNeoX(), t5.T5(), bart.Bart(),
          bart.Marian()]


def family_for_hf(hf: dict[str, Any], source: str) -> Family:
  """The family that reads config.json's `model_type`."""
  model_type = hf.get("model_type")
  for family in families():
    if model_type in family.model_types:
      return family
  supported = sorted(t for f in families() for t in f.model_types)
  raise UserError(f"{source}/config.json: model_type {model_type!r} is not supported; this "
                  f"converter reads {', '.join(supported)}")


def family_for_model(cfg: ModelConfig, workdir: str, classifier_hint: bool = False) -> Family:
  """The first family that can hold `cfg` exactly; the refusal of a classifier
  (`classifier_hint`) says which classifiers export."""
  problems = []
  for family in families():
    if family.architecture_kind != cfg.architecture:
      continue
    problem = family.export_problem(cfg)
    if problem is None:
      return family
    problems.append(f"{family.model_types[0]}: {problem}")
  message = f"{workdir}: this model has no Hugging Face equivalent ({'; '.join(problems)})"
  if classifier_hint or cfg.num_classes:
    message += (". Sequence classifiers export on a BERT-style encoder (learned positions, "
                "config.model.norm_position='post', GELU, config.model.causal=False): with "
                "config.model.pooler=True and config.task.pooling='cls' as "
                "BertForSequenceClassification, with pooling 'cls', 'mean' or 'last' as a "
                "sentence-transformers model")
  raise UserError(message)
