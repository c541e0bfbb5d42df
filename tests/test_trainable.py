"""Fine-tuning masks: frozen parameters stay bit-identical, LR decay, parameter counts."""

import types

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from lm.errors import UserError
from lm.models.config import ModelConfig
from lm.models.transformer import Transformer
from lm.training import optimizer, trainable

L, D, F, V, C, R = 3, 4, 8, 11, 3, 2
# The Transformer's layer groups at L layers (fine-tuning acts on them).
GROUPS = Transformer(ModelConfig(vocab_size=V, num_layers=L)).layer_groups()


def _block(rng, lora, stack=()):
  """One block's parameters; `stack` = (L,) prepends the scanned layer axis."""

  def array(*shape):
    return rng.normal(size=stack + shape).astype(np.float32)

  def dense(d_in, d_out, bias=False):
    module = {"kernel": array(d_in, d_out)}
    if bias:
      module["bias"] = array(d_out)
    if lora:
      module["lora_a"] = array(d_in, R)
      module["lora_b"] = array(R, d_out)
    return module

  return {
      "attn_norm": {
          "scale": array(D)
      },
      "attn": {
          "query": dense(D, D, bias=True),
          "key_value": dense(D, 2 * D),
          "out": dense(D, D)
      },
      "mlp_norm": {
          "scale": array(D)
      },
      "mlp": {
          "wi": dense(D, F),
          "wo": dense(F, D)
      },
  }


def _params(*, scanned=False, lora=False, seed=0):
  rng = np.random.default_rng(seed)
  params = {
      "token_embed": {
          "embedding": rng.normal(size=(V, D)).astype(np.float32)
      },
      "position_embed": {
          "embedding": rng.normal(size=(5, D)).astype(np.float32)
      },
      "final_norm": {
          "scale": rng.normal(size=(D,)).astype(np.float32)
      },
      "lm_head": {
          "kernel": rng.normal(size=(D, V)).astype(np.float32)
      },
      "classifier": {
          "kernel": rng.normal(size=(D, C)).astype(np.float32),
          "bias": np.zeros(C, np.float32)
      },
  }
  if scanned:
    params["blocks"] = _block(rng, lora, stack=(L,))
  else:
    params.update({f"block_{i}": _block(rng, lora) for i in range(L)})
  # Signed zeros must survive too: x + 0.0 would turn -0.0 into +0.0.
  for leaf in jax.tree.leaves(params):
    leaf.reshape(-1)[:2] = [-0.0, 0.0]
  return jax.tree.map(jnp.asarray, params)


def _cfg(**overrides):
  return types.SimpleNamespace(**{
      **dict(method="full", freeze_embeddings=False, freeze_layers=0, layer_lr_decay=1.0),
      **overrides
  })


def _train(tx, params, steps=3, seed=1, jit=True):
  """`steps` updates with random gradients; returns the final parameters and state.

  Eagerly (jit=False) every addition really happens; under jit XLA may fold `p + 0` into `p`.
  """
  state = tx.init(params)

  def step(params, state, grads):
    updates, state = tx.update(grads, state, params)
    return optax.apply_updates(params, updates), state

  step = jax.jit(step) if jit else step

  rng = np.random.default_rng(seed)
  for _ in range(steps):
    grads = jax.tree.map(lambda p: jnp.asarray(rng.normal(size=p.shape), p.dtype), params)
    params, state = step(params, state, grads)
  return params, state


def _names(tree):
  return {
      "/".join(str(k.key) for k in path):
          leaf for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]
  }


def _same_bytes(a, b):
  return np.asarray(a).tobytes() == np.asarray(b).tobytes()


def _changed(before, after):
  """Names of the leaves whose bytes changed."""
  after = _names(after)
  return {name for name, leaf in _names(before).items() if not _same_bytes(leaf, after[name])}


def _adamw():
  return optax.adamw(1e-2, weight_decay=0.1)


