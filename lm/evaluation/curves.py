"""ROC and precision–recall curves of a binary classifier (scikit-learn's), and their plot."""

import io
import os
from typing import Any

import numpy as np

from lm.data import atomic


def binary_curves(labels_N: np.ndarray, probs_NxC: np.ndarray) -> dict[str, Any] | None:
  """{"roc": {fpr, tpr, thresholds, auc}, "pr": {precision, recall, thresholds,
  average_precision}} with class 1 as the positive class (sklearn.metrics' roc_curve and
  precision_recall_curve); None unless there are 2 classes and both occur in `labels_N`."""
  from sklearn import metrics  # pylint: disable=g-import-not-at-top  # Only evaluation needs it.
  labels_N, probs_NxC = np.asarray(labels_N), np.asarray(probs_NxC)
  if probs_NxC.ndim != 2 or probs_NxC.shape[1] != 2 or len(set(labels_N.tolist())) != 2:
    return None
  positive_N, scores_N = labels_N == 1, probs_NxC[:, 1]
  fpr, tpr, roc_thresholds = metrics.roc_curve(positive_N, scores_N)
  precision, recall, pr_thresholds = metrics.precision_recall_curve(positive_N, scores_N)
  return {
      "roc": {"fpr": fpr, "tpr": tpr, "thresholds": roc_thresholds,
              "auc": float(metrics.auc(fpr, tpr))},
      "pr": {"precision": precision, "recall": recall, "thresholds": pr_thresholds,
             "average_precision": float(metrics.average_precision_score(positive_N, scores_N))},
  }


def write_curves_png(path: str | os.PathLike, curves: dict[str, Any], title: str = "") -> None:
  """The ROC curve (with the chance diagonal) and the precision–recall curve side by side."""
  from matplotlib.backends.backend_agg import FigureCanvasAgg  # pylint: disable=g-import-not-at-top
  from matplotlib.figure import Figure  # pylint: disable=g-import-not-at-top
  figure = Figure(figsize=(9, 4.2), dpi=100)
  FigureCanvasAgg(figure)
  roc_axes, pr_axes = figure.subplots(1, 2)
  roc, pr = curves["roc"], curves["pr"]
  roc_axes.plot(roc["fpr"], roc["tpr"], label=f"AUC {roc['auc']:.3f}")
  roc_axes.plot([0, 1], [0, 1], linestyle=":", color="gray")
  roc_axes.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC",
               xlim=(0, 1), ylim=(0, 1.02))
  pr_axes.step(pr["recall"], pr["precision"], where="post",
               label=f"AP {pr['average_precision']:.3f}")
  pr_axes.set(xlabel="recall", ylabel="precision", title="precision–recall", xlim=(0, 1),
              ylim=(0, 1.02))
  for axes in (roc_axes, pr_axes):
    axes.legend(loc="lower right" if axes is roc_axes else "lower left")
    axes.grid(alpha=0.3)
  if title:
    figure.suptitle(title)
  figure.tight_layout()
  buffer = io.BytesIO()
  figure.savefig(buffer, format="png")
  atomic.atomic_write_bytes(path, buffer.getvalue())
