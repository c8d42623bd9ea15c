r"""Colour control (Gatys et al. 2017): keep the photo's colours, take the painting's strokes.

  python scripts/run.py --config=configs/preserve_color.py              # luminance
  python scripts/run.py --config=configs/preserve_color.py:histogram
  python scripts/run.py --config=configs/preserve_color.py:quick

'luminance': style transfer on the luminance (Y of YIQ) only, recombined with
the content's chroma (I, Q). 'histogram': the style image's colours are first
mapped so their mean and covariance equal the content's, then the usual
transfer runs.
"""

import ml_collections

from configs import default
from configs import starry


def get_config(variant: str = '') -> ml_collections.ConfigDict:
  config = starry.get_config()
  config.style = 'composition_vii'
  config.preserve_color = 'luminance'
  if variant.startswith('histogram'):
    config.preserve_color = 'histogram'
    variant = variant[len('histogram'):].lstrip(',')
  return default.apply_variant(config, variant)
