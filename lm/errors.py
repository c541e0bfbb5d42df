"""The one exception type for user mistakes: printed as a single clear line, never a traceback."""


class UserError(Exception):
  """A problem with what the user handed over: a config key, a data file, a workdir.

  The message must name the offending key, file or line and say what to do. Entry points
  (`lm.main`, `lm.generate`) print it as `error: <message>` and exit with status 2.
  """
