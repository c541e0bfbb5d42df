"""Tests for lm.data.tagged: CoNLL and JSONL reading, Weibo position digits, errors, and
predictions written back line for line (checked with seqeval)."""

import json
import os

import pytest
from seqeval import metrics as seqeval_metrics

from lm.data import tagged as tagged_lib
from lm.data.tagged import Sentence, read_tagged, write_predictions
from lm.errors import UserError
from tests.conftest import FIXTURES

WNUT17_DEV = FIXTURES / "wnut17" / "emerging.dev.conll"
WEIBO_DEV = FIXTURES / "weibo-ner" / "weiboNER_2nd_conll.dev"


def _write(path, text: str) -> str:
  with open(path, "w", encoding="utf-8", newline="") as f:
    f.write(text)
  return str(path)


def _read_bytes(path) -> bytes:
  with open(path, "rb") as f:
    return f.read()


def conll_tags(path) -> list[list[str]]:
  """The tags of a CoNLL file, per sentence, read independently of lm.data.tagged: the last
  column, sentences split at whitespace-only lines."""
  sentences, current = [], []
  with open(path, encoding="utf-8") as f:
    for line in f:
      if line.strip():
        current.append(line.split()[-1])
      elif current:
        sentences.append(current)
        current = []
  return sentences + [current] if current else sentences


def ner_f1(gold_path, predicted_path) -> float:
  """Entity-level F1 in percent (seqeval, IOB2), as the CoNLL and WNUT scorers report it."""
  return 100 * seqeval_metrics.f1_score(conll_tags(gold_path), conll_tags(predicted_path))


# --- CoNLL --------------------------------------------------------------------------------------


def test_conll_sentences_tags_and_lines(tmp_path):
  path = _write(tmp_path / "a.conll",
                "-DOCSTART-\tO\n\nEU\tB-ORG\nrejects\tO\n\n\nGerman\tB-MISC\n\n")
  tagged = read_tagged(path)
  assert tagged.format == "conll" and tagged.has_tags
  assert tagged.sentences == [
      Sentence(("EU", "rejects"), ("B-ORG", "O"), (3, 4)),
      Sentence(("German",), ("B-MISC",), (7,)),
  ]
  assert tagged.where(1, 0) == f"{path}: line 7"


def test_conll_space_separated_columns_tag_last_and_untagged(tmp_path):
  path = _write(tmp_path / "a.txt", "EU NNP I-NP B-ORG\nrejects VBZ I-VP O\n")
  sentence, = read_tagged(path).sentences
  assert sentence.tokens == ("EU", "rejects") and sentence.tags == ("B-ORG", "O")
  untagged = read_tagged(path, has_tags=False)
  assert not untagged.has_tags and untagged.sentences[0].tags is None
  assert untagged.sentences[0].tokens == ("EU", "rejects")
  one_column = _write(tmp_path / "b", "EU\nrejects\n\nGerman\n")
  tagged = read_tagged(one_column)
  assert not tagged.has_tags
  assert [s.tokens for s in tagged.sentences] == [("EU", "rejects"), ("German",)]


def test_write_predictions_keeps_lines_separators_and_docstart(tmp_path):
  text = "-DOCSTART- -X- O\n\nEU\tB-ORG\nrejects  O\r\n \nGerman\tO\n"
  tagged = read_tagged(_write(tmp_path / "in.conll", text))
  out = tmp_path / "out.conll"
  write_predictions(tagged, [["O", "B-X"], ["B-MISC"]], str(out))
  assert _read_bytes(out).decode() == (
      "-DOCSTART- -X- O\n\nEU\tO\nrejects  B-X\r\n \nGerman\tB-MISC\n")


