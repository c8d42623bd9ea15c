r"""Gatys et al. 2016 as published: white-noise init and average pooling.

  python scripts/run.py --config=configs/noise_avg_pool.py --config.seed=3
  python scripts/run.py --config=configs/noise_avg_pool.py:quick

Different seeds give different images; the same seed the same bytes.
"""

import ml_collections

from configs import default
from configs import starry


def get_config(variant: str = '') -> ml_collections.ConfigDict:
  config = starry.get_config()
  config.init = 'noise'
  config.pooling = 'avg'
  config.max_iterations = 500   # from noise, the content needs more steps
  return default.apply_variant(config, variant)
