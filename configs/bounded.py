r"""Pixels kept in the valid range during optimisation (L-BFGS-B box constraints).

  python scripts/run.py --config=configs/bounded.py
  python scripts/run.py --config=configs/bounded.py:quick

The default, unbounded L-BFGS lets a few pixels leave [0, 255] and clips at
the end; 'lbfgsb' never leaves the box. In jaxopt's LBFGSB a step is cut short
where any pixel meets a bound, so it lowers the loss more slowly per
iteration (docs/performance.md, Bounds).
"""

import ml_collections

from configs import default
from configs import starry


def get_config(variant: str = '') -> ml_collections.ConfigDict:
  config = starry.get_config()
  config.optimizer = 'lbfgsb'
  return default.apply_variant(config, variant)
