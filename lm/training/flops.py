"""Model FLOPs per token and peak device FLOP/s, for model FLOPs utilization (MFU).

FLOPs per trained token (forward + backward) follow Kaplan et al. (2020) and PaLM (Chowdhery et
al. 2022, appendix B):  6 * N  +  12 * L * T * D, where N counts the parameters that take part
in matrix multiplies (all but the embedding lookup tables; a tied output projection counts once),
L is the number of layers, T the sequence length and D the model width; the second term is the
attention scores and weighted sum (no credit taken for causal masking). MFU = achieved model
FLOP/s over the hardware's peak.
"""

import os

import jax

from lm.models import architecture
from lm.models.config import ModelConfig

# Dense bf16 matmul peak FLOP/s per chip from the vendors' data sheets, keyed by the lower-cased
# jax.Device.device_kind. A TPU kind must match exactly: "TPU v4 lite" is no v4, "TPU v5 lite" no
# v5p, and v5p reports "TPU v5" or "TPU v5p" (jax/_src/pallas/mosaic/tpu_info.py). GPU kinds name
# memory and form factor ("NVIDIA H100 80GB HBM3", "NVIDIA A100-SXM4-40GB"), so a GPU key is a
# substring and the first key in this order that matches wins.
PEAK_FLOPS = {
    "tpu v4": 275e12,
    "tpu v5 lite": 197e12,  # v5e
    "tpu v5e": 197e12,
    "tpu v5": 459e12,  # v5p
    "tpu v5p": 459e12,
    "tpu v6 lite": 918e12,  # v6e (Trillium)
    "tpu v6e": 918e12,
    "h100 pcie": 756e12,  # Before "h100" (SXM).
    "h100": 989e12,
    "h200": 989e12,
    "a100": 312e12,
}
# fp32 matmul FLOP/s per CPU core, used when config.train.peak_flops is 0: the best of six runs
# of `.venv/bin/python benchmarks/peak_flops.py` on the 2-vCPU AMD EPYC (Zen 4, AVX-512) dev VM,
# 221 GFLOP/s at 1024^3 on one XLA device using both cores (the other runs: 166-197; the VM is
# shared). BENCHMARKS.md, "Peak FLOP/s of this CPU".
CPU_FLOPS_PER_CORE = 110e9


def flops_per_token(cfg: ModelConfig, seq_len: int) -> float:
  """Training FLOPs per token of the model `cfg` at sequence length `seq_len`, as its family
  counts them (`flops_per_token` of its module class)."""
  return architecture.make_model(cfg).flops_per_token(seq_len)


def datasheet_peak_flops(device_kind: str) -> float:
  """PEAK_FLOPS of a jax.Device.device_kind, or 0.0 if the kind is not listed."""
  kind = device_kind.lower().strip()
  if kind.startswith("tpu"):
    return PEAK_FLOPS.get(kind, 0.0)
  return next((peak for name, peak in PEAK_FLOPS.items()
               if not name.startswith("tpu") and name in kind), 0.0)


def peak_flops(num_devices: int, configured: float = 0.0) -> float:
  """Peak FLOP/s of a run on `num_devices` devices (the denominator of MFU).

  config.train.peak_flops (per device) if set, else the data-sheet peak of the devices' kind
  (0.0 for an unknown accelerator: MFU is not reported). On CPU the cores bound the peak, not
  the devices: XLA CPU devices are threads on the same cores, and a mesh over some of them
  still computes on every core. So a CPU run's peak is all cores of every host.
  """
  if configured:
    return configured * num_devices
  device = jax.devices()[0]
  if device.platform == "cpu":
    return CPU_FLOPS_PER_CORE * len(os.sched_getaffinity(0)) * jax.process_count()
  return datasheet_peak_flops(device.device_kind) * num_devices
