"""The one exception type for mistakes a user can fix.

Every check on user input (config values, images, weights files, the workdir)
raises `UserError` with a one-line message that names the bad value and the fix.
`scripts/*.py` print that line and exit with status 2 instead of a traceback.
"""


class UserError(ValueError):
  """A bad input named in one line, with what to do about it."""