def test_write_predictions_appends_tags_to_untagged_lines(tmp_path):
  tagged = read_tagged(_write(tmp_path / "in.conll", "EU\nrejects\n\nGerman"))
  out = tmp_path / "out.conll"
  write_predictions(tagged, [["B-ORG", "O"], ["B-MISC"]], str(out))
  # No final newline in, none out.
  assert _read_bytes(out).decode() == "EU\tB-ORG\nrejects\tO\n\nGerman\tB-MISC"
  spaced = read_tagged(_write(tmp_path / "in2.conll", "EU NNP\n"), has_tags=False)
  write_predictions(spaced, [["B-ORG"]], str(out))
  assert _read_bytes(out).decode() == "EU NNP B-ORG\n"


def test_write_predictions_rejects_wrong_shapes(tmp_path):
  tagged = read_tagged(_write(tmp_path / "in.conll", "EU\tO\nrejects\tO\n"))
  out = str(tmp_path / "out.conll")
  with pytest.raises(ValueError, match="0 predicted sentences for the 1 sentences"):
    write_predictions(tagged, [], out)
  with pytest.raises(ValueError, match="2 tokens but 1 predicted tags"):
    write_predictions(tagged, [["O"]], out)
  with pytest.raises(ValueError, match="without blanks"):
    write_predictions(tagged, [["O", "B X"]], out)
  assert not os.path.exists(out)


# --- The data sets' formats (tests/fixtures) -----------------------------------------------------


@pytest.mark.parametrize("gold", [WNUT17_DEV, WEIBO_DEV], ids=["wnut17", "weibo"])
def test_round_trip_of_dataset_files_and_scorer(tmp_path, gold):
  tagged = read_tagged(str(gold))
  assert tagged.has_tags
  assert [list(s.tags) for s in tagged.sentences] == conll_tags(gold)
  written = tmp_path / "written.conll"
  write_predictions(tagged, [list(s.tags) for s in tagged.sentences], str(written))
  assert _read_bytes(written) == _read_bytes(gold)
  assert ner_f1(gold, written) == 100.0

  # The same file without its tag column, tagged by "predictions": the gold file again.
  stripped_lines = [line.split("\t")[0] for line in _read_bytes(gold).decode().split("\n")]
  stripped = _write(tmp_path / "stripped.conll", "\n".join(stripped_lines))
  untagged = read_tagged(stripped, has_tags=False)
  assert not untagged.has_tags
  assert [s.tokens for s in untagged.sentences] == [s.tokens for s in tagged.sentences]
  assert [s.lines for s in untagged.sentences] == [s.lines for s in tagged.sentences]
  assert read_tagged(stripped).has_tags is False  # Auto: one column.
  rewritten = tmp_path / "rewritten.conll"
  write_predictions(untagged, [list(s.tags) for s in tagged.sentences], str(rewritten))
  assert _read_bytes(rewritten) == _read_bytes(gold)
  assert ner_f1(gold, rewritten) == 100.0

  # A prediction with an error scores below 100 on the same sentences.
  predicted = [["O"] * len(s.tags) for s in tagged.sentences]
  write_predictions(tagged, predicted, str(written))
  assert conll_tags(written) == predicted
  assert ner_f1(gold, written) == 0.0


def test_weibo_position_digits_kept_and_dropped():
  kept = read_tagged(str(WEIBO_DEV))
  dropped = read_tagged(str(WEIBO_DEV), position_digits="drop")
  assert kept.sentences[0].tokens[:4] == ("口0", "腔1", "溃2", "疡3")
  assert dropped.sentences[0].tokens[:4] == ("口", "腔", "溃", "疡")
  assert [s.tags for s in dropped.sentences] == [s.tags for s in kept.sentences]
  for kept_sentence, dropped_sentence in zip(kept.sentences, dropped.sentences):
    for written, token in zip(kept_sentence.tokens, dropped_sentence.tokens):
      assert written.startswith(token) and written[len(token):].isdigit()
  all_dropped = [t for s in dropped.sentences for t in s.tokens]
  assert all(len(t) == 1 for t in all_dropped if t != "\ufffd\ufffd")  # One character each.
  assert "3" in all_dropped  # Digits are characters too: "30" is 3 at position 0.


