"""Layouts on 8 fake CPU devices: where arrays live, and equal training under every layout."""

import json
import os
import shutil

import jax
import ml_collections
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from experiments import shakespeare_char
from lm.errors import UserError
from lm.models.config import model_config_from
from lm.models.transformer import Transformer
from lm.training import parallel, partitioning, trainer

LAYOUTS = {  # name -> config.mesh overrides
    "one-device": dict(data=1),
    "dp8": dict(data=8),
    "fsdp8": dict(data=1, fsdp=8),
    "dp2-fsdp2-tp2": dict(data=2, fsdp=2, tensor=2),
    "tp4": dict(data=1, tensor=4),
    "pmap-dp8": dict(data=8, use_pmap=True),
}


def layout_config(steps=20, **mesh):
  config = shakespeare_char.get_config("cpu,smoke")
  config.model.update(num_heads=4, embed_dim=32, max_len=16)
  config.train.update(steps=steps,
                      batch_size=16,
                      eval_every=steps,
                      checkpoint_every=steps,
                      log_every=1,
                      eval_batch_size=16,
                      sample_prompt="")
  config.mesh.update(mesh)
  return config


def build(config, vocab_size=72):
  model = Transformer(model_config_from(config.model, vocab_size))
  return parallel.make_parallel(model, config, seq_len=config.model.max_len)


def shard_shapes(array):
  return {tuple(shard.data.shape) for shard in array.addressable_shards}


def test_fsdp8_holds_an_eighth_of_every_large_matrix_per_device():
  layout = build(layout_config(data=1, fsdp=8))
  state = layout.create_state(jax.random.PRNGKey(0))
  block = state.params["block_0"]
  assert len(state.params["token_embed"]["embedding"].devices()) == 8
  # [D=32, H=4, Dh=8] split along D (logical `embed`) over the 8 fsdp devices.
  assert shard_shapes(block["attn"]["query"]["kernel"]) == {(4, 4, 8)}
  assert shard_shapes(block["mlp"]["wi"]["kernel"]) == {(4, 128)}
  assert shard_shapes(block["mlp"]["wo"]["kernel"]) == {(128, 4)}
  assert shard_shapes(state.params["token_embed"]["embedding"]) == {(72, 4)}
  # The Adam moments are laid out like the parameters (ZeRO-3 shards optimizer state too).
  adam = state.opt_state[1][0]
  assert shard_shapes(adam.mu["block_0"]["mlp"]["wi"]["kernel"]) == {(4, 128)}
  assert shard_shapes(adam.nu["block_0"]["attn"]["out"]["kernel"]) == {(4, 8, 4)}


def test_tensor_parallel_splits_heads_and_hidden_units():
  layout = build(layout_config(data=2, fsdp=2, tensor=2))
  state = layout.create_state(jax.random.PRNGKey(0))
  attn, mlp = state.params["block_0"]["attn"], state.params["block_0"]["mlp"]
  assert shard_shapes(attn["query"]["kernel"]) == {(16, 2, 8)}  # embed/fsdp, heads/tensor.
  assert shard_shapes(attn["key_value"]["kernel"]) == {(16, 2, 2, 8)}
  assert shard_shapes(attn["out"]["kernel"]) == {(2, 8, 16)}  # Row-parallel output.
  assert shard_shapes(mlp["wi"]["kernel"]) == {(16, 64)}  # Column-parallel.
  assert shard_shapes(mlp["wo"]["kernel"]) == {(64, 16)}  # Row-parallel.
  # Data parallel replicas hold the same shard: 4 distinct shards over 8 devices.
  assert len({str(s.index) for s in mlp["wi"]["kernel"].addressable_shards}) == 4


def test_data_parallel_replicates_parameters_and_splits_the_batch():
  layout = build(layout_config(data=8))
  state = layout.create_state(jax.random.PRNGKey(0))
  kernel = state.params["block_0"]["mlp"]["wi"]["kernel"]
  assert kernel.sharding.is_fully_replicated and len(kernel.devices()) == 8
  batch = layout.put_batch({"inputs": np.arange(16 * 3).reshape(16, 3)}, 16)
  assert shard_shapes(batch["inputs"]) == {(2, 3)}
  np.testing.assert_array_equal(batch["inputs"], np.arange(16 * 3).reshape(16, 3))


def test_a_vocabulary_the_tensor_axis_does_not_divide_stays_replicated():
  layout = build(layout_config(data=1, tensor=4), vocab_size=73)
  state = layout.create_state(jax.random.PRNGKey(0))
  assert shard_shapes(state.params["token_embed"]["embedding"]) == {(73, 32)}


def train_losses(workdir, config=None, **mesh):
  """The loss of every step (of the latest run where a resumed run repeats steps)."""
  trainer.train_and_evaluate(config or layout_config(**mesh), workdir)
  with open(os.path.join(workdir, "metrics.jsonl"), encoding="utf-8") as f:
    records = {r["step"]: r for r in map(json.loads, f)}
  return np.array([records[s]["train/loss"] for s in sorted(records)]), records[max(records)][
      "eval/loss"]


@pytest.fixture(scope="module")
def one_device_run(tmp_path_factory):
  return train_losses(str(tmp_path_factory.mktemp("one")), **LAYOUTS["one-device"])


