"""End-to-end runs of train_and_evaluate on the smoke-sized Shakespeare experiment."""

import json
import math
import os
import signal
import subprocess
import sys
import time

import pytest

from experiments import shakespeare_char
from lm.errors import UserError
from lm.training import trainer
from tests.conftest import FIXTURES, REPO, xla_flags


def smoke_config(**train):
  config = shakespeare_char.get_config("cpu,smoke")
  config.train.sample_prompt = ""
  config.train.update(train)
  return config


def read_metrics(workdir):
  with open(os.path.join(workdir, "metrics.jsonl"), encoding="utf-8") as f:
    return [json.loads(line) for line in f]


def test_run_writes_workdir_and_metrics(tmp_path):
  workdir = str(tmp_path / "run")
  final = trainer.train_and_evaluate(smoke_config(), workdir)
  for name in ("config.json", "metrics.jsonl", "tokenizer", "checkpoints", "tensorboard"):
    assert os.path.exists(os.path.join(workdir, name)), name
  assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == ["2", "4"]
  records = read_metrics(workdir)
  assert [r["step"] for r in records] == [1, 2, 3, 4]
  last = records[-1]
  for key in ("train/loss", "eval/loss", "eval/bpb", "eval/perplexity", "perf/tokens_per_s",
              "perf/mfu"):
    assert key in last, key
  assert final["eval/loss"] == pytest.approx(last["eval/loss"])
  # A uniform model over 72 characters has loss ln(72) = 4.28; a few steps must not be worse.
  assert last["eval/loss"] < 4.3


def test_rerun_of_finished_run_trains_nothing_more(tmp_path):
  workdir = str(tmp_path / "run")
  trainer.train_and_evaluate(smoke_config(), workdir)
  before = read_metrics(workdir)
  trainer.train_and_evaluate(smoke_config(), workdir)
  assert read_metrics(workdir) == before


def test_resume_from_checkpoint_matches_uninterrupted_run(tmp_path):
  straight = trainer.train_and_evaluate(smoke_config(steps=4), str(tmp_path / "a"))
  # Train to step 2 (the first checkpoint) in a run that is then continued to step 4: the
  # resumed run must restore parameters, optimizer state and the data stream exactly.
  workdir = str(tmp_path / "b")
  trainer.train_and_evaluate(smoke_config(steps=4), workdir)
  # Remove the last checkpoint and metrics past step 2 as if the run had died after step 2.
  import shutil  # pylint: disable=g-import-not-at-top
  shutil.rmtree(os.path.join(workdir, "checkpoints", "4"))
  resumed = trainer.train_and_evaluate(smoke_config(steps=4), workdir)
  assert resumed["eval/loss"] == straight["eval/loss"]
  assert resumed["train/loss"] == straight["train/loss"]


def test_conflicting_config_in_workdir_is_refused(tmp_path):
  workdir = str(tmp_path / "run")
  trainer.train_and_evaluate(smoke_config(), workdir)
  changed = smoke_config()
  changed.train.learning_rate = 0.5
  with pytest.raises(UserError, match=r"train\.learning_rate: saved 0\.001, now 0\.5"):
    trainer.train_and_evaluate(changed, workdir)


def test_grad_accumulation_runs(tmp_path):
  final = trainer.train_and_evaluate(smoke_config(grad_accum_steps=2), str(tmp_path / "run"))
  assert final["eval/loss"] < 4.3


def _main_command(workdir, *overrides):
  return [
      sys.executable, "-m", "lm.main", "--config=experiments/shakespeare_char.py:cpu,smoke",
      f"--workdir={workdir}", "--config.train.sample_prompt=", *overrides
  ]


