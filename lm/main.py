"""Train a model.

  python -m lm.main --config=experiments/NAME.py[:ARGS] --workdir=DIR [--config.KEY=VALUE ...]

The config file's get_config(arg) builds the experiment's ml-collections ConfigDict; it is
locked, so a mistyped --config.KEY is an error. Running the same command on the same workdir
resumes from its latest checkpoint.
"""

from lm import runtime

runtime.use_one_cpu_device_per_core()  # Before JAX is imported.

import re  # pylint: disable=g-import-not-at-top,g-bad-import-order

from absl import app, flags, logging  # pylint: disable=g-import-not-at-top
from ml_collections import config_flags  # pylint: disable=g-import-not-at-top

from lm.cli import fail  # pylint: disable=g-import-not-at-top
from lm.errors import UserError  # pylint: disable=g-import-not-at-top

_CONFIG = config_flags.DEFINE_config_file("config",
                                          None,
                                          "Experiment config file[:ARGS].",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None,
                               "Run directory: config, tokenizer, checkpoints, logs.")
flags.mark_flags_as_required(["config", "workdir"])


def parse_flags(argv: list[str]) -> list[str]:
  """absl flag parsing, with config-file and --config.KEY mistakes reported as one line."""
  try:
    rest = flags.FLAGS(argv)
    _CONFIG.value.to_dict()  # A config file that failed to load raises on first use.
    return rest
  except UserError as e:
    fail(str(e))
  except (AttributeError, KeyError) as e:
    overrides = " ".join(a for a in argv[1:] if a.startswith("--config."))
    detail = re.sub(r"(\\n|[\\'\"\s])+", " ", str(e.args[0] if e.args else e)).strip()
    fail(f"unknown config key in {overrides}: {detail}")
  except SyntaxError as e:
    fail(f"{e.filename}, line {e.lineno}: {e.msg} (in the config file)")
  except OSError as e:
    config_arg = next((a for a in argv[1:] if a.startswith("--config=")), "--config")
    fail(f"{config_arg}: cannot load the config file ({str(e).strip().splitlines()[-1].strip()})")
  except (flags.Error, TypeError, ValueError) as e:
    fail(str(e).splitlines()[0] if str(e) else repr(e))
  return []


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    fail(f"unexpected arguments: {' '.join(argv[1:])}")
  logging.set_verbosity(logging.WARNING)
  from lm.training import trainer  # pylint: disable=g-import-not-at-top
  try:
    runtime.initialize_distributed(_CONFIG.value.distributed)
    metrics = trainer.train_and_evaluate(_CONFIG.value, _WORKDIR.value)
  except UserError as e:
    fail(str(e))
  summary = ", ".join(f"{k} {v:.4g}" for k, v in sorted(metrics.items())
                      if k.startswith(("eval/", "best/")) and k.count("/") == 1)
  print(f"Done: {summary}")


if __name__ == "__main__":
  app.run(main, flags_parser=parse_flags)
