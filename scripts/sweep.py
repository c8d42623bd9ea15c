r"""Stylise a photo at several loss weights or seeds, as one compiled program.

  python scripts/sweep.py --config=configs/starry_sweep.py
  python scripts/sweep.py --config=configs/starry_sweep.py:quick --workdir=outputs/sweep
  python scripts/sweep.py --config=configs/starry.py \
      --config.sweep.style_weight=1e-2,1e-1,1,10 --config.sweep.tv_weight=0,1
  python scripts/sweep.py --config=configs/starry.py --config.sweep.mode=zip \
      --config.sweep.style_weight=1,10 --config.sweep.style_layer_weights='1,1,1,1,1;1,0,0,0,0'

Writes one PNG per member, contact_sheet.png, results.jsonl and config.json
(see nst_jax/sweep.py). Members are spread over every local device; on several
hosts run the same command on each with --distributed (or NST_DISTRIBUTED=1),
which calls jax.distributed.initialize() (coordinator from the environment,
e.g. on Cloud TPU or under SLURM). A sweep's config.json or contact_sheet.png
can stand for its config: --config=outputs/sweep/config.json.
"""

import os

from absl import flags

from nst_jax import cli
from nst_jax.errors import UserError

_WORKDIR = flags.DEFINE_string(
    'workdir', None,
    'Where outputs go; default outputs/sweep-<content>-<style>-<time>.')
_DISTRIBUTED = flags.DEFINE_bool(
    'distributed', os.environ.get('NST_DISTRIBUTED', '') == '1',
    'Call jax.distributed.initialize() first (one process per host).')


def main(argv):
  config = cli.checked_config(argv, 'configs/starry_sweep.py')
  if _DISTRIBUTED.value:
    # Before anything touches a device: it decides which devices exist.
    # Coordinator from $NST_COORDINATOR/$NST_NUM_PROCESSES/$NST_PROCESS_ID,
    # else JAX's own detection (see nst_jax/runtime.py).
    from nst_jax import runtime  # pylint: disable=import-outside-toplevel
    try:
      runtime.initialize_distributed()
    except UserError as e:
      cli.exit_with_user_error(e)
  from nst_jax import transfer  # pylint: disable=import-outside-toplevel
  cli.call(transfer.run, config, _WORKDIR.value, sweep=True)


if __name__ == '__main__':
  cli.run(main)
