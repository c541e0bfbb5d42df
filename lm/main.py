"""Train a model: python -m lm.main --config=experiments/NAME.py[:ARGS] --workdir=DIR [--config.KEY=VALUE ...]

The config file's get_config(arg) builds the experiment's ml-collections ConfigDict; it is
locked, so a mistyped --config.KEY is an error. Running the same command on the same workdir
resumes from its latest checkpoint.
"""

from lm import runtime

runtime.use_one_cpu_device_per_core()  # Before JAX is imported.

import sys  # pylint: disable=g-import-not-at-top,g-bad-import-order

from absl import app, flags, logging  # pylint: disable=g-import-not-at-top
from ml_collections import config_flags  # pylint: disable=g-import-not-at-top

from lm.errors import UserError  # pylint: disable=g-import-not-at-top

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file[:ARGS].",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory: config, tokenizer, checkpoints, logs.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  logging.set_verbosity(logging.WARNING)
  from lm.training import trainer  # pylint: disable=g-import-not-at-top
  try:
    metrics = trainer.train_and_evaluate(_CONFIG.value, _WORKDIR.value)
  except UserError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  summary = ", ".join(f"{k} {v:.4g}" for k, v in sorted(metrics.items()) if k.startswith("eval/"))
  print(f"Done: {summary}")


if __name__ == "__main__":
  app.run(main)
