"""Extractive QA: reading SQuAD/CMRC files, windows and offsets, the loss, the span search, the
official EM/F1 definitions, training, lm.predict, bad input."""

import gzip
import json
import subprocess
import sys

import jax.numpy as jnp
import numpy as np
import pytest

from experiments import cmrc2018
from lm.data import qa_examples, tokenizers
from lm.errors import UserError
from lm.evaluation import qa_metrics
from lm.tasks import extractive_qa as qa
from lm.training import trainer
from tests.conftest import FIXTURES, REPO
from tests.test_finetune import run_main
from tests.test_main_cli import assert_clear_error

CMRC_TRAIN = FIXTURES / "cmrc2018" / "cmrc2018_train.json.gz"
CMRC_DEV = FIXTURES / "cmrc2018" / "cmrc2018_dev.json"
ENGLISH = [{
    "id": "en0",
    "question": "Where is the Eiffel Tower?",
    "context": "The Eiffel Tower, completed in 1889, stands in Paris, France. It is 330 m tall; "
               "Gustave Eiffel's company built it for the 1889 World's Fair.",
    "answers": [{"text": "Paris, France", "answer_start": 47}],
}, {
    "id": "en1",
    "question": "How tall is it?",
    "context": "The Eiffel Tower, completed in 1889, stands in Paris, France. It is 330 m tall; "
               "Gustave Eiffel's company built it for the 1889 World's Fair.",
    "answers": [{"text": "330 m", "answer_start": 68}],
}]


def write_jsonl(path, items):
  path.write_text("".join(json.dumps(item, ensure_ascii=False) + "\n" for item in items),
                  encoding="utf-8")
  return str(path)


def char_tokenizer(questions):
  texts = [q.context for q in questions] + [q.question for q in questions]
  return tokenizers.build_tokenizer("char", texts, byte_fallback=False)


@pytest.fixture(scope="module")
def cmrc():
  return qa_examples.read_questions(str(CMRC_TRAIN), config_key="config.data.source")


def test_reads_squad_json_and_both_jsonl_answer_layouts(tmp_path, cmrc):
  assert len(cmrc.questions) == 96 and all(q.answers for q in cmrc.questions)
  flat = write_jsonl(tmp_path / "a.jsonl", ENGLISH)
  hf_layout = [{**item, "answers": {"text": [a["text"] for a in item["answers"]],
                                    "answer_start": [a["answer_start"] for a in item["answers"]]}}
               for item in ENGLISH]
  for path in (flat, write_jsonl(tmp_path / "b.jsonl", hf_layout)):
    found = qa_examples.read_questions(path, config_key="--input")
    assert [(q.id, q.answers, q.start) for q in found.questions] == [
        ("en0", ("Paris, France",), 47), ("en1", ("330 m",), 68)]


@pytest.mark.parametrize("language", ["english", "chinese"])
def test_windows_cover_every_context_character_and_answers_round_trip(tmp_path, cmrc, language):
  questions = (qa_examples.read_questions(write_jsonl(tmp_path / "en.jsonl", ENGLISH),
                                          config_key="x").questions
               if language == "english" else
               [q for q in cmrc.questions if len(q.answers[0]) <= 20][:30])
  tokenizer = char_tokenizer(questions)
  windows = qa_examples.encode_windows(questions, tokenizer, max_len=40, doc_stride=7,
                                       max_question_tokens=12)
  assert max(windows.lengths) <= 40
  for index, q in enumerate(questions):
    mine = np.flatnonzero(windows.question == index)
    assert len(mine) > 1  # Long contexts take several windows.
    covered = np.zeros(len(q.context), bool)
    for w in mine:
      for begin, end in windows.chars[w]:
        covered[max(begin, 0):end] = True
      types, tokens = windows.token_types[w], windows.tokens[w]
      assert tokens[0] == tokenizer.special_ids.cls and tokens[-1] == tokenizer.special_ids.sep
      # Context tokens (and the final [SEP]) are type 1, and only they carry characters.
      assert np.array_equal(windows.chars[w][:, 0] >= 0, (types == 1) & (np.arange(len(types))
                                                                          < len(types) - 1))
    assert all(covered[i] or q.context[i].isspace() for i in range(len(q.context)))
    inside = [w for w in mine if windows.starts[w] > 0]
    assert inside, "the answer is inside some window"
    for w in inside:
      begin, end = windows.chars[w][windows.starts[w], 0], windows.chars[w][windows.ends[w], 1]
      assert q.context[begin:end] == q.answers[0]
    for w in set(mine) - set(inside):
      assert windows.ends[w] == 0


