"""The global duplicate pass at scale: a synthetic corpus with planted duplicates (issue 28).

Generates --mb MB of JSONL (not committed) from the IMDB `unsup` reviews in the data root: each
document is 3-12 sentences drawn at random from all reviews (so documents are distinct), and a
share of the documents are planted copies of an earlier one: exact (case and spacing changed)
or near (--near_edit of the words replaced). Then runs `python -m lm.data.prepare` on it
(--runner, --processes) and prints throughput, the largest process's peak RSS, and the recall
and precision of the removed documents against the planted copies. Random documents can share
enough sentences to be near-duplicates of each other, more often the larger the corpus; so the
audit (--audit documents) takes a sample of the near-duplicate removals that are not planted
copies and measures each one's true Jaccard similarity (exact shingle sets) with the document
whose MinHash signature is closest to its own.

  .venv/bin/python benchmarks/prepare_scale.py --mb=1000 --runner=beam --processes=2 \\
      --workdir=/tmp/scale
  .venv/bin/python benchmarks/prepare_scale.py --workdir=/tmp/scale --audit_only=prepared_beam2
"""

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import tarfile
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)


def sentences() -> list[str]:
  from lm.data import data_root  # pylint: disable=g-import-not-at-top
  found = []
  with tarfile.open(data_root.path("imdb", "aclImdb_unsup.tar.gz")) as archive:
    for member in archive:
      if member.isfile() and member.name.endswith(".txt"):
        text = archive.extractfile(member).read().decode("utf-8").replace("<br />", " ")
        found += [s for s in re.split(r"(?<=[.!?])\s+", text) if len(s.split()) >= 4]
  return found


def generate(path: str, megabytes: float, *, exact_rate: float, near_rate: float,
             near_edit: float, seed: int = 0) -> tuple[dict[int, int], int]:
  """Writes the corpus; returns ({copy position: original position}, documents)."""
  rng = np.random.default_rng(seed)
  pool = sentences()
  planted, written, position = {}, 0, 0
  recent = []  # (position, text) of recent originals to copy from.
  with open(path, "w", encoding="utf-8") as f:
    while written < megabytes * 1e6:
      draw = rng.random()
      if recent and draw < exact_rate + near_rate:
        original, text = recent[int(rng.integers(len(recent)))]
        if draw < exact_rate:
          text = "  ".join(text.upper().split(" "))
        else:
          words = text.split()
          for i in rng.choice(len(words), size=max(1, int(near_edit * len(words))),
                              replace=False):
            words[i] = f"edit{int(rng.integers(1 << 30))}"
          text = " ".join(words)
        planted[position] = original
      else:
        text = " ".join(pool[i] for i in rng.integers(0, len(pool), size=rng.integers(3, 13)))
        recent = (recent + [(position, text)])[-2000:]
      line = json.dumps({"text": text}) + "\n"
      f.write(line)
      written += len(line.encode("utf-8"))
      position += 1
  return planted, position


def removed_positions(workdir: str) -> set[int]:
  """Positions (global ids of the one input) the run dropped as duplicates."""
  from lm.data.prepare import layout, shards  # pylint: disable=g-import-not-at-top
  removed = set()
  for name in sorted(os.listdir(os.path.join(workdir, "shards"))):
    group, index = name.rsplit("-", 1)
    shard = shards.Shard(os.path.join(workdir, "shards", name))
    decisions = np.load(layout.decisions_path(workdir, group, int(index)))
    dropped = np.isin(decisions, list(layout.DROP_REASONS))
    removed.update((shard.ids[dropped] % (1 << 40)).tolist())
  return removed


