"""Prepare a corpus: clean, filter, deduplicate, tokenize, report.

  python -m lm.data.prepare --config=experiments/data/NAME.py[:ARGS] --workdir=DIR \
      [--processes=N] [--config.KEY=VALUE ...]

Running the same command again resumes: finished stages and shards are skipped. On several
machines sharing DIR: `--num_processes=N --process_index=i` on each (the clean stage of slice
i), then once with `--num_processes=N` alone to finish. Train on the result with
`python -m lm.main ... --config.data.prepared=DIR`.
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
_PROCESSES = flags.DEFINE_integer("processes", 1, "Local worker processes.")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", 0,
                                      "Slices of the input (default: --processes).")
_PROCESS_INDEX = flags.DEFINE_integer("process_index", -1,
                                      "Run only this slice's clean stage (-1: everything).")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    fail(f"unexpected arguments: {' '.join(argv[1:])}")
  from lm.data.prepare import run  # pylint: disable=g-import-not-at-top
  try:
    stats = run.prepare(_CONFIG.value, _WORKDIR.value, processes=_PROCESSES.value,
                        num_shards=_NUM_PROCESSES.value, shard_index=_PROCESS_INDEX.value)
  except UserError as e:
    fail(str(e))
  if stats is None:
    print(f"Done: slice {_PROCESS_INDEX.value} cleaned; finish with --num_processes alone.")
    return
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
