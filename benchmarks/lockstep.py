"""Training throughput of this trainer and of the PyTorch eager loop, measured in lockstep.

This VM's speed drifts by up to +-30% over minutes, so runs one after the other compare the
machine as much as the code. Here both sides start as processes, compile and warm up, then
train in alternating chunks (PyTorch N steps, lm N steps, PyTorch N steps, ...): each chunk
pair sees the same machine. The lm side runs the trainer's own step loop (the experiment's
config, real data windows, `lm.training.parallel`, one XLA device per core); the PyTorch side
is benchmarks/torch_baseline.py's loop. Evaluations are left out on both sides.

  .venv/bin/python benchmarks/lockstep.py                  # nanoGPT (learned positions) vs `cpu`
  .venv/bin/python benchmarks/lockstep.py --torch_args=--rope --chunks=20 --chunk_steps=50
  .venv/bin/python benchmarks/lockstep.py --steps_per_call=1    # one step per jitted call
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TORCH_PYTHON = os.path.join(REPO, ".venv-torch", "bin", "python")
sys.path.insert(0, REPO)


def lm_worker(config_spec: str, chunk_steps: int, warmup: int, steps_per_call: int) -> None:
  """Trains like `lm.training.trainer` in chunks started by lines on stdin."""
  from lm import runtime  # pylint: disable=g-import-not-at-top
  runtime.use_one_cpu_device_per_core()
  import importlib.util  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  from lm.data import batches, pipeline  # pylint: disable=g-import-not-at-top
  from lm.models.config import model_config_from  # pylint: disable=g-import-not-at-top
  from lm.models.transformer import Transformer  # pylint: disable=g-import-not-at-top
  from lm.training import parallel  # pylint: disable=g-import-not-at-top

  path, _, arg = config_spec.partition(":")
  spec = importlib.util.spec_from_file_location("experiment", os.path.join(REPO, path))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config(arg or None)
  if steps_per_call:
    config.train.steps_per_call = steps_per_call
  with tempfile.TemporaryDirectory() as workdir:
    data = pipeline.prepare_data(config.data, workdir)
  model_cfg = model_config_from(config.model, data.tokenizer.vocab_size)
  seq_len, batch_size = model_cfg.max_len, config.train.batch_size
  layout = parallel.make_parallel(Transformer(model_cfg), config, seq_len)
  state = layout.create_state(jax.random.PRNGKey(config.seed))
  sampler = batches.WindowSampler(data.train.tokens,
                                  batch_size=batch_size,
                                  seq_len=seq_len,
                                  mode=config.data.sampling,
                                  seed=config.seed,
                                  rows=layout.rows(batch_size))
  rng = jax.random.PRNGKey(1)

  per_call = config.train.steps_per_call  # As the trainer groups steps into calls.
  if chunk_steps % per_call:
    raise SystemExit(f"--chunk_steps={chunk_steps}: must be a multiple of "
                     f"config.train.steps_per_call={per_call}")

  def train(steps):
    nonlocal state
    for _ in range(steps // per_call):
      batches_ = [sampler.next_batch() for _ in range(per_call)]
      state, _ = layout.train_on_batches(state, batches_, rng,
                                         [parallel.DEFAULT_CONTROLS] * per_call)
    jax.block_until_ready(state)

  train(per_call * max(1, warmup // per_call))
  print(f"READY {batch_size * seq_len}", flush=True)  # Tokens per step.
  while sys.stdin.readline():
    start = time.perf_counter()
    train(chunk_steps)
    print(f"CHUNK {time.perf_counter() - start}", flush=True)


def read_line(process, prefix: str) -> str:
  while True:
    line = process.stdout.readline()
    if not line:
      raise RuntimeError(f"a worker exited before printing {prefix}")
    if line.startswith(prefix):
      return line


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--config", default="experiments/shakespeare_char.py:cpu")
  parser.add_argument("--torch_args", default="", help="e.g. --rope")
  parser.add_argument("--chunks", type=int, default=16)
  parser.add_argument("--chunk_steps", type=int, default=50)
  parser.add_argument("--steps_per_call", type=int, default=0,
                      help="lm's config.train.steps_per_call (default: the config's)")
  parser.add_argument("--pause", type=float, default=0.5, help="seconds between chunks")
  parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.worker:
    lm_worker(args.config, args.chunk_steps, warmup=10, steps_per_call=args.steps_per_call)
    return
  if not os.path.exists(TORCH_PYTHON):
    sys.exit("error: .venv-torch is missing; create it with `make bench`")
  total = (args.chunks + 1) * args.chunk_steps + 20
  popen = dict(cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
  workers = {
      "PyTorch eager": subprocess.Popen([
          TORCH_PYTHON, "benchmarks/torch_baseline.py", f"--steps={total}",
          f"--lockstep={args.chunk_steps}", *args.torch_args.split()
      ], **popen),
      "lm": subprocess.Popen([
          sys.executable, "benchmarks/lockstep.py", "--worker", f"--config={args.config}",
          f"--chunk_steps={args.chunk_steps}", f"--steps_per_call={args.steps_per_call}"
      ], **popen),
  }
  seconds = {name: [] for name in workers}
  try:
    read_line(workers["PyTorch eager"], "READY")
    # lm's tokens per step; torch_baseline.py's batch and block match `cpu`'s.
    tokens = int(read_line(workers["lm"], "READY").split()[1]) * args.chunk_steps
    for _ in range(args.chunks):
      for name, process in workers.items():
        # Let the other side's idle threads stop spinning (OpenMP, XLA's pool) before starting.
        time.sleep(args.pause)
        process.stdin.write("\n")
        process.stdin.flush()
        seconds[name].append(float(read_line(process, "CHUNK").split()[1]))
  finally:
    for process in workers.values():
      process.kill()
  print(f"{args.chunks} alternating chunks of {args.chunk_steps} steps; PyTorch "
        f"`torch_baseline.py {args.torch_args}`, lm `{args.config}`")
  print("| trainer | ms/step (mean) | ms/step (median chunk) | tokens/s |")
  print("|---|---:|---:|---:|")
  for name, times in seconds.items():
    mean = sum(times) / len(times)
    print(f"| {name} | {1000 * mean / args.chunk_steps:.1f} | "
          f"{1000 * statistics.median(times) / args.chunk_steps:.1f} | {tokens / mean:,.0f} |")
  ratios = [t / l for t, l in zip(seconds["PyTorch eager"], seconds["lm"])]
  print(f"\nlm tokens/s over PyTorch's: {sum(seconds['PyTorch eager']) / sum(seconds['lm']):.2f}x "
        f"overall; per chunk pair median {statistics.median(ratios):.2f}x, range "
        f"{min(ratios):.2f}-{max(ratios):.2f}x")


if __name__ == "__main__":
  main()
