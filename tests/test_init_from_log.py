"""A run says what it was initialized from; a fine-tuning config refuses to start without it."""

import pytest

from lm import defaults
from lm.errors import UserError
from lm.experiment_args import shrink_to_smoke
from lm.training import trainer

TEXT = "the quick brown fox jumps over the lazy dog. a good film. a bad film.\n" * 40


def smoke_config(**sections):
  config = defaults.base_config()
  shrink_to_smoke(config)
  config.train.sample_prompt = ""
  for section, values in sections.items():
    config[section].update(values) if isinstance(values, dict) else setattr(config, section,
                                                                            values)
  return config


@pytest.fixture(scope="module")
def files(tmp_path_factory):
  directory = tmp_path_factory.mktemp("data")
  (directory / "text.txt").write_text(TEXT)
  rows = [("a good film", 1), ("a bad film", 0), ("good, good", 1), ("bad, bad", 0)] * 6
  (directory / "labels.tsv").write_text("sentence\tlabel\n" +
                                        "".join(f"{t}\t{l}\n" for t, l in rows))
  return directory


def test_random_and_pretrained_initialization_are_logged(tmp_path, files, capsys):
  data = {"source": str(files / "text.txt"), "tokenizer": "char"}
  pretrain = smoke_config(data=data, task={"kind": "masked_lm"}, model={"causal": False})
  trainer.train_and_evaluate(pretrain, str(tmp_path / "pretrain"))
  out = capsys.readouterr().out
  assert "Initialized: random weights (seed 0; config.init_from is empty)" in out

  finetune = smoke_config(data={"source": str(files / "labels.tsv"), "text_field": "sentence",
                                "valid_fraction": 0.25},
                          task={"kind": "classification"},
                          model={"causal": False},
                          init_from=str(tmp_path / "pretrain"))
  trainer.train_and_evaluate(finetune, str(tmp_path / "finetune"))
  line, = [l for l in capsys.readouterr().out.splitlines() if l.startswith("Initialized")]
  assert line.startswith(f"Initialized from config.init_from={tmp_path / 'pretrain'} (step 4): ")
  assert "parameter arrays loaded" in line
  # The classifier head is new; the (tied) masked-LM head has no parameters of its own.
  assert line.endswith("started fresh: classifier/bias, classifier/kernel; not used from the "
                       "checkpoint: none")


def test_a_finetuning_config_refuses_to_start_without_init_from(tmp_path, files):
  config = smoke_config(data={"source": str(files / "text.txt"), "tokenizer": "char"},
                        init_required=True)
  with pytest.raises(UserError, match=r"config.init_from is empty, but this config fine-tunes"
                     r" .*--config.init_from=<the pretraining workdir>.*"
                     r"--config.init_required=False"):
    trainer.train_and_evaluate(config, str(tmp_path / "run"))
  assert not (tmp_path / "run").exists()
  config.init_required = False
  trainer.train_and_evaluate(config, str(tmp_path / "run"))


def test_too_short_a_run_names_warmup_steps_too(tmp_path, files):
  config = smoke_config(data={"source": str(files / "text.txt"), "tokenizer": "char"})
  config.train.update(steps=3, warmup_steps=5)
  with pytest.raises(UserError, match=r"warmup_steps=5: must be <= config.train.steps=3; for a "
                     r"shorter run lower both, e.g. --config.train.steps=3 "
                     r"--config.train.warmup_steps=0"):
    trainer.train_and_evaluate(config, str(tmp_path / "run"))


def test_a_finished_run_is_continued_as_the_error_says(tmp_path, files):
  config = smoke_config(data={"source": str(files / "text.txt"), "tokenizer": "char"})
  first = str(tmp_path / "first")
  trainer.train_and_evaluate(config, first)
  config.train.steps = 8
  with pytest.raises(UserError, match=r"train.steps: saved 4, now 8\. To train a run further, "
                     r"start a new workdir from it: --workdir=NEW "
                     rf"--config.init_from={first} --config.train.steps=MORE"):
    trainer.train_and_evaluate(config, first)
  config.init_from = first
  final = trainer.train_and_evaluate(config, str(tmp_path / "more"))
  assert final["best/step"] <= 8
