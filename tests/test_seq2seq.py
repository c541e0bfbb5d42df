"""The seq2seq task: the device layouts agree, lm.generate translates a file as the task decodes,
and bad input gets one clear error with nothing written."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from experiments import multi30k, shakespeare_char
from lm.data import span_corruption, tokenizers
from lm.errors import UserError
from lm.tasks import registry
from lm.tasks.seq2seq import Seq2SeqTask
from lm.training import checkpoints, trainer
from tests.conftest import FIXTURES, REPO

VAL_EN = FIXTURES / "multi30k" / "val.en"


def smoke_config(**overrides):
  config = multi30k.get_config("cpu,smoke")
  config.data.tokenizer = "char"
  config.train.update(batch_size=8, eval_batch_size=8)
  config.model.dropout = 0.0
  for key, value in overrides.items():
    section, _, name = key.rpartition("__")
    (config[section] if section else config)[name] = value
  return config


def test_mesh_pmap_and_one_device_give_the_same_training(tmp_path):
  mesh = trainer.train_and_evaluate(smoke_config(), str(tmp_path / "mesh"))
  pmap = trainer.train_and_evaluate(smoke_config(mesh__use_pmap=True), str(tmp_path / "pmap"))
  one = trainer.train_and_evaluate(smoke_config(mesh__data=1), str(tmp_path / "one"))
  for other in (pmap, one):
    assert other["eval/loss"] == pytest.approx(mesh["eval/loss"], rel=1e-4)
  vocab = tokenizers.load_tokenizer(tmp_path / "mesh" / "tokenizer").vocab_size
  assert mesh["eval/loss"] < np.log(vocab)  # Below a uniform guess.


def test_generate_translates_a_file_as_the_task_decodes(tmp_path):
  workdir = tmp_path / "run"
  trainer.train_and_evaluate(smoke_config(), str(workdir))
  output = tmp_path / "val.pred.de"
  for beam_size in (None, 3):
    flags = [] if beam_size is None else [f"--beam_size={beam_size}"]
    result = subprocess.run([
        sys.executable, "-m", "lm.generate", f"--workdir={workdir}", f"--input={VAL_EN}",
        f"--output={output}", "--batch_size=16", *flags
    ], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    lines = output.read_text(encoding="utf-8").split("\n")[:-1]
    sources = VAL_EN.read_text(encoding="utf-8").splitlines()
    assert len(lines) == len(sources)
    config = checkpoints.load_config(str(workdir))
    model_config, params, tokenizer = checkpoints.load_for_inference(str(workdir))
    expected = Seq2SeqTask.generate(config, model_config, params, tokenizer, sources,
                                    max_new_tokens=config["task"]["max_new_tokens"],
                                    beam_size=beam_size or config["task"]["beam_size"],
                                    length_penalty=config["task"]["length_penalty"],
                                    temperature=0.0, top_k=0, top_p=1.0, seed=0)
    assert lines == [e.replace("\n", "\\n") for e in expected]
  report = json.loads((workdir / "eval_report.json").read_text())
  assert "eval/bleu" in report and "sacrebleu_signature" in report
  assert (workdir / "eval_predictions.txt").exists()


def write_parallel(tmp_path, sources, targets):
  (tmp_path / "s.txt").write_text("".join(s + "\n" for s in sources), encoding="utf-8")
  (tmp_path / "t.txt").write_text("".join(t + "\n" for t in targets), encoding="utf-8")
  return smoke_config(data__source=str(tmp_path / "s.txt"), data__target=str(tmp_path / "t.txt"),
                      data__valid_source=str(tmp_path / "s.txt"),
                      data__valid_target=str(tmp_path / "t.txt"))


def assert_nothing_written(workdir):
  assert not workdir.exists() or not os.listdir(workdir), os.listdir(workdir)


def test_parallel_files_of_different_lengths_are_refused_naming_both(tmp_path):
  config = write_parallel(tmp_path, ["a b", "c d", "e f"], ["x", "y", "z", "w"])
  with pytest.raises(UserError, match=r"s\.txt.* has 3 lines but .*t\.txt.* has 4"):
    trainer.train_and_evaluate(config, str(tmp_path / "run"))
  assert_nothing_written(tmp_path / "run")


def test_empty_sides_are_skipped_and_long_pairs_cut_and_counted(tmp_path):
  long = " ".join(["word"] * 40)  # Longer than max_len = 16 characters.
  config = write_parallel(tmp_path, ["a b", "", "c d", long, "e f"],
                          ["x y", "no source", "", "z", "w"])
  task = registry.build_task(config, str(tmp_path / "run"), {})
  assert task.num_skipped == 2 * 2  # Training and validation read the same two files.
  assert len(task.train) == 3 and task.train.num_truncated == 1
  assert max(len(s) for s in task.train.sources) == config.model.max_len
  assert "4 with an empty side skipped" in task.describe()


def test_a_decoder_checkpoint_as_init_from_is_refused_naming_both_architectures(tmp_path):
  decoder = shakespeare_char.get_config("cpu,smoke")
  decoder.train.steps = 1
  trainer.train_and_evaluate(decoder, str(tmp_path / "decoder"))
  config = smoke_config()
  config.init_from = str(tmp_path / "decoder")
  with pytest.raises(UserError, match=r"architecture='transformer'.*'encoder_decoder'"):
    trainer.train_and_evaluate(config, str(tmp_path / "run"))
  assert_nothing_written(tmp_path / "run")


def test_an_unknown_language_field_is_refused(tmp_path):
  pairs = tmp_path / "pairs.jsonl"
  pairs.write_text("".join(json.dumps({"en": f"a {i}", "de": f"b {i}"}) + "\n"
                           for i in range(20)))
  config = smoke_config(data__source=str(pairs), data__valid_source=str(pairs), data__target="",
                        data__valid_target="", data__source_field="fr", data__target_field="de")
  with pytest.raises(UserError, match=r"pairs\.jsonl.*'fr'.*config\.data\.source_field"):
    trainer.train_and_evaluate(config, str(tmp_path / "run"))
  assert_nothing_written(tmp_path / "run")
  config.data.source_field = "en"  # The two-field form trains.
  assert trainer.train_and_evaluate(config, str(tmp_path / "ok"))["eval/loss"] > 0


def test_span_corruption_pretrains_an_encoder_decoder_that_seq2seq_fine_tunes(tmp_path):
  pretrain = multi30k.get_config("pretrain,smoke")
  pretrain.data.tokenizer = "char"
  pretrain.model.dropout = 0.0
  task = registry.build_task(pretrain, str(tmp_path / "pretrain"), {})
  batch = task.train_batches(np.arange(pretrain.train.batch_size)).next_batch()
  vocab = task.tokenizer.vocab_size
  assert task.model_config.vocab_size == vocab + 100
  for row in range(len(batch["inputs"])):  # Each window comes back from inputs and targets.
    inputs = batch["inputs"][row][batch["source_segments"][row] > 0]
    targets = batch["targets"][row][batch["target_segments"][row] > 0]
    assert inputs.max() >= vocab and targets[0] == vocab  # Sentinels; the first leads.
    restored = span_corruption.reconstruct(inputs, targets, range(vocab, vocab + 100),
                                           task.tokenizer.special_ids.eos)
    assert len(restored) == task.window
  final = trainer.train_and_evaluate(pretrain, str(tmp_path / "pretrain"))
  assert 0 < final["eval/loss"] < np.log(vocab + 100)

  config = smoke_config()
  config.init_from = str(tmp_path / "pretrain")
  with pytest.raises(UserError, match=r"extra_ids=0.*trained with 100"):
    trainer.train_and_evaluate(config, str(tmp_path / "refused"))
  assert_nothing_written(tmp_path / "refused")
  config.data.extra_ids = 100
  tuned = trainer.train_and_evaluate(config, str(tmp_path / "tuned"))
  assert "eval/bleu" in tuned


def test_records_with_an_empty_field_are_skipped_and_counted(tmp_path):
  """SAMSum's training split has a dialogue that is empty: the run skips it, as parallel text."""
  pairs = tmp_path / "pairs.json"
  records = [{"dialogue": f"a {i}", "summary": f"b {i}"} for i in range(6)]
  records[2]["dialogue"] = ""
  records[4]["summary"] = " "
  pairs.write_text(json.dumps(records))
  config = smoke_config(data__source=str(pairs), data__valid_source=str(pairs), data__target="",
                        data__valid_target="", data__source_field="dialogue",
                        data__target_field="summary")
  task = registry.build_task(config, str(tmp_path / "run"), {})
  assert task.num_skipped == 2 * 2 and len(task.train) == 4


