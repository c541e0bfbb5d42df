"""What the command-line entry points share: user mistakes end as one `error:` line (exit 2),
Ctrl-C as one `Interrupted` line (exit 130), and no INFO chatter from the libraries."""

import gc
import os
import re
import signal
import sys
from typing import Callable

from absl import app, flags, logging

from lm import config_file, runtime
from lm.errors import UserError


def fail(message: str) -> None:
  """Reports a user mistake in one line, without a traceback, and exits with status 2."""
  print(f"error: {message}", file=sys.stderr)
  sys.exit(2)


def run(main: Callable[[list[str]], None],
        flags_parser: Callable[[list[str]], list[str]] | None = None) -> None:
  """`absl.app.run(main)` for every `python -m lm.*` command: logging at WARNING (absl's
  default, INFO, prints JAX's "Unable to initialize backend 'tpu'" on every machine without
  one), and Ctrl-C during start-up or work ends with one line and status 130, not a traceback
  (a closed pipe, `| head`, ends silently).
  (Training saves a checkpoint on Ctrl-C itself: lm.main handles SIGINT during its steps.)"""

  def guarded(argv: list[str]) -> None:
    logging.set_verbosity(logging.WARNING)
    runtime.install_interrupt_handler()
    interrupted = False
    try:
      main(argv)
    except KeyboardInterrupt:
      interrupted = True
    except BrokenPipeError:  # `... | head`: the reader left; stop as `cat` would, silently.
      os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # No error at exit.
      sys.exit(128 + signal.SIGPIPE)
    if interrupted:  # Here the interrupted frames are gone: their objects can be finalized.
      gc.collect()  # E.g. a process pool's semaphores (else the resource tracker warns).
      print(runtime.INTERRUPTED_MESSAGE, file=sys.stderr, flush=True)
      sys.stdout.flush()
      # Without the interpreter's shutdown: interrupted in the middle of JAX's start-up, it
      # can crash there (seen once: a segfault after this line).
      os._exit(128 + signal.SIGINT)  # pylint: disable=protected-access

  app.run(guarded, flags_parser=flags_parser or parse_flags)


def check_arguments(argv: list[str], *required: flags.FlagHolder) -> None:
  """UserError for positional arguments after the command, or a `required` flag left empty."""
  if len(argv) > 1:
    raise UserError(f"unexpected arguments: {' '.join(argv[1:])}")
  for flag in required:
    if not flag.value:
      raise UserError(f"--{flag.name} is required")


def define_sampling_flags() -> dict[str, flags.FlagHolder]:
  """The sampling flags that `lm.generate` and `lm.chat` share, by option name."""
  return dict(
      max_new_tokens=flags.DEFINE_integer("max_new_tokens", 200, "Tokens generated per prompt."),
      temperature=flags.DEFINE_float("temperature", 0.8, "Softmax temperature; 0 is greedy."),
      top_k=flags.DEFINE_integer("top_k", 0, "Sample among the k most likely tokens; 0: all."),
      top_p=flags.DEFINE_float("top_p", 1.0, "Nucleus sampling mass; 1: all tokens."),
      seed=flags.DEFINE_integer("seed", 0, "Random seed of the sampler."))


def parse_flags(argv: list[str]) -> list[str]:
  """absl flag parsing; a bad flag is reported like any user mistake (absl would print "FATAL
  Flags parsing error" and exit 1)."""
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    fail(str(e))
  return []


def parse_config_flags(argv: list[str], *, config_flag: flags.FlagHolder) -> list[str]:
  """`parse_flags` for a command with an ml-collections --config file (`config_flag`): a file
  that fails to load, an unknown --config.KEY or a bad value is one `error:` line."""
  try:
    return flags.FLAGS(argv)
  except UserError as e:
    fail(str(e))
  except (AttributeError, KeyError) as e:
    fail(_unknown_key_error(argv, str(e.args[0] if e.args else e)))
  except (flags.Error, TypeError, ValueError) as e:
    fail(config_file.override_error(str(e) or repr(e), config_flag.value))
  return []


def _unknown_key_error(argv: list[str], detail: str) -> str:
  """'unknown config key in --config.train.stpes=4: stpes (did you mean steps?)': the one
  override that names the unknown part, from ml_collections' message `detail`."""
  detail = re.sub(r"(\\n|[\\'\"\s])+", " ", detail).strip()
  unknown = re.search(r"(?:Key )?(\S+)", detail).group(1) if detail else ""
  suggestion = re.search(r"Did you mean (\S+) instead", detail)
  overrides = [a for a in argv[1:] if a.startswith("--config.")]
  named = [a for a in overrides if unknown in a.split("=", 1)[0].split(".")[1:]]
  hint = f" (did you mean {suggestion.group(1)}?)" if suggestion else ""
  return f"unknown config key in {(named or overrides or ['--config'])[0]}: {unknown}{hint}"
