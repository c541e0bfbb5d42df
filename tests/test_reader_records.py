"""Tests of lm.data.reader.read_records (formats, archives, TFDS, errors), lm.data.labels and
lm.data.splits (held-out records and whole texts, first examples, folds)."""

import collections
import gzip
import io
import json
import os
import tarfile

import pytest

from lm import defaults
from lm.data import labels as labels_lib
from lm.data.labels import LabelSet
from lm.data.reader import Record, read_records
from lm.data.splits import first_examples, fold_split, held_out_split, whole_text_split
from lm.errors import UserError
from lm.tasks import supervised
from tests.conftest import FIXTURES

SST2_DEV = os.path.join(FIXTURES, "sst2", "dev.tsv")
IMDB_TRAIN = os.path.join(FIXTURES, "imdb", "aclImdb_train.tar.gz")
TEXT_LABEL = {"text": "sentence", "label": "label"}


def _write(path, content):
  mode = "wb" if isinstance(content, bytes) else "w"
  with open(path, mode, **({} if mode == "wb" else {"encoding": "utf-8", "newline": ""})) as f:
    f.write(content)
  return str(path)


def _write_tar(path, members):
  """members: name -> text (str) or None for a directory."""
  with tarfile.open(path, "w:gz") as tar:
    for name, text in members.items():
      info = tarfile.TarInfo(name)
      if text is None:
        info.type = tarfile.DIRTYPE
        tar.addfile(info)
      else:
        data = text.encode("utf-8") if isinstance(text, str) else text
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
  return str(path)


def _values(records):
  return [r.values for r in records]


# --- Tables, JSONL, JSON lists, plain text ------------------------------------------------------


def test_json_list_gives_one_record_per_object(tmp_path):
  path = _write(tmp_path / "val.json", json.dumps([
      {"id": "a", "dialogue": "A: hi\nB: hey", "summary": "They greet."},
      {"id": "b", "dialogue": "C: bye", "summary": None},
  ]))
  found = read_records(path, fields={"text": "dialogue", "label": "summary"}, keep_columns=True)
  assert _values(found) == [{"text": "A: hi\nB: hey", "label": "They greet."},
                            {"text": "C: bye"}]
  assert [r.where for r in found] == [f"{path}: item 1", f"{path}: item 2"]
  assert found[0].columns["id"] == "a"
  with pytest.raises(UserError, match=rf"^{path}: item 2: no key 'summary' for the label"):
    read_records(path, fields={"text": "dialogue", "label": "summary"}, required=("text", "label"))


@pytest.mark.parametrize("content, match", [
    ('{"text": "a"}', r"expected a JSON list of objects .* got a dict; JSONL files"),
    ('[{"text": "a"}, 3]', r"item 2: expected a JSON object, got int"),
    ('[{"text": "a"},\n  {"text": }]', r"line 2: not valid JSON"),
])
def test_bad_json_lists_name_the_file_and_item(tmp_path, content, match):
  path = _write(tmp_path / "a.json", content)
  with pytest.raises(UserError, match=match):
    read_records(path, fields={}, required=("text",))


def test_tsv_rows_are_records_with_lines_and_bare_quotes(tmp_path):
  path = _write(tmp_path / "train.tsv", 'sentence\tlabel\na "quoted" word\t1\n\nbad\t0\n')
  records = read_records(path, fields=TEXT_LABEL, required=("text", "label"))
  assert _values(records) == [{"text": 'a "quoted" word', "label": "1"},
                              {"text": "bad", "label": "0"}]
  assert [r.where for r in records] == [f"{path}: line 2", f"{path}: line 4"]


def test_csv_quoted_fields_and_multiline_rows_name_their_first_line(tmp_path):
  content = 'label,sentence\n1,"one, two"\n0,"multi\nline"\n1,last\n'
  path = _write(tmp_path / "train.csv", content)
  records = read_records(path, fields=TEXT_LABEL)
  assert _values(records) == [{"text": "one, two", "label": "1"},
                              {"text": "multi\nline", "label": "0"},
                              {"text": "last", "label": "1"}]
  assert [r.where.rsplit(": ", 1)[1] for r in records] == ["line 2", "line 3", "line 5"]


