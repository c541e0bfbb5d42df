"""lm.predict for classifiers: a label and the probability of every label per input row."""

import csv
import functools
import io
import json
import os
import sys

from lm.errors import UserError
from lm.models import config as model_config

OUTPUT_FORMATS = (".csv", ".tsv", ".jsonl")
# --empty_text: a row whose text is empty gets an empty prediction, or is an error.
EMPTY_TEXT_CHOICES = ("predict", "error")


def predict_file(workdir: str,
                 input_path: str,
                 output_path: str,
                 *,
                 text_column: str = "text",
                 checkpoint: str = "best",
                 batch_size: int = 64,
                 label_column: str = "",
                 text_pair_column: str = "",
                 empty_text: str = "predict",
                 encoding_errors: str = "strict") -> dict[str, float]:
  """Writes the predictions for `input_path` to `output_path`: one row per input row, in order,
  with the input's columns, the predicted label and the probability of every label. A row
  with an empty text gets an empty prediction (`empty_text='predict'`) or stops everything
  (`'error'`). With `label_column`, returns (and writes beside the output) the metrics against
  those labels, else {}. A classifier of sentence pairs reads the second text from
  `text_pair_column` ('' = the column it trained on, config.data.text_pair_field)."""
  # Heavy imports after the flag checks.
  from lm.data import atomic, labels as label_files, reader, text_files  # pylint: disable=g-import-not-at-top
  from lm.tasks import supervised  # pylint: disable=g-import-not-at-top
  from lm.training import checkpoints  # pylint: disable=g-import-not-at-top

  extension = os.path.splitext(output_path)[1].lower()
  if extension not in OUTPUT_FORMATS:
    raise UserError(f"--output={output_path}: name a {', '.join(OUTPUT_FORMATS)} file")
  text_files.check_choice(empty_text, EMPTY_TEXT_CHOICES, "--empty_text")
  config = checkpoints.load_config(workdir)  # lm.predict checked it exists, and batch_size.
  labels = label_files.load(workdir)
  fields = {"text": text_column, **({"label": label_column} if label_column else {})}
  text_pair_column = text_pair_column or config["data"].get("text_pair_field", "")
  if text_pair_column:
    fields["text_pair"] = text_pair_column
  rows = reader.read_records(input_path,
                             fields=fields,
                             config_key="--input",
                             required=tuple(fields),
                             encoding_errors=encoding_errors,
                             blank="keep",
                             keep_columns=True)
  empty = [not r.values["text"].strip() or not r.values.get("text_pair", "-").strip()
           for r in rows]
  if any(empty) and empty_text == "error":
    where = rows[empty.index(True)].where
    raise UserError(f"{where}: empty text; fill it in, or pass --empty_text=predict to write "
                    "an empty prediction for such rows")
  found = supervised.as_trained([r for r, e in zip(rows, empty) if not e],
                                config["data"].get("clean", ""),
                                config["data"].get("lowercase", False))
  gold = labels if label_column else None
  if model_config.is_tfidf(config):
    probs_NxC, gold_N = _tfidf_probabilities(workdir, found, labels, gold)
    num_truncated, max_len = 0, None
  else:
    probs_NxC, gold_N, num_truncated, max_len = model_probabilities(workdir, checkpoint, found,
                                                                    gold, batch_size)
  atomic.atomic_write_text(output_path,
                           _format(_output_rows(rows, empty, probs_NxC, labels.names, text_column),
                                   extension))
  _report(len(rows), sum(empty), num_truncated, max_len)
  if not label_column:
    return {}
  from lm.evaluation import classification_metrics as cm  # pylint: disable=g-import-not-at-top
  metrics = cm.classification_metrics(gold_N, probs_NxC, labels.names)
  confusion = cm.confusion_matrix(gold_N, probs_NxC.argmax(-1), len(labels.names))
  cm.write_eval_report(output_path + ".metrics.json",
                       metrics,
                       confusion,
                       labels.names,
                       extra={
                           "input": os.path.abspath(input_path),
                           "checkpoint": checkpoint,
                           "rows_with_empty_text_not_scored": sum(empty),
                       })
  return metrics


