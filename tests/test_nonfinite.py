"""config.train.on_nonfinite: NaN gradients injected at a chosen step, under each policy."""

import math
import os
import shutil
import subprocess
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lm.errors import UserError
from lm.models.config import ModelConfig
from lm.models.transformer import Transformer
from lm.training import checkpoints, optimizer, steps, trainer
from tests.conftest import REPO
from tests.test_trainer import read_metrics, smoke_config


def saved_steps(workdir):
  return sorted(int(s) for s in os.listdir(os.path.join(workdir, "checkpoints")) if s.isdigit())


def saved_params(workdir, step):
  checkpointer = checkpoints.Checkpointer(workdir, read_only=True)
  try:
    return checkpointer.restore_params(step)[0]
  finally:
    checkpointer.close()


def all_finite(tree) -> bool:
  return all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(tree))


# --- The step ------------------------------------------------------------------------------------


def _state(tx):
  model = Transformer(ModelConfig(vocab_size=50, num_layers=2, num_heads=2, embed_dim=16,
                                  max_len=8))
  params = nn.meta.unbox(model.init(jax.random.PRNGKey(0), jnp.zeros((1, 8), jnp.int32))["params"])
  return steps.TrainState.create(apply_fn=model.apply, params=params, tx=tx)


def _batch():
  tokens = jax.random.randint(jax.random.PRNGKey(1), (4, 9), 0, 50)
  return {"inputs": tokens[:, :-1], "targets": tokens[:, 1:]}


@pytest.mark.parametrize("inject", [False, True])
def test_step_reports_finiteness_overall_and_per_parameter_group(inject):
  state = _state(optax.adam(1e-2))
  _, metrics = steps.train_step(state, _batch(), jax.random.PRNGKey(2),
                                {"inject_nan": np.bool_(inject)})
  assert steps.param_groups(state.params) == [
      "block_0", "block_1", "final_norm", "position_embed", "token_embed"
  ]
  assert bool(metrics[steps.FINITE]) is not inject
  assert metrics[steps.GROUPS].shape == (5,)
  assert np.all(np.asarray(metrics[steps.GROUPS]) != inject)


def test_skipped_step_keeps_parameters_and_moments_and_advances_the_counters():
  state = _state(optax.adam(1e-2))
  state, _ = steps.train_step(state, _batch(), jax.random.PRNGKey(2))  # Non-zero moments.
  new, metrics = steps.train_step(state, _batch(),
                                  jax.random.PRNGKey(3), {"inject_nan": np.bool_(True)},
                                  skip_nonfinite=True)
  assert not bool(metrics[steps.FINITE])
  jax.tree.map(np.testing.assert_array_equal, new.params, state.params)
  mu, nu = new.opt_state[0].mu, new.opt_state[0].nu
  jax.tree.map(np.testing.assert_array_equal, (mu, nu), (state.opt_state[0].mu,
                                                         state.opt_state[0].nu))
  assert int(new.step) == int(new.opt_state[0].count) == 2


def test_lr_scale_scales_the_learning_rate():
  rate = 10.0  # Large updates: their rounding against the parameters stays small.
  scaled_tx = lambda scale: optax.sgd(lambda count: rate * scale)
  state = _state(scaled_tx(1.0))  # Same state: a schedule's count.
  deltas = []
  for scale in (1.0, 0.5):
    new, metrics = steps.train_step(state, _batch(), jax.random.PRNGKey(2),
                                    {"lr_scale": np.float32(scale)},
                                    schedule=lambda count: rate,
                                    scaled_tx=scaled_tx)
    deltas.append(jax.tree.map(jnp.subtract, new.params, state.params))
    assert float(metrics["train/learning_rate"]) == pytest.approx(rate * scale)
  jax.tree.map(lambda full, half: np.testing.assert_allclose(half, 0.5 * full, rtol=1e-4,
                                                             atol=1e-6), *deltas)


# --- The policies, end to end ---------------------------------------------------------------------


@pytest.mark.parametrize("policy", [{"on_nonfinite": "stop"}, {
    "on_nonfinite": "rollback",
    "max_rollbacks": 0
}])
def test_stop_names_step_and_groups_and_keeps_the_last_good_checkpoint(tmp_path, policy):
  workdir = str(tmp_path / "run")
  config = smoke_config(steps=6, checkpoint_every=1, debug_nonfinite_step=3, **policy)
  groups = r"\(non-finite gradients or updates in block_0, block_1, final_norm, token_embed\)"
  with pytest.raises(trainer.TrainingDiverged, match=r"at step 3 " + groups) as error:
    trainer.train_and_evaluate(config, workdir)
  assert isinstance(error.value, UserError)
  if policy["on_nonfinite"] == "rollback":
    assert "after 0 rollback(s) (config.train.max_rollbacks=0)" in str(error.value)
  assert saved_steps(workdir) == [1, 2]
  assert all_finite(saved_params(workdir, 2))
  assert [r["step"] for r in read_metrics(workdir)] == [1, 2]


