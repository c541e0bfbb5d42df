"""Llama-family decoders (Llama 1-3, Mistral, Qwen2): RoPE (with its scaling options), RMSNorm,
SwiGLU, grouped-query attention, an untied output layer; optional attention/MLP biases."""

from typing import Any

from lm.convert import rope as rope_settings
from lm.convert import tensor_map as tm
from lm.convert.family import Family, check, mismatch
from lm.models.config import ModelConfig

ATTENTION = "query,key_value,out"
MLP = "wi_gate,wi_up,wo"
QWEN2 = "query,key_value"


class Llama(Family):
  model_types = ("llama", "mistral", "qwen2")
  base_prefix = "model."
  head_prefixes = ("lm_head.",)
  ignored_suffixes = ("rotary_emb.inv_freq",)

  def model_fields(self, hf: dict[str, Any], tensor_names: set[str], source: str) -> dict:
    check(hf.get("hidden_act", "silu") == "silu", source, "hidden_act",
          f"{hf.get('hidden_act')!r} is not supported (only 'silu')")
    D, H = hf["hidden_size"], hf["num_attention_heads"]
    head_dim = hf.get("head_dim") or D // H
    biases = []
    if hf.get("attention_bias") or hf["model_type"] == "qwen2":
      biases.append(QWEN2 if hf["model_type"] == "qwen2" else ATTENTION)
    if hf.get("mlp_bias"):
      biases.append(MLP)
    max_len = hf.get("max_position_embeddings", 2048)
    window = hf.get("sliding_window")
    if window and hf.get("use_sliding_window", hf["model_type"] == "mistral"):
      # Within the window, sliding-window attention is plain causal attention.
      max_len = min(max_len, window)
    return dict(vocab_size=hf["vocab_size"],
                num_layers=hf["num_hidden_layers"],
                num_heads=H,
                num_kv_heads=hf.get("num_key_value_heads") or H,
                embed_dim=D,
                attention_head_dim=head_dim if head_dim != D // H or D % H else 0,
                mlp_dim=hf["intermediate_size"],
                max_len=max_len,
                positions="rope",
                norm="rmsnorm",
                norm_eps=hf.get("rms_norm_eps", 1e-6),
                mlp="swiglu",
                use_bias=False,
                projection_biases=",".join(biases),
                tie_embeddings=bool(hf.get("tie_word_embeddings", False)),
                causal=True,
                **rope_settings.model_fields(hf, source))

  def rules(self, cfg: ModelConfig, param_paths: set[str]) -> list[tm.Rule]:
    D, H, K, Dh, F = cfg.embed_dim, cfg.num_heads, cfg.kv_heads, cfg.head_dim, cfg.hidden_dim
    rules = [tm.copy("token_embed/embedding", "embed_tokens.weight"), *tm.norm("final_norm", "norm",
                                                                              bias=False)]
    for i in range(cfg.num_layers):
      ours, theirs = f"block_{i}", f"layers.{i}"
      attention = f"{theirs}.self_attn"
      kv_bias = cfg.has_bias("key_value")
      rules += [
          *tm.dense(f"{ours}/attn/query", f"{attention}.q_proj", (D, H, Dh), cfg.has_bias("query")),
          tm.key_value(f"{ours}/attn/key_value/kernel", f"{attention}.k_proj.weight",
                       f"{attention}.v_proj.weight", (D, K, 2, Dh), transpose=True),
          *([
              tm.key_value(f"{ours}/attn/key_value/bias", f"{attention}.k_proj.bias",
                           f"{attention}.v_proj.bias", (K, 2, Dh), transpose=False)
          ] if kv_bias else []),
          *tm.dense(f"{ours}/attn/out", f"{attention}.o_proj", (H, Dh, D), cfg.has_bias("out"),
                    num_input_axes=2),
          *tm.dense(f"{ours}/mlp/wi_gate", f"{theirs}.mlp.gate_proj", (D, F),
                    cfg.has_bias("wi_gate")),
          *tm.dense(f"{ours}/mlp/wi_up", f"{theirs}.mlp.up_proj", (D, F), cfg.has_bias("wi_up")),
          *tm.dense(f"{ours}/mlp/wo", f"{theirs}.mlp.down_proj", (F, D), cfg.has_bias("wo")),
          *tm.norm(f"{ours}/attn_norm", f"{theirs}.input_layernorm", bias=False),
          *tm.norm(f"{ours}/mlp_norm", f"{theirs}.post_attention_layernorm", bias=False),
      ]
    if not cfg.tie_embeddings:
      rules.append(tm.linear("lm_head/kernel", "lm_head.weight", (D, cfg.vocab_size)))
    return rules

  def export_problem(self, cfg: ModelConfig) -> str | None:
    problem = mismatch(
        cfg, "Llama",
        dict(positions="rope",
             norm="rmsnorm",
             norm_position="pre",
             mlp="swiglu",
             causal=True,
             use_bias=False,
             num_classes=0,
             head_transform=False,
             output_bias=False,
             type_vocab_size=0),
        grouped_query=True)
    if problem:
      return problem
    if _biases(cfg) not in (set(), _names(ATTENTION), _names(MLP), _names(ATTENTION, MLP),
                            _names(QWEN2)):
      return (f"config.model.projection_biases={cfg.projection_biases!r} (Llama has biases on "
              f"all attention projections, all MLP projections, both or none; Qwen2 on "
              f"{QWEN2})")
    return None

  def hf_config(self, cfg: ModelConfig, special_ids: dict[str, int | None]) -> dict[str, Any]:
    rope = rope_settings.hf_parameters(cfg)
    qwen2 = _biases(cfg) == _names(QWEN2)
    return dict(architectures=["Qwen2ForCausalLM" if qwen2 else "LlamaForCausalLM"],
                model_type="qwen2" if qwen2 else "llama",
                vocab_size=cfg.vocab_size,
                hidden_size=cfg.embed_dim,
                num_hidden_layers=cfg.num_layers,
                num_attention_heads=cfg.num_heads,
                num_key_value_heads=cfg.kv_heads,
                head_dim=cfg.head_dim,
                intermediate_size=cfg.hidden_dim,
                max_position_embeddings=cfg.max_len,
                rms_norm_eps=cfg.norm_eps,
                hidden_act="silu",
                tie_word_embeddings=cfg.tie_embeddings,
                attention_bias=_names(ATTENTION) <= _biases(cfg),
                mlp_bias=_names(MLP) <= _biases(cfg),
                rope_parameters=rope,
                rope_theta=cfg.rope_theta,
                rope_scaling=None if cfg.rope_scaling == "none" else rope,
                bos_token_id=special_ids.get("bos"),
                eos_token_id=special_ids.get("eos"),
                pad_token_id=special_ids.get("pad"))


def _names(*comma_separated: str) -> set[str]:
  return {name for names in comma_separated for name in names.split(",")}


def _biases(cfg: ModelConfig) -> set[str]:
  return _names(cfg.projection_biases.replace(" ", "")) - {""}
