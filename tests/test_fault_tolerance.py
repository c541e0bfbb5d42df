"""Faults during training (issue 8): kills, preemption signals, damaged checkpoints, full and
unwritable disks. Nothing committed is lost, and a resumed run ends bit for bit as an
uninterrupted one. benchmarks/fault_injection.py runs the same faults at scale."""

import errno
import logging
import os
import random
import shutil
import signal
import subprocess
import time

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

from benchmarks import fault_injection
from lm.errors import UserError
from lm.training import checkpoints, metrics_log, preemption, trainer
from tests.test_trainer import smoke_config


def final_params(workdir):
  checkpointer = checkpoints.Checkpointer(str(workdir), read_only=True)
  try:
    params, _ = checkpointer.restore_params(checkpointer.latest_step())
  finally:
    checkpointer.close()
  return jax.device_get(params)


def assert_same_params(a, b):
  assert jax.tree.structure(a) == jax.tree.structure(b)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(x, y)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
  """An uninterrupted 8-step run (checkpoints at 2, 4, 6, 8) and its final parameters."""
  workdir = tmp_path_factory.mktemp("reference") / "run"
  trainer.train_and_evaluate(smoke_config(steps=8), str(workdir))
  return workdir, final_params(workdir)


def test_sigkills_at_random_moments_then_resume_bit_for_bit(tmp_path):
  args = fault_injection.train_args(steps=30)
  reference = str(tmp_path / "reference")
  startup = fault_injection.reference_run(reference, args)
  outcome = fault_injection.sigkills(str(tmp_path / "killed"), reference, 3, random.Random(0),
                                     startup, args)
  assert outcome.injected == 3, outcome
  assert outcome.lost == 0 and outcome.mishandled == 0 and outcome.finished, outcome


@pytest.mark.parametrize("kind", fault_injection.DAMAGE)
def test_damaged_latest_checkpoint_is_moved_aside_and_the_one_before_used(
    tmp_path, reference, caplog, kind):
  workdir = tmp_path / "run"
  shutil.copytree(reference[0], workdir)
  fault_injection.damage(str(workdir / "checkpoints" / "8"), kind)
  os.makedirs(workdir / "checkpoints" / "9.orbax-checkpoint-tmp" / "state")  # A killed save's.
  with caplog.at_level(logging.WARNING):
    trainer.train_and_evaluate(smoke_config(steps=8), str(workdir))
  assert "checkpoints/8 is damaged" in caplog.text and "resumed from step 6" in caplog.text
  names = os.listdir(workdir / "checkpoints")
  assert [n for n in names if n.startswith("8.damaged-")], names
  assert not [n for n in names if "orbax-checkpoint-tmp" in n], names
  assert "8" in names  # Trained again from step 6.
  assert_same_params(final_params(workdir), reference[1])


def test_no_restorable_checkpoint_is_an_error_that_moves_nothing(tmp_path):
  checkpointer = checkpoints.Checkpointer(str(tmp_path))
  state = {"w": jnp.arange(4.0)}
  for step in (1, 2):
    checkpointer.save(step, state, {}, {})
  checkpointer.wait_until_finished()
  device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  wrong = {"w": jax.ShapeDtypeStruct((5,), jnp.float32, sharding=device)}  # A changed model.
  with pytest.raises(UserError, match=r"checkpoints/2: the checkpoint cannot be restored"):
    checkpointer.restore_latest(wrong)
  assert sorted(os.listdir(tmp_path / "checkpoints")) == ["1", "2"]
  right = {"w": jax.ShapeDtypeStruct((4,), jnp.float32, sharding=device)}
  step, restored, _ = checkpointer.restore_latest(right)
  assert step == 2 and np.array_equal(restored["w"], state["w"])
  checkpointer.close()


class _SignalAt:
  """Sends signals to this process when the progress bar reaches `step` (the loop then checks
  the flag before the next step)."""

  def __init__(self, monkeypatch, step, *signums):
    self.step, self.signums, self.count = step, signums, 0
    advance = metrics_log.MetricsLog.advance

    def advance_and_signal(log, steps):
      advance(log, steps)
      self.count += steps
      if self.count == self.step:
        for signum in self.signums:
          os.kill(os.getpid(), signum)

    monkeypatch.setattr(metrics_log.MetricsLog, "advance", advance_and_signal)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_saves_the_current_step_and_the_rerun_resumes_there(
    tmp_path, reference, monkeypatch, signum):
  workdir = tmp_path / "run"
  handlers = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
  with monkeypatch.context() as patch:
    _SignalAt(patch, 3, signum)
    with pytest.raises(preemption.Preempted) as stopped:
      trainer.train_and_evaluate(smoke_config(steps=8), str(workdir))
  assert (stopped.value.step, stopped.value.signum) == (3, signum)
  assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == handlers
  assert checkpoints.Checkpointer(str(workdir), read_only=True).latest_step() == 3
  trainer.train_and_evaluate(smoke_config(steps=8), str(workdir))
  assert_same_params(final_params(workdir), reference[1])


def test_second_ctrl_c_aborts_at_once(tmp_path, monkeypatch):
  _SignalAt(monkeypatch, 3, signal.SIGINT, signal.SIGINT)
  with pytest.raises(KeyboardInterrupt):
    trainer.train_and_evaluate(smoke_config(steps=8), str(tmp_path / "run"))


