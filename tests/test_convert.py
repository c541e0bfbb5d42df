"""lm.convert: logits of imported models equal transformers' (PyTorch, fp32) within 1e-4, and
export -> transformers gives them back."""

import json
import os
import subprocess
import sys

import jax.numpy as jnp
import numpy as np
import pytest
import tokenizers
import torch
import transformers
from tokenizers import models, pre_tokenizers

from lm.convert import checkpoint_files
from lm.convert.exporter import export_hf
from lm.convert.importer import import_hf
from lm.errors import UserError
from lm.models.transformer import Transformer
from lm.training import checkpoints

TOLERANCE = 1e-4
VOCAB = 67  # Odd on purpose; the tokenizer below has fewer tokens than the model has rows.
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "<s>", "</s>"]


def write_tokenizer(directory) -> None:
  """A small word-level tokenizer.json (fewer tokens than VOCAB) with BERT and GPT specials."""
  words = [f"w{i}" for i in range(40)]
  vocab = {token: i for i, token in enumerate(SPECIALS + words)}
  tokenizer = tokenizers.Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
  tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
  tokenizer.add_special_tokens(SPECIALS)
  tokenizer.save(os.path.join(directory, "tokenizer.json"))
  config = dict(pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]",
                mask_token="[MASK]", bos_token="<s>", eos_token="</s>")
  with open(os.path.join(directory, "tokenizer_config.json"), "w") as f:
    json.dump(config, f)


def randomized(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
  """Every weight drawn afresh (norm scales and biases too), so each one matters."""
  generator = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for name, param in model.named_parameters():
      if name.endswith("weight") and param.ndim == 1:  # Norm scales around 1.
        param.copy_(1 + 0.2 * torch.randn(param.shape, generator=generator))
      else:
        param.copy_(0.15 * torch.randn(param.shape, generator=generator))
  return model.eval()


def save_hf(model: torch.nn.Module, directory) -> str:
  model.save_pretrained(directory, safe_serialization=True)
  write_tokenizer(directory)
  return str(directory)


def our_logits(workdir, tokens_BxT: np.ndarray, mask_BxT: np.ndarray | None = None,
               hidden: bool = False) -> np.ndarray:
  cfg, params, _ = checkpoints.load_for_inference(str(workdir))
  segments = None if mask_BxT is None else jnp.asarray(mask_BxT, jnp.int32)
  out = Transformer(cfg).apply({"params": params},
                               jnp.asarray(tokens_BxT),
                               segment_ids_BxT=segments,
                               return_hidden=hidden)
  return np.asarray(out)


def their_logits(model, tokens_BxT: np.ndarray, mask_BxT: np.ndarray | None = None) -> np.ndarray:
  kwargs = {} if mask_BxT is None else {"attention_mask": torch.tensor(mask_BxT)}
  with torch.no_grad():
    return model(torch.tensor(tokens_BxT), **kwargs).logits.numpy()


def tokens(batch: int = 2, length: int = 11, seed: int = 0) -> np.ndarray:
  return np.random.default_rng(seed).integers(0, VOCAB, (batch, length)).astype(np.int64)


DECODERS = {
    "gpt2": lambda: transformers.GPT2LMHeadModel(
        transformers.GPT2Config(vocab_size=VOCAB, n_embd=48, n_layer=2, n_head=3, n_positions=32)),
    "gpt2_untied_erf": lambda: transformers.GPT2LMHeadModel(
        transformers.GPT2Config(vocab_size=VOCAB, n_embd=40, n_layer=2, n_head=5, n_inner=72,
                                n_positions=24, activation_function="gelu",
                                tie_word_embeddings=False)),
    "llama_gqa": lambda: transformers.LlamaForCausalLM(
        transformers.LlamaConfig(vocab_size=VOCAB, hidden_size=48, num_hidden_layers=2,
                                 num_attention_heads=6, num_key_value_heads=2,
                                 intermediate_size=72, max_position_embeddings=64)),
    "llama_mqa_head_dim_tied": lambda: transformers.LlamaForCausalLM(
        transformers.LlamaConfig(vocab_size=VOCAB, hidden_size=36, num_hidden_layers=2,
                                 num_attention_heads=3, num_key_value_heads=1, head_dim=10,
                                 intermediate_size=50, tie_word_embeddings=True,
                                 attention_bias=True, mlp_bias=True, rms_norm_eps=1e-5)),
    "llama3_rope": lambda: transformers.LlamaForCausalLM(
        transformers.LlamaConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=1,
                                 num_attention_heads=2, num_key_value_heads=1,
                                 intermediate_size=40, rope_theta=500.0,
                                 rope_scaling=dict(rope_type="llama3", factor=8.0,
                                                   low_freq_factor=1.0, high_freq_factor=4.0,
                                                   original_max_position_embeddings=8))),
    "linear_rope": lambda: transformers.LlamaForCausalLM(
        transformers.LlamaConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=1,
                                 num_attention_heads=2, intermediate_size=40,
                                 rope_scaling=dict(rope_type="linear", factor=3.0))),
    "yarn_rope": lambda: transformers.LlamaForCausalLM(
        transformers.LlamaConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=1,
                                 num_attention_heads=2, intermediate_size=40, rope_theta=100.0,
                                 max_position_embeddings=64,
                                 rope_scaling=dict(rope_type="yarn", factor=4.0,
                                                   original_max_position_embeddings=16))),
    "mistral": lambda: transformers.MistralForCausalLM(
        transformers.MistralConfig(vocab_size=VOCAB, hidden_size=48, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2,
                                   intermediate_size=64, sliding_window=16)),
    "gpt_neox": lambda: transformers.GPTNeoXForCausalLM(
        transformers.GPTNeoXConfig(vocab_size=VOCAB, hidden_size=48, num_hidden_layers=2,
                                   num_attention_heads=3, intermediate_size=72,
                                   max_position_embeddings=32, use_parallel_residual=False,
                                   rotary_pct=1.0, rotary_emb_base=500.0, hidden_act="gelu_new")),
    "gpt_neox_linear_rope": lambda: transformers.GPTNeoXForCausalLM(
        transformers.GPTNeoXConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=1,
                                   num_attention_heads=2, intermediate_size=40,
                                   use_parallel_residual=False, rotary_pct=1.0,
                                   rope_scaling=dict(rope_type="linear", factor=2.0))),
    "qwen2": lambda: transformers.Qwen2ForCausalLM(
        transformers.Qwen2Config(vocab_size=VOCAB, hidden_size=48, num_hidden_layers=2,
                                 num_attention_heads=4, num_key_value_heads=2,
                                 intermediate_size=64)),
}


