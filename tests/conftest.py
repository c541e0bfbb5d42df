"""Test setup: 8 fake CPU devices and fast XLA compilation (set before JAX is imported),
strict rank promotion, one persistent compilation cache for the suite and the processes its
tests start, and the data root at the vendored fixtures."""

import os
import pathlib

# The suite's programs are tiny, so XLA:CPU's compilation is most of its time: without LLVM's
# optimizations a program compiles ~1.5x faster and runs ~2x slower (a 2-layer train step: 2.1
# -> 1.4 s). Not --xla_cpu_use_fusion_emitters=false (2x faster still): it breaks the bitwise
# equality of a step run alone and inside a scan that test_steps_per_call.py holds the trainer
# to. Flags set by the caller come later: they win.
FAST_COMPILE_FLAGS = "--xla_backend_optimization_level=0"


def xla_flags(num_devices: int) -> str:
  """XLA_FLAGS for a process a test starts: the suite's compile flags, `num_devices` CPUs."""
  return f"{FAST_COMPILE_FLAGS} --xla_force_host_platform_device_count={num_devices}"


os.environ["XLA_FLAGS"] = (FAST_COMPILE_FLAGS + " " + os.environ.get("XLA_FLAGS", "") +
                           " --xla_force_host_platform_device_count=8").strip()

REPO = pathlib.Path(__file__).resolve().parents[1]
# Small slices of the public datasets (tests/fixtures/README.md), laid out as the data root is:
# the experiments the tests build read them, and nothing outside the clone is read.
FIXTURES = REPO / "tests" / "fixtures"
os.environ["LM_DATA_DIR"] = str(FIXTURES)

from lm import runtime  # pylint: disable=g-import-not-at-top

runtime.use_one_cpu_device_per_core()  # Keeps the 8 devices; adds the collective timeouts.
# Many tests run the same tiny programs, often in fresh processes (resumes, kills, CLIs): each
# compiles once per suite (and once per machine, as the cache stays between runs; it is keyed
# by the program, flags and JAX version, so it never serves a stale executable).
# A JAX_COMPILATION_CACHE_DIR set by the caller wins.
runtime.use_compilation_cache(os.environ, REPO / ".jax_test_cache")
# The suite runs one worker process per core (pyproject.toml): on a GPU they share its memory.
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

import jax  # pylint: disable=g-import-not-at-top
import pytest  # pylint: disable=g-import-not-at-top

jax.config.update("jax_numpy_rank_promotion", "raise")
# float32 matmuls in float32 on every backend (GPUs default to TF32, ~1e-3 relative error), so
# the float32 tests hold against their float64 references on a GPU too.
jax.config.update("jax_default_matmul_precision", "highest")


@pytest.fixture
def shakespeare_path() -> str:
  """Tiny Shakespeare as vendored in the repository."""
  return str(REPO / "data" / "tinyshakespeare" / "input.txt")
