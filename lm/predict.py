"""Classifies new text with a fine-tuned classifier.

  python -m lm.predict --workdir=DIR --input=FILE --output=FILE [--text_column=text] \\
      [--checkpoint=best] [--batch_size=64]

The input is CSV, TSV or JSONL (the text in --text_column) or plain text (one text per line).
The output gets one row per input row, in the same order: the text, the predicted label and
the probability of every label; its format follows its extension (.csv, .tsv or .jsonl).
"""

import csv
import functools
import io
import json
import os

from absl import app, flags, logging

from lm import cli
from lm.errors import UserError

_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory of a fine-tuned classifier.")
_INPUT = flags.DEFINE_string("input", None, "Texts to classify: .csv, .tsv, .jsonl or lines.")
_OUTPUT = flags.DEFINE_string("output", None, "Where to write the predictions (.csv/.tsv/.jsonl).")
_TEXT_COLUMN = flags.DEFINE_string("text_column", "text", "Column or JSONL key of the text.")
_CHECKPOINT = flags.DEFINE_string("checkpoint", "best", "'best', 'latest' or a step number.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 64, "Texts per forward pass.")
_LABEL_COLUMN = flags.DEFINE_string(
    "label_column", "", "Optional: the column/key of true labels; then prints accuracy, F1 "
    "and the rest, and writes them to OUTPUT.metrics.json.")

OUTPUT_FORMATS = (".csv", ".tsv", ".jsonl")


def predict_file(workdir: str,
                 input_path: str,
                 output_path: str,
                 *,
                 text_column: str = "text",
                 checkpoint: str = "best",
                 batch_size: int = 64,
                 label_column: str = "") -> dict[str, float]:
  """Writes the predictions for `input_path` to `output_path`; with `label_column`, returns
  (and writes beside the output) the metrics against those labels, else {}."""
  import jax  # pylint: disable=g-import-not-at-top  # Heavy imports after flag checks.
  from lm.data import atomic, buckets, examples, records  # pylint: disable=g-import-not-at-top
  from lm.models.transformer import Transformer  # pylint: disable=g-import-not-at-top
  from lm.tasks import classification, supervised  # pylint: disable=g-import-not-at-top
  from lm.training import checkpoints, steps  # pylint: disable=g-import-not-at-top

  extension = os.path.splitext(output_path)[1].lower()
  if extension not in OUTPUT_FORMATS:
    raise UserError(f"--output={output_path}: name a {', '.join(OUTPUT_FORMATS)} file")
  if batch_size < 1:
    raise UserError(f"--batch_size={batch_size}: must be >= 1")
  config = checkpoints.load_config(workdir)
  if config is None:
    raise UserError(f"--workdir={workdir}: no config.json; is this a training run directory?")
  labels = classification.load_labels(workdir)
  model_cfg, params, tokenizer = checkpoints.load_for_inference(workdir, checkpoint)
  if not model_cfg.num_classes:
    raise UserError(f"--workdir={workdir}: the model there is a language model, not a classifier")
  fields = {"text": text_column, **({"label": label_column} if label_column else {})}
  found = records.read_records(input_path,
                               fields=fields,
                               config_key="--input",
                               required=tuple(fields))
  texts = [r.values["text"] for r in found]  # Written out as given.
  found = supervised.as_trained(found, config["data"].get("clean", ""),
                                config["data"].get("lowercase", False))
  data = examples.classification_examples(found,
                                          tokenizer,
                                          labels if label_column else None,
                                          max_len=model_cfg.max_len,
                                          causal=model_cfg.causal)
  forward = jax.jit(functools.partial(steps.predict_step, apply_fn=Transformer(model_cfg).apply))
  probs_NxC = classification.predict_probs(lambda batch: forward(params, batch), data, batch_size,
                                           buckets.bucket_lengths(model_cfg.max_len))
  names = labels.names
  rows = [{
      "text": text,
      "label": names[int(p.argmax())],
      **{
          f"p_{name}": float(p[c]) for c, name in enumerate(names)
      }
  } for text, p in zip(texts, probs_NxC)]
  atomic.atomic_write_text(output_path, _format(rows, extension))
  if not label_column:
    return {}
  from lm.evaluation import classification_metrics as cm  # pylint: disable=g-import-not-at-top
  metrics = cm.classification_metrics(data.labels, probs_NxC, names)
  confusion = cm.confusion_matrix(data.labels, probs_NxC.argmax(-1), len(names))
  cm.write_eval_report(output_path + ".metrics.json",
                       metrics,
                       confusion,
                       names,
                       extra={
                           "input": os.path.abspath(input_path),
                           "checkpoint": checkpoint
                       })
  return metrics


def _format(rows: list[dict], extension: str) -> str:
  if extension == ".jsonl":
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
  out = io.StringIO()
  writer = csv.DictWriter(out,
                          fieldnames=list(rows[0]),
                          delimiter="\t" if extension == ".tsv" else ",",
                          lineterminator="\n",
                          quoting=csv.QUOTE_MINIMAL)
  writer.writeheader()
  writer.writerows(rows)
  return out.getvalue()


def main(argv: list[str]) -> None:
  try:
    if len(argv) > 1:
      raise UserError(f"unexpected arguments: {' '.join(argv[1:])}")
    for flag in (_WORKDIR, _INPUT, _OUTPUT):
      if not flag.value:
        raise UserError(f"--{flag.name} is required")
    logging.set_verbosity(logging.WARNING)
    metrics = predict_file(_WORKDIR.value,
                           _INPUT.value,
                           _OUTPUT.value,
                           text_column=_TEXT_COLUMN.value,
                           checkpoint=_CHECKPOINT.value,
                           batch_size=_BATCH_SIZE.value,
                           label_column=_LABEL_COLUMN.value)
  except UserError as e:
    cli.fail(str(e))
  print(f"Wrote predictions to {_OUTPUT.value}")
  if metrics:
    print(", ".join(f"{k} {v:.4f}" for k, v in metrics.items() if k.count("/") == 1))


if __name__ == "__main__":
  app.run(main, flags_parser=cli.parse_flags)
