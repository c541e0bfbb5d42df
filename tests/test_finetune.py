"""Pretrain (masked LM), then fine-tune a classifier from it: what trains, reports, lm.predict,
and clear errors for bad labeled data and mismatched checkpoints."""

import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from experiments import sst2
from lm.errors import UserError
from lm.training import checkpoints, init_from, trainer
from tests.conftest import FIXTURES, REPO
from tests.test_main_cli import assert_clear_error


def write_tsv(path, rows):
  with open(path, "w", encoding="utf-8") as f:
    f.write("sentence\tlabel\n")
    for text, label in rows:
      f.write(f"{text}\t{label}\n")
  return str(path)


@pytest.fixture(scope="module")
def sst2_files(tmp_path_factory):
  """300 training and 60 validation rows of the real SST-2 train split."""
  with open(FIXTURES / "sst2" / "train.tsv", encoding="utf-8") as f:
    rows = [line.rstrip("\n").split("\t") for line in f][1:361]
  directory = tmp_path_factory.mktemp("sst2")
  return {
      "train": write_tsv(directory / "train.tsv", rows[:300]),
      "valid": write_tsv(directory / "valid.tsv", rows[300:]),
      "dir": directory,
  }


def config_for(stage, **overrides):
  config = sst2.get_config(f"{stage},smoke")
  config.data.tokenizer = "char"
  for key, value in overrides.items():
    section, name = key.split("__")
    config[section][name] = value
  return config


@pytest.fixture(scope="module")
def pretrained(sst2_files, tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("pretrain"))
  trainer.train_and_evaluate(config_for("pretrain", data__source=sst2_files["train"]), workdir)
  return workdir


def finetune(workdir, sst2_files, pretrained, **overrides):
  config = config_for("finetune",
                      data__source=sst2_files["train"],
                      data__valid_source=sst2_files["valid"],
                      **overrides)
  config.init_from = pretrained
  return trainer.train_and_evaluate(config, workdir)


def final_params(workdir):
  checkpointer = checkpoints.Checkpointer(workdir, read_only=True)
  params, _ = checkpointer.restore_params(checkpointer.latest_step())
  checkpointer.close()
  return flat(params)


def flat(params, prefix=""):
  out = {}
  for key, value in params.items():
    if isinstance(value, dict):
      out.update(flat(value, f"{prefix}{key}/"))
    else:
      out[prefix + key] = np.asarray(getattr(value, "value", value))
  return out


@pytest.mark.parametrize("method, overrides, trains", [
    ("linear_probe", {}, lambda name: name.startswith("classifier")),
    ("lora", {}, lambda name: name.startswith("classifier") or "/lora_" in name),
    ("full", dict(finetune__freeze_embeddings=True,
                  finetune__freeze_layers=1), lambda name: not name.startswith(
                      ("token_embed", "block_0/"))),
])
def test_only_the_intended_parameters_train(tmp_path, sst2_files, pretrained, method, overrides,
                                            trains):
  workdir = str(tmp_path / method)
  finetune(workdir, sst2_files, pretrained, finetune__method=method, **overrides)
  before, after = final_params(pretrained), final_params(workdir)
  assert "classifier/kernel" in after
  for name, value in after.items():
    if trains(name):
      if name in before:  # A pretrained parameter that trains must have moved.
        assert not np.array_equal(before[name], value), name
    else:
      assert name in before, name  # Frozen parameters come from the pretrained run...
      assert before[name].tobytes() == value.tobytes(), name  # ...bit for bit.
  changed = [n for n in after if n.startswith("classifier") or "/lora_b" in n]
  assert all(not np.all(after[n] == 0) for n in changed if "lora_b" in n)


