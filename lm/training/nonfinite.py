"""What a train step with a NaN or infinite loss or gradient does (config.train.on_nonfinite).

  stop      TrainingDiverged, naming the step and the parameter groups whose gradients (or
            updated values) are not finite. Nothing from that step on is saved: the last good
            checkpoint stays the latest.
  skip      the jitted step drops its own update (steps.train_step's `skip_nonfinite`): the
            parameters and optimizer moments keep their values, the step counter advances
            (the batch is used up, and the schedule stays tied to the step number). Counted
            in train/skipped_steps.
  rollback  back to the last good checkpoint (parameters, optimizer state, data stream), or,
            before the first checkpoint, to the initial state; the learning rate is then
            multiplied by rollback_lr_factor (again at each rollback, kept in later
            checkpoints) and training goes on. After max_rollbacks rollbacks in one run, stop.

The flags come out of the step with its metrics and are read when the metrics are (log,
evaluation and checkpoint steps), so nothing waits on the device every step; every checkpoint
is saved after a check, so every checkpoint is good.
"""

import re
from typing import Any

import jax
import numpy as np

from lm.errors import UserError
from lm.training import steps

POLICIES = ("stop", "skip", "rollback")


class TrainingDiverged(UserError):
  """The loss or gradients became NaN or infinite; nothing after the last good checkpoint is
  saved."""


def validate(train_cfg: Any) -> None:
  if train_cfg.on_nonfinite not in POLICIES:
    raise UserError(f"config.train.on_nonfinite={train_cfg.on_nonfinite!r}: choose "
                    f"{', '.join(POLICIES[:-1])} or {POLICIES[-1]}")
  factor = train_cfg.rollback_lr_factor
  if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not 0 < factor <= 1:
    raise UserError(f"config.train.rollback_lr_factor={factor!r}: must be in (0, 1]")
  for key, least in (("max_rollbacks", 0), ("debug_nonfinite_step", -1)):
    value = train_cfg[key]
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < least:
      raise UserError(f"config.train.{key}={value!r}: must be an integer >= {least}")


class Guard:
  """The host side of the policy: each step's controls, the check of the steps' flags, and
  the state saved with checkpoints (learning-rate scale, rollbacks, skipped steps)."""

  def __init__(self, train_cfg: Any, params: Any):
    validate(train_cfg)
    self.policy = train_cfg.on_nonfinite
    self._factor = train_cfg.rollback_lr_factor
    self._max_rollbacks = train_cfg.max_rollbacks
    self._inject_step = train_cfg.debug_nonfinite_step
    self._injected = False
    self._groups = steps.param_groups(params)
    self._flags: list[tuple[int, jax.Array, jax.Array]] = []
    self.lr_scale, self.rollbacks, self.skipped = 1.0, 0, 0

  def controls(self, step: int) -> dict[str, np.ndarray]:
    """steps.train_step's controls for the update that makes `step`."""
    controls = {"lr_scale": np.float32(self.lr_scale)}
    if self._inject_step >= 0:  # Testing hook; once, so that a rollback gets past it.
      inject = step == self._inject_step and not self._injected
      self._injected |= inject
      controls["inject_nan"] = np.bool_(inject)
    return controls

  def take(self, steps_made: range, metrics: dict[str, jax.Array]) -> None:
    """Moves the flags of the updates that made `steps_made` (one call: scalar flags for one
    step, stacked for several) out of their metrics, to check later."""
    self._flags.append((steps_made, metrics.pop(steps.FINITE), metrics.pop(steps.GROUPS)))

  def check(self) -> int | None:
    """Reads the flags taken since the last check. Returns the first non-finite step if the
    caller must roll back; raises TrainingDiverged if the policy stops (or rollbacks are used
    up); skipped steps are counted."""
    flags, self._flags = jax.device_get(self._flags), []
    bad = [(step, groups_G)
           for made, finite, groups in flags
           for step, ok, groups_G in zip(made, np.reshape(finite, -1),
                                         np.reshape(groups, (len(made), -1)))
           if not ok]
    if not bad:
      return None
    if self.policy == "skip":
      self.skipped += len(bad)
      return None
    step, groups_G = bad[0]
    if self.policy == "rollback" and self.rollbacks < self._max_rollbacks:
      self.rollbacks += 1
      self.lr_scale *= self._factor
      return step
    raise TrainingDiverged(self._diagnostic(step, groups_G))

  def metrics(self) -> dict[str, float]:
    """What the log gets at each log step (nothing under 'stop')."""
    if self.policy == "skip":
      return {"train/skipped_steps": self.skipped}
    if self.policy == "rollback":
      return {"train/rollbacks": self.rollbacks}
    return {}

  def get_state(self) -> dict:
    return {"lr_scale": self.lr_scale, "rollbacks": self.rollbacks, "skipped": self.skipped}

  def set_state(self, state: dict | None) -> None:
    if state:  # Checkpoints from before this policy existed have none.
      self.lr_scale, self.rollbacks, self.skipped = (state["lr_scale"], state["rollbacks"],
                                                     state["skipped"])

  def _diagnostic(self, step: int, groups_G: np.ndarray) -> str:
    names = sorted((g for g, ok in zip(self._groups, groups_G) if not ok), key=_natural)
    where = (f"non-finite gradients or updates in {_first(names, 8)}"
             if names else "the gradients themselves are finite")
    policy = (f" after {self.rollbacks} rollback(s) (config.train.max_rollbacks="
              f"{self._max_rollbacks})" if self.policy == "rollback" else "")
    return (f"the loss or gradients became NaN or infinite at step {step} ({where}); stopped"
            f"{policy} without saving anything from that step on. Lower "
            f"config.train.learning_rate or raise config.train.warmup_steps, or resume from the "
            f"last checkpoint with config.train.on_nonfinite=skip or rollback")


def _first(names: list[str], n: int) -> str:
  more = f" and {len(names) - n} more" if len(names) > n else ""
  return ", ".join(names[:n]) + more


def _natural(name: str) -> list:
  """block_2 before block_10."""
  return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]
