"""End-to-end tests of `python -m lm.data.prepare` (lm/data/prepare/run.py) on small synthetic
corpora: cleaning and filter counts, duplicates, shards that training reads, resume, parallel
slices, and the real Chinese corpus."""

import json
import os
import subprocess
import sys
import tarfile

import numpy as np
import pytest

from experiments import shakespeare_char
from lm.data import tokenizers
from lm.data.prepare import cleaning, layout, run, stages
from lm.data.prepare import config as prepare_config
from lm.errors import UserError
from lm.training import trainer
from tests.conftest import FIXTURES, REPO

WORDS = [f"w{i}x" for i in range(400)]


def _document(rng, num_words=60):
  return " ".join(rng.choice(WORDS, size=num_words)) + "."


@pytest.fixture
def corpus(tmp_path):
  """Three JSONL files: 30 distinct documents, an exact copy (other case and spacing) of two of
  them, a near copy (2 of 60 words changed) of one, markup, escapes, a too-short and an empty
  document. Returns (source glob, the expected cleaned documents that survive)."""
  rng = np.random.default_rng(0)
  originals = [_document(rng) for _ in range(30)]
  originals[3] = "Markup<br /><br />and \x1b[32mcolor\x1b[m " + originals[3]
  near = originals[7].split()
  near[10], near[40] = "changed", "edited"
  extra = [originals[5].upper(), "  " + originals[9].replace(" ", "   "), " ".join(near),
           "too short", "<br /><br />"]
  documents = originals + extra
  files = [documents[0:12], documents[12:25], documents[25:]]
  for i, part in enumerate(files):
    with open(tmp_path / f"part{i}.jsonl", "w", encoding="utf-8") as f:
      for text in part:
        f.write(json.dumps({"text": text}) + "\n")
  cleaner = cleaning.Cleaner()
  return str(tmp_path / "part*.jsonl"), sorted(cleaner.clean(d)[0] for d in originals)


def small_config(inputs, **changes):
  config = prepare_config.base_config()
  config.inputs = inputs
  config.valid_fraction = 0.2
  config.quality.min_words = 5
  config.tokenizer.kind = "char"
  for key, value in changes.items():
    section, _, name = key.rpartition("__")
    (config[section] if section else config)[name] = value
  return config


def written_documents(workdir):
  """The documents of both token streams, decoded."""
  tokenizer, train, valid = layout.load_prepared(workdir)
  documents = []
  for stream in (train, valid):
    tokens = np.asarray(stream.tokens)
    ends = np.flatnonzero(tokens == tokenizer.special_ids.eos)
    starts = np.concatenate([[0], ends[:-1] + 1])
    documents += [tokenizer.decode(tokens[s:e]) for s, e in zip(starts, ends)]
  return sorted(documents)


def test_end_to_end_counts_removals_duplicates_and_writes_readable_shards(corpus, tmp_path):
  source, expected = corpus
  workdir = str(tmp_path / "prepared")
  result = run.prepare(small_config(source), workdir)
  stats = result["stats"]
  assert stats["counts"]["documents_in"] == 35
  assert stats["removed"] == {"min_words": 1, "empty_after_cleaning": 1, "exact_duplicate": 2,
                              "near_duplicate": 1}
  # Two <br /> in document 3 and two in the document that is only markup.
  assert stats["cleaning_items"]["markup"] == 4 and stats["cleaning_items"]["escapes"] == 2
  assert written_documents(workdir) == expected
  counts = stats["counts"]
  assert counts["train_documents"] + counts["valid_documents"] == 30
  assert counts["valid_documents"] >= 1 and counts["train_escapes_out"] == 0
  assert counts["train_roundtrip_failures"] == counts["valid_roundtrip_failures"] == 0
  index = np.load(layout.tokens_path(workdir, "train") + ".documents.npy")
  assert len(index) == counts["train_documents"] and index[0] == 0
  duplicates = result["duplicates"]
  assert duplicates["exact_clusters"] == 2 and duplicates["near_clusters"] == 1
  assert len(duplicates["examples"]["near"][0]) == 2
  report = open(os.path.join(workdir, "report.md"), encoding="utf-8").read()
  for fragment in ("exact_duplicate", "near_duplicate", "min_words", "Example near cluster 1",
                   "part0.jsonl", "length_histogram.png", "token_frequency.png", "MB/s"):
    assert fragment in report, fragment
  for plot in ("length_histogram.png", "token_frequency.png"):
    with open(os.path.join(workdir, plot), "rb") as f:
      assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_result_does_not_depend_on_the_number_of_slices(corpus, tmp_path):
  source, _ = corpus
  one = run.prepare(small_config(source), str(tmp_path / "one"))
  three = run.prepare(small_config(source), str(tmp_path / "three"), num_shards=4)
  assert written_documents(str(tmp_path / "one")) == written_documents(str(tmp_path / "three"))
  assert one["stats"]["removed"] == three["stats"]["removed"]
  for key in ("train_documents", "valid_documents", "train_tokens", "valid_tokens"):
    assert one["stats"]["counts"][key] == three["stats"]["counts"][key], key