def test_jsonl_gz_with_integer_labels_and_sft_roles(tmp_path):
  lines = [{"q": "2+2?", "a": "4", "label": 1}, {"q": "hi", "a": "hello", "label": True}]
  path = str(tmp_path / "sft.jsonl.gz")
  with gzip.open(path, "wt", encoding="utf-8") as f:
    f.write("\n".join(json.dumps(line) for line in lines) + "\n\n")
  records = read_records(path,
                         fields={"prompt": "q", "response": "a", "label": "label"},
                         required=("prompt", "response"))
  assert _values(records) == [{"prompt": "2+2?", "response": "4", "label": "1"},
                              {"prompt": "hi", "response": "hello", "label": "true"}]
  assert records[1].where == f"{path}: line 2"


def test_optional_roles_are_absent_when_the_source_lacks_them(tmp_path):
  path = _write(tmp_path / "test.tsv", "index\tsentence\n0\tunlabeled text\n")
  records = read_records(path, fields=TEXT_LABEL, required=("text",))
  assert _values(records) == [{"text": "unlabeled text"}]


def test_plain_text_lines_are_text_records_and_dir_labels(tmp_path):
  (tmp_path / "pos").mkdir()
  (tmp_path / "neg").mkdir()
  pos = _write(tmp_path / "pos" / "a.txt", "great film\r\n\n  \nloved it\n")
  neg = _write(tmp_path / "neg" / "b.txt", "dull\n")
  records = read_records(f"{tmp_path}/pos/*.txt, {neg}",
                         fields={"label": "@dir"},
                         required=("text", "label"))
  assert _values(records) == [{"text": "great film", "label": "pos"},
                              {"text": "loved it", "label": "pos"},
                              {"text": "dull", "label": "neg"}]
  assert [r.where for r in records] == [f"{pos}: line 1", f"{pos}: line 4", f"{neg}: line 1"]


def test_required_field_defaults_to_the_role_name(tmp_path):
  path = _write(tmp_path / "a.jsonl", '{"text": "x", "label": "b"}\n')
  assert _values(read_records(path, fields={}, required=("text", "label"))) == [{
      "text": "x",
      "label": "b"
  }]


# --- Real data ----------------------------------------------------------------------------------


def test_real_sst2_dev():
  records = read_records(SST2_DEV, fields=TEXT_LABEL, required=("text", "label"))
  assert len(records) == 120  # The fixture's slice of the 872 (428 / 444).
  assert collections.Counter(r.values["label"] for r in records) == {"0": 58, "1": 62}
  assert records[0].values["text"].startswith("it 's a charming and often affecting journey")
  assert records[0].where == f"{SST2_DEV}: line 2"
  assert LabelSet.from_config("", records).names == ("0", "1")


def test_real_imdb_train_archive_with_dir_labels():
  records = read_records(f"{IMDB_TRAIN}:aclImdb/train/*/*.txt",
                         fields={"label": "@dir"},
                         required=("text", "label"))
  assert len(records) == 24  # The fixture's slice of the 25,000 (12,500 / 12,500).
  assert collections.Counter(r.values["label"] for r in records) == {"pos": 12, "neg": 12}
  names = [r.where.split(": ", 1)[1] for r in records]
  assert names == sorted(names) and names[0] == "aclImdb/train/neg/0_3.txt"
  assert all(r.values["text"].strip() for r in records)
  assert LabelSet.from_config("", records).names == ("neg", "pos")


# --- Tar archives -------------------------------------------------------------------------------


def test_archive_members_sorted_by_name_glob_and_directory_entries_skipped(tmp_path):
  path = _write_tar(
      tmp_path / "d.tar.gz", {
          "d/train": None,
          "d/train/pos/2_9.txt": "good",
          "d/train/neg/1_2.txt": "bad",
          "d/train/pos/1_8.txt": "fine",
          "d/README": "not a review",
      })
  records = read_records(f"{path}:d/train/*/*.txt", fields={"label": "@dir"})
  assert _values(records) == [{"text": "bad", "label": "neg"},
                              {"text": "fine", "label": "pos"},
                              {"text": "good", "label": "pos"}]
  assert records[0].where == f"{path}: d/train/neg/1_2.txt"


