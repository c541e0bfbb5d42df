"""The model's hyperparameters as a frozen dataclass, and named presets."""

import dataclasses
import math
from typing import Any

import numpy as np

from lm.errors import UserError

TFIDF = "tfidf"  # The scikit-learn baseline (lm/models/tfidf.py): fitted, not trained.
# lm.models.architecture.make_model; and TFIDF.
ARCHITECTURES = ("transformer", "lstm", "gru", "encoder_decoder", TFIDF)
NORMS = ("layernorm", "rmsnorm")
MLPS = ("gelu", "gelu_exact", "relu", "silu", "swiglu", "geglu")
GATED_MLPS = ("swiglu", "geglu")  # act(x W_gate) * (x W_up), then W_out (Shazeer 2020).
POSITIONS = ("learned", "rope", "sinusoidal", "relative")
ATTENTIONS = ("auto", "xla", "cudnn", "splash")  # lm.models.attention_kernels
REMATS = ("none", "full", "save_matmuls")
POOLINGS = ("cls", "mean", "last", "none")
NORM_POSITIONS = ("pre", "post")
ROPE_SCALINGS = ("none", "linear", "llama3", "yarn")
PROJECTIONS = ("query", "key_value", "out", "wi", "wi_gate", "wi_up", "wo")
# Set by the task (classifier head, LoRA fine-tuning), not in config.model.
TASK_FIELDS = ("vocab_size", "num_classes", "pooling", "lora_rank", "lora_alpha", "lora_dropout",
               "lora_targets", "cache_len", "transfer_width")
DTYPES = ("float32", "bfloat16", "float16")
# A classifier sows its pooled vector (projected to transfer_width, if set) under this name in
# the 'intermediates' collection: distillation's hidden-state transfer reads it.
TRANSFER = "transfer"
# Layers used in training only (the map of hidden-state transfer), left out for inference.
TRAINING_ONLY_PARAMS = ("transfer_projection",)


