"""Two processes on localhost (4 fake CPU devices each) train like one process with 8 devices,
through a SIGKILL of both and a resume: JAX's multi-process runtime with CPU collectives."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np

from tests.conftest import REPO, xla_flags

ARGS = ("--config.train.steps=120", "--config.train.checkpoint_every=40",
        "--config.train.eval_every=120", "--config.train.log_every=10",
        "--config.train.batch_size=8", "--config.train.sample_prompt=")


def command(workdir, *extra):
  return [
      sys.executable, "-m", "lm.main", "--config=experiments/shakespeare_char.py:cpu,smoke",
      f"--workdir={workdir}", *ARGS, *extra
  ]


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def launch_two_processes(workdir):
  port = free_port()
  env = {**os.environ, "XLA_FLAGS": xla_flags(4)}
  distributed = (f"--config.distributed.coordinator_address=localhost:{port}",
                 "--config.distributed.num_processes=2")
  return [
      subprocess.Popen(command(workdir, *distributed, f"--config.distributed.process_id={i}"),
                       cwd=REPO,
                       env=env,
                       stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT,
                       text=True) for i in range(2)
  ]


def finish(processes):
  outputs = [p.communicate(timeout=600)[0] for p in processes]
  for p, output in zip(processes, outputs):
    assert p.returncode == 0, output[-3000:]
  return outputs


def loss_curve(workdir):
  with open(os.path.join(workdir, "metrics.jsonl"), encoding="utf-8") as f:
    records = [json.loads(line) for line in f]
  return {r["step"]: r["train/loss"] for r in records}, records[-1]["eval/loss"]


def test_two_processes_killed_and_resumed_match_one_process(tmp_path):
  single, multi = str(tmp_path / "single"), str(tmp_path / "multi")
  env = {**os.environ, "XLA_FLAGS": xla_flags(8)}
  subprocess.run(command(single), cwd=REPO, env=env, check=True, capture_output=True)

  processes = launch_two_processes(multi)
  first = os.path.join(multi, "checkpoints", "40", "commit_success.txt")
  deadline = time.time() + 300
  while not os.path.exists(first) and time.time() < deadline:
    assert all(p.poll() is None for p in processes), [p.communicate()[0][-3000:] for p in processes]
    time.sleep(0.005)
  for p in processes:
    p.send_signal(signal.SIGKILL)
  assert [p.wait() for p in processes] == [-signal.SIGKILL] * 2, "finished before the kill"
  assert not os.path.exists(os.path.join(multi, "checkpoints", "120"))

  outputs = finish(launch_two_processes(multi))
  assert "Resuming from step" in outputs[0]
  assert "2 process(es)" not in outputs[0]  # The run description is printed on a fresh start.
  expected, expected_eval = loss_curve(single)
  got, got_eval = loss_curve(multi)
  assert sorted(got) == sorted(expected) == list(range(10, 121, 10))
  np.testing.assert_allclose([got[s] for s in sorted(got)], [expected[s] for s in sorted(got)],
                             rtol=1e-4)
  assert abs(got_eval / expected_eval - 1) < 1e-4