def test_position_digits_drop_rules(tmp_path):
  path = _write(tmp_path / "w.conll", "口0\tO\n30\tO\n１12\tO\n\ufffd\ufffd0\tO\nab\tO\n5\tO\n")
  tokens = read_tagged(path, position_digits="drop").sentences[0].tokens
  assert tokens == ("口", "3", "１", "\ufffd\ufffd", "ab", "5")
  assert read_tagged(path).sentences[0].tokens[:3] == ("口0", "30", "１12")
  with pytest.raises(UserError, match="position_digits must be one of keep, drop, segment"):
    read_tagged(path, position_digits="strip")


def test_segment_keeps_word_positions_as_softword_types(tmp_path):
  # Words: 口腔溃疡 | 加上 | 这 | 玩意 ; then a one-character word ending the sentence.
  conll = "".join(f"{t}\tO\n" for t in "口0 腔1 溃2 疡3 加0 上1 这0 玩0 意1 ～0".split())
  path = _write(tmp_path / "w.conll", conll)
  sentence, = read_tagged(path, position_digits="segment").sentences
  assert sentence.tokens == tuple("口腔溃疡加上这玩意～")
  assert sentence.positions == (0, 1, 2, 3, 0, 1, 0, 0, 1, 0)
  names = [tagged_lib.SOFTWORD_TYPES[t] for t in tagged_lib.softword_types(sentence.positions)]
  assert names == ["B", "M", "M", "E", "B", "E", "S", "B", "E", "S"]
  jsonl = _write(tmp_path / "w.jsonl", json.dumps({"tokens": ["口0", "腔1"], "tags": ["O", "O"]}))
  assert read_tagged(jsonl, position_digits="segment").sentences[0].positions == (0, 1)
  assert read_tagged(path, position_digits="drop").sentences[0].positions is None
  bad = _write(tmp_path / "bad.conll", "口0\tO\n腔\tO\n")
  with pytest.raises(UserError, match=r"bad.conll: line 2: token '腔' has no word-position digits"):
    read_tagged(bad, position_digits="segment")


# --- JSONL --------------------------------------------------------------------------------------


def test_jsonl_read_and_write_back(tmp_path):
  lines = [
      {"id": 7, "tokens": ["EU", "rejects"], "tags": ["B-ORG", "O"], "lang": "en"},
      {"tokens": ["German"], "tags": ["B-MISC"]},
  ]
  path = _write(tmp_path / "a.jsonl",
                json.dumps(lines[0]) + "\n\n" + json.dumps(lines[1], ensure_ascii=False) + "\n")
  tagged = read_tagged(path)
  assert tagged.format == "jsonl" and tagged.has_tags
  assert tagged.sentences == [
      Sentence(("EU", "rejects"), ("B-ORG", "O"), (1, 1)),
      Sentence(("German",), ("B-MISC",), (3,)),
  ]
  out = tmp_path / "out.jsonl"
  write_predictions(tagged, [["O", "O"], ["B-LOC"]], str(out))
  out_lines = _read_bytes(out).decode().split("\n")
  assert out_lines[1] == out_lines[3] == ""
  first = json.loads(out_lines[0])
  assert list(first) == ["id", "tokens", "tags", "lang"] and first["tags"] == ["O", "O"]
  assert json.loads(out_lines[2]) == {"tokens": ["German"], "tags": ["B-LOC"]}


def test_jsonl_without_tags(tmp_path):
  path = _write(tmp_path / "a.jsonl", '{"tokens": ["口0", "腔1"], "id": "x"}\n')
  tagged = read_tagged(path, position_digits="drop")
  assert not tagged.has_tags
  assert tagged.sentences == [Sentence(("口", "腔"), None, (1, 1))]
  out = tmp_path / "out.jsonl"
  write_predictions(tagged, [["B-PER.NAM", "I-PER.NAM"]], str(out))
  assert json.loads(_read_bytes(out)) == {
      "tokens": ["口0", "腔1"], "id": "x", "tags": ["B-PER.NAM", "I-PER.NAM"]}
  # has_tags=False ignores tags that are there.
  tagged_path = _write(tmp_path / "b.jsonl", '{"tokens": ["a"], "tags": ["O"]}\n')
  assert read_tagged(tagged_path, has_tags=False).sentences[0].tags is None


