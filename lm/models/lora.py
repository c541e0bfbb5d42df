"""Folding LoRA adapters into the base weights, for export and plain inference."""

import dataclasses
from typing import Any

import numpy as np

from lm.models.config import ModelConfig


def merge_lora(params: Any, cfg: ModelConfig) -> tuple[Any, ModelConfig]:
  """Parameters with every adapter folded in, W + (alpha / r) A B, and the config of the plain
  model they now belong to (lora_rank 0). Handles unrolled and scanned (`blocks`) layouts."""
  scale = cfg.lora_alpha / cfg.lora_rank if cfg.lora_rank else 0.0

  def fold(tree):
    if not isinstance(tree, dict):
      return tree
    if "lora_a" not in tree:
      return {k: fold(v) for k, v in tree.items()}
    kernel = np.asarray(tree["kernel"])
    a, b = np.asarray(tree["lora_a"], np.float64), np.asarray(tree["lora_b"], np.float64)
    if (a.ndim - 1) + (b.ndim - 1) == kernel.ndim:  # A [*In, r], B [r, *Out].
      delta = np.tensordot(a, b, axes=(a.ndim - 1, 0))
    else:  # Scanned: A [L, *In, r], B [L, r, *Out].
      L, r = a.shape[0], a.shape[-1]
      delta = np.matmul(a.reshape(L, -1, r), b.reshape(L, r, -1))
    merged = {k: v for k, v in tree.items() if k not in ("lora_a", "lora_b")}
    merged["kernel"] = (kernel + scale * delta.reshape(kernel.shape)).astype(kernel.dtype)
    return merged

  return fold(params), dataclasses.replace(cfg, lora_rank=0)
