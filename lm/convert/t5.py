"""T5 (Raffel et al. 2020): pre-RMSNorm without biases, relative position buckets (a bias table
per side in the first block, shared by all), unscaled attention scores, and an MLP that is
ReLU (v1.0) or gated GELU (v1.1, `feed_forward_proj='gated-gelu'`). v1.0 ties the output to
the token table and scales the decoder's output by d_model^-0.5; v1.1 has a separate
`lm_head` and no scaling. (transformers 5 always ties T5's output layer and saves v1.1 as tied
without scaling: `scale_decoder_outputs` in config.json, read here, says which.)"""

from typing import Any

from lm.convert import tensor_map as tm
from lm.convert.family import Family, check, mismatch
from lm.models.config import ModelConfig

# feed_forward_proj <-> config.model.mlp.
MLPS = {"relu": "relu", "gated-gelu": "geglu", "gated-gelu_new": "geglu", "gated-silu": "swiglu",
        "gelu": "gelu_exact", "gelu_new": "gelu", "silu": "silu"}
EXPORTED_MLPS = {"relu": "relu", "geglu": "gated-gelu", "swiglu": "gated-silu",
                 "gelu": "gelu_new", "gelu_exact": "gelu", "silu": "silu"}
# T5 has no position limit: the context an imported model gets (its pretraining length).
DEFAULT_MAX_LEN = 512


