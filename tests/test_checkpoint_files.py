"""Tests for lm/convert/checkpoint_files.py and lm/convert/torch_pickle.py (torch only here)."""

import json
import os
import pathlib
import zipfile

import ml_dtypes
import numpy as np
import pytest
import safetensors
import safetensors.torch
import torch

from lm.convert import checkpoint_files
from lm.errors import UserError


def _numpy(t: torch.Tensor) -> np.ndarray:
  """The exact numpy counterpart of a CPU tensor, bfloat16 included (bit for bit)."""
  if t.dtype == torch.bfloat16:
    return t.detach().view(torch.int16).numpy().view(ml_dtypes.bfloat16)
  return t.detach().numpy()


def _assert_same(actual: dict[str, np.ndarray], expected: dict[str, np.ndarray]):
  """Same names, dtypes, shapes and bits."""
  assert sorted(actual) == sorted(expected)
  for name, value in expected.items():
    assert actual[name].dtype == value.dtype, name
    assert actual[name].shape == value.shape, name
    bits = lambda a: np.asarray(a, order="C").reshape(-1).view(np.uint8)
    np.testing.assert_array_equal(bits(actual[name]), bits(value), err_msg=name)


def _arrays() -> dict[str, np.ndarray]:
  """One array of each kind the converter meets, with odd sizes to test alignment."""
  rng = np.random.default_rng(0)
  return {
      "f32": rng.normal(size=(3, 5)).astype(np.float32),
      "f16": rng.normal(size=(7,)).astype(np.float16),
      "bf16": rng.normal(size=(2, 3)).astype(ml_dtypes.bfloat16),
      "i64": np.arange(-3, 4, dtype=np.int64),
      "scalar": np.array(2.5, np.float32),
      "empty": np.zeros((0, 4), np.float16),
      "flag": np.array([True, False, True]),
      "transposed": rng.normal(size=(4, 3)).astype(np.float32).T,
  }


def _tensors() -> dict[str, torch.Tensor]:
  """Tensors as a torch state dict holds them, views and shared storage included."""
  torch.manual_seed(0)
  a = torch.randn(4, 6)
  return {
      "f32": a,
      "shares_a": a[1:],
      "transposed": a.T,
      "every_other": a[:, ::2],
      "f16": torch.randn(5).half(),
      "bf16": torch.randn(3, 2).bfloat16(),
      "bf16_view": torch.randn(4, 4).bfloat16()[1:, 2],
      "i64": torch.arange(-4, 5),
      "scalar": torch.tensor(3.25),
      "empty": torch.zeros(0, 3),
      "u16": torch.arange(5).to(torch.uint16),  # Pickled as UntypedStorage + torch.uint16.
  }


def test_safetensors_round_trip(tmp_path):
  path = tmp_path / "model.safetensors"
  arrays = _arrays()
  checkpoint_files.write_safetensors(path, arrays, {"note": "test"})
  _assert_same(checkpoint_files.read_hf_tensors(tmp_path),
               arrays)
  assert os.listdir(tmp_path) == ["model.safetensors"]  # No temporary file is left behind.
  with safetensors.safe_open(path, framework="pt") as f:
    assert f.metadata() == {"format": "pt", "note": "test"}
  loaded = safetensors.torch.load_file(path)
  assert loaded["bf16"].dtype == torch.bfloat16
  _assert_same({name: _numpy(t) for name, t in loaded.items()},
               arrays)


def test_reads_safetensors_written_by_the_safetensors_package(tmp_path):
  tensors = {name: t.contiguous() for name, t in _tensors().items() if name != "shares_a"}
  safetensors.torch.save_file(tensors, tmp_path / "model.safetensors")
  _assert_same(checkpoint_files.read_hf_tensors(tmp_path),
               {name: _numpy(t) for name, t in tensors.items()})


def test_write_refuses_unstorable_dtype_and_leaves_no_file(tmp_path):
  with pytest.raises(ValueError, match="'x' has dtype object"):
    checkpoint_files.write_safetensors(tmp_path / "m.safetensors",
                                       {"x": np.array([None])})
  assert not os.listdir(tmp_path)


