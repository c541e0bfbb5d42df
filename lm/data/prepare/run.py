"""The prepare run: stages in order, each recorded in the workdir so that a rerun skips it.

  clean      every shard (a deterministic slice of the inputs) in parallel: read, clean,
             filter, exact keys and MinHash signatures (stages.clean_shard)
  dedup      one global pass: duplicates, the held-out split (duplicates.resolve, or
             beam_dedup.resolve on Beam), then the train/eval contamination report (every
             shard in parallel)
  tokenizer  trained on the kept training text, or loaded from config.tokenizer.path; in
             this process while the workers check contamination
  tokenize   every shard in parallel, in TOKENIZE_PARTS parts (stages.tokenize_shard)
  finalize   the token streams, stats.json, report.md and its plots
"""

import json
import os
import shutil
import time
from typing import Any, Callable

import ml_collections
import numpy as np

from lm.data import atomic, token_store, tokenizers

from lm.data.prepare import config as prepare_config
from lm.data.prepare import layout, readers, report, runners, stages
from lm.data.prepare.stats import Stats
from lm.errors import UserError

# Tokenize tasks per shard: a worker that is done takes the next part (cores of a machine do not
# all run at the same speed), and the parts' files join in order, the same bytes for any count.
TOKENIZE_PARTS = 4


def prepare(config: ml_collections.ConfigDict, workdir: str, *, processes: int = 1,
            num_shards: int = 0, runner: str = "local", beam_options: str = "") -> dict[str, Any]:
  """Runs (or resumes) every stage; returns the final stats.

  Args:
    config: a prepare config (lm/data/prepare/config.py).
    workdir: where everything is written (layout.py).
    processes: worker processes (local) or DirectRunner workers (beam).
    num_shards: slices of the input (0 = `processes`); fixed by the first run of a workdir.
    runner: 'local' or 'beam' (runners.py).
    beam_options: Beam pipeline options, as on a command line (e.g. '--runner=DataflowRunner
      --project=P --region=R --temp_location=gs://B/tmp').
  """
  prepare_config.validate(config)
  executor = runners.make_runner(runner, processes, beam_options, workdir)
  with executor:  # One worker pool for all stages.
    os.makedirs(workdir, exist_ok=True)
    _check_config(config, workdir)
    plan = _plan(config, workdir, num_shards or processes)
    num_shards = plan["num_shards"]
    groups = [g for g in layout.GROUPS if config[g].strip()]
    timings = {}
    tasks = [stages.ShardTask(config.to_dict(), workdir, g, i, num_shards)
             for g in groups for i in range(num_shards)]
    timings["clean"] = _run_shards(executor, workdir, "clean", stages.clean_shard, tasks)
    # The tokenizer needs only the duplicate decisions: this process trains it while the
    # workers check contamination, the second half of the dedup stage.
    def train_tokenizer() -> float:
      return _once(workdir, "tokenizer", lambda: _tokenizer(config, workdir, plan))

    timings["dedup"] = _once(workdir, "dedup",
                             lambda: _dedup(config, workdir, plan, executor, train_tokenizer))
    timings["tokenizer"] = train_tokenizer()  # Done already, unless contamination is off.
    parts = [part for task in tasks for part in task.parts(TOKENIZE_PARTS)]
    timings["tokenize"] = _run_shards(executor, workdir, "tokenize", stages.tokenize_shard, parts)
    _once(workdir, layout.DONE_STAGE,
          lambda: _finalize(config, workdir, plan, tasks, parts, timings, executor))
  return layout.read_json(os.path.join(workdir, "stats.json"))


# --- Bookkeeping ----------------------------------------------------------------------------------


def _check_config(config: ml_collections.ConfigDict, workdir: str) -> None:
  path = os.path.join(workdir, "config.json")
  text = config.to_json(sort_keys=True, indent=2)
  if os.path.exists(path):
    with open(path, encoding="utf-8") as f:
      saved = f.read()
    if json.loads(saved) != json.loads(text):
      changed = _changed_keys(json.loads(saved), json.loads(text))
      raise UserError(f"{workdir} was prepared with a different config (changed: "
                      f"{', '.join(changed[:5])}); use a new --workdir or delete it")
  else:
    atomic.atomic_write_text(path, text)


