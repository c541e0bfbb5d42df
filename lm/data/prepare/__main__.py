"""Prepare a corpus: clean, filter, deduplicate, tokenize, report.

  python -m lm.data.prepare --config=experiments/data/NAME.py[:ARGS] --workdir=DIR \
      [--processes=N] [--num_shards=S] [--runner=local|beam [--beam_options='...']] \
      [--config.KEY=VALUE ...]

Running the same command again resumes: finished stages and shards are skipped. Past one
machine, `--runner=beam` runs the same stages on Apache Beam (docs/data_prepare.md: Dataflow,
Flink, Spark). Train on the result with `python -m lm.main ... --config.data.prepared=DIR`.
"""

from lm import runtime

if __name__ == "__main__":  # Ctrl-C while importing: one line, not a traceback.
  runtime.exit_on_ctrl_c()

import functools
import sys

from absl import flags
from ml_collections import config_flags

from lm import cli, config_file
from lm.cli import fail
from lm.errors import UserError

_CONFIG = config_flags.DEFINE_config_file("config", None, "Prepare config file[:ARGS].",
                                          lock_config=True)
flags.FLAGS["config"].parser = config_file.ConfigFileParser()
_WORKDIR = flags.DEFINE_string("workdir", None, "Output directory (resumable).")
_PROCESSES = flags.DEFINE_integer("processes", 1,
                                   "Worker processes (local) or DirectRunner workers (beam).")
_NUM_SHARDS = flags.DEFINE_integer("num_shards", 0,
                                   "Slices of the input (default: --processes); fixed by the"
                                   " first run of a workdir.")
_RUNNER = flags.DEFINE_enum("runner", "local", ["local", "beam"],
                            "local: processes on this machine; beam: Apache Beam.")
_BEAM_OPTIONS = flags.DEFINE_string("beam_options", "",
                                    "Beam pipeline options, e.g. '--runner=DataflowRunner"
                                    " --project=P --region=R --temp_location=gs://B/tmp'.")
# Removed (the Beam runner replaces them); kept only to say so in one line.
_REMOVED = {name: flags.DEFINE_string(name, None, "Removed: see --runner=beam.")
            for name in ("num_processes", "process_index")}
flags.mark_flags_as_required(["config", "workdir"])


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    fail(f"unexpected arguments: {' '.join(argv[1:])}")
  for name, flag in _REMOVED.items():
    if flag.value is not None:
      fail(f"--{name} was removed: --num_shards=N sets the slices of the input, and"
           " --runner=beam spreads every stage over machines (docs/data_prepare.md, 'Migrating"
           " from --num_processes')")
  from lm.data.prepare import run  # pylint: disable=g-import-not-at-top
  try:
    stats = run.prepare(_CONFIG.value, _WORKDIR.value, processes=_PROCESSES.value,
                        num_shards=_NUM_SHARDS.value, runner=_RUNNER.value,
                        beam_options=_BEAM_OPTIONS.value)
  except UserError as e:
    fail(str(e))
  counts = stats["stats"]["counts"]
  print(f"Done: {counts.get('documents_in', 0):,} documents read, "
        f"{counts.get('train_documents', 0):,} train / {counts.get('valid_documents', 0):,} valid"
        f" written ({counts.get('train_tokens', 0):,} / {counts.get('valid_tokens', 0):,} tokens);"
        f" report: {_WORKDIR.value}/report.md", file=sys.stdout)


def run() -> None:
  """The console command (pyproject.toml [project.scripts])."""
  cli.run(main, flags_parser=functools.partial(cli.parse_config_flags, config_flag=_CONFIG))


if __name__ == "__main__":
  run()
