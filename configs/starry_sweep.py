r"""The Starry Night at four weight settings: a 2x2 grid, one compiled program.

  python scripts/sweep.py --config=configs/starry_sweep.py          # 128 px
  python scripts/sweep.py --config=configs/starry_sweep.py:quick    # 64 px, CPU smoke run
  python scripts/sweep.py --config=configs/starry_sweep.py \
      --config.sweep.style_weight=1e-2,1e-1,1,10 --config.sweep.tv_weight=1

Sweep syntax (fields of config.sweep, see configs/default.py):
  content_weight, style_weight, tv_weight  comma-separated numbers: '1e-2,1,10'
  seed                 comma-separated whole numbers: '0,1,2' (init='noise')
  style_layer_weights  ';'-separated values, each a comma list with one number
                       per style layer: '1,1,1,1,1;1,0,0,0,0' (quote the ';'
                       in a shell)
  mode                 'grid' (every combination; rows/columns of the contact
                       sheet are the first/second swept field) or 'zip'
                       (the i-th values together; lists of one length)
  chunk                members per compiled call, 0 = all (bounds memory)
  batch                members a device evaluates at once under vmap: 1 (default)
                       one after another, 0 = all of a call
  tile_size            contact sheet tile, px
An empty field is not swept. Each member PNG re-makes itself with
`python scripts/run.py --config=<the PNG>`.
"""

import ml_collections

from configs import starry


def get_config(variant: str = '') -> ml_collections.ConfigDict:
  config = starry.get_config()
  # Small enough for a CPU: four members optimised at once.
  config.image_size = 128
  config.max_iterations = 100
  config.snapshot_every = 25

  # --- Sweep: rows style weight, columns total-variation weight.
  config.sweep.style_weight = '0.1,10'
  config.sweep.tv_weight = '1,100'
  config.sweep.mode = 'grid'

  if variant == 'quick':
    # A smoke run: four recognisable results in about a minute on a CPU.
    config.image_size = 64
    config.max_iterations = 20
    config.snapshot_every = 10
  elif variant:
    raise ValueError(f"unknown variant {variant!r} of configs/starry_sweep.py: "
                     "use ':quick' or nothing")
  return config
