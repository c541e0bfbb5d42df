"""Rules that map this project's parameters to Hugging Face tensors and back.

A rule ties parameters ('/'-joined paths in the Flax tree, e.g. `block_0/attn/query/kernel`) to
named PyTorch tensors, usually one to one, with the two reshapes between them. The same rules serve
import and export, so the two directions cannot drift apart.
"""

import dataclasses
from typing import Callable, Sequence

import numpy as np

from lm.errors import UserError


@dataclasses.dataclass(frozen=True)
class Rule:
  """`params` <-> `tensors`: to_params(*tensors) and to_tensors(*params) return tuples."""
  params: tuple[str, ...]
  tensors: tuple[str, ...]
  to_params: Callable[..., tuple[np.ndarray, ...]]
  to_tensors: Callable[..., tuple[np.ndarray, ...]]


def one_to_one(param: str, tensor: str, to_param: Callable, to_tensor: Callable) -> Rule:
  return Rule((param,), (tensor,), lambda x: (to_param(x),), lambda x: (to_tensor(x),))


def copy(param: str, tensor: str) -> Rule:
  """The same array on both sides (embeddings, norms, biases of the same layout)."""
  return one_to_one(param, tensor, lambda x: x, lambda x: x)


def linear(param: str, tensor: str, kernel_shape: Sequence[int], num_input_axes: int = 1) -> Rule:
  """A torch.nn.Linear weight [out, in] <-> a kernel [in..., out...] of `kernel_shape`, whose
  first `num_input_axes` axes are the input (2 for the attention output [H, Dh, D])."""
  shape, fan_in = tuple(kernel_shape), int(np.prod(kernel_shape[:num_input_axes]))
  return one_to_one(param, tensor, lambda w: w.T.reshape(shape), lambda k: k.reshape(fan_in, -1).T)


def conv1d(param: str, tensor: str, kernel_shape: Sequence[int], num_input_axes: int = 1) -> Rule:
  """GPT-2's Conv1D weight [in, out] <-> a kernel of `kernel_shape` (see `linear`)."""
  shape, fan_in = tuple(kernel_shape), int(np.prod(kernel_shape[:num_input_axes]))
  return one_to_one(param, tensor, lambda w: w.reshape(shape), lambda k: k.reshape(fan_in, -1))


def flat_bias(param: str, tensor: str, bias_shape: Sequence[int]) -> Rule:
  """A flat bias [out] <-> a bias of `bias_shape` (e.g. [heads, head_dim])."""
  shape = tuple(bias_shape)
  return one_to_one(param, tensor, lambda b: b.reshape(shape), lambda b: b.reshape(-1))


def key_value(param: str, key: str, value: str, kernel_shape: Sequence[int],
              transpose: bool) -> Rule:
  """Separate key and value weights [out, in] (or [in, out] without `transpose`, or biases)
  <-> one [..., K, 2, Dh] array with keys at index 0 and values at index 1 of the pair axis."""
  shape = tuple(kernel_shape)  # [D, K, 2, Dh] for kernels, [K, 2, Dh] for biases.
  single = shape[:-2] + shape[-1:]

  def to_param(k, v):
    k, v = (k.T, v.T) if transpose else (k, v)
    return (np.stack([k.reshape(single), v.reshape(single)], axis=-2),)

  def to_tensors(kv):
    fan_in = int(np.prod(shape[:-3])) if len(shape) == 4 else 1
    k, v = (kv[..., 0, :].reshape(fan_in, -1), kv[..., 1, :].reshape(fan_in, -1))
    if len(shape) == 3:  # A bias: flat.
      return k.reshape(-1), v.reshape(-1)
    return (k.T, v.T) if transpose else (k, v)

  return Rule((param,), (key, value), to_param, to_tensors)


def to_params(tensors: dict[str, np.ndarray], rules: Sequence[Rule], expected_shapes: dict,
              source: str) -> dict:
  """Applies `rules` to `tensors`; returns a nested parameter tree. A missing tensor or a shape
  that differs from `expected_shapes` (path -> shape) raises UserError naming the tensor."""
  params = {}
  for rule in rules:
    missing = [name for name in rule.tensors if name not in tensors]
    if missing:
      raise UserError(f"{source}: tensor {missing[0]} is missing (needed for {rule.params[0]})")
    arrays = [np.asarray(tensors[name]) for name in rule.tensors]
    try:
      values = rule.to_params(*arrays)
    except ValueError:  # A reshape that cannot fit.
      values = (None,) * len(rule.params)
    for path, value in zip(rule.params, values):
      expected = tuple(expected_shapes[path])
      if value is None or value.shape != expected:
        shapes = ", ".join(f"{n} {a.shape}" for n, a in zip(rule.tensors, arrays))
        raise UserError(f"{source}: tensor {shapes} does not fit parameter {path} of shape "
                        f"{expected} (config.json and the weights disagree)")
      set_path(params, path, value)
  return params


def to_tensors(params: dict, rules: Sequence[Rule]) -> dict[str, np.ndarray]:
  """Applies `rules` to a nested parameter tree; returns {tensor name: contiguous array}."""
  tensors = {}
  for rule in rules:
    values = [np.asarray(get_path(params, path)) for path in rule.params]
    for name, array in zip(rule.tensors, rule.to_tensors(*values)):
      tensors[name] = np.asarray(array, order="C")
  return tensors


def flatten(params: dict, prefix: str = "") -> dict[str, np.ndarray]:
  """{'/'-joined path: leaf} of a nested parameter tree."""
  flat = {}
  for key, value in params.items():
    path = f"{prefix}{key}"
    if isinstance(value, dict):
      flat.update(flatten(value, path + "/"))
    else:
      flat[path] = value
  return flat


def set_path(tree: dict, path: str, value) -> None:
  *parents, leaf = path.split("/")
  for key in parents:
    tree = tree.setdefault(key, {})
  tree[leaf] = value


def get_path(tree: dict, path: str):
  for key in path.split("/"):
    tree = tree[key]
  return tree


def norm(ours: str, theirs: str, bias: bool = True) -> list[Rule]:
  """A norm's scale (and bias) <-> `theirs`.weight (and .bias)."""
  rules = [copy(f"{ours}/scale", f"{theirs}.weight")]
  return rules + [copy(f"{ours}/bias", f"{theirs}.bias")] if bias else rules


def dense(ours: str,
          theirs: str,
          kernel_shape: Sequence[int],
          bias: bool = True,
          num_input_axes: int = 1) -> list[Rule]:
  """A torch.nn.Linear `theirs` (weight [, bias]) <-> `ours`/kernel [, `ours`/bias]."""
  rules = [linear(f"{ours}/kernel", f"{theirs}.weight", kernel_shape, num_input_axes)]
  if bias:
    rules.append(flat_bias(f"{ours}/bias", f"{theirs}.bias", kernel_shape[num_input_axes:]))
  return rules