@pytest.mark.parametrize("num_parts", [1, 3])
def test_token_files_do_not_depend_on_the_tokenize_parts(corpus, tmp_path, monkeypatch,
                                                         num_parts):
  source, _ = corpus
  assert run.TOKENIZE_PARTS != num_parts
  run.prepare(small_config(source), str(tmp_path / "default"), num_shards=2)
  monkeypatch.setattr(run, "TOKENIZE_PARTS", num_parts)
  run.prepare(small_config(source), str(tmp_path / "parts"), num_shards=2)
  for split in layout.SPLITS:
    for suffix in (".npy", ".documents.npy", ".document_ids.npy"):
      paths = [layout.tokens_path(str(tmp_path / name), split) + suffix
               for name in ("default", "parts")]
      with open(paths[0], "rb") as a, open(paths[1], "rb") as b:
        assert a.read() == b.read(), (split, suffix)


def test_worker_processes_match_a_single_process(corpus, tmp_path):
  source, expected = corpus
  result = run.prepare(small_config(source), str(tmp_path / "pool"), processes=2)
  assert result["stats"]["counts"]["processes"] == 2
  assert written_documents(str(tmp_path / "pool")) == expected


def test_an_interrupted_run_resumes_with_the_unfinished_slices(corpus, tmp_path, monkeypatch):
  source, expected = corpus
  workdir = str(tmp_path / "slices")
  original_clean = stages.clean_shard

  def interrupted(task):
    if task.index == 1:
      raise KeyboardInterrupt
    return original_clean(task)

  monkeypatch.setattr(stages, "clean_shard", interrupted)
  with pytest.raises(KeyboardInterrupt):
    run.prepare(small_config(source), workdir, num_shards=2)
  assert os.path.exists(layout.stage_path(workdir, "clean/inputs-00000"))
  assert not os.path.exists(layout.stage_path(workdir, "clean/inputs-00001"))
  cleaned = []
  monkeypatch.setattr(stages, "clean_shard", lambda task: cleaned.append(task.index) or
                      original_clean(task))
  first = run.prepare(small_config(source), workdir, num_shards=2)
  assert cleaned == [1]  # Slice 0 was done already.
  assert written_documents(workdir) == expected

  def fail(task):
    raise AssertionError(f"{task.name} redone")

  monkeypatch.setattr(stages, "clean_shard", fail)
  monkeypatch.setattr(stages, "tokenize_shard", fail)
  assert run.prepare(small_config(source), workdir, num_shards=2) == first


def test_changed_config_or_slice_count_is_refused(corpus, tmp_path):
  source, _ = corpus
  workdir = str(tmp_path / "run")
  run.prepare(small_config(source), workdir)
  with pytest.raises(UserError, match="config.quality.min_words"):
    run.prepare(small_config(source, quality__min_words=7), workdir)
  with pytest.raises(UserError, match="1 shards"):
    run.prepare(small_config(source), workdir, num_shards=3)


def test_tokenizer_errors_name_the_prepare_config_keys(corpus, tmp_path):
  source, _ = corpus
  config = small_config(source, tokenizer__kind="sentencepiece", tokenizer__vocab_size=100)
  with pytest.raises(UserError, match=r"^config\.tokenizer\.vocab_size must be an integer"):
    run.prepare(config, str(tmp_path / "run"))


def test_archive_members_are_read_in_place(tmp_path):
  archive = tmp_path / "reviews.tar.gz"
  rng = np.random.default_rng(1)
  texts = [_document(rng) + "<br /><br />The end." for _ in range(12)]
  with tarfile.open(archive, "w:gz") as tar:
    for i, text in enumerate(texts):
      path = tmp_path / f"{i}_7.txt"
      path.write_text(text, encoding="utf-8")
      tar.add(path, arcname=f"aclImdb/train/unsup/{i}_7.txt")
    tar.add(tmp_path / "0_7.txt", arcname="aclImdb/README")
  workdir = str(tmp_path / "prepared")
  run.prepare(small_config(f"{archive}:aclImdb/train/unsup/*.txt"), workdir)
  assert written_documents(workdir) == sorted(t.replace("<br /><br />", "\n\n") for t in texts)


def test_pretraining_reads_the_prepared_shards_without_the_source(corpus, tmp_path):
  source, _ = corpus
  prepared = str(tmp_path / "prepared")
  run.prepare(small_config(source), prepared)
  config = shakespeare_char.get_config("cpu,smoke")
  config.train.update(sample_prompt="", steps=2, eval_every=2, checkpoint_every=2)
  config.data.source = "/no/such/file.txt"  # Proves nothing is read or tokenized again.
  config.data.prepared = prepared
  workdir = str(tmp_path / "train")
  final = trainer.train_and_evaluate(config, workdir)
  assert np.isfinite(final["eval/loss"])
  saved = tokenizers.load_tokenizer(os.path.join(workdir, "tokenizer"))
  original = tokenizers.load_tokenizer(layout.tokenizer_dir(prepared))
  assert saved.fingerprint() == original.fingerprint()


