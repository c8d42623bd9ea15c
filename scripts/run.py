r"""Stylise a photo with a painting.

  python scripts/run.py --config=configs/starry.py
  python scripts/run.py --config=configs/starry.py:quick --workdir=outputs/quick
  python scripts/run.py --config=configs/starry.py --config.style_weight=1e3
  python scripts/run.py --config=outputs/quick/final.png   # make it again
  python scripts/run.py --config=outputs/quick/config.json --config.image_size=512

A PNG or config.json written by run.py or sweep.py stands for the config that
made it (see nst_jax/saved_config.py).
"""

import sys

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from nst_jax import cli
from nst_jax import transfer
from nst_jax.errors import UserError

_CONFIG = config_flags.DEFINE_config_file(
    'config', None, 'A config file (configs/*.py[:variant]), or a PNG or '
    'config.json that a run wrote.', lock_config=True)
_WORKDIR = flags.DEFINE_string(
    'workdir', None, 'Where outputs go; default outputs/<content>-<style>-<time>.')


def main(argv):
  logging.set_verbosity(logging.WARNING)  # JAX's backend probing is noise here
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  config = _CONFIG.value
  if config is None:
    raise app.UsageError('--config is required, e.g. --config=configs/starry.py')
  try:
    result = transfer.run(config, _WORKDIR.value)
  except UserError as e:
    cli.exit_with_user_error(e)
  except transfer.Interrupted as e:
    print(e, file=sys.stderr)
    sys.exit(130)
  if result['status'] == 'diverged':
    sys.exit(3)


if __name__ == '__main__':
  cli.run(main)
