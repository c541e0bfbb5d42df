"""The optimizer (AdamW by default; Adam, SGD, Adafactor, Lion) with weight decay on matrices, a
learning-rate schedule and clipping."""

from typing import Any, Callable

import jax
import optax

from lm.errors import UserError

SCHEDULES = ("cosine", "linear", "constant")


def learning_rate_schedule(train_cfg: Any) -> optax.Schedule:
  """Linear warmup from 0 to learning_rate, then cosine/linear decay to min_learning_rate."""
  peak, end = train_cfg.learning_rate, train_cfg.min_learning_rate
  warmup, steps = train_cfg.warmup_steps, train_cfg.steps
  if train_cfg.schedule not in SCHEDULES:
    raise UserError(f"config.train.schedule: unknown schedule {train_cfg.schedule!r}; "
                    f"choose one of {', '.join(SCHEDULES)}")
  if not 0 <= warmup <= steps:
    raise UserError(f"config.train.warmup_steps={warmup} must be between 0 and train.steps={steps}")
  warmup_fn = optax.linear_schedule(0.0, peak, warmup) if warmup else optax.constant_schedule(peak)
  decay_steps = max(steps - warmup, 1)
  decay_fn = {
      "cosine": optax.cosine_decay_schedule(peak, decay_steps, alpha=end / peak if peak else 0.0),
      "linear": optax.linear_schedule(peak, end, decay_steps),
      "constant": optax.constant_schedule(peak),
  }[train_cfg.schedule]
  return optax.join_schedules([warmup_fn, decay_fn], [warmup])


def weight_decay_mask(params: Any, decay_embeddings: bool) -> Any:
  """True for the parameters that get weight decay: matrices, and embeddings if asked."""

  def decays(path, leaf) -> bool:
    name = str(getattr(path[-1], "key", path[-1]))
    del leaf
    if name == "embedding":
      return decay_embeddings
    return name == "kernel"  # Matmul weights; never norm scales or biases (of any rank).

  return jax.tree_util.tree_map_with_path(decays, params)


def make_optimizer(train_cfg: Any,
                   params: Any,
                   finetune_cfg: Any = None,
                   groups: Any = None,
                   new_tokens: tuple[int, int] | None = None,
                   lr_scale: Any = None) -> tuple[optax.GradientTransformation, Any]:
  """AdamW as config.train says, restricted to the parameters config.finetune trains (with its
  layer-wise learning-rate decay, over the model's layer `groups`, `LayerGroups`; the rows of
  `new_tokens`, see `trainable.trainable_mask`); returns it and the trainable mask (None: all
  train).
  `lr_scale` (a number or traced scalar) multiplies the schedule; the state is the same."""
  adamw = _adamw(train_cfg, params, lr_scale)
  if finetune_cfg is None or _trains_everything(finetune_cfg):
    return adamw, None
  from lm.training import trainable  # pylint: disable=g-import-not-at-top
  tx = trainable.restrict(adamw, params, finetune_cfg, groups, new_tokens)  # Refuses no groups.
  mask = trainable.trainable_mask(params,
                                  method=finetune_cfg.method,
                                  freeze_embeddings=finetune_cfg.freeze_embeddings,
                                  freeze_layers=finetune_cfg.freeze_layers,
                                  groups=groups,
                                  new_tokens=new_tokens)
  return tx, mask


def _trains_everything(finetune_cfg: Any) -> bool:
  return (finetune_cfg.method == "full" and not finetune_cfg.freeze_embeddings and
          not finetune_cfg.freeze_layers and finetune_cfg.layer_lr_decay == 1.0)


def _adamw(train_cfg: Any, params: Any, lr_scale: Any = None) -> optax.GradientTransformation:
  """config.train.optimizer (`OPTIMIZERS`) on the schedule, after gradient clipping."""
  for key in ("learning_rate", "weight_decay", "grad_clip"):
    if train_cfg[key] < 0:
      raise UserError(f"config.train.{key} must be >= 0, got {train_cfg[key]}")
  name = train_cfg.get("optimizer", "adamw")
  if name not in OPTIMIZERS:
    raise UserError(f"config.train.optimizer={name!r}: choose one of {', '.join(OPTIMIZERS)}")
  schedule = learning_rate_schedule(train_cfg)
  if lr_scale is not None:
    schedule = lambda count, unscaled=schedule: unscaled(count) * lr_scale
  tx = OPTIMIZERS[name](train_cfg, schedule, weight_decay_mask(params, train_cfg.decay_embeddings))
  if train_cfg.grad_clip:
    return optax.chain(optax.clip_by_global_norm(train_cfg.grad_clip), tx)
  return tx


def _adamw_tx(cfg: Any, schedule: optax.Schedule, mask: Any) -> optax.GradientTransformation:
  return optax.adamw(schedule, b1=cfg.b1, b2=cfg.b2, eps=cfg.eps, weight_decay=cfg.weight_decay,
                     mask=mask)


def _adam_tx(cfg: Any, schedule: optax.Schedule, mask: Any) -> optax.GradientTransformation:
  """Adam, weight decay as an L2 term added to the gradient (PyTorch's Adam(weight_decay))."""
  return optax.chain(_l2(cfg, mask), optax.adam(schedule, b1=cfg.b1, b2=cfg.b2, eps=cfg.eps))


def _sgd_tx(cfg: Any, schedule: optax.Schedule, mask: Any) -> optax.GradientTransformation:
  """SGD with config.train.momentum (0: none) and nesterov, L2 weight decay as PyTorch's SGD."""
  return optax.chain(
      _l2(cfg, mask),
      optax.sgd(schedule, momentum=cfg.momentum or None, nesterov=cfg.nesterov))


def _adafactor_tx(cfg: Any, schedule: optax.Schedule, mask: Any) -> optax.GradientTransformation:
  """Adafactor (Shazeer & Stern 2018) as optax has it: factored second moments, updates scaled
  by the parameters' RMS; decoupled weight decay on `mask`."""
  return optax.adafactor(schedule, weight_decay_rate=cfg.weight_decay or None,
                         weight_decay_mask=mask)


def _lion_tx(cfg: Any, schedule: optax.Schedule, mask: Any) -> optax.GradientTransformation:
  """Lion (Chen et al. 2023): sign updates from b1/b2 interpolations; wants a 3-10x smaller
  learning rate and a larger weight decay than AdamW."""
  return optax.lion(schedule, b1=cfg.b1, b2=cfg.b2, weight_decay=cfg.weight_decay, mask=mask)


def _l2(cfg: Any, mask: Any) -> optax.GradientTransformation:
  return optax.add_decayed_weights(cfg.weight_decay, mask) if cfg.weight_decay else optax.identity()


# config.train.optimizer -> (train config, schedule, weight-decay mask) -> the optax optimizer.
OPTIMIZERS: dict[str, Callable[[Any, optax.Schedule, Any], optax.GradientTransformation]] = {
    "adamw": _adamw_tx,
    "adam": _adam_tx,
    "sgd": _sgd_tx,
    "adafactor": _adafactor_tx,
    "lion": _lion_tx,
}
