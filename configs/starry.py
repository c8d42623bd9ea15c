r"""Tübingen in the style of The Starry Night (Gatys et al. 2015, Fig. 2), 512 px.

  python scripts/run.py --config=configs/starry.py
  python scripts/run.py --config=configs/starry.py:quick   # 96 px smoke run

The defaults of configs/default.py: content block4_conv2, style block1_conv1
... block5_conv1 with equal weights, size-independent means. The weights hold at any image_size, so ':quick' changes only the size
and the number of iterations.
"""

import ml_collections

from configs import default


def get_config(variant: str = '') -> ml_collections.ConfigDict:
  config = default.get_config()
  config.content = 'tubingen'
  config.style = 'starry_night'
  config.image_size = 512
  config.max_iterations = 300
  # The smoke run: a recognisable result in about half a minute on a CPU.
  return default.apply_variant(config, variant, quick={
      'image_size': 96, 'max_iterations': 100, 'snapshot_every': 25})