def is_tfidf(config: Any) -> bool:
  """Whether a config (a ConfigDict, or a run's saved config.json as a dict) is a TF-IDF
  baseline's."""
  return config["model"].get("architecture") == TFIDF


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """Architecture of the Transformer (see `lm.models.transformer`): a decoder or an encoder,
  with a language-model head or a classifier head; or of the LSTM language model
  (`lm.models.lstm`), which reads num_layers, embed_dim, lstm_hidden_dim, dropout,
  tie_embeddings, init_std, the dtypes and max_len (the longest training window)."""
  vocab_size: int
  # 'transformer'; 'lstm' or 'gru': recurrent networks (lm.models.lstm: language models,
  # classifiers, taggers); 'encoder_decoder'; 'tfidf' (a scikit-learn classifier).
  architecture: str = "transformer"
  num_layers: int = 4
  num_heads: int = 4
  # Key/value heads for grouped-query attention; 0 means num_heads (plain multi-head).
  num_kv_heads: int = 0
  embed_dim: int = 128
  # Width of one attention head; 0 means embed_dim / num_heads.
  attention_head_dim: int = 0
  # Hidden width of the MLP; 0 means 4 * embed_dim (GELU) or 8/3 * embed_dim rounded (SwiGLU).
  mlp_dim: int = 0
  # LSTM units per layer; 0 means embed_dim. With tie_embeddings the last layer has embed_dim
  # units, so that its output meets the tied embedding (AWD-LSTM, Merity et al. 2017).
  lstm_hidden_dim: int = 0
  # Recurrent networks: a second recurrence per layer reading each row backwards, states
  # concatenated (needs causal=False: for classifiers and taggers, not language models).
  bidirectional: bool = False
  # Longest sequence the model accepts (size of the learned position table, RoPE cache).
  max_len: int = 64
  # 'learned' (a table), 'rope' (rotary), 'sinusoidal' (fixed, Vaswani et al. 2017; Marian) or
  # 'relative' (T5: a learned bias per head and bucket of key-query distance added to the
  # attention scores, relative_buckets buckets, logarithmic up to relative_max_distance).
  positions: str = "learned"
  relative_buckets: int = 32
  relative_max_distance: int = 128
  # architecture='encoder_decoder' (lm.models.encoder_decoder): num_layers encoder blocks and
  # num_decoder_layers decoder blocks (0 = num_layers).
  num_decoder_layers: int = 0
  # Token embeddings scaled by sqrt(embed_dim) (Vaswani et al. 2017, Marian, fairseq).
  scale_embeddings: bool = False
  # Attention scores scaled by 1/sqrt(head_dim); False: unscaled (T5 folds it into the init).
  scale_attention: bool = True
  # Under norm_position='post': a norm on the embeddings (BERT, BART); Marian has none.
  embed_norm: bool = True
  # Final hidden states scaled by embed_dim^-0.5 before the tied output layer (T5 v1.0).
  scale_tied_output: bool = False
  rope_theta: float = 10_000.0
  # Context extension of rotary positions (as in Hugging Face's rope_parameters): 'none';
  # 'linear' (frequencies / rope_factor); 'llama3' (Llama 3.1: long wavelengths / rope_factor,
  # short ones kept, a smooth ramp between, set by rope_low/high_freq_factor and
  # rope_original_max_len); 'yarn' (Peng et al. 2023: a ramp between interpolation and
  # extrapolation over rope_beta_fast..rope_beta_slow rotations, and cos/sin scaled by
  # rope_attention_factor, 0 = 0.1 ln(rope_factor) + 1).
  rope_scaling: str = "none"
  rope_factor: float = 1.0
  rope_original_max_len: int = 0
  rope_low_freq_factor: float = 1.0
  rope_high_freq_factor: float = 4.0
  rope_beta_fast: float = 32.0
  rope_beta_slow: float = 1.0
  rope_attention_factor: float = 0.0
  norm: str = "layernorm"
  norm_eps: float = 1e-5
  # 'pre' (GPT-2, Llama): x + f(Norm(x)) and a final norm; 'post' (BERT): Norm(x + f(x)), a
  # norm on the embeddings (embed_norm) and none at the end.
  norm_position: str = "pre"
  # 'gelu' (tanh approximation), 'gelu_exact', 'relu' (T5 v1.0), 'silu' (Marian's swish), or
  # gated: 'swiglu' (Llama), 'geglu' (T5 v1.1, tanh GELU).
  mlp: str = "gelu"
  # Biases on every projection and norm (GPT-2, BERT) ...
  use_bias: bool = False
  # ... or only on these comma-separated projections (of PROJECTIONS; Qwen2: query,key_value).
  projection_biases: str = ""
  # Token-type (segment A/B) embeddings added to the input, as BERT; 0 = none.
  type_vocab_size: int = 0
  tie_embeddings: bool = True
  # BERT's masked-LM head: a dense layer, the MLP's activation and a norm before the vocabulary
  # projection (head_transform), and a bias on the vocabulary logits (output_bias).
  head_transform: bool = False
  output_bias: bool = False
  dropout: float = 0.0
  # Standard deviation of the normal initializer (GPT-2); residual outputs get std / sqrt(2 L).
  init_std: float = 0.02
  # Computation dtype; parameters stay in param_dtype (mixed precision: bfloat16 / float32).
  dtype: str = "float32"
  param_dtype: str = "float32"
  # Attention implementation: 'auto' (cuDNN on GPU in bf16/fp16, Pallas splash on TPU, XLA
  # elsewhere), or one of them by name: 'xla', 'cudnn', 'splash'.
  attention: str = "auto"
  # Activation rematerialization of each block in the backward pass: 'none' (keep everything),
  # 'full' (keep only block inputs, recompute the rest) or 'save_matmuls' (keep matmul outputs,
  # recompute the cheap elementwise work).
  remat: str = "none"
  # One block traced once and scanned over stacked layer parameters (fast compiles for deep
  # models; parameters live under 'blocks' with a leading layer axis) instead of L copies.
  scan_layers: bool = False
  # True: decoder (a token sees only the past: GPT, causal LM); False: encoder (a token sees
  # the whole sequence: BERT, masked LM).
  causal: bool = True
  # The head: 0 = logits over the vocabulary at every position; C > 0 = a C-way classifier on
  # one pooled vector per sequence, pooled as `pooling` says: 'cls' (the first token, an
  # encoder's [CLS]), 'mean' (of the non-padding tokens) or 'last' (the last non-padding token,
  # which a decoder has read the whole text at); or 'none': no pooling, a C-way classifier at
  # every position (token classification: logits [B, T, C]).
  num_classes: int = 0
  pooling: str = "cls"
  # BERT's pooler: a dense layer and tanh on the pooled vector, before the classifier.
  pooler: bool = False
  # Hidden-state transfer in distillation (config.distill.hidden_weight): a training-only dense
  # layer `transfer_projection` maps a classifier's pooled vector to the teacher's width; 0 =
  # none (the widths are equal, or no transfer). The vector is sown as TRANSFER.
  transfer_width: int = 0
  # LoRA adapters of rank lora_rank (0 = none) on the comma-separated projections lora_targets
  # (of PROJECTIONS), scaled by lora_alpha / lora_rank, with dropout on their input.
  lora_rank: int = 0
  lora_alpha: float = 16.0
  lora_dropout: float = 0.0
  lora_targets: str = "query,key_value,out"
  # Slots of the decoding KV cache (0 = max_len): set by the encoder–decoder's decoding to the
  # tokens it feeds, so that each step attends to, and beam search reorders, only those.
  cache_len: int = 0

  def replace(self, **changes: Any) -> "ModelConfig":
    return dataclasses.replace(self, **changes)

  @property
  def kv_heads(self) -> int:
    return self.num_kv_heads or self.num_heads

  @property
  def lora_target_names(self) -> tuple[str, ...]:
    return _names(self.lora_targets)

  def has_bias(self, projection: str) -> bool:
    return self.use_bias or projection in _names(self.projection_biases)

  @property
  def decoder_layers(self) -> int:
    return self.num_decoder_layers or self.num_layers

  @property
  def cache_slots(self) -> int:
    return self.cache_len or self.max_len

  @property
  def gated_mlp(self) -> bool:
    return self.mlp in GATED_MLPS

  @property
  def head_dim(self) -> int:
    return self.attention_head_dim or self.embed_dim // self.num_heads

  @property
  def hidden_dim(self) -> int:
    if self.mlp_dim:
      return self.mlp_dim
    if self.gated_mlp:
      return 64 * ((8 * self.embed_dim // 3 + 63) // 64)
    return 4 * self.embed_dim

  def validate(self, key: str = "config.model") -> "ModelConfig":
    """Raises UserError naming the offending config key; returns self."""

    def check(ok: bool, field: str, message: str):
      if not ok:
        raise UserError(f"{key}.{field}: {message}")

    for f in dataclasses.fields(self):  # Types first: the checks below compare numbers.
      value = getattr(self, f.name)
      check(_has_type(value, f.type), f.name, f"must be {_TYPE_NAMES[f.type]}, got {value!r}")
    for field in ("vocab_size", "num_layers", "num_heads", "embed_dim", "max_len"):
      check(
          int(getattr(self, field)) > 0, field,
          f"must be a positive integer, got {getattr(self, field)!r}")
    check(self.attention_head_dim or self.embed_dim % self.num_heads == 0, "num_heads",
          f"{self.num_heads} heads do not divide embed_dim={self.embed_dim}")
    check(self.num_heads % self.kv_heads == 0 and self.kv_heads > 0, "num_kv_heads",
          f"{self.kv_heads} key/value heads do not divide num_heads={self.num_heads}")
    check(self.positions != "rope" or self.head_dim % 2 == 0, "positions",
          f"rotary positions need an even head dimension, got {self.head_dim}")
    check(0.0 <= self.dropout < 1.0, "dropout", f"must be in [0, 1), got {self.dropout}")
    for field, allowed in (("architecture", ARCHITECTURES), ("norm", NORMS), ("mlp", MLPS),
                           ("positions", POSITIONS), ("attention", ATTENTIONS),
                           ("remat", REMATS), ("dtype", DTYPES),
                           ("param_dtype", DTYPES), ("pooling", POOLINGS),
                           ("norm_position", NORM_POSITIONS), ("rope_scaling", ROPE_SCALINGS)):
      check(
          getattr(self, field) in allowed, field,
          f"unknown value {getattr(self, field)!r}; choose one of {', '.join(allowed)}")
    check(self.num_classes >= 0, "num_classes", f"must be >= 0, got {self.num_classes}")
    check(self.lora_rank >= 0, "lora_rank", f"must be >= 0, got {self.lora_rank}")
    check(self.transfer_width >= 0, "transfer_width", f"must be >= 0, got {self.transfer_width}")
    for field in ("lora_targets", "projection_biases"):
      unknown = sorted(set(_names(getattr(self, field))) - set(PROJECTIONS))
      check(not unknown, field,
            f"unknown projection(s) {', '.join(unknown)}; choose from {', '.join(PROJECTIONS)}")
    for field in ("num_kv_heads", "attention_head_dim", "mlp_dim", "rope_original_max_len",
                  "type_vocab_size", "init_std", "rope_attention_factor", "lstm_hidden_dim",
                  "num_decoder_layers", "relative_buckets", "relative_max_distance",
                  "cache_len"):
      check(getattr(self, field) >= 0, field, f"must be >= 0, got {getattr(self, field)}")
    for field in ("rope_theta", "rope_factor", "rope_low_freq_factor", "rope_high_freq_factor",
                  "rope_beta_fast", "rope_beta_slow", "norm_eps"):
      check(getattr(self, field) > 0, field, f"must be > 0, got {getattr(self, field)}")
    check(0.0 <= self.lora_dropout < 1.0, "lora_dropout",
          f"must be in [0, 1), got {self.lora_dropout}")
    check(
        self.rope_scaling not in ("llama3", "yarn") or self.rope_original_max_len > 0,
        "rope_original_max_len", f"rope_scaling={self.rope_scaling!r} needs the original "
        "context length (> 0)")
    check(not self.head_transform or not self.gated_mlp, "head_transform",
          f"the masked-LM head transform uses a GELU activation; mlp={self.mlp!r} is gated")
    check(self.positions != "sinusoidal" or self.embed_dim % 2 == 0, "positions",
          f"sinusoidal positions need an even embed_dim, got {self.embed_dim}")
    check(self.positions not in ("sinusoidal", "relative") or
          self.architecture == "encoder_decoder", "positions",
          f"{self.positions!r} positions are for architecture='encoder_decoder'; the "
          "Transformer has 'learned' and 'rope'")
    check(self.positions != "relative" or self.relative_buckets >= 4, "relative_buckets",
          f"relative positions need at least 4 buckets, got {self.relative_buckets}")
    if self.architecture == "encoder_decoder":
      check(self.positions != "rope", "positions", "architecture='encoder_decoder' has "
            "'learned' or 'sinusoidal' positions")
      for field, unsupported in (("num_classes", self.num_classes),
                                 ("type_vocab_size", self.type_vocab_size),
                                 ("scan_layers", self.scan_layers),
                                 ("head_transform", self.head_transform)):
        check(not unsupported, field, f"{getattr(self, field)!r} is not supported by "
              f"architecture='encoder_decoder' (a sequence-to-sequence model)")
    if self.architecture in ("lstm", "gru"):
      check(self.bidirectional != self.causal, "bidirectional",
            f"a {'bidirectional' if self.bidirectional else 'unidirectional'} recurrent network "
            f"needs causal={not self.bidirectional}, got causal={self.causal}")
      for field, unsupported in (("lora_rank", self.lora_rank),
                                 ("transfer_width", self.transfer_width),
                                 ("type_vocab_size", self.type_vocab_size),
                                 ("head_transform", self.head_transform),
                                 ("output_bias", self.output_bias)):
        check(not unsupported, field, f"{getattr(self, field)!r} is not supported by "
              f"architecture={self.architecture!r} (a recurrent network); use the Transformer")
    else:
      check(not self.bidirectional, "bidirectional", "is for architecture='lstm' or 'gru'")
    return self


_TYPE_NAMES = {int: "an integer", float: "a finite number", str: "a string", bool: "True or False"}


def _has_type(value: Any, kind: type) -> bool:
  if kind is bool:
    return isinstance(value, (bool, np.bool_))
  if isinstance(value, (bool, np.bool_)):
    return False
  if kind is int:
    return isinstance(value, (int, np.integer))
  if kind is float:
    return isinstance(value, (int, float, np.integer, np.floating)) and math.isfinite(value)
  return isinstance(value, kind)


def _names(comma_separated: str) -> tuple[str, ...]:
  return tuple(t.strip() for t in comma_separated.split(",") if t.strip())


# Presets as data; `preset_config(name)` turns one into the config.model section of an experiment.
PRESETS: dict[str, dict[str, Any]] = {
    # nanoGPT's CPU recipe for character-level Shakespeare.
    "tiny": dict(num_layers=4, num_heads=4, embed_dim=128, max_len=64),
    # ~10M parameters (nanoGPT's default Shakespeare-char model: 10.65M at vocab 65).
    "small": dict(num_layers=6, num_heads=6, embed_dim=384, max_len=256, dropout=0.2),
    # GPT-2 small, 124M parameters at vocab 50257.
    "gpt2-124m": dict(num_layers=12, num_heads=12, embed_dim=768, max_len=1024),
}


def preset_fields(name: str) -> dict[str, Any]:
  """Every ModelConfig field except the TASK_FIELDS, with the preset's values over the
  defaults."""
  if name not in PRESETS:
    raise UserError(f"unknown model preset {name!r}; choose one of {', '.join(PRESETS)}")
  fields = {f.name: f.default for f in dataclasses.fields(ModelConfig) if f.name not in TASK_FIELDS}
  fields.update(PRESETS[name])
  return fields


def model_config_from(model_cfg: Any,
                      vocab_size: int,
                      key: str = "config.model",
                      **task_fields: Any) -> ModelConfig:
  """Builds a validated ModelConfig from the config.model section, the tokenizer's vocab and
  the task's fields (num_classes, pooling, lora_*)."""
  fields = dict(model_cfg)
  known = {f.name for f in dataclasses.fields(ModelConfig)} - set(TASK_FIELDS)
  unknown = sorted(set(fields) - known)
  if unknown:
    raise UserError(f"{key}: unknown key(s) {', '.join(unknown)}")
  for name in set(fields) & set(task_fields):  # A task's input (token types) over the default.
    if fields[name] not in (0, task_fields[name]):
      raise UserError(f"{key}.{name}={fields[name]!r}, but the task needs {name}="
                      f"{task_fields[name]!r}")
    del fields[name]
  return ModelConfig(vocab_size=vocab_size, **fields, **task_fields).validate(key)