def test_answers_of_the_whole_fixture_round_trip(cmrc):
  windows = qa_examples.encode_windows(cmrc.questions, char_tokenizer(cmrc.questions), max_len=128,
                                       doc_stride=64, max_question_tokens=32)
  for w in np.flatnonzero(windows.starts > 0):
    q = cmrc.questions[windows.question[w]]
    begin, end = windows.chars[w][windows.starts[w], 0], windows.chars[w][windows.ends[w], 1]
    assert q.context[begin:end] == q.answers[0]


def test_units_split_cjk_characters_latin_runs_and_punctuation():
  text = "《战国无双3》由ω-force开发, in 2010."
  assert [text[b:e] for b, e in qa_examples.context_units(text)] == [
      "《", "战", "国", "无", "双", "3", "》", "由", "ω", "-", "force", "开", "发", ",", "in", "2010",
      "."]


def test_wrong_offsets_are_relocated_and_missing_answers_skipped_and_counted(tmp_path):
  items = [{**ENGLISH[0], "id": "moved", "answers": [{"text": "Paris, France", "answer_start": -1}]},
           {**ENGLISH[1], "id": "absent", "answers": [{"text": "London", "answer_start": 3}]},
           {**ENGLISH[1], "id": "first", "answers": [{"text": "1889", "answer_start": 130}]}]
  found = qa_examples.read_questions(write_jsonl(tmp_path / "q.jsonl", items), config_key="x")
  assert found.relocated == ["moved", "first"] and found.unanswerable == ["absent"]
  nearest = ENGLISH[1]["context"].rindex("1889")  # Not the first 1889, at 31.
  assert [q.start for q in found.questions] == [47, qa_examples.NO_ANSWER, nearest]
  dev = qa_examples.read_questions(str(CMRC_DEV), config_key="x")
  assert all(len(q.answers) == 3 for q in dev.questions)


def test_span_loss_matches_a_float64_reference():
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(3, 7, 2))
  segment_ids = np.array([[1] * 7, [1] * 5 + [0] * 2, [1] * 3 + [0] * 4])
  starts, ends = np.array([2, 4, 0]), np.array([5, 4, 0])
  got = qa.span_loss(jnp.asarray(logits, jnp.float32), {
      "segment_ids": jnp.asarray(segment_ids), "starts": jnp.asarray(starts),
      "ends": jnp.asarray(ends)})
  expected = []
  for b in range(3):
    n = segment_ids[b].sum()
    log_probs = logits[b, :n] - np.log(np.exp(logits[b, :n]).sum(0))
    expected.append(-0.5 * (log_probs[starts[b], 0] + log_probs[ends[b], 1]))
  np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-5)


def test_span_search_is_exact_and_stays_inside_the_context():
  rng = np.random.default_rng(1)
  L, max_answer = 12, 4
  chars = np.full((L, 2), -1)
  chars[5:11] = [[b, b + 1] for b in range(0, 12, 2)]  # Context tokens 5..10; others question.
  for _ in range(20):
    logits = rng.normal(size=(L, 2)) * 3
    spans = qa.window_spans(logits, chars, max_answer, n_best=1000)
    brute = sorted(((logits[i, 0] + logits[j, 1], chars[i, 0], chars[j, 1])
                    for i in range(5, 11) for j in range(i, min(11, i + max_answer))),
                   reverse=True)
    assert len(spans) == len(brute)
    np.testing.assert_allclose(sorted(spans, reverse=True), brute)
    assert all(begin < end for _, begin, end in spans)


