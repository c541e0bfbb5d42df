"""Matmul FLOP/s through jax.jit: the peak behind CPU_FLOPS_PER_CORE in lm/training/flops.py.

Times square n x n matmuls in fp32 and bf16 on the first device JAX sees and prints a Markdown
table (size, dtype, best ms per matmul, GFLOP/s = 2 n^3 / time), then the best fp32 GFLOP/s and,
on CPU, that number per core:

  .venv/bin/python benchmarks/peak_flops.py
  .venv/bin/python benchmarks/peak_flops.py --sizes=4096,8192,16384   # GPU / TPU

Unlike lm.main this script does not call lm.runtime, which splits a CPU into one XLA device per
core: it measures JAX's default single CPU device, whose matmuls use every core, so the result
divided by the cores is the per-core peak. Leave XLA_FLAGS unset on CPU. On a shared machine run
it two or three times with nothing else running and keep the best.
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # pylint: disable=g-import-not-at-top
import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
import numpy as np  # pylint: disable=g-import-not-at-top

from lm.training import flops  # pylint: disable=g-import-not-at-top

DTYPES = {"fp32": jnp.float32, "bf16": jnp.bfloat16}


def time_matmul(device: jax.Device, n: int, dtype, repeats: int,
                min_repeat_s: float) -> tuple[float, float]:
  """Best and median seconds per n x n matmul; each repeat times calls for >= min_repeat_s."""
  key_a, key_b = jax.random.split(jax.random.PRNGKey(0))
  a = jax.device_put(jax.random.normal(key_a, (n, n), dtype), device)
  b = jax.device_put(jax.random.normal(key_b, (n, n), dtype), device)
  matmul = jax.jit(jnp.matmul)
  matmul(a, b).block_until_ready()  # Compile.
  start = time.perf_counter()
  matmul(a, b).block_until_ready()
  calls = max(1, int(min_repeat_s / (time.perf_counter() - start)))
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    for _ in range(calls):
      out = matmul(a, b)
    out.block_until_ready()
    times.append((time.perf_counter() - start) / calls)
  return min(times), float(np.median(times))


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--sizes", default="512,1024,2048,4096", help="comma-separated n")
  parser.add_argument("--dtypes", default="fp32,bf16", help=f"comma-separated, of {list(DTYPES)}")
  parser.add_argument("--repeats", type=int, default=5, help="timed repeats after warm-up")
  parser.add_argument("--min_repeat_s", type=float, default=0.2,
                      help="each repeat runs back-to-back matmuls for at least this long")
  args = parser.parse_args()
  device = jax.devices()[0]
  cores = len(os.sched_getaffinity(0))
  print(f"Device: {device.platform} {device.device_kind!r} (1 of {jax.device_count()}), "
        f"{cores} cores, JAX {jax.__version__}\n")
  if device.platform == "cpu" and jax.device_count() > 1:
    print("warning: XLA_FLAGS exposes several CPU devices; the per-core figure assumes device 0 "
          "has every core to itself.\n", file=sys.stderr)
  print("| size | dtype | ms | GFLOP/s | GFLOP/s (median) |")
  print("|---:|---|---:|---:|---:|")
  best_fp32 = 0.0
  for dtype_name in args.dtypes.split(","):
    for n in (int(s) for s in args.sizes.split(",")):
      best, median = time_matmul(device, n, DTYPES[dtype_name], args.repeats, args.min_repeat_s)
      gflops = 2 * n**3 / best / 1e9
      if dtype_name == "fp32":
        best_fp32 = max(best_fp32, gflops)
      print(f"| {n} | {dtype_name} | {best * 1e3:.2f} | {gflops:,.0f} | "
            f"{2 * n**3 / median / 1e9:,.0f} |", flush=True)
  print()
  if device.platform == "cpu":
    print(f"Best fp32: {best_fp32:,.0f} GFLOP/s on one device with {cores} cores = "
          f"{best_fp32 / cores:,.0f} GFLOP/s per core "
          f"(lm/training/flops.py CPU_FLOPS_PER_CORE = {flops.CPU_FLOPS_PER_CORE / 1e9:,.0f}).")
  else:
    peak = flops.datasheet_peak_flops(device.device_kind)
    print(f"Best fp32: {best_fp32:,.0f} GFLOP/s. Data-sheet bf16 peak of {device.device_kind!r}: "
          + (f"{peak / 1e9:,.0f} GFLOP/s." if peak else "not in lm/training/flops.py."))


if __name__ == "__main__":
  main()
