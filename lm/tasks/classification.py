"""Sequence classification: a label per text, from a pooled encoder or decoder representation."""

import math
import os
from typing import Any

import jax.numpy as jnp
import numpy as np

from lm.data import augment, buckets, examples, labels
from lm.errors import UserError
from lm.evaluation import classification_metrics as cm
from lm.evaluation import curves
from lm.models import config as model_config
from lm.models.config import model_config_from
from lm.tasks import base, distillation, supervised, transfer_set
from lm.training import steps

REPORT_FILE = "eval_report.json"
CONFUSION_FILE = "confusion_matrix.png"
CURVES_FILE = "curves.png"  # ROC and precision–recall, for two classes.


class ClassificationTask(base.Task):
  """Texts and labels from config.data.source; the head is config.task.pooling + a linear
  layer; cross-entropy with config.task.label_smoothing and class_weights."""

  default_best_metric = "eval/accuracy"
  recurrent_models = True
  distills = True
  distills_unlabelled = True
  data_roles = ("text", "label")

  @classmethod
  def check_config(cls, values: dict) -> None:
    if model_config.is_tfidf(values):
      return  # The scikit-learn baseline: lm/models/tfidf.py checks config.tfidf.
    super().check_config(values)
    if values["task"]["pooling"] == "none":
      raise UserError("config.task.pooling='none' is a label per token: use "
                      "config.task.kind='token_classification' for that, or pool with 'cls', "
                      "'mean' or 'last'")

  @classmethod
  def head_fields(cls, config: dict, workdir: str) -> dict[str, Any]:
    return {"num_classes": len(labels.load(workdir).names), "pooling": config["task"]["pooling"]}

  @classmethod
  def predict_file(cls, workdir: str, input_path: str, output_path: str,
                   options: dict[str, Any]) -> dict[str, float]:
    from lm.tasks import classification_predict  # pylint: disable=g-import-not-at-top
    return classification_predict.predict_file(workdir, input_path, output_path, **options)

  def __init__(self, config: Any, workdir: str, task_fields: dict[str, Any]):
    self.config = config
    data_cfg = config.data
    fields = {"text": data_cfg.text_field, "label": data_cfg.label_field}
    if data_cfg.text_pair_field:
      fields["text_pair"] = data_cfg.text_pair_field
    train, valid = supervised.read_splits(config, fields)
    self.labels = labels.load_saved(workdir)  # A resumed run keeps its label set.
    if self.labels is None:
      self.labels = labels.LabelSet.from_config(data_cfg.labels, train)
    for record in valid:  # Before anything is saved: a bad validation label writes nothing.
      self.labels.index(record.values["label"], record.where)
    labels.save(workdir, self.labels)
    self.augmented: dict[str, int] = {}  # Augmented copies per operation.
    self.transferred = 0  # Unlabelled texts labelled by the distillation teacher.
    if config.augment.rate and config.augment.copies:
      train, self.augmented = augment.augment_records(
          train,
          rate=config.augment.rate,
          copies=config.augment.copies,
          operations=_operations(config.augment.operations),
          seed=config.seed if config.augment.seed < 0 else config.augment.seed)
    train, teacher_outputs, transfer_width = self._distilled(train, workdir)
    self.tokenizer = base.prepare_tokenizer(config, workdir,
                                            lambda: [r.values["text"] for r in train])
    self.model_config = model_config_from(config.model,
                                          self.tokenizer.vocab_size,
                                          num_classes=len(self.labels.names),
                                          pooling=config.task.pooling,
                                          transfer_width=transfer_width,
                                          **task_fields)
    self.seq_len = self.model_config.max_len
    self.buckets = buckets.bucket_lengths(self.seq_len)
    encode = dict(max_len=self.seq_len, causal=self.model_config.causal)
    self.train = examples.classification_examples(train, self.tokenizer, self.labels, **encode)
    self.valid = examples.classification_examples(valid, self.tokenizer, self.labels, **encode)
    if teacher_outputs is not None:
      self.train.teacher_logits, self.train.teacher_hidden = distillation.split_outputs(
          teacher_outputs, len(self.labels.names))
    self.class_weights = _class_weights(config.task, len(self.labels.names))
    if not 0.0 <= config.task.label_smoothing < 1.0:
      raise UserError(f"config.task.label_smoothing={config.task.label_smoothing}: must be in "
                      f"[0, 1)")
    self._last_eval: tuple[np.ndarray, np.ndarray] | None = None

  def _distilled(self, train: list, workdir: str) -> tuple[list, np.ndarray | None, int]:
    """Under config.distill.teacher: the training records and the transfer set the teacher
    labels (config.distill.transfer), the teacher's outputs over both (cached; None: the labels
    alone, at alpha 1), and the width of the student's map to the teacher's pooled vector
    (ModelConfig.transfer_width)."""
    config = self.config
    if not config.distill.teacher:
      return train, None, 0
    transfer = transfer_set.read(config)  # First: a bad transfer source costs no teacher pass.
    saved = distillation.check_teacher(config.distill.teacher, "classification", self.labels)
    hidden_weight, transfer_width = config.distill.get("hidden_weight", 0.0), 0
    if hidden_weight:  # A learned map where the widths differ.
      width = distillation.teacher_width(config.distill.teacher, saved)
      transfer_width = 0 if width == config.model.embed_dim else width
    # Soft targets unless alpha is 1 and no hidden state is transferred: the labels alone (the
    # teacher still labels a transfer set).
    soft = config.distill.alpha < 1 or bool(hidden_weight)
    outputs = distillation.teacher_logits(config, workdir, train, self.labels) if soft else None
    if transfer:  # Cached apart: other transfer sets reuse the training texts' outputs.
      transfer_outputs = distillation.teacher_logits(config, workdir, transfer, self.labels,
                                                     part="transfer")
      transfer_logits, _ = distillation.split_outputs(transfer_outputs, len(self.labels.names))
      train = train + transfer_set.labelled(transfer, transfer_logits, self.labels.names)
      if soft:
        outputs = np.concatenate([outputs, transfer_outputs])
      self.transferred = len(transfer)
    return train, outputs, transfer_width

  def loss(self, apply_fn, params, batch, rng):
    """The loss of `loss_fn`, plus config.distill.hidden_weight times the hidden-state transfer
    loss where the batch has the teacher's pooled vectors (logged as train/hidden_loss)."""
    if "teacher_hidden" not in batch:
      return super().loss(apply_fn, params, batch, rng)
    logits_BxC, transfer_BxD = steps.transferred(apply_fn, params, batch, deterministic=False,
                                                 rngs={"dropout": rng})
    hidden_B = distillation.hidden_loss(transfer_BxD, batch["teacher_hidden"])
    weights_B = batch["weights"]
    mean = jnp.sum(hidden_B * weights_B) / jnp.maximum(jnp.sum(weights_B), 1.0)
    return (self.loss_fn(logits_BxC, batch) + self.config.distill.hidden_weight * hidden_B,
            {"hidden_loss": mean})

  def loss_fn(self, logits_BxC, batch):
    weights = None if self.class_weights is None else jnp.asarray(self.class_weights)
    loss_B = steps.classification_loss(logits_BxC,
                                       batch,
                                       label_smoothing=self.config.task.label_smoothing,
                                       class_weights_C=weights)
    return distillation.taught(self.config.distill, logits_BxC, batch, loss_B)

  def train_batches(self, rows: np.ndarray) -> base.Batches:
    make = lambda indices, weights, lengths: buckets.classification_batch(
        self.train, indices, weights, lengths)
    return supervised.bucketed_train_batches(self.config, self.train.lengths, self.buckets, rows,
                                             make)

  def evaluate(self, layout, params, max_batches: int) -> dict[str, float]:
    del max_batches  # Classifiers are always evaluated on the whole validation split.
    batch_size = self.config.train.eval_batch_size
    run = lambda batch: layout.predict_step(params, layout.put_batch(batch, batch_size))
    probs_NxC = predict_probs(run, self.valid, batch_size, self.buckets, layout.rows(batch_size))
    labels_N = self.valid.labels
    self._last_eval = (labels_N, probs_NxC)
    return validation_metrics(labels_N, probs_NxC, self.labels.names)

  def save_report(self, workdir: str, step: int, metrics: dict[str, float]) -> None:
    write_report(workdir, step, metrics, *self._last_eval, self.labels.names)

  def describe(self) -> str:
    counts = np.bincount(self.train.labels, minlength=len(self.labels.names))
    share = ", ".join(f"{n}: {c:,}" for n, c in zip(self.labels.names, counts))
    augmented = ", ".join(f"{op} {n:,}" for op, n in sorted(self.augmented.items()))
    transferred = (f"; {self.transferred:,} from config.distill.transfer, labelled by the "
                   f"teacher" if self.transferred else "")
    return (f"Data: {len(self.train):,} training examples ({share}"
            f"{'; augmented copies: ' + augmented if augmented else ''}{transferred}), "
            f"{len(self.valid):,} "
            f"validation; {self.train.num_truncated + self.valid.num_truncated:,} truncated to "
            f"{self.seq_len} tokens; padded to buckets {', '.join(map(str, self.buckets))}")