def test_archive_errors(tmp_path):
  path = _write_tar(tmp_path / "d.tar.gz", {"d/pos/1.txt": "ok", "d/neg/2.txt": " \n"})
  with pytest.raises(UserError, match=r"name the archive members to read after a colon"):
    read_records(path, fields={})
  with pytest.raises(UserError, match=r"no archive member matches 'x/\*' \(members are named like"
                     r" d/pos/1.txt, d/neg/2.txt\)"):
    read_records(f"{path}:x/*", fields={})
  with pytest.raises(UserError, match=rf"^{path}: d/neg/2.txt: empty text$"):
    read_records(f"{path}:d/*/*.txt", fields={}, required=("text",))
  with pytest.raises(UserError, match=r"no field 'score' for the label.*config.data.label_field"):
    read_records(f"{path}:d/*/*.txt", fields={"label": "score"}, required=("label",))
  bad = _write(tmp_path / "bad.tar.gz", b"not a tar")
  with pytest.raises(UserError, match=r"bad.tar.gz: not a valid tar archive"):
    read_records(f"{bad}:*", fields={})
  invalid = _write_tar(tmp_path / "u.tar", {"a/x.txt": b"ok\n\xff"})
  with pytest.raises(UserError, match=r"u.tar: a/x.txt: line 2: invalid UTF-8 byte 0xff"):
    read_records(f"{invalid}:*", fields={})
  assert _values(read_records(f"{invalid}:*", fields={}, encoding_errors="replace")) == [{
      "text": "ok\n\ufffd"
  }]


# --- Errors -------------------------------------------------------------------------------------


def test_missing_label_column_names_file_columns_and_config_key(tmp_path):
  path = _write(tmp_path / "train.tsv", "sentence\tscore\nfine\t1\n")
  with pytest.raises(UserError) as e:
    read_records(path, fields=TEXT_LABEL, required=("text", "label"))
  assert str(e.value) == (f"{path}: line 1: no column 'label' for the label (columns: 'sentence',"
                          " 'score'); set config.data.label_field")


def test_missing_jsonl_key_names_line_and_config_key(tmp_path):
  path = _write(tmp_path / "a.jsonl", '{"prompt": "p", "response": "r"}\n{"prompt": "p"}\n')
  with pytest.raises(UserError, match=r"a.jsonl: line 2: no key 'response' .*response_field"):
    read_records(path, fields={}, required=("prompt", "response"))


def test_empty_text_row_names_the_line(tmp_path):
  path = _write(tmp_path / "train.tsv", "sentence\tlabel\nok\t1\n   \t0\n")
  with pytest.raises(UserError, match=rf"^{path}: line 3: empty text$"):
    read_records(path, fields=TEXT_LABEL, required=("text", "label"))
  # Without `required`, the row is kept as it is.
  assert len(read_records(path, fields=TEXT_LABEL)) == 2


def test_wrong_number_of_fields_names_the_line(tmp_path):
  path = _write(tmp_path / "train.tsv", "sentence\tlabel\nok\t1\nextra\t0\tx\n")
  with pytest.raises(UserError, match=rf"{path}: line 3: row has 3 fields, the header has 2"):
    read_records(path, fields=TEXT_LABEL)


def test_plain_text_cannot_supply_a_required_label(tmp_path):
  path = _write(tmp_path / "a.txt", "hello\n")
  with pytest.raises(UserError, match=r"a.txt: a plain text file holds one text per line.*"
                     r"config.data.label_field='@dir'"):
    read_records(path, fields=TEXT_LABEL, required=("text", "label"))


