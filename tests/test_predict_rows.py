"""lm.predict keeps the link between input and output: one row per input row, in order, with
the input's other columns; empty and truncated texts counted; its errors name its flags."""

import csv
import json
import subprocess
import sys

import pytest

from lm import defaults
from lm.experiment_args import shrink_to_smoke
from lm.training import trainer
from tests.conftest import REPO


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
  directory = tmp_path_factory.mktemp("classifier")
  rows = [("a good film", "pos"), ("a bad film", "neg"), ("so good", "pos"), ("so bad", "neg")]
  (directory / "train.tsv").write_text("sentence\tlabel\n" +
                                       "".join(f"{t}\t{l}\n" for t, l in rows * 8))
  config = defaults.base_config()
  config.task.kind = "classification"
  config.model.causal = False
  config.data.update(source=str(directory / "train.tsv"), text_field="sentence",
                     tokenizer="char", byte_fallback=False, valid_fraction=0.25)
  shrink_to_smoke(config)  # Context 16: longer texts are cut.
  config.train.sample_prompt = ""
  workdir = str(directory / "run")
  trainer.train_and_evaluate(config, workdir)
  return workdir


def predict(workdir, input_path, output_path, *flags):
  return subprocess.run([
      sys.executable, "-m", "lm.predict", f"--workdir={workdir}", f"--input={input_path}",
      f"--output={output_path}", *flags
  ], cwd=REPO, capture_output=True, text=True, check=False, timeout=300)


def test_every_line_of_a_text_file_gets_a_row(classifier, tmp_path):
  lines = ["a good film", "", "so bad", "   ", "a bad film and a very very long text it is"]
  (tmp_path / "in.txt").write_text("\n".join(lines) + "\n")
  result = predict(classifier, tmp_path / "in.txt", tmp_path / "out.jsonl")
  assert result.returncode == 0, result.stderr
  rows = [json.loads(l) for l in (tmp_path / "out.jsonl").read_text().splitlines()]
  assert [r["text"] for r in rows] == lines
  assert [r["label"] for r in rows][1] == "" and [r["p_pos"] for r in rows][3] == ""
  assert {r["label"] for r in rows[::2]} <= {"pos", "neg"}
  assert "note: 2 of 5 rows have an empty text: written with an empty prediction" in result.stderr
  assert "note: 1 of 3 texts are longer than the model's context (max_len 16" in result.stderr


def test_columns_such_as_id_travel_and_an_empty_field_does_not_abort(classifier, tmp_path):
  with open(tmp_path / "in.csv", "w", encoding="utf-8", newline="") as f:
    csv.writer(f).writerows([["id", "sentence", "label"], ["a7", "so good", "pos"],
                             ["b2", "", "neg"], ["c9", "so bad", "neg"]])
  result = predict(classifier, tmp_path / "in.csv", tmp_path / "out.csv", "--text_column=sentence")
  assert result.returncode == 0, result.stderr
  with open(tmp_path / "out.csv", encoding="utf-8", newline="") as f:
    rows = list(csv.DictReader(f))
  assert list(rows[0]) == ["id", "sentence", "input_label", "label", "p_neg", "p_pos"]
  assert [(r["id"], r["sentence"], r["input_label"]) for r in rows] == [("a7", "so good", "pos"),
                                                                        ("b2", "", "neg"),
                                                                        ("c9", "so bad", "neg")]
  assert rows[1]["label"] == "" and rows[0]["label"] in ("pos", "neg")


def test_empty_text_error_when_asked(classifier, tmp_path):
  (tmp_path / "in.jsonl").write_text('{"text": "so good"}\n{"text": ""}\n')
  result = predict(classifier, tmp_path / "in.jsonl", tmp_path / "out.jsonl",
                   "--empty_text=error")
  assert result.returncode == 2 and not (tmp_path / "out.jsonl").exists()
  assert result.stderr.strip().splitlines() == [
      f"error: {tmp_path / 'in.jsonl'}: line 2: empty text; fill it in, or pass "
      "--empty_text=predict to write an empty prediction for such rows"
  ]


@pytest.mark.parametrize("content,flags,fix", [
    ("sentence\nso good\n", [], "set --text_column"),
    (b"text\nso \xff good\n", [], "set --encoding_errors='replace'"),
])
def test_errors_name_the_flags_of_lm_predict(classifier, tmp_path, content, flags, fix):
  path = tmp_path / "in.tsv"
  path.write_bytes(content if isinstance(content, bytes) else content.encode())
  result = predict(classifier, path, tmp_path / "out.jsonl", *flags)
  assert result.returncode == 2 and fix in result.stderr and "config.data" not in result.stderr
  assert result.stderr.count("\n") == 1
  replaced = predict(classifier, path, tmp_path / "out.jsonl", "--encoding_errors=replace",
                     *flags)
  assert (replaced.returncode == 0) == isinstance(content, bytes), replaced.stderr
