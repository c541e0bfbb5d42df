"""A pooled encoder classifier -> a sentence-transformers model directory.

`transformers` has no class for a BERT encoder whose classifier reads the mean (or last token,
or [CLS] without BERT's pooler) of the hidden states. sentence-transformers composes exactly
that: the backbone (a `BertModel` at the top of the directory, with the tokenizer), a Pooling
module, then a Dense module per layer of the head: BERT's pooler (tanh) when the model has one,
and the classifier (identity). `SentenceTransformer(DIR).encode(texts)` returns the class
logits; their argmax is the label of config.json's `id2label`.
"""

import json
import os

import numpy as np

from lm.convert import checkpoint_files
from lm.models.config import ModelConfig

POOLINGS = ("cls", "mean", "last")
_ACTIVATIONS = {"tanh": "torch.nn.modules.activation.Tanh",
                "identity": "torch.nn.modules.linear.Identity"}


def applies(cfg: ModelConfig) -> bool:
  """Whether `cfg` is a sequence classifier on an encoder that BERT's own classifier head
  (the pooler on [CLS]) cannot express."""
  return (bool(cfg.num_classes) and not cfg.causal and cfg.pooling in POOLINGS and
          not (cfg.pooling == "cls" and cfg.pooler))


def backbone(cfg: ModelConfig) -> ModelConfig:
  """The bare encoder of classifier `cfg` (its pooler kept: BertModel has one)."""
  return cfg.replace(num_classes=0, pooling="cls", pooler=True, head_transform=False,
                     output_bias=False)


def split_head(params: dict, cfg: ModelConfig) -> tuple[dict, list[tuple[dict, str]]]:
  """(backbone parameters, the head's dense layers with their activations). A model without
  BERT's pooler gets a zero one in the backbone, which the sentence-transformers pipeline
  never reads (BertModel would otherwise initialize it at random, with a warning)."""
  params = dict(params)
  classifier = params.pop("classifier")
  dense = [(classifier, "identity")]
  if cfg.pooler:
    dense.insert(0, (params["pooler"], "tanh"))
  else:
    D = cfg.embed_dim
    params["pooler"] = {"kernel": np.zeros((D, D), np.float32), "bias": np.zeros(D, np.float32)}
  return params, dense


def write_modules(target: str, cfg: ModelConfig, dense: list[tuple[dict, str]]) -> None:
  """modules.json, sentence_bert_config.json and the Pooling and Dense modules' folders."""
  modules = [{"idx": 0, "name": "0", "path": "",
              "type": "sentence_transformers.models.Transformer"}]
  pooling = {
      "word_embedding_dimension": cfg.embed_dim,
      "pooling_mode_cls_token": cfg.pooling == "cls",
      "pooling_mode_mean_tokens": cfg.pooling == "mean",
      "pooling_mode_max_tokens": False,
      "pooling_mode_mean_sqrt_len_tokens": False,
      "pooling_mode_weightedmean_tokens": False,
      "pooling_mode_lasttoken": cfg.pooling == "last",
      "include_prompt": True,
  }
  _write_json(os.path.join(target, "1_Pooling", "config.json"), pooling)
  modules.append({"idx": 1, "name": "1", "path": "1_Pooling",
                  "type": "sentence_transformers.models.Pooling"})
  for idx, (layer, activation) in enumerate(dense, start=2):
    folder = f"{idx}_Dense"
    kernel = np.asarray(layer["kernel"], np.float32)
    _write_json(os.path.join(target, folder, "config.json"),
                {"in_features": kernel.shape[0], "out_features": kernel.shape[1], "bias": True,
                 "activation_function": _ACTIVATIONS[activation]})
    checkpoint_files.write_safetensors(
        os.path.join(target, folder, "model.safetensors"),
        {"linear.weight": np.ascontiguousarray(kernel.T),
         "linear.bias": np.asarray(layer["bias"], np.float32)})
    modules.append({"idx": idx, "name": str(idx), "path": folder,
                    "type": "sentence_transformers.models.Dense"})
  _write_json(os.path.join(target, "modules.json"), modules)
  _write_json(os.path.join(target, "sentence_bert_config.json"),
              {"max_seq_length": cfg.max_len, "do_lower_case": False})


def _write_json(path: str, value) -> None:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "w", encoding="utf-8") as f:
    json.dump(value, f, indent=2)
