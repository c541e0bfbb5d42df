"""A workdir of this project -> a new Hugging Face model directory (config.json,
model.safetensors, generation_config.json, tokenizer files) that `transformers` loads with the
same logits; a pooled encoder classifier as a sentence-transformers directory
(`st_classifier.py`).

The directory is built beside the target and renamed into place when complete, so a failed
export leaves nothing behind, and its files get the usual permissions (0644 under umask 022).
config.json's position limit (`n_positions`, `max_position_embeddings`) is config.model.max_len:
the model never saw longer inputs.
"""

import dataclasses
import json
import os
import shutil
import tempfile

import jax
import numpy as np

from lm.convert import checkpoint_files, st_classifier, tensor_map
from lm.convert.family import family_for_model
from lm.convert.tokenizer_files import tokenizer_files
from lm.data import atomic
from lm.errors import UserError
from lm.models.config import ModelConfig
from lm.models.lora import merge_lora
from lm.models.architecture import param_shapes
from lm.training import checkpoints


def export_hf(workdir: str, target: str, which: str = "latest") -> str:
  """Writes checkpoint `which` of `workdir` (LoRA merged) into the new directory `target`;
  returns the Hugging Face architecture written. UserError if `target` exists (an empty
  directory excepted) or the model has no Hugging Face equivalent."""
  _check_new(target)
  cfg, params, tokenizer = checkpoints.load_for_inference(workdir, which)
  if cfg.architecture in ("lstm", "gru"):
    raise UserError(f"{workdir}: a recurrent model ({cfg.architecture}) has no Hugging Face "
                    f"architecture to export to; only Transformers export")
  if tokenizer.chat_template is not None and tokenizer.chat_template.kind == "roles":
    raise UserError(f"{workdir}: a chat run with this project's chat template has role tokens "
                    f"after its tokenizer's vocabulary, which an exported tokenizer cannot hold")
  params = jax.tree.map(lambda x: np.asarray(x, np.float32), params)
  if cfg.lora_rank:
    params, cfg = merge_lora(params, cfg)
  if "blocks" in params:
    from lm.models.transformer import unstack_layers  # pylint: disable=g-import-not-at-top
    params = unstack_layers(params, cfg.num_layers)
  cfg = dataclasses.replace(cfg, scan_layers=False)
  head = []
  if st_classifier.applies(cfg):
    params, head = st_classifier.split_head(params, cfg)
    model_cfg = st_classifier.backbone(cfg)
  else:
    model_cfg = cfg
  family = family_for_model(model_cfg, workdir, classifier_hint=bool(cfg.num_classes))
  exported = family.exported_as(model_cfg)
  params = _complete(params, model_cfg, exported, workdir)
  rules = family.rules(exported, set(tensor_map.flatten(params)))
  tensors = {
      family.hf_name(name, exported): value
      for name, value in tensor_map.to_tensors(params, rules).items()
  }
  special_ids = dataclasses.asdict(tokenizer.special_ids)
  config = checkpoints.load_config(workdir) or {}
  if cfg.architecture == "encoder_decoder":
    from lm.tasks import seq2seq  # pylint: disable=g-import-not-at-top
    special_ids["decoder_start"] = seq2seq.decoder_start_id(config.get("task", {}), tokenizer)
  hf_config = {**family.hf_config(exported, special_ids), "torch_dtype": "float32"}
  if cfg.num_classes:
    hf_config.update(_label_names(workdir))
  files = tokenizer_files(tokenizer,
                          max_len=cfg.max_len,
                          prefix_ids=(_prefix_ids(config, tokenizer)
                                      if cfg.architecture == "transformer" else []),
                          encoder=bool(cfg.num_classes) and not cfg.causal)

  def write(directory: str) -> None:
    for name, content in files.items():
      _write(os.path.join(directory, name), content)
    checkpoint_files.write_safetensors(os.path.join(directory, "model.safetensors"), tensors)
    if cfg.causal and not cfg.num_classes:
      _write(os.path.join(directory, "generation_config.json"),
             _generation_config(cfg, special_ids))
    if head:
      st_classifier.write_modules(directory, cfg, head)
    _write(os.path.join(directory, "config.json"), json.dumps(hf_config, indent=2).encode())

  _write_new_directory(target, write)
  return "sentence-transformers (BertModel + Pooling + Dense)" if head else (
      hf_config["architectures"][0])


