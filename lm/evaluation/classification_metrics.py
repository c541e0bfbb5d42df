"""Classification metrics (numpy only, matching scikit-learn), the eval report and a confusion plot.

Conventions, as sklearn's with `labels=range(C)` and `zero_division=0`: macro averages run over
all C classes, including classes absent from the data; a class with no predicted (true) examples
has precision (recall) 0.0, and F1 = 2 tp / (2 tp + fp + fn), 0.0 when that is 0 / 0.
"""

import io
import json
import math
import os
from typing import Any, Sequence

import numpy as np

from lm.data import atomic


def confusion_matrix(labels_N: np.ndarray, preds_N: np.ndarray, num_classes: int) -> np.ndarray:
  """int64 [C, C]: entry [i, j] counts examples of true class i predicted as class j."""
  labels_N = _class_ids(labels_N, num_classes, "labels")
  preds_N = _class_ids(preds_N, num_classes, "predictions")
  if labels_N.shape != preds_N.shape:
    raise ValueError(f"{labels_N.shape[0]} labels but {preds_N.shape[0]} predictions")
  counts = np.bincount(labels_N * num_classes + preds_N, minlength=num_classes * num_classes)
  return counts.reshape(num_classes, num_classes).astype(np.int64)


def classification_metrics(labels_N: np.ndarray, probs_NxC: np.ndarray,
                           label_names: Sequence[str]) -> dict[str, float]:
  """Accuracy, macro and per-class precision/recall/F1, and ROC AUC.

  Predictions are the argmax of `probs_NxC` (the first class on ties). Keys: `eval/accuracy`,
  `eval/{precision,recall,f1}` (macro), `eval/{precision,recall,f1}/<name>` and `eval/roc_auc`:
  when C == 2 with class 1 as the positive class (left out when the labels hold only one class,
  where it is undefined); when C > 2 one-vs-rest, averaged over the classes for which it is
  defined (sklearn's multi_class='ovr', average='macro' when every class is present).
  """
  probs_NxC = np.asarray(probs_NxC)
  if probs_NxC.ndim != 2 or probs_NxC.shape[0] == 0:
    raise ValueError(f"probs must be a non-empty [N, C] array, got shape {probs_NxC.shape}")
  num_classes = probs_NxC.shape[1]
  if len(label_names) != num_classes:
    raise ValueError(f"{len(label_names)} label names for {num_classes} classes of probabilities")
  labels_N = _class_ids(labels_N, num_classes, "labels")
  if labels_N.shape[0] != probs_NxC.shape[0]:
    raise ValueError(f"{labels_N.shape[0]} labels but {probs_NxC.shape[0]} rows of probabilities")
  preds_N = np.argmax(probs_NxC, axis=1)
  confusion_CxC = confusion_matrix(labels_N, preds_N, num_classes)
  true_pos_C = np.diag(confusion_CxC).astype(np.float64)
  predicted_C = confusion_CxC.sum(axis=0).astype(np.float64)  # tp + fp
  actual_C = confusion_CxC.sum(axis=1).astype(np.float64)  # tp + fn
  precision_C = _safe_divide(true_pos_C, predicted_C)
  recall_C = _safe_divide(true_pos_C, actual_C)
  f1_C = _safe_divide(2 * true_pos_C, predicted_C + actual_C)
  metrics = {
      "eval/accuracy": float(true_pos_C.sum() / labels_N.shape[0]),
      "eval/precision": float(precision_C.mean()),
      "eval/recall": float(recall_C.mean()),
      "eval/f1": float(f1_C.mean()),
  }
  for name, precision, recall, f1 in zip(label_names, precision_C, recall_C, f1_C):
    metrics[f"eval/precision/{name}"] = float(precision)
    metrics[f"eval/recall/{name}"] = float(recall)
    metrics[f"eval/f1/{name}"] = float(f1)
  if num_classes == 2:
    auc = roc_auc(labels_N == 1, probs_NxC[:, 1])
  else:  # One-vs-rest, the macro average over the classes both present and absent somewhere.
    defined = [a for c in range(num_classes)
               if (a := roc_auc(labels_N == c, probs_NxC[:, c])) is not None]
    auc = float(np.mean(defined)) if defined else None
  if auc is not None:
    metrics["eval/roc_auc"] = auc
  return metrics


def roc_auc(positive_N: np.ndarray, scores_N: np.ndarray) -> float | None:
  """Area under the ROC curve; None when only one class is present.

  Computed as the Mann-Whitney U statistic with average ranks for tied scores, which equals
  the trapezoidal area of the ROC curve (sklearn's roc_auc_score): a tied positive/negative
  pair counts one half.
  """
  positive_N = np.asarray(positive_N, dtype=bool)
  num_pos = int(positive_N.sum())
  num_neg = positive_N.shape[0] - num_pos
  if num_pos == 0 or num_neg == 0:
    return None
  _, group_N, count_G = np.unique(np.asarray(scores_N, dtype=np.float64),
                                  return_inverse=True,
                                  return_counts=True)
  # 1-based average rank of each group of equal scores.
  rank_G = np.cumsum(count_G) - (count_G - 1) / 2.0
  rank_sum = rank_G[group_N.reshape(-1)][positive_N].sum()
  return float((rank_sum - num_pos * (num_pos + 1) / 2.0) / (num_pos * num_neg))


