r"""Every field of a style-transfer run, with its default.

  python scripts/run.py --config=configs/default.py \
      --config.content=tubingen --config.style=starry_night

The fields, their defaults and what each means are in `nst_jax/spec.py`
(`default_config`), grouped in sections: images, network, loss,
initialisation, optimiser, output and runtime, sweep. Any field can be
overridden on the command line: `--config.style_weight=1e3`. The `sweep`
section is for scripts/sweep.py (see configs/starry_sweep.py); empty, it means
one run. Images are paths or asset names (tubingen, starry_night,
the_great_wave, ...); see `nst_jax/image.py` for the list and `NST_ASSETS_DIR`
for offline use.
"""

import ml_collections

from nst_jax.spec import QUICK, apply_variant, default_config  # pylint: disable=unused-import


def get_config() -> ml_collections.ConfigDict:
  return default_config()
