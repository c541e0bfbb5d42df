"""Corpus preparation per core and per runner: a table for BENCHMARKS.md (issue 28).

1. Per core: CPU seconds per document of the clean stage's per-document work (clean, quality
   rules, exact key, MinHash signature; the rules and signatures a batch of documents at a
   time, as stages.clean_shard) over the first --documents IMDB `unsup` reviews, read
   from the tarball first (reading and one-time setup are not counted), as MB/s of input per
   core, each step the best of --repeats.
2. End to end: `python -m lm.data.prepare --config=experiments/data/imdb_unsup.py` with the
   local runner and with Beam's DirectRunner, 1 and 2 workers each, each in a fresh process and
   workdir, --rounds times in turns; median wall seconds, the speed-up of 2 workers over 1, and
   a digest of the written documents sorted by global id (equal digests: the same documents,
   split and tokens).

  .venv/bin/python benchmarks/prepare_runners.py [--documents=5000] [--repeats=3]
      [--config_arg=smoke] [--skip_end_to_end] [--runners=local,beam] [--rounds=1]
"""

import argparse
import hashlib
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time

import numpy as np

BATCH = 256  # Documents per batch, as stages.clean_shard.
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)


def per_core(documents: int, repeats: int) -> list[tuple[str, float]]:
  """(step, MB/s of input per core) of the clean stage's per-document steps."""
  from experiments.data import imdb_unsup  # pylint: disable=g-import-not-at-top
  from lm.data import data_root  # pylint: disable=g-import-not-at-top
  from lm.data.prepare import config as prepare_config  # pylint: disable=g-import-not-at-top
  from lm.data.prepare import dedup, quality  # pylint: disable=g-import-not-at-top
  cfg = imdb_unsup.get_config()
  texts = []
  with tarfile.open(data_root.path("imdb", "aclImdb_unsup.tar.gz")) as archive:
    for member in archive:
      if member.isfile() and member.name.endswith(".txt"):
        texts.append(archive.extractfile(member).read().decode("utf-8"))
        if len(texts) >= documents:
          break
  megabytes = sum(len(t.encode("utf-8")) for t in texts) / 1e6
  cleaner = prepare_config.cleaner_from(cfg.clean)
  rules = quality.QualityFilter(cfg.quality)
  hasher = dedup.MinHasher(cfg.dedup.num_perm, seed=cfg.dedup.seed, unit=cfg.dedup.shingle_unit,
                           n=cfg.dedup.shingle_size)
  # One-time setup (the per-code-point tables, built once per process) is not counted.
  rules.reasons(texts[:2])
  hasher.signatures(texts[:2])
  seconds = {}

  def timed(name, function, inputs):
    """The outputs of `function` over `inputs`; its CPU seconds, the best of `repeats`."""
    for _ in range(repeats):
      start = time.process_time()
      outputs = [function(x) for x in inputs]
      seconds[name] = min(seconds.get(name, np.inf), time.process_time() - start)
    return outputs

  cleaned = [text for text, _ in timed("clean", cleaner.clean, texts)]
  timed(f"quality rules (batches of {BATCH})", rules.reasons, batched(cleaned))
  def fold_and_key(text):
    folded = dedup.fold(text)
    dedup.exact_key(folded, folded=True)
    return folded

  folded = timed("fold + exact key", fold_and_key, cleaned)
  timed(f"MinHash signatures (batches of {BATCH})",
        lambda batch: hasher.signatures(batch, folded=True), batched(folded))
  rows = [(name, megabytes / s) for name, s in seconds.items()]
  rows.append(("all of them", megabytes / sum(seconds.values())))
  print(f"{len(texts):,} reviews, {megabytes:.1f} MB", file=sys.stderr)
  return rows


def batched(items: list) -> list[list]:
  return [items[i:i + BATCH] for i in range(0, len(items), BATCH)]


def end_to_end(config_arg: str, runners: list[str], rounds: int
               ) -> list[tuple[str, int, list[float], str]]:
  """(runner, workers, wall seconds of each round, digest) of whole prepare runs; the runs of
  a round take turns (1 then 2 workers, then the next runner), so that a slow spell of the
  machine falls on both."""
  config = "experiments/data/imdb_unsup.py" + (f":{config_arg}" if config_arg else "")
  seconds, digests = {}, {}
  with tempfile.TemporaryDirectory() as root:
    for _ in range(rounds):
      for runner in runners:
        for workers in (1, 2):
          workdir = os.path.join(root, f"{runner}{workers}")
          shutil.rmtree(workdir, ignore_errors=True)
          start = time.perf_counter()
          subprocess.run([sys.executable, "-m", "lm.data.prepare", f"--config={config}",
                          f"--workdir={workdir}", f"--runner={runner}",
                          f"--processes={workers}"],
                         cwd=REPO, check=True, stdout=subprocess.DEVNULL)
          seconds.setdefault((runner, workers), []).append(time.perf_counter() - start)
          digests[runner, workers] = digest(workdir)
  return [(runner, workers, seconds[runner, workers], digests[runner, workers])
          for runner, workers in seconds]


def digest(workdir: str) -> str:
  """SHA-256 of every written document's tokens, by split and global id."""
  from lm.data.prepare import layout  # pylint: disable=g-import-not-at-top
  sha = hashlib.sha256()
  for split in layout.SPLITS:
    path = layout.tokens_path(workdir, split)
    stream = np.load(path + ".npy", mmap_mode="r")
    starts = np.load(path + ".documents.npy")
    ids = np.load(path + ".document_ids.npy")
    ends = np.append(starts[1:], len(stream))
    for k in np.argsort(ids, kind="stable"):
      sha.update(np.int64(ids[k]).tobytes() + np.asarray(stream[starts[k]:ends[k]]).tobytes())
  return sha.hexdigest()[:12]


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--documents", type=int, default=5000)
  parser.add_argument("--repeats", type=int, default=3, help="per step, the best is kept")
  parser.add_argument("--config_arg", default="", help="e.g. smoke (100 reviews)")
  parser.add_argument("--skip_end_to_end", action="store_true")
  parser.add_argument("--runners", default="local,beam", help="end to end, comma-separated")
  parser.add_argument("--rounds", type=int, default=1,
                      help="end-to-end runs of each; the median is kept")
  args = parser.parse_args()
  print("| step (per document) | MB/s per core |\n|---|---:|")
  for name, rate in per_core(args.documents, args.repeats):
    print(f"| {name} | {rate:.2f} |")
  if args.skip_end_to_end:
    return
  rows = end_to_end(args.config_arg, args.runners.split(","), args.rounds)
  print("\n| runner | workers | wall s (median) | rounds | speed-up over 1 worker |"
        " documents digest |")
  print("|---|---:|---:|---|---:|---|")
  for runner, workers, seconds, found in rows:
    one = statistics.median(next(s for r, w, s, _ in rows if r == runner and w == 1))
    median = statistics.median(seconds)
    rounds = ", ".join(f"{s:.1f}" for s in seconds)
    print(f"| {runner} | {workers} | {median:.1f} | {rounds} | {one / median:.2f}x | {found} |")

if __name__ == "__main__":
  main()
