"""Orbax checkpoints of the train state, the data iterator state and the resolved config."""

import contextlib
import glob
import json
import os
import shutil
import sys
import tempfile
import time
from typing import Any

import flax.linen as nn
import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging
from jax.experimental import multihost_utils

from lm.errors import UserError

CHECKPOINT_DIR = "checkpoints"
CONFIG_FILE = "config.json"


class Checkpointer:
  """Saves and restores {state, data iterator state, config} under WORKDIR/checkpoints.

  Orbax writes each step into a temporary directory and renames it when complete, so a run
  killed mid-save leaves the previous checkpoint as the latest one (and the temporary
  directory, removed when the next run opens the workdir). The newest `keep` checkpoints are
  kept, and also the newest one saved with `is_best` (the best so far when it was saved, hence
  the best). The data state holds, under "best", the best step so far (`best_step`).
  """

  def __init__(self, workdir: str, keep: int = 3, *, read_only: bool = False):
    self.workdir = workdir
    policies = ocp.checkpoint_managers
    # Only best checkpoints carry metrics, {"best_step": step}: the highest is the best.
    best = policies.BestN(get_metric_fn=lambda metrics: metrics["best_step"],
                          n=1,
                          keep_checkpoints_without_metrics=False)
    policy = policies.AnyPreservationPolicy([policies.LatestN(n=max(keep, 1)), best])
    # Not Orbax's read_only option: it logs warnings on every use. Readers just never save.
    options = ocp.CheckpointManagerOptions(create=not read_only,
                                           preservation_policy=policy,
                                           cleanup_tmp_directories=not read_only)
    self._pending_step: int | None = None  # A save that may still be writing.
    self._failed_save: int | None = None  # A step whose failed save was reported.
    self._manager = ocp.CheckpointManager(os.path.abspath(os.path.join(workdir, CHECKPOINT_DIR)),
                                          options=options,
                                          item_handlers={
                                              "state": ocp.StandardCheckpointHandler(),
                                              "data": ocp.JsonCheckpointHandler(),
                                              "config": ocp.JsonCheckpointHandler()
                                          })

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def save(self,
           step: int,
           state: Any,
           data_state: dict,
           config: dict,
           is_best: bool = False) -> None:
    """Starts saving `step` in the background (a step saved already is skipped).

    Raises UserError when the disk refuses the write (full, read-only), here or in the next
    call that waits for it: the partial directory is removed and the previous checkpoint stays.
    """
    self.wait_until_finished()  # The previous save's failure is reported with its own step.
    self._pending_step = step
    try:
      self._manager.save(step,
                         args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                 data=ocp.args.JsonSave(data_state),
                                                 config=ocp.args.JsonSave(config)),
                         metrics={"best_step": step} if is_best else None)
    except Exception as e:  # pylint: disable=broad-exception-caught
      self._save_failed(e)
      raise

  def best_step(self) -> int | None:
    """The best step recorded by the latest checkpoint (None without a best metric)."""
    latest = self.latest_step()
    if latest is None:
      return None
    data = self._manager.restore(latest, args=ocp.args.Composite(data=ocp.args.JsonRestore())).data
    best = data.get("best") if isinstance(data, dict) else None
    return best.get("step") if isinstance(best, dict) else None

  def pick_step(self, which: str, config_key: str) -> int:
    """'latest', 'best' or a step number -> a step that exists, or UserError naming the key."""
    which = str(which).strip()
    steps = self._manager.all_steps()
    if not steps:
      raise UserError(f"{config_key}: {self.workdir} has no checkpoint; train it first")
    if which == "latest":
      return self.latest_step()
    if which == "best":
      step = self.best_step()
      if step is None or step not in steps:
        raise UserError(f"{config_key}=best: {self.workdir} recorded no best checkpoint (it "
                        f"was never evaluated); use 'latest'")
      return step
    if which.isdigit() and int(which) in steps:
      return int(which)
    raise UserError(f"{config_key}={which!r}: use 'latest', 'best' or one of the saved steps "
                    f"{', '.join(map(str, sorted(steps)))}")

  def restore_latest(self, abstract_state: Any) -> tuple[int, Any, dict] | None:
    """(step, state, data state) of the newest checkpoint that restores; None if there is none.

    A newer checkpoint that fails to restore (files deleted or truncated behind Orbax's back; a
    killed save never leaves one) is moved aside to `<step>.damaged-<time>` with a warning, but
    only once an older one has restored: if none restores the failure is not damage (e.g. a
    changed model), so nothing is moved and the newest one's error is raised.
    """
    failed = []
    with _quiet_closed_loops():
      for step in reversed(self._manager.all_steps()):
        try:
          state, data = self.restore(step, abstract_state)
        except Exception as e:  # pylint: disable=broad-exception-caught
          failed.append((step, e))  # Tensorstore ValueErrors, missing files, truncated JSON.
          continue
        if failed:
          self._set_aside(failed, step)
        return step, state, data
    if failed:
      step, error = failed[0]
      raise UserError(f"{self._step_dir(step)}: the checkpoint cannot be restored, nor any older "
                      f"one ({_first_line(error)}); move {os.path.join(self.workdir, CHECKPOINT_DIR)}"
                      f" aside to train from scratch") from error
    return None

  def _set_aside(self, failed: list[tuple[int, Exception]], good_step: int) -> None:
    """Renames damaged step directories so that Orbax no longer lists them (nothing deleted)."""
    if jax.process_count() > 1:  # Every process has tried them before any is renamed.
      multihost_utils.sync_global_devices("lm: checkpoints restored")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for step, error in failed:
      path = self._step_dir(step)
      aside = f"{path}.damaged-{stamp}"
      logging.warning("Checkpoint %s is damaged (%s); moved it to %s and resumed from step %d.",
                      path, _first_line(error), aside, good_step)
      if jax.process_index() == 0:
        os.rename(path, aside)
    if jax.process_count() > 1:
      multihost_utils.sync_global_devices("lm: damaged checkpoints moved")
    self._manager.reload()  # Else a later save of the same step would be skipped as existing.

  def _step_dir(self, step: int) -> str:
    return os.path.join(str(self._manager.directory), str(step))

  def _save_failed(self, error: Exception) -> None:
    """UserError (the partial directory removed) if the save of the pending step failed on the
    filesystem; otherwise returns, for the caller to re-raise `error`."""
    step, self._pending_step = self._pending_step, None
    reason = _disk_error(error)
    if reason is None or step is None:
      return
    self._failed_save = step
    self._remove_partial(step)
    self._manager.reload()
    previous = self.latest_step()
    kept = (f"the previous checkpoint (step {previous}) is intact" if previous is not None else
            "there is no earlier checkpoint")
    raise UserError(f"--workdir={self.workdir}: saving the checkpoint of step {step} failed "
                    f"({reason}); its partial files were removed and {kept}. Free space (or "
                    f"fix the permissions) and run the same command to resume.") from error

  def _remove_partial(self, step: int, timeout: float = 10.0) -> None:
    """Removes the temporary directory of `step` until it stays gone: Orbax reports the first
    failed item without waiting for the others, whose writers may still recreate it. (Whatever
    is left, the next start removes: cleanup_tmp_directories.)"""
    # Orbax's temporary name for an unfinished step: <step>.orbax-checkpoint-tmp[-<time>].
    pattern = f"{self._step_dir(step)}.orbax-checkpoint-tmp*"
    deadline, quiet = time.monotonic() + timeout, 0
    while quiet < 2 and time.monotonic() < deadline:
      paths = glob.glob(pattern)
      for path in paths:
        shutil.rmtree(path, ignore_errors=True)
      quiet = 0 if paths else quiet + 1
      time.sleep(0.1)

  def restore(self, step: int, abstract_state: Any) -> tuple[Any, dict]:
    """Restores `step` into the shapes, dtypes and shardings of `abstract_state`."""
    restored = self._manager.restore(step,
                                     args=ocp.args.Composite(
                                         state=ocp.args.StandardRestore(abstract_state),
                                         data=ocp.args.JsonRestore()))
    return restored.state, restored.data

  def restore_params(self, step: int) -> tuple[Any, dict]:
    """Parameters and config of `step` on one local device, whatever devices trained them."""
    metadata = self._manager.item_metadata(step)["state"]
    device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    abstract = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device),
                            metadata)
    restored = self._manager.restore(step,
                                     args=ocp.args.Composite(
                                         state=ocp.args.StandardRestore(abstract),
                                         config=ocp.args.JsonRestore()))
    return restored.state["params"], restored.config

  def wait_until_finished(self) -> None:
    """Waits for the background save; UserError if the disk refused it (see `save`)."""
    try:
      self._manager.wait_until_finished()
    except Exception as e:  # pylint: disable=broad-exception-caught
      self._save_failed(e)
      raise
    self._pending_step = None

  def close(self) -> None:
    try:
      self._manager.close()
    except Exception as e:  # pylint: disable=broad-exception-caught
      if self._failed_save is None:
        self._save_failed(e)
        raise
      # Orbax raises a failed save's error again on close: it was reported already.


