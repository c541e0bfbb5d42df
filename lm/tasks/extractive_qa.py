"""Extractive question answering (SQuAD v1.1, CMRC 2018): the answer is a span of the context.

Data: config.data.source and valid_source, SQuAD JSON or JSONL questions (lm/data/qa_examples.py,
which also says how answers at a wrong offset are handled), or a held-out valid_fraction of the
training contexts (all questions of a context on the same side). Each question becomes windows
`[CLS] question [SEP] context [SEP]` of at most config.model.max_len tokens, config.task.doc_stride
tokens apart.

Model: an encoder with a start/end head (ModelConfig num_classes=2, pooling='none': two logits
at every position); the loss is the mean of the cross-entropies of the answer's start and end
positions over the window's tokens (the [CLS] position where the answer is not in the window).

Answers: every pair of context tokens start <= end < start + config.task.max_answer_length in
every window of a question is scored by start logit + end logit (an exact search, so no span
over the question or a special token and never end < start); the best is the answer, its text
cut from the context by the tokens' character offsets. The config.task.n_best best spans, with
their probabilities (a softmax over those scores), go to eval_nbest.json.

Metrics: exact match and F1 on a 0-100 scale (lm/evaluation/qa_metrics.py), as SQuAD v1.1's
script for English, CMRC 2018's for Chinese (config.task.qa_metric, 'auto' = by the validation
contexts' script), against every reference answer.
"""

import json
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from lm.data import atomic, buckets, qa_examples
from lm.errors import UserError
from lm.evaluation import generation_metrics, qa_metrics
from lm.models.config import model_config_from
from lm.tasks import base, supervised
from lm.training import steps

REPORT_FILE = "eval_report.json"
PREDICTIONS_FILE = "eval_predictions.json"
NBEST_FILE = "eval_nbest.json"
METRIC_CHOICES = ("auto",) + qa_metrics.STYLES


def span_logits(params: Any, batch: dict, *, apply_fn) -> jax.Array:
  """float32 [B, T, 2]: the start and end logits of every position."""
  logits = steps.batch_logits(apply_fn, params, batch, deterministic=True)
  return logits.astype(jnp.float32)


def span_loss(logits_BxTx2: jax.Array, batch: dict) -> jax.Array:
  """Per-window loss: the mean NLL of the answer's start and end among the window's tokens."""
  real_BxT = batch["segment_ids"] > 0
  logits = jnp.where(real_BxT[..., None], logits_BxTx2.astype(jnp.float32), -1e9)
  log_probs_BxTx2 = jax.nn.log_softmax(logits, axis=1)
  pick = lambda k, targets: jnp.take_along_axis(log_probs_BxTx2[..., k], targets[:, None], 1)[:, 0]
  return -0.5 * (pick(0, batch["starts"]) + pick(1, batch["ends"]))


def windows_batch(windows: qa_examples.Windows, indices: np.ndarray, row_weights: np.ndarray,
                  bucket_lengths) -> dict[str, np.ndarray]:
  """`inputs`, `segment_ids`, `token_types` int32 [B, L]; `starts`, `ends` int32 [B] and
  `weights` float32 [B] (0 for filler rows)."""
  row_weights = np.asarray(row_weights, np.float32)
  pick = lambda field: [field[i] for i in indices]
  inputs, segment_ids = buckets.pad_rows(pick(windows.tokens), row_weights, bucket_lengths,
                                         windows.pad_id)
  token_types, _ = buckets.pad_rows(pick(windows.token_types), row_weights, bucket_lengths, 0)
  return {
      "inputs": inputs,
      "segment_ids": segment_ids,
      "token_types": token_types,
      "starts": windows.starts[indices],
      "ends": windows.ends[indices],
      "weights": row_weights,
  }


def window_logits(run_batch, windows: qa_examples.Windows, batch_size: int, bucket_lengths,
                  rows: np.ndarray | None = None) -> list[np.ndarray]:
  """The start/end logits [L_i, 2] of every window, in window order."""
  make = lambda indices, weights, length: windows_batch(windows, indices, weights, (length,))
  logits = supervised.predict_in_order(run_batch, windows.lengths, batch_size, bucket_lengths,
                                       make, rows)
  return [out[:len(tokens)] for out, tokens in zip(logits, windows.tokens)]


