"""What trains during fine-tuning: freezing masks, layer-wise LR decay and the optax wrapper.

They act on the model family's layer groups (`lm.models.layer_groups.LayerGroups`: embeddings,
blocks in order, head); a model without them can only train in full.

Masks and scales are trees shaped like the parameters, with one multiplier per leaf: True/False
(or a float) for a whole leaf, or, for a leaf of the scanned `blocks` stack ([L, ...], one
slice per layer), a float32 [L, 1, ...] array that broadcasts against it.
"""

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lm.errors import UserError
from lm.models import layer_groups as lg
from lm.models.layer_groups import LayerGroups

METHODS = ("full", "linear_probe", "lora")
HEAD = "classifier"  # The task head: the only module a linear probe trains.
LORA_LEAVES = ("lora_a", "lora_b")


def trainable_mask(params: Any, *, method: str, freeze_embeddings: bool, freeze_layers: int,
                   groups: LayerGroups, new_tokens: tuple[int, int] | None = None) -> Any:
  """Per leaf: True (trains), False (frozen) or a float32 0/1 array that broadcasts against it:
  [L, 1, ...] for a scanned leaf, one value per token id for the rows of `new_tokens`.

  'full' trains everything but the embeddings (if `freeze_embeddings`) and the bottom
  `freeze_layers` blocks; 'linear_probe' trains only the classifier; 'lora' only the LoRA
  factors (lora_a, lora_b) and the classifier. The freeze options apply to 'full' only.
  `new_tokens` = (first, vocab_size): ids first.. are new (the pretrained vocabulary had
  `first`); their rows of frozen embedding and head leaves (the one axis of vocab_size) train.
  """
  num_layers = groups.num_layers
  if method not in METHODS:
    raise UserError(f"config.finetune.method must be one of {', '.join(METHODS)}; got {method!r}")
  if (isinstance(freeze_layers, bool) or not isinstance(freeze_layers, (int, np.integer)) or
      not 0 <= freeze_layers <= num_layers):
    raise UserError(f"config.finetune.freeze_layers must be an integer in [0, {num_layers}]"
                    f" (the number of layers); got {freeze_layers!r}")
  frozen = int(freeze_layers) if method == "full" else 0

  def leaf_mask(path, leaf):
    group, layer = groups.group_of(_key(path[0]))
    trains = frozen_or_not(path, leaf, group, layer)
    if new_tokens and trains is False and group in (lg.EMBEDDINGS, lg.HEAD):
      return _token_rows(leaf, *new_tokens)
    return trains

  def frozen_or_not(path, leaf, group, layer):
    top, name = _key(path[0]), _key(path[-1])
    if group == lg.SCANNED:
      _check_stacked(path, leaf, num_layers)
    if method == "linear_probe":
      return top == HEAD
    if method == "lora":
      return top == HEAD or name in LORA_LEAVES
    if (freeze_embeddings and group == lg.EMBEDDINGS) or (layer is not None and layer < frozen):
      return False
    if group == lg.SCANNED and frozen:
      return False if frozen == num_layers else _per_layer(leaf, np.arange(num_layers) >= frozen)
    return True

  mask = jax.tree_util.tree_map_with_path(leaf_mask, params)
  names = {_key(path[-1]) for path, _ in jax.tree_util.tree_flatten_with_path(params)[0]}
  if method == "lora" and not names & set(LORA_LEAVES):
    raise UserError("config.finetune.method='lora' but the model has no LoRA adapters; set"
                    " config.finetune.lora_rank > 0")
  if not any(_fraction(m) for m in jax.tree.leaves(mask)):
    raise UserError(f"config.finetune: nothing would train (method={method!r},"
                    f" freeze_layers={freeze_layers}, freeze_embeddings={freeze_embeddings})")
  return mask


def _token_rows(leaf: Any, first: int, vocab_size: int) -> Any:
  """float32 0/1 per token id along `leaf`'s one axis of `vocab_size` (1 for ids >= `first`),
  broadcastable to it; False if it has no such axis."""
  shape = np.shape(leaf)
  axes = [axis for axis, size in enumerate(shape) if size == vocab_size]
  if len(axes) != 1 or not 0 <= first < vocab_size:
    return False
  rows = (np.arange(vocab_size) >= first).astype(np.float32)
  return rows.reshape([vocab_size if axis == axes[0] else 1 for axis in range(len(shape))])


def layer_lr_scales(params: Any, *, groups: LayerGroups, decay: float) -> Any:
  """Layer-wise learning-rate decay (Clark et al. 2020, ELECTRA): a multiplier per leaf.

  The head (classifier, final_norm, lm_head) gets 1, block i gets decay**(L - i) and the
  embeddings decay**(L + 1) (with tied embeddings, this also slows the output projection).
  """
  _check_decay(decay)
  num_layers = groups.num_layers

  def leaf_scale(path, leaf):
    group, layer = groups.group_of(_key(path[0]))
    if group == lg.EMBEDDINGS:
      return float(decay**(num_layers + 1))
    if group == lg.SCANNED:
      _check_stacked(path, leaf, num_layers)
      return _per_layer(leaf, decay**(num_layers - np.arange(num_layers, dtype=np.float64)))
    return 1.0 if layer is None else float(decay**(num_layers - layer))

  return jax.tree_util.tree_map_with_path(leaf_scale, params)


