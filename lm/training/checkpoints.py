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
  killed mid-save leaves the previous checkpoint as the latest one. The newest `keep`
  checkpoints are kept, and also the newest one saved with `is_best` (the best so far when it
  was saved, hence the best). The data state holds, under "best", the best step so far
  (`best_step`).
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
    options = ocp.CheckpointManagerOptions(create=not read_only, preservation_policy=policy)
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
    self._manager.save(step,
                       args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                               data=ocp.args.JsonSave(data_state),
                                               config=ocp.args.JsonSave(config)),
                       metrics={"best_step": step} if is_best else None)

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


def load_for_inference(workdir: str, which: str = "latest"):
  """(ModelConfig, params, Tokenizer) of checkpoint `which` ('latest', 'best' or a step) in
  `workdir`."""
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
  params = nn.meta.unbox(params)
  cfg = model_config.model_config_from(config["model"], tokenizer.vocab_size,
                                       **task_fields(config, params))
  return cfg, jax.tree.map(jax.numpy.asarray, params), tokenizer


def task_fields(config: dict, params: Any) -> dict[str, Any]:
  """The ModelConfig fields a saved run's task set (classifier head, LoRA adapters)."""
  fields = {}
  if "classifier" in params:
    fields.update(num_classes=int(params["classifier"]["bias"].shape[0]),
                  pooling=config["task"]["pooling"])
  return {**fields, **lora_fields(config.get("finetune", {}))}


def lora_fields(finetune: dict) -> dict[str, Any]:
  """The ModelConfig LoRA fields of a config.finetune section (none unless method='lora')."""
  if finetune.get("method") != "lora":
    return {}
  return {f"lora_{k}": finetune[f"lora_{k}"] for k in ("rank", "alpha", "dropout", "targets")}