def check_writable(workdir: str) -> None:
  """UserError unless files can be created in the workdir and its checkpoint directory (an
  actual write: os.access says yes to root in a read-only directory)."""
  for directory in (workdir, os.path.join(workdir, CHECKPOINT_DIR)):
    if directory != workdir and not os.path.lexists(directory):
      continue
    try:
      fd, path = tempfile.mkstemp(prefix=".lm-write-test-", dir=directory)
      os.close(fd)
      os.remove(path)
    except OSError as e:
      raise UserError(f"--workdir={workdir}: cannot write in {directory} ({e.strerror}); fix its "
                      f"permissions or choose another workdir") from None


def check_free_space(workdir: str, abstract_state: Any) -> None:
  """UserError unless the workdir's disk has room for two checkpoints of `abstract_state`
  (parameters and optimizer state): a new one is written before an old one is removed."""
  one = sum(
      int(np.prod(x.shape)) * np.dtype(x.dtype).itemsize
      for x in jax.tree.leaves(abstract_state)
      if hasattr(x, "dtype"))
  free = shutil.disk_usage(workdir).free
  if free < 2 * one:
    raise UserError(f"--workdir={workdir}: {free:,} bytes free on its disk, but training needs "
                    f"about {2 * one:,} (two checkpoints of {one:,} bytes each: parameters and "
                    f"optimizer state); free some space or choose another workdir")