def window_spans(logits_Lx2: np.ndarray, chars_Lx2: np.ndarray, max_answer_length: int,
                 n_best: int) -> list[tuple[float, int, int]]:
  """The `n_best` best (score, first char, end char) spans of one window: start and end on
  context tokens, start <= end < start + max_answer_length."""
  in_context = chars_Lx2[:, 0] >= 0
  starts = np.where(in_context, logits_Lx2[:, 0], -np.inf)
  ends = np.where(in_context, logits_Lx2[:, 1], -np.inf)
  L, A = len(starts), min(max_answer_length, len(starts))
  padded_ends = np.concatenate([ends, np.full(A, -np.inf)])
  # scores[k, i]: the span from token i to token i + k.
  scores_AxL = starts[None, :] + padded_ends[np.arange(L)[None, :] + np.arange(A)[:, None]]
  flat = scores_AxL.ravel()
  count = min(n_best, int(np.isfinite(flat).sum()))
  if not count:
    return []
  top = np.argpartition(-flat, count - 1)[:count]
  spans = []
  for index in top:
    k, i = divmod(int(index), L)
    spans.append((float(flat[index]), int(chars_Lx2[i, 0]), int(chars_Lx2[i + k, 1])))
  return spans


def extract_answers(questions: list[qa_examples.Question], windows: qa_examples.Windows,
                    logits: list[np.ndarray], *, max_answer_length: int,
                    n_best: int) -> tuple[dict[str, str], dict[str, list[dict]]]:
  """({id: best answer text}, {id: the n best [{text, probability, start}]}) of every question
  that has windows, from the spans of all its windows."""
  spans: dict[int, dict[tuple[int, int], float]] = {}
  for w, window_logits_ in enumerate(logits):
    found = spans.setdefault(int(windows.question[w]), {})
    for score, begin, end in window_spans(window_logits_, windows.chars[w], max_answer_length,
                                          n_best):
      found[begin, end] = max(score, found.get((begin, end), -np.inf))
  best, nbest = {}, {}
  for index, found in spans.items():
    question = questions[index]
    ranked = sorted(found.items(), key=lambda item: -item[1])[:n_best]
    scores = np.array([score for _, score in ranked], np.float64)
    weights = np.exp(scores - scores.max()) if len(ranked) else scores
    probabilities = weights / weights.sum() if len(ranked) else weights
    nbest[question.id] = [{
        "text": question.context[begin:end],
        "probability": float(p),
        "start": begin
    } for ((begin, end), _), p in zip(ranked, probabilities)]
    best[question.id] = nbest[question.id][0]["text"] if ranked else ""
  return best, nbest


def window_nll(logits: list[np.ndarray], windows: qa_examples.Windows) -> float:
  """The mean of `span_loss` over the windows (the validation loss)."""
  total = 0.0
  for w, logits_Lx2 in enumerate(logits):
    log_probs = logits_Lx2 - np.logaddexp.reduce(logits_Lx2, axis=0)
    total -= 0.5 * (log_probs[windows.starts[w], 0] + log_probs[windows.ends[w], 1])
  return float(total) / max(len(logits), 1)


def metric_style(task_cfg: Any, contexts: list[str]) -> str:
  """config.task.qa_metric, 'auto' resolved by the script of `contexts`."""
  if task_cfg["qa_metric"] != "auto":
    return task_cfg["qa_metric"]
  return "cmrc" if generation_metrics.is_mostly_chinese(contexts[:200]) else "squad"


def window_options(task_cfg: Any) -> dict[str, Any]:
  """lm.data.qa_examples' windowing options from config.task."""
  return dict(doc_stride=task_cfg["doc_stride"],
              max_question_tokens=task_cfg["max_question_tokens"],
              question_match=task_cfg.get("question_match", False))


def input_fields(task_cfg: Any) -> dict[str, int]:
  """The ModelConfig fields of the inputs: three token types (question, context, context that
  occurs in the question) with config.task.question_match."""
  return {"type_vocab_size": 3} if task_cfg.get("question_match", False) else {}