@pytest.mark.parametrize("jit", [False, True])
def test_full_with_frozen_embeddings_and_layers(jit):
  params = _params()
  cfg = _cfg(freeze_embeddings=True, freeze_layers=2)
  new_params, state = _train(trainable.restrict(_adamw(), params, cfg, GROUPS), params, jit=jit)
  changed = _changed(params, new_params)
  expected = {
      name for name in _names(params)
      if not name.startswith(("token_embed", "position_embed", "block_0/", "block_1/"))
  }
  assert changed == expected
  # Every element of a trainable matrix moves; frozen ones keep zero Adam moments.
  assert (np.asarray(new_params["block_2"]["mlp"]["wi"]["kernel"])[1:]
          != np.asarray(params["block_2"]["mlp"]["wi"]["kernel"])[1:]).all()
  trained, total = trainable.count_parameters(
      params,
      trainable.trainable_mask(params,
                               method="full",
                               freeze_embeddings=True,
                               freeze_layers=2,
                               groups=GROUPS))
  for moment in ("mu", "nu"):
    moments = _names(optax.tree_utils.tree_get(state, moment))
    assert {name for name, leaf in moments.items() if np.any(leaf)} == expected
    assert sum(leaf.size for name, leaf in moments.items() if name in expected) == trained
  assert total == sum(leaf.size for leaf in jax.tree.leaves(params))


def test_frozen_gradients_do_not_reach_the_optimizer():
  """Clipping sees only trainable gradients; NaNs in frozen ones go nowhere."""
  params = _params()
  tx = trainable.restrict(optax.chain(optax.clip_by_global_norm(1.0), optax.sgd(1.0)), params,
                          _cfg(method="linear_probe"), GROUPS)
  grads = jax.tree.map(lambda p: jnp.full_like(p, jnp.nan), params)
  grads["classifier"] = jax.tree.map(lambda p: jnp.full_like(p, 0.1), params["classifier"])
  updates, _ = tx.update(grads, tx.init(params), params)
  new_params = optax.apply_updates(params, updates)
  # |grad| = 0.1 * sqrt(15) < 1: no clipping, although the NaNs have no finite norm.
  np.testing.assert_allclose(updates["classifier"]["kernel"], -0.1)
  assert _changed(params, new_params) == {"classifier/kernel", "classifier/bias"}


def test_linear_probe_changes_only_the_classifier():
  params = _params(lora=True)
  new_params, _ = _train(trainable.restrict(_adamw(), params, _cfg(method="linear_probe"),
                                            GROUPS),
                         params)
  assert _changed(params, new_params) == {"classifier/kernel", "classifier/bias"}


def test_lora_changes_only_adapters_and_classifier():
  for scanned in (False, True):
    params = _params(lora=True, scanned=scanned)
    new_params, _ = _train(trainable.restrict(_adamw(), params, _cfg(method="lora"), GROUPS), params)
    expected = {
        name for name in _names(params)
        if name.endswith(("lora_a", "lora_b")) or name.startswith("classifier")
    }
    assert len(expected) == 2 + 2 * 5 * (1 if scanned else L)
    assert _changed(params, new_params) == expected


@pytest.mark.parametrize("method", ["lora", "linear_probe"])
def test_new_token_rows_train_where_their_layers_are_frozen(method):
  """A vocabulary grown from the pretrained one (ids 8.. of V = 11: a chat template's role
  tokens): those rows of the embedding and the output layer train, the pretrained rows stay
  bit-identical."""
  params = _params(lora=True)
  tx = trainable.restrict(_adamw(), params, _cfg(method=method), GROUPS, new_tokens=(8, V))
  new_params, _ = _train(tx, params, jit=False)
  assert {"token_embed/embedding", "lm_head/kernel"} <= _changed(params, new_params)
  assert "position_embed/embedding" not in _changed(params, new_params)
  for name, rows in (("token_embed", lambda x: x), ("lm_head", lambda x: x.T)):
    leaf = "embedding" if name == "token_embed" else "kernel"
    before, after = rows(params[name][leaf]), rows(new_params[name][leaf])
    assert _same_bytes(before[:8], after[:8])
    assert all(not _same_bytes(before[i], after[i]) for i in range(8, V))
  mask = trainable.trainable_mask(params, method=method, freeze_embeddings=False,
                                  freeze_layers=0, groups=GROUPS, new_tokens=(8, V))
  trained, _ = trainable.count_parameters(params, mask)
  baseline, _ = trainable.count_parameters(
      params, trainable.trainable_mask(params, method=method, freeze_embeddings=False,
                                       freeze_layers=0, groups=GROUPS))
  assert trained == baseline + 2 * 3 * D  # Three new rows of D in each of the two layers.