@pytest.mark.parametrize("name", sorted(DECODERS))
def test_decoder_logits_match_transformers_and_round_trip(name, tmp_path):
  model = randomized(DECODERS[name]())
  source = save_hf(model, tmp_path / "hf")
  import_hf(source, str(tmp_path / "run"))
  x = tokens()
  expected = their_logits(model, x)
  np.testing.assert_allclose(our_logits(tmp_path / "run", x), expected, atol=TOLERANCE, rtol=0)

  export_hf(str(tmp_path / "run"), str(tmp_path / "back"))
  reloaded = transformers.AutoModelForCausalLM.from_pretrained(str(tmp_path / "back")).eval()
  np.testing.assert_allclose(their_logits(reloaded, x), expected, atol=TOLERANCE, rtol=0)


def bert_config(**overrides) -> transformers.BertConfig:
  fields = dict(vocab_size=VOCAB, hidden_size=48, num_hidden_layers=2, num_attention_heads=3,
                intermediate_size=70, max_position_embeddings=40)
  return transformers.BertConfig(**{**fields, **overrides})


def test_bert_masked_lm_with_padding_matches_and_round_trips(tmp_path):
  model = randomized(transformers.BertForMaskedLM(bert_config()))
  source = save_hf(model, tmp_path / "hf")
  import_hf(source, str(tmp_path / "run"))
  x = tokens(batch=3, length=9)
  mask = np.ones_like(x)
  mask[1, 6:] = 0  # Padding: only real positions are compared.
  expected = their_logits(model, x, mask)
  ours = our_logits(tmp_path / "run", x, mask)
  real = mask.astype(bool)
  np.testing.assert_allclose(ours[real], expected[real], atol=TOLERANCE, rtol=0)

  export_hf(str(tmp_path / "run"), str(tmp_path / "back"))
  reloaded = transformers.AutoModelForMaskedLM.from_pretrained(str(tmp_path / "back")).eval()
  np.testing.assert_allclose(their_logits(reloaded, x, mask)[real], expected[real],
                             atol=TOLERANCE, rtol=0)


def test_bare_bert_hidden_states_match_and_heads_start_fresh(tmp_path):
  model = randomized(transformers.BertModel(bert_config(hidden_act="gelu_new")))
  source = save_hf(model, tmp_path / "hf")
  import_hf(source, str(tmp_path / "run"))
  x = tokens(length=7)
  with torch.no_grad():
    expected = model(torch.tensor(x)).last_hidden_state.numpy()
  np.testing.assert_allclose(our_logits(tmp_path / "run", x, hidden=True), expected,
                             atol=TOLERANCE, rtol=0)
  _, params, _ = checkpoints.load_for_inference(str(tmp_path / "run"))
  np.testing.assert_array_equal(params["pooler"]["kernel"],
                                model.pooler.dense.weight.detach().numpy().T)
  np.testing.assert_array_equal(params["head_norm"]["scale"], np.ones(48))  # Fresh MLM head.


