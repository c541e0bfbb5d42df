"""GPT-2 (Radford et al. 2019): learned positions, pre-LayerNorm with biases, GELU (tanh),
fused query/key/value in one Conv1D, output tied to the token embedding."""

from typing import Any

import numpy as np

from lm.convert import tensor_map as tm
from lm.convert.family import Family, check, mismatch
from lm.models.config import ModelConfig

# Hugging Face activation names <-> config.model.mlp.
ACTIVATIONS = {"gelu_new": "gelu", "gelu_pytorch_tanh": "gelu", "gelu": "gelu_exact"}
# The decoder GPT-2 and GPT-NeoX share (ModelConfig field -> value or allowed values); they
# differ in positions: learned (GPT-2) or rotary (GPT-NeoX).
DECODER_LAYOUT = dict(norm="layernorm",
                      norm_position="pre",
                      mlp=("gelu", "gelu_exact"),
                      causal=True,
                      num_classes=0,
                      head_transform=False,
                      output_bias=False,
                      type_vocab_size=0,
                      attention_head_dim=0)


class GPT2(Family):
  model_types = ("gpt2",)
  base_prefix = "transformer."
  head_prefixes = ("lm_head.",)
  ignored_suffixes = (".attn.bias", ".attn.masked_bias")

  def model_fields(self, hf: dict[str, Any], tensor_names: set[str], source: str) -> dict:
    activation = hf.get("activation_function", "gelu_new")
    check(activation in ACTIVATIONS, source, "activation_function",
          f"{activation!r} is not supported (only {', '.join(ACTIVATIONS)})")
    for key in ("scale_attn_by_inverse_layer_idx", "add_cross_attention"):
      check(not hf.get(key), source, key, "is not supported")
    D = hf["n_embd"]
    return dict(vocab_size=hf["vocab_size"],
                num_layers=hf["n_layer"],
                num_heads=hf["n_head"],
                embed_dim=D,
                mlp_dim=hf.get("n_inner") or 4 * D,
                max_len=hf["n_positions"],
                positions="learned",
                norm="layernorm",
                norm_eps=hf.get("layer_norm_epsilon", 1e-5),
                mlp=ACTIVATIONS[activation],
                use_bias=True,
                tie_embeddings=hf.get("tie_word_embeddings", True),
                causal=True)

  def rules(self, cfg: ModelConfig, param_paths: set[str]) -> list[tm.Rule]:
    D, H, Dh, F = cfg.embed_dim, cfg.num_heads, cfg.head_dim, cfg.hidden_dim
    rules = [
        tm.copy("token_embed/embedding", "wte.weight"),
        tm.copy("position_embed/embedding", "wpe.weight"),
        *tm.norm("final_norm", "ln_f"),
    ]
    for i in range(cfg.num_layers):
      ours, theirs = f"block_{i}", f"h.{i}"
      rules += [
          *_fused_qkv(f"{ours}/attn", f"{theirs}.attn.c_attn", D, H, Dh),
          tm.conv1d(f"{ours}/attn/out/kernel", f"{theirs}.attn.c_proj.weight", (H, Dh, D), 2),
          tm.copy(f"{ours}/attn/out/bias", f"{theirs}.attn.c_proj.bias"),
          tm.conv1d(f"{ours}/mlp/wi/kernel", f"{theirs}.mlp.c_fc.weight", (D, F)),
          tm.copy(f"{ours}/mlp/wi/bias", f"{theirs}.mlp.c_fc.bias"),
          tm.conv1d(f"{ours}/mlp/wo/kernel", f"{theirs}.mlp.c_proj.weight", (F, D)),
          tm.copy(f"{ours}/mlp/wo/bias", f"{theirs}.mlp.c_proj.bias"),
          *tm.norm(f"{ours}/attn_norm", f"{theirs}.ln_1"),
          *tm.norm(f"{ours}/mlp_norm", f"{theirs}.ln_2"),
      ]
    if not cfg.tie_embeddings:
      rules.append(tm.linear("lm_head/kernel", "lm_head.weight", (D, cfg.vocab_size)))
    return rules

  def export_problem(self, cfg: ModelConfig) -> str | None:
    return mismatch(cfg, "GPT-2", dict(DECODER_LAYOUT, positions="learned"))

  def exported_as(self, cfg: ModelConfig) -> ModelConfig:
    return cfg.replace(use_bias=True, projection_biases="")

  def hf_config(self, cfg: ModelConfig, special_ids: dict[str, int | None]) -> dict[str, Any]:
    activation = {"gelu": "gelu_new", "gelu_exact": "gelu"}[cfg.mlp]
    return dict(architectures=["GPT2LMHeadModel"],
                model_type="gpt2",
                vocab_size=cfg.vocab_size,
                n_embd=cfg.embed_dim,
                n_layer=cfg.num_layers,
                n_head=cfg.num_heads,
                n_inner=cfg.hidden_dim,
                n_positions=cfg.max_len,
                activation_function=activation,
                layer_norm_epsilon=cfg.norm_eps,
                tie_word_embeddings=cfg.tie_embeddings,
                resid_pdrop=cfg.dropout,
                embd_pdrop=cfg.dropout,
                attn_pdrop=0.0,
                bos_token_id=special_ids.get("bos"),
                eos_token_id=special_ids.get("eos"))


def _fused_qkv(ours: str, theirs: str, D: int, H: int, Dh: int) -> list[tm.Rule]:
  """c_attn [D, 3 H Dh] (query | key | value) <-> query [D, H, Dh] and key_value [D, H, 2, Dh];
  the bias [3 H Dh] likewise, without the D axis."""

  def rule(param: str, tensor: str, lead: tuple[int, ...]) -> tm.Rule:

    def to_params(fused):
      q, k, v = np.split(fused.reshape(lead + (3, H, Dh)), 3, axis=-3)
      return q.reshape(lead + (H, Dh)), np.stack([k, v], axis=-2).reshape(lead + (H, 2, Dh))

    def to_tensors(q, kv):
      k, v = kv[..., 0, :], kv[..., 1, :]
      return (np.stack([q, k, v], axis=-3).reshape(lead + (3 * H * Dh,)),)

    return tm.Rule((f"{ours}/query/{param}", f"{ours}/key_value/{param}"), (f"{theirs}.{tensor}",),
                   to_params, to_tensors)

  return [rule("kernel", "weight", (D,)), rule("bias", "bias", ())]
