"""Reads `torch.save` checkpoints (the zip format of torch >= 1.6) into numpy arrays, without torch.

The pickle in such a file is untrusted: the unpickler resolves only the few globals a tensor
state dict needs, each mapped to a numpy-building stand-in, so loading never runs code from
the file. Layout of the zip: `<name>/data.pkl` (the pickled dict), `<name>/data/<key>` (raw
little-endian storage bytes), `<name>/byteorder`.
"""

import collections
import dataclasses
import os
import pickle
import zipfile

import ml_dtypes
import numpy as np

from lm.errors import UserError

# `torch.<name>` dtype objects (as `_rebuild_tensor_v3` pickles them) -> numpy dtype.
_DTYPES = {
    "float64": np.float64, "float32": np.float32, "float16": np.float16,
    "bfloat16": ml_dtypes.bfloat16, "float8_e4m3fn": ml_dtypes.float8_e4m3fn,
    "float8_e5m2": ml_dtypes.float8_e5m2, "complex64": np.complex64,
    "complex128": np.complex128, "int64": np.int64, "int32": np.int32, "int16": np.int16,
    "int8": np.int8, "uint64": np.uint64, "uint32": np.uint32, "uint16": np.uint16,
    "uint8": np.uint8, "bool": np.bool_,
}
# Legacy typed storage classes (`torch.FloatStorage`, ...) -> their torch dtype name.
_STORAGE_TYPES = {
    "DoubleStorage": "float64", "FloatStorage": "float32", "HalfStorage": "float16",
    "BFloat16Storage": "bfloat16", "ComplexFloatStorage": "complex64",
    "ComplexDoubleStorage": "complex128", "LongStorage": "int64", "IntStorage": "int32",
    "ShortStorage": "int16", "CharStorage": "int8", "ByteStorage": "uint8",
    "BoolStorage": "bool",
}


@dataclasses.dataclass(frozen=True)
class _Storage:
  """One storage record: raw bytes that any number of tensors may view."""

  data: np.ndarray  # uint8
  dtype: np.dtype


def _naturals(*values) -> bool:
  """Whether all `values` are non-negative ints (not bools)."""
  return all(type(v) is int and v >= 0 for v in values)  # pylint: disable=unidiomatic-typecheck


def _tensor(storage, offset, size, stride, dtype=None) -> np.ndarray:
  """Copies the tensor viewing `storage` at element `offset` with `size` and `stride`."""
  if not isinstance(storage, _Storage):
    raise pickle.UnpicklingError("a tensor without a storage")
  dtype = storage.dtype if dtype is None else dtype
  if not isinstance(dtype, np.dtype):
    raise pickle.UnpicklingError(f"not a dtype: {dtype!r}")
  if not (isinstance(size, tuple) and isinstance(stride, tuple) and len(size) == len(stride)
          and _naturals(offset, *size, *stride)):
    raise pickle.UnpicklingError(f"bad tensor geometry: {offset!r}, {size!r}, {stride!r}")
  if 0 in size:
    return np.zeros(size, dtype)
  elements = storage.data[:len(storage.data) // dtype.itemsize * dtype.itemsize].view(dtype)
  # as_strided does no bounds checks: a hostile file must not make it read foreign memory.
  if offset + sum((n - 1) * s for n, s in zip(size, stride)) >= len(elements):
    raise pickle.UnpicklingError(f"a tensor reaches outside its storage: offset {offset}, "
                                 f"size {size}, stride {stride}, storage {len(elements)}")
  strides = [s * dtype.itemsize for s in stride]
  return np.lib.stride_tricks.as_strided(elements[offset:], size, strides).copy()


def _rebuild_tensor_v3(storage, offset, size, stride, requires_grad, hooks, dtype,
                       metadata=None):
  """Stands in for `torch._utils._rebuild_tensor_v3` (untyped storage plus a dtype)."""
  del requires_grad, hooks
  if metadata:  # The conj/neg bits would change the values.
    raise pickle.UnpicklingError(f"unsupported tensor metadata {metadata!r}")
  return _tensor(storage, offset, size, stride, dtype)


def _rebuild_tensor_v2(storage, offset, size, stride, requires_grad=False, hooks=None,
                       metadata=None):
  """Stands in for `torch._utils._rebuild_tensor_v2` and `_rebuild_tensor`: typed storage."""
  return _rebuild_tensor_v3(storage, offset, size, stride, requires_grad, hooks, None, metadata)


def _rebuild_parameter(data, requires_grad, hooks, state=None):
  """Stands in for `torch._utils._rebuild_parameter[_with_state]`: a Parameter is its data."""
  del requires_grad, hooks, state
  return data


# The whitelist: everything else in a pickle is refused.
_GLOBALS = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_tensor_v3"): _rebuild_tensor_v3,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("torch.storage", "UntypedStorage"): np.dtype(np.uint8),
    ("torch", "UntypedStorage"): np.dtype(np.uint8),
    **{("torch", name): np.dtype(dtype) for name, dtype in _DTYPES.items()},
    **{("torch", name): np.dtype(_DTYPES[dtype]) for name, dtype in _STORAGE_TYPES.items()},
}


