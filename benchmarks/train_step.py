"""Time of one jitted training step of an experiment, for a given number of host devices.

Prints a Markdown row: devices, median and best ms/step over repeats, tokens/s. Use it to
compare layouts on one machine, e.g. one CPU device against one device per core:

  XLA_FLAGS=--xla_force_host_platform_device_count=1 .venv/bin/python benchmarks/train_step.py
  XLA_FLAGS=--xla_force_host_platform_device_count=2 .venv/bin/python benchmarks/train_step.py

Run the variants alternately, several times: on a shared VM the step time drifts by +-20%.
"""

import argparse
import functools
import importlib.util
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from lm import runtime  # pylint: disable=g-import-not-at-top

runtime.use_one_cpu_device_per_core()

import flax.linen as nn  # pylint: disable=g-import-not-at-top,g-bad-import-order
import jax  # pylint: disable=g-import-not-at-top
import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
import numpy as np  # pylint: disable=g-import-not-at-top

from lm.models.config import model_config_from  # pylint: disable=g-import-not-at-top
from lm.models.transformer import Transformer  # pylint: disable=g-import-not-at-top
from lm.training import optimizer, partitioning, steps  # pylint: disable=g-import-not-at-top


def load_config(spec: str):
  path, _, arg = spec.partition(":")
  module_spec = importlib.util.spec_from_file_location("experiment", path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  return module.get_config(arg or None)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--config", default="experiments/shakespeare_char.py:cpu")
  parser.add_argument("--vocab_size", type=int, default=72)
  parser.add_argument("--steps", type=int, default=30, help="steps per repeat")
  parser.add_argument("--repeats", type=int, default=5)
  args = parser.parse_args()
  config = load_config(args.config)
  model_cfg = model_config_from(config.model, args.vocab_size)
  model = Transformer(model_cfg)
  batch_size, seq_len = config.train.batch_size, model_cfg.max_len
  mesh = partitioning.make_mesh(config.mesh, batch_size)
  replicated, batch_sharding = partitioning.replicated(mesh), partitioning.batch_sharding(mesh)

  def init(rng):
    params = nn.meta.unbox(model.init(rng, jnp.zeros((1, seq_len), jnp.int32))["params"])
    return steps.TrainState.create(apply_fn=model.apply, params=params,
                                   tx=optimizer.make_optimizer(config.train, params))

  state = jax.jit(init, out_shardings=replicated)(jax.random.PRNGKey(0))
  train_step = jax.jit(functools.partial(steps.train_step,
                                         schedule=optimizer.learning_rate_schedule(config.train)),
                       in_shardings=(replicated, batch_sharding, replicated),
                       out_shardings=(replicated, replicated), donate_argnums=0)
  rng = np.random.default_rng(0)

  def batch():
    windows = rng.integers(7, args.vocab_size, size=(batch_size, seq_len + 1)).astype(np.int32)
    return jax.device_put({"inputs": windows[:, :-1], "targets": windows[:, 1:]}, batch_sharding)

  key = jax.random.PRNGKey(1)
  state, _ = train_step(state, batch(), key)
  jax.block_until_ready(state)
  times = []
  for _ in range(args.repeats):
    start = time.perf_counter()
    for _ in range(args.steps):
      state, _ = train_step(state, batch(), key)
    jax.block_until_ready(state)
    times.append((time.perf_counter() - start) / args.steps * 1000)
  median = float(np.median(times))
  print(f"| {args.config} | {partitioning.mesh_size(mesh)} | {median:.1f} | {min(times):.1f} | "
        f"{batch_size * seq_len / median * 1000:,.0f} |")


if __name__ == "__main__":
  main()
