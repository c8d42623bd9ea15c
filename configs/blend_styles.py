r"""Two paintings blended 60/40, with larger brush strokes (style_scale=0.5).

  python scripts/run.py --config=configs/blend_styles.py
  python scripts/run.py --config=configs/blend_styles.py:quick

The style targets are the blend of each painting's Gram matrices. A smaller
style_scale shows the painting smaller to the network, so its strokes come
out larger relative to the content.
"""

import ml_collections

from configs import default
from configs import starry


def get_config(variant: str = '') -> ml_collections.ConfigDict:
  config = starry.get_config()
  config.style = 'starry_night,shipwreck_minotaur'
  config.style_blend = '0.6,0.4'
  config.style_scale = 0.5
  return default.apply_variant(config, variant)
