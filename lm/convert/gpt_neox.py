"""GPT-NeoX (Black et al. 2022): rotary positions ('rotate half'), pre-LayerNorm with biases,
GELU, query/key/value fused per head, an untied output layer. This project's rotary decoders
with LayerNorm and GELU (the Shakespeare demo) export as it, with sequential residuals
(use_parallel_residual=False) and rotary on the whole head (rotary_pct=1)."""

from typing import Any

import numpy as np

from lm.convert import rope
from lm.convert import tensor_map as tm
from lm.convert.family import Family, check, mismatch
from lm.convert.gpt2 import ACTIVATIONS, DECODER_LAYOUT
from lm.models.config import ModelConfig


class GPTNeoX(Family):
  model_types = ("gpt_neox",)
  base_prefix = "gpt_neox."
  head_prefixes = ("embed_out.",)
  ignored_suffixes = ("rotary_emb.inv_freq", ".attention.bias", ".attention.masked_bias")

  def model_fields(self, hf: dict[str, Any], tensor_names: set[str], source: str) -> dict:
    activation = hf.get("hidden_act", "gelu")
    check(activation in ACTIVATIONS, source, "hidden_act",
          f"{activation!r} is not supported (only {', '.join(ACTIVATIONS)})")
    check(not hf.get("use_parallel_residual", True), source, "use_parallel_residual",
          "parallel attention and MLP (Pythia, GPT-NeoX-20B) are not supported")
    check(hf.get("rotary_pct", 1.0) == 1.0, source, "rotary_pct",
          "partial rotary embeddings are not supported")
    check(hf.get("attention_bias", True), source, "attention_bias",
          "attention without biases is not supported")
    return dict(vocab_size=hf["vocab_size"],
                num_layers=hf["num_hidden_layers"],
                num_heads=hf["num_attention_heads"],
                embed_dim=hf["hidden_size"],
                mlp_dim=hf["intermediate_size"],
                max_len=hf["max_position_embeddings"],
                positions="rope",
                norm="layernorm",
                norm_eps=hf.get("layer_norm_eps", 1e-5),
                mlp=ACTIVATIONS[activation],
                use_bias=True,
                tie_embeddings=bool(hf.get("tie_word_embeddings", False)),
                causal=True,
                **rope.model_fields(
                    {"rope_theta": hf.get("rotary_emb_base", 10_000.0), **hf}, source))

  def rules(self, cfg: ModelConfig, param_paths: set[str]) -> list[tm.Rule]:
    D, H, Dh, F = cfg.embed_dim, cfg.num_heads, cfg.head_dim, cfg.hidden_dim
    rules = [
        tm.copy("token_embed/embedding", "embed_in.weight"),
        *tm.norm("final_norm", "final_layer_norm"),
    ]
    for i in range(cfg.num_layers):
      ours, theirs = f"block_{i}", f"layers.{i}"
      rules += [
          *_fused_qkv(f"{ours}/attn", f"{theirs}.attention.query_key_value", D, H, Dh),
          *tm.dense(f"{ours}/attn/out", f"{theirs}.attention.dense", (H, Dh, D), num_input_axes=2),
          *tm.dense(f"{ours}/mlp/wi", f"{theirs}.mlp.dense_h_to_4h", (D, F)),
          *tm.dense(f"{ours}/mlp/wo", f"{theirs}.mlp.dense_4h_to_h", (F, D)),
          *tm.norm(f"{ours}/attn_norm", f"{theirs}.input_layernorm"),
          *tm.norm(f"{ours}/mlp_norm", f"{theirs}.post_attention_layernorm"),
      ]
    if not cfg.tie_embeddings:
      rules.append(tm.linear("lm_head/kernel", "embed_out.weight", (D, cfg.vocab_size)))
    return rules

  def export_problem(self, cfg: ModelConfig) -> str | None:
    return mismatch(cfg, "GPT-NeoX", dict(DECODER_LAYOUT, positions="rope"))

  def exported_as(self, cfg: ModelConfig) -> ModelConfig:
    # Biases everywhere (zeros where this model has none); the output layer written out even
    # when tied, as GPT-NeoX checkpoints have it.
    return cfg.replace(use_bias=True, projection_biases="", tie_embeddings=False)

  def hf_config(self, cfg: ModelConfig, special_ids: dict[str, int | None]) -> dict[str, Any]:
    parameters = {**rope.hf_parameters(cfg), "partial_rotary_factor": 1.0}
    return dict(architectures=["GPTNeoXForCausalLM"],
                model_type="gpt_neox",
                vocab_size=cfg.vocab_size,
                hidden_size=cfg.embed_dim,
                num_hidden_layers=cfg.num_layers,
                num_attention_heads=cfg.num_heads,
                intermediate_size=cfg.hidden_dim,
                hidden_act={"gelu": "gelu_new", "gelu_exact": "gelu"}[cfg.mlp],
                max_position_embeddings=cfg.max_len,
                layer_norm_eps=cfg.norm_eps,
                use_parallel_residual=False,
                attention_bias=True,
                tie_word_embeddings=False,
                hidden_dropout=cfg.dropout,
                attention_dropout=0.0,
                rope_parameters=parameters,
                # transformers 4 reads these three keys.
                rotary_pct=1.0,
                rotary_emb_base=cfg.rope_theta,
                rope_scaling=None if cfg.rope_scaling == "none" else parameters,
                bos_token_id=special_ids.get("bos"),
                eos_token_id=special_ids.get("eos"),
                pad_token_id=special_ids.get("pad"))


def _fused_qkv(ours: str, theirs: str, D: int, H: int, Dh: int) -> list[tm.Rule]:
  """query_key_value [H (q | k | v) Dh, D] (torch.nn.Linear, per head) <-> query [D, H, Dh] and
  key_value [D, H, 2, Dh]; the bias [H 3 Dh] likewise, without the D axis."""

  def rule(param: str, tensor: str, kernel: bool) -> tm.Rule:
    lead = (D,) if kernel else ()

    def to_params(fused):
      fused = fused.T if kernel else fused
      qkv = fused.reshape(lead + (H, 3, Dh))
      return qkv[..., 0, :], qkv[..., 1:, :]

    def to_tensors(q, kv):
      fused = np.concatenate([q[..., None, :], kv], axis=-2).reshape(lead + (3 * H * Dh,))
      return (fused.T if kernel else fused,)

    return tm.Rule((f"{ours}/query/{param}", f"{ours}/key_value/{param}"), (f"{theirs}.{tensor}",),
                   to_params, to_tensors)

  return [rule("kernel", "weight", True), rule("bias", "bias", False)]
