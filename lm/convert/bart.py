"""BART (Lewis et al. 2020) and Marian (`MarianMTModel`, the OPUS-MT translation models): the
fairseq encoder–decoder layout. Post-LayerNorm with biases everywhere, a shared token table
tied to the output, and a `final_logits_bias`. BART has learned positions (rows offset by 2),
a LayerNorm on the embeddings and exact GELU; Marian fixed sinusoidal positions, token
embeddings scaled by sqrt(d_model), no embedding norm and SiLU ("swish")."""

from typing import Any

import numpy as np

from lm.convert import tensor_map as tm
from lm.convert.family import Family, check, mismatch
from lm.models.config import ModelConfig

# Hugging Face activation names <-> config.model.mlp.
ACTIVATIONS = {"gelu": "gelu_exact", "gelu_new": "gelu", "gelu_pytorch_tanh": "gelu",
               "relu": "relu", "swish": "silu", "silu": "silu"}
EXPORTED_ACTIVATIONS = {"gelu_exact": "gelu", "gelu": "gelu_new", "relu": "relu", "silu": "swish"}
POSITION_OFFSET = 2  # BartLearnedPositionalEmbedding: position p reads row p + 2.


class Bart(Family):
  model_types = ("bart",)
  base_prefix = "model."
  head_prefixes = ("lm_head.", "final_logits_bias")
  ignored_suffixes = ("encoder.embed_tokens.weight", "decoder.embed_tokens.weight",
                      "lm_head.weight")
  architecture_kind = "encoder_decoder"
  name = "BART"
  architecture = "BartForConditionalGeneration"
  positions = "learned"
  embed_norm = True

  def model_fields(self, hf: dict[str, Any], tensor_names: set[str], source: str) -> dict:
    activation = hf.get("activation_function", "gelu")
    check(activation in ACTIVATIONS, source, "activation_function",
          f"{activation!r} is not supported (only {', '.join(ACTIVATIONS)})")
    for ours, theirs in (("encoder_attention_heads", "decoder_attention_heads"),
                         ("encoder_ffn_dim", "decoder_ffn_dim")):
      check(hf[ours] == hf[theirs], source, theirs,
            f"{hf[theirs]} differs from {ours}={hf[ours]} (one value serves both here)")
    for key in ("normalize_before", "add_final_layer_norm"):
      check(not hf.get(key), source, key, "is not supported (BART and Marian are post-norm)")
    check(hf.get("share_encoder_decoder_embeddings", True), source,
          "share_encoder_decoder_embeddings", "separate source and target vocabularies are "
          "not supported")
    return dict(vocab_size=hf["vocab_size"],
                architecture="encoder_decoder",
                num_layers=hf["encoder_layers"],
                num_decoder_layers=hf["decoder_layers"],
                num_heads=hf["encoder_attention_heads"],
                embed_dim=hf["d_model"],
                mlp_dim=hf["encoder_ffn_dim"],
                max_len=hf["max_position_embeddings"],
                positions=self.positions,
                embed_norm=self.embed_norm,
                scale_embeddings=bool(hf.get("scale_embedding", False)),
                norm="layernorm",
                norm_eps=1e-5,
                norm_position="post",
                mlp=ACTIVATIONS[activation],
                use_bias=True,
                tie_embeddings=True,
                output_bias=True,
                causal=True)

  def task_fields(self, hf: dict[str, Any]) -> dict[str, Any]:
    # BART's tokenizer wraps a source as <s> text </s>.
    return dict(kind="seq2seq", decoder_start_id=hf.get("decoder_start_token_id", 2),
                source_bos=True)

  def rules(self, cfg: ModelConfig, param_paths: set[str]) -> list[tm.Rule]:
    rules = [
        tm.copy("token_embed/embedding", "shared.weight"),
        tm.one_to_one("output_bias", "final_logits_bias", lambda b: b.reshape(-1),
                      lambda b: b.reshape(1, -1)),
    ]
    for side, theirs in (("source", "encoder"), ("target", "decoder")):
      if self.positions == "learned":
        rules.append(_offset_positions(f"{side}_position_embed/embedding",
                                       f"{theirs}.embed_positions.weight", cfg.embed_dim))
      if self.embed_norm:
        rules += tm.norm(f"{side}_embed_norm", f"{theirs}.layernorm_embedding")
    for i in range(cfg.num_layers + cfg.decoder_layers):
      decoder = i >= cfg.num_layers
      ours = f"block_{i}"
      theirs = f"decoder.layers.{i - cfg.num_layers}" if decoder else f"encoder.layers.{i}"
      rules += [
          *_attention(f"{ours}/attn", f"{theirs}.self_attn", cfg),
          *tm.norm(f"{ours}/attn_norm", f"{theirs}.self_attn_layer_norm"),
          *tm.dense(f"{ours}/mlp/wi", f"{theirs}.fc1", (cfg.embed_dim, cfg.hidden_dim)),
          *tm.dense(f"{ours}/mlp/wo", f"{theirs}.fc2", (cfg.hidden_dim, cfg.embed_dim)),
          *tm.norm(f"{ours}/mlp_norm", f"{theirs}.final_layer_norm"),
      ]
      if decoder:
        rules += [
            *_attention(f"{ours}/cross_attn", f"{theirs}.encoder_attn", cfg),
            *tm.norm(f"{ours}/cross_norm", f"{theirs}.encoder_attn_layer_norm"),
        ]
    return rules

  def export_problem(self, cfg: ModelConfig) -> str | None:
    return mismatch(
        cfg, self.name,
        dict(architecture="encoder_decoder",
             positions=self.positions,
             embed_norm=self.embed_norm,
             norm="layernorm",
             norm_position="post",
             mlp=tuple(EXPORTED_ACTIVATIONS),
             tie_embeddings=True,
             scale_attention=True,
             scale_tied_output=False,
             attention_head_dim=0))

  def exported_as(self, cfg: ModelConfig) -> ModelConfig:
    return cfg.replace(use_bias=True, projection_biases="", output_bias=True)

  def hf_config(self, cfg: ModelConfig, special_ids: dict[str, int | None]) -> dict[str, Any]:
    return dict(architectures=[self.architecture],
                model_type=self.model_types[0],
                vocab_size=cfg.vocab_size,
                d_model=cfg.embed_dim,
                encoder_layers=cfg.num_layers,
                decoder_layers=cfg.decoder_layers,
                encoder_attention_heads=cfg.num_heads,
                decoder_attention_heads=cfg.num_heads,
                encoder_ffn_dim=cfg.hidden_dim,
                decoder_ffn_dim=cfg.hidden_dim,
                activation_function=EXPORTED_ACTIVATIONS[cfg.mlp],
                max_position_embeddings=cfg.max_len,
                scale_embedding=cfg.scale_embeddings,
                dropout=cfg.dropout,
                attention_dropout=0.0,
                activation_dropout=0.0,
                tie_word_embeddings=True,
                is_encoder_decoder=True,
                pad_token_id=special_ids.get("pad"),
                bos_token_id=special_ids.get("bos"),
                eos_token_id=special_ids.get("eos"),
                forced_eos_token_id=None,
                decoder_start_token_id=special_ids.get("decoder_start"))


