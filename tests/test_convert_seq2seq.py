"""Hugging Face encoder–decoders (T5 v1.0 and v1.1, BART, Marian) imported into this project give
transformers' logits and generations, and export back to the same model."""

import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers

from experiments import multi30k
from lm import seq2seq_decoding
from lm.convert.exporter import export_hf
from lm.convert.importer import import_hf
from lm.models.encoder_decoder import EncoderDecoder
from lm.tasks import registry
from lm.training import checkpoints, init_from, trainer
from tests.test_convert import TOLERANCE, VOCAB, randomized, save_hf

PAD, EOS = 0, 6  # The ids of [PAD] and </s> in test_convert's tokenizer.
SPECIAL_IDS = dict(pad_token_id=PAD, eos_token_id=EOS, bos_token_id=5)
MODELS = {
    "t5_v1_0": lambda: transformers.T5ForConditionalGeneration(
        transformers.T5Config(vocab_size=VOCAB, d_model=40, d_kv=12, d_ff=56, num_layers=2,
                              num_heads=3, relative_attention_num_buckets=8,
                              relative_attention_max_distance=20, feed_forward_proj="relu",
                              decoder_start_token_id=PAD, **SPECIAL_IDS)),
    "t5_v1_1": lambda: transformers.T5ForConditionalGeneration(
        transformers.T5Config(vocab_size=VOCAB, d_model=36, d_kv=8, d_ff=44, num_layers=2,
                              num_heads=4, relative_attention_num_buckets=10,
                              relative_attention_max_distance=16, feed_forward_proj="gated-gelu",
                              tie_word_embeddings=False, decoder_start_token_id=PAD,
                              **SPECIAL_IDS)),
    "bart": lambda: transformers.BartForConditionalGeneration(
        transformers.BartConfig(vocab_size=VOCAB, d_model=48, encoder_layers=2, decoder_layers=2,
                                encoder_attention_heads=4, decoder_attention_heads=4,
                                encoder_ffn_dim=72, decoder_ffn_dim=72,
                                max_position_embeddings=40, decoder_start_token_id=EOS,
                                forced_bos_token_id=None, forced_eos_token_id=None,
                                **SPECIAL_IDS)),
    "marian": lambda: transformers.MarianMTModel(
        transformers.MarianConfig(vocab_size=VOCAB, decoder_vocab_size=VOCAB, d_model=40,
                                  encoder_layers=2, decoder_layers=2, encoder_attention_heads=5,
                                  decoder_attention_heads=5, encoder_ffn_dim=56,
                                  decoder_ffn_dim=56, max_position_embeddings=40,
                                  activation_function="swish", scale_embedding=True,
                                  decoder_start_token_id=PAD, forced_eos_token_id=None,
                                  **SPECIAL_IDS)),
}


def make(name: str, seed: int = 0):
  model = randomized(MODELS[name](), seed)
  if hasattr(model, "final_logits_bias"):  # A buffer, which `randomized` leaves at zero.
    generator = torch.Generator().manual_seed(seed + 1)
    model.final_logits_bias.copy_(0.3 * torch.randn(model.final_logits_bias.shape,
                                                    generator=generator))
    model.final_logits_bias[0, EOS] += 2.0  # Some hypotheses end before the limit.
  return restore_sinusoids(model)


def restore_sinusoids(model):
  """Marian's sinusoids, which are fixed, not weights, as `randomized` left them."""
  for module in model.modules():
    if isinstance(module, transformers.models.marian.modeling_marian.
                  MarianSinusoidalPositionalEmbedding):
      with torch.no_grad():
        module.weight.copy_(module.create_weight())
  return model


def batch(seed: int = 0):
  """Sources [2, 9] (the second padded after 6 tokens) and decoder inputs [2, 7], no specials."""
  rng = np.random.default_rng(seed)
  source = rng.integers(7, VOCAB, (2, 9))
  mask = np.ones_like(source)
  source[1, 6:], mask[1, 6:] = PAD, 0
  return source, mask, rng.integers(7, VOCAB, (2, 7))


def their_logits(model, source, mask, target) -> np.ndarray:
  with torch.no_grad():
    return model(input_ids=torch.tensor(source), attention_mask=torch.tensor(mask),
                 decoder_input_ids=torch.tensor(target)).logits.numpy()


def our_logits(workdir, source, mask, target) -> np.ndarray:
  cfg, params, _ = checkpoints.load_for_inference(str(workdir))
  return np.asarray(EncoderDecoder(cfg).apply({"params": params}, jnp.asarray(source),
                                              jnp.asarray(target), jnp.asarray(mask)))