def _disk_error(error: Exception) -> str | None:
  """Why the filesystem refused a write ('No space left on device', ...), or None."""
  if isinstance(error, OSError):
    return error.strerror or str(error)
  # Tensorstore reports them as ValueError('RESOURCE_EXHAUSTED: ... No space left on device
  # [os_error_code=28]').
  reasons = ("No space left on device", "Disk quota exceeded", "Read-only file system",
             "Permission denied")
  return next((r for r in reasons if r in str(error)), None)


@contextlib.contextmanager
def _quiet_closed_loops():
  """Drops the "Event loop is closed" RuntimeErrors that a failed restore leaves behind (one
  per array: Orbax closes its event loop at the first failed read, and the other reads' results
  then arrive at the closed loop, each printed as an unraisable-exception traceback)."""
  previous = sys.unraisablehook

  def hook(unraisable):
    if not (isinstance(unraisable.exc_value, RuntimeError) and
            str(unraisable.exc_value) == "Event loop is closed"):
      previous(unraisable)

  sys.unraisablehook = hook
  try:
    yield
  finally:
    sys.unraisablehook = previous


def _first_line(error: Exception) -> str:
  text = str(error).strip()
  return text.splitlines()[0][:300] if text else type(error).__name__


def save_config(workdir: str, config: dict) -> None:
  os.makedirs(workdir, exist_ok=True)
  path = os.path.join(workdir, CONFIG_FILE)
  with open(path + ".tmp", "w", encoding="utf-8") as f:
    json.dump(config, f, indent=2, sort_keys=True)
  os.replace(path + ".tmp", path)


