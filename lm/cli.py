"""What the command-line entry points share: user mistakes end as one `error:` line, exit 2."""

import sys

from absl import flags


def fail(message: str) -> None:
  """Reports a user mistake in one line, without a traceback, and exits with status 2."""
  print(f"error: {message}", file=sys.stderr)
  sys.exit(2)


def parse_flags(argv: list[str]) -> list[str]:
  """absl flag parsing; a bad flag is reported like any user mistake (absl would print "FATAL
  Flags parsing error" and exit 1)."""
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    fail(str(e))
  return []
