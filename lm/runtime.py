"""Process-level runtime setup that must happen before JAX is imported."""

import os
import signal
import sys

from lm.errors import UserError

_interrupted = False  # A SIGINT arrived (see install_interrupt_handler).

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


# LM_COMPILATION_CACHE: the persistent compilation cache of lm.main, lm.generate and lm.predict
# (a directory; 'off' disables it). Default: the user's cache directory, shared by every run of
# this user (JAX guards it with a file lock: concurrent runs are safe), at most 4 GB (least
# recently used entries go first).
CACHE_ENV = "LM_COMPILATION_CACHE"
_CACHE_MAX_BYTES = 4 << 30


def default_cache_dir() -> str:
  """$XDG_CACHE_HOME/lm/jax, else ~/.cache/lm/jax."""
  base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
  return os.path.join(base, "lm", "jax")


def use_default_compilation_cache() -> None:
  """The commands' persistent compilation cache (CACHE_ENV), so that a rerun (a resume, the next
  lm.generate) skips XLA's compilation. JAX_COMPILATION_CACHE_DIR, when set, wins. Before
  `import jax`."""
  choice = os.environ.get(CACHE_ENV, "").strip()
  if choice.lower() in ("off", "0", "false", "none"):
    return
  if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    os.environ.setdefault("JAX_COMPILATION_CACHE_MAX_SIZE", str(_CACHE_MAX_BYTES))
  use_compilation_cache(os.environ, os.path.expanduser(choice) or default_cache_dir())


def use_compilation_cache(environ, cache_dir) -> None:
  """Points JAX's persistent compilation cache at `cache_dir` in `environ` (os.environ, or the
  environment of a process to start), unless it names a cache already. Every program is cached:
  a small model's many sub-second compilations add up too. Before `import jax`."""
  environ.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.abspath(cache_dir))
  environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")


def initialize_distributed(dist_cfg) -> bool:
  """`jax.distributed.initialize` from config.distributed or the environment; True if it ran.

  Runs when config.distributed.initialize or .coordinator_address is set, or
  JAX_COORDINATOR_ADDRESS is in the environment. Unset values (''/0/-1) come from
  JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES and JAX_PROCESS_ID, else from JAX's cluster
  detection (Cloud TPU, SLURM, Open MPI, k8s).
  Must run before anything touches a JAX device.
  """
  if not (dist_cfg.initialize or dist_cfg.coordinator_address or
          os.environ.get("JAX_COORDINATOR_ADDRESS")):
    return False
  import jax  # pylint: disable=g-import-not-at-top

  def from_env(value, name, unset):
    return value if value != unset else (int(os.environ[name]) if name in os.environ else None)

  try:
    jax.distributed.initialize(
        coordinator_address=dist_cfg.coordinator_address or None,
        num_processes=from_env(dist_cfg.num_processes, "JAX_NUM_PROCESSES", 0),
        process_id=from_env(dist_cfg.process_id, "JAX_PROCESS_ID", -1))
  except (RuntimeError, ValueError) as e:
    detail = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    raise UserError(f"config.distributed: jax.distributed.initialize failed: {detail}") from None
  return True


INTERRUPTED_MESSAGE = "Interrupted (Ctrl-C); run the same command again to start over or resume."


def exit_on_ctrl_c() -> None:
  """Until install_interrupt_handler(): Ctrl-C ends the process at once with one line and
  status 130 (while a command imports its modules nothing is written, and a KeyboardInterrupt
  there would end in a traceback). An entry point's first call."""

  def handle(signum, frame):
    del frame
    print(INTERRUPTED_MESSAGE, file=sys.stderr, flush=True)
    os._exit(128 + signum)  # pylint: disable=protected-access

  signal.signal(signal.SIGINT, handle)


def install_interrupt_handler() -> None:
  """SIGINT raises KeyboardInterrupt, as Python's default handler does, and is remembered.

  Python ignores an exception raised where it cannot propagate (a garbage-collection callback
  such as JAX's, a __del__): a Ctrl-C landing there would be lost, and a run would train on.
  Remembered, the training loop's own handler takes it up (`interrupted()`), saving a
  checkpoint at its first step; the "Exception ignored" report of such a lost interrupt is not
  printed. Main thread only.
  """

  def handle(signum, frame):
    del signum, frame
    global _interrupted
    _interrupted = True
    raise KeyboardInterrupt

  def unraisable(report):
    if not isinstance(report.exc_value, KeyboardInterrupt):
      sys.__unraisablehook__(report)

  signal.signal(signal.SIGINT, handle)
  sys.unraisablehook = unraisable


def interrupted() -> bool:
  """Whether a SIGINT arrived since install_interrupt_handler()."""
  return _interrupted
