"""FLOPs per token, the peak table's device-kind matching, and the CPU peak."""

import os

import pytest

from lm.models.config import ModelConfig, preset_fields
from lm.training import flops


def test_flops_per_token_of_gpt2_small_is_6n_plus_attention():
  cfg = ModelConfig(vocab_size=50257, **preset_fields("gpt2-124m"))
  # Matmul parameters: 12 layers x (4 D^2 attention + 8 D^2 MLP) + the D x V output projection.
  n = 12 * 12 * 768**2 + 768 * 50257
  assert flops.flops_per_token(cfg, 1024) == 6 * n + 12 * 12 * 1024 * 768


def test_grouped_query_and_swiglu_count_their_own_projections():
  cfg = ModelConfig(vocab_size=100, num_layers=1, num_heads=4, num_kv_heads=1, embed_dim=64,
                    mlp="swiglu", mlp_dim=128)
  per_layer = 64 * (64 + 2 * 16) + 64 * 64 + 64 * 2 * 128 + 128 * 64
  assert flops.flops_per_token(cfg, 10) == 6 * (per_layer + 64 * 100) + 12 * 10 * 64


def test_classifier_heads_count_their_own_projection_not_the_vocabulary():
  """MiniLM-sized encoders fine-tuned as a classifier (with BERT's pooler) and as a tagger: the
  head is D x C (+ D x D), not the D x V projection a language model computes."""
  fields = dict(vocab_size=30522, num_layers=6, num_heads=12, embed_dim=384, mlp_dim=1536,
                causal=False)
  blocks = 6 * (4 * 384**2 + 2 * 384 * 1536)
  classifier = ModelConfig(**fields, num_classes=2, pooling="cls", pooler=True)
  tagger = ModelConfig(**fields, num_classes=13, pooling="none")
  attention = 12 * 6 * 64 * 384
  assert flops.flops_per_token(classifier, 64) == 6 * (blocks + 384 * 2 + 384**2) + attention
  assert flops.flops_per_token(tagger, 64) == 6 * (blocks + 384 * 13) + attention


@pytest.mark.parametrize("kind,peak", [
    ("NVIDIA H100 80GB HBM3", 989e12),
    ("NVIDIA H100 PCIe", 756e12),
    ("NVIDIA H200", 989e12),
    ("NVIDIA A100-SXM4-40GB", 312e12),
    ("TPU v4", 275e12),
    ("TPU v5 lite", 197e12),
    ("TPU v5p", 459e12),
    ("TPU v6 lite", 918e12),
    ("TPU v4 lite", 0.0),
    ("Some New Accelerator", 0.0),
])
def test_datasheet_peak_by_device_kind(kind, peak):
  assert flops.datasheet_peak_flops(kind) == peak


def test_cpu_peak_counts_cores_not_fake_devices():
  cores = len(os.sched_getaffinity(0))
  assert flops.peak_flops(1) == flops.peak_flops(8) == flops.CPU_FLOPS_PER_CORE * cores
  assert flops.peak_flops(4, configured=1e12) == 4e12
