r"""The style loss variants: mean and covariance, or sliced Wasserstein.

  python scripts/run.py --config=configs/style_losses.py:mean_cov
  python scripts/run.py --config=configs/style_losses.py:sliced_wasserstein
  python scripts/run.py --config=configs/style_losses.py:sliced_wasserstein,quick

'mean_cov' matches each layer's feature mean and covariance (the Gaussian
statistics behind a Wasserstein-2 distance between Gaussians); it is a
centred Gram loss plus a mean term. 'sliced_wasserstein' matches the whole
distribution of features along random directions (seeded by config.seed),
which keeps colours and textures from averaging out.
"""

import ml_collections

from configs import default
from configs import starry


def get_config(variant: str = 'sliced_wasserstein') -> ml_collections.ConfigDict:
  config = starry.get_config()
  loss, _, rest = variant.partition(',')
  if loss not in ('mean_cov', 'sliced_wasserstein'):
    raise ValueError(f'unknown variant {variant!r} of configs/style_losses.py: '
                     "use ':mean_cov' or ':sliced_wasserstein' (add ',quick')")
  config.style_loss = loss
  return default.apply_variant(config, rest)
