r"""Spatial control (Gatys et al. 2017): the sky from The Starry Night, the town from The Scream.

  python scripts/run.py --config=configs/regions.py
  python scripts/run.py --config=configs/regions.py:photo_town   # the town keeps the photo
  python scripts/run.py --config=configs/regions.py:quick
  python scripts/run.py --config=configs/regions.py:photo_town,quick

configs/regions/tubingen_sky.png paints Tübingen's sky blue and the town
white; configs/regions/starry_night_sky.png paints the painting's sky blue,
so the photo's sky takes the statistics of the painting's sky alone (not of
its village and cypress). The town takes The Scream whole, or, in
':photo_town', keeps the photo: only the content term acts there, with
region_photo_weight holding its pixels to the photo. Borders are feathered
over ~16 px (region_feather 8, px at image_size). docs/regions.md has the
measures.
"""

import ml_collections

from configs import default
from configs import starry


def get_config(variant: str = '') -> ml_collections.ConfigDict:
  config = starry.get_config()
  config.style = 'starry_night,the_scream'
  config.content_regions = 'configs/regions/tubingen_sky.png'
  config.style_regions = 'starry_night=configs/regions/starry_night_sky.png'
  config.region_styles = 'blue=starry_night@blue, white=the_scream'
  config.region_feather = 8.0
  if variant.startswith('photo_town'):
    config.style = 'starry_night'
    config.region_styles = 'blue=starry_night@blue, white=none'
    config.region_photo_weight = 1000.0
    variant = variant[len('photo_town'):].lstrip(',')
  return default.apply_variant(config, variant, quick={
      'image_size': 96, 'max_iterations': 100, 'snapshot_every': 25})