@pytest.fixture(scope="module", params=sorted(MODELS))
def imported(request, tmp_path_factory):
  """(name, the transformers model, the workdir it was imported into)."""
  directory = tmp_path_factory.mktemp(request.param)
  model = make(request.param)
  import_hf(save_hf(model, directory / "hf"), str(directory / "run"))
  return request.param, model, directory / "run"


def test_logits_match_transformers(imported):
  _, model, workdir = imported
  source, mask, target = batch()
  np.testing.assert_allclose(our_logits(workdir, source, mask, target),
                             their_logits(model, source, mask, target), atol=TOLERANCE, rtol=0)


def test_export_reloads_with_the_same_logits(imported, tmp_path):
  name, model, workdir = imported
  source, mask, target = batch(1)
  expected = their_logits(model, source, mask, target)
  export_hf(str(workdir), str(tmp_path / "back"))
  reloaded = transformers.AutoModelForSeq2SeqLM.from_pretrained(str(tmp_path / "back")).eval()
  assert type(reloaded) is type(model)
  np.testing.assert_allclose(their_logits(reloaded, source, mask, target), expected,
                             atol=TOLERANCE, rtol=0)
  import_hf(str(tmp_path / "back"), str(tmp_path / "again"))
  np.testing.assert_allclose(our_logits(tmp_path / "again", source, mask, target),
                             our_logits(workdir, source, mask, target), atol=1e-6, rtol=0)
  assert name


@pytest.mark.parametrize("beam_size", [1, 4])
def test_generation_matches_transformers_generate(imported, beam_size):
  """Greedy and beam search (no length penalty: transformers divides by length ** alpha, this
  project by GNMT's ((5 + length) / 6) ** alpha; with alpha = 0 both rank by log-probability)."""
  _, model, workdir = imported
  source, mask, _ = batch(2)  # Rows that end at once beside rows that reach the limit.
  cfg, params, _ = checkpoints.load_for_inference(str(workdir))
  start = checkpoints.load_config(str(workdir))["task"]["decoder_start_id"]
  assert start == model.config.decoder_start_token_id
  max_new = 8
  with torch.no_grad():
    theirs = model.generate(input_ids=torch.tensor(source), attention_mask=torch.tensor(mask),
                            num_beams=beam_size, do_sample=False, max_new_tokens=max_new,
                            length_penalty=0.0, early_stopping=True,
                            decoder_start_token_id=start, eos_token_id=EOS, pad_token_id=PAD,
                            forced_eos_token_id=None, min_length=0,
                            no_repeat_ngram_size=0).numpy()
  ours = seq2seq_decoding.decode_batch(EncoderDecoder(cfg), params,
                                       [list(s[m > 0]) for s, m in zip(source, mask)],
                                       bos_id=start, eos_id=EOS, pad_id=PAD,
                                       max_new_tokens=max_new, beam_size=beam_size,
                                       length_penalty=0.0)
  expected = []
  for row in theirs.tolist():
    generated = row[1:]
    expected.append(generated[:generated.index(EOS)] if EOS in generated else generated)
  assert ours == expected


def test_fine_tuning_an_imported_bart_keeps_its_token_layout(imported, tmp_path):
  """init_architecture='adopt' takes BART's layout along: sources <s> ... </s>, targets that
  start from </s>; the run trains, and lm.generate's settings come with it."""
  name, _, workdir = imported
  if name != "bart":
    pytest.skip("BART's layout")
  lines = [" ".join(f"w{(i * 7 + j) % 40}" for j in range(1 + i % 5)) for i in range(24)]
  (tmp_path / "s.txt").write_text("\n".join(lines) + "\n")
  (tmp_path / "t.txt").write_text("\n".join(reversed(lines)) + "\n")
  config = multi30k.get_config("cpu,smoke")
  config.init_from = str(workdir)
  config.init_architecture = "adopt"
  config.data.update(source=str(tmp_path / "s.txt"), target=str(tmp_path / "t.txt"),
                     valid_source=str(tmp_path / "s.txt"), valid_target=str(tmp_path / "t.txt"))
  config.train.update(steps=2, warmup_steps=0, batch_size=8, eval_batch_size=8)
  task = registry.build_task(init_from.adopt_architecture(config), str(tmp_path / "probe"), {})
  assert all(s[0] == 5 and s[-1] == EOS for s in task.train.sources)
  assert all(t[0] == EOS for t in task.train.targets)
  final = trainer.train_and_evaluate(config, str(tmp_path / "run"))
  assert np.isfinite(final["eval/loss"])
  saved = checkpoints.load_config(str(tmp_path / "run"))["task"]
  assert (saved["decoder_start_id"], saved["source_bos"]) == (EOS, True)