def model_probabilities(workdir, checkpoint, records, gold, batch_size, logits=False,
                        pooled=False):
  """[N, C] probabilities (with `logits`, the logits; with `pooled`, the logits and the pooled
  vectors, [N, C + D]) of a trained classifier's checkpoint for `records` (texts as it trains
  on them), the gold label ids (with `gold`, the label set), how many texts were cut to the
  context, and the context."""
  import jax  # pylint: disable=g-import-not-at-top
  from lm.data import buckets, examples  # pylint: disable=g-import-not-at-top
  from lm.models.transformer import Transformer  # pylint: disable=g-import-not-at-top
  from lm.tasks import classification  # pylint: disable=g-import-not-at-top
  from lm.training import checkpoints, steps  # pylint: disable=g-import-not-at-top
  model_cfg, params, tokenizer = checkpoints.load_for_inference(workdir, checkpoint)
  data = examples.classification_examples(records, tokenizer, gold, max_len=model_cfg.max_len,
                                          causal=model_cfg.causal)
  forward = jax.jit(functools.partial(steps.predict_step, apply_fn=Transformer(model_cfg).apply,
                                      logits=logits, pooled=pooled))
  probs_NxC = classification.predict_probs(lambda batch: forward(params, batch), data, batch_size,
                                           buckets.bucket_lengths(model_cfg.max_len))
  return probs_NxC, data.labels, data.num_truncated, model_cfg.max_len


def _tfidf_probabilities(workdir, records, labels, gold):
  """The same for a TF-IDF baseline's fitted pipeline (lm/models/tfidf.py)."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  from lm.models import tfidf  # pylint: disable=g-import-not-at-top
  texts = [tfidf.text_of(r.values["text"], r.values.get("text_pair")) for r in records]
  probs_NxC = tfidf.probabilities(tfidf.load(workdir), texts, len(labels.names))
  gold_N = None if gold is None else np.array(
      [gold.index(r.values["label"], r.where) for r in records], np.int32)
  return probs_NxC, gold_N


def _output_rows(rows, empty: list[bool], probs_NxC, names: tuple[str, ...],
                 text_column: str) -> list[dict]:
  """Each input row's columns (a plain text line as `text_column`), then the predicted `label`
  and `p_<label>` per label ('' for an empty text). An input column named like a prediction
  column is carried as `input_<name>`."""
  predicted = iter(probs_NxC)
  out = []
  for row, is_empty in zip(rows, empty):
    prediction = {"label": "", **{f"p_{name}": "" for name in names}}
    if not is_empty:
      p = next(predicted)
      prediction = {"label": names[int(p.argmax())],
                    **{f"p_{name}": float(p[c]) for c, name in enumerate(names)}}
    columns = row.columns or {text_column: row.values["text"]}
    carried = {(f"input_{k}" if k in prediction else k): v for k, v in columns.items()}
    out.append({**carried, **prediction})
  return out


def _report(num_rows: int, num_empty: int, num_truncated: int, max_len: int) -> None:
  """Says on stderr what did not go into the model as given."""
  if num_empty:
    print(f"note: {num_empty} of {num_rows} rows have an empty text: written with an empty "
          "prediction", file=sys.stderr)
  if num_truncated:
    print(f"note: {num_truncated} of {num_rows - num_empty} texts are longer than the model's "
          f"context (max_len {max_len} tokens with the special tokens) and were cut to fit "
          "(from the end; pairs longest first)", file=sys.stderr)


def _format(rows: list[dict], extension: str) -> str:
  if extension == ".jsonl":
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
  out = io.StringIO()
  writer = csv.DictWriter(out,
                          fieldnames=list(dict.fromkeys(k for row in rows for k in row)),
                          restval="",
                          delimiter="\t" if extension == ".tsv" else ",",
                          lineterminator="\n",
                          quoting=csv.QUOTE_MINIMAL)
  writer.writeheader()
  writer.writerows(rows)
  return out.getvalue()
