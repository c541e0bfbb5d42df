"""Peak memory of `lm.data.prepare` when the input grows 10x: a synthetic corpus generator.

Writes N MB and factor x N MB of synthetic JSONL (Zipf-distributed words, `<br />` markup, 5%
exact copies), prepares each in a fresh process (one worker: the whole pipeline in that
process) and prints a Markdown table of peak RSS (`resource.getrusage`), with near-duplicate
detection on and off. Every stage streams or runs out of core (signatures and LSH band keys
stay on disk), so peak RSS should stay flat (BENCHMARKS.md, "Memory at 10x the input").

  .venv/bin/python benchmarks/prepare_memory.py --mb=5 --factor=10 [--runners=local,beam]
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)


def generate(path: str, megabytes: float, seed: int = 0) -> int:
  """Synthetic reviews of 150-450 Zipf-distributed words until `megabytes`; returns documents."""
  rng = np.random.default_rng(seed)
  vocabulary = np.array([f"w{i:x}" for i in range(20000)])
  target, written, documents, previous = megabytes * 1e6, 0, 0, []
  with open(path, "w", encoding="utf-8") as f:
    while written < target:
      if previous and rng.random() < 0.05:
        text = previous[int(rng.integers(len(previous)))]  # An exact copy.
      else:
        words = vocabulary[np.minimum(rng.zipf(1.2, size=int(rng.integers(150, 450))) - 1,
                                      len(vocabulary) - 1)]
        text = " ".join(words[:100]) + ".<br /><br />" + " ".join(words[100:]) + "."
        previous = (previous + [text])[-1000:]
      line = json.dumps({"text": text}) + "\n"
      f.write(line)
      written += len(line.encode("utf-8"))
      documents += 1
  return documents


def child(path: str, workdir: str, near: bool, runner: str) -> None:
  """Prepares `path` in this process (Beam: its DirectRunner in this process, one worker) and
  prints its peak RSS in MiB as JSON."""
  from lm.data.prepare import config as prepare_config  # pylint: disable=g-import-not-at-top
  from lm.data.prepare import run  # pylint: disable=g-import-not-at-top
  config = prepare_config.base_config()
  config.inputs = path
  config.dedup.near = near
  config.tokenizer.kind = "char"  # Trained streaming, over every document.
  start = time.perf_counter()
  stats = run.prepare(config, workdir, runner=runner)
  peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
  counts = stats["stats"]["counts"]
  print(json.dumps({"peak_mib": peak_mib, "seconds": time.perf_counter() - start,
                    "documents": counts["documents_in"], "mb": counts["bytes_in"] / 1e6}))


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--mb", type=float, default=5.0)
  parser.add_argument("--factor", type=float, default=10.0)
  parser.add_argument("--runners", default="local", help="comma-separated: local, beam")
  parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.child:
    child(args.child[0], args.child[1], args.child[2] == "near", args.child[3])
    return
  rows = []
  with tempfile.TemporaryDirectory() as directory:
    for megabytes in (args.mb, args.mb * args.factor):
      path = os.path.join(directory, f"synthetic_{megabytes:g}mb.jsonl")
      generate(path, megabytes)
      for runner in args.runners.split(","):
        for near in (False, True):
          workdir = os.path.join(directory, f"work_{megabytes:g}_{near}_{runner}")
          result = subprocess.run(
              [sys.executable, __file__, "--child", path, workdir, "near" if near else "exact",
               runner], check=True, capture_output=True, text=True, cwd=REPO)
          rows.append((runner, near, json.loads(result.stdout.strip().splitlines()[-1])))
  print("| runner | input MB | documents | near-dup detection | peak RSS MiB | seconds |")
  print("|---|---:|---:|---|---:|---:|")
  for runner, near, row in sorted(rows, key=lambda r: (r[0], r[1], r[2]["mb"])):
    print(f"| {runner} | {row['mb']:.1f} | {row['documents']:,} | {'on' if near else 'off'} |"
          f" {row['peak_mib']:.0f} | {row['seconds']:.0f} |")


if __name__ == "__main__":
  main()