def test_pytorch_bin_checkpoint_imports(tmp_path):
  model = randomized(DECODERS["gpt2"]())
  directory = tmp_path / "hf"
  model.config.save_pretrained(directory)
  torch.save(model.state_dict(), directory / "pytorch_model.bin")
  write_tokenizer(directory)
  assert (directory / "pytorch_model.bin").exists()
  import_hf(str(directory), str(tmp_path / "run"))
  x = tokens()
  np.testing.assert_allclose(our_logits(tmp_path / "run", x), their_logits(model, x),
                             atol=TOLERANCE, rtol=0)


def test_our_own_model_exports_as_gpt2_with_zero_biases(tmp_path):
  """A model trained here (no biases, learned positions) loads in transformers as GPT-2."""
  model = randomized(DECODERS["gpt2"]())
  source = save_hf(model, tmp_path / "hf")
  import_hf(source, str(tmp_path / "run"))
  cfg, params, _ = checkpoints.load_for_inference(str(tmp_path / "run"))
  assert cfg.use_bias  # Imported GPT-2 has biases; a re-export must keep them exactly.
  export_hf(str(tmp_path / "run"), str(tmp_path / "back"))
  tensors = checkpoint_files.read_hf_tensors(str(tmp_path / "back"))
  np.testing.assert_array_equal(tensors["transformer.h.0.attn.c_attn.bias"],
                                model.transformer.h[0].attn.c_attn.bias.detach().numpy())


def test_unsupported_architecture_is_named(tmp_path):
  model = transformers.OPTForCausalLM(
      transformers.OPTConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=1,
                             num_attention_heads=2, ffn_dim=40, word_embed_proj_dim=32))
  source = save_hf(model, tmp_path / "hf")
  with pytest.raises(UserError, match="model_type 'opt' is not supported"):
    import_hf(source, str(tmp_path / "run"))
  assert not (tmp_path / "run").exists()


def test_parallel_residual_gpt_neox_is_refused(tmp_path):
  model = transformers.GPTNeoXForCausalLM(
      transformers.GPTNeoXConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=1,
                                 num_attention_heads=2, intermediate_size=40))  # Pythia-like.
  source = save_hf(model, tmp_path / "hf")
  with pytest.raises(UserError, match="use_parallel_residual"):
    import_hf(source, str(tmp_path / "run"))


def test_shape_mismatch_names_the_tensor(tmp_path):
  source = save_hf(randomized(DECODERS["llama_gqa"]()), tmp_path / "hf")
  config_path = tmp_path / "hf" / "config.json"
  config = json.loads(config_path.read_text())
  config["intermediate_size"] = 80  # The weights say 72.
  config_path.write_text(json.dumps(config))
  with pytest.raises(UserError, match=r"layers\.0\.mlp\.gate_proj\.weight .*mlp/wi_gate"):
    import_hf(source, str(tmp_path / "run"))
  assert not (tmp_path / "run").exists()


def test_missing_files_are_named(tmp_path):
  with pytest.raises(UserError, match="no config.json"):
    import_hf(str(tmp_path), str(tmp_path / "run"))
  model = DECODERS["gpt2"]()
  model.config.save_pretrained(tmp_path)
  with pytest.raises(UserError, match="model.safetensors"):
    import_hf(str(tmp_path), str(tmp_path / "run"))


def test_missing_tensor_is_named(tmp_path):
  source = save_hf(randomized(DECODERS["gpt2"]()), tmp_path / "hf")
  weights = checkpoint_files.read_hf_tensors(source)
  del weights["transformer.h.1.ln_2.bias"]
  checkpoint_files.write_safetensors(os.path.join(source, "model.safetensors"),
                                     {k: np.array(v) for k, v in weights.items()})
  with pytest.raises(UserError, match=r"h\.1\.ln_2\.bias is missing"):
    import_hf(source, str(tmp_path / "run"))


def test_cli_import_export_and_errors(tmp_path):
  source = save_hf(randomized(DECODERS["llama_gqa"]()), tmp_path / "hf")
  run = [sys.executable, "-m", "lm.convert"]
  done = subprocess.run(run + [f"--from_hf={source}", f"--workdir={tmp_path / 'run'}"],
                        capture_output=True, text=True, check=False)
  assert done.returncode == 0, done.stderr
  assert "Imported" in done.stdout
  again = subprocess.run(run + [f"--from_hf={source}", f"--workdir={tmp_path / 'run'}"],
                         capture_output=True, text=True, check=False)
  assert again.returncode == 2 and "already holds a checkpoint" in again.stderr
  assert "Traceback" not in again.stderr
  out = subprocess.run(run + [f"--workdir={tmp_path / 'run'}", f"--to_hf={tmp_path / 'back'}"],
                       capture_output=True, text=True, check=False)
  assert out.returncode == 0, out.stderr
  assert "LlamaForCausalLM" in out.stdout
