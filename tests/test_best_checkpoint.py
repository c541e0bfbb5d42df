"""The best checkpoint survives beside the newest ones; early stopping; init_step picks it."""

import numpy as np
import pytest

from lm.errors import UserError
from lm.training import checkpoints
from lm.training.trainer import BestTracker


def test_tracker_maximizes_or_minimizes_and_stops_after_patience():
  accuracy = BestTracker("eval/accuracy", higher_is_better=True, patience=2)
  assert accuracy.update(1, {"eval/accuracy": 0.6})
  assert not accuracy.update(2, {"eval/accuracy": 0.6})  # A tie is not a new best.
  assert accuracy.update(3, {"eval/accuracy": 0.7})
  assert not accuracy.should_stop()
  assert not accuracy.update(4, {"eval/accuracy": 0.65})
  assert not accuracy.update(5, {"eval/accuracy": 0.69})
  assert accuracy.should_stop() and (accuracy.best_step, accuracy.best_value) == (3, 0.7)
  restored = BestTracker("eval/accuracy", True, 2)
  restored.set_state(accuracy.get_state())
  assert restored.should_stop() and restored.best_step == 3
  loss = BestTracker("eval/loss", higher_is_better=False, patience=0)
  assert loss.update(1, {"eval/loss": 2.0}) and loss.update(2, {"eval/loss": 1.5})
  assert not loss.update(3, {"eval/loss": 1.7}) and not loss.should_stop()
  with pytest.raises(UserError, match="config.train.best_metric"):
    loss.update(4, {"eval/accuracy": 0.5})


def test_best_checkpoint_is_kept_beside_the_newest(tmp_path):
  checkpointer = checkpoints.Checkpointer(str(tmp_path), keep=1)
  best = {1: True, 2: False, 3: True, 4: False, 5: False}
  for step, is_best in best.items():
    checkpointer.save(step, {"w": np.full(3, step, np.float32)}, {
        "sampler": {"step": step},
        "best": {"step": max(s for s in best if s <= step and best[s])}
    }, {"model": {}},
                      is_best=is_best)
    checkpointer.wait_until_finished()
  assert checkpointer.best_step() == 3
  assert checkpointer.pick_step("best", config_key="config.init_step") == 3
  assert checkpointer.pick_step("latest", config_key="config.init_step") == 5
  assert checkpointer.pick_step("3", config_key="config.init_step") == 3
  with pytest.raises(UserError, match="config.init_step='2'"):
    checkpointer.pick_step("2", config_key="config.init_step")  # Deleted: neither newest nor best.
  checkpointer.close()
  assert sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit()) == [
      3, 5
  ]