# --- Errors -------------------------------------------------------------------------------------


def test_conll_column_count_errors(tmp_path):
  path = _write(tmp_path / "bad.conll", "EU\tB-ORG\nrejects\tO\n\nGerman\tNNP\tB-MISC\n")
  with pytest.raises(UserError) as e:
    read_tagged(path)
  assert str(e.value) == (f"{path}: line 4 has 3 columns; the file's first token line (line 1)"
                          " has 2")
  one = _write(tmp_path / "one.conll", "EU\nrejects\tO\n")
  with pytest.raises(UserError, match=r"one.conll: line 2 has 2 columns; .* \(line 1\) has 1"):
    read_tagged(one)
  with pytest.raises(UserError, match=r"one.conll: line 1 has 1 column; a tagged file"):
    read_tagged(one, has_tags=True)


@pytest.mark.parametrize("line, message", [
    ('{"tokens": ["a", "b"], "tags": ["O"]}', r"line 2: 2 tokens but 1 tag$"),
    ('{"tokens": ["a", "b"', r"line 2: not valid JSON"),
    ('{"words": ["a"]}', r"line 2: no key 'tokens' \(keys: 'words'\)"),
    ('{"tokens": ["a", 1], "tags": ["O", "O"]}', r"line 2: 'tokens' item 1 is int, not a string"),
    ('{"tokens": "a b", "tags": ["O"]}', r"line 2: 'tokens' is str, not a list of strings"),
    ('{"tokens": [], "tags": []}', r"line 2: 'tokens' is empty"),
    ('{"tokens": ["a"]}', r"line 2: no 'tags', but the file's first object \(line 1\) has them"),
    ('["a"]', r"line 2: expected a JSON object, got list"),
])
def test_jsonl_errors_name_file_and_line(tmp_path, line, message):
  path = _write(tmp_path / "bad.jsonl", '{"tokens": ["x"], "tags": ["O"]}\n' + line + "\n")
  with pytest.raises(UserError, match=r"bad.jsonl: " + message):
    read_tagged(path)


def test_jsonl_tags_on_some_lines_only(tmp_path):
  path = _write(tmp_path / "bad.jsonl", '{"tokens": ["x"]}\n{"tokens": ["y"], "tags": ["O"]}\n')
  with pytest.raises(UserError, match=r"line 2: has 'tags', but the file's first object"):
    read_tagged(path)
  with pytest.raises(UserError, match=r"line 1: no 'tags', but has_tags is set"):
    read_tagged(path, has_tags=True)


@pytest.mark.parametrize("name, text", [("empty.conll", ""), ("blank.conll", "\n \n\n"),
                                        ("docstart.conll", "-DOCSTART- O\n\n"),
                                        ("empty.jsonl", "\n")])
def test_empty_files(tmp_path, name, text):
  path = _write(tmp_path / name, text)
  with pytest.raises(UserError, match=rf"config.data.valid_source: '{path}' holds no sentences"):
    read_tagged(path, config_key="config.data.valid_source")


def test_missing_file_and_bad_utf8(tmp_path):
  missing = str(tmp_path / "missing.conll")
  with pytest.raises(UserError, match=rf"config.data.source: {missing}: file not found"):
    read_tagged(missing)
  path = tmp_path / "latin1.conll"
  path.write_bytes(b"EU\tO\ncaf\xe9\tO\n")
  with pytest.raises(UserError, match=r"latin1.conll: line 2: invalid UTF-8 byte 0xe9"):
    read_tagged(str(path))
  replaced = read_tagged(str(path), encoding_errors="replace")
  assert replaced.sentences[0].tokens == ("EU", "caf\ufffd")


def test_format_from_extension():
  assert tagged_lib.tagged_format("x/train.JSONL") == "jsonl"
  for name in ("a.conll", "a.txt", "weiboNER_2nd_conll.dev", "train", "a.json"):
    assert tagged_lib.tagged_format(name) == "conll"