def test_source_and_option_errors(tmp_path):
  with pytest.raises(UserError, match=r"config.data.source is empty"):
    read_records(" ", fields={})
  with pytest.raises(UserError, match=r"config.data.valid_source: file not found: 'nope.tsv'"):
    read_records("nope.tsv", fields={}, config_key="config.data.valid_source")
  with pytest.raises(UserError, match=r"config.data.label_field is empty"):
    read_records(SST2_DEV, fields={"label": " "})
  with pytest.raises(UserError, match=r"config.data.encoding_errors must be one of"):
    read_records(SST2_DEV, fields={}, encoding_errors="ignore")
  header_only = _write(tmp_path / "h.tsv", "sentence\tlabel\n")
  with pytest.raises(UserError, match=r"h.tsv: no records found"):
    read_records(header_only, fields=TEXT_LABEL)


# --- TFDS ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tfds():
  return pytest.importorskip("tensorflow_datasets")


def test_tfds_features_integer_labels_and_missing_feature(tfds):
  examples = [{"text": "great".encode(), "label": 1}, {"text": b"awful", "label": 0}]
  with tfds.testing.mock_data(as_data_source_fn=lambda *args, **kwargs: examples):
    records = read_records("tfds:imdb_reviews", fields={"label": "label"}, required=("text",))
    assert _values(records) == [{"text": "great", "label": "1"}, {"text": "awful", "label": "0"}]
    assert records[1].where == "tfds:imdb_reviews (split 'train'), example 1"
    with pytest.raises(UserError, match=r"example 0: no feature 'stars' for the label \(features:"
                       r" 'text', 'label'\); set config.data.label_field"):
      read_records("tfds:imdb_reviews", fields={"label": "stars"}, required=("label",))


def test_tfds_not_prepared_says_how_to_prepare(tfds, tmp_path):
  with pytest.raises(UserError, match=r"tfds build imdb_reviews --file_format=array_record"):
    read_records("tfds:imdb_reviews", fields={}, tfds_data_dir=str(tmp_path))


# --- LabelSet -----------------------------------------------------------------------------------


def _labeled(*labels):
  return [Record({"text": "t", "label": label}, f"train.tsv: line {i + 2}")
          for i, label in enumerate(labels)]


def test_label_inference_sorts_numerically_when_all_are_integers():
  assert LabelSet.from_config("", _labeled("10", "2", "-1", "2")).names == ("-1", "2", "10")
  assert LabelSet.from_config("", _labeled("b", "10", "a", "2")).names == ("10", "2", "a", "b")
  assert labels_lib.sort_labels(["3", "1", "20"]) == ["1", "3", "20"]


def test_explicit_labels_keep_their_order_and_index():
  label_set = LabelSet.from_config(" pos, neg ", _labeled("neg", "pos "))
  assert label_set.names == ("pos", "neg")
  assert label_set.index("neg", "x") == 1 and label_set.index(" pos", "x") == 0
  assert len(label_set) == 2


def test_label_outside_the_set_names_file_and_line():
  with pytest.raises(UserError) as e:
    LabelSet.from_config("0,1", _labeled("1", "0", "maybe"))
  assert str(e.value) == "train.tsv: line 4: label 'maybe' is not one of 0, 1 (config.data.labels)"


def test_label_set_errors():
  with pytest.raises(UserError, match=r"config.data.labels is empty and the training records have"
                     r" no labels"):
    LabelSet.from_config("", [Record({"text": "t"}, "a.txt: line 1")])
  with pytest.raises(UserError, match=r"config.data.labels: a classifier needs at least 2 labels"):
    LabelSet.from_config("", _labeled("1", "1"))
  with pytest.raises(UserError, match=r"config.data.labels: duplicate labels"):
    LabelSet.from_config("a,b,a", [])
  with pytest.raises(UserError, match=r"config.data.labels: empty label name"):
    LabelSet.from_config("a,,b", [])


def test_label_set_json_round_trip():
  label_set = LabelSet(["négatif", "positif"])
  assert LabelSet.from_json(label_set.to_json()) == label_set
  with pytest.raises(UserError, match=r"run/labels.json: corrupt label set"):
    LabelSet.from_json("{}", where="run/labels.json")


# --- held_out_split -----------------------------------------------------------------------------