def test_best_answer_across_windows_comes_from_the_best_window(tmp_path):
  found = qa_examples.read_questions(write_jsonl(tmp_path / "q.jsonl", ENGLISH[:1]),
                                     config_key="x")
  windows = qa_examples.encode_windows(found.questions, char_tokenizer(found.questions),
                                       max_len=48, doc_stride=10, max_question_tokens=8)
  logits = [np.zeros((len(t), 2)) for t in windows.tokens]
  w = int(np.flatnonzero(windows.starts > 0)[-1])
  logits[w][windows.starts[w], 0] = logits[w][windows.ends[w], 1] = 5.0
  best, nbest = qa.extract_answers(found.questions, windows, logits, max_answer_length=30,
                                   n_best=3)
  assert best == {"en0": "Paris, France"}
  assert len(nbest["en0"]) == 3 and nbest["en0"][0]["text"] == "Paris, France"
  assert abs(sum(c["probability"] for c in nbest["en0"]) - 1) < 1e-9


@pytest.mark.parametrize("prediction, reference, style, em, f1", [
    ("The Eiffel Tower!", "eiffel  tower", "squad", 1, 1.0),
    ("in Paris", "Paris, France", "squad", 0, 0.5),  # 1 shared word of 2 and 2.
    ("a cat sat", "the dog", "squad", 0, 0.0),
    ("光荣和ω-force", "光荣和ω－force。", "cmrc", 1, 1.0),
    ("北京大学", "北京", "cmrc", 0, 2 / 3),  # P 2/4, R 2/2.
    ("中国北京", "北京中国", "cmrc", 0, 0.5),  # Longest common substring 2: P = R = 1/2.
])
def test_em_and_f1_follow_the_official_definitions(prediction, reference, style, em, f1):
  assert qa_metrics.exact_match(prediction, reference, style) == em
  assert qa_metrics.f1(prediction, reference, style) == pytest.approx(f1)


def test_scores_take_the_best_reference_and_zero_for_missing_predictions():
  scores = qa_metrics.qa_scores({"a": "北京"}, {"a": ["上海", "北京"], "b": ["天津"], "c": []},
                                "cmrc")
  assert scores == {"exact_match": 50.0, "f1": 50.0}


def test_f1_equals_the_shared_scorer(tmp_path):
  """Our CMRC F1 over a prediction file is what ../shared/tools/score.py (the independent
  scorer of the hidden test) computes."""
  scorer = REPO.parent / "shared" / "tools" / "score.py"
  if not scorer.exists():
    pytest.skip("../shared/tools/score.py is not beside the repository")
  dev = qa_examples.read_questions(str(CMRC_DEV), config_key="x")
  rng = np.random.default_rng(0)
  predictions = {}
  for q in dev.questions:
    b = int(rng.integers(0, len(q.context) - 5))
    predictions[q.id] = q.context[b:b + int(rng.integers(1, 12))]
  predictions[dev.questions[0].id] = dev.questions[0].answers[1]
  (tmp_path / "p.json").write_text(json.dumps(predictions, ensure_ascii=False), encoding="utf-8")
  out = subprocess.run([sys.executable, str(scorer), "cmrc", str(CMRC_DEV), str(tmp_path / "p.json")],
                       capture_output=True, text=True, check=True)
  ours = qa_metrics.qa_scores(predictions, {q.id: q.answers for q in dev.questions}, "cmrc")
  assert float(out.stdout) == pytest.approx(ours["f1"], abs=0.006)


def smoke_config(**task):
  config = cmrc2018.get_config("smoke")
  config.model.dropout = 0.0
  config.data.source = str(CMRC_TRAIN)
  config.data.valid_source = str(CMRC_DEV)
  config.train.update(steps=6, eval_every=3, checkpoint_every=3, eval_examples=0)
  config.task.update(task)
  return config


def test_train_then_predict_writes_id_answer_json_scored_like_evaluation(tmp_path):
  workdir = tmp_path / "run"
  metrics = trainer.train_and_evaluate(smoke_config(), str(workdir))
  report = json.loads((workdir / qa.REPORT_FILE).read_text())
  assert report["metric"] == "cmrc" and report["questions_evaluated"] == 43
  in_run = json.loads((workdir / qa.PREDICTIONS_FILE).read_text(encoding="utf-8"))
  assert len(in_run) == 43
  output = tmp_path / "dev_pred.json"
  # lm.predict's code path (the command module itself defines flags; tests import no command).
  scores = qa.ExtractiveQATask.predict_file(str(workdir), str(CMRC_DEV), str(output),
                                            {"checkpoint": "latest", "batch_size": 64})
  predicted = json.loads(output.read_text(encoding="utf-8"))
  dev = qa_examples.read_questions(str(CMRC_DEV), config_key="x")
  assert list(predicted) == [q.id for q in dev.questions]
  for q in dev.questions:  # Every answer is a piece of its own context.
    assert predicted[q.id] in q.context
  assert scores["eval/f1"] == pytest.approx(metrics["eval/f1"], abs=1e-6)
  assert json.loads((tmp_path / "dev_pred.json.metrics.json").read_text())["metric"] == "cmrc"
  # The same run under jax.pmap: the same training and evaluation, up to float rounding.
  config = smoke_config()
  config.mesh.use_pmap = True
  pmapped = trainer.train_and_evaluate(config, str(tmp_path / "pmap"))
  assert pmapped["eval/loss"] == pytest.approx(metrics["eval/loss"], rel=1e-4)
  assert pmapped["eval/f1"] == pytest.approx(metrics["eval/f1"], abs=1e-6)


