"""A workdir of this project -> a Hugging Face model directory (config.json, model.safetensors,
tokenizer files) that `transformers` loads with the same logits."""

import dataclasses
import json
import os

import jax
import numpy as np
from absl import logging

from lm.convert import checkpoint_files, tensor_map
from lm.convert.family import family_for_model
from lm.data import atomic, hf_tokenizer, sentencepiece_tokenizer
from lm.data.tokenizer_base import Tokenizer
from lm.errors import UserError
from lm.models.lora import merge_lora
from lm.models.transformer import param_shapes
from lm.training import checkpoints


def export_hf(workdir: str, target: str, which: str = "latest") -> str:
  """Writes checkpoint `which` of `workdir` (LoRA merged) into the new directory `target`;
  returns the Hugging Face architecture written."""
  if os.path.isdir(target) and os.listdir(target):
    raise UserError(f"--to_hf={target} is not empty; export into a new directory")
  cfg, params, tokenizer = checkpoints.load_for_inference(workdir, which)
  if cfg.architecture != "transformer":
    raise UserError(f"{workdir}: an {cfg.architecture.upper()} model has no Hugging Face "
                    f"architecture to export to; only Transformers export")
  params = jax.tree.map(lambda x: np.asarray(x, np.float32), params)
  if cfg.lora_rank:
    params, cfg = merge_lora(params, cfg)
  if "blocks" in params:
    from lm.models.transformer import unstack_layers  # pylint: disable=g-import-not-at-top
    params = unstack_layers(params, cfg.num_layers)
  cfg = dataclasses.replace(cfg, scan_layers=False)
  family = family_for_model(cfg, workdir)
  exported = family.exported_as(cfg)
  params = _with_zero_biases(params, exported, workdir)
  rules = family.rules(exported, set(tensor_map.flatten(params)))
  tensors = {
      family.hf_name(name, exported): value
      for name, value in tensor_map.to_tensors(params, rules).items()
  }
  special_ids = dataclasses.asdict(tokenizer.special_ids)
  hf_config = {**family.hf_config(exported, special_ids), "torch_dtype": "float32"}
  os.makedirs(target, exist_ok=True)
  for name, content in _tokenizer_files(tokenizer).items():
    atomic.atomic_write_bytes(os.path.join(target, name), content)
  checkpoint_files.write_safetensors(os.path.join(target, "model.safetensors"), tensors)
  # Last: a directory with config.json is complete.
  atomic.atomic_write_text(os.path.join(target, "config.json"), json.dumps(hf_config, indent=2))
  return hf_config["architectures"][0]


def _with_zero_biases(params: dict, cfg, workdir: str) -> dict:
  """`params` plus zeros for the biases (and token types) that the exported model has and this
  one lacks: a zero bias changes nothing."""
  flat = tensor_map.flatten(params)
  for path, shape in param_shapes(cfg).items():
    if path in flat:
      continue
    if not (path.endswith("/bias") or path.startswith("type_embed/")):
      raise UserError(f"{workdir}: the checkpoint has no parameter {path}")
    tensor_map.set_path(params, path, np.zeros(shape, np.float32))
  return params


def _tokenizer_files(tokenizer: Tokenizer) -> dict[str, bytes]:
  """The tokenizer as Hugging Face files: tokenizer.json or tokenizer.model, plus
  tokenizer_config.json naming the special tokens."""
  payload = tokenizer._payload()  # pylint: disable=protected-access
  if hf_tokenizer.HF_FILE in payload:
    files = {"tokenizer.json": payload[hf_tokenizer.HF_FILE]}
    class_name = "PreTrainedTokenizerFast"
  elif sentencepiece_tokenizer.MODEL_FILE in payload:
    files = {"tokenizer.model": payload[sentencepiece_tokenizer.MODEL_FILE]}
    class_name = "LlamaTokenizer"
  else:
    logging.warning("a %s tokenizer has no Hugging Face equivalent; no tokenizer written",
                    tokenizer.name)
    return {}
  special = {
      f"{role}_token": tokenizer.id_to_piece(token_id)
      for role, token_id in dataclasses.asdict(tokenizer.special_ids).items()
      if token_id is not None
  }
  config = {"tokenizer_class": class_name, "add_bos_token": False, **special}
  files["tokenizer_config.json"] = json.dumps(config, indent=2).encode()
  return files