def test_held_out_split_is_reproducible_disjoint_and_complete():
  records = [Record({"text": str(i)}, f"line {i}") for i in range(100)]
  train, valid = held_out_split(records, 0.1, seed=3)
  assert len(valid) == 10 and len(train) == 90
  assert sorted(r.where for r in train + valid) == sorted(r.where for r in records)
  assert not {r.where for r in train} & {r.where for r in valid}
  assert [r.values["text"] for r in train] == sorted((r.values["text"] for r in train), key=int)
  again = held_out_split(records, 0.1, seed=3)
  assert again == (train, valid)
  other = held_out_split(records, 0.1, seed=4)[1]
  assert other != valid
  assert valid != records[-10:]  # Random, not the tail.


def test_held_out_split_sizes_and_errors():
  records = [Record({"text": str(i)}, f"line {i}") for i in range(3)]
  assert [len(part) for part in held_out_split(records, 0.01)] == [2, 1]
  assert [len(part) for part in held_out_split(records, 0.99)] == [1, 2]
  for fraction in (0, 1, -0.5, True, "0.1"):
    with pytest.raises(UserError, match=r"config.data.valid_fraction must be a number in \(0, 1\)"):
      held_out_split(records, fraction)
  with pytest.raises(UserError, match=r"config.data.valid_fraction"):
    held_out_split(records[:1], 0.5)


# A phrase treebank in SST-2's form: sentences, each sub-phrase a record of its own (shared
# phrases, a duplicate row, a sentence inside a longer one).
TREEBANK = [
    "a great film", "great film", "film", "a great", "great", "not a great film", "not",
    "not a", "the plot is thin", "the plot", "plot", "is thin", "thin", "the", "a dull film",
    "dull film", "dull", "a", "a dull film", "the plot is thin , and a dull film", ", and",
    "it moves", "moves", "it", "sweet and funny", "sweet", "funny", "and funny",
]


def _inside(piece: str, text: str) -> bool:
  """Whether `piece`'s tokens are a contiguous run of `text`'s (brute force)."""
  p, t = piece.split(), text.split()
  return any(t[i:i + len(p)] == p for i in range(len(t) - len(p) + 1))


def test_whole_text_split_holds_out_sentences_and_trains_on_none_of_their_pieces():
  records = [Record({"text": text, "label": str(i % 2)}, f"line {i}")
             for i, text in enumerate(TREEBANK)]
  wholes = {t for t in TREEBANK if not any(_inside(t, u) and u != t for u in TREEBANK)}
  assert wholes == {"not a great film", "the plot is thin , and a dull film", "it moves",
                    "sweet and funny"}
  splits_seen = set()
  for seed in range(8):
    train, valid = whole_text_split(records, 0.5, seed=seed)
    held = [r.values["text"] for r in valid]
    assert len(held) == 2 and set(held) <= wholes  # round(0.5 * 4) whole texts, once each.
    # Training is every record inside no held-out text: nothing of a held-out one, all else.
    assert [r.where for r in train] == [r.where for r in records
                                        if not any(_inside(r.values["text"], h) for h in held)]
    assert [r.where for r in valid] == sorted((r.where for r in valid), key=lambda w: int(w[5:]))
    assert whole_text_split(records, 0.5, seed=seed) == (train, valid)
    splits_seen.add(frozenset(held))
  assert len(splits_seen) > 1  # The seed chooses.
  train, valid = whole_text_split(records, 0.01, seed=0)
  assert len(valid) == 1  # At least one whole text held out, at least one left.
  assert len(whole_text_split(records, 0.99, seed=0)[1]) == 3
  for fraction in (0, 1, True):
    with pytest.raises(UserError, match=r"config.data.valid_fraction must be a number"):
      whole_text_split(records, fraction)
  with pytest.raises(UserError, match=r"1 whole text\(s\) cannot be split"):
    whole_text_split(records[:5], 0.5)
  with pytest.raises(UserError, match="no text field"):
    whole_text_split([Record({"dialogue": "a b"}, "line 1")] * 2, 0.5)