class Marian(Bart):
  model_types = ("marian",)
  ignored_suffixes = Bart.ignored_suffixes + ("embed_positions.weight",)
  name = "Marian"
  architecture = "MarianMTModel"
  positions = "sinusoidal"
  embed_norm = False

  def task_fields(self, hf: dict[str, Any]) -> dict[str, Any]:
    return dict(kind="seq2seq", decoder_start_id=hf.get("decoder_start_token_id",
                                                        hf.get("pad_token_id")))

  def model_fields(self, hf: dict[str, Any], tensor_names: set[str], source: str) -> dict:
    check(hf.get("static_position_embeddings", True), source, "static_position_embeddings",
          "learned positions are not supported for Marian (its sinusoids are)")
    return super().model_fields(hf, tensor_names, source)

  def hf_config(self, cfg: ModelConfig, special_ids: dict[str, int | None]) -> dict[str, Any]:
    return {**super().hf_config(cfg, special_ids), "static_position_embeddings": True,
            "share_encoder_decoder_embeddings": True,
            "decoder_vocab_size": cfg.vocab_size}


def _attention(ours: str, theirs: str, cfg: ModelConfig) -> list[tm.Rule]:
  """q_proj, k_proj, v_proj, out_proj (weights and biases) <-> query, key_value, out."""
  D, H, Dh = cfg.embed_dim, cfg.num_heads, cfg.head_dim
  return [
      *tm.dense(f"{ours}/query", f"{theirs}.q_proj", (D, H, Dh)),
      tm.key_value(f"{ours}/key_value/kernel", f"{theirs}.k_proj.weight", f"{theirs}.v_proj.weight",
                   (D, H, 2, Dh), transpose=True),
      tm.key_value(f"{ours}/key_value/bias", f"{theirs}.k_proj.bias", f"{theirs}.v_proj.bias",
                   (H, 2, Dh), transpose=False),
      tm.linear(f"{ours}/out/kernel", f"{theirs}.out_proj.weight", (H, Dh, D), 2),
      tm.copy(f"{ours}/out/bias", f"{theirs}.out_proj.bias"),
  ]


def _offset_positions(ours: str, theirs: str, D: int) -> tm.Rule:
  """BART's position table [max_len + 2, D] <-> ours [max_len, D] (its first 2 rows unused)."""
  return tm.one_to_one(ours, theirs, lambda w: w[POSITION_OFFSET:],
                       lambda w: np.concatenate([np.zeros((POSITION_OFFSET, D), w.dtype), w]))
