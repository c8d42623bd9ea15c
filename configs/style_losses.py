r"""The style loss variants: mean and covariance, or sliced Wasserstein.

  python scripts/run.py --config=configs/style_losses.py               # sliced_wasserstein
  python scripts/run.py --config=configs/style_losses.py:mean_cov
  python scripts/run.py --config=configs/style_losses.py:sliced_wasserstein
  python scripts/run.py --config=configs/style_losses.py:quick         # sliced_wasserstein, 64 px
  python scripts/run.py --config=configs/style_losses.py:mean_cov,quick

'mean_cov' matches each layer's feature mean and covariance (the Gaussian
statistics behind a Wasserstein-2 distance between Gaussians); it is a
centred Gram loss plus a mean term. 'sliced_wasserstein' matches the whole
distribution of features along random directions (seeded by config.seed),
which keeps colours and textures from averaging out.
"""

import ml_collections

from configs import default
from configs import starry

LOSSES = ('mean_cov', 'sliced_wasserstein')


def get_config(variant: str = '') -> ml_collections.ConfigDict:
  """The config for `variant`: '[mean_cov|sliced_wasserstein][,quick]'.

  No loss name means 'sliced_wasserstein', so ':quick' works as for every
  other example.
  """
  parts = [part.strip() for part in variant.split(',') if part.strip()]
  loss = parts.pop(0) if parts and parts[0] in LOSSES else 'sliced_wasserstein'
  if len(parts) > 1 or (parts and parts[0] != 'quick'):
    raise ValueError(f'unknown variant {variant!r} of configs/style_losses.py: '
                     "use ':sliced_wasserstein' (the default), ':mean_cov', "
                     "':quick', ':mean_cov,quick' or ':sliced_wasserstein,quick'")
  config = starry.get_config()
  config.style_loss = loss
  return default.apply_variant(config, ''.join(parts))
