"""Rotary-position settings <-> Hugging Face `rope_parameters` (and the older `rope_theta` +
`rope_scaling` keys), shared by the rotary families (Llama, GPT-NeoX)."""

from typing import Any

from lm.convert.family import check
from lm.models.config import ModelConfig

# Hugging Face rope_type -> config.model.rope_scaling.
ROPE_TYPES = {"default": "none", "linear": "linear", "llama3": "llama3", "yarn": "yarn"}


def hf_parameters(cfg: ModelConfig) -> dict[str, Any]:
  """The `rope_parameters` of `cfg` (rotary on the whole head)."""
  rope = {"rope_type": {v: k for k, v in ROPE_TYPES.items()}[cfg.rope_scaling],
          "rope_theta": cfg.rope_theta}
  if cfg.rope_scaling != "none":
    rope["factor"] = cfg.rope_factor
  if cfg.rope_scaling in ("llama3", "yarn"):
    rope["original_max_position_embeddings"] = cfg.rope_original_max_len
  if cfg.rope_scaling == "llama3":
    rope.update(low_freq_factor=cfg.rope_low_freq_factor,
                high_freq_factor=cfg.rope_high_freq_factor)
  if cfg.rope_scaling == "yarn":
    rope.update(beta_fast=cfg.rope_beta_fast, beta_slow=cfg.rope_beta_slow)
    if cfg.rope_attention_factor:
      rope["attention_factor"] = cfg.rope_attention_factor
  return rope


def model_fields(hf: dict[str, Any], source: str) -> dict[str, Any]:
  """config.model rope_* fields from `rope_parameters` (transformers 5) or the older
  `rope_theta` + `rope_scaling` keys."""
  rope = dict(hf.get("rope_parameters") or hf.get("rope_scaling") or {})
  key = "rope_parameters" if hf.get("rope_parameters") else "rope_scaling"
  rope_type = rope.get("rope_type", rope.get("type", "default"))
  check(rope_type in ROPE_TYPES, source, key,
        f"rope_type {rope_type!r} is not supported (only {', '.join(ROPE_TYPES)})")
  check(rope.get("partial_rotary_factor", 1.0) == 1.0, source, key,
        "partial rotary embeddings are not supported")
  check(rope.get("truncate", True), source, key, "YaRN without truncation is not supported")
  check(not (rope.get("mscale") or rope.get("mscale_all_dim")), source, key,
        "YaRN's mscale options are not supported")
  fields = dict(rope_theta=float(rope.get("rope_theta", hf.get("rope_theta", 10_000.0))),
                rope_scaling=ROPE_TYPES[rope_type])
  if rope_type == "default":
    return fields
  fields["rope_factor"] = float(rope["factor"])
  original = rope.get("original_max_position_embeddings")
  if rope_type in ("llama3", "yarn"):
    check(original is not None, source, key, "original_max_position_embeddings is missing")
    fields["rope_original_max_len"] = int(original)
  if rope_type == "llama3":
    fields.update(rope_low_freq_factor=float(rope["low_freq_factor"]),
                  rope_high_freq_factor=float(rope["high_freq_factor"]))
  if rope_type == "yarn":
    fields.update(rope_beta_fast=float(rope.get("beta_fast") or 32),
                  rope_beta_slow=float(rope.get("beta_slow") or 1),
                  rope_attention_factor=float(rope.get("attention_factor") or 0.0))
  return fields
