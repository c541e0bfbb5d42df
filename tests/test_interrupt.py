"""Ctrl-C anywhere in a command ends with one line and exit status 130, never a traceback."""

import os
import signal
import subprocess
import sys
import time

from tests.conftest import REPO


def start(*args):
  return subprocess.Popen([sys.executable, "-m", *args], cwd=REPO, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)


def interrupt_when(process, ready, timeout=300):
  """Sends SIGINT once `ready()` holds; returns (exit status, stdout, stderr)."""
  deadline = time.monotonic() + timeout
  while not ready() and process.poll() is None and time.monotonic() < deadline:
    time.sleep(0.1)
  process.send_signal(signal.SIGINT)
  out, err = process.communicate(timeout=timeout)
  return process.returncode, out, err


def test_ctrl_c_while_preparing_data(tmp_path):
  corpus = tmp_path / "corpus.txt"
  corpus.write_text("".join(f"line {i} of a corpus that takes a while to read\n"
                            for i in range(200_000)))
  workdir = tmp_path / "prepared"
  process = start("lm.data.prepare", "--config=experiments/data/zh_fortunes.py:smoke",
                  f"--workdir={workdir}", f"--config.inputs={corpus}",
                  "--config.reader.txt_unit=line", "--processes=2")
  code, _, err = interrupt_when(process, lambda: workdir.exists())
  assert code == 130, err
  assert "Traceback" not in err and err.strip().count("\n") == 0, err


def test_ctrl_c_before_training_starts(tmp_path):
  workdir = tmp_path / "run"
  process = start("lm.main", "--config=experiments/shakespeare_char.py:cpu,smoke",
                  f"--workdir={workdir}", "--config.train.steps=100000")
  code, _, err = interrupt_when(process, lambda: (workdir / "tokenizer").exists())
  assert code == 130, err
  assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err


def test_a_closed_pipe_ends_quietly(tmp_path):
  """`python -m lm.sweep ... --launcher=print | head -1`: the reader is gone before the output."""
  process = start("lm.sweep", "--config=experiments/ablate_architecture.py",
                  f"--workdir={tmp_path / 'sweep'}", "--launcher=print")
  process.stdout.close()  # Every write to stdout now fails with EPIPE.
  err = process.stderr.read()
  assert process.wait(timeout=300) == 128 + signal.SIGPIPE
  assert err == ""


def test_a_swallowed_ctrl_c_stops_training_at_its_first_step(monkeypatch):
  """Python drops a KeyboardInterrupt raised inside a garbage-collection callback (JAX has one):
  the Ctrl-C is remembered, and the training loop's handler takes it up."""
  from lm import runtime  # pylint: disable=g-import-not-at-top
  from lm.training import preemption  # pylint: disable=g-import-not-at-top
  monkeypatch.setattr(runtime, "_interrupted", True)
  flag = preemption.SignalFlag()
  flag.install()
  try:
    assert flag.requested(1) and flag.signum == signal.SIGINT
  finally:
    flag.restore()
