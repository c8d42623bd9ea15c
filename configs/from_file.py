r"""The config of an earlier run, read from its PNG or its config.json.

  python scripts/run.py --config=configs/from_file.py:outputs/run/final.png
  python scripts/run.py --config=outputs/run/final.png       # the same, shorter
  python scripts/run.py --config=outputs/run/config.json --config.image_size=1024

scripts/run.py and scripts/sweep.py read `--config=X.png|X.json` as this file
does (`nst_jax/cli.py`). Fields added to nst_jax since the run take their
defaults (configs/default.py); see `nst_jax/saved_config.py`.
"""

import ml_collections

from nst_jax import saved_config


def get_config(path: str = '') -> ml_collections.ConfigDict:
  if not path:
    raise ValueError('configs/from_file.py needs a file: '
                     '--config=configs/from_file.py:path/to/final.png')
  return saved_config.load(path)