def _write_index(path: pathlib.Path, weight_map: dict[str, str]):
  path.write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))


def test_sharded_safetensors(tmp_path):
  arrays = _arrays()
  names = sorted(arrays)
  shards = {"model-00001-of-00002.safetensors": names[:3],
            "model-00002-of-00002.safetensors": names[3:]}
  for shard, shard_names in shards.items():
    checkpoint_files.write_safetensors(tmp_path / shard, {n: arrays[n] for n in shard_names})
  _write_index(tmp_path / "model.safetensors.index.json",
               {n: shard for shard, shard_names in shards.items() for n in shard_names})
  _assert_same(checkpoint_files.read_hf_tensors(tmp_path), arrays)

  os.remove(tmp_path / "model-00002-of-00002.safetensors")
  with pytest.raises(UserError, match="model-00002-of-00002.safetensors is missing"):
    checkpoint_files.read_hf_tensors(tmp_path)


def test_index_naming_a_tensor_its_shards_lack(tmp_path):
  checkpoint_files.write_safetensors(tmp_path / "a.safetensors", {"x": np.zeros(2)})
  _write_index(tmp_path / "model.safetensors.index.json",
               {"x": "a.safetensors", "y": "a.safetensors"})
  with pytest.raises(UserError, match="lists 1 tensors that its shards lack, e.g. 'y'"):
    checkpoint_files.read_hf_tensors(tmp_path)


def test_pytorch_bin(tmp_path):
  tensors = _tensors()
  torch.save(tensors, tmp_path / "pytorch_model.bin")
  _assert_same(checkpoint_files.read_hf_tensors(tmp_path),
               {name: _numpy(t) for name, t in tensors.items()})


@pytest.mark.parametrize("parameters", [False, True])
def test_pytorch_bin_of_a_module(tmp_path, parameters):
  linear = torch.nn.Linear(3, 4)
  # state_dict() is an OrderedDict with `_metadata`; named_parameters() gives Parameters.
  state = dict(linear.named_parameters()) if parameters else linear.state_dict()
  torch.save(state, tmp_path / "pytorch_model.bin")
  _assert_same(checkpoint_files.read_hf_tensors(tmp_path),
               {name: _numpy(t) for name, t in state.items()})


def test_sharded_pytorch_bin(tmp_path):
  tensors = _tensors()
  names = sorted(tensors)
  weight_map = {name: f"pytorch_model-0000{i % 2 + 1}-of-00002.bin"
                for i, name in enumerate(names)}
  for shard in set(weight_map.values()):
    torch.save({n: tensors[n] for n in names if weight_map[n] == shard}, tmp_path / shard)
  _write_index(tmp_path / "pytorch_model.bin.index.json", weight_map)
  _assert_same(checkpoint_files.read_hf_tensors(tmp_path),
               {name: _numpy(t) for name, t in tensors.items()})


def test_safetensors_comes_before_pytorch_bin(tmp_path):
  torch.save({"x": torch.zeros(1)}, tmp_path / "pytorch_model.bin")
  checkpoint_files.write_safetensors(tmp_path / "model.safetensors", {"y": np.ones(1)})
  assert list(checkpoint_files.read_hf_tensors(tmp_path)) == ["y"]


def _write_torch_zip(path: pathlib.Path, pickle_bytes: bytes, storages: dict[str, bytes]):
  """A hand-made torch.save file: `archive/data.pkl` plus raw storage records."""
  with zipfile.ZipFile(path, "w") as archive:
    archive.writestr("archive/data.pkl", pickle_bytes)
    archive.writestr("archive/byteorder", "little")
    for key, data in storages.items():
      archive.writestr(f"archive/data/{key}", data)


@pytest.mark.parametrize("target", ["os\nsystem", "builtins\neval", "posix\nsystem"])
def test_pickle_with_a_foreign_global_is_refused_unrun(tmp_path, target):
  marker = tmp_path / "ran"
  command = f"touch {marker}" if "system" in target else f"open({str(marker)!r}, 'w')"
  # Protocol 0 opcodes: GLOBAL, MARK, UNICODE, TUPLE, REDUCE, STOP: target(command).
  _write_torch_zip(tmp_path / "pytorch_model.bin", f"c{target}\n(V{command}\ntR.".encode(), {})
  module, name = target.split("\n")
  with pytest.raises(UserError, match=rf"pytorch_model.bin: unsupported object in the pickle: "
                                      rf"{module}\.{name}"):
    checkpoint_files.read_hf_tensors(tmp_path)
  assert not marker.exists()


