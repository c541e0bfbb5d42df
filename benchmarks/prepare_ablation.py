"""Ablation: does cleaning and deduplicating IMDB `unsup` change validation bits-per-byte?

Three corpora are prepared from the same 50,000 reviews (experiments/data/imdb_unsup.py):
`raw` (no cleaning, no filters, no dedup), `clean` (cleaning + quality filters) and
`clean_dedup` (the default: + exact and near-duplicate removal). The validation set is the
same for all three: 1,000 labeled IMDB train reviews (ids 1000-1499 of pos and neg), cleaned
once with the default cleaner, filtered and exactly deduplicated beforehand so that every
variant keeps all of it. A small causal Transformer (tiny preset, context 128) is pretrained on
each corpus for the same number of steps x batch x context tokens, and its bits per byte on the
validation set is compared (one seed).

  .venv/bin/python benchmarks/prepare_ablation.py --workdir=/tmp/prepare_ablation --steps=600
"""

import argparse
import json
import os
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
os.chdir(REPO)  # The experiment configs name ../shared/data relative to the repository.

from lm import runtime  # pylint: disable=g-import-not-at-top

runtime.use_one_cpu_device_per_core()

from experiments.data import imdb_unsup  # pylint: disable=g-import-not-at-top,g-bad-import-order
from lm import defaults  # pylint: disable=g-import-not-at-top
from lm.data import text_files  # pylint: disable=g-import-not-at-top
from lm.data.prepare import dedup  # pylint: disable=g-import-not-at-top
from lm.data.prepare import config as prepare_config  # pylint: disable=g-import-not-at-top
from lm.data.prepare import quality, run  # pylint: disable=g-import-not-at-top
from lm.training import trainer  # pylint: disable=g-import-not-at-top

EVAL_MEMBERS = "aclImdb/train/[np][eo][gs]/1[0-4]??_*.txt"
VARIANTS = {"raw": "raw", "clean": "nodedup", "clean_dedup": ""}


def write_eval_set(path: str) -> int:
  """The shared validation reviews, cleaned, filtered and exactly deduplicated, as JSONL."""
  config = imdb_unsup.get_config()
  cleaner = prepare_config.cleaner_from(config.clean)
  rules = quality.QualityFilter(config.quality)
  seen, count = set(), 0
  archive = f"{imdb_unsup.DATA}/imdb/aclImdb_train.tar.gz"
  with open(path, "w", encoding="utf-8") as f:
    for _, text in text_files.iter_archive(archive, EVAL_MEMBERS):
      text, _ = cleaner.clean(text)
      key = dedup.exact_key(text)
      if rules.reason(text) is None and key not in seen:
        seen.add(key)
        f.write(json.dumps({"text": text}) + "\n")
        count += 1
  return count


def pretrain_config(prepared: str, steps: int):
  config = defaults.base_config("tiny")
  config.data.prepared = prepared
  config.model.max_len = 128
  config.train.update(steps=steps, batch_size=16, learning_rate=1e-3, min_learning_rate=1e-4,
                      warmup_steps=min(50, steps), eval_every=steps, checkpoint_every=steps,
                      final_eval_batches=0, eval_batch_size=64, log_every=100,
                      sample_prompt="")
  return config


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--workdir", required=True)
  parser.add_argument("--steps", type=int, default=600)
  parser.add_argument("--processes", type=int, default=2)
  args = parser.parse_args()
  os.makedirs(args.workdir, exist_ok=True)
  eval_path = os.path.join(args.workdir, "eval.jsonl")
  print(f"validation reviews: {write_eval_set(eval_path)}", flush=True)
  rows = []
  for name, arg in VARIANTS.items():
    config = imdb_unsup.get_config(arg or None)
    config.valid_inputs = eval_path
    config.contamination.enabled = False
    prepared = os.path.join(args.workdir, f"data_{name}")
    start = time.perf_counter()
    stats = run.prepare(config, prepared, processes=args.processes)
    prepare_seconds = time.perf_counter() - start
    counts = stats["stats"]["counts"]
    start = time.perf_counter()
    final = trainer.train_and_evaluate(pretrain_config(prepared, args.steps),
                                       os.path.join(args.workdir, f"train_{name}"))
    rows.append((name, counts, final, prepare_seconds, time.perf_counter() - start))
    print(name, json.dumps({k: final[k] for k in ("eval/bpb", "eval/loss")}), flush=True)
  print("\n| corpus | train documents | train MB | train tokens | valid bytes | eval/bpb |"
        " prepare s | train s |")
  print("|---|---:|---:|---:|---:|---:|---:|---:|")
  for name, counts, final, prepare_seconds, train_seconds in rows:
    print(f"| {name} | {counts['train_documents']:,} | {counts['train_bytes'] / 1e6:.1f} |"
          f" {counts['train_tokens']:,} | {counts['valid_bytes']:,} | {final['eval/bpb']:.4f} |"
          f" {prepare_seconds:.0f} | {train_seconds:.0f} |")


if __name__ == "__main__":
  main()
