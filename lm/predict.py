"""Predicts with a fine-tuned classifier, tagger or QA reader, as its task does it.

  python -m lm.predict --workdir=DIR --input=FILE --output=FILE [--text_column=text] \\
      [--checkpoint=best] [--batch_size=64]

Classifiers (config.task.kind='classification'): the input is CSV, TSV or JSONL (the text in
--text_column) or plain text (one text per line). The output gets one row per input row (every
line of a plain text file, blank or not), in the same order: the input's columns (an `id`
travels along; a plain text line as `text`), the predicted `label` and `p_<label>` for every
label; an input column named like one of these is carried as `input_<name>`. Its format follows
its extension (.csv, .tsv or .jsonl). A row with an empty text gets an empty prediction and is
counted (--empty_text=error stops at it instead); texts longer than the model's context are cut
to fit and counted. Both counts are printed.

Taggers (config.task.kind='token_classification'): the input is a CoNLL-style file (one token a
line, with or without a tag column) or JSONL (`tokens`, optional `tags`); the output has the
input's format, line for line, with the predicted tag in place of the tag column (or appended).
Where the input has tags, they are scored (entity precision, recall, F1) and the metrics are
printed and written to OUTPUT.metrics.json.

QA readers (config.task.kind='extractive_qa'): the input is SQuAD v1.1 JSON (CMRC 2018's
format) or JSONL (`question`, `context`, optional `id` and `answers`); the output is a .json
object {id: answer}, as the official evaluation scripts read it. Where the input has answers,
exact match and F1 are printed and written to OUTPUT.metrics.json.
"""

from lm import runtime

if __name__ == "__main__":  # Ctrl-C while importing: one line, not a traceback.
  runtime.exit_on_ctrl_c()

runtime.use_default_compilation_cache()  # Before JAX is imported.

from absl import flags, logging  # pylint: disable=g-import-not-at-top,g-bad-import-order

from lm import cli  # pylint: disable=g-import-not-at-top
from lm.data import setting_names  # pylint: disable=g-import-not-at-top
from lm.errors import UserError  # pylint: disable=g-import-not-at-top

_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory of a classifier or tagger.")
_INPUT = flags.DEFINE_string("input", None, "Classifiers: .csv, .tsv, .jsonl or lines of text; "
                             "taggers: a CoNLL-style or .jsonl token file; QA readers: SQuAD "
                             ".json or .jsonl questions.")
_OUTPUT = flags.DEFINE_string("output", None, "Where to write the predictions (classifiers: "
                              ".csv/.tsv/.jsonl; taggers: the input's format; QA readers: "
                              ".json).")
_TEXT_COLUMN = flags.DEFINE_string("text_column", "text", "Column or JSONL key of the text.")
_CHECKPOINT = flags.DEFINE_string("checkpoint", "best", "'best', 'latest' or a step number.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 64, "Texts per forward pass.")
_TEXT_PAIR_COLUMN = flags.DEFINE_string(
    "text_pair_column", "", "Classifiers of sentence pairs: the column/key of the second text "
    "('' = the run's config.data.text_pair_field).")
_EMPTY_TEXT = flags.DEFINE_enum(
    "empty_text", "predict", ["predict", "error"], "Classifiers: a row whose text is empty gets "
    "an empty prediction (and is counted), or stops with an error naming its line.")
_ENCODING_ERRORS = flags.DEFINE_enum(
    "encoding_errors", "strict", ["strict", "replace"], "Bytes that are not UTF-8 in the input: "
    "an error naming the line, or replaced by U+FFFD.")
_LABEL_COLUMN = flags.DEFINE_string(
    "label_column", "", "Optional: the column/key of true labels; then prints accuracy, F1 "
    "and the rest, and writes them to OUTPUT.metrics.json.")

# What the readers' errors name (config.data.KEY in training): this command's flags.
_FLAG_NAMES = dict(text_field="--text_column", text_pair_field="--text_pair_column",
                   label_field="--label_column", encoding_errors="--encoding_errors")


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
  """Writes the predictions of the run in `workdir` for `input_path` to `output_path`, as its
  task does them (`base.Task.predict_file`); returns the metrics against labels found in the
  input, else {}."""
  from lm.tasks import registry  # pylint: disable=g-import-not-at-top  # After flag checks.
  from lm.training import checkpoints  # pylint: disable=g-import-not-at-top

  if batch_size < 1:
    raise UserError(f"--batch_size={batch_size}: must be >= 1")
  config = checkpoints.load_config(workdir)
  if config is None:
    raise UserError(f"--workdir={workdir}: no config.json; is this a training run directory?")
  options = dict(text_column=text_column, checkpoint=checkpoint, batch_size=batch_size,
                 label_column=label_column, text_pair_column=text_pair_column,
                 empty_text=empty_text, encoding_errors=encoding_errors)
  task = registry.task_class(config["task"]["kind"])
  with setting_names.named(**_FLAG_NAMES):
    return task.predict_file(workdir, input_path, output_path, options)


def main(argv: list[str]) -> None:
  try:
    cli.check_arguments(argv, _WORKDIR, _INPUT, _OUTPUT)
    logging.set_verbosity(logging.WARNING)
    metrics = predict_file(_WORKDIR.value,
                           _INPUT.value,
                           _OUTPUT.value,
                           text_column=_TEXT_COLUMN.value,
                           checkpoint=_CHECKPOINT.value,
                           batch_size=_BATCH_SIZE.value,
                           label_column=_LABEL_COLUMN.value,
                           text_pair_column=_TEXT_PAIR_COLUMN.value,
                           empty_text=_EMPTY_TEXT.value,
                           encoding_errors=_ENCODING_ERRORS.value)
  except UserError as e:
    cli.fail(str(e))
  print(f"Wrote predictions to {_OUTPUT.value}")
  if metrics:
    print(", ".join(f"{k} {v:.4f}" for k, v in metrics.items() if k.count("/") == 1))


def run() -> None:
  """The console command (pyproject.toml [project.scripts])."""
  cli.run(main)


if __name__ == "__main__":
  run()