class ExtractiveQATask(base.Task):
  """Questions from config.data.source; a start/end head on an encoder; exact match and F1."""

  default_best_metric = "eval/f1"

  @classmethod
  def add_config_keys(cls, config) -> None:
    # Extractive QA: windows over long contexts start this many tokens apart (BERT's
    # doc_stride: the step, not the overlap).
    config.task.doc_stride = 128
    # Extractive QA: questions are cut to this many tokens.
    config.task.max_question_tokens = 64
    # Extractive QA: the longest answer, in tokens.
    config.task.max_answer_length = 30
    # Extractive QA: how many best answers per question eval_nbest.json keeps.
    config.task.n_best = 20
    # Extractive QA: True gives context tokens that also occur in the question their own token
    # type (DrQA's exact-match feature; new type embeddings, so not for imported BERT types).
    config.task.question_match = False
    # Extractive QA: 'squad' (English words) or 'cmrc' (Chinese characters) exact match and F1;
    # 'auto' picks by the validation contexts' script.
    config.task.qa_metric = "auto"

  @classmethod
  def check_config(cls, values: dict) -> None:
    super().check_config(values)
    task = values["task"]
    for key in ("doc_stride", "max_question_tokens", "max_answer_length", "n_best"):
      if not isinstance(task[key], int) or task[key] < 1:
        raise UserError(f"config.task.{key}={task[key]!r} must be an integer >= 1")
    if task["qa_metric"] not in METRIC_CHOICES:
      raise UserError(f"config.task.qa_metric={task['qa_metric']!r}: choose one of "
                      f"{', '.join(METRIC_CHOICES)}")

  @classmethod
  def head_fields(cls, config: dict, workdir: str) -> dict[str, Any]:
    return {"num_classes": 2, "pooling": "none", **input_fields(config["task"])}

  @classmethod
  def predict_file(cls, workdir: str, input_path: str, output_path: str,
                   options: dict[str, Any]) -> dict[str, float]:
    return predict_answers(workdir, input_path, output_path, checkpoint=options["checkpoint"],
                           batch_size=options["batch_size"],
                           encoding_errors=options.get("encoding_errors", "strict"))

  def __init__(self, config: Any, workdir: str, model_fields: dict[str, Any]):
    self.config = config
    train, valid = read_qa_splits(config)
    self.train_file, self.valid_file = train, valid
    texts = lambda: list(dict.fromkeys(q.context for q in train.questions)) + [
        q.question for q in train.questions]
    self.tokenizer = base.prepare_tokenizer(config, workdir, texts)
    self.model_config = model_config_from(config.model, self.tokenizer.vocab_size, num_classes=2,
                                          pooling="none", **input_fields(config.task),
                                          **model_fields)
    if self.model_config.causal:
      raise UserError("config.task.kind='extractive_qa' needs an encoder (config.model.causal="
                      "False): a decoder's start position cannot see the answer it starts")
    self.seq_len = self.model_config.max_len
    self.buckets = buckets.bucket_lengths(self.seq_len)
    encode = dict(max_len=self.seq_len, **window_options(config.task))
    trained = [q for q in train.questions if q.start != qa_examples.NO_ANSWER]
    self.train = qa_examples.encode_windows(trained, self.tokenizer, **encode)
    count = min(len(valid.questions), config.train.eval_examples or len(valid.questions))
    self.valid_questions = valid.questions[:count]
    self.valid = qa_examples.encode_windows(self.valid_questions, self.tokenizer, **encode)
    self.style = metric_style(config.task, [q.context for q in valid.questions])
    self._last: dict[str, Any] = {}

  def loss_fn(self, logits, batch):
    return span_loss(logits, batch)

  def train_batches(self, rows: np.ndarray) -> base.Batches:
    make = lambda indices, weights, lengths: windows_batch(self.train, indices, weights, lengths)
    return supervised.bucketed_train_batches(self.config, self.train.lengths, self.buckets, rows,
                                             make)

  def evaluate(self, layout, params, max_batches: int) -> dict[str, float]:
    del max_batches  # Answers need every window of a question: config.train.eval_examples.
    batch_size = self.config.train.eval_batch_size
    run = lambda batch: layout.per_row(span_logits)(params, layout.put_batch(batch, batch_size))
    logits = window_logits(run, self.valid, batch_size, self.buckets, layout.rows(batch_size))
    best, nbest = extract_answers(self.valid_questions, self.valid, logits,
                                  max_answer_length=self.config.task.max_answer_length,
                                  n_best=self.config.task.n_best)
    references = {q.id: q.answers for q in self.valid_questions}
    scores = qa_metrics.qa_scores(best, references, self.style)
    self._last = {"predictions": best, "nbest": nbest}
    return {"eval/loss": window_nll(logits, self.valid),
            **{f"eval/{k}": v for k, v in scores.items()}}

  def save_report(self, workdir: str, step: int, metrics: dict[str, float]) -> None:
    report = {
        "step": step,
        **metrics,
        "metric": self.style,
        "questions_evaluated": len(self.valid_questions),
        "answers_relocated": {"train": len(self.train_file.relocated),
                              "validation": len(self.valid_file.relocated)},
        "answers_not_in_context": {"train": self.train_file.unanswerable,
                                   "validation": self.valid_file.unanswerable},
    }
    atomic.atomic_write_text(os.path.join(workdir, REPORT_FILE), json.dumps(report, indent=1))
    for name, key in ((PREDICTIONS_FILE, "predictions"), (NBEST_FILE, "nbest")):
      atomic.atomic_write_text(os.path.join(workdir, name),
                               json.dumps(self._last[key], ensure_ascii=False, indent=1))

  def describe(self) -> str:
    train, valid = self.train_file, self.valid_file
    skipped = train.unanswerable
    return (f"Data: {len(train.questions):,} training questions in {len(self.train):,} windows "
            f"of up to {self.seq_len} tokens, {len(self.valid_questions):,} validation questions"
            f" in {len(self.valid):,}; answers away from their answer_start relocated: "
            f"{len(train.relocated):,} train, {len(valid.relocated):,} validation; "
            f"{len(skipped):,} training questions skipped, their answer not in the context"
            + (f" ({self.config.data.source}: {', '.join(skipped[:5])}"
               f"{', ...' if len(skipped) > 5 else ''})" if skipped else "") +
            f"; {self.train.num_cut_questions + self.valid.num_cut_questions:,} questions cut "
            f"to {self.config.task.max_question_tokens} tokens; metric {self.style}")


