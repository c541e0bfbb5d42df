"""Fine-tuning acts on the layer groups every model family states (embeddings, blocks, head),
and a family that states none is refused, never silently left untouched."""

import types

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lm import defaults
from lm.errors import UserError
from lm.models.config import ModelConfig
from lm.models.lstm import LSTM
from lm.models.transformer import Transformer
from lm.training import optimizer, trainable

L, DECAY = 3, 0.5
FAMILIES = {
    "transformer": lambda: Transformer(ModelConfig(vocab_size=13, num_layers=L, num_heads=2,
                                                   embed_dim=8, max_len=8)),
    "transformer_scanned": lambda: Transformer(ModelConfig(vocab_size=13, num_layers=L,
                                                           num_heads=2, embed_dim=8, max_len=8,
                                                           scan_layers=True)),
    "lstm": lambda: LSTM(ModelConfig(vocab_size=13, architecture="lstm", num_layers=L,
                                     embed_dim=8, max_len=8, tie_embeddings=False)),
}


def init(model):
  return nn.meta.unbox(model.init(jax.random.key(0), jnp.zeros((1, 4), jnp.int32))["params"])


def finetune_cfg(**overrides):
  fields = dict(method="full", freeze_embeddings=False, freeze_layers=0, layer_lr_decay=1.0)
  return types.SimpleNamespace(**{**fields, **overrides})


def per_layer(tree, groups):
  """{top-level module or 'block i': the set of values of its leaves} (scanned leaves split)."""
  out = {}
  for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
    top = path[0].key
    if groups.scanned and top == groups.scanned:
      for i in range(L):
        value = np.asarray(leaf)[i] if np.ndim(leaf) else leaf
        out.setdefault(f"block {i}", set()).update(np.unique(np.asarray(value)).tolist())
      continue
    group, layer = groups.group_of(top)
    name = f"block {layer}" if layer is not None else group
    out.setdefault(name, set()).update(np.unique(np.asarray(leaf, np.float64)).tolist())
  return out


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_freezing_and_layer_lr_decay_act_on_every_family(family):
  model = FAMILIES[family]()
  params, groups = init(model), model.layer_groups()
  mask = trainable.trainable_mask(params, method="full", freeze_embeddings=True,
                                  freeze_layers=1, groups=groups)
  frozen = per_layer(mask, groups)
  assert frozen["embeddings"] == {0.0} and frozen["block 0"] == {0.0}
  assert frozen["block 1"] == frozen["block 2"] == frozen["head"] == {1.0}
  scales = per_layer(trainable.layer_lr_scales(params, groups=groups, decay=DECAY), groups)
  assert scales["embeddings"] == {DECAY**(L + 1)}
  for i in range(L):
    assert scales[f"block {i}"] == {DECAY**(L - i)}  # Powers of 1/2: exact in float32.
  assert scales["head"] == {1.0}
  # One real update: frozen parameters keep every bit, the others move.
  train_cfg = defaults.base_config().train
  train_cfg.update(warmup_steps=0, weight_decay=0.0)
  tx, _ = optimizer.make_optimizer(train_cfg, params,
                                   finetune_cfg(freeze_layers=1, freeze_embeddings=True), groups)
  grads = jax.tree.map(jnp.ones_like, params)
  updates, _ = tx.update(grads, tx.init(params), params)
  moved = per_layer(jax.tree.map(lambda u: (np.asarray(u) != 0).astype(np.float64), updates),
                    groups)
  assert moved["embeddings"] == {0.0} and moved["block 0"] == {0.0}
  assert 1.0 in moved["block 2"] and 1.0 in moved["head"]


def test_a_module_outside_the_groups_is_an_error():
  model = FAMILIES["transformer"]()
  params = {**init(model), "adapter": {"kernel": jnp.ones(2)}}
  with pytest.raises(ValueError, match="'adapter' is in no layer group"):
    trainable.layer_lr_scales(params, groups=model.layer_groups(), decay=0.9)


def test_a_family_without_layer_groups_is_refused():
  params = init(FAMILIES["transformer"]())
  with pytest.raises(UserError, match="states no layer groups"):
    trainable.restrict(optax.sgd(1.0), params, finetune_cfg(freeze_layers=1), None)
  # Full training of every parameter needs no groups.
  tx = optax.sgd(1.0)
  assert trainable.restrict(tx, params, finetune_cfg(), None) is not None