def test_sigterm_to_the_cli_exits_143_after_saving(tmp_path):
  workdir = str(tmp_path / "run")
  args = fault_injection.train_args(steps=2000)  # Far more than it gets to run.
  run = fault_injection.Run(workdir, args)
  try:
    assert run.wait_until(lambda: fault_injection.metric_lines(workdir) >= 2, poll=0.01)
    run.signal(signal.SIGTERM)
    assert run.wait() == 128 + signal.SIGTERM, run.output()[-2000:]
    text = run.output()
  finally:
    run.close()
  step = fault_injection.newest(workdir)
  assert f"Preempted at step {step}: checkpoint saved" in text
  assert "Traceback" not in text
  run = fault_injection.Run(workdir, args)
  try:
    assert run.wait_until(lambda: run.resumed_from() != "?", poll=0.05)
    assert run.resumed_from() == step
  finally:
    run.close()


def test_workdir_under_a_file_is_refused_before_training(tmp_path):
  (tmp_path / "file").write_text("x")
  with pytest.raises(UserError, match=r"--workdir=.*/file/run: cannot create it"):
    trainer.train_and_evaluate(smoke_config(), str(tmp_path / "file" / "run"))


def test_read_only_workdir_is_refused_before_training(tmp_path):
  workdir = tmp_path / "run"
  workdir.mkdir()
  try:
    with fault_injection._read_only(str(workdir)):  # pylint: disable=protected-access
      with pytest.raises(UserError, match=r"--workdir=.*/run: cannot write in"):
        trainer.train_and_evaluate(smoke_config(), str(workdir))
  except (FileNotFoundError, subprocess.CalledProcessError):
    pytest.skip("as root, needs chattr +i")
  assert os.listdir(workdir) == []


def test_too_little_free_space_is_refused_before_training(tmp_path, monkeypatch):
  usage = shutil.disk_usage(tmp_path)
  monkeypatch.setattr(checkpoints.shutil, "disk_usage",
                      lambda path: usage._replace(free=100_000))
  workdir = tmp_path / "run"
  with pytest.raises(UserError,
                     match=r"--workdir=.*/run: 100,000 bytes free on its disk, but training "
                     r"needs about [\d,]+ \(two checkpoints of [\d,]+ bytes"):
    trainer.train_and_evaluate(smoke_config(), str(workdir))
  assert not (workdir / "checkpoints").exists() and not (workdir / "metrics.jsonl").exists()


@pytest.mark.parametrize("error", [
    OSError(errno.ENOSPC, "No space left on device"),
    ValueError("RESOURCE_EXHAUSTED: Error writing \"x\": Failed to write 4 bytes to file 9: No "
               "space left on device [os_error_code='28']"),  # As tensorstore reports it.
])
def test_disk_full_during_a_save_keeps_the_previous_checkpoint(tmp_path, reference, monkeypatch,
                                                               error):
  write = ocp.JsonCheckpointHandler._save_fn  # pylint: disable=protected-access

  async def failing_write(handler, item, directory):
    if directory.parent.name.startswith("6."):
      raise error
    return await write(handler, item, directory)

  workdir = tmp_path / "run"
  with monkeypatch.context() as patch:
    patch.setattr(ocp.JsonCheckpointHandler, "_save_fn", failing_write)
    with pytest.raises(UserError,
                       match=r"--workdir=.*/run: saving the checkpoint of step 6 failed \(No "
                       r"space left on device\); its partial files were removed and the "
                       r"previous checkpoint \(step 4\) is intact"):
      trainer.train_and_evaluate(smoke_config(steps=8), str(workdir))
  assert sorted(os.listdir(workdir / "checkpoints")) == ["2", "4"]
  trainer.train_and_evaluate(smoke_config(steps=8), str(workdir))  # Space freed: resumes.
  assert_same_params(final_params(workdir), reference[1])



def test_sigterm_to_one_of_two_processes_stops_both_at_the_same_step(tmp_path, monkeypatch):
  """JAX's preemption service tells every process; all save the same step and exit 143."""
  from tests import test_multihost  # pylint: disable=g-import-not-at-top
  args = tuple(a for a in test_multihost.ARGS if not a.startswith("--config.train.steps="))
  monkeypatch.setattr(test_multihost, "ARGS", (*args, "--config.train.steps=5000"))
  workdir = str(tmp_path / "run")
  processes = test_multihost.launch_two_processes(workdir)
  try:
    deadline = time.time() + 300
    while fault_injection.metric_lines(workdir) < 2 and time.time() < deadline:
      assert all(p.poll() is None for p in processes), processes[0].communicate()[0][-3000:]
      time.sleep(0.05)
    processes[1].send_signal(signal.SIGTERM)
    outputs = [p.communicate(timeout=300)[0] for p in processes]
  finally:
    for p in processes:
      if p.poll() is None:
        p.kill()
  assert [p.returncode for p in processes] == [128 + signal.SIGTERM] * 2, outputs[0][-3000:]
  step = fault_injection.newest(workdir)
  for output in outputs:
    assert f"Preempted at step {step}: checkpoint saved" in output