def test_zero_steps_evaluate_the_init_from_run_of_the_same_seed(tmp_path):
  """train.steps=0 with init_from (`{seed}` = config.seed) only evaluates: the decoding
  ablation's runs. Same settings, same metrics; nothing is trained or checkpointed."""
  trained = trainer.train_and_evaluate(smoke_config(seed=1), str(tmp_path / "train" / "seed1"))
  config = smoke_config(seed=1)
  config.init_from = str(tmp_path / "train" / "seed{seed}")
  config.train.update(steps=0, warmup_steps=0)
  evaluated = trainer.train_and_evaluate(config, str(tmp_path / "eval"))
  for key in ("eval/loss", "eval/bleu", "eval/chrf"):
    assert evaluated[key] == pytest.approx(trained[key], rel=1e-5), key
  final = json.loads((tmp_path / "eval" / "final_metrics.json").read_text())
  assert final["step"] == 0 and final["metrics"]["eval/bleu"] == pytest.approx(trained["eval/bleu"])
  assert (tmp_path / "eval" / "eval_predictions.txt").exists()
  assert checkpoints.Checkpointer(str(tmp_path / "eval"), read_only=True).latest_step() is None


def test_zero_steps_without_init_from_is_refused(tmp_path):
  config = smoke_config()
  config.train.update(steps=0, warmup_steps=0)
  with pytest.raises(UserError, match=r"config\.train\.steps=0 .*init_from"):
    trainer.train_and_evaluate(config, str(tmp_path / "run"))
  assert_nothing_written(tmp_path / "run")