def validation_metrics(labels_N: np.ndarray, probs_NxC: np.ndarray,
                       names: list[str]) -> dict[str, float]:
  """Accuracy, P/R/F1, ROC AUC (`classification_metrics`) and eval/loss (mean NLL)."""
  metrics = cm.classification_metrics(labels_N, probs_NxC, names)
  nll_N = -np.log(np.maximum(probs_NxC[np.arange(len(labels_N)), labels_N], 1e-30))
  metrics["eval/loss"] = float(np.mean(nll_N))
  return metrics


def write_report(workdir: str, step: int, metrics: dict[str, float], labels_N: np.ndarray,
                 probs_NxC: np.ndarray, names: list[str]) -> None:
  """eval_report.json (metrics, confusion matrix; for two classes the ROC and precision–recall
  curves of the second), confusion_matrix.png and (two classes) curves.png in `workdir`."""
  confusion = cm.confusion_matrix(labels_N, probs_NxC.argmax(-1), len(names))
  binary = curves.binary_curves(labels_N, probs_NxC)
  cm.write_eval_report(os.path.join(workdir, REPORT_FILE),
                       metrics,
                       confusion,
                       names,
                       extra={"step": step, **({"curves": binary} if binary else {})})
  title = f"validation, step {step}"
  cm.write_confusion_png(os.path.join(workdir, CONFUSION_FILE), confusion, names, title=title)
  if binary:
    curves.write_curves_png(os.path.join(workdir, CURVES_FILE), binary,
                            title=f"{title}, positive class {names[1]!r}")


def predict_probs(run_batch,
                  data: examples.ClassificationExamples,
                  batch_size: int,
                  bucket_lengths,
                  rows: np.ndarray | None = None) -> np.ndarray:
  """Class probabilities [N, C] of every example (supervised.predict_in_order)."""
  make = lambda indices, weights, length: buckets.classification_batch(data, indices, weights,
                                                                        (length,))
  return np.stack(
      supervised.predict_in_order(run_batch, data.lengths, batch_size, bucket_lengths, make, rows))


def _class_weights(task_cfg: Any, num_classes: int) -> np.ndarray | None:
  text = task_cfg.class_weights.strip()
  if not text:
    return None
  try:
    weights = np.array([float(w) for w in text.split(",")], np.float32)
  except ValueError:
    raise UserError(f"config.task.class_weights={text!r}: expected comma-separated numbers")
  if len(weights) != num_classes or not all(math.isfinite(w) and w >= 0 for w in weights):
    raise UserError(f"config.task.class_weights={text!r}: expected {num_classes} non-negative "
                    f"numbers, one per label")
  return weights


def _operations(text: str) -> tuple[str, ...]:
  return tuple(op.strip() for op in text.split(",") if op.strip())
