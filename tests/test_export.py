"""lm.convert export of models trained here: rotary decoders as GPT-NeoX with greedy text equal
to lm's, tokenizer.json for the project's own tokenizers, pooled classifiers for
sentence-transformers, the position limit, file permissions and existing targets."""

import dataclasses
import json
import os
import stat
import subprocess
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers

from lm import defaults, sampling
from lm.convert import exporter
from lm.convert.exporter import export_hf
from lm.convert.tokenizer_files import tokenizer_files
from lm.data import labels as labels_lib, pipeline
from lm.data.sentencepiece_tokenizer import SentencePieceTokenizer
from lm.data.tokenizers import ByteTokenizer, CharTokenizer
from lm.data.word_tokenizer import WordTokenizer
from lm.errors import UserError
from lm.models.config import TASK_FIELDS, ModelConfig
from lm.models.transformer import Transformer
from lm.training import checkpoints

TEXT = ("To be, or not to be, that is the question:\nWhether 'tis nobler in the mind to suffer\n"
        "The slings and arrows of outrageous fortune,\nOr to take arms against a sea of troubles\n"
        "And by opposing end them. 1599, 1601.\n")
PROBES = ["To be, or not", "the  question\n\nWhether", "  leading and trailing  ", "x 12345 y",
          "héllo wörld ✓ 中文", "", "tab\there"]
ROTARY = dict(num_layers=2, num_heads=2, embed_dim=32, max_len=24, positions="rope",
              mlp="gelu_exact", init_std=0.4)


def make_workdir(workdir, tokenizer, kind="causal_lm", labels=None, seed=0,
                 **fields) -> ModelConfig:
  """A finished run of random weights (as the importer writes one)."""
  head = dict(num_classes=len(labels), pooling=fields.pop("pooling", "cls")) if labels else {}
  cfg = ModelConfig(vocab_size=tokenizer.vocab_size, **fields, **head).validate()
  params = Transformer(cfg).init(jax.random.key(seed), jnp.zeros((1, 1), jnp.int32))["params"]
  config = defaults.base_config()
  config.model.update({k: v for k, v in dataclasses.asdict(cfg).items() if k not in TASK_FIELDS})
  config.task.kind = kind
  os.makedirs(workdir, exist_ok=True)
  if labels:
    config.task.pooling = cfg.pooling
    with open(os.path.join(workdir, "labels.json"), "w", encoding="utf-8") as f:
      f.write(labels_lib.LabelSet(labels).to_json())
  saved = config.to_dict()
  tokenizer.save(os.path.join(workdir, pipeline.TOKENIZER_DIR))
  checkpointer = checkpoints.Checkpointer(str(workdir))
  try:
    checkpointer.save(0, {"params": nn.meta.unbox(params)}, {}, saved)
    checkpointer.wait_until_finished()
  finally:
    checkpointer.close()
  checkpoints.save_config(str(workdir), saved)
  return cfg


def char_tokenizer() -> CharTokenizer:
  return CharTokenizer.train([TEXT])


def test_rotary_decoder_exports_as_gpt_neox_and_generates_lms_greedy_text(tmp_path):
  """The demo's architecture (rotary, LayerNorm without biases, exact GELU, tied output)."""
  tokenizer = char_tokenizer()
  make_workdir(tmp_path / "run", tokenizer, **ROTARY)
  assert export_hf(str(tmp_path / "run"), str(tmp_path / "hf")) == "GPTNeoXForCausalLM"
  cfg, params, _ = checkpoints.load_for_inference(str(tmp_path / "run"))
  model = transformers.AutoModelForCausalLM.from_pretrained(str(tmp_path / "hf")).eval()
  hf_tokenizer = transformers.AutoTokenizer.from_pretrained(str(tmp_path / "hf"))
  assert model.config.max_position_embeddings == cfg.max_len
  assert not model.config.use_parallel_residual

  ids = tokenizer.encode("To be, or not to be")
  ours = Transformer(cfg).apply({"params": params}, jnp.asarray([ids]))
  with torch.no_grad():
    theirs = model(torch.tensor([ids])).logits.numpy()
  np.testing.assert_allclose(np.asarray(ours), theirs, atol=1e-4, rtol=0)

  # Greedy ids up to the context, EOS or not: the same tokens.
  prompt = "Whether"
  new = cfg.max_len - len(prompt)
  ours_ids = sampling.generate_tokens(sampling.make_model(cfg), params, [tokenizer.encode(prompt)],
                                      max_new_tokens=new, rng=jax.random.PRNGKey(0),
                                      temperature=0.0)[0]
  inputs = hf_tokenizer(prompt, return_tensors="pt")
  assert inputs["input_ids"][0].tolist() == tokenizer.encode(prompt)
  out = model.generate(**inputs, max_new_tokens=new, min_new_tokens=new, do_sample=False)
  assert out[0, len(prompt):].tolist() == ours_ids
  # The text lm.generate prints, stopping at EOS as generate() does.
  text = sampling.generate_text(cfg, params, tokenizer, [prompt], max_new_tokens=new,
                                temperature=0.0, top_k=0, top_p=1.0, seed=0)[0]
  out = model.generate(**inputs, max_new_tokens=new, do_sample=False)
  assert prompt + hf_tokenizer.decode(out[0, len(prompt):], skip_special_tokens=True) == text