@pytest.mark.parametrize("name", [n for n in LAYOUTS if n != "one-device"])
def test_every_layout_trains_like_one_device(name, one_device_run, tmp_path):
  """20 steps of AdamW in float32: the same loss curve (relative difference <= 1e-4)."""
  losses, eval_loss = train_losses(str(tmp_path / name), **LAYOUTS[name])
  expected_losses, expected_eval = one_device_run
  assert len(losses) == 20
  np.testing.assert_allclose(losses, expected_losses, rtol=1e-4)
  assert eval_loss == pytest.approx(expected_eval, rel=1e-4)
  assert expected_losses[-1] < expected_losses[0] - 0.3  # It did learn something.


def test_a_checkpoint_resumes_under_another_layout(tmp_path, one_device_run):
  """Layouts only place the same state differently: stop under FSDP, resume under pmap."""
  workdir = str(tmp_path / "run")
  config = layout_config(data=1, fsdp=8)
  config.train.checkpoint_every = 10
  trainer.train_and_evaluate(config, workdir)
  shutil.rmtree(os.path.join(workdir, "checkpoints", "20"))  # As if killed after step 10's.
  config = layout_config(data=8, use_pmap=True)
  config.train.checkpoint_every = 10
  losses, eval_loss = train_losses(workdir, config)
  np.testing.assert_allclose(losses, one_device_run[0], rtol=1e-4)
  assert eval_loss == pytest.approx(one_device_run[1], rel=1e-4)


@pytest.mark.parametrize("mesh,message", [
    (dict(data=-1, fsdp=-1), "only one axis may be -1"),
    (dict(data=1, fsdp=3), "does not divide the 8 devices"),
    (dict(data=1, tensor=8), "config.mesh.tensor=8 does not divide config.model.num_heads=4"),
    (dict(data=2, fsdp=2, use_pmap=True), "config.mesh.use_pmap is data parallel only"),
    (dict(data=0), "config.mesh.data=0"),
])
def test_layout_mistakes_name_the_config_key(mesh, message):
  config = layout_config(**mesh)
  with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")):
    build(config)


def test_unknown_mesh_axis_in_a_rule_is_reported():
  config = layout_config(data=1)
  config.mesh.rules.mlp = "model"
  with pytest.raises(UserError, match=r"config.mesh.rules.mlp='model': unknown mesh axis"):
    build(config)


def test_mesh_sizes_and_partition_specs():
  mesh_cfg = dict(data=-1, fsdp=2, tensor=1)
  # -1 for data: the most of the 4 remaining devices that the batch of 12 splits over with fsdp=2.
  assert partitioning.mesh_shape(mesh_cfg, 8, batch_size=12) == {"data": 2, "fsdp": 2, "tensor": 1}
  assert partitioning.mesh_shape(dict(data=1, fsdp=-1, tensor=2), 8, 8) == {
      "data": 1, "fsdp": 4, "tensor": 2}
  mesh = partitioning.make_mesh(ml_collections.ConfigDict(dict(data=2, fsdp=2, tensor=2)), 8)
  rules = partitioning.parse_rules(layout_config().mesh.rules)
  spec = lambda axes, shape: partitioning.spec_for(mesh, rules, axes, shape)
  assert spec(("embed", "mlp"), (32, 128)) == P("fsdp", "tensor")
  assert spec(("embed", "mlp"), (31, 128)) == P(None, "tensor")  # 31 rows do not split in 2.
  assert spec(("act_batch", "act_embed"), (16, 32)) == P(("data", "fsdp"), None)
  # A mesh axis is used once per array: the second `embed` stays whole.
  assert spec(("embed", "embed"), (32, 32)) == P("fsdp", None)


def _hidden_norms(params, batch, *, apply_fn):
  """A task's own per-row step: the norm of each row's final hidden states."""
  hidden = apply_fn({"params": params}, batch["inputs"], return_hidden=True)
  return {"norm": jax.numpy.sqrt(jax.numpy.sum(hidden**2, axis=(1, 2)))}


@pytest.mark.parametrize("name", ["dp8", "dp2-fsdp2-tp2", "pmap-dp8"])
def test_a_task_step_runs_per_row_under_every_layout(name):
  """layout.per_row compiles any task's evaluation step; every layout returns the whole
  batch's rows, equal to one device's."""
  reference = build(layout_config(**LAYOUTS["one-device"]))
  layout = build(layout_config(**LAYOUTS[name]))
  tokens = np.random.default_rng(0).integers(0, 72, (16, 16)).astype(np.int32)
  ref_state = reference.create_state(jax.random.PRNGKey(0))
  expected = reference.per_row(_hidden_norms)(ref_state.params,
                                              reference.put_batch({"inputs": tokens}, 16))
  params = jax.device_get(reference.to_checkpoint(ref_state).params)
  state = layout.with_params(layout.create_state(jax.random.PRNGKey(1)), params)
  got = layout.per_row(_hidden_norms)(state.params, layout.put_batch({"inputs": tokens}, 16))
  assert got["norm"].shape == (16,)
  np.testing.assert_allclose(np.asarray(got["norm"]), np.asarray(expected["norm"]), rtol=1e-5)