@pytest.mark.parametrize("freeze_layers", [1, 2])
def test_scanned_partial_freezing_freezes_the_bottom_layers(freeze_layers):
  params = _params(scanned=True)
  cfg = _cfg(freeze_layers=freeze_layers)
  mask = trainable.trainable_mask(params,
                                  method="full",
                                  freeze_embeddings=False,
                                  freeze_layers=freeze_layers,
                                  groups=GROUPS)
  kernel_mask = mask["blocks"]["attn"]["query"]["kernel"]
  assert kernel_mask.dtype == np.float32 and kernel_mask.shape == (L, 1, 1)
  np.testing.assert_array_equal(kernel_mask.ravel(), np.arange(L) >= freeze_layers)
  assert mask["blocks"]["attn_norm"]["scale"].shape == (L, 1)
  assert mask["token_embed"]["embedding"] is True

  new_params, _ = _train(trainable.restrict(_adamw(), params, cfg, GROUPS), params, jit=False)
  old_blocks, new_blocks = _names(params["blocks"]), _names(new_params["blocks"])
  for name, old in old_blocks.items():
    new = new_blocks[name]
    for layer in range(L):
      assert _same_bytes(old[layer], new[layer]) == (layer < freeze_layers), (name, layer)
  assert _changed(params, new_params) == set(_names(params))  # Every leaf has a trained part.

  trained, total = trainable.count_parameters(params, mask)
  block_size = sum(leaf.size for leaf in jax.tree.leaves(params["blocks"]))
  assert trained == total - block_size * freeze_layers // L


def test_scanned_frozen_layers_ignore_nan_gradients():
  params = _params(scanned=True)
  tx = trainable.restrict(optax.chain(optax.clip_by_global_norm(1.0), optax.sgd(1.0)), params,
                          _cfg(freeze_layers=1), GROUPS)
  grads = jax.tree.map(lambda p: jnp.full_like(p, 1e-3), params)
  grads["blocks"] = jax.tree.map(lambda p: p.at[0].set(jnp.nan), grads["blocks"])
  updates, _ = tx.update(grads, tx.init(params), params)
  new_params = optax.apply_updates(params, updates)
  for name, old in _names(params["blocks"]).items():
    new = np.asarray(_names(new_params["blocks"])[name])
    assert _same_bytes(old[0], new[0])
    np.testing.assert_allclose(new[1:], np.asarray(old[1:]) - 1e-3, rtol=1e-5)


def test_scanned_all_layers_frozen_is_a_whole_leaf_freeze():
  params = _params(scanned=True)
  mask = trainable.trainable_mask(params,
                                  method="full",
                                  freeze_embeddings=False,
                                  freeze_layers=L,
                                  groups=GROUPS)
  assert all(m is False for m in jax.tree.leaves(mask["blocks"]))
  new_params, _ = _train(trainable.restrict(_adamw(), params, _cfg(freeze_layers=L), GROUPS), params)
  assert not _changed(params["blocks"], new_params["blocks"])


@pytest.mark.parametrize("scanned", [False, True])
def test_layer_lr_decay_scales_sgd_updates(scanned):
  decay = 0.5
  params = _params(scanned=scanned)
  tx = trainable.restrict(optax.sgd(1.0), params, _cfg(layer_lr_decay=decay), GROUPS)
  updates, _ = tx.update(jax.tree.map(jnp.ones_like, params), tx.init(params), params)
  updates = _names(updates)
  for name, update in updates.items():
    update = np.asarray(update)
    top = name.split("/")[0]
    if top in ("token_embed", "position_embed"):
      expected = decay**(L + 1)
    elif top.startswith("block_"):
      expected = decay**(L - int(top[len("block_"):]))
    elif top == "blocks":
      expected = (decay**(L - np.arange(L))).reshape((L,) + (1,) * (update.ndim - 1))
    else:
      expected = 1.0
    np.testing.assert_allclose(update, -np.broadcast_to(expected, update.shape), rtol=1e-6)


def test_layer_lr_scales_tree():
  scales = trainable.layer_lr_scales(_params(scanned=True), groups=GROUPS, decay=0.8)
  assert scales["classifier"]["kernel"] == 1.0 and scales["final_norm"]["scale"] == 1.0
  assert scales["lm_head"]["kernel"] == 1.0
  assert scales["token_embed"]["embedding"] == pytest.approx(0.8**4)
  np.testing.assert_allclose(scales["blocks"]["mlp"]["wo"]["kernel"].ravel(), [0.8**3, 0.8**2, 0.8],
                             rtol=1e-6)
  assert scales["blocks"]["mlp"]["wo"]["kernel"].shape == (L, 1, 1)


