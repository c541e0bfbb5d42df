"""Loading the experiment file of `--config=PATH[:ARG]`, every failure as one UserError.

ml_collections' own parser lets an exception raised by the file escape as a traceback, or
rewraps it without its cause; this one names the file, the line and the exception.
"""

import importlib.machinery
import importlib.util
import os
import re
import sys
import traceback
from typing import Any

import ml_collections
from absl import flags

from lm.errors import UserError

_MODULE_NAME = "config_config"  # The name ml_collections gives the module of --config.
# absl's message for an override its parser rejects: `flag --config.KEY=VALUE: <why>`.
_BAD_OVERRIDE = re.compile(r"^flag (--config\.([\w.]+)=.*?): ", re.DOTALL)
_KINDS = {bool: "True or False", int: "an integer", float: "a number", str: "a string"}


class ConfigFileParser(flags.ArgumentParser):
  """For the flag of `config_flags.DEFINE_config_file(lock_config=True)`: `load`, then lock."""

  def parse(self, argument: str) -> ml_collections.ConfigDict:
    config = load(argument)
    config.lock()
    return config

  def flag_type(self) -> str:
    return "config object"


def load(argument: str) -> ml_collections.ConfigDict:
  """`get_config(ARG)` (or `get_config()` without `:ARG`) of the file PATH."""
  path = argument.partition(":")[0]
  config = call(argument, "get_config")
  if not isinstance(config, ml_collections.ConfigDict):
    raise UserError(f"--config={path}: get_config() returned {type(config).__name__}, not an "
                    f"ml_collections.ConfigDict (start from lm.defaults.base_config())")
  return config


def call(argument: str, function: str) -> Any:
  """`function(ARG)` (or `function()` without `:ARG`) of the file PATH of `argument`, PATH[:ARG]
  (get_config, or lm.sweep's sweep)."""
  path, has_arg, arg = argument.partition(":")
  if not path.strip():
    raise UserError("--config is empty: name an experiment file, e.g. "
                    "--config=experiments/shakespeare_char.py")
  if os.path.isdir(path):
    raise UserError(f"--config={path}: is a directory; name an experiment file in it")
  if not os.path.isfile(path):
    raise UserError(f"--config={path}: no such file")
  module = _import(path)
  fn = getattr(module, function, None)
  if not callable(fn):
    raise UserError(f"--config={path}: the file defines no {function}() function")
  try:
    return fn(arg) if has_arg else fn()
  except UserError:
    raise
  except Exception as e:  # pylint: disable=broad-except  # Any bug in the user's file.
    raise _failure(e, path, f"{function}()") from None


def _import(path: str):
  loader = importlib.machinery.SourceFileLoader(_MODULE_NAME, path)
  module = importlib.util.module_from_spec(importlib.util.spec_from_loader(_MODULE_NAME, loader))
  sys.modules[_MODULE_NAME] = module
  try:
    loader.exec_module(module)
  except SyntaxError as e:
    same = not e.filename or os.path.abspath(e.filename) == os.path.abspath(path)
    where = f"--config={path}" if same else f"--config={path}: {e.filename}"
    raise UserError(f"{where}, line {e.lineno}: {e.msg}") from None
  except UserError:
    raise
  except OSError as e:
    raise UserError(f"--config={path}: cannot read it ({e.strerror or e})") from None
  except Exception as e:  # pylint: disable=broad-except  # Any bug in the user's file.
    raise _failure(e, path, "loading it") from None
  return module


def _failure(error: Exception, path: str, what: str) -> UserError:
  """`path, line N: what raised Type: message`, N being the last line of `path` involved."""
  frames = [f for f in traceback.extract_tb(error.__traceback__)
            if os.path.abspath(f.filename) == os.path.abspath(path)]
  line = f", line {frames[-1].lineno}" if frames else ""
  message = " ".join(str(error).split())
  return UserError(f"--config={path}{line}: {what} raised {type(error).__name__}"
                   f"{': ' + message if message else ''}")


def override_error(message: str, config: Any) -> str:
  """absl's error for a `--config.KEY=VALUE` of the wrong type as one line naming the type."""
  match = _BAD_OVERRIDE.match(message)
  lines = message.strip().splitlines() or [message]
  if not match or config is None:
    return lines[0]
  value = config
  for part in match.group(2).split("."):
    value = value.get(part) if hasattr(value, "get") else None
  kind = _KINDS.get(type(value))
  if kind is None:
    return lines[0]
  return f"{match.group(1)}: must be {kind} (currently {value!r})"