def write_eval_report(path: str | os.PathLike,
                      metrics: dict[str, Any],
                      confusion: np.ndarray,
                      label_names: Sequence[str],
                      extra: dict[str, Any] | None = None) -> None:
  """Writes {"metrics", "confusion_matrix": {"labels", "matrix"}, "num_examples", **extra}.

  Atomic JSON; numpy values become plain numbers and non-finite floats become null.
  """
  confusion = np.asarray(confusion)
  report = {
      "metrics": metrics,
      "confusion_matrix": {
          "labels": list(label_names),
          "matrix": confusion.tolist()
      },
      "num_examples": int(confusion.sum()),
      **(extra or {}),
  }
  text = json.dumps(_jsonable(report), indent=2, ensure_ascii=False, allow_nan=False)
  atomic.atomic_write_text(path, text + "\n")


def write_confusion_png(path: str | os.PathLike,
                        confusion: np.ndarray,
                        label_names: Sequence[str],
                        title: str = "") -> None:
  """Writes a heat map of `confusion` (rows true, columns predicted) with counts in the cells."""
  # Imported here: only evaluation needs matplotlib. The Agg canvas draws without a display
  # and without pyplot's global state.
  from matplotlib.backends.backend_agg import FigureCanvasAgg  # pylint: disable=g-import-not-at-top
  from matplotlib.figure import Figure  # pylint: disable=g-import-not-at-top

  confusion_CxC = np.asarray(confusion)
  num_classes = confusion_CxC.shape[0]
  if confusion_CxC.shape != (num_classes, num_classes) or len(label_names) != num_classes:
    raise ValueError(f"confusion matrix of shape {confusion_CxC.shape} for "
                     f"{len(label_names)} label names")
  side = min(max(3.0, 0.6 * num_classes + 2.0), 30.0)
  figure = Figure(figsize=(side + 1.0, side), dpi=100)
  FigureCanvasAgg(figure)
  axes = figure.add_subplot()
  image = axes.imshow(confusion_CxC, cmap="Blues", vmin=0)
  figure.colorbar(image, ax=axes)
  ticks = np.arange(num_classes)
  axes.set_xticks(ticks, labels=[str(n) for n in label_names], rotation=45, ha="right")
  axes.set_yticks(ticks, labels=[str(n) for n in label_names])
  axes.set_xlabel("predicted")
  axes.set_ylabel("true")
  if title:
    axes.set_title(title)
  threshold = confusion_CxC.max() / 2.0
  for i in range(num_classes):
    for j in range(num_classes):
      count = confusion_CxC[i, j]
      axes.text(j,
                i,
                f"{count:g}",
                ha="center",
                va="center",
                fontsize=8 if num_classes > 10 else 10,
                color="white" if count > threshold else "black")
  figure.tight_layout()
  buffer = io.BytesIO()
  figure.savefig(buffer, format="png")
  atomic.atomic_write_bytes(path, buffer.getvalue())


def _class_ids(ids_N: np.ndarray, num_classes: int, what: str) -> np.ndarray:
  ids_N = np.asarray(ids_N)
  if ids_N.ndim != 1 or not np.issubdtype(ids_N.dtype, np.integer):
    raise ValueError(f"{what} must be a 1-D integer array, got {ids_N.dtype} {ids_N.shape}")
  if ids_N.size and (ids_N.min() < 0 or ids_N.max() >= num_classes):
    raise ValueError(f"{what} must be class ids in [0, {num_classes}); got values in"
                     f" [{ids_N.min()}, {ids_N.max()}]")
  return ids_N.astype(np.int64)


def _safe_divide(numerator_C: np.ndarray, denominator_C: np.ndarray) -> np.ndarray:
  """numerator / denominator, 0.0 where the denominator is 0 (sklearn's zero_division=0)."""
  return np.divide(numerator_C,
                   denominator_C,
                   out=np.zeros_like(numerator_C),
                   where=denominator_C > 0)


def _jsonable(value: Any) -> Any:
  if isinstance(value, dict):
    return {str(k): _jsonable(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [_jsonable(v) for v in value]
  if isinstance(value, np.ndarray):
    return _jsonable(value.tolist())
  if isinstance(value, np.generic):
    return _jsonable(value.item())
  if isinstance(value, float) and not math.isfinite(value):
    return None
  return value