def _changed_keys(old: dict, new: dict, prefix: str = "config") -> list[str]:
  keys = []
  for name in sorted(set(old) | set(new)):
    a, b = old.get(name), new.get(name)
    if isinstance(a, dict) and isinstance(b, dict):
      keys += _changed_keys(a, b, f"{prefix}.{name}")
    elif a != b:
      keys.append(f"{prefix}.{name}")
  return keys


def _plan(config: ml_collections.ConfigDict, workdir: str, num_shards: int) -> dict[str, Any]:
  """The shard count and input list, fixed by the first run (a rerun with another is an error)."""
  path = os.path.join(workdir, "plan.json")
  if os.path.exists(path):
    plan = layout.read_json(path)
    if num_shards != plan["num_shards"] and num_shards != 1:
      raise UserError(f"{workdir} is split into {plan['num_shards']} shards; rerun it with"
                      f" --num_shards={plan['num_shards']} (or a new --workdir)")
    return plan
  inputs = {}
  for group in layout.GROUPS:
    if config[group].strip():
      split = config.train_split if group == "inputs" else config.valid_split
      found = readers.resolve_inputs(config[group], split=split, config_key=f"config.{group}")
      inputs[group] = [f"{i.path}:{i.member_glob}" if i.member_glob else i.path for i in found]
  plan = {"num_shards": num_shards, "inputs": inputs}
  atomic.atomic_write_text(path, json.dumps(plan, indent=2))
  return plan


def _once(workdir: str, stage: str, work: Callable[[], dict | None]) -> float:
  """Runs `work` unless `stage` is recorded as done; returns its seconds (from the record)."""
  record = layout.stage_record(workdir, stage)
  if record is None:
    start = time.perf_counter()
    record = {**(work() or {}), "seconds": time.perf_counter() - start}
    layout.record_stage(workdir, stage, record)
  return record["seconds"]


def _run_shards(executor, workdir: str, stage: str, function: Callable[[stages.ShardTask], dict],
                tasks: list[stages.ShardTask], meanwhile: Callable[[], Any] | None = None) -> float:
  """Runs `function` on the tasks whose `stage/NAME` record is missing (and `meanwhile`, see
  the runner's map_shards); returns the wall seconds of this stage."""
  start = time.perf_counter()
  todo = [t for t in tasks if layout.stage_record(workdir, f"{stage}/{t.name}") is None]
  executor.map_shards(workdir, stage, function, todo, meanwhile)
  return time.perf_counter() - start


def _shard_stats(workdir: str, stage: str, tasks: list[stages.ShardTask]) -> Stats:
  total = Stats()
  for task in tasks:
    total.merge(Stats.from_json(layout.stage_record(workdir, f"{stage}/{task.name}")))
  return total


# --- Global stages --------------------------------------------------------------------------------


def _dedup(config: ml_collections.ConfigDict, workdir: str, plan: dict, executor,
           meanwhile: Callable[[], Any]) -> dict:
  """Duplicates and the held-out split, then the contamination report with `meanwhile` run in
  this process as the workers scan."""
  summary = executor.resolve_duplicates(config, workdir, plan["num_shards"])
  if config.contamination.enabled:
    found = _contamination(config, workdir, plan, executor, meanwhile)
    summary["contamination"] = found.to_dict()
    summary["contamination_markdown"] = found.to_markdown()
  atomic.atomic_write_text(os.path.join(workdir, "dedup", "duplicates.json"),
                           json.dumps(summary, indent=2, ensure_ascii=False))
  return {}


def _contamination(config: ml_collections.ConfigDict, workdir: str, plan: dict, executor,
                   meanwhile: Callable[[], Any]):
  """The contamination report: every shard's training documents checked in parallel
  (stages.contamination_shard), the evidence merged in shard order."""
  tasks = [stages.ShardTask(config.to_dict(), workdir, g, i, plan["num_shards"])
           for g in plan["inputs"] for i in range(plan["num_shards"])]
  _run_shards(executor, workdir, "contamination", stages.contamination_shard, tasks, meanwhile)
  found = stages.contamination_evidence(config, workdir, list(plan["inputs"]),
                                        plan["num_shards"])
  for task in tasks:
    found.absorb(layout.stage_record(workdir, f"contamination/{task.name}"))
  return found.report()