class T5(Family):
  model_types = ("t5",)
  architecture_kind = "encoder_decoder"
  head_prefixes = ("lm_head.",)
  ignored_suffixes = ("encoder.embed_tokens.weight", "decoder.embed_tokens.weight",
                      "EncDecAttention.relative_attention_bias.weight")

  def model_fields(self, hf: dict[str, Any], tensor_names: set[str], source: str) -> dict:
    projection = hf.get("feed_forward_proj", "relu")
    check(projection in MLPS, source, "feed_forward_proj",
          f"{projection!r} is not supported (only {', '.join(MLPS)})")
    scale_output = hf.get("scale_decoder_outputs", hf.get("tie_word_embeddings", True))
    return dict(vocab_size=hf["vocab_size"],
                architecture="encoder_decoder",
                num_layers=hf["num_layers"],
                num_decoder_layers=hf.get("num_decoder_layers") or hf["num_layers"],
                num_heads=hf["num_heads"],
                embed_dim=hf["d_model"],
                attention_head_dim=hf["d_kv"],
                mlp_dim=hf["d_ff"],
                max_len=hf.get("n_positions", DEFAULT_MAX_LEN),
                positions="relative",
                relative_buckets=hf.get("relative_attention_num_buckets", 32),
                relative_max_distance=hf.get("relative_attention_max_distance", 128),
                scale_attention=False,
                norm="rmsnorm",
                norm_eps=hf.get("layer_norm_epsilon", 1e-6),
                norm_position="pre",
                mlp=MLPS[projection],
                use_bias=False,
                tie_embeddings="lm_head.weight" not in tensor_names,
                scale_tied_output=bool(scale_output),
                causal=True)

  def task_fields(self, hf: dict[str, Any]) -> dict[str, Any]:
    return dict(kind="seq2seq", decoder_start_id=hf.get("decoder_start_token_id",
                                                        hf.get("pad_token_id", 0)))

  def rules(self, cfg: ModelConfig, param_paths: set[str]) -> list[tm.Rule]:
    D, F = cfg.embed_dim, cfg.hidden_dim
    rules = [
        tm.copy("token_embed/embedding", "shared.weight"),
        tm.copy("source_relative_bias/embedding",
                "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"),
        tm.copy("target_relative_bias/embedding",
                "decoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"),
        *tm.norm("encoder_norm", "encoder.final_layer_norm", bias=False),
        *tm.norm("decoder_norm", "decoder.final_layer_norm", bias=False),
    ]
    for i in range(cfg.num_layers + cfg.decoder_layers):
      decoder = i >= cfg.num_layers
      ours = f"block_{i}"
      theirs = f"decoder.block.{i - cfg.num_layers}" if decoder else f"encoder.block.{i}"
      sublayers = [("attn", "SelfAttention")] + ([("cross_attn", "EncDecAttention")]
                                                  if decoder else [])
      for index, (attention, their_attention) in enumerate(sublayers):
        norm = "attn_norm" if attention == "attn" else "cross_norm"
        rules += _attention(f"{ours}/{attention}", f"{theirs}.layer.{index}.{their_attention}",
                            cfg)
        rules += tm.norm(f"{ours}/{norm}", f"{theirs}.layer.{index}.layer_norm", bias=False)
      mlp = f"{theirs}.layer.{len(sublayers)}"
      if cfg.gated_mlp:
        rules += [
            tm.linear(f"{ours}/mlp/wi_gate/kernel", f"{mlp}.DenseReluDense.wi_0.weight", (D, F)),
            tm.linear(f"{ours}/mlp/wi_up/kernel", f"{mlp}.DenseReluDense.wi_1.weight", (D, F)),
        ]
      else:
        rules.append(tm.linear(f"{ours}/mlp/wi/kernel", f"{mlp}.DenseReluDense.wi.weight", (D, F)))
      rules += [
          tm.linear(f"{ours}/mlp/wo/kernel", f"{mlp}.DenseReluDense.wo.weight", (F, D)),
          *tm.norm(f"{ours}/mlp_norm", f"{mlp}.layer_norm", bias=False),
      ]
    if not cfg.tie_embeddings:
      rules.append(tm.linear("lm_head/kernel", "lm_head.weight", (D, cfg.vocab_size)))
    return rules

  def export_problem(self, cfg: ModelConfig) -> str | None:
    return mismatch(
        cfg, "T5",
        dict(architecture="encoder_decoder",
             positions="relative",
             norm="rmsnorm",
             norm_position="pre",
             mlp=tuple(EXPORTED_MLPS),
             use_bias=False,
             projection_biases="",
             output_bias=False,
             scale_attention=False,
             scale_embeddings=False))
    return problem

  def hf_config(self, cfg: ModelConfig, special_ids: dict[str, int | None]) -> dict[str, Any]:
    return dict(architectures=["T5ForConditionalGeneration"],
                model_type="t5",
                vocab_size=cfg.vocab_size,
                d_model=cfg.embed_dim,
                d_kv=cfg.head_dim,
                d_ff=cfg.hidden_dim,
                num_layers=cfg.num_layers,
                num_decoder_layers=cfg.decoder_layers,
                num_heads=cfg.num_heads,
                relative_attention_num_buckets=cfg.relative_buckets,
                relative_attention_max_distance=cfg.relative_max_distance,
                dropout_rate=cfg.dropout,
                layer_norm_epsilon=cfg.norm_eps,
                feed_forward_proj=EXPORTED_MLPS[cfg.mlp],
                tie_word_embeddings=cfg.tie_embeddings,
                scale_decoder_outputs=cfg.scale_tied_output,
                is_encoder_decoder=True,
                n_positions=cfg.max_len,
                pad_token_id=special_ids.get("pad"),
                eos_token_id=special_ids.get("eos"),
                decoder_start_token_id=special_ids.get("decoder_start"))


def _attention(ours: str, theirs: str, cfg: ModelConfig) -> list[tm.Rule]:
  """q, k, v, o (no biases) <-> query, key_value, out."""
  D, H, Dh = cfg.embed_dim, cfg.num_heads, cfg.head_dim
  return [
      tm.linear(f"{ours}/query/kernel", f"{theirs}.q.weight", (D, H, Dh)),
      tm.key_value(f"{ours}/key_value/kernel", f"{theirs}.k.weight", f"{theirs}.v.weight",
                   (D, H, 2, Dh), transpose=True),
      tm.linear(f"{ours}/out/kernel", f"{theirs}.o.weight", (H, Dh, D), 2),
  ]
