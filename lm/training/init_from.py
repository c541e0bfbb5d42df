"""Initializing a run from a pretraining workdir (config.init_from): the backbone's parameters,
checked against the new model's architecture."""

import copy
from typing import Any

import flax.linen as nn
import jax
import numpy as np

from lm.errors import UserError
from lm.models.layer_groups import LayerGroups
from lm.training import checkpoints

# config.model keys that may differ from the pretraining run: they change how the same
# parameters are used (regularization, kernels, memory, numerics), not their shapes or meaning;
# and whether a classifier has BERT's pooler (a head, like the classifier itself).
_FREE_KEYS = ("dropout", "attention", "remat", "scan_layers", "dtype", "param_dtype", "pooler")
# Free too unless positions are learned (a table of max_len rows): rotary and no positions hold
# no parameter per position, so a model pretrained on short windows fine-tunes on longer ones
# (as BERT pretrained mostly at 128 and then at 512).
_LENGTH_KEY = "max_len"
# Besides the head group of the model family (the task's head: a classifier, a pooler, a bare
# BertModel's missing masked-LM head), LoRA adapters start fresh where the checkpoint lacks them;
# a pretraining run's unused LM head is dropped. Both are listed in the run's log.
_ADAPTERS = ("lora_a", "lora_b")
# A checkpoint holding a model under this key (ELECTRA's pair, lm/models/electra.py) gives
# that model as the backbone of a run whose own parameters lack the key.
BACKBONE = "discriminator"
# config.init_architecture: check config.model against init_from's, or adopt init_from's.
ARCHITECTURE_MODES = ("check", "adopt")
# config.task keys that belong to the model's token layout (an imported BART starts decoding
# from EOS after a source wrapped in BOS ... EOS): adopted with the architecture.
_LAYOUT_TASK_KEYS = ("decoder_start_id", "source_bos")


def adopt_architecture(config: Any) -> Any:
  """`config` with config.model's architecture keys (and the task's token layout keys, e.g. an
  encoder–decoder's decoder_start_id) from config.init_from's saved config when
  config.init_architecture is 'adopt' (the free keys stay); else `config` itself."""
  mode = config.get("init_architecture", "check")
  if mode not in ARCHITECTURE_MODES:
    raise UserError(f"config.init_architecture={mode!r}: use 'check' or 'adopt'")
  if mode == "check" or not config.init_from:
    return config
  saved = checkpoints.load_config(config.init_from)
  if not saved or "model" not in saved:
    raise UserError(f"config.init_from={config.init_from}: no config.json with a model section "
                    f"to adopt the architecture from")
  config = copy.deepcopy(config)
  with config.unlocked():
    for key, value in saved["model"].items():
      if key not in _FREE_KEYS:
        config.model[key] = value
    for key in _LAYOUT_TASK_KEYS:
      if key in saved.get("task", {}) and key in config.task:
        config.task[key] = saved["task"][key]
  return config


def new_tokens(config: Any, vocab_size: int) -> tuple[int, int] | None:
  """(config.init_from's vocabulary size, `vocab_size`) where the new model's vocabulary grew
  from it, config.finetune freezes the embeddings and its train_new_tokens is on; else None."""
  finetune = config.finetune
  freezes = finetune.method != "full" or finetune.freeze_embeddings
  if not config.init_from or not freezes or not finetune.get("train_new_tokens", True):
    return None
  saved = checkpoints.load_config(config.init_from)
  if saved is None:
    return None
  first = checkpoints.vocab_size(config.init_from, saved)
  return (first, vocab_size) if first < vocab_size else None


