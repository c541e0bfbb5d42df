"""A run started in one directory resumes, generates and fine-tunes from any other: its saved
config names its files by absolute paths, and the experiment files name theirs so too."""

import shutil

from lm import config_file
from lm.training import checkpoints, trainer
from tests.conftest import REPO


def test_a_run_resumes_from_another_directory(tmp_path, monkeypatch, capsys):
  start, elsewhere = tmp_path / "start", tmp_path / "elsewhere"
  start.mkdir()
  elsewhere.mkdir()
  shutil.copy(REPO / "data" / "tinyshakespeare" / "input.txt", start / "plays.txt")
  experiment = f"{REPO / 'experiments' / 'shakespeare_char.py'}:cpu,smoke"

  def config():
    loaded = config_file.load(experiment)
    loaded.data.source = "plays.txt"  # Relative to where the command runs.
    loaded.train.sample_prompt = ""
    return loaded

  workdir = str(tmp_path / "run")
  monkeypatch.chdir(start)
  straight = trainer.train_and_evaluate(config(), workdir)
  saved = checkpoints.load_config(workdir)
  assert saved["data"]["source"] == str(start / "plays.txt")
  # As if killed after step 2, then resumed with the saved config from another directory.
  shutil.rmtree(tmp_path / "run" / "checkpoints" / "4")
  monkeypatch.chdir(elsewhere)
  resumed_config = config()
  resumed_config.data.source = saved["data"]["source"]  # The command as the run saved it.
  resumed = trainer.train_and_evaluate(resumed_config, workdir)
  assert resumed["eval/loss"] == straight["eval/loss"]
  assert "Resuming from step 2" in capsys.readouterr().out
