"""Every experiment file builds its config, and trains and evaluates one step under `smoke`."""

import importlib.util
import pathlib

import pytest

from lm.errors import UserError
from lm.training import trainer
from tests.conftest import REPO

EXPERIMENTS = sorted(p for p in (REPO / "experiments").glob("*.py") if p.name != "__init__.py")


def load(path: pathlib.Path):
  spec = importlib.util.spec_from_file_location(path.stem, path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def test_experiments_exist():
  assert EXPERIMENTS


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.stem)
def test_docstring_states_purpose_command_runtime_and_metric(path):
  doc = load(path).__doc__
  assert doc and "python -m lm.main --config=experiments/" in doc and "Expected" in doc


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.stem)
def test_smoke_run_of_one_step(path, tmp_path):
  config = load(path).get_config("smoke")
  config.train.steps = 1
  config.train.sample_prompt = ""
  final = trainer.train_and_evaluate(config, str(tmp_path / path.stem))
  assert final["eval/loss"] > 0


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.stem)
def test_unknown_argument_is_refused(path):
  with pytest.raises(UserError, match="unknown experiment argument"):
    load(path).get_config("no_such_arg")
