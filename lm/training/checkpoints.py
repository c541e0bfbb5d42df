"""Orbax checkpoints of the train state, the data iterator state and the resolved config."""

import json
import os
from typing import Any

import flax.linen as nn
import jax
import orbax.checkpoint as ocp

from lm.errors import UserError

CHECKPOINT_DIR = "checkpoints"
CONFIG_FILE = "config.json"


class Checkpointer:
  """Saves and restores {state, data iterator state, config} under WORKDIR/checkpoints.

  Orbax writes each step into a temporary directory and renames it when complete, so a run
  killed mid-save leaves the previous checkpoint as the latest one.
  """

  def __init__(self, workdir: str, keep: int = 3):
    options = ocp.CheckpointManagerOptions(
        create=True, preservation_policy=ocp.checkpoint_managers.LatestN(n=max(keep, 1)))
    self._manager = ocp.CheckpointManager(os.path.abspath(os.path.join(workdir, CHECKPOINT_DIR)),
                                          options=options,
                                          item_handlers={
                                              "state": ocp.StandardCheckpointHandler(),
                                              "data": ocp.JsonCheckpointHandler(),
                                              "config": ocp.JsonCheckpointHandler()
                                          })

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def save(self, step: int, state: Any, data_state: dict, config: dict) -> None:
    self._manager.save(step,
                       args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                               data=ocp.args.JsonSave(data_state),
                                               config=ocp.args.JsonSave(config)))

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
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.close()


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


def load_for_inference(workdir: str):
  """(ModelConfig, params, Tokenizer) of the latest checkpoint in `workdir`."""
  from lm.data import pipeline, tokenizers  # pylint: disable=g-import-not-at-top
  from lm.models import config as model_config  # pylint: disable=g-import-not-at-top

  has_dir = os.path.isdir(os.path.join(workdir, CHECKPOINT_DIR))
  checkpointer = Checkpointer(workdir) if has_dir else None
  step = checkpointer.latest_step() if checkpointer else None
  if step is None:
    raise UserError(f"{workdir}: no checkpoint found; train first with "
                    f"`python -m lm.main --config=... --workdir={workdir}`")
  params, config = checkpointer.restore_params(step)
  checkpointer.close()
  tokenizer = tokenizers.load_tokenizer(os.path.join(workdir, pipeline.TOKENIZER_DIR))
  cfg = model_config.model_config_from(config["model"], tokenizer.vocab_size)
  return cfg, jax.tree.map(jax.numpy.asarray, nn.meta.unbox(params)), tokenizer