def _check_new(target: str) -> None:
  if os.path.isdir(target) and not os.listdir(target):
    return
  if os.path.lexists(target):
    kind = "a directory, not empty" if os.path.isdir(target) else "a file"
    raise UserError(f"--to_hf={target} already exists ({kind}); export into a new directory, "
                    f"or remove it first")


def _write_new_directory(target: str, write) -> None:
  """Runs `write(directory)` on a fresh directory beside `target`, then renames it to `target`."""
  parent = os.path.dirname(os.path.abspath(target))
  os.makedirs(parent, exist_ok=True)
  staging = tempfile.mkdtemp(prefix=f".{os.path.basename(os.path.abspath(target))}.",
                             suffix=".tmp", dir=parent)
  try:
    write(staging)
    _set_permissions(staging)
    _check_new(target)  # Again: another process may have written there meanwhile.
    if os.path.isdir(target):
      os.rmdir(target)  # Empty: os.rename cannot replace it on every system.
    os.rename(staging, target)
  except BaseException:
    shutil.rmtree(staging, ignore_errors=True)
    raise


def _set_permissions(directory: str) -> None:
  """What open() and mkdir() would have given (temporary files and mkdtemp get 0600/0700)."""
  os.chmod(directory, atomic.DIRECTORY_MODE)
  for root, dirs, names in os.walk(directory):
    for name in dirs:
      os.chmod(os.path.join(root, name), atomic.DIRECTORY_MODE)
    for name in names:
      os.chmod(os.path.join(root, name), atomic.FILE_MODE)


def _write(path: str, content: bytes) -> None:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "wb") as f:
    f.write(content)


def _complete(params: dict, cfg: ModelConfig, exported: ModelConfig, workdir: str) -> dict:
  """`params` plus what the exported model has and this one lacks: zero biases (and token
  types), which change nothing, and the tied output layer written out."""
  flat = tensor_map.flatten(params)
  for path, shape in param_shapes(exported).items():
    if path in flat:
      continue
    if path == "lm_head/kernel" and cfg.tie_embeddings:
      value = np.asarray(flat["token_embed/embedding"]).T
    elif path.endswith("/bias") or path.startswith("type_embed/") or path == "output_bias":
      value = np.zeros(shape, np.float32)
    else:
      raise UserError(f"{workdir}: the checkpoint has no parameter {path}")
    tensor_map.set_path(params, path, value)
  return params


def _prefix_ids(config: dict, tokenizer) -> list[int]:
  """The ids the run's task puts before a prompt (BOS for `sft`), as `lm.generate` does."""
  from lm.tasks import registry  # pylint: disable=g-import-not-at-top
  kind = config.get("task", {}).get("kind")
  if not kind or tokenizer.chat_template is not None:  # A chat model's prompt is its template's.
    return []
  try:
    return list(registry.task_class(kind).generation_ids(config, tokenizer, ""))
  except UserError:  # A model that does not generate.
    return []


def _generation_config(cfg: ModelConfig, special_ids: dict) -> bytes:
  """Greedy-by-default settings that stop at EOS and at the model's context (max_len)."""
  config = {"bos_token_id": special_ids.get("bos"), "eos_token_id": special_ids.get("eos"),
            "pad_token_id": special_ids.get("pad"), "max_length": cfg.max_len,
            "do_sample": False}
  if "decoder_start" in special_ids:
    config["decoder_start_token_id"] = special_ids["decoder_start"]
  return json.dumps(config, indent=2).encode()


def _label_names(workdir: str) -> dict:
  from lm.data import labels  # pylint: disable=g-import-not-at-top
  saved = labels.load_saved(workdir)
  if saved is None:
    return {}
  names = saved.names
  return {"id2label": {str(i): name for i, name in enumerate(names)},
          "label2id": {name: i for i, name in enumerate(names)}}