def test_max_len_is_the_position_limit_and_generate_stops_there(tmp_path):
  """GPT-2 with learned positions crashes in transformers past n_positions: the exported
  generation_config stops generate() at max_len."""
  tokenizer = char_tokenizer()
  make_workdir(tmp_path / "run", tokenizer, **{**ROTARY, "positions": "learned", "max_len": 12})
  assert export_hf(str(tmp_path / "run"), str(tmp_path / "hf")) == "GPT2LMHeadModel"
  model = transformers.AutoModelForCausalLM.from_pretrained(str(tmp_path / "hf")).eval()
  assert model.config.n_positions == 12
  hf_tokenizer = transformers.AutoTokenizer.from_pretrained(str(tmp_path / "hf"))
  assert hf_tokenizer.model_max_length == 12
  inputs = hf_tokenizer("To be", return_tensors="pt")
  out = model.generate(**inputs, eos_token_id=None)  # Defaults otherwise.
  assert out.shape[1] == 12


def _hf_tokenizer(tokenizer, directory, **options):
  os.makedirs(directory)
  files = tokenizer_files(tokenizer, max_len=64, prefix_ids=options.get("prefix_ids", []),
                          encoder=options.get("encoder", False))
  for name, content in files.items():
    with open(os.path.join(directory, name), "wb") as f:
      f.write(content)
  return transformers.AutoTokenizer.from_pretrained(str(directory))


TOKENIZERS = {
    "char": char_tokenizer,
    "char_byte_fallback": lambda: CharTokenizer.train([TEXT], byte_fallback=True),
    "byte": ByteTokenizer,
    "word": lambda: WordTokenizer.train([TEXT], vocab_size=30),
    "sentencepiece_bpe": lambda: SentencePieceTokenizer.train([TEXT] * 3, vocab_size=340),
    "sentencepiece_unigram": lambda: SentencePieceTokenizer.train([TEXT] * 3, vocab_size=300,
                                                                  model_type="unigram"),
    "sentencepiece_no_byte_fallback": lambda: SentencePieceTokenizer.train(
        [TEXT] * 3, vocab_size=80, byte_fallback=False),
}


@pytest.mark.parametrize("name", sorted(TOKENIZERS))
def test_tokenizer_json_encodes_like_ours(name, tmp_path):
  tokenizer = TOKENIZERS[name]()
  hf_tokenizer = _hf_tokenizer(tokenizer, tmp_path / "hf")
  assert len(hf_tokenizer) == tokenizer.vocab_size
  for text in [TEXT] + PROBES:
    ids = hf_tokenizer(text)["input_ids"]
    assert ids == tokenizer.encode(text), text
    if name != "word":  # Words come back joined by spaces.
      assert hf_tokenizer.decode(ids, skip_special_tokens=True) == tokenizer.decode(ids), text
  assert hf_tokenizer.eos_token_id == tokenizer.special_ids.eos
  assert hf_tokenizer.pad_token_id == tokenizer.special_ids.pad


def test_tokenizer_adds_what_the_task_trained_with(tmp_path):
  tokenizer = char_tokenizer()
  ids = tokenizer.encode("To be")
  sft = _hf_tokenizer(tokenizer, tmp_path / "sft", prefix_ids=[tokenizer.special_ids.bos])
  assert sft("To be")["input_ids"] == [tokenizer.special_ids.bos] + ids
  encoder = _hf_tokenizer(tokenizer, tmp_path / "encoder", encoder=True)
  special = tokenizer.special_ids
  assert encoder("To be")["input_ids"] == [special.cls] + ids + [special.sep]


