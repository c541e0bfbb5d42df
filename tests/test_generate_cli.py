"""`lm.generate` feeds prompts as the run's task trained (BOS for SFT), greedy or by beam search,
refuses models that do not generate text, and says when generation slides past the context."""

import json
import subprocess
import sys

import pytest

from lm import defaults
from lm.data import examples, reader, tokenizers
from lm.errors import UserError
from lm.experiment_args import shrink_to_smoke
from lm.tasks import registry
from lm.training import checkpoints, trainer
from tests.conftest import REPO

WORDS = ["hello", "world", "jax", "flax", "model", "token", "green", "river"]


def generate(*args):
  return subprocess.run([sys.executable, "-m", "lm.generate", *args],
                        cwd=REPO, capture_output=True, text=True, check=False, timeout=300)


@pytest.fixture(scope="module")
def sft_run(tmp_path_factory):
  """A decoder that learned `word -> WORD` for eight words (eval loss ~0.02)."""
  directory = tmp_path_factory.mktemp("sft")
  path = directory / "pairs.jsonl"
  path.write_text("".join(
      json.dumps({"prompt": f"{w} -> ", "response": w.upper()}) + "\n" for w in WORDS * 4))
  config = defaults.base_config()
  config.task.kind = "sft"
  config.data.update(source=str(path), valid_source=str(path), byte_fallback=False)
  shrink_to_smoke(config)
  config.model.update(max_len=32, embed_dim=64)
  config.train.update(steps=150, warmup_steps=10, learning_rate=3e-3, batch_size=8,
                      eval_every=150, checkpoint_every=150, log_every=50, sample_prompt="")
  workdir = str(directory / "run")
  final = trainer.train_and_evaluate(config, workdir)
  assert final["eval/loss"] < 0.1
  return workdir


def test_sft_prompt_ids_are_the_training_examples_prefix(sft_run):
  config = checkpoints.load_config(sft_run)
  _, _, tokenizer = checkpoints.load_for_inference(sft_run)
  record = reader.Record({"prompt": "hello -> ", "response": "HELLO"}, "pairs.jsonl: line 1")
  tokens, loss_mask = examples.sft_examples([record], tokenizer, max_len=32)[0]
  prompt_length = int(loss_mask.argmax())  # Where the response starts.
  ids = registry.task_class("sft").generation_ids(config, tokenizer, "hello -> ")
  assert ids == tokens[:prompt_length].tolist()
  assert ids[0] == tokenizer.special_ids.bos


@pytest.mark.parametrize("decoding", ["--temperature=0", "--beam_size=4"])
def test_sft_model_answers_through_lm_generate(sft_run, decoding):
  result = generate(f"--workdir={sft_run}", "--prompt=hello -> ", "--prompt=river -> ", decoding,
                    "--max_new_tokens=8")
  assert result.returncode == 0, result.stderr
  assert "hello -> HELLO\n" in result.stdout and "river -> RIVER\n" in result.stdout
  assert "sliding" not in result.stderr


def test_lm_generate_says_when_it_slides_past_the_context(sft_run):
  result = generate(f"--workdir={sft_run}", "--prompt=hello -> ", "--temperature=0",
                    "--max_new_tokens=40")
  assert result.returncode == 0, result.stderr
  assert "config.model.max_len=32" in result.stderr and "sliding window" in result.stderr


def test_beam_search_refuses_to_slide_past_the_context(sft_run):
  result = generate(f"--workdir={sft_run}", "--prompt=hello -> ", "--beam_size=2",
                    "--max_new_tokens=40")
  assert result.returncode == 2 and result.stdout == ""
  assert result.stderr.startswith("error: a prompt plus max_new_tokens is 50 tokens, more than")


@pytest.mark.parametrize("kind", ["masked_lm", "classification", "token_classification"])
def test_tasks_without_text_generation_are_refused(kind):
  with pytest.raises(UserError, match=f"config.task.kind='{kind}': its model does not generate"):
    registry.task_class(kind).generation_ids({"task": {"kind": kind}},
                                              tokenizers.ByteTokenizer(), "hi")


def test_lm_generate_refuses_an_encoder_run(tmp_path):
  text = tmp_path / "text.txt"
  text.write_text("the quick brown fox jumps over the lazy dog\n" * 50)
  config = defaults.base_config()
  config.task.kind = "masked_lm"
  config.model.causal = False
  config.data.update(source=str(text), tokenizer="char")
  shrink_to_smoke(config)
  config.train.sample_prompt = ""
  workdir = str(tmp_path / "encoder")
  trainer.train_and_evaluate(config, workdir)
  result = generate(f"--workdir={workdir}", "--prompt=the")
  assert result.returncode == 2 and result.stdout == ""
  assert result.stderr.strip().splitlines() == [
      "error: this run's task is config.task.kind='masked_lm': its model does not generate "
      "text. lm.generate samples from decoders trained with 'causal_lm' or 'sft'; use "
      "lm.predict for classifiers and taggers"
  ]


@pytest.mark.parametrize("name, content", [
    ("prompts.txt", "hello -> \nriver -> \nhello -> \n"),
    ("prompts.jsonl", "".join(json.dumps({"prompt": f"{w} -> ", "id": i}) + "\n"
                              for i, w in enumerate(["hello", "river", "hello"]))),
    ("prompts.json", json.dumps([{"prompt": f"{w} -> "} for w in ["hello", "river", "hello"]])),
])
def test_lm_generate_writes_one_generation_per_input_prompt(sft_run, tmp_path, name, content):
  (tmp_path / name).write_text(content, encoding="utf-8")
  output = tmp_path / "out" / "generations.txt"
  result = generate(f"--workdir={sft_run}", f"--input={tmp_path / name}", f"--output={output}",
                    "--text_field=prompt", "--temperature=0", "--max_new_tokens=8",
                    "--batch_size=2")
  assert result.returncode == 0, result.stderr
  assert output.read_text(encoding="utf-8") == "HELLO\nRIVER\nHELLO\n"


def test_lm_generate_input_errors_name_the_line_and_write_nothing(sft_run, tmp_path):
  prompts = tmp_path / "prompts.txt"
  prompts.write_text("hello -> \n" + "x" * 40 + "\n", encoding="utf-8")
  output = tmp_path / "generations.txt"
  result = generate(f"--workdir={sft_run}", f"--input={prompts}", f"--output={output}")
  assert result.returncode == 2 and not output.exists()
  assert result.stderr.strip().splitlines() == [
      f"error: {prompts}: line 2: the prompt has 41 tokens, more than the model's context "
      "config.model.max_len = 32; use a shorter prompt"
  ]
  result = generate(f"--workdir={sft_run}", f"--input={prompts}")
  assert result.returncode == 2 and "--input and --output go together" in result.stderr
