r"""The seed's losses: Gatys et al.'s sums, content at block5_conv2, 512 px.

  python scripts/run.py --config=configs/gatys_sums.py
  python scripts/run.py --config=configs/gatys_sums.py:quick

Before the defaults moved to size-independent means (docs/defaults.md), the
project used the sums of Gatys et al. 2015 (nst_jax/losses.py, 'seed'): content
sum((F - F_c)^2) at block5_conv2, style layers weighted equally, and a TV term.
The content and TV sums grow with the pixel count, so these weights (chosen by
eye at 256 px and scaled to 512 px) hold at 512 px only. Kept to make the old
pictures again and to compare against.
"""

import ml_collections

from configs import default
from configs import starry


def get_config(variant: str = '') -> ml_collections.ConfigDict:
  config = starry.get_config()
  config.normalization = 'seed'
  config.content_layers = 'block5_conv2'
  config.content_weight = 0.075
  config.style_weight = 1.0
  config.tv_weight = 0.05
  # At 96 px the sums need a much larger content weight (chosen by eye).
  return default.apply_variant(config, variant, quick={
      'image_size': 96, 'max_iterations': 100, 'snapshot_every': 25,
      'content_weight': 30.0, 'tv_weight': 1.5})