def pretrained_params(config: Any, fresh_params: Any, groups: LayerGroups | None,
                      vocab_size: int | None = None) -> tuple[Any, str]:
  """`fresh_params` (the new model's initial parameters) with every parameter that the
  checkpoint in config.init_from holds replaced by the pretrained value (on the host), and a
  note for the run's log: which step, what was loaded, what started fresh, what was left out.
  The model family's layer `groups` convert between its scanned and unrolled block layouts (a
  checkpoint saved with the other config.model.scan_layers). A model whose vocabulary
  (`vocab_size`) has ids after the checkpoint's (a chat template's role tokens) keeps the
  pretrained rows of its embedding and output layers; the others start fresh."""
  directory = config.init_from
  checkpointer = checkpoints.Checkpointer(directory, read_only=True)
  try:
    step = checkpointer.pick_step(config.init_step, config_key="config.init_step")
    loaded, saved_config = checkpointer.restore_params(step)
  finally:
    checkpointer.close()
  check_architecture(saved_config.get("model", {}), config.model.to_dict(), directory)
  loaded = nn.meta.unbox(loaded)
  backbone = ""
  if BACKBONE in loaded and BACKBONE not in fresh_params:  # ELECTRA: its discriminator.
    others = _names(sorted(set(loaded) - {BACKBONE}))
    loaded, backbone = loaded[BACKBONE], f" (its {BACKBONE}; {others} left out)"
  if groups is not None:
    loaded = groups.stacked(loaded) if groups.scanned in fresh_params else groups.unstacked(loaded)
  flat = {_path(p): v for p, v in jax.tree_util.tree_leaves_with_path(loaded)}
  taken, fresh_names, grown = [], [], []

  def take(path, fresh):
    name = _path(path)
    if name not in flat:
      if _starts_fresh(name, groups):
        fresh_names.append(name)
        return fresh
      raise UserError(f"config.init_from={directory}: the checkpoint has no parameter {name}; "
                      f"it was trained with a different architecture")
    value = flat[name]
    axis = _grown_vocab_axis(np.shape(value), np.shape(fresh), vocab_size)
    if axis is not None:
      grown.append(f"{name} ({np.shape(value)[axis]:,} -> {vocab_size:,})")
      value = np.concatenate([value, np.take(fresh, np.arange(np.shape(value)[axis],
                                                              vocab_size), axis)], axis)
    if np.shape(value) != np.shape(fresh):
      raise UserError(f"config.init_from={directory}: parameter {name} has shape "
                      f"{np.shape(value)} there but {np.shape(fresh)} here")
    taken.append(name)
    return np.asarray(value).astype(fresh.dtype)

  params = jax.tree_util.tree_map_with_path(take, fresh_params)
  values = sum(int(np.size(flat[name])) for name in taken)
  unused = sorted(set(flat) - set(taken))
  note = (f"Initialized from config.init_from={directory} (step {step}){backbone}: "
          f"{len(taken)} parameter arrays loaded ({values:,} values); started fresh: "
          f"{_names(fresh_names) or 'none'}; not used from the checkpoint: "
          f"{_names(unused) or 'none'}")
  if grown:
    note += f"; vocabulary grown, the new ids start fresh: {_names(grown)}"
  return params, note


def _grown_vocab_axis(saved: tuple, fresh: tuple, vocab_size: int | None) -> int | None:
  """The one axis along which a parameter grew from a smaller vocabulary to `vocab_size`."""
  if vocab_size is None or len(saved) != len(fresh):
    return None
  differ = [axis for axis, (a, b) in enumerate(zip(saved, fresh)) if a != b]
  if len(differ) == 1 and fresh[differ[0]] == vocab_size and saved[differ[0]] < vocab_size:
    return differ[0]
  return None


def _starts_fresh(name: str, groups: LayerGroups | None) -> bool:
  """Whether parameter `name` ('/'-joined path) may start fresh when the checkpoint lacks it."""
  parts = name.split("/")
  in_head = groups is not None and parts[0] in groups.head + groups.task_inputs
  return in_head or any(part in _ADAPTERS for part in parts)


def _names(names: list[str], shown: int = 6) -> str:
  more = f" and {len(names) - shown} more" if len(names) > shown else ""
  return ", ".join(names[:shown]) + more


def check_architecture(saved_model: dict, model: dict, directory: str) -> None:
  """Raises UserError naming the first config.model key that differs from the checkpoint's."""
  for key in sorted(set(saved_model) | set(model)):
    if key in _FREE_KEYS or key not in saved_model:
      continue
    if key == _LENGTH_KEY and saved_model.get("positions") != "learned":
      continue
    if saved_model.get(key) != model.get(key):
      raise UserError(f"config.model.{key}={model.get(key)!r} does not match the checkpoint in "
                      f"config.init_from={directory} ({key}={saved_model[key]!r}); fine-tuning "
                      f"keeps the pretrained architecture")


def _path(path) -> str:
  return "/".join(str(getattr(k, "key", k)) for k in path)
