"""Train a model.

  python -m lm.main --config=experiments/NAME.py[:ARGS] --workdir=DIR [--config.KEY=VALUE ...]

The config file's get_config(arg) builds the experiment's ml-collections ConfigDict; it is
locked, so a mistyped --config.KEY is an error. Running the same command on the same workdir
resumes from its latest checkpoint. SIGTERM or Ctrl-C saves a checkpoint at the current step
and exits with status 128 + the signal (143 or 130); a user mistake exits with status 2.
"""

from lm import runtime

if __name__ == "__main__":  # Ctrl-C while importing: one line, not a traceback.
  runtime.exit_on_ctrl_c()

runtime.use_one_cpu_device_per_core()  # Before JAX is imported.
runtime.use_default_compilation_cache()

import functools  # pylint: disable=g-import-not-at-top,g-bad-import-order
import sys  # pylint: disable=g-import-not-at-top,g-bad-import-order

from absl import flags, logging  # pylint: disable=g-import-not-at-top
from ml_collections import config_flags  # pylint: disable=g-import-not-at-top

from lm import cli, config_file  # pylint: disable=g-import-not-at-top
from lm.cli import fail  # pylint: disable=g-import-not-at-top
from lm.errors import UserError  # pylint: disable=g-import-not-at-top

_CONFIG = config_flags.DEFINE_config_file("config",
                                          None,
                                          "Experiment config file[:ARGS].",
                                          lock_config=True)
flags.FLAGS["config"].parser = config_file.ConfigFileParser()  # Clear load errors.
_WORKDIR = flags.DEFINE_string("workdir", None,
                               "Run directory: config, tokenizer, checkpoints, logs.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    fail(f"unexpected arguments: {' '.join(argv[1:])}")
  logging.set_verbosity(logging.WARNING)
  from lm import config_checks  # pylint: disable=g-import-not-at-top
  from lm.training import preemption, trainer  # pylint: disable=g-import-not-at-top
  try:
    config_checks.validate_config(_CONFIG.value)  # Before initialize_distributed reads it.
    runtime.initialize_distributed(_CONFIG.value.distributed)
    metrics = trainer.train_and_evaluate(_CONFIG.value, _WORKDIR.value)
  except UserError as e:
    fail(str(e))
  except preemption.Preempted as e:  # Checkpoint saved: 128 + signal, as if killed by it.
    print(f"Stopped: {e}", file=sys.stderr)
    sys.exit(128 + e.signum)
  summary = ", ".join(f"{k} {v:.4g}" for k, v in sorted(metrics.items())
                      if k.startswith(("eval/", "best/")) and k.count("/") == 1)
  print(f"Done: {summary}")


def run() -> None:
  """The console command (pyproject.toml [project.scripts])."""
  cli.run(main, flags_parser=functools.partial(cli.parse_config_flags, config_flag=_CONFIG))


if __name__ == "__main__":
  run()
