r"""Tübingen in the style of The Starry Night (Gatys et al. 2015, Fig. 2), 512 px.

  python scripts/run.py --config=configs/starry.py
  python scripts/run.py --config=configs/starry.py:quick   # 96 px smoke run

The seed's layers: content block5_conv2, style block1_conv1 ... block5_conv1
with equal weights; the loss weights of configs/default.py (512 px).
"""

import ml_collections

from configs import default


def get_config(variant: str = '') -> ml_collections.ConfigDict:
  config = default.get_config()
  config.content = 'tubingen'
  config.style = 'starry_night'
  config.image_size = 512
  config.max_iterations = 300
  # The smoke run: a recognisable result in about half a minute on a CPU. At
  # 96 px the deepest style layers are a few pixels wide and match the
  # painting's layout rather than its texture; a much larger content weight
  # (chosen by eye) keeps the town visible.
  return default.apply_variant(config, variant, quick={
      'image_size': 96, 'max_iterations': 100, 'snapshot_every': 25,
      'content_weight': 30.0, 'tv_weight': 1.5})
