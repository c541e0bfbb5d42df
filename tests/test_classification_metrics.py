"""Classification metrics against scikit-learn, the JSON report and the confusion PNG."""

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn import metrics as skm

from lm.evaluation import classification_metrics as cm
from lm.evaluation import curves


def _check_against_sklearn(labels_N, probs_NxC):
  num_classes = probs_NxC.shape[1]
  names = [f"c{i}" for i in range(num_classes)]
  classes = list(range(num_classes))
  got = cm.classification_metrics(labels_N, probs_NxC, names)
  preds_N = probs_NxC.argmax(axis=1)

  assert got["eval/accuracy"] == pytest.approx(skm.accuracy_score(labels_N, preds_N), abs=1e-12)
  precision_C, recall_C, f1_C, _ = skm.precision_recall_fscore_support(labels_N,
                                                                       preds_N,
                                                                       labels=classes,
                                                                       zero_division=0)
  for i, name in enumerate(names):
    assert got[f"eval/precision/{name}"] == pytest.approx(precision_C[i], abs=1e-12)
    assert got[f"eval/recall/{name}"] == pytest.approx(recall_C[i], abs=1e-12)
    assert got[f"eval/f1/{name}"] == pytest.approx(f1_C[i], abs=1e-12)
  macro = skm.precision_recall_fscore_support(labels_N,
                                              preds_N,
                                              labels=classes,
                                              average="macro",
                                              zero_division=0)
  assert got["eval/precision"] == pytest.approx(macro[0], abs=1e-12)
  assert got["eval/recall"] == pytest.approx(macro[1], abs=1e-12)
  assert got["eval/f1"] == pytest.approx(skm.f1_score(labels_N,
                                                      preds_N,
                                                      labels=classes,
                                                      average="macro",
                                                      zero_division=0),
                                         abs=1e-12)
  np.testing.assert_array_equal(cm.confusion_matrix(labels_N, preds_N, num_classes),
                                skm.confusion_matrix(labels_N, preds_N, labels=classes))

  # One-vs-rest AUC of each class that is both present and absent somewhere (class 1 for C=2).
  positive = [1] if num_classes == 2 else classes
  aucs = [skm.roc_auc_score(labels_N == c, probs_NxC[:, c]) for c in positive
          if 0 < np.sum(labels_N == c) < len(labels_N)]
  has_auc = bool(aucs)
  assert ("eval/roc_auc" in got) == has_auc
  if has_auc:
    assert got["eval/roc_auc"] == pytest.approx(np.mean(aucs), abs=1e-12)
  if num_classes > 2 and len(set(labels_N)) == num_classes:
    normalized = probs_NxC / probs_NxC.sum(1, keepdims=True) if probs_NxC.min() > 0 else None
    if normalized is not None:  # sklearn's own multi-class AUC needs probabilities.
      assert cm.classification_metrics(labels_N, normalized, names)["eval/roc_auc"] == (
          pytest.approx(skm.roc_auc_score(labels_N, normalized, multi_class="ovr"), abs=1e-12))
  expected_keys = 4 + 3 * num_classes + has_auc
  assert len(got) == expected_keys


def test_random_inputs_match_sklearn():
  rng = np.random.default_rng(0)
  for trial in range(200):
    num_classes = int(rng.integers(2, 7))
    n = int(rng.integers(1, 60))
    labels_N = rng.integers(0, num_classes, size=n)
    if trial % 3 == 0:  # Coarse probabilities: many ties, in argmax and among AUC scores.
      probs_NxC = rng.integers(0, 4, size=(n, num_classes)).astype(np.float32)
    else:
      probs_NxC = rng.dirichlet(np.ones(num_classes), size=n)
    if trial % 5 == 0:  # Some classes are never predicted.
      probs_NxC[:, num_classes - 1] = -1.0
    _check_against_sklearn(labels_N, probs_NxC)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 1), st.sampled_from([0.0, 0.25, 0.5, 0.75, 1.0])),
             min_size=1,
             max_size=40))
def test_binary_with_heavy_ties_matches_sklearn(rows):
  labels_N = np.array([label for label, _ in rows])
  p1_N = np.array([p for _, p in rows])
  _check_against_sklearn(labels_N, np.stack([1.0 - p1_N, p1_N], axis=1))


@settings(max_examples=100, deadline=None)
@given(
    st.integers(2, 5).flatmap(lambda c: st.tuples(
        st.just(c),
        st.lists(st.tuples(st.integers(0, c - 1), st.integers(0, c - 1)), min_size=1, max_size=30)))
)
def test_arbitrary_predictions_match_sklearn(case):
  num_classes, rows = case
  labels_N = np.array([label for label, _ in rows])
  probs_NxC = np.eye(num_classes)[[pred for _, pred in rows]]
  _check_against_sklearn(labels_N, probs_NxC)


