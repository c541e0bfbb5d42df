"""Tests for lm.evaluation.entity_metrics: tag schemes, repairs, seqeval scores and the report."""

import json

import numpy as np
import pytest
from seqeval import metrics as seqeval_metrics
from seqeval.scheme import IOB2

from lm.evaluation import entity_metrics
from lm.evaluation.entity_metrics import check_tags, entity_scores, repair_iob2, to_iob2
from lm.errors import UserError


def _where(sentence_index: int, token_index: int) -> str:
  return f"data.conll: line {10 * sentence_index + token_index + 1}"


def _random_tags(rng: np.random.Generator, types=("PER", "LOC", "creative-work")) -> list[str]:
  """A sentence of random O / B- / I- tags: often malformed (I- after O, after another type)."""
  tags = []
  for _ in range(rng.integers(1, 12)):
    kind = rng.choice(["O", "O", "B", "I"])
    tags.append("O" if kind == "O" else f"{kind}-{rng.choice(types)}")
  return tags


def test_to_iob2_from_iob1():
  iob1 = ["I-PER", "I-PER", "O", "I-LOC", "B-LOC", "I-LOC", "I-PER", "O", "B-PER"]
  assert to_iob2(iob1, "iob1") == [
      "B-PER", "I-PER", "O", "B-LOC", "B-LOC", "I-LOC", "B-PER", "O", "B-PER"
  ]


def test_to_iob2_from_bioes_and_iob2():
  bioes = ["S-PER.NAM", "B-creative-work", "I-creative-work", "E-creative-work", "O", "B-LOC",
           "E-LOC", "S-LOC"]
  assert to_iob2(bioes, "bioes") == [
      "B-PER.NAM", "B-creative-work", "I-creative-work", "I-creative-work", "O", "B-LOC",
      "I-LOC", "B-LOC"
  ]
  iob2 = ["O", "I-X", "B-Y"]
  assert to_iob2(iob2, "iob2") == iob2  # As it is, even malformed.
  with pytest.raises(ValueError, match="tag 'S-X' is neither 'O' nor B-/I-TYPE"):
    to_iob2(["S-X"], "iob2")
  with pytest.raises(ValueError, match="tag scheme must be one of iob1, iob2, bioes"):
    to_iob2(["O"], "bilou")


def test_split_tag_splits_at_the_first_dash():
  assert entity_metrics.split_tag("B-creative-work") == ("B", "creative-work")
  assert entity_metrics.split_tag("I-PER.NAM") == ("I", "PER.NAM")
  assert entity_metrics.split_tag("O") == ("O", None)
  for bad in ("B", "B-", "X-PER", "o", "b-PER"):
    with pytest.raises(ValueError):
      entity_metrics.split_tag(bad)


def test_repair_iob2_counts():
  assert repair_iob2(["B-A", "I-A", "O"]) == (["B-A", "I-A", "O"], 0)
  assert repair_iob2(["I-A", "I-A", "O", "I-A", "I-B", "B-B", "I-B"]) == (
      ["B-A", "I-A", "O", "B-A", "B-B", "B-B", "I-B"], 3)
  assert repair_iob2([]) == ([], 0)


def test_check_tags_repairs_or_raises():
  sentences = [["B-A", "I-A"], ["O", "O", "I-A", "I-A"], ["I-B"]]
  converted, repairs = check_tags(sentences, scheme="iob2", strict=False, where_of=_where)
  assert converted == [["B-A", "I-A"], ["O", "O", "B-A", "I-A"], ["B-B"]]
  assert repairs == 2
  with pytest.raises(UserError) as e:
    check_tags(sentences, scheme="iob2", strict=True, where_of=_where)
  assert str(e.value).startswith("data.conll: line 13: tag 'I-A' continues no 'A' entity (IOB2)")
  # BIOES: an E- after O continues nothing either.
  with pytest.raises(UserError, match="data.conll: line 2: tag 'E-A' continues no 'A' entity"):
    check_tags([["O", "E-A"]], scheme="bioes", strict=True, where_of=_where)
  # IOB1 starts entities with I-: converted, never an error.
  assert check_tags([["I-A", "B-A"]], scheme="iob1", strict=True,
                    where_of=_where) == ([["B-A", "B-A"]], 0)


def test_check_tags_rejects_tags_of_another_scheme():
  with pytest.raises(UserError, match=r"data.conll: line 12: tag 'S-A' is neither 'O' nor"):
    check_tags([["O"], ["B-A", "S-A"]], scheme="iob2", strict=False, where_of=_where)
  with pytest.raises(UserError, match=r"data.conll: line 1: tag 'PER' is neither"):
    check_tags([["PER"]], scheme="bioes", strict=False, where_of=_where)