def test_finetune_writes_reports_and_predict_round_trips(tmp_path, sst2_files, pretrained):
  workdir = str(tmp_path / "full")
  final = finetune(workdir, sst2_files, pretrained)
  with open(os.path.join(workdir, "eval_report.json"), encoding="utf-8") as f:
    report = json.load(f)
  for key in ("eval/accuracy", "eval/f1", "eval/precision", "eval/recall", "eval/roc_auc",
              "eval/f1/0", "eval/f1/1"):
    assert key in report["metrics"], key
  assert np.sum(report["confusion_matrix"]["matrix"]) == 60
  with open(os.path.join(workdir, "confusion_matrix.png"), "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"
  assert final["best/step"] == report["step"]
  with open(os.path.join(workdir, "metrics.jsonl"), encoding="utf-8") as f:
    assert any("eval/accuracy" in json.loads(line) for line in f)

  # The best checkpoint on the validation file, through the CLI, gives the report's numbers.
  output = str(tmp_path / "predictions.jsonl")
  result = run_predict(workdir, sst2_files["valid"], output, "--text_column=sentence",
                       "--label_column=label")
  assert result.returncode == 0, result.stderr
  with open(output + ".metrics.json", encoding="utf-8") as f:
    cli_metrics = json.load(f)["metrics"]
  assert cli_metrics["eval/accuracy"] == pytest.approx(report["metrics"]["eval/accuracy"])
  with open(output, encoding="utf-8") as f:
    rows = [json.loads(line) for line in f]
  assert len(rows) == 60
  for row in rows:
    assert row["label"] in ("0", "1")
    assert row["p_0"] + row["p_1"] == pytest.approx(1.0, abs=1e-5)
    assert row["label"] == ("1" if row["p_1"] > row["p_0"] else "0")

  # Plain text lines in, CSV out.
  lines = tmp_path / "new.txt"
  lines.write_text("a gorgeous , witty film\n\nthe worst movie of the year\n")
  output_csv = str(tmp_path / "out.csv")
  result = run_predict(workdir, str(lines), output_csv)
  assert result.returncode == 0, result.stderr
  with open(output_csv, encoding="utf-8", newline="") as f:
    table = list(csv.DictReader(f))
  # One row per line, the blank one too (empty prediction, counted).
  assert [r["text"] for r in table] == ["a gorgeous , witty film", "", "the worst movie of the year"]
  assert [r["label"] == "" for r in table] == [False, True, False]
  assert "note: 1 of 3 rows have an empty text" in result.stderr


def test_predict_cleans_texts_as_training_did(tmp_path, sst2_files, pretrained):
  """A model trained on markup-stripped text classifies "<b>text</b>" as it does "text"."""
  workdir = str(tmp_path / "clean")
  finetune(workdir, sst2_files, pretrained, data__clean="markup,whitespace")
  with open(sst2_files["valid"], encoding="utf-8") as f:
    rows = [line.rstrip("\n").split("\t") for line in f][1:]
  marked = write_tsv(tmp_path / "marked.tsv", [(f"<p><b>{text}</b>  </p>", y) for text, y in rows])
  outputs = {}
  for name, path in (("plain", sst2_files["valid"]), ("marked", marked)):
    outputs[name] = str(tmp_path / f"{name}.jsonl")
    result = run_predict(workdir, path, outputs[name], "--text_column=sentence")
    assert result.returncode == 0, result.stderr
  plain, marked_rows = ([json.loads(line) for line in open(outputs[k], encoding="utf-8")]
                        for k in ("plain", "marked"))
  assert [r["p_1"] for r in marked_rows] == pytest.approx([r["p_1"] for r in plain], abs=1e-6)
  assert marked_rows[0]["sentence"].startswith("<p><b>")  # The output shows the input as given.


def run_predict(workdir, input_path, output_path, *flags):
  return subprocess.run([
      sys.executable, "-m", "lm.predict", f"--workdir={workdir}", f"--input={input_path}",
      f"--output={output_path}", *flags
  ],
                        cwd=REPO,
                        capture_output=True,
                        text=True,
                        timeout=300)


def run_main(*args):
  return subprocess.run([sys.executable, "-m", "lm.main", *args],
                        cwd=REPO,
                        capture_output=True,
                        text=True,
                        timeout=300)


def test_bad_labeled_data_gets_one_clear_error(tmp_path, sst2_files):
  good = [("a fine film", 1), ("dull", 0)] * 20
  files = {
      "outside": write_tsv(tmp_path / "outside.tsv", good + [("so so", 2)]),
      "empty": write_tsv(tmp_path / "empty.tsv", good[:5] + [(" ", 1)] + good),
  }
  common = [
      "--config=experiments/sst2.py:finetune,smoke", "--config.data.tokenizer=char",
      f"--workdir={tmp_path / 'run'}"
  ]
  result = run_main(*common, f"--config.data.source={sst2_files['train']}",
                    "--config.data.label_field=polarity")
  assert_clear_error(result, "train.tsv", "polarity", "config.data.label_field")
  result = run_main(*common, f"--config.data.source={files['outside']}")
  assert_clear_error(result, "outside.tsv", "line 42", "'2'", "config.data.labels")
  result = run_main(*common, f"--config.data.source={files['empty']}")
  assert_clear_error(result, "empty.tsv", "line 7", "empty")
  result = run_main(*common, f"--config.data.source={sst2_files['train']}",
                    f"--config.data.valid_source={files['outside']}")
  assert_clear_error(result, "outside.tsv", "line 42", "'2'", "config.data.labels")
  # Nothing written that a corrected rerun would pick up (the label set least of all).
  assert not (tmp_path / "run" / "labels.json").exists()


def test_checkpoint_with_another_architecture_is_refused(tmp_path, sst2_files, pretrained):
  result = run_main("--config=experiments/sst2.py:finetune,smoke", "--config.data.tokenizer=char",
                    f"--workdir={tmp_path / 'run'}", f"--config.data.source={sst2_files['train']}",
                    f"--config.init_from={pretrained}", "--config.model.num_layers=3")
  assert_clear_error(result, "config.model.num_layers=3", "config.init_from", "num_layers=2")
  with pytest.raises(UserError, match="config.init_from"):
    config = config_for("finetune", data__source=sst2_files["train"])
    config.init_from = str(tmp_path / "nothing here")
    trainer.train_and_evaluate(config, str(tmp_path / "run2"))


def test_rotary_backbone_fine_tunes_at_a_longer_context(tmp_path, sst2_files, pretrained):
  """Rotary positions hold no parameter per position: a backbone pretrained on 32-token windows
  fine-tunes at 64 (as imdb.py does from 256 to 512); a learned table of 32 rows is refused."""
  workdir = str(tmp_path / "longer")
  finetune(workdir, sst2_files, pretrained, model__max_len=64)
  assert checkpoints.load_config(workdir)["model"]["max_len"] == 64
  init_from.check_architecture({"positions": "rope", "max_len": 32},
                               {"positions": "rope", "max_len": 64}, "dir")
  with pytest.raises(UserError, match=r"config.model.max_len=64 .*\(max_len=32\)"):
    init_from.check_architecture({"positions": "learned", "max_len": 32},
                                 {"positions": "learned", "max_len": 64}, "dir")


def test_sft_trains_a_decoder_on_responses(tmp_path):
  from lm import defaults  # pylint: disable=g-import-not-at-top
  from lm.experiment_args import shrink_to_smoke  # pylint: disable=g-import-not-at-top
  pairs = [{
      "prompt": f"Q: what is {a} plus {b}? A: ",
      "response": str(a + b)
  } for a in range(12) for b in range(12)]
  path = tmp_path / "pairs.jsonl"
  path.write_text("".join(json.dumps(p) + "\n" for p in pairs))
  config = defaults.base_config()
  config.task.kind = "sft"
  config.data.source = str(path)
  config.data.valid_fraction = 0.1
  config.data.byte_fallback = False  # The vocabulary: the ~30 characters of the pairs.
  shrink_to_smoke(config)
  config.model.max_len = 32
  config.train.sample_prompt = ""
  final = trainer.train_and_evaluate(config, str(tmp_path / "run"))
  # Only response tokens (1-2 digits and EOS) are predicted: a uniform model over the vocabulary
  # would have loss ln(V); the first steps already beat it.
  assert np.isfinite(final["eval/loss"]) and final["eval/loss"] < np.log(30)
  config.model.causal = False
  with pytest.raises(UserError, match="config.model.causal"):
    trainer.train_and_evaluate(config, str(tmp_path / "encoder"))


def test_resumed_finetune_matches_uninterrupted_run(tmp_path, sst2_files, pretrained):
  straight = finetune(str(tmp_path / "a"), sst2_files, pretrained, train__keep_checkpoints=2)
  workdir = str(tmp_path / "b")
  finetune(workdir, sst2_files, pretrained, train__keep_checkpoints=2)
  # As if the run had died after its step-2 checkpoint: bucketed batches, the best-checkpoint
  # record and the optimizer state must all continue exactly.
  import shutil  # pylint: disable=g-import-not-at-top
  shutil.rmtree(os.path.join(workdir, "checkpoints", "4"))
  assert sorted(os.listdir(os.path.join(workdir, "checkpoints")))[0] == "2"
  resumed = finetune(workdir, sst2_files, pretrained, train__keep_checkpoints=2)
  for key in ("train/loss", "eval/loss", "eval/accuracy", "best/step"):
    assert resumed[key] == straight[key], key
