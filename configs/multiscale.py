r"""Coarse-to-fine: 3 scales (256, 512, 1024 px), each initialised from the last.

  python scripts/run.py --config=configs/multiscale.py          # GPU recommended
  python scripts/run.py --config=configs/multiscale.py:quick

The smallest scale settles the large structures cheaply; each larger scale
starts from the upsampled result and only refines. Style targets are
recomputed at every scale (the style image is resized with the content).
`max_iterations` applies to each scale.
"""

import ml_collections

from configs import default
from configs import starry


def get_config(variant: str = '') -> ml_collections.ConfigDict:
  config = starry.get_config()
  config.image_size = 1024
  config.scales = 3
  config.scale_ratio = 2.0
  config.max_iterations = 200
  return default.apply_variant(config, variant, quick={'image_size': 96,
                                                       'scales': 2})
