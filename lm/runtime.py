"""Process-level runtime setup that must happen before JAX is imported."""

import os

# XLA:CPU aborts a collective whose participants have not all arrived within 40 s (XLA's
# default). On a loaded 2-core machine one device's thread can be starved that long (seen once
# while a test suite and a benchmark shared the cores), so allow five minutes.
_CPU_FLAGS = {
    "--xla_force_host_platform_device_count": None,  # Filled in with the number of cores.
    "--xla_cpu_collective_call_warn_stuck_timeout_seconds": "60",
    "--xla_cpu_collective_call_terminate_timeout_seconds": "300",
}


def use_one_cpu_device_per_core() -> None:
  """Exposes one XLA CPU device per available core, unless XLA_FLAGS already sets a count.

  Data parallelism over per-core devices runs each core's share of the batch as its own
  program; on a 2-core machine this trains the nanoGPT CPU recipe ~1.2x faster than one
  device splitting every small matmul over two threads (BENCHMARKS.md). These flags only
  affect the CPU backend, so they are harmless on GPU and TPU hosts. Call before `import jax`.
  """
  flags = os.environ.get("XLA_FLAGS", "")
  for flag, value in _CPU_FLAGS.items():
    if flag not in flags:
      flags += f" {flag}={value or len(os.sched_getaffinity(0))}"
  os.environ["XLA_FLAGS"] = flags.strip()
