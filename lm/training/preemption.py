"""SIGTERM and SIGINT during training: finish the step, save a checkpoint, stop cleanly.

Schedulers announce preemption with SIGTERM (Kubernetes, SLURM, Cloud TPU maintenance), people
with Ctrl-C (SIGINT). Either sets a flag that the training loop reads after each step; the loop
then saves a checkpoint at that step and raises `Preempted`, which `lm.main` turns into exit
status 128 + the signal number (143 for SIGTERM, 130 for SIGINT), the shell's convention for
"stopped by a signal": a scheduler can tell the run from a finished one and requeue it. A
second Ctrl-C aborts at once (the checkpoint being written is then still completed or dropped
atomically).

With several processes JAX's preemption service owns SIGTERM: each process calls
`reached_preemption_sync_point`, which agrees on one step for all. SIGINT is left alone there,
since a stop on one process alone would hang the others in their next collective.
"""

import signal
import threading

import jax
from jax.experimental import multihost_utils

from lm import runtime


class Preempted(Exception):
  """Training stopped on a signal after saving a checkpoint at `step`."""

  def __init__(self, step: int, signum: int):
    super().__init__(f"preempted by {signal.Signals(signum).name} at step {step}: checkpoint "
                     f"saved; run the same command to resume")
    self.step, self.signum = step, signum


class SignalFlag:
  """Records SIGTERM/SIGINT while installed (main thread only; elsewhere signals are left to
  whoever owns them)."""

  def __init__(self):
    self.signum: int | None = None
    self._previous: dict[int, object] = {}
    self._multiprocess = jax.process_count() > 1

  def install(self) -> None:
    if self._multiprocess or threading.current_thread() is not threading.main_thread():
      return
    for signum in (signal.SIGTERM, signal.SIGINT):
      self._previous[signum] = signal.signal(signum, self._handle)
    if runtime.interrupted():  # A Ctrl-C during set-up that Python swallowed: stop now.
      self.signum = signal.SIGINT

  def restore(self) -> None:
    """Puts the previous handlers back."""
    for signum, handler in self._previous.items():
      signal.signal(signum, handler)
    self._previous = {}

  def requested(self, step: int) -> bool:
    """True once a stop was asked for: call after every step (all processes, the same steps)."""
    if self._multiprocess and self.signum is None:
      try:
        if multihost_utils.reached_preemption_sync_point(step):
          self.signum = signal.SIGTERM
      except RuntimeError:  # JAX's preemption service is off (jax_enable_preemption_service).
        self._multiprocess = False
    return self.signum is not None

  def _handle(self, signum: int, frame) -> None:
    del frame
    if signum == signal.SIGINT and self.signum == signal.SIGINT:
      raise KeyboardInterrupt  # The second Ctrl-C: the user does not want to wait.
    if self.signum is None:
      self.signum = signum