def restrict(tx: optax.GradientTransformation, params: Any, finetune_cfg: Any,
             groups: LayerGroups | None,
             new_tokens: tuple[int, int] | None = None) -> optax.GradientTransformation:
  """`tx` limited to the trainable parameters, with layer-wise LR decay.

  chain(zero frozen gradients, tx, scale updates): `tx` (clipping, Adam moments) sees no
  gradient of a frozen parameter, and frozen parameters get updates of -0.0, so they stay
  bit-identical through weight decay (x + -0.0 == x bit for bit, even for x = -0.0; x + 0.0
  turns -0.0 into +0.0). The optimizer state keeps the parameters' tree structure (frozen
  leaves hold zero moments), so `optax.tree_map_params` shards it like the parameters.
  `finetune_cfg` has method, freeze_embeddings, freeze_layers and layer_lr_decay (1.0 = off).
  `groups` are the model's layer groups (None: the family states none, which is refused);
  `new_tokens` as in `trainable_mask`.
  """
  decay = finetune_cfg.layer_lr_decay
  _check_decay(decay)
  if groups is None:
    if (finetune_cfg.method, finetune_cfg.freeze_embeddings, finetune_cfg.freeze_layers,
        decay) == ("full", False, 0, 1.0):
      return tx  # Every parameter trains alike: nothing to know about the layers.
    raise UserError(f"config.finetune (method={finetune_cfg.method!r}, freeze_layers="
                    f"{finetune_cfg.freeze_layers}, freeze_embeddings="
                    f"{finetune_cfg.freeze_embeddings}, layer_lr_decay={decay}): this model "
                    f"family states no layer groups (embeddings, blocks, head), so only full "
                    f"fine-tuning of every parameter is possible")
  mask = trainable_mask(params,
                        method=finetune_cfg.method,
                        freeze_embeddings=finetune_cfg.freeze_embeddings,
                        freeze_layers=finetune_cfg.freeze_layers,
                        groups=groups,
                        new_tokens=new_tokens)
  scales = layer_lr_scales(params, groups=groups, decay=decay)
  grad_multipliers = jax.tree.map(_as_float, mask)
  update_multipliers = jax.tree.map(lambda m, scale: _simplify(scale * _as_float(m)), mask, scales)
  transforms = [tx]
  if not all(_is_one(m) for m in jax.tree.leaves(grad_multipliers)):
    transforms.insert(0, _multiply(grad_multipliers))
  if not all(_is_one(m) for m in jax.tree.leaves(update_multipliers)):
    transforms.append(_multiply(update_multipliers))
  return tx if len(transforms) == 1 else optax.chain(*transforms)


def count_parameters(params: Any, mask: Any) -> tuple[int, int]:
  """(trainable, total) scalar parameters; a scanned leaf counts its trainable layers only."""
  trainable = total = 0
  for leaf, m in zip(jax.tree.leaves(params), jax.tree.leaves(mask)):
    size = int(np.prod(np.shape(leaf)))
    total += size
    trainable += round(size * _fraction(m))
  return trainable, total


def _multiply(multipliers: Any) -> optax.GradientTransformation:
  """Multiplies each update by its multiplier (a float or a [L, 1, ...] array).

  Where the multiplier is 0 the result is -0.0, not a product: 0 * NaN is NaN, and 0 * u is
  +0.0 for u > 0, which would turn a -0.0 parameter into +0.0.
  """

  def multiply(u, m):
    if isinstance(m, np.ndarray):
      return jnp.where(m > 0, u * jnp.asarray(m, u.dtype), jnp.asarray(-0.0, u.dtype))
    if m == 0.0:
      return jnp.full_like(u, -0.0)
    return u if m == 1.0 else u * jnp.asarray(m, u.dtype)

  def update(updates, state, params=None):
    del params
    return jax.tree.map(multiply, updates, multipliers), state

  return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


def _key(entry: Any) -> str:
  return str(getattr(entry, "key", getattr(entry, "name", entry)))


def _check_stacked(path: Any, leaf: Any, num_layers: int) -> None:
  shape = np.shape(leaf)
  if not shape or shape[0] != num_layers:
    name = "/".join(_key(k) for k in path)
    raise ValueError(f"scanned parameter {name} has shape {shape}; expected a leading layer"
                     f" axis of num_layers={num_layers}")


def _per_layer(leaf: Any, values_L: np.ndarray) -> np.ndarray:
  """float32 [L, 1, ...]: one value per layer, broadcastable to the stacked `leaf`."""
  return np.asarray(values_L, np.float32).reshape((-1,) + (1,) * (np.ndim(leaf) - 1))


def _as_float(m: Any) -> Any:
  return m.astype(np.float32) if isinstance(m, np.ndarray) else float(m)


def _fraction(m: Any) -> float:
  """Share of a leaf that trains under mask entry `m`."""
  return float(np.mean(np.asarray(m) != 0))


def _is_one(m: Any) -> bool:
  return not isinstance(m, np.ndarray) and m == 1.0


def _simplify(m: Any) -> Any:
  """1.0 for an array of ones (nothing to do), else `m`."""
  return 1.0 if isinstance(m, np.ndarray) and np.all(m == 1.0) else m


def _check_decay(decay: Any) -> None:
  if isinstance(decay, bool) or not isinstance(decay, (int, float)) or not 0.0 < decay <= 1.0:
    raise UserError(f"config.finetune.layer_lr_decay must be in (0, 1] (1.0 = off); got {decay!r}")
