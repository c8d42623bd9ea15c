r"""Loss weights that mean the same at any size: the 'normalized' losses.

  python scripts/run.py --config=configs/normalized.py --config.image_size=256
  python scripts/run.py --config=configs/normalized.py --config.image_size=1024
  python scripts/run.py --config=configs/normalized.py:quick

Every term is a mean instead of a sum and Grams are averaged over positions
(see nst_jax/losses.py), so the balance of content, style and smoothness does
not drift with the image size as the seed's sums do.
"""

import ml_collections

from configs import default
from configs import starry


def get_config(variant: str = '') -> ml_collections.ConfigDict:
  config = starry.get_config()
  config.normalization = 'normalized'
  # The default balance (configs/default.py at 512 px) in mean terms: the
  # same picture at 256 px and at 1024 px.
  config.content_weight = 1e5
  config.style_weight = 1.0
  config.tv_weight = 5e4
  return default.apply_variant(config, variant)
