"""lm.predict for classifiers: a label and the probability of every label per input row."""

import csv
import functools
import io
import json
import os

from lm.errors import UserError

OUTPUT_FORMATS = (".csv", ".tsv", ".jsonl")


def predict_file(workdir: str,
                 input_path: str,
                 output_path: str,
                 *,
                 text_column: str = "text",
                 checkpoint: str = "best",
                 batch_size: int = 64,
                 label_column: str = "",
                 text_pair_column: str = "") -> dict[str, float]:
  """Writes the predictions for `input_path` to `output_path`; with `label_column`, returns
  (and writes beside the output) the metrics against those labels, else {}. A classifier of
  sentence pairs reads the second text from `text_pair_column` ('' = the column it trained
  on, config.data.text_pair_field)."""
  import jax  # pylint: disable=g-import-not-at-top  # Heavy imports after flag checks.
  from lm.data import atomic, buckets, examples, records  # pylint: disable=g-import-not-at-top
  from lm.models.transformer import Transformer  # pylint: disable=g-import-not-at-top
  from lm.tasks import classification, supervised  # pylint: disable=g-import-not-at-top
  from lm.training import checkpoints, steps  # pylint: disable=g-import-not-at-top

  extension = os.path.splitext(output_path)[1].lower()
  if extension not in OUTPUT_FORMATS:
    raise UserError(f"--output={output_path}: name a {', '.join(OUTPUT_FORMATS)} file")
  config = checkpoints.load_config(workdir)  # lm.predict checked it exists, and batch_size.
  labels = classification.load_labels(workdir)
  model_cfg, params, tokenizer = checkpoints.load_for_inference(workdir, checkpoint)
  fields = {"text": text_column, **({"label": label_column} if label_column else {})}
  text_pair_column = text_pair_column or config["data"].get("text_pair_field", "")
  if text_pair_column:
    fields["text_pair"] = text_pair_column
  found = records.read_records(input_path,
                               fields=fields,
                               config_key="--input",
                               required=tuple(fields))
  texts = [{k: r.values[k] for k in ("text", "text_pair") if k in r.values}
           for r in found]  # Written out as given.
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
      **text,
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
