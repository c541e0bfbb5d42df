"""config.train.steps_per_call: several optimizer steps in one jitted call (a lax.scan) train
exactly as one step per call does, under both layouts, through a resume and a non-finite step."""

import os
import shutil

import jax
import numpy as np
import pytest

from experiments import sst2
from lm import config_checks
from lm.errors import UserError
from lm.training import trainer
from tests.test_nonfinite import saved_params, saved_steps
from tests.test_trainer import read_metrics, smoke_config


def config_with(steps_per_call, **train):
  """12 steps; metrics read at 5 (checkpoint), 6 (log), 10 (checkpoint) and 12."""
  return smoke_config(steps=12,
                      log_every=6,
                      eval_every=12,
                      checkpoint_every=5,
                      keep_checkpoints=5,
                      steps_per_call=steps_per_call,
                      **train)


def calls(start, train_cfg):
  """The number of steps in each call of a run from step `start`."""
  lengths, step = [], start
  while step < train_cfg.steps:
    lengths.append(trainer._steps_this_call(step, train_cfg))  # pylint: disable=protected-access
    step += lengths[-1]
  return lengths


def test_calls_end_at_multiples_of_steps_per_call_and_where_metrics_are_read():
  train_cfg = config_with(4).train
  assert calls(0, train_cfg) == [4, 1, 1, 2, 2, 2]  # 0-4, 4-5, 5-6, 6-8, 8-10, 10-12
  assert calls(5, train_cfg) == [1, 2, 2, 2]  # A resumed run groups its steps the same way.
  assert calls(0, config_with(1).train) == [1] * 12


@pytest.mark.parametrize("use_pmap", [False, True])
def test_several_steps_per_call_train_exactly_as_one(tmp_path, use_pmap):
  results = {}
  for per_call in (1, 4):
    config = config_with(per_call)
    config.mesh.use_pmap = use_pmap
    workdir = str(tmp_path / str(per_call))
    final = trainer.train_and_evaluate(config, workdir)
    results[per_call] = (read_metrics(workdir), final, saved_params(workdir, 12))
  (records_1, final_1, params_1), (records_4, final_4, params_4) = results[1], results[4]
  assert [r["step"] for r in records_4] == [6, 12]
  for one, several in zip(records_1, records_4):
    assert several["train/loss"] == one["train/loss"]
    assert several["train/learning_rate"] == one["train/learning_rate"]
  assert final_4["eval/loss"] == final_1["eval/loss"]
  jax.tree.map(np.testing.assert_array_equal, params_4, params_1)


def test_resume_between_calls_matches_the_uninterrupted_run(tmp_path):
  workdir = str(tmp_path / "run")
  straight = trainer.train_and_evaluate(config_with(4), workdir)
  straight_params = saved_params(workdir, 12)
  for step in ("10", "12"):  # As if the run had died after the step-5 checkpoint.
    shutil.rmtree(os.path.join(workdir, "checkpoints", step))
  resumed = trainer.train_and_evaluate(config_with(4), workdir)
  assert resumed["eval/loss"] == straight["eval/loss"]
  assert resumed["train/loss"] == straight["train/loss"]
  jax.tree.map(np.testing.assert_array_equal, saved_params(workdir, 12), straight_params)


def test_a_non_finite_step_inside_a_call_is_named_and_nothing_after_it_is_saved(tmp_path):
  workdir = str(tmp_path / "run")
  # Step 7 runs inside the call 6-8; the flags are read at step 10, before its checkpoint.
  with pytest.raises(trainer.TrainingDiverged, match=r"at step 7 "):
    trainer.train_and_evaluate(config_with(4, debug_nonfinite_step=7), workdir)
  assert saved_steps(workdir) == [5]
  assert [r["step"] for r in read_metrics(workdir)] == [6]


def test_batches_padded_to_their_own_length_are_refused():
  config = sst2.get_config("no_pretrain,smoke")
  config.train.steps_per_call = 2
  with pytest.raises(UserError, match=r"config.train.steps_per_call=2 needs batches of one shape"):
    config_checks.validate_config(config)