class _Unpickler(pickle.Unpickler):
  """Unpickles `data.pkl`, reading storages from the zip and refusing unknown globals."""

  def __init__(self, file, archive: zipfile.ZipFile, prefix: str):
    super().__init__(file)
    self._archive = archive
    self._prefix = prefix
    self._storages = {}  # key -> _Storage; tensors that share a storage see the same one.

  def find_class(self, module, name):
    try:
      return _GLOBALS[module, name]
    except KeyError:
      raise pickle.UnpicklingError(
          f"unsupported object in the pickle: {module}.{name}") from None

  def persistent_load(self, pid):
    if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
      raise pickle.UnpicklingError(f"unsupported persistent id {pid!r}")
    _, dtype, key, _, numel = pid
    if not (isinstance(dtype, np.dtype) and isinstance(key, str) and _naturals(numel)):
      raise pickle.UnpicklingError(f"bad storage reference {pid!r}")
    if key not in self._storages:
      data = np.frombuffer(self._archive.read(f"{self._prefix}data/{key}"), np.uint8)
      if len(data) < numel * dtype.itemsize:
        raise pickle.UnpicklingError(f"storage {key} is truncated: {len(data)} bytes for "
                                     f"{numel} elements of {dtype}")
      self._storages[key] = _Storage(data, dtype)
    return self._storages[key]


def load(path: str | os.PathLike) -> dict[str, np.ndarray]:
  """Reads a `torch.save`d dict of tensors (a `pytorch_model.bin`) as numpy arrays.

  Raises:
    UserError: naming `path` if it is no zip-format checkpoint, is corrupt, or holds
      anything but a dict of dense CPU-loadable tensors.
  """
  if not zipfile.is_zipfile(path):
    raise UserError(f"{path} is not a zip-format PyTorch checkpoint (torch.save of torch >= 1.6)"
                    ": it is corrupt or in the legacy format; re-save it with a recent torch")
  try:
    with zipfile.ZipFile(path) as archive:
      names = archive.namelist()
      pickles = [n for n in names if n.endswith("/data.pkl") and n.count("/") == 1]
      if len(pickles) != 1:
        raise pickle.UnpicklingError("expected exactly one <name>/data.pkl record")
      prefix = pickles[0][:-len("data.pkl")]
      if prefix + "byteorder" in names and archive.read(prefix + "byteorder") != b"little":
        raise pickle.UnpicklingError("big-endian checkpoints are not supported")
      with archive.open(pickles[0]) as f:
        state = _Unpickler(f, archive, prefix).load()
  except Exception as e:  # pylint: disable=broad-except
    # Decoding untrusted bytes can fail in many ways (zip, zlib, pickle opcodes, bad
    # arguments to the stand-ins); each one means the same thing: an unreadable file.
    raise UserError(f"cannot read PyTorch checkpoint {path}: {e}") from e
  if not isinstance(state, dict):
    raise UserError(f"{path} holds a {type(state).__name__}, not a dict of tensors")
  for name, value in state.items():
    if not isinstance(name, str) or not isinstance(value, np.ndarray):
      raise UserError(f"{path}: entry {name!r} is not a tensor but a {type(value).__name__}")
  return dict(state)
