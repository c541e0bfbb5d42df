"""Scores candidate continuations of contexts with a trained language model (`lm.scoring`).

  python -m lm.score --workdir=DIR --input=items.jsonl --output=scores.jsonl \\
      [--checkpoint=latest] [--batch_size=32] [--noshare_prefix] [--best_by=sum]

The input is JSONL, one item a line: `context` (a string), `candidates` (a non-empty list of
strings) and, optionally, `id` and `label` (the right candidate: its text or its index). The
output has one line per item, in order: the `id` and `label` given, `candidates` (each with its
`text`, `logprob_sum` and `logprob_mean` in nats, and `tokens`), `best` (the text of the
candidate with the highest --best_by score) and `context_truncated` (the context did not fit
with a candidate: see `lm.scoring.Score.truncated`). With labels, the accuracy of `best` is
printed. A candidate is scored as written: ' great' (with its space) after 'It was', as in
running text. Nothing is written on an error.
"""

from lm import runtime

if __name__ == "__main__":  # Ctrl-C while importing: one line, not a traceback.
  runtime.exit_on_ctrl_c()

# As in lm.generate, so that a checkpoint restores onto the device layout it was trained on.
runtime.use_one_cpu_device_per_core()  # Before JAX is imported.
runtime.use_default_compilation_cache()

from absl import flags, logging  # pylint: disable=g-import-not-at-top

from lm import cli  # pylint: disable=g-import-not-at-top
from lm.errors import UserError  # pylint: disable=g-import-not-at-top

_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory of a decoder or encoder–decoder.")
_INPUT = flags.DEFINE_string("input", None, "JSONL items: context, candidates[, id, label].")
_OUTPUT = flags.DEFINE_string("output", None, "Where the scores go (JSONL, one line per item).")
_CHECKPOINT = flags.DEFINE_string("checkpoint", "latest", "'latest', 'best' or a step number.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 32, "Candidates per forward pass.")
_SHARE_PREFIX = flags.DEFINE_boolean(
    "share_prefix", True, "Run the context of an item with several candidates once, through "
    "the KV cache, for all of them (same scores; --noshare_prefix batches whole sequences).")
_BEST_BY = flags.DEFINE_enum("best_by", "sum", ["sum", "mean"],
                             "`best`: the highest logprob_sum or logprob_mean.")


def main(argv: list[str]) -> None:
  try:
    cli.check_arguments(argv, _WORKDIR, _INPUT, _OUTPUT)
    logging.set_verbosity(logging.WARNING)  # Orbax logs every restore step at INFO.
    from lm.score_files import score_file  # pylint: disable=g-import-not-at-top  # Loads JAX.
    summary = score_file(_WORKDIR.value, _INPUT.value, _OUTPUT.value,
                         checkpoint=_CHECKPOINT.value, batch_size=_BATCH_SIZE.value,
                         share_prefix=_SHARE_PREFIX.value, best_by=_BEST_BY.value)
  except UserError as e:
    cli.fail(str(e))
  print(f"Wrote the scores of {summary['items']:,} items to {_OUTPUT.value}")
  if summary["truncated"]:
    print(f"note: {summary['truncated']:,} contexts did not fit the model's context with their "
          f"candidates (context_truncated in the output)")
  if "accuracy" in summary:
    print(f"accuracy of best ({_BEST_BY.value}) {summary['accuracy']:.4f} over "
          f"{summary['labeled']:,} labeled items")


def run() -> None:
  """The console command (pyproject.toml [project.scripts])."""
  cli.run(main)


if __name__ == "__main__":
  run()
