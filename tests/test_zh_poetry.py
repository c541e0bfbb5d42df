"""experiments/zh_poetry.py: every stage builds a valid config; smoke pretraining, sampling from a
title, and the 3-way classifier fine-tuned from it run end to end on the real corpus."""

import json
import os

import numpy as np
import pytest

from experiments import zh_poetry
from lm import config_checks
from lm.errors import UserError
from lm.sampling import generate_text
from lm.training import checkpoints, trainer


@pytest.mark.parametrize("arg", ["", "pretrain", "classify", "smoke", "classify,smoke"])
def test_training_stages_are_valid_configs(arg):
  config = zh_poetry.get_config(arg)
  if arg == "classify":  # It fine-tunes the pretraining: refused without it.
    with pytest.raises(UserError, match=r"config.init_from is empty"):
      config_checks.validate_config(config)
    config.init_from = "runs/zh_pretrain"
  config_checks.validate_config(config)
  assert config.data.byte_fallback and config.data.character_coverage >= 0.98
  if "classify" in arg:
    assert config.data.label_field == "@file" and config.data.txt_unit == "entry"
    assert "escapes" in config.data.clean
    weights = [float(w) for w in config.task.class_weights.split(",")]
    assert len(weights) == len(config.data.labels.split(",")) == 3


def test_prepare_stage_is_a_valid_prepare_config():
  from lm.data.prepare import config as prepare  # pylint: disable=g-import-not-at-top
  config = zh_poetry.get_config("prepare")
  prepare.validate(config)
  assert config.reader.txt_unit == "entry" and config.clean.escapes and not config.clean.nfkc
  assert config.tokenizer.character_coverage == 0.9995 and config.tokenizer.byte_fallback


def test_two_stages_are_refused():
  with pytest.raises(UserError, match="takes one of prepare, pretrain, classify"):
    zh_poetry.get_config("pretrain,classify")


def test_smoke_pretrain_sample_and_classify(tmp_path):
  pretrain = zh_poetry.get_config("smoke")
  pretrain.train.update(steps=2, sample_prompt="")
  pretrained = str(tmp_path / "pretrain")
  assert trainer.train_and_evaluate(pretrain, pretrained)["eval/bpb"] > 0
  model_config, params, tokenizer = checkpoints.load_for_inference(pretrained)
  sample, = generate_text(model_config, params, tokenizer, [zh_poetry.PROMPT],
                          max_new_tokens=8, temperature=1.0, top_k=0, top_p=1.0, seed=0)
  assert sample.startswith(zh_poetry.PROMPT)

  classify = zh_poetry.get_config("classify,smoke")
  classify.train.steps = 2
  classify.init_from = pretrained
  workdir = str(tmp_path / "classify")
  final = trainer.train_and_evaluate(classify, workdir)
  assert 0.0 <= final["eval/accuracy"] <= 1.0 and "eval/f1" in final
  with open(os.path.join(workdir, "eval_report.json"), encoding="utf-8") as f:
    report = json.load(f)
  assert report["confusion_matrix"]["labels"] == ["chinese", "tang300", "song100"]
  confusion = np.array(report["confusion_matrix"]["matrix"])
  # Every collection is in the held-out split, the prose most of all.
  assert confusion.shape == (3, 3) and (confusion.sum(axis=1) > 0).all()
  assert confusion.sum(axis=1).argmax() == 0
