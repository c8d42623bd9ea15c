"""What scripts/*.py share: user errors as one `error:` line and exit status 2."""

import sys
from collections.abc import Callable

from absl import app

from nst_jax import saved_config
from nst_jax.errors import UserError


def exit_with_user_error(error: UserError) -> None:
  """Prints each line of the message as `error: ...` on stderr; exits 2."""
  print(f'error: {error}'.replace('\n', '\nerror: '), file=sys.stderr)
  sys.exit(2)


def run(main: Callable[[list[str]], None]) -> None:
  """absl's app.run, after `--config=<PNG or config.json>` is rewritten."""
  try:
    sys.argv = saved_config.rewrite_argv(sys.argv)
  except UserError as e:
    exit_with_user_error(e)
  app.run(main)
