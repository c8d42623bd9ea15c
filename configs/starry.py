r"""Tübingen in the style of The Starry Night (Gatys et al. 2015, Fig. 2), 512 px.

  python scripts/run.py --config=configs/starry.py
  python scripts/run.py --config=configs/starry.py:quick   # 96 px smoke run

The seed's settings: content block5_conv2, style block1_conv1 ... block5_conv1
with equal weights, content/style/tv weights 0.025 / 1 / 1.
"""

import ml_collections

from configs import default


def get_config(variant: str = '') -> ml_collections.ConfigDict:
  config = default.get_config()
  config.content = 'tubingen'
  config.style = 'starry_night'
  config.image_size = 512
  config.max_iterations = 300

  if variant == 'quick':
    # A smoke run: a recognisable result in seconds on a laptop CPU.
    config.image_size = 96
    config.max_iterations = 100
    config.snapshot_every = 25
  elif variant:
    raise ValueError(f"unknown variant {variant!r} of configs/starry.py: use ':quick' or nothing")
  return config
