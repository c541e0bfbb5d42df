"""The Lead-n summarization baseline: the first n lines (utterances) of each document, scored
with ROUGE against its reference summary (`generation_metrics.lead_n`, `rouge`).

  python -m lm.evaluation.lead_baseline --input=../shared/data/samsum/val.json \\
      --source_field=dialogue --target_field=summary --n=3

Reads the formats lm.predict reads (.json list, .jsonl, .csv, .tsv); prints ROUGE-1/2/L/Lsum.
"""

from absl import flags

from lm import cli
from lm.errors import UserError

_INPUT = flags.DEFINE_string("input", None, "Documents with reference summaries.")
_SOURCE_FIELD = flags.DEFINE_string("source_field", "dialogue", "Key / column of the document.")
_TARGET_FIELD = flags.DEFINE_string("target_field", "summary", "Key / column of the summary.")
_N = flags.DEFINE_integer("n", 3, "Lines (utterances) of each document taken as its summary.")


def lead_scores(path: str, source_field: str, target_field: str, n: int) -> dict[str, float]:
  """ROUGE of the Lead-n summaries of `path`'s documents."""
  from lm.data import reader  # pylint: disable=g-import-not-at-top
  from lm.evaluation import generation_metrics  # pylint: disable=g-import-not-at-top
  records = reader.read_records(path,
                                fields={"source": source_field, "target": target_field},
                                required=("source", "target"),
                                config_key="--input")
  leads = [generation_metrics.lead_n(r.values["source"], n) for r in records]
  return generation_metrics.rouge(leads, [r.values["target"] for r in records])


def main(argv: list[str]) -> None:
  try:
    if len(argv) > 1 or not _INPUT.value:
      raise UserError("give the documents with --input=FILE (and no other arguments)")
    scores = lead_scores(_INPUT.value, _SOURCE_FIELD.value, _TARGET_FIELD.value, _N.value)
  except UserError as e:
    cli.fail(str(e))
  print(f"Lead-{_N.value} on {_INPUT.value}: " +
        ", ".join(f"{name} {value:.2f}" for name, value in scores.items()))


if __name__ == "__main__":
  cli.run(main)