def test_valid_holdout_whole_texts_through_read_splits(tmp_path):
  path = tmp_path / "train.tsv"
  _write(path, "sentence\tlabel\n" + "".join(f"{t}\t{i % 2}\n" for i, t in enumerate(TREEBANK)))
  config = defaults.base_config()
  config.data.update(source=str(path), text_field="sentence", label_field="label",
                     valid_fraction=0.5, valid_holdout="whole_texts")
  train, valid = supervised.read_splits(config, TEXT_LABEL)
  held = [r.values["text"] for r in valid]
  assert len(held) == 2
  assert not any(_inside(r.values["text"], h) for r in train for h in held)
  config.data.valid_holdout = "records"
  assert len(supervised.read_splits(config, TEXT_LABEL)[1]) == round(0.5 * len(TREEBANK))


def test_first_examples_are_nested_in_file_order_and_checked():
  records = [Record({"text": str(i)}, f"line {i}") for i in range(50)]
  chosen = {n: first_examples(records, n) for n in (5, 20, 50)}
  assert [len(c) for c in chosen.values()] == [5, 20, 50]
  assert set(map(id, chosen[5])) <= set(map(id, chosen[20]))  # Learning-curve subsets nest.
  assert [int(r.values["text"]) for r in chosen[20]] == sorted(int(r.values["text"])
                                                               for r in chosen[20])
  assert chosen[5] != records[:5] and chosen[5] == first_examples(records, 5)
  assert first_examples(records, 0) == records
  with pytest.raises(UserError, match=r"config.data.train_examples=51 but the training split "
                     r"has only 50 examples"):
    first_examples(records, 51)
  for bad in (-1, 2.5, True):
    with pytest.raises(UserError, match="config.data.train_examples must be an integer"):
      first_examples(records, bad)


def test_train_examples_leave_the_held_out_validation_split_alone():
  config = defaults.base_config()
  config.data.update(source=SST2_DEV, text_field="sentence", label_field="label")
  train, valid = supervised.read_splits(config, TEXT_LABEL)
  config.data.train_examples = 30
  few, same_valid = supervised.read_splits(config, TEXT_LABEL)
  assert len(few) == 30 and {r.where for r in few} < {r.where for r in train}
  assert [r.where for r in same_valid] == [r.where for r in valid]


def test_folds_are_disjoint_cover_the_split_are_stratified_and_fixed():
  labels = ["pos"] * 13 + ["neg"] * 7 + ["neu"] * 5
  records = [Record({"text": str(i), "label": label}, f"line {i}")
             for i, label in enumerate(labels)]
  valid_parts = []
  for fold in range(5):
    train, valid = fold_split(records, 5, fold)
    assert len(train) + len(valid) == 25 and not {id(r) for r in train} & {id(r) for r in valid}
    assert [r.where for r in valid] == sorted((r.where for r in valid), key=lambda w: int(w[5:]))
    counts = collections.Counter(r.values["label"] for r in valid)
    assert counts["neu"] == 1 and counts["neg"] in (1, 2) and counts["pos"] in (2, 3)
    assert fold_split(records, 5, fold) == (train, valid)  # The same split in every run.
    valid_parts.append({r.where for r in valid})
  assert set().union(*valid_parts) == {r.where for r in records}
  assert sorted(map(len, valid_parts)) == [5, 5, 5, 5, 5]
  with pytest.raises(UserError, match=r"config.data.fold=5: must be an integer in \[0, 5\)"):
    fold_split(records, 5, 5)
  with pytest.raises(UserError, match="config.data.folds must be an integer >= 2"):
    fold_split(records, 1, 0)
  with pytest.raises(UserError, match="config.data.folds=6: label 'neu' has only 5 examples"):
    fold_split(records, 6, 0)


def test_cross_validation_reads_folds_of_the_training_file():
  config = defaults.base_config()
  config.data.update(source=SST2_DEV, valid_source=SST2_DEV, text_field="sentence",
                     label_field="label", folds=4, fold=3)
  train, valid = supervised.read_splits(config, TEXT_LABEL)
  everything = read_records(SST2_DEV, fields=TEXT_LABEL, required=("text", "label"))
  assert len(train) + len(valid) == len(everything) and abs(len(valid) - len(everything) / 4) < 2
