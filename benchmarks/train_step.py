"""Training-step speed and memory for each model preset and device layout, as a Markdown table.

For every preset x layout: the jitted train step of `lm.training.parallel` on random tokens,
timed after compilation (median of repeats); tokens/s, model FLOPs utilization (formula in
lm/training/flops.py) and peak memory per device: on GPU/TPU the allocator's peak since the
process started (so give each layout its own invocation for exact per-layout peaks), on CPU
XLA's compiled estimate of arguments + temporaries.

  .venv/bin/python benchmarks/train_step.py                       # tiny preset, this machine
  .venv/bin/python benchmarks/train_step.py --presets=gpt2-124m --seq_len=1024 --batch_size=16 \
      --dtype=bfloat16 --layouts="data=-1;fsdp=-1;data=2,tensor=-1;pmap"
  XLA_FLAGS=--xla_force_host_platform_device_count=1 .venv/bin/python benchmarks/train_step.py

A layout is config.mesh overrides, `data=2,fsdp=2,tensor=2`, or `pmap`; layouts are separated
by ';'. Model fields can be overridden with --model='remat=full,scan_layers=True'.
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from lm import runtime  # pylint: disable=g-import-not-at-top

runtime.use_one_cpu_device_per_core()

import jax  # pylint: disable=g-import-not-at-top,g-bad-import-order
import numpy as np  # pylint: disable=g-import-not-at-top

from lm import defaults  # pylint: disable=g-import-not-at-top
from lm.models import attention_kernels  # pylint: disable=g-import-not-at-top
from lm.models.config import model_config_from  # pylint: disable=g-import-not-at-top
from lm.models.transformer import Transformer  # pylint: disable=g-import-not-at-top
from lm.training import flops, parallel  # pylint: disable=g-import-not-at-top


def parse_assignments(text: str) -> dict:
  """'a=1,b=True,c=full' -> {'a': 1, 'b': True, 'c': 'full'}."""
  values = {}
  for item in filter(None, (s.strip() for s in text.split(","))):
    key, _, value = item.partition("=")
    for kind in (int, float):
      try:
        values[key] = kind(value)
        break
      except ValueError:
        pass
    else:
      values[key] = {"True": True, "False": False}.get(value, value)
  return values


def benchmark(preset: str, layout: str, args) -> str:
  config = defaults.base_config(preset)
  config.model.update(parse_assignments(args.model))
  config.model.dtype = args.dtype
  config.model.max_len = max(config.model.max_len, args.seq_len)
  config.train.update(batch_size=args.batch_size, eval_batch_size=args.batch_size, steps=1000,
                      grad_accum_steps=args.grad_accum_steps)
  if layout == "pmap":
    config.mesh.use_pmap = True
  else:
    config.mesh.update(parse_assignments(layout))
  model_cfg = model_config_from(config.model, args.vocab_size)
  attention = attention_kernels.resolve_implementation(model_cfg.attention, model_cfg.dtype)
  layout_ = parallel.make_parallel(Transformer(model_cfg), config, args.seq_len)
  state = layout_.create_state(jax.random.PRNGKey(0))
  rng = np.random.default_rng(0)

  def local_batch():
    windows = rng.integers(7, args.vocab_size, size=(args.batch_size, args.seq_len + 1))
    rows = layout_.rows(args.batch_size)
    windows = windows[rows].astype(np.int32)
    return {"inputs": windows[:, :-1], "targets": windows[:, 1:]}

  key = jax.random.PRNGKey(1)
  state, _ = layout_.train_on(state, local_batch(), key)  # Compiles.
  jax.block_until_ready(state)
  times = []
  for _ in range(args.repeats):
    start = time.perf_counter()
    for _ in range(args.steps):
      state, _ = layout_.train_on(state, local_batch(), key)
    jax.block_until_ready(state)
    times.append((time.perf_counter() - start) / args.steps)
  if args.profile_dir:  # A few more steps, traced (not timed).
    with jax.profiler.trace(args.profile_dir, create_perfetto_trace=True):
      for _ in range(3):
        state, _ = layout_.train_on(state, local_batch(), key)
      jax.block_until_ready(state)
  seconds = float(np.median(times))
  tokens = args.batch_size * args.seq_len
  achieved = flops.flops_per_token(model_cfg, args.seq_len) * tokens / seconds
  peak = flops.peak_flops(layout_.num_devices)
  mfu = f"{100 * achieved / peak:.1f}%" if peak else "n/a"
  memory = _peak_memory_gib(layout_, state, layout_.put_batch(local_batch(), args.batch_size), key)
  accum = f" ({args.grad_accum_steps} x {args.batch_size // args.grad_accum_steps})" * (
      args.grad_accum_steps > 1)
  return (f"| {preset} | {layout_.describe()} | {args.batch_size}x{args.seq_len}{accum} "
          f"| {args.dtype} "
          f"| {attention} "
          f"| {1000 * seconds:.1f} | {tokens / seconds:,.0f} | {mfu} | "
          f"{memory} |")


def _peak_memory_gib(layout, state, batch, key) -> str:
  stats = jax.local_devices()[0].memory_stats() or {}
  if "peak_bytes_in_use" in stats:
    return f"{stats['peak_bytes_in_use'] / 2**30:.2f}"
  analysis = layout.lower_train_step(state, batch, key).compile().memory_analysis()
  if analysis is None:
    return "n/a"
  total = analysis.argument_size_in_bytes + analysis.temp_size_in_bytes
  return f"{total / 2**30:.3f} (est.)"


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--presets", default="tiny")
  parser.add_argument("--layouts", default="data=-1")
  parser.add_argument("--model", default="", help="model field overrides, e.g. remat=full")
  parser.add_argument("--dtype", default="float32")
  parser.add_argument("--batch_size", type=int, default=12)
  parser.add_argument("--seq_len", type=int, default=64)
  parser.add_argument("--grad_accum_steps", type=int, default=1,
                      help="micro-batches of batch_size / grad_accum_steps per optimizer step")
  parser.add_argument("--vocab_size", type=int, default=72)
  parser.add_argument("--steps", type=int, default=20, help="steps per repeat")
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--profile_dir", default="",
                      help="also trace 3 steps with jax.profiler (a Perfetto trace) into this folder")
  args = parser.parse_args()
  print(f"{jax.device_count()} x {jax.devices()[0].device_kind}; model {args.model or 'preset'}")
  print("| preset | layout | batch | dtype | attention | ms/step | tokens/s | MFU | peak GiB/device |")
  print("|---|---|---|---|---|---:|---:|---:|---:|")
  for preset in args.presets.split(","):
    for layout in args.layouts.split(";"):
      print(benchmark(preset, layout.strip(), args), flush=True)


if __name__ == "__main__":
  main()
