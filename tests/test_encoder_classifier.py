"""The encoder/decoder switch, the classifier head's pooling and padding, and LoRA adapters."""

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lm.models import lora
from lm.models.config import ModelConfig
from lm.models.transformer import Transformer, stack_layers

BASE = ModelConfig(vocab_size=50, num_layers=2, num_heads=4, embed_dim=32, max_len=24)


def init(cfg, T=12, seed=0):
  params = Transformer(cfg).init(jax.random.PRNGKey(seed), jnp.zeros((1, T), jnp.int32))["params"]
  return nn.meta.unbox(params)


def apply(cfg, params, tokens, segment_ids=None):
  return Transformer(cfg).apply({"params": params}, jnp.asarray(tokens), None,
                                None if segment_ids is None else jnp.asarray(segment_ids))


@pytest.mark.parametrize("causal", [True, False])
def test_decoder_sees_only_the_past_and_encoder_both_directions(causal):
  cfg = dataclasses.replace(BASE, causal=causal)
  params = init(cfg)
  tokens = np.random.default_rng(0).integers(7, 50, size=(1, 12))
  changed = tokens.copy()
  changed[0, 8] = (changed[0, 8] + 1 - 7) % 43 + 7  # Change the token at position 8 only.
  before, after = apply(cfg, params, tokens), apply(cfg, params, changed)
  past_differs = np.abs(np.asarray(before[0, :8] - after[0, :8])).max()
  if causal:
    assert past_differs == 0.0  # Positions 0..7 never see position 8.
  else:
    assert past_differs > 1e-4  # Every position sees position 8.
  assert np.abs(np.asarray(before[0, 8:] - after[0, 8:])).max() > 1e-4


@pytest.mark.parametrize("causal, pooling", [(False, "cls"), (False, "mean"), (True, "last"),
                                             (True, "mean")])
def test_padding_does_not_change_predictions(causal, pooling):
  cfg = dataclasses.replace(BASE, causal=causal, num_classes=3, pooling=pooling)
  params = init(cfg)
  rng = np.random.default_rng(1)
  lengths = [5, 9, 3]
  logits = []
  for pad_to in (9, 16, 24):
    tokens = np.zeros((3, pad_to), np.int32)
    segments = np.zeros((3, pad_to), np.int32)
    for row, n in enumerate(lengths):
      tokens[row, :n] = np.random.default_rng(row).integers(7, 50, size=n)
      segments[row, :n] = 1
    # Padding holds junk tokens: only the segment ids may tell the model what is padding.
    tokens = np.where(segments == 1, tokens, rng.integers(7, 50, size=tokens.shape))
    logits.append(np.asarray(apply(cfg, params, tokens, segments)))
  assert logits[0].shape == (3, 3)
  np.testing.assert_allclose(logits[1], logits[0], atol=1e-5)
  np.testing.assert_allclose(logits[2], logits[0], atol=1e-5)


def test_classifier_rows_match_unbatched_examples():
  cfg = dataclasses.replace(BASE, causal=False, num_classes=2, pooling="mean")
  params = init(cfg)
  tokens = np.array([[5, 10, 11, 6, 0, 0], [5, 12, 13, 14, 15, 6]], np.int32)
  segments = (tokens != 0).astype(np.int32)
  both = np.asarray(apply(cfg, params, tokens, segments))
  alone = np.asarray(apply(cfg, params, tokens[:1, :4], segments[:1, :4]))
  np.testing.assert_allclose(both[0], alone[0], atol=1e-5)


@pytest.mark.parametrize("scan_layers", [False, True])
def test_lora_with_zero_b_equals_base_and_merged_equals_unmerged(scan_layers):
  base_cfg = dataclasses.replace(BASE, scan_layers=scan_layers, mlp="swiglu")
  lora_cfg = dataclasses.replace(base_cfg,
                                 lora_rank=4,
                                 lora_alpha=8.0,
                                 lora_targets="query,key_value,out,wi_gate,wi_up,wo")
  base_params = init(base_cfg)
  lora_params = init(lora_cfg, seed=1)
  # The adapters' B starts at zero: with the base weights, the LoRA model is the base model.
  combined = _base_weights_with_adapters(base_params, lora_params)
  tokens = np.random.default_rng(2).integers(7, 50, size=(2, 12))
  np.testing.assert_array_equal(np.asarray(apply(lora_cfg, combined, tokens)),
                                np.asarray(apply(base_cfg, base_params, tokens)))
  # Trained adapters (random B): folding them into the kernels gives the same function.
  trained = jax.tree_util.tree_map_with_path(
      lambda path, x: jax.random.normal(jax.random.PRNGKey(3), x.shape) * 0.05
      if path[-1].key == "lora_b" else x, combined)
  merged, merged_cfg = lora.merge_lora(jax.device_get(trained), lora_cfg)
  assert merged_cfg.lora_rank == 0
  assert not any("lora" in str(p) for p, _ in jax.tree_util.tree_leaves_with_path(merged))
  unmerged_out = np.asarray(apply(lora_cfg, trained, tokens))
  assert np.abs(unmerged_out - np.asarray(apply(base_cfg, base_params, tokens))).max() > 1e-3
  np.testing.assert_allclose(np.asarray(apply(merged_cfg, merged, tokens)), unmerged_out, atol=1e-5)


def _base_weights_with_adapters(base, adapted):
  """The LoRA model's tree: its lora_a/lora_b leaves, every other leaf from `base`."""
  return {
      k: (_base_weights_with_adapters(base[k], v) if isinstance(v, dict) else
          v if k.startswith("lora") else base[k]) for k, v in adapted.items()
  }


def test_output_positions_give_the_logits_at_those_positions():
  params = init(BASE)
  tokens = np.random.default_rng(4).integers(7, 50, size=(2, 12))
  positions = np.array([[0, 5, 11], [3, 3, 7]], np.int32)
  full = np.asarray(apply(BASE, params, tokens))
  picked = np.asarray(
      Transformer(BASE).apply({"params": params}, jnp.asarray(tokens), None, None,
                              jnp.asarray(positions)))
  np.testing.assert_allclose(picked,
                             np.take_along_axis(full, positions[:, :, None], axis=1),
                             atol=1e-5)


def test_stacked_lora_params_round_trip():
  cfg = dataclasses.replace(BASE, lora_rank=2)
  params = init(cfg)
  stacked = stack_layers(params, cfg.num_layers)
  assert stacked["blocks"]["attn"]["query"]["lora_a"].shape[0] == cfg.num_layers
