"""`python -m lm.main` answers user mistakes with one clear line (exit 2), never a traceback."""

import subprocess
import sys

import pytest

from tests.conftest import REPO

SMOKE = "--config=experiments/shakespeare_char.py:cpu,smoke"


def run_main(*args, cwd=REPO):
  return subprocess.run([sys.executable, "-m", "lm.main", *args],
                        cwd=cwd,
                        capture_output=True,
                        text=True,
                        timeout=300)


def assert_clear_error(result, *fragments):
  assert result.returncode == 2, result.stderr
  assert "Traceback" not in result.stderr, result.stderr
  error_lines = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
  assert len(error_lines) == 1, result.stderr
  for fragment in fragments:
    assert fragment in error_lines[0], error_lines[0]


@pytest.fixture
def data_files(tmp_path):
  empty = tmp_path / "empty.txt"
  empty.write_text("")
  undecodable = tmp_path / "latin1.txt"
  undecodable.write_bytes(b"good line\n" * 50 + b"caf\xe9 au lait\n" + b"more text\n" * 50)
  return {"empty": str(empty), "undecodable": str(undecodable)}


@pytest.mark.parametrize("overrides, fragments", [
    (["--config.data.source=/no/such/file.txt"], ["config.data.source", "/no/such/file.txt"]),
    (["--config.train.stepz=3"], ["unknown config key", "stepz", "steps"]),
    (["--config.model.num_heads=3"], ["config.model.num_heads", "do not divide embed_dim=32"]),
    (["--config.data.seq_len=64"], ["config.data.seq_len=64", "config.model.max_len=16"]),
    (["--config.train.steps=abc"], ["--config.train.steps=abc"]),
    (["--config.data.tokenizer=words"], ["config.data.tokenizer", "words"]),
])
def test_bad_config_values(tmp_path, overrides, fragments):
  assert_clear_error(run_main(SMOKE, f"--workdir={tmp_path / 'run'}", *overrides), *fragments)


def test_unknown_key_error_names_only_the_bad_override(tmp_path):
  result = run_main(SMOKE, f"--workdir={tmp_path / 'run'}", "--config.train.steps=3",
                    "--config.train.stpes=4", "--config.train.log_every=1")
  assert result.returncode == 2 and result.stderr == (
      "error: unknown config key in --config.train.stpes=4: stpes (did you mean steps?)\n")


def test_unknown_experiment_argument(tmp_path):
  result = run_main("--config=experiments/shakespeare_char.py:cpu,smok", f"--workdir={tmp_path}")
  assert_clear_error(result, "smok", "cpu, smoke")


def test_missing_config_file(tmp_path):
  result = run_main("--config=experiments/no_such_experiment.py", f"--workdir={tmp_path}")
  assert_clear_error(result, "experiments/no_such_experiment.py")


def test_empty_data_file(tmp_path, data_files):
  result = run_main(SMOKE, f"--workdir={tmp_path / 'run'}",
                    f"--config.data.source={data_files['empty']}")
  assert_clear_error(result, data_files["empty"], "empty")


def test_undecodable_bytes_error_or_replace(tmp_path, data_files):
  source = f"--config.data.source={data_files['undecodable']}"
  result = run_main(SMOKE, f"--workdir={tmp_path / 'strict'}", source)
  assert_clear_error(result, data_files["undecodable"], "line 51")
  replaced = run_main(SMOKE, f"--workdir={tmp_path / 'replace'}", source,
                      "--config.data.encoding_errors=replace", "--config.train.sample_prompt=")
  assert replaced.returncode == 0, replaced.stderr


def test_workdir_with_conflicting_config(tmp_path):
  workdir = f"--workdir={tmp_path / 'run'}"
  first = run_main(SMOKE, workdir, "--config.train.sample_prompt=")
  assert first.returncode == 0, first.stderr
  result = run_main(SMOKE, workdir, "--config.train.sample_prompt=", "--config.model.embed_dim=64")
  assert_clear_error(result, "different config", "model.embed_dim: saved 32, now 64")