@pytest.mark.parametrize("use_pmap", [False, True])
def test_skip_drops_the_update_of_the_bad_step_and_counts_it(tmp_path, use_pmap):
  workdir = str(tmp_path / "run")
  config = smoke_config(steps=5, checkpoint_every=1, keep_checkpoints=5, on_nonfinite="skip",
                        debug_nonfinite_step=3)
  config.mesh.use_pmap = use_pmap
  final = trainer.train_and_evaluate(config, workdir)
  assert saved_steps(workdir) == [1, 2, 3, 4, 5]
  jax.tree.map(np.testing.assert_array_equal, saved_params(workdir, 3), saved_params(workdir, 2))
  assert all_finite(saved_params(workdir, 5))
  records = {r["step"]: r for r in read_metrics(workdir)}
  assert [records[s]["train/skipped_steps"] for s in range(1, 6)] == [0, 0, 1, 1, 1]
  assert records[3]["train/loss"] == "nan"  # The only step of that log interval was skipped.
  assert final["train/skipped_steps"] == 1 and math.isfinite(final["eval/loss"])


def test_rollback_restores_the_last_checkpoint_and_lowers_the_learning_rate(tmp_path, capsys):
  workdir = str(tmp_path / "run")
  config = smoke_config(steps=6, checkpoint_every=2, eval_every=6, on_nonfinite="rollback",
                        rollback_lr_factor=0.25, debug_nonfinite_step=3)
  final = trainer.train_and_evaluate(config, workdir)
  message = "Step 3 was not finite: rolled back to step 2, learning rate x0.25 (rollback 1 of 3)"
  assert message in capsys.readouterr().out
  assert saved_steps(workdir) == [2, 4, 6] and all_finite(saved_params(workdir, 6))
  records = read_metrics(workdir)
  assert [r["step"] for r in records] == [1, 2, 3, 4, 5, 6]  # The bad step 3 was not logged.
  assert [r["train/rollbacks"] for r in records] == [0, 0, 1, 1, 1, 1]
  schedule = optimizer.learning_rate_schedule(config.train)
  for r in records:
    scale = 0.25 if r["step"] >= 3 else 1.0
    assert r["train/learning_rate"] == pytest.approx(scale * float(schedule(r["step"] - 1)))
  assert final["train/rollbacks"] == 1 and math.isfinite(final["eval/loss"])
  # Checkpoints keep the lowered rate: a run resumed from step 4 ends exactly the same.
  shutil.rmtree(os.path.join(workdir, "checkpoints", "6"))
  resumed = trainer.train_and_evaluate(config, workdir)
  for key in ("train/learning_rate", "train/loss", "train/rollbacks", "eval/loss"):
    assert resumed[key] == final[key], key


def test_rollback_before_the_first_checkpoint_restarts_from_the_initial_state(tmp_path, capsys):
  workdir = str(tmp_path / "run")
  config = smoke_config(steps=4, on_nonfinite="rollback", debug_nonfinite_step=1)
  final = trainer.train_and_evaluate(config, workdir)
  assert "Step 1 was not finite: rolled back to step 0" in capsys.readouterr().out
  assert final["train/rollbacks"] == 1 and math.isfinite(final["eval/loss"])
  assert all_finite(saved_params(workdir, 4))


@pytest.mark.parametrize("key, value, problem", [
    ("on_nonfinite", "foo", "choose stop, skip or rollback"),
    ("rollback_lr_factor", 0.0, r"must be in \(0, 1\]"),
    ("max_rollbacks", -1, "must be an integer >= 0"),
])
def test_bad_policy_settings_are_refused(tmp_path, key, value, problem):
  with pytest.raises(UserError, match=rf"config\.train\.{key}=.*{problem}"):
    trainer.train_and_evaluate(smoke_config(**{key: value}), str(tmp_path / "run"))
  assert not os.path.exists(tmp_path / "run" / "checkpoints")


def test_cli_reports_a_stop_in_one_line(tmp_path):
  result = subprocess.run([
      sys.executable, "-m", "lm.main", "--config=experiments/shakespeare_char.py:cpu,smoke",
      f"--workdir={tmp_path / 'run'}", "--config.train.sample_prompt=",
      "--config.train.debug_nonfinite_step=2"
  ],
                          cwd=REPO,
                          capture_output=True,
                          text=True,
                          check=False)
  assert result.returncode == 2, result.stderr
  assert "Traceback" not in result.stderr
  errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
  assert len(errors) == 1, result.stderr
  assert "at step 2 (non-finite gradients or updates in block_0" in errors[0]