def read_qa_splits(config: Any) -> tuple[qa_examples.QuestionFile, qa_examples.QuestionFile]:
  """The training and validation questions: config.data.valid_source, or the questions of a
  held-out valid_fraction of the training contexts (seeded by supervised.SPLIT_SEED)."""
  data_cfg = config.data
  read = dict(encoding_errors=data_cfg.encoding_errors)
  train = qa_examples.read_questions(data_cfg.source, config_key="config.data.source", **read)
  if not train.has_answers:
    raise UserError(f"config.data.source={data_cfg.source}: no answers to train on")
  if data_cfg.valid_source:
    valid = qa_examples.read_questions(data_cfg.valid_source,
                                       config_key="config.data.valid_source", **read)
    return train, valid
  contexts = list(dict.fromkeys(q.context for q in train.questions))
  order = np.random.default_rng(supervised.SPLIT_SEED).permutation(len(contexts))
  num_valid = max(1, int(round(data_cfg.valid_fraction * len(contexts))))
  if num_valid >= len(contexts):
    raise UserError(f"config.data.source={data_cfg.source}: {len(contexts)} context(s) are too "
                    f"few to hold out a validation split; set config.data.valid_source")
  held_out = {contexts[i] for i in order[:num_valid]}

  def side(keep: bool) -> qa_examples.QuestionFile:
    questions = [q for q in train.questions if (q.context in held_out) == keep]
    ids = {q.id for q in questions}
    return qa_examples.QuestionFile(questions, [i for i in train.relocated if i in ids],
                                    [i for i in train.unanswerable if i in ids])

  return side(False), side(True)


def predict_answers(workdir: str, input_path: str, output_path: str, *, checkpoint: str,
                    batch_size: int, encoding_errors: str = "strict") -> dict[str, float]:
  """`lm.predict` for a QA reader: writes {id: answer} (JSON, as the official scripts read it)
  for the questions of `input_path` to `output_path`; scores them where the input has answers
  (printed and written to OUTPUT.metrics.json)."""
  import functools  # pylint: disable=g-import-not-at-top
  from lm.models.transformer import Transformer  # pylint: disable=g-import-not-at-top
  from lm.training import checkpoints  # pylint: disable=g-import-not-at-top

  if not output_path.endswith(".json"):
    raise UserError(f"--output={output_path}: a QA reader writes {{id: answer}} as .json")
  task_cfg = checkpoints.load_config(workdir)["task"]
  found = qa_examples.read_questions(input_path, config_key="--input",
                                     encoding_errors=encoding_errors)
  model_cfg, params, tokenizer = checkpoints.load_for_inference(workdir, checkpoint)
  windows = qa_examples.encode_windows(found.questions, tokenizer, max_len=model_cfg.max_len,
                                       **window_options(task_cfg))
  forward = jax.jit(functools.partial(span_logits, apply_fn=Transformer(model_cfg).apply))
  logits = window_logits(lambda batch: forward(params, batch), windows, batch_size,
                         buckets.bucket_lengths(model_cfg.max_len))
  best, _ = extract_answers(found.questions, windows, logits,
                            max_answer_length=task_cfg["max_answer_length"], n_best=1)
  atomic.atomic_write_text(output_path, json.dumps(best, ensure_ascii=False, indent=1))
  if not found.has_answers:
    return {}
  style = metric_style(task_cfg, [q.context for q in found.questions])
  scores = qa_metrics.qa_scores(best, {q.id: q.answers for q in found.questions}, style)
  atomic.atomic_write_text(output_path + ".metrics.json", json.dumps(
      {**scores, "metric": style, "input": os.path.abspath(input_path), "checkpoint": checkpoint},
      indent=1))
  return {f"eval/{k}": v for k, v in scores.items()}