@pytest.mark.parametrize("pooler", [True, False])
def test_mean_pooled_classifier_exports_for_sentence_transformers(pooler, tmp_path):
  sentence_transformers = pytest.importorskip("sentence_transformers")
  tokenizer = char_tokenizer()
  labels = ["negative", "neutral", "positive"]
  fields = dict(num_layers=2, num_heads=2, embed_dim=32, max_len=40, positions="learned",
                norm_position="post", use_bias=True, type_vocab_size=2, mlp="gelu_exact",
                causal=False, pooler=pooler, init_std=0.3, pooling="mean")
  make_workdir(tmp_path / "run", tokenizer, kind="classification", labels=labels, **fields)
  written = export_hf(str(tmp_path / "run"), str(tmp_path / "hf"))
  assert "sentence-transformers" in written
  cfg, params, _ = checkpoints.load_for_inference(str(tmp_path / "run"))
  texts = ["To be, or not", "the question", "And by opposing end them."]
  special = tokenizer.special_ids
  rows = [[special.cls] + tokenizer.encode(t) + [special.sep] for t in texts]
  length = max(map(len, rows))
  tokens = np.array([r + [special.pad] * (length - len(r)) for r in rows])
  segments = np.array([[1] * len(r) + [0] * (length - len(r)) for r in rows])
  ours = np.asarray(Transformer(cfg).apply({"params": params}, jnp.asarray(tokens),
                                           segment_ids_BxT=jnp.asarray(segments)))
  model = sentence_transformers.SentenceTransformer(str(tmp_path / "hf"), device="cpu")
  theirs = model.encode(texts, convert_to_numpy=True)
  np.testing.assert_allclose(theirs, ours, atol=1e-4, rtol=0)
  config = json.loads((tmp_path / "hf" / "config.json").read_text())
  assert config["architectures"] == ["BertModel"]
  assert config["id2label"] == {"0": "negative", "1": "neutral", "2": "positive"}


def test_classifier_without_equivalent_says_what_exports(tmp_path):
  tokenizer = char_tokenizer()
  make_workdir(tmp_path / "run", tokenizer, kind="classification", labels=["a", "b"],
               pooling="mean", **ROTARY)
  with pytest.raises(UserError, match="sentence-transformers"):
    export_hf(str(tmp_path / "run"), str(tmp_path / "hf"))
  assert not (tmp_path / "hf").exists()
  assert os.listdir(tmp_path) == ["run"]  # No staging directory left behind.


def test_exported_files_have_normal_permissions(tmp_path):
  make_workdir(tmp_path / "run", char_tokenizer(), **ROTARY)
  old = os.umask(0o022)
  try:
    export_hf(str(tmp_path / "run"), str(tmp_path / "hf"))
  finally:
    os.umask(old)
  assert stat.S_IMODE(os.stat(tmp_path / "hf").st_mode) == 0o755
  for name in os.listdir(tmp_path / "hf"):
    assert stat.S_IMODE(os.stat(tmp_path / "hf" / name).st_mode) == 0o644, name


def test_existing_target_is_refused_and_left_alone(tmp_path):
  make_workdir(tmp_path / "run", char_tokenizer(), **ROTARY)
  existing = tmp_path / "model.safetensors"
  existing.write_text("keep me")
  with pytest.raises(UserError, match="already exists"):
    export_hf(str(tmp_path / "run"), str(existing))
  full = tmp_path / "full"
  full.mkdir()
  (full / "config.json").write_text("{}")
  with pytest.raises(UserError, match="already exists"):
    export_hf(str(tmp_path / "run"), str(full))
  assert existing.read_text() == "keep me" and os.listdir(full) == ["config.json"]
  done = subprocess.run([sys.executable, "-m", "lm.convert", f"--workdir={tmp_path / 'run'}",
                         f"--to_hf={existing}"], capture_output=True, text=True, check=False)
  assert done.returncode == 2, done.stderr
  assert "Traceback" not in done.stderr and "already exists" in done.stderr
  assert existing.read_text() == "keep me"
  assert sorted(os.listdir(tmp_path)) == ["full", "model.safetensors", "run"]
  (tmp_path / "empty").mkdir()  # An empty directory is a new one.
  export_hf(str(tmp_path / "run"), str(tmp_path / "empty"))
  assert "config.json" in os.listdir(tmp_path / "empty")
