"""BERT-family encoders (Devlin et al. 2019; MiniLM has the same layout): learned positions and
token types, post-LayerNorm with biases, exact GELU, a pooler, and the masked-LM head (dense,
GELU, LayerNorm, tied decoder with a bias)."""

from typing import Any

from lm.convert import tensor_map as tm
from lm.convert.family import Family, check, mismatch
from lm.convert.gpt2 import ACTIVATIONS
from lm.models.config import ModelConfig


class Bert(Family):
  model_types = ("bert",)
  base_prefix = "bert."
  head_prefixes = ("cls.", "classifier.")
  ignored_suffixes = ("position_ids", "cls.predictions.decoder.weight",
                      "cls.predictions.decoder.bias")

  def model_fields(self, hf: dict[str, Any], tensor_names: set[str], source: str) -> dict:
    activation = hf.get("hidden_act", "gelu")
    check(activation in ACTIVATIONS, source, "hidden_act",
          f"{activation!r} is not supported (only {', '.join(ACTIVATIONS)})")
    position_kind = hf.get("position_embedding_type", "absolute")
    check(position_kind == "absolute", source, "position_embedding_type",
          f"{position_kind!r} is not supported (only 'absolute')")
    check(not hf.get("is_decoder"), source, "is_decoder", "BERT as a decoder is not supported")
    return dict(vocab_size=hf["vocab_size"],
                num_layers=hf["num_hidden_layers"],
                num_heads=hf["num_attention_heads"],
                embed_dim=hf["hidden_size"],
                mlp_dim=hf["intermediate_size"],
                max_len=hf["max_position_embeddings"],
                type_vocab_size=hf.get("type_vocab_size", 2),
                positions="learned",
                norm="layernorm",
                norm_eps=hf.get("layer_norm_eps", 1e-12),
                norm_position="post",
                mlp=ACTIVATIONS[activation],
                use_bias=True,
                tie_embeddings=True,
                head_transform=True,
                output_bias=True,
                pooler="pooler.dense.weight" in tensor_names,
                causal=False)

  def rules(self, cfg: ModelConfig, param_paths: set[str]) -> list[tm.Rule]:
    D, H, Dh, F = cfg.embed_dim, cfg.num_heads, cfg.head_dim, cfg.hidden_dim
    rules = [
        tm.copy("token_embed/embedding", "embeddings.word_embeddings.weight"),
        tm.copy("position_embed/embedding", "embeddings.position_embeddings.weight"),
        tm.copy("type_embed/embedding", "embeddings.token_type_embeddings.weight"),
        *tm.norm("embed_norm", "embeddings.LayerNorm"),
    ]
    for i in range(cfg.num_layers):
      ours, theirs = f"block_{i}", f"encoder.layer.{i}"
      attention = f"{theirs}.attention.self"
      rules += [
          *tm.dense(f"{ours}/attn/query", f"{attention}.query", (D, H, Dh)),
          tm.key_value(f"{ours}/attn/key_value/kernel", f"{attention}.key.weight",
                       f"{attention}.value.weight", (D, H, 2, Dh), transpose=True),
          tm.key_value(f"{ours}/attn/key_value/bias", f"{attention}.key.bias",
                       f"{attention}.value.bias", (H, 2, Dh), transpose=False),
          tm.linear(f"{ours}/attn/out/kernel", f"{theirs}.attention.output.dense.weight",
                    (H, Dh, D), 2),
          tm.copy(f"{ours}/attn/out/bias", f"{theirs}.attention.output.dense.bias"),
          *tm.norm(f"{ours}/attn_norm", f"{theirs}.attention.output.LayerNorm"),
          *tm.dense(f"{ours}/mlp/wi", f"{theirs}.intermediate.dense", (D, F)),
          *tm.dense(f"{ours}/mlp/wo", f"{theirs}.output.dense", (F, D)),
          *tm.norm(f"{ours}/mlp_norm", f"{theirs}.output.LayerNorm"),
      ]
    heads = {
        "pooler": tm.dense("pooler", "pooler.dense", (D, D)),
        "head_transform": [
            *tm.dense("head_transform", "cls.predictions.transform.dense", (D, D)),
            *tm.norm("head_norm", "cls.predictions.transform.LayerNorm"),
        ],
        "output_bias": [tm.copy("output_bias", "cls.predictions.bias")],
        "classifier": tm.dense("classifier", "classifier", (D, cfg.num_classes)),
    }
    for name, head_rules in heads.items():
      if any(path.split("/")[0] == name for path in param_paths):
        rules += head_rules
    return rules

  def export_problem(self, cfg: ModelConfig) -> str | None:
    problem = mismatch(
        cfg, "BERT",
        dict(positions="learned",
             norm="layernorm",
             norm_position="post",
             mlp=("gelu", "gelu_exact"),
             causal=False,
             tie_embeddings=True,
             attention_head_dim=0))
    if not problem and cfg.num_classes and (cfg.pooling != "cls" or not cfg.pooler):
      problem = ("a classifier other than BERT's: pooler (config.model.pooler) on [CLS] "
                 "(config.task.pooling='cls')")
    return problem

  def exported_as(self, cfg: ModelConfig) -> ModelConfig:
    return cfg.replace(use_bias=True, projection_biases="", type_vocab_size=cfg.type_vocab_size or 2)

  def hf_config(self, cfg: ModelConfig, special_ids: dict[str, int | None]) -> dict[str, Any]:
    if cfg.num_classes:
      architecture = "BertForSequenceClassification"
    elif cfg.head_transform:
      architecture = "BertForMaskedLM"
    else:
      architecture = "BertModel"
    config = dict(architectures=[architecture],
                  model_type="bert",
                  vocab_size=cfg.vocab_size,
                  hidden_size=cfg.embed_dim,
                  num_hidden_layers=cfg.num_layers,
                  num_attention_heads=cfg.num_heads,
                  intermediate_size=cfg.hidden_dim,
                  hidden_act={"gelu": "gelu_new", "gelu_exact": "gelu"}[cfg.mlp],
                  max_position_embeddings=cfg.max_len,
                  type_vocab_size=cfg.type_vocab_size,
                  layer_norm_eps=cfg.norm_eps,
                  hidden_dropout_prob=cfg.dropout,
                  attention_probs_dropout_prob=0.0,
                  position_embedding_type="absolute",
                  pad_token_id=special_ids.get("pad"))
    if cfg.num_classes:
      config["num_labels"] = cfg.num_classes
    return config

  def hf_name(self, name: str, cfg: ModelConfig) -> str:
    if not (cfg.num_classes or cfg.head_transform):  # A bare BertModel: no prefix.
      return name
    return super().hf_name(name, cfg)

