"""What the default persistent compilation cache saves on a rerun, against the PyTorch loop.

Whole-run wall-clock (process start to exit) of `python -m lm.main
--config=experiments/shakespeare_char.py:cpu` with an empty compilation cache (cold) and again
with the cache the cold run filled (warm), beside the PyTorch eager loop of the same recipe
(benchmarks/torch_baseline.py --rope), in rounds that alternate the order; prints a Markdown
table and the ratios.

  .venv/bin/python benchmarks/compile_cache.py --rounds=2     # ~7 min on 2 cores
"""

import argparse
import os
import shutil
import statistics
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from compare_torch import REPO, TORCH_PYTHON, run_jax, run_torch  # pylint: disable=g-import-not-at-top,wrong-import-position


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--rounds", type=int, default=2)
  parser.add_argument("--out_dir", default=os.path.join(REPO, "runs", "bench_cache"))
  args = parser.parse_args()
  if not os.path.exists(TORCH_PYTHON):
    sys.exit("error: .venv-torch is missing; create it with `make bench`")
  os.makedirs(args.out_dir, exist_ok=True)
  walls = {"PyTorch eager (rotary)": [], "lm, cold cache": [], "lm, warm cache": []}
  for round_index in range(args.rounds):
    cache = tempfile.mkdtemp(prefix="lm_cache_")
    env = {k: v for k, v in os.environ.items() if not k.startswith("JAX_COMPILATION_CACHE")}
    env["LM_COMPILATION_CACHE"] = cache
    runs = [("PyTorch eager (rotary)", lambda: run_torch(0, args.out_dir, True)),
            ("lm, cold cache", lambda: run_jax(0, args.out_dir, "cpu", [], env)),
            ("lm, warm cache", lambda: run_jax(0, args.out_dir, "cpu", [], env))]
    if round_index % 2:  # Drift-proof: PyTorch last in odd rounds (cold still before warm).
      runs = runs[1:] + runs[:1]
    for name, run in runs:
      walls[name].append(run()["wall_s"])
    shutil.rmtree(cache, ignore_errors=True)
  print("| run | whole run (s), per round | mean (s) |")
  print("|---|---|---:|")
  for name, values in walls.items():
    print(f"| {name} | {', '.join(f'{v:.1f}' for v in values)} | {statistics.mean(values):.1f} |")
  torch_s = statistics.mean(walls["PyTorch eager (rotary)"])
  cold, warm = statistics.mean(walls["lm, cold cache"]), statistics.mean(walls["lm, warm cache"])
  print(f"\nPyTorch / lm whole-run time: cold {torch_s / cold:.2f}x, warm {torch_s / warm:.2f}x; "
        f"warm saves {cold - warm:.1f} s ({1 - warm / cold:.0%}) of the cold run")


if __name__ == "__main__":
  main()
