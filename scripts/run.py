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

from absl import flags

from nst_jax import cli
from nst_jax import transfer

_WORKDIR = flags.DEFINE_string(
    'workdir', None, 'Where outputs go; default outputs/<content>-<style>-<time>.')


def main(argv):
  config = cli.checked_config(argv, 'configs/starry.py')
  result = cli.call(transfer.run, config, _WORKDIR.value)
  if result['status'] == 'diverged':
    sys.exit(3)


if __name__ == '__main__':
  cli.run(main)