def test_unfinished_prepared_dir_is_a_clear_error(tmp_path):
  config = shakespeare_char.get_config("cpu,smoke")
  config.data.prepared = str(tmp_path)
  with pytest.raises(UserError, match="config.data.prepared=.* is not finished"):
    trainer.train_and_evaluate(config, str(tmp_path / "train"))


def test_command_line_reports_config_mistakes_in_one_line(tmp_path):
  result = subprocess.run(
      [sys.executable, "-m", "lm.data.prepare", "--config=experiments/data/zh_fortunes.py:smoke",
       f"--workdir={tmp_path}", "--config.dedup.near_threshold=1.5"],
      cwd=REPO, capture_output=True, text=True, timeout=120)
  assert result.returncode == 2 and "Traceback" not in result.stderr
  assert "config.dedup.near_threshold=1.5" in result.stderr


def test_chinese_entries_lose_their_escapes_and_round_trip_without_unk(tmp_path):
  from experiments.data import zh_fortunes  # pylint: disable=g-import-not-at-top
  config = zh_fortunes.get_config("smoke")
  path = FIXTURES / "zh-fortunes" / "tang300"
  config.inputs = str(path)
  result = run.prepare(config, str(tmp_path / "zh"))
  counts = result["stats"]["counts"]
  entries = path.read_text(encoding="utf-8").split("\n%\n")  # The file ends with '%'.
  assert counts["documents_in"] == len([e for e in entries if e.strip() not in ("", "%")])
  assert counts["escapes_in"] > 0 and result["stats"]["cleaning_items"]["escapes"] > 0
  assert counts["train_escapes_out"] == counts["valid_escapes_out"] == 0
  assert counts["train_roundtrip_failures"] == counts["valid_roundtrip_failures"] == 0
  assert counts["valid_documents"] > 0 and counts["valid_unk_tokens"] == 0
  assert result["stats"]["scripts"]["cjk"] > 0.5 * sum(result["stats"]["scripts"].values())


@pytest.mark.parametrize("change, match", [
    (lambda c: c.update(inputs=" "), "config.inputs"),
    (lambda c: c.quality.update(max_symbol_ratio=1.5), "config.quality.max_symbol_ratio=1.5"),
    (lambda c: c.dedup.update(num_perm=4), "config.dedup.num_perm=4"),
    (lambda c: c.dedup.update(shingle_unit="token"), "config.dedup.shingle_unit='token'"),
    (lambda c: c.reader.update(txt_unit="sentence"), "config.reader.txt_unit='sentence'"),
    (lambda c: c.tokenizer.update(kind="words"), "config.tokenizer.kind='words'"),
])
def test_config_mistakes_name_the_key(change, match):
  config = small_config("x.txt")
  change(config)
  with pytest.raises(UserError, match=match.replace("(", r"\(").replace(".", r"\.")):
    prepare_config.validate(config)


def test_augmented_copies_are_seeded_per_document(corpus, tmp_path):
  source, _ = corpus
  results = [run.prepare(small_config(source, augment__rate=0.2, augment__copies=1),
                         str(tmp_path / f"aug{shards}"), num_shards=shards) for shards in (1, 2)]
  counts = results[0]["stats"]["counts"]
  assert counts["augmented_documents"] == counts["train_documents"] // 2
  assert written_documents(str(tmp_path / "aug1")) == written_documents(str(tmp_path / "aug2"))
  plain = run.prepare(small_config(source), str(tmp_path / "plain"))["stats"]["counts"]
  assert counts["train_documents"] == 2 * plain["train_documents"]
  assert counts["valid_documents"] == plain["valid_documents"]  # Validation is never augmented.


DATA_EXPERIMENTS = sorted(p for p in (REPO / "experiments" / "data").glob("*.py")
                          if p.name != "__init__.py")


@pytest.mark.parametrize("path", DATA_EXPERIMENTS, ids=lambda p: p.stem)
def test_data_experiments_document_themselves_and_validate(path):
  module = __import__(f"experiments.data.{path.stem}", fromlist=["get_config"])
  assert "python -m lm.data.prepare --config=experiments/data/" in module.__doc__
  assert "Expected" in module.__doc__
  prepare_config.validate(module.get_config("smoke"))
  prepare_config.validate(module.get_config())
  with pytest.raises(UserError, match="unknown experiment argument"):
    module.get_config("no_such_arg")


def test_tfds_inputs_are_streamed_and_sliced(tmp_path):
  tfds = pytest.importorskip("tensorflow_datasets")
  rng = np.random.default_rng(2)
  texts = [_document(rng) for _ in range(20)]
  examples = [{"text": t.encode()} for t in texts + texts[:1]]
  with tfds.testing.mock_data(as_data_source_fn=lambda *args, **kwargs: examples):
    result = run.prepare(small_config("tfds:imdb_reviews"), str(tmp_path / "tfds"), num_shards=2)
  assert result["stats"]["counts"]["documents_in"] == 21
  assert result["stats"]["removed"] == {"exact_duplicate": 1}
  assert written_documents(str(tmp_path / "tfds")) == sorted(texts)
