"""What scripts/*.py share: config checks, and user errors as `error:` lines with exit 2."""

import sys
from collections.abc import Callable

from absl import app
from absl import logging
import ml_collections

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


def checked_config(argv: list[str], config: ml_collections.ConfigDict | None,
                   example: str) -> ml_collections.ConfigDict:
  """The --config a script was given; usage error without one or with extras.

  Also quiets absl's INFO logging: JAX's backend probing is noise here.
  """
  logging.set_verbosity(logging.WARNING)
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  if config is None:
    raise app.UsageError(f'--config is required, e.g. --config={example}')
  return config