def test_hand_computed_scores():
  gold = [["B-PER", "I-PER", "O", "B-LOC"]]
  predicted = [["B-PER", "I-PER", "O", "B-ORG"]]  # PER right, ORG wrong, LOC missed.
  scores = entity_scores(gold, predicted)
  assert scores["precision"] == scores["recall"] == scores["f1"] == 0.5
  assert scores["token_accuracy"] == 0.75
  assert scores["f1/PER"] == 1.0 and scores["f1/LOC"] == 0.0 and scores["f1/ORG"] == 0.0
  assert scores["support/PER"] == 1.0 and scores["support/ORG"] == 0.0
  assert scores["macro_f1"] == pytest.approx(1 / 3)
  assert scores["macro_precision"] == pytest.approx(1 / 3)


def test_default_and_strict_modes_differ_on_malformed_entities():
  gold = [["B-PER", "I-PER", "O"]]
  predicted = [["I-PER", "I-PER", "O"]]  # conlleval reads one PER; strict IOB2 reads none.
  assert entity_scores(gold, predicted)["f1"] == 1.0
  strict = entity_scores(gold, predicted, mode="strict")
  assert strict["f1"] == 0.0 and strict["recall"] == 0.0
  with pytest.raises(ValueError, match="mode must be one of default, strict"):
    entity_scores(gold, predicted, mode="lenient")
  with pytest.raises(ValueError, match="do not have the shape of the gold tags"):
    entity_scores(gold, [["O", "O"]])


def test_no_entities_scores_zero():
  scores = entity_scores([["O", "O"], ["O"]], [["O", "O"], ["O"]])
  assert scores == {
      "precision": 0.0, "recall": 0.0, "f1": 0.0, "macro_precision": 0.0, "macro_recall": 0.0,
      "macro_f1": 0.0, "token_accuracy": 1.0
  }
  assert entity_scores([], [])["token_accuracy"] == 0.0


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # seqeval's NaN macro average of no types.
@pytest.mark.parametrize("mode", ["default", "strict"])
def test_random_sequences_match_seqeval(mode):
  rng = np.random.default_rng(0)
  options = {"mode": "strict", "scheme": IOB2} if mode == "strict" else {}
  for _ in range(50):
    gold = [_random_tags(rng) for _ in range(rng.integers(1, 6))]
    predicted = [[t if rng.random() < 0.6 else _random_tags(rng)[0] for t in g] for g in gold]
    scores = entity_scores(gold, predicted, mode=mode)
    assert scores["f1"] == seqeval_metrics.f1_score(gold, predicted, zero_division=0, **options)
    assert scores["precision"] == seqeval_metrics.precision_score(gold, predicted,
                                                                  zero_division=0, **options)
    assert scores["recall"] == seqeval_metrics.recall_score(gold, predicted, zero_division=0,
                                                            **options)
    assert scores["token_accuracy"] == seqeval_metrics.accuracy_score(gold, predicted)
    report = seqeval_metrics.classification_report(gold, predicted, output_dict=True,
                                                   zero_division=0, **options)
    types = [k for k in report if not k.endswith(" avg")]
    assert sorted(k.split("/", 1)[1] for k in scores if k.startswith("f1/")) == sorted(types)
    for entity_type in types:
      assert scores[f"f1/{entity_type}"] == report[entity_type]["f1-score"]
      assert scores[f"precision/{entity_type}"] == report[entity_type]["precision"]
      assert scores[f"recall/{entity_type}"] == report[entity_type]["recall"]
      assert scores[f"support/{entity_type}"] == report[entity_type]["support"]
    if types:
      assert scores["macro_f1"] == pytest.approx(report["macro avg"]["f1-score"])
    assert all(0.0 <= value <= 1.0 for key, value in scores.items() if "support" not in key)


def test_write_entity_report(tmp_path):
  scores = entity_scores([["B-PER", "I-PER", "O", "B-LOC"]], [["B-PER", "I-PER", "O", "B-ORG"]])
  path = tmp_path / "eval_report.json"
  entity_metrics.write_entity_report(path, scores, {"num_sentences": 1, "tag_repairs": 0})
  report = json.loads(path.read_text(encoding="utf-8"))
  assert report["micro"] == {"precision": 0.5, "recall": 0.5, "f1": 0.5}
  assert report["macro"]["f1"] == pytest.approx(1 / 3)
  assert list(report["per_type"]) == ["LOC", "ORG", "PER"]
  assert report["per_type"]["PER"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 1}
  assert report["token_accuracy"] == 0.75
  assert report["num_sentences"] == 1 and report["tag_repairs"] == 0