def test_known_values_and_zero_division():
  # Class 2 is never predicted and never true; class 1 is predicted but never true.
  labels_N = np.array([0, 0, 0, 3])
  probs_NxC = np.eye(4)[[0, 1, 0, 3]]
  got = cm.classification_metrics(labels_N, probs_NxC, ["a", "b", "c", "d"])
  assert got["eval/accuracy"] == 0.75
  assert got["eval/precision/b"] == 0.0 and got["eval/recall/b"] == 0.0
  assert got["eval/f1/c"] == 0.0
  assert got["eval/recall/a"] == pytest.approx(2 / 3)
  assert got["eval/f1/a"] == pytest.approx(0.8)
  assert got["eval/f1"] == pytest.approx((0.8 + 1.0) / 4)
  assert got["eval/roc_auc"] == pytest.approx(np.mean([5 / 6, 1.0]))  # Classes a and d.


def test_roc_auc_perfect_inverted_and_all_tied():
  labels_N = np.array([0, 0, 1, 1])
  assert cm.roc_auc(labels_N, [0.1, 0.2, 0.8, 0.9]) == 1.0
  assert cm.roc_auc(labels_N, [0.9, 0.8, 0.2, 0.1]) == 0.0
  assert cm.roc_auc(labels_N, [0.5, 0.5, 0.5, 0.5]) == 0.5
  assert cm.roc_auc([1, 1], [0.1, 0.2]) is None


def test_bad_inputs():
  with pytest.raises(ValueError, match="label names"):
    cm.classification_metrics(np.array([0]), np.ones((1, 3)), ["a", "b"])
  with pytest.raises(ValueError, match=r"\[0, 2\)"):
    cm.classification_metrics(np.array([2]), np.ones((1, 2)), ["a", "b"])
  with pytest.raises(ValueError, match="non-empty"):
    cm.classification_metrics(np.zeros(0, int), np.ones((0, 2)), ["a", "b"])


def test_report_round_trips(tmp_path):
  labels_N = np.array([0, 1, 1, 2, 2, 2])
  probs_NxC = np.eye(3)[[0, 1, 2, 2, 2, 0]]
  names = ["neg", "neutral", "pos"]
  metrics = cm.classification_metrics(labels_N, probs_NxC, names)
  confusion = cm.confusion_matrix(labels_N, probs_NxC.argmax(1), 3)
  path = tmp_path / "eval" / "report.json"
  cm.write_eval_report(path,
                       metrics,
                       confusion,
                       names,
                       extra={
                           "step": np.int64(7),
                           "loss": np.float32(0.5),
                           "bad": float("nan")
                       })
  report = json.loads(path.read_text())
  assert report["metrics"] == metrics
  assert report["confusion_matrix"] == {"labels": names, "matrix": confusion.tolist()}
  assert report["num_examples"] == 6
  assert report["step"] == 7 and report["loss"] == 0.5 and report["bad"] is None
  assert [p.name for p in path.parent.iterdir()] == ["report.json"]  # No temporary files left.


@pytest.mark.parametrize("num_classes", [2, 12])
def test_confusion_png_is_a_png(tmp_path, num_classes):
  rng = np.random.default_rng(num_classes)
  labels_N = rng.integers(0, num_classes, size=200)
  confusion = cm.confusion_matrix(labels_N, rng.integers(0, num_classes, size=200), num_classes)
  path = tmp_path / "confusion.png"
  cm.write_confusion_png(path, confusion, [f"label {i}" for i in range(num_classes)], title="dev")
  data = path.read_bytes()
  assert data[:8] == b"\x89PNG\r\n\x1a\n"
  assert data[12:16] == b"IHDR" and data[-8:-4] == b"IEND"
  width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
  assert width > 200 and height > 200


def test_binary_curves_are_sklearns_and_their_area_is_the_auc(tmp_path):
  rng = np.random.default_rng(1)
  labels_N = rng.integers(0, 2, size=80)
  p1_N = np.clip(0.3 * labels_N + rng.random(80) * 0.7, 0, 1)
  probs_NxC = np.stack([1 - p1_N, p1_N], axis=1)
  got = curves.binary_curves(labels_N, probs_NxC)
  precision, recall, _ = skm.precision_recall_curve(labels_N, p1_N)
  np.testing.assert_array_equal(got["pr"]["precision"], precision)
  np.testing.assert_array_equal(got["pr"]["recall"], recall)
  assert got["roc"]["auc"] == pytest.approx(cm.roc_auc(labels_N == 1, p1_N), abs=1e-12)
  assert got["pr"]["average_precision"] == skm.average_precision_score(labels_N, p1_N)
  curves.write_curves_png(tmp_path / "curves.png", got, title="test")
  assert (tmp_path / "curves.png").read_bytes().startswith(b"\x89PNG")
  assert curves.binary_curves(np.zeros(5, int), probs_NxC[:5]) is None  # One class only.
  assert curves.binary_curves(labels_N, np.eye(3)[labels_N]) is None  # Three classes.
