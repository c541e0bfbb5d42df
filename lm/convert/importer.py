"""A Hugging Face model directory -> a workdir of this project (checkpoint, config, tokenizer).

The workdir looks like a finished training run: `init_from` fine-tunes or continues pretraining
from it, and `lm.generate` / `lm.predict` read it. A chat template in the model's
tokenizer_config.json (or chat_template.jinja) is saved with the tokenizer, for `lm.chat` and
chat fine-tuning (lm/data/chat_template.py).
"""

import dataclasses
import os
from typing import Any

import jax.numpy as jnp
import numpy as np
from absl import logging

from lm import defaults
from lm.convert import checkpoint_files, tensor_map
from lm.convert.family import Family, family_for_hf
from lm.data import chat_template, hf_tokenizer, pipeline
from lm.errors import UserError
from lm.models.config import TASK_FIELDS, ModelConfig
from lm.models.architecture import param_shapes
from lm.training import checkpoints

# Heads that a checkpoint may lack (a bare BertModel has no masked-LM head): initialized fresh.
OPTIONAL_HEADS = ("pooler", "head_transform", "head_norm", "output_bias")


def import_hf(source: str, workdir: str) -> ModelConfig:
  """Converts the model in directory `source`; writes nothing unless all of it converts."""
  checkpointer = checkpoints.Checkpointer(workdir, read_only=True)
  existing = checkpointer.latest_step() if os.path.isdir(workdir) else None
  checkpointer.close()
  if existing is not None:
    raise UserError(f"--workdir={workdir} already holds a checkpoint; import into a new workdir")
  hf = checkpoint_files.read_hf_config(source)
  family = family_for_hf(hf, source)
  tensors = base_names(checkpoint_files.read_hf_tensors(source), family)
  fields = family.model_fields(hf, set(tensors), source)
  vocab_size = fields.pop("vocab_size")
  cfg = ModelConfig(vocab_size=vocab_size, **fields).validate(f"{source}/config.json")
  tokenizer = hf_tokenizer.import_tokenizer(source, vocab_size=vocab_size)
  if tokenizer.vocab_size > vocab_size:
    raise UserError(f"{source}: the tokenizer has {tokenizer.vocab_size} tokens but the model "
                    f"only {vocab_size} embedding rows (config.json vocab_size)")
  params = _params(cfg, family, tensors, source)

  config = defaults.base_config()
  config.model.update({k: v for k, v in dataclasses.asdict(cfg).items() if k not in TASK_FIELDS})
  config.task.kind = "causal_lm" if cfg.causal else "masked_lm"
  config.task.update(family.task_fields(hf))
  config.data.tokenizer = "hf"
  saved = {**config.to_dict(), "converted_from": os.path.abspath(source)}
  tokenizer.save(os.path.join(workdir, pipeline.TOKENIZER_DIR))
  chat_template.import_hf(source, tokenizer, os.path.join(workdir, pipeline.TOKENIZER_DIR))
  checkpointer = checkpoints.Checkpointer(workdir)
  try:
    checkpointer.save(0, {"params": params}, {}, saved)
    checkpointer.wait_until_finished()
  finally:
    checkpointer.close()
  checkpoints.save_config(workdir, saved)
  return cfg


def base_names(tensors: dict[str, np.ndarray], family: Family) -> dict[str, np.ndarray]:
  """Tensor names without the base model's prefix (checkpoints with and without a head read
  alike), buffers dropped."""
  named = {}
  for name, value in tensors.items():
    if name.endswith(family.ignored_suffixes):
      continue
    named[name.removeprefix(family.base_prefix)] = value
  return named


def _params(cfg: ModelConfig, family: Family, tensors: dict[str, np.ndarray],
            source: str) -> dict[str, Any]:
  """The parameter tree (float32 on the host) with fresh values for absent optional heads."""
  shapes = param_shapes(cfg)
  if cfg.pooler:  # Kept for a later classifier although the language model does not use it.
    shapes.update({"pooler/kernel": (cfg.embed_dim, cfg.embed_dim), "pooler/bias": (cfg.embed_dim,)})
  rules = family.rules(cfg, set(shapes))
  present, fresh = [], []
  for rule in rules:
    optional = rule.params[0].split("/")[0] in OPTIONAL_HEADS
    (fresh if optional and not any(t in tensors for t in rule.tensors) else present).append(rule)
  params = tensor_map.to_params(tensors, present, shapes, source)
  rng = np.random.default_rng(0)
  for path in (p for rule in fresh for p in rule.params):
    shape = shapes[path]
    if path.endswith("scale"):
      value = np.ones(shape)
    elif path.endswith("bias"):
      value = np.zeros(shape)
    else:
      value = rng.normal(0.0, cfg.init_std, shape)
    tensor_map.set_path(params, path, value)
  if fresh:
    logging.info("%s has no %s; initialized fresh", source,
                 ", ".join(sorted({r.params[0].split('/')[0] for r in fresh})))
  used = {t for rule in present for t in rule.tensors}
  unused = sorted(set(tensors) - used)
  if unused:
    logging.warning("%s: %d tensors not used (e.g. %s)", source, len(unused), ", ".join(unused[:5]))
  return _as_float32(params)


def _as_float32(tree):
  if isinstance(tree, dict):
    return {k: _as_float32(v) for k, v in tree.items()}
  return jnp.asarray(np.asarray(tree, dtype=np.float32))