def _tensor_pickle(offset: int, size: tuple[int, ...], stride: tuple[int, ...]) -> bytes:
  """Protocol 0/1 opcodes for {"x": _rebuild_tensor_v2(FloatStorage '0' of 4, ...)}."""
  ints = lambda xs: "(" + "".join(f"I{x}\n" for x in xs) + "t"
  return ("(dVx\nctorch._utils\n_rebuild_tensor_v2\n("
          "(Vstorage\nctorch\nFloatStorage\nV0\nVcpu\nI4\ntQ"  # BINPERSID: the storage.
          f"I{offset}\n{ints(size)}{ints(stride)}I00\n}}tRs.").encode()


def test_hand_made_pickle_reads(tmp_path):
  storage = np.arange(4, dtype=np.float32)
  _write_torch_zip(tmp_path / "pytorch_model.bin", _tensor_pickle(1, (2,), (2,)),
                   {"0": storage.tobytes()})
  _assert_same(checkpoint_files.read_hf_tensors(tmp_path), {"x": storage[1::2]})


@pytest.mark.parametrize("offset,size,stride,error", [
    (0, (2,), (4,), "reaches outside its storage"),
    (4, (1,), (1,), "reaches outside its storage"),
    (0, (2, 2), (2,), "bad tensor geometry"),
])
def test_tensor_outside_its_storage_is_refused(tmp_path, offset, size, stride, error):
  _write_torch_zip(tmp_path / "pytorch_model.bin", _tensor_pickle(offset, size, stride),
                   {"0": np.zeros(4, np.float32).tobytes()})
  with pytest.raises(UserError, match=error):
    checkpoint_files.read_hf_tensors(tmp_path)


def test_truncated_storage_is_refused(tmp_path):
  _write_torch_zip(tmp_path / "pytorch_model.bin", _tensor_pickle(0, (1,), (1,)),
                   {"0": bytes(12)})
  with pytest.raises(UserError, match="storage 0 is truncated"):
    checkpoint_files.read_hf_tensors(tmp_path)


def test_legacy_or_corrupt_pytorch_bin_is_refused(tmp_path):
  torch.save({"x": torch.zeros(2)}, tmp_path / "pytorch_model.bin",
             _use_new_zipfile_serialization=False)
  with pytest.raises(UserError, match="pytorch_model.bin is not a zip-format"):
    checkpoint_files.read_hf_tensors(tmp_path)


def test_empty_directory(tmp_path):
  with pytest.raises(UserError, match=f"{tmp_path} holds no Hugging Face weights: expected one "
                                      "of model.safetensors, model.safetensors.index.json, "
                                      r"pytorch_model.bin, pytorch_model.bin.index.json"):
    checkpoint_files.read_hf_tensors(tmp_path)


@pytest.mark.parametrize("keep_bytes", [4, 20, -1])
def test_truncated_safetensors(tmp_path, keep_bytes):
  path = tmp_path / "model.safetensors"
  checkpoint_files.write_safetensors(path, {"x": np.ones(8, np.float32)})
  path.write_bytes(path.read_bytes()[:keep_bytes])
  with pytest.raises(UserError, match="model.safetensors is not a readable safetensors file"):
    checkpoint_files.read_hf_tensors(tmp_path)


def test_config(tmp_path):
  with pytest.raises(UserError, match="is not a Hugging Face model directory: no config.json"):
    checkpoint_files.read_hf_config(tmp_path)
  (tmp_path / "config.json").write_text('{"n_layer": 2,\n "n_head": }')
  with pytest.raises(UserError, match=r"config.json is not valid JSON: .* line 2 column 12"):
    checkpoint_files.read_hf_config(tmp_path)
  (tmp_path / "config.json").write_text('{"n_layer": 2}')
  assert checkpoint_files.read_hf_config(tmp_path) == {"n_layer": 2}