def test_sigkill_after_first_checkpoint_then_resume_gives_same_final_loss(tmp_path):
  """The acceptance test of exact resume, with a real SIGKILL of the training process."""
  args = ("--config.train.steps=400", "--config.train.checkpoint_every=40",
          "--config.train.eval_every=400", "--config.train.log_every=40")
  straight, killed = str(tmp_path / "straight"), str(tmp_path / "killed")
  subprocess.run(_main_command(straight, *args), cwd=REPO, check=True, capture_output=True)

  process = subprocess.Popen(_main_command(killed, *args),
                             cwd=REPO,
                             stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
  first = os.path.join(killed, "checkpoints", "40", "commit_success.txt")
  deadline = time.time() + 120
  while not os.path.exists(first) and process.poll() is None and time.time() < deadline:
    time.sleep(0.005)
  process.send_signal(signal.SIGKILL)
  assert process.wait() == -signal.SIGKILL, "the run finished before it could be killed"
  assert not os.path.exists(os.path.join(killed, "checkpoints", "400"))

  subprocess.run(_main_command(killed, *args), cwd=REPO, check=True, capture_output=True)
  final = lambda workdir: [r for r in read_metrics(workdir) if "eval/loss" in r][-1]
  assert final(killed)["step"] == final(straight)["step"] == 400
  assert final(killed)["eval/loss"] == final(straight)["eval/loss"]


def test_generate_cli_restores_on_a_different_device_count(tmp_path):
  workdir = str(tmp_path / "run")
  trainer.train_and_evaluate(smoke_config(), workdir)  # 8 fake devices here.
  env = {**os.environ, "XLA_FLAGS": xla_flags(1)}
  result = subprocess.run([
      sys.executable, "-m", "lm.generate", f"--workdir={workdir}", "--prompt=ROMEO:",
      "--max_new_tokens=20"
  ],
                          cwd=REPO,
                          env=env,
                          capture_output=True,
                          text=True,
                          check=False)
  assert result.returncode == 0, result.stderr
  assert "ROMEO:" in result.stdout


@pytest.mark.parametrize("tokenizer, extra", [
    ("byte", {}),
    ("sentencepiece", {
        "vocab_size": 400,
        "model_type": "bpe"
    }),
    ("sentencepiece", {
        "vocab_size": 400,
        "model_type": "unigram"
    }),
])
def test_tokenizer_choices_train_end_to_end(tmp_path, shakespeare_path, tokenizer, extra):
  source = tmp_path / "shakespeare_head.txt"
  with open(shakespeare_path, encoding="utf-8") as f:
    source.write_text(f.read()[:60_000], encoding="utf-8")
  config = smoke_config()
  config.data.update(source=str(source), tokenizer=tokenizer, **extra)
  workdir = str(tmp_path / "run")
  final = trainer.train_and_evaluate(config, workdir)
  saved = json.loads((tmp_path / "run" / "tokenizer" / "tokenizer.json").read_text())
  assert saved["kind"] == tokenizer
  assert math.isfinite(final["eval/bpb"]) and final["eval/bpb"] > 0


def test_tfds_source_trains_end_to_end_offline(tmp_path):
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  config = smoke_config()
  config.data.update(source="tfds:tiny_shakespeare", train_split="train", valid_split="validation")
  with tfds.testing.mock_data(num_examples=4):
    final = trainer.train_and_evaluate(config, str(tmp_path / "run"))
  assert math.isfinite(final["eval/loss"])


def test_non_finite_loss_stops_with_a_clear_error_and_keeps_good_checkpoints(tmp_path):
  # An absurd learning rate without clipping makes the parameters overflow within a few steps.
  config = smoke_config(steps=8, learning_rate=1e30, grad_clip=0.0, checkpoint_every=1)
  workdir = tmp_path / "run"
  with pytest.raises(trainer.TrainingDiverged, match=r"at step \d+"):
    trainer.train_and_evaluate(config, str(workdir))
  saved = sorted(int(s) for s in os.listdir(workdir / "checkpoints") if s.isdigit())
  assert saved and saved[-1] < 8  # Nothing was saved at or after the divergence.


def test_bfloat16_compute_with_float32_parameters(tmp_path):
  config = smoke_config()
  config.model.dtype = "bfloat16"
  final = trainer.train_and_evaluate(config, str(tmp_path / "run"))
  assert math.isfinite(final["eval/loss"])


def test_resumes_a_run_saved_before_a_config_key_existed(tmp_path):
  """A key added since the run was saved is no difference at its default, and one elsewhere."""
  workdir = str(tmp_path / "run")
  trainer.train_and_evaluate(smoke_config(steps=2), workdir)
  path = os.path.join(workdir, "config.json")
  with open(path, encoding="utf-8") as f:
    saved = json.load(f)
  del saved["model"]["architecture"], saved["data"]["entry_separator"]
  with open(path, "w", encoding="utf-8") as f:
    json.dump(saved, f)
  changed = smoke_config(steps=2)
  changed.data.entry_separator = "#"
  with pytest.raises(UserError, match="data.entry_separator: saved None, now '#'"):
    trainer.train_and_evaluate(changed, workdir)
  trainer.train_and_evaluate(smoke_config(steps=2), workdir)  # Resumes (at its end): no error.
  assert read_metrics(workdir)[-1]["step"] == 2


def test_test_split_is_evaluated_once_at_the_end(tmp_path):
  """config.data.test_source: test/* metrics on the final parameters only; on the validation
  text itself they equal eval/*. With the word tokenizer, perplexity is per word."""
  words = os.path.join(FIXTURES, "wikitext2", "tokens", "valid.txt")
  with open(words, encoding="utf-8") as f:
    text = f.read()
  (tmp_path / "train.txt").write_text(text[:40_000], encoding="utf-8")
  (tmp_path / "valid.txt").write_text(text[40_000:44_000], encoding="utf-8")
  config = smoke_config()
  config.model.max_len = 32
  config.train.final_eval_batches = 0  # The whole validation split, as the test split.
  config.data.update(source=str(tmp_path / "train.txt"), valid_source=str(tmp_path / "valid.txt"),
                     test_source=str(tmp_path / "valid.txt"), tokenizer="word", vocab_size=2000)
  workdir = str(tmp_path / "run")
  final = trainer.train_and_evaluate(config, workdir)
  records = read_metrics(workdir)
  assert [any(k.startswith("test/") for k in r) for r in records] == [False, False, False, True]
  for name in ("loss", "perplexity", "bpb"):
    assert final[f"test/{name}"] == pytest.approx(final[f"eval/{name}"], rel=1e-6)
  assert final["test/perplexity"] == pytest.approx(math.exp(final["test/loss"]))
  config.task.kind = "classification"
  with pytest.raises(UserError, match="config.data.test_source=.*a test split is for language"):
    trainer.train_and_evaluate(config, str(tmp_path / "classifier"))
