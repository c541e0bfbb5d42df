"""Reads and writes the weight files of Hugging Face model directories, without torch.

Reads `config.json` and the weights (safetensors or `pytorch_model.bin`, whole or sharded);
writes `.safetensors` files. Tensors are numpy arrays in their stored dtype (bfloat16 and
float8 via ml_dtypes).

The safetensors format (https://github.com/huggingface/safetensors) is an 8-byte little-endian
header length, a JSON header `{name: {dtype, shape, data_offsets}, "__metadata__": {...}}` and
the raw little-endian bytes; it is read and written here directly because
`safetensors.numpy` has no bfloat16.
"""

import json
import math
import os
from typing import Any, Callable

import ml_dtypes
import numpy as np

from lm.convert import torch_pickle
from lm.data import atomic
from lm.errors import UserError

_SAFETENSORS_DTYPES = {
    "F64": np.float64, "F32": np.float32, "F16": np.float16, "BF16": ml_dtypes.bfloat16,
    "F8_E4M3": ml_dtypes.float8_e4m3fn, "F8_E5M2": ml_dtypes.float8_e5m2,
    "C64": np.complex64, "I64": np.int64, "I32": np.int32, "I16": np.int16, "I8": np.int8,
    "U64": np.uint64, "U32": np.uint32, "U16": np.uint16, "U8": np.uint8, "BOOL": np.bool_,
}
_SAFETENSORS_NAMES = {np.dtype(dtype): name for name, dtype in _SAFETENSORS_DTYPES.items()}

# Where Hugging Face keeps the weights, in the order `read_hf_tensors` looks for them.
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json")


def _read_json_object(path: str) -> dict[str, Any]:
  """Reads a JSON file that must hold an object; a UserError names the file otherwise."""
  try:
    with open(path, encoding="utf-8") as f:
      value = json.load(f)
  except ValueError as e:  # JSONDecodeError (with line and column) or UnicodeDecodeError.
    raise UserError(f"{path} is not valid JSON: {e}") from None
  if not isinstance(value, dict):
    raise UserError(f"{path} must hold a JSON object, not a {type(value).__name__}")
  return value


def read_hf_config(directory: str | os.PathLike) -> dict[str, Any]:
  """Returns the parsed `config.json` of a Hugging Face model directory."""
  path = os.path.join(directory, "config.json")
  if not os.path.isfile(path):
    raise UserError(f"{directory} is not a Hugging Face model directory: no config.json")
  return _read_json_object(path)


def read_safetensors(path: str | os.PathLike) -> dict[str, np.ndarray]:
  """Reads a `.safetensors` file as read-only arrays that memory-map it."""
  try:
    size = os.path.getsize(path)
    with open(path, "rb") as f:
      header_size = int.from_bytes(f.read(8), "little")
      if size < 8 + header_size:
        raise ValueError(f"the header needs {header_size} bytes, the file has {size}")
      header = json.loads(f.read(header_size))
    start = 8 + header_size
    # mmap refuses an empty range; a file of empty tensors has no data bytes at all.
    data = (np.asarray(np.memmap(path, np.uint8, "r", offset=start)) if size > start
            else np.zeros(0, np.uint8))
    header.pop("__metadata__", None)
    tensors = {}
    for name, info in header.items():
      if info["dtype"] not in _SAFETENSORS_DTYPES:
        raise ValueError(f"tensor {name!r} has the unsupported dtype {info['dtype']}")
      dtype = np.dtype(_SAFETENSORS_DTYPES[info["dtype"]])
      shape = tuple(info["shape"])
      begin, end = info["data_offsets"]
      if not 0 <= begin <= end <= len(data) or end - begin != math.prod(shape) * dtype.itemsize:
        raise ValueError(f"tensor {name!r} {info} does not fit the {len(data)} data bytes "
                         "(a truncated file?)")
      tensors[name] = data[begin:end].view(dtype).reshape(shape)
  except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
    raise UserError(f"{path} is not a readable safetensors file: {type(e).__name__}: {e}") from e
  return tensors


def write_safetensors(path: str | os.PathLike, tensors: dict[str, np.ndarray],
                      metadata: dict[str, str] | None = None) -> None:
  """Writes `tensors` to a `.safetensors` file atomically (a crash leaves no partial file).

  Args:
    path: the file to write; its directory is created if needed.
    tensors: name -> array of a dtype safetensors knows (incl. ml_dtypes.bfloat16).
    metadata: string pairs for `__metadata__`, added to {"format": "pt"}, which
      `transformers` requires to load the file.
  """
  arrays = {name: np.asarray(a, order="C") for name, a in tensors.items()}
  # Widest dtypes first, as the safetensors package does, keeps every tensor aligned.
  order = sorted(arrays, key=lambda name: (-arrays[name].dtype.itemsize, name))
  header = {"__metadata__": {"format": "pt", **(metadata or {})}}
  if not all(isinstance(v, str) for v in header["__metadata__"].values()):
    raise ValueError(f"safetensors metadata values must be strings: {metadata}")
  offset = 0
  for name in order:
    a = arrays[name]
    if a.dtype not in _SAFETENSORS_NAMES:
      raise ValueError(f"tensor {name!r} has dtype {a.dtype}, which safetensors cannot store")
    header[name] = {"dtype": _SAFETENSORS_NAMES[a.dtype], "shape": list(a.shape),
                    "data_offsets": [offset, offset + a.nbytes]}
    offset += a.nbytes
  header_bytes = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
  header_bytes += b" " * (-len(header_bytes) % 8)  # The data starts 8-byte aligned.
  with atomic.atomic_writer(path) as f:
    f.write(len(header_bytes).to_bytes(8, "little"))
    f.write(header_bytes)
    for name in order:
      f.write(arrays[name].tobytes())


def _read_sharded(index_path: str,
                  read_file: Callable[[str], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
  """Reads every shard that a `*.index.json` "weight_map" (tensor name -> file) names."""
  weight_map = _read_json_object(index_path).get("weight_map")
  if not (isinstance(weight_map, dict) and all(isinstance(f, str) for f in weight_map.values())):
    raise UserError(f"{index_path} has no \"weight_map\" object of tensor name -> file name")
  tensors = {}
  for shard in sorted(set(weight_map.values())):
    shard_path = os.path.join(os.path.dirname(index_path), shard)
    if not os.path.isfile(shard_path):
      raise UserError(f"{shard_path} is missing: {index_path} lists it as a shard")
    tensors.update(read_file(shard_path))
  missing = sorted(set(weight_map) - set(tensors))
  if missing:
    raise UserError(f"{index_path} lists {len(missing)} tensors that its shards lack, e.g. "
                    f"{missing[0]!r}")
  return tensors


def read_hf_tensors(directory: str | os.PathLike) -> dict[str, np.ndarray]:
  """Returns all weights of a Hugging Face model directory by name, in their stored dtype.

  Reads the first of `WEIGHT_FILES` that exists. Arrays from safetensors files are read-only
  memory maps; copy one before changing it in place.
  """
  for name in WEIGHT_FILES:
    path = os.path.join(directory, name)
    if os.path.isfile(path):
      break
  else:
    raise UserError(f"{directory} holds no Hugging Face weights: expected one of "
                    f"{', '.join(WEIGHT_FILES)}")
  read_file = read_safetensors if name.startswith("model.safetensors") else torch_pickle.load
  return _read_sharded(path, read_file) if name.endswith(".index.json") else read_file(path)
