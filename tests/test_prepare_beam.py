"""The prepare pipeline on Apache Beam (`--runner=beam`, lm/data/prepare/beam_dedup.py) gives the
local runner's answer: the same documents kept, the same duplicate clusters and survivors, the
same split and the same token shards, with 1 and 2 DirectRunner workers."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from lm.data.prepare import beam_dedup, layout, run, shards, stages
from tests.conftest import REPO
from tests.test_prepare import small_config

pytest.importorskip("apache_beam")

WORDS = [f"v{i}q" for i in range(500)]


def _edit(text, rng, count):
  words = text.split()
  for i in rng.choice(len(words), size=count, replace=False):
    words[i] = f"edit{rng.integers(10**6)}"
  return " ".join(words)


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
  """Training files (3) and an evaluation file with planted duplicates: exact copies (case and
  spacing changed), near copies (3 of 80 words changed), a chain of near copies (each 3 words
  from the last), and training copies of evaluation documents (exact and near: contamination).
  Returns (inputs, valid_inputs)."""
  root = tmp_path_factory.mktemp("planted")
  rng = np.random.default_rng(7)
  valid = [" ".join(rng.choice(WORDS, size=80)) for _ in range(6)]
  train = [" ".join(rng.choice(WORDS, size=80)) for _ in range(40)]
  chain = [train[20]]
  for _ in range(4):
    chain.append(_edit(chain[-1], rng, 3))
  planted = [train[3].upper(), "  " + train[11].replace(" ", "   "), _edit(train[5], rng, 3),
             _edit(train[5], rng, 3), *chain[1:], valid[1], _edit(valid[2], rng, 3),
             train[30], train[30]]
  documents = train + planted
  order = rng.permutation(len(documents))
  documents = [documents[i] for i in order]
  for i, part in enumerate(np.array_split(np.arange(len(documents)), 3)):
    with open(root / f"train{i}.jsonl", "w", encoding="utf-8") as f:
      for k in part:
        f.write(json.dumps({"text": documents[k]}) + "\n")
  with open(root / "valid.jsonl", "w", encoding="utf-8") as f:
    for text in valid:
      f.write(json.dumps({"text": text}) + "\n")
  return str(root / "train*.jsonl"), str(root / "valid.jsonl")


def _config(planted):
  inputs, valid_inputs = planted
  return small_config(inputs, valid_inputs=valid_inputs, quality__min_words=5)


@pytest.fixture(scope="module")
def prepared(planted, tmp_path_factory):
  """name -> (workdir, result) of the same corpus prepared four ways."""
  root = tmp_path_factory.mktemp("runs")
  ways = {"local1": dict(processes=1), "local2": dict(processes=2),
          "beam1": dict(runner="beam", processes=1, num_shards=2),
          "beam2": dict(runner="beam", processes=2)}
  found = {}
  for name, options in ways.items():
    workdir = str(root / name)
    found[name] = workdir, run.prepare(_config(planted), workdir, **options)
  return found


def _decisions(workdir):
  """global id (and group) -> decision, over every shard."""
  found = {}
  for group in layout.GROUPS:
    for directory in sorted(os.listdir(os.path.join(workdir, "shards"))):
      if not directory.startswith(group + "-"):
        continue
      index = int(directory.rsplit("-", 1)[1])
      shard = shards.Shard(os.path.join(workdir, "shards", directory))
      decisions = np.load(layout.decisions_path(workdir, group, index))
      for doc_id, decision in zip(shard.ids.tolist(), decisions.tolist()):
        found[(group, doc_id)] = decision
  return found


def _documents_by_id(workdir, split):
  """global id -> token ids of each written document of a split."""
  stream = np.load(layout.tokens_path(workdir, split) + ".npy")
  starts = np.load(layout.tokens_path(workdir, split) + ".documents.npy")
  ids = np.load(layout.tokens_path(workdir, split) + ".document_ids.npy")
  ends = np.append(starts[1:], len(stream))
  return {int(i): stream[s:e].tolist() for i, s, e in zip(ids, starts, ends)}


def test_every_runner_keeps_removes_and_splits_the_same_documents(prepared):
  reference = _decisions(prepared["local1"][0])
  removed = prepared["local1"][1]["stats"]["removed"]
  # Exact: 2 single copies and 2 of train[30]; near: 2 copies of train[5] and 4 chain links;
  # an exact and a near copy of evaluation documents.
  assert removed["exact_duplicate"] == 4 and removed["near_duplicate"] == 6, removed
  assert removed["duplicate_of_valid"] == 2, removed
  for name in ("local2", "beam1", "beam2"):
    assert _decisions(prepared[name][0]) == reference, name


def test_every_runner_finds_the_same_clusters_and_report(prepared):
  reference = prepared["local1"][1]["duplicates"]
  assert reference["exact_cluster_sizes"] == {"2": 3, "3": 1}
  # The evaluation document and its near copy, train[5] and 2 copies, the chain of 5.
  assert reference["near_cluster_sizes"] == {"2": 1, "3": 1, "5": 1}
  assert reference["examples"]["near"] and reference["examples"]["exact"]
  assert reference["contamination"]
  for name in ("local2", "beam1", "beam2"):
    assert prepared[name][1]["duplicates"] == reference, name
    assert prepared[name][1]["stats"]["removed"] == prepared["local1"][1]["stats"]["removed"]


def test_token_shards_are_identical_by_document_id_and_byte_identical_per_shard_count(prepared):
  for split in layout.SPLITS:
    reference = _documents_by_id(prepared["local1"][0], split)
    assert reference
    for name in ("local2", "beam1", "beam2"):
      assert _documents_by_id(prepared[name][0], split) == reference, (name, split)
  # The same number of shards (2): the same files, byte for byte.
  for suffix in (".npy", ".documents.npy", ".document_ids.npy"):
    for split in layout.SPLITS:
      paths = [layout.tokens_path(prepared[name][0], split) + suffix
               for name in ("local2", "beam1", "beam2")]
      contents = [open(p, "rb").read() for p in paths]
      assert contents[0] == contents[1] == contents[2], (split, suffix)
  assert not os.path.exists(os.path.join(prepared["beam2"][0], "dedup", "beam"))


def test_a_beam_task_that_dies_after_writing_is_redone_without_duplicating_output(
    planted, prepared, tmp_path, monkeypatch):
  original = stages.clean_shard

  def dies_after_writing(task):
    result = original(task)
    if task.index == 1:
      raise RuntimeError("worker lost")  # Shard 1 is written, its stage is not recorded.
    return result

  workdir = str(tmp_path / "retried")
  monkeypatch.setattr(stages, "clean_shard", dies_after_writing)
  with pytest.raises(Exception, match="worker lost"):
    run.prepare(_config(planted), workdir, runner="beam", num_shards=2)
  assert layout.stage_record(workdir, "clean/inputs-00001") is None
  monkeypatch.setattr(stages, "clean_shard", original)
  run.prepare(_config(planted), workdir, runner="beam", num_shards=2)
  for split in layout.SPLITS:
    for suffix in (".npy", ".document_ids.npy"):
      paths = [layout.tokens_path(w, split) + suffix for w in (workdir, prepared["beam1"][0])]
      assert open(paths[0], "rb").read() == open(paths[1], "rb").read(), (split, suffix)


def test_connected_components_are_stars_around_the_smallest_node():
  rng = np.random.default_rng(0)
  for trial in range(30):
    n = int(rng.integers(2, 60))
    if trial % 3 == 0:  # A long path in a shuffled order: the worst case for propagation.
      nodes = rng.permutation(n)
      edges = {(int(max(a, b)), int(min(a, b))) for a, b in zip(nodes[:-1], nodes[1:])}
    else:
      pairs = rng.integers(0, n, size=(int(rng.integers(1, 2 * n)), 2))
      edges = {(int(a), int(b)) for a, b in pairs if a > b}
    parent = list(range(n))

    def find(x):
      while parent[x] != x:
        x = parent[x]
      return x

    for a, b in edges:
      ra, rb = find(a), find(b)
      parent[max(ra, rb)] = min(ra, rb)
    stars = beam_dedup.components(set(edges))
    nodes = {v for e in edges for v in e}
    assert stars == {(v, find(v)) for v in nodes if find(v) != v}


def test_bucket_pairs_follow_the_local_rule():
  assert sorted(beam_dedup.bucket_pairs([9, 2, 5, 7])) == [(2, 5), (2, 7), (2, 9), (5, 7),
                                                           (7, 9)]
  assert list(beam_dedup.bucket_pairs([4])) == []


def test_command_line_runs_on_beam_and_refuses_the_removed_flags(planted, tmp_path):
  inputs, _ = planted
  config_file = tmp_path / "corpus.py"
  config_file.write_text("from lm.data.prepare import config\n\n\ndef get_config():\n"
                         "  c = config.base_config()\n  c.tokenizer.kind = 'char'\n"
                         "  c.valid_fraction = 0.2\n  return c\n", encoding="utf-8")
  base = [sys.executable, "-m", "lm.data.prepare", f"--config={config_file}",
          f"--config.inputs={inputs}"]
  result = subprocess.run(base + [f"--workdir={tmp_path / 'beam'}", "--runner=beam"],
                          cwd=REPO, capture_output=True, text=True, check=False)
  assert result.returncode == 0, result.stderr[-2000:]
  assert "Done:" in result.stdout
  result = subprocess.run(base + [f"--workdir={tmp_path / 'old'}", "--num_processes=2"],
                          cwd=REPO, capture_output=True, text=True, check=False)
  assert result.returncode != 0
  assert result.stderr.strip().splitlines()[-1].startswith("error: --num_processes was removed")
  assert not os.path.exists(tmp_path / "old")


@pytest.mark.parametrize("runner", ["local", "beam"])
def test_a_malformed_record_is_one_error_naming_file_and_line_on_both_runners(tmp_path, runner):
  good = tmp_path / "a.jsonl"
  good.write_text("".join(json.dumps({"text": f"document {i} " * 8}) + "\n" for i in range(5)),
                  encoding="utf-8")
  bad = tmp_path / "b.jsonl"
  bad.write_text(json.dumps({"text": "fine words " * 8}) + "\n{not json\n", encoding="utf-8")
  workdir = tmp_path / runner
  with pytest.raises(run.UserError, match=r"b\.jsonl.*line 2|b\.jsonl:2"):
    run.prepare(small_config(str(tmp_path / "*.jsonl")), str(workdir), runner=runner,
                num_shards=2)
  assert not os.path.exists(workdir / "tokens")
  assert layout.stage_record(str(workdir), "dedup") is None