def test_nothing_to_restrict_returns_the_optimizer_itself():
  tx = _adamw()
  assert trainable.restrict(tx, _params(), _cfg(), GROUPS) is tx


def test_count_parameters():
  params = _params(lora=True)
  total = sum(leaf.size for leaf in jax.tree.leaves(params))
  probe = trainable.trainable_mask(params,
                                   method="linear_probe",
                                   freeze_embeddings=False,
                                   freeze_layers=0,
                                   groups=GROUPS)
  assert trainable.count_parameters(params, probe) == (D * C + C, total)
  lora = trainable.trainable_mask(params,
                                  method="lora",
                                  freeze_embeddings=False,
                                  freeze_layers=0,
                                  groups=GROUPS)
  adapters = L * R * ((D + D) + (D + 2 * D) + (D + D) + (D + F) + (F + D))
  assert trainable.count_parameters(params, lora) == (adapters + D * C + C, total)


def test_restrict_wraps_the_real_optimizer_on_a_real_model():
  """AdamW with a weight-decay mask tree and clipping, on a scanned LoRA classifier's params."""
  cfg = ModelConfig(vocab_size=20,
                    num_layers=2,
                    num_heads=2,
                    embed_dim=8,
                    max_len=4,
                    scan_layers=True,
                    num_classes=3,
                    lora_rank=2)
  # Random values in the real structure: much faster than initializing the model.
  shapes = jax.eval_shape(
      Transformer(cfg).init, jax.random.PRNGKey(0), jnp.zeros((1, 4), jnp.int32))
  abstract_params = nn.meta.unbox(shapes["params"])
  rng = np.random.default_rng(0)
  params = jax.tree.map(lambda s: jnp.asarray(rng.normal(size=s.shape), s.dtype), abstract_params)
  adamw = optax.chain(
      optax.clip_by_global_norm(1.0),
      optax.adamw(1e-2, weight_decay=0.1, mask=optimizer.weight_decay_mask(params, True)))
  for method, freeze_layers in (("lora", 0), ("full", 1), ("linear_probe", 0)):
    ft_cfg = _cfg(method=method, freeze_layers=freeze_layers, layer_lr_decay=0.9)
    tx = trainable.restrict(adamw, abstract_params, ft_cfg,
                            Transformer(cfg).layer_groups())  # As lm.training.parallel does.
    new_params, state = _train(tx, params)
    # The optimizer state shards like the parameters (as lm.training.parallel does it).
    shapes = optax.tree_map_params(tx,
                                   lambda _, shape: shape,
                                   state,
                                   jax.tree.map(lambda p: str(p.shape), params),
                                   transform_non_params=lambda _: "other")
    for leaf, shape in zip(jax.tree.leaves(state), jax.tree.leaves(shapes), strict=True):
      assert shape in ("other", str(leaf.shape))
    assert len(set(jax.tree.leaves(shapes))) > 2
    changed = _changed(params, new_params)
    if method == "lora":
      assert changed and all(
          n.endswith(("lora_a", "lora_b")) or n.startswith("classifier") for n in changed)
    elif method == "linear_probe":
      assert changed == {"classifier/kernel", "classifier/bias"}
    else:
      new_blocks = _names(new_params["blocks"])
      for name, old in _names(params["blocks"]).items():
        assert _same_bytes(old[0], new_blocks[name][0])
        assert not _same_bytes(old[1], new_blocks[name][1])


@pytest.mark.parametrize("overrides, key", [
    (dict(method="adapter"), "config.finetune.method"),
    (dict(freeze_layers=-1), "config.finetune.freeze_layers"),
    (dict(freeze_layers=L + 1), "config.finetune.freeze_layers"),
    (dict(freeze_layers=1.5), "config.finetune.freeze_layers"),
    (dict(layer_lr_decay=0.0), "config.finetune.layer_lr_decay"),
    (dict(layer_lr_decay=1.5), "config.finetune.layer_lr_decay"),
    (dict(method="lora"), "config.finetune.lora_rank"),
])
def test_bad_settings_name_the_key(overrides, key):
  with pytest.raises(UserError, match=key):
    trainable.restrict(_adamw(), _params(lora=False), _cfg(**overrides), GROUPS)


def test_linear_probe_without_a_classifier_is_an_error():
  params = _params()
  del params["classifier"]
  with pytest.raises(UserError, match="nothing would train"):
    trainable.restrict(_adamw(), params, _cfg(method="linear_probe"), GROUPS)
