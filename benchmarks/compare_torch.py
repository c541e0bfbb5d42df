"""This trainer against a PyTorch eager loop of the same recipe, side by side on this machine.

Runs, one after the other and each as a fresh process, for each seed: the PyTorch baseline
(benchmarks/torch_baseline.py) and `python -m lm.main --config=experiments/shakespeare_char.py:
cpu,learned_positions` (nanoGPT's architecture), then both with rotary positions (`--rope` and
the `cpu` experiment itself), and prints a
Markdown table: training ms/step (mean, evaluations excluded), tokens/s, whole-run wall-clock from
process start to exit (imports, data, compilation and evaluations included) and the final
validation loss over the whole validation split.

  make bench                     # or:
  .venv/bin/python benchmarks/compare_torch.py --seeds=0,1,2
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TORCH_PYTHON = os.path.join(REPO, ".venv-torch", "bin", "python")


def run_torch(seed: int, out_dir: str, rope: bool) -> dict:
  out = os.path.join(out_dir, f"torch_{'rope' if rope else 'learned'}_seed{seed}.json")
  start = time.perf_counter()
  subprocess.run(
      [TORCH_PYTHON, "benchmarks/torch_baseline.py", f"--seed={seed}", f"--json_out={out}"] +
      (["--rope"] if rope else []),
      cwd=REPO,
      check=True,
      stdout=subprocess.DEVNULL)
  wall = time.perf_counter() - start
  with open(out, encoding="utf-8") as f:
    result = json.load(f)
  return {"ms_per_step": result["ms_per_step"], "wall_s": wall, "val_loss": result["full_val_loss"]}


def run_jax(seed: int, out_dir: str, config_arg: str, extra: list[str],
            env: dict[str, str] | None = None) -> dict:
  workdir = os.path.join(out_dir, f"jax_{config_arg.replace(',', '_')}_seed{seed}")
  shutil.rmtree(workdir, ignore_errors=True)
  start = time.perf_counter()
  subprocess.run([
      sys.executable, "-m", "lm.main", f"--config=experiments/shakespeare_char.py:{config_arg}",
      f"--workdir={workdir}", f"--config.seed={seed}", "--config.train.sample_prompt=", *extra
  ],
                 cwd=REPO,
                 check=True,
                 env=env,
                 stdout=subprocess.DEVNULL)
  wall = time.perf_counter() - start
  with open(os.path.join(workdir, "metrics.jsonl"), encoding="utf-8") as f:
    records = [json.loads(line) for line in f]
  step_ms = [r["perf/step_time_ms"] for r in records if "perf/step_time_ms" in r]
  return {
      "ms_per_step": statistics.mean(step_ms),  # Equal-length intervals: the mean step time.
      "wall_s": wall,
      "val_loss": [r for r in records if "eval/loss" in r][-1]["eval/loss"]
  }


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--seeds", default="0", help="comma-separated seeds")
  parser.add_argument("--out_dir", default=os.path.join(REPO, "runs", "bench"))
  parser.add_argument("--jax_args", default="", help="extra --config.KEY=VALUE flags for lm.main")
  args = parser.parse_args()
  if not os.path.exists(TORCH_PYTHON):
    sys.exit("error: .venv-torch is missing; create it with `make bench` (installs "
             "benchmarks/requirements-torch.txt)")
  os.makedirs(args.out_dir, exist_ok=True)
  rows = []
  extra = args.jax_args.split()
  for seed in (int(s) for s in args.seeds.split(",")):
    runs = [
        ("PyTorch eager, learned positions (nanoGPT)",
         lambda: run_torch(seed, args.out_dir, False)),
        ("lm `cpu,learned_positions`",
         lambda: run_jax(seed, args.out_dir, "cpu,learned_positions", extra)),
        ("PyTorch eager, rotary positions", lambda: run_torch(seed, args.out_dir, True)),
        ("lm `cpu` (rotary positions)", lambda: run_jax(seed, args.out_dir, "cpu", extra)),
    ]
    # The VM's speed drifts over minutes: alternate which side runs first, seed by seed.
    order = runs if seed % 2 == 0 else [runs[i] for i in (1, 0, 3, 2)]
    results = {name: run() for name, run in order}
    rows += [(name, seed, results[name]) for name, _ in runs]
  tokens_per_step = 12 * 64
  print("| trainer | seed | ms/step | tokens/s | whole run (s) | val loss (full split) |")
  print("|---|---:|---:|---:|---:|---:|")
  for name, seed, r in rows:
    tokens_per_s = tokens_per_step / r["ms_per_step"] * 1000
    print(f"| {name} | {seed} | {r['ms_per_step']:.1f} | {tokens_per_s:,.0f} "
          f"| {r['wall_s']:.1f} | {r['val_loss']:.4f} |")
  by_name = lambda name: [r["ms_per_step"] for n, _, r in rows if n == name]
  nanogpt, ours = by_name(rows[0][0]), by_name(rows[3][0])
  print(f"\nlm `cpu` tokens/s over nanoGPT's (PyTorch eager, learned positions), seed by seed: "
        f"{', '.join(f'{t / o:.2f}x' for t, o in zip(nanogpt, ours))}; "
        f"mean step times {statistics.mean(nanogpt):.1f} vs {statistics.mean(ours):.1f} ms: "
        f"{statistics.mean(nanogpt) / statistics.mean(ours):.2f}x")


if __name__ == "__main__":
  main()