def load_config(workdir: str) -> dict | None:
  path = os.path.join(workdir, CONFIG_FILE)
  if not os.path.exists(path):
    return None
  try:
    with open(path, encoding="utf-8") as f:
      return json.load(f)
  except (OSError, ValueError) as e:
    raise UserError(f"{path}: cannot read the saved config ({e})") from None


def load_for_inference(workdir: str, which: str = "latest"):
  """(ModelConfig, params, Tokenizer) of checkpoint `which` ('latest', 'best' or a step) in
  `workdir`, without the layers used in training only (model_config.TRAINING_ONLY_PARAMS)."""
  from lm.data import pipeline, tokenizers  # pylint: disable=g-import-not-at-top
  from lm.models import config as model_config  # pylint: disable=g-import-not-at-top

  has_dir = os.path.isdir(os.path.join(workdir, CHECKPOINT_DIR))
  checkpointer = Checkpointer(workdir, read_only=True) if has_dir else None
  if checkpointer is None or checkpointer.latest_step() is None:
    raise UserError(f"{workdir}: no checkpoint found; train first with "
                    f"`python -m lm.main --config=... --workdir={workdir}`")
  try:
    step = checkpointer.pick_step(which, config_key="--checkpoint")
    params, config = checkpointer.restore_params(step)
  finally:
    checkpointer.close()
  tokenizer = tokenizers.load_tokenizer(os.path.join(workdir, pipeline.TOKENIZER_DIR))
  params = {name: value for name, value in nn.meta.unbox(params).items()
            if name not in model_config.TRAINING_ONLY_PARAMS}
  fields = {"vocab_size": tokenizer.vocab_size, **task_fields(config, workdir)}
  cfg = model_config.model_config_from(config["model"], **fields)
  return cfg, jax.tree.map(jax.numpy.asarray, params), tokenizer


def vocab_size(workdir: str, config: dict | None = None) -> int:
  """The vocabulary size (embedding rows) of the model trained in `workdir`: its tokenizer's,
  or its task's (a chat template's role tokens after it), without reading the parameters.
  `config`: its saved config where the caller has read it already."""
  from lm.data import pipeline, tokenizers  # pylint: disable=g-import-not-at-top
  config = config if config is not None else load_config(workdir)
  if config is None:
    raise UserError(f"{workdir}: no {CONFIG_FILE}; is this a training run directory?")
  tokenizer = tokenizers.load_tokenizer(os.path.join(workdir, pipeline.TOKENIZER_DIR))
  return task_fields(config, workdir).get("vocab_size", tokenizer.vocab_size)


def task_fields(config: dict, workdir: str) -> dict[str, Any]:
  """The ModelConfig fields a saved run's task set (its head, LoRA adapters; the vocabulary
  where it is not the tokenizer's)."""
  from lm.tasks import registry  # pylint: disable=g-import-not-at-top
  head = registry.task_class(config["task"]["kind"]).head_fields(config, workdir)
  return {**head, **lora_fields(config.get("finetune", {}))}


def lora_fields(finetune: dict) -> dict[str, Any]:
  """The ModelConfig LoRA fields of a config.finetune section (none unless method='lora')."""
  if finetune.get("method") != "lora":
    return {}
  return {f"lora_{k}": finetune[f"lora_{k}"] for k in ("rank", "alpha", "dropout", "targets")}