def _tokenizer(config: ml_collections.ConfigDict, workdir: str, plan: dict) -> dict:
  target = layout.tokenizer_dir(workdir)
  if config.tokenizer.path:
    tokenizer = tokenizers.load_tokenizer(config.tokenizer.path)
  else:
    num_train = sum(int(np.count_nonzero(np.load(layout.decisions_path(workdir, g, i)) ==
                                         layout.TRAIN))
                    for g in plan["inputs"] for i in range(plan["num_shards"]))
    if not num_train:
      raise UserError("no training documents are left after cleaning, filtering and"
                      " deduplication (see the clean stage records in the workdir)")
    limit = config.tokenizer.training_documents
    every = max(1, -(-num_train // limit)) if limit else 1
    tokenizer = tokenizers.build_tokenizer(
        config.tokenizer.kind,
        stages.kept_texts(workdir, list(plan["inputs"]), plan["num_shards"], layout.TRAIN, every),
        config_section="config.tokenizer",
        **tokenizers.tokenizer_options(config.tokenizer.kind, config.tokenizer, config.seed))
  if os.path.exists(target):
    shutil.rmtree(target)
  tokenizer.save(target)
  return {"vocab_size": tokenizer.vocab_size, "kind": tokenizer.name}


def _finalize(config: ml_collections.ConfigDict, workdir: str, plan: dict,
              tasks: list[stages.ShardTask], parts: list[stages.ShardTask], timings: dict,
              executor) -> dict:
  """The token files of the parts joined in order into one stream per split; stats, report."""
  tokenizer = tokenizers.load_tokenizer(layout.tokenizer_dir(workdir))
  dtype = token_store.token_dtype(tokenizer.vocab_size)
  stats = _shard_stats(workdir, "clean", tasks).merge(_shard_stats(workdir, "tokenize", parts))
  summary = layout.read_json(os.path.join(workdir, "dedup", "duplicates.json"))
  stats.removed.update({k: v for k, v in summary["removed"].items() if v})
  for split in layout.SPLITS:
    files = [stages.token_work_path(workdir, split, t.name) for t in parts]
    ends, offset = [], 0
    for name in files:
      shard_ends = np.load(name + ".ends.npy")
      ends.append(offset + np.concatenate([[0], shard_ends[:-1]]) if len(shard_ends) else
                  shard_ends)
      offset += int(shard_ends[-1]) if len(shard_ends) else 0
    starts = np.concatenate(ends) if ends else np.zeros(0, np.int64)
    path = layout.tokens_path(workdir, split)
    token_store.save_stream_from_files(
        path, [f + ".bin" for f in files], dtype=dtype,
        num_bytes=stats.counts[f"{split}_bytes"], num_documents=stats.counts[f"{split}_documents"],
        extra={"tokenizer": tokenizer.fingerprint(), "index": os.path.basename(path) +
               ".documents.npy"})
    with atomic.atomic_writer(path + ".documents.npy") as f:
      np.save(f, starts.astype(np.int64))
    with atomic.atomic_writer(path + ".document_ids.npy") as f:
      np.save(f, np.concatenate([np.load(name + ".ids.npy") for name in files] or
                                [np.zeros(0, np.int64)]))
  token_counts = sum(np.load(stages.token_work_path(workdir, "counts", t.name) + ".npy")
                     for t in parts)
  stats.counts["processes"] = executor.processes
  stats.counts["num_shards"] = plan["num_shards"]
  result = {
      "stats": stats.to_json(),
      "timings": {k: round(v, 3) for k, v in timings.items()},
      "duplicates": {k: v for k, v in summary.items() if k != "contamination_markdown"},
      "tokenizer": {"kind": tokenizer.name, "vocab_size": tokenizer.vocab_size},
  }
  atomic.atomic_write_text(os.path.join(workdir, "stats.json"),
                           json.dumps(result, indent=2, ensure_ascii=False))
  report.write_report(workdir, config, result, summary, token_counts, tokenizer)
  shutil.rmtree(os.path.join(workdir, "tokens", "work"))  # Last: a crash above can rerun.
  return {}