def audit(workdir: str, planted: set[int], sample: int, seed: int = 0) -> str:
  """A line on the true Jaccard similarity of `sample` unplanted near-duplicate removals with
  their closest document by MinHash estimate (any document of the corpus but themselves)."""
  from lm.data.prepare import config as prepare_config  # pylint: disable=g-import-not-at-top
  from lm.data.prepare import dedup, layout, shards  # pylint: disable=g-import-not-at-top
  cfg = prepare_config.base_config().dedup
  found, signatures, reasons = [], [], []
  for name in sorted(os.listdir(os.path.join(workdir, "shards"))):
    group, index = name.rsplit("-", 1)
    shard = shards.Shard(os.path.join(workdir, "shards", name))
    found += [(shard, row) for row in range(len(shard))]
    signatures.append(np.fromfile(os.path.join(shard.directory, "signatures.bin"),
                                  dtype=np.uint32).reshape(len(shard), shard.num_perm))
    reasons.append(np.load(layout.decisions_path(workdir, group, int(index))))
  positions = np.array([int(shard.ids[row]) % (1 << 40) for shard, row in found])
  signatures, reasons = np.concatenate(signatures), np.concatenate(reasons)
  unplanted = np.flatnonzero((reasons == layout.NEAR_DUPLICATE) &
                             ~np.isin(positions, list(planted)))
  if not len(unplanted):
    return "no unplanted near-duplicate removals"
  rng = np.random.default_rng(seed)
  chosen = rng.choice(unplanted, size=min(sample, len(unplanted)), replace=False)
  similarities = []
  for k in chosen:
    estimates = np.count_nonzero(signatures == signatures[k], axis=1)
    estimates[k] = -1
    closest = int(np.argmax(estimates))
    a, b = (dedup.shingles(shard.text(row), unit=cfg.shingle_unit, n=cfg.shingle_size)
            for shard, row in (found[k], found[closest]))
    similarities.append(len(np.intersect1d(a, b)) / max(1, len(np.union1d(a, b))))
  similarities = np.array(similarities)
  return (f"{len(unplanted):,} near-duplicate removals are not planted copies; a sample of "
          f"{len(chosen)}: true Jaccard with the closest document median "
          f"{np.median(similarities):.3f}, >= {cfg.near_threshold} for "
          f"{np.mean(similarities >= cfg.near_threshold):.1%}, >= 0.3 for "
          f"{np.mean(similarities >= 0.3):.1%}, min {similarities.min():.3f}")


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--mb", type=float, default=1000)
  parser.add_argument("--runner", default="beam", choices=("local", "beam"))
  parser.add_argument("--processes", type=int, default=2)
  parser.add_argument("--exact_rate", type=float, default=0.02)
  parser.add_argument("--near_rate", type=float, default=0.02)
  parser.add_argument("--near_edit", type=float, default=0.05)
  parser.add_argument("--workdir", required=True)
  parser.add_argument("--audit", type=int, default=100,
                      help="unplanted near-duplicate removals to check (0: none)")
  parser.add_argument("--audit_only", default="",
                      help="a prepared dir under --workdir: only audit it (no generation, no run)")
  args = parser.parse_args()
  os.makedirs(args.workdir, exist_ok=True)
  corpus = os.path.join(args.workdir, "corpus.jsonl")
  planted_path = os.path.join(args.workdir, "planted.json")
  if args.audit_only:
    with open(planted_path, encoding="utf-8") as f:
      planted = set(map(int, json.load(f)))
    print(audit(os.path.join(args.workdir, args.audit_only), planted, args.audit))
    return
  start = time.perf_counter()
  planted, documents = generate(corpus, args.mb, exact_rate=args.exact_rate,
                                near_rate=args.near_rate, near_edit=args.near_edit)
  with open(planted_path, "w", encoding="utf-8") as f:
    json.dump(sorted(planted), f)
  print(f"generated {documents:,} documents, {len(planted):,} planted copies in "
        f"{time.perf_counter() - start:.0f} s", file=sys.stderr)
  config = os.path.join(args.workdir, "config.py")
  with open(config, "w", encoding="utf-8") as f:
    f.write("from lm.data.prepare import config\n\n\ndef get_config():\n"
            "  c = config.base_config()\n"
            f"  c.inputs = {corpus!r}\n"
            "  c.tokenizer.kind = 'byte'\n  c.contamination.enabled = False\n  return c\n")
  workdir = os.path.join(args.workdir, f"prepared_{args.runner}{args.processes}")
  start = time.perf_counter()
  subprocess.run([sys.executable, "-m", "lm.data.prepare", f"--config={config}",
                  f"--workdir={workdir}", f"--runner={args.runner}",
                  f"--processes={args.processes}"], cwd=REPO, check=True)
  seconds = time.perf_counter() - start
  peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
  removed = removed_positions(workdir)
  hits = len(removed & set(planted))
  stats = json.load(open(os.path.join(workdir, "stats.json"), encoding="utf-8"))
  megabytes = os.path.getsize(corpus) / 1e6
  print("| runner | workers | input MB | documents | planted copies | removed | recall | "
        "precision | wall s | MB/s | largest process peak RSS MiB |")
  print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
  print(f"| {args.runner} | {args.processes} | {megabytes:.0f} | {documents:,} | {len(planted):,}"
        f" | {len(removed):,} | {hits / max(1, len(planted)):.4f} |"
        f" {hits / max(1, len(removed)):.4f} | {seconds:.0f} | {megabytes / seconds:.2f} |"
        f" {peak_mib:.0f} |")
  print(json.dumps(stats["duplicates"]["removed"]), file=sys.stderr)
  if args.audit:
    print(audit(workdir, set(planted), args.audit))


if __name__ == "__main__":
  main()