def test_bad_input_gets_one_error_line(tmp_path):
  empty = write_jsonl(tmp_path / "empty.jsonl", [{**ENGLISH[0], "context": "  "}])
  with pytest.raises(UserError, match=r"empty.jsonl:1 \(id en0\): empty or missing context"):
    qa_examples.read_questions(empty, config_key="x")
  twice = write_jsonl(tmp_path / "twice.jsonl", [ENGLISH[0], ENGLISH[0]])
  with pytest.raises(UserError, match="twice.jsonl:2.*second question with id en0"):
    qa_examples.read_questions(twice, config_key="x")
  with pytest.raises(UserError, match="SQuAD .json or .jsonl"):
    qa_examples.read_questions(str(tmp_path / "q.csv"), config_key="--input")
  result = run_main("--config=experiments/cmrc2018.py:smoke", f"--workdir={tmp_path / 'run'}",
                    f"--config.data.source={empty}")
  assert_clear_error(result, "empty.jsonl:1 (id en0): empty or missing context")
  assert not (tmp_path / "run" / "checkpoints").exists()
  for overrides, fragment in (({"task": {"doc_stride": 0}}, "config.task.doc_stride=0"),
                              ({"model": {"causal": True}}, "needs an encoder")):
    config = smoke_config()
    for section, values in overrides.items():
      config[section].update(values)
    with pytest.raises(UserError, match=fragment):
      trainer.train_and_evaluate(config, str(tmp_path / "run2"))
    assert not (tmp_path / "run2" / "checkpoints").exists()


def test_cmrc_train_file_is_read_through_gzip():
  with gzip.open(CMRC_TRAIN, "rt", encoding="utf-8") as f:
    paragraphs = sum(len(a["paragraphs"]) for a in json.load(f)["data"])
  assert paragraphs == 24


def test_question_match_marks_context_tokens_that_occur_in_the_question(tmp_path):
  found = qa_examples.read_questions(write_jsonl(tmp_path / "q.jsonl", ENGLISH[:1]),
                                     config_key="x")
  q = found.questions[0]
  windows = qa_examples.encode_windows(found.questions, char_tokenizer(found.questions),
                                       max_len=256, doc_stride=128, max_question_tokens=64,
                                       question_match=True)
  types, chars = windows.token_types[0], windows.chars[0]
  words = {q.context[b:e] for (b, e), t in zip(chars, types) if t == 2}
  # "Where is the Eiffel Tower?", case-insensitive.
  assert words == {"The", "the", "Eiffel", "Tower", "is"}
  assert set(types[chars[:, 0] >= 0]) == {1, 2} and types[-1] == 1


def test_training_skips_and_names_answers_missing_from_the_context(tmp_path):
  from lm.tasks import registry  # pylint: disable=g-import-not-at-top
  items = ENGLISH + [{**ENGLISH[1], "id": "absent",
                      "answers": [{"text": "London", "answer_start": 3}]}]
  config = smoke_config()
  config.data.source = write_jsonl(tmp_path / "train.jsonl", items)
  config.data.valid_source = write_jsonl(tmp_path / "valid.jsonl", ENGLISH)
  task = registry.build_task(config, str(tmp_path / "run"), {})
  assert set(task.train.question.tolist()) == {0, 1}  # Only the answerable questions train.
  assert "1 training questions skipped" in task.describe()
  assert "train.jsonl: absent" in task.describe()
  assert task.style == "squad"
