r"""Measure pictures for structure, style and colour; optionally against pastiche.

  python scripts/compare.py --config=configs/starry.py --pastiche
  python scripts/compare.py --config=configs/starry.py --sizes=256,512,1024
  python scripts/compare.py --config=configs/starry.py \
      --config.sweep.style_weight=0.003,0.01,0.03 --workdir=outputs/front
  python scripts/compare.py --config=configs/starry.py --pictures=a.png,b.png

Runs the config (every member when config.sweep lists values) at each size,
and pastiche with --pastiche (`pip install -e '.[compare]'`), then writes
compare.jsonl and side_by_side.png. The measures are in nst_jax/compare.py;
a config with regions (configs/regions.py) also gets, per region, its SSIM to
the photo ('<region>_structure') and its style distance to its painting
('<region>_style'), inside the region (nst_jax/region_measures.py).
"""

from absl import flags

from nst_jax import cli
from nst_jax.errors import UserError

_WORKDIR = flags.DEFINE_string('workdir', 'outputs/compare', 'Where outputs go.')
_SIZES = flags.DEFINE_list('sizes', [], 'Image sizes to run at, px; default '
                           'config.image_size.')
_EVAL_SIZE = flags.DEFINE_integer('eval_size', 0, 'Measuring size (long side, '
                                  'px); 0 = the smallest of --sizes.')
_PASTICHE = flags.DEFINE_bool('pastiche', False, 'Also run pastiche on the '
                              'same images, size and iterations.')
_PICTURES = flags.DEFINE_list('pictures', [], 'Measure these image files '
                              'instead of running anything.')


def main(argv):
  config = cli.checked_config(argv, 'configs/starry.py')
  # pylint: disable=import-outside-toplevel
  from nst_jax import compare
  from nst_jax import region_measures
  try:
    sizes = [int(s) for s in _SIZES.value]
  except ValueError:
    cli.exit_with_user_error(UserError(
        f'--sizes={",".join(_SIZES.value)}: use whole numbers, e.g. 256,512'))
  cli.call(compare.compare, config, _WORKDIR.value, sizes=sizes,
           eval_size=_EVAL_SIZE.value, pastiche=_PASTICHE.value,
           pictures=_PICTURES.value,
           region_measures=region_measures.measure_run)


if __name__ == '__main__':
  cli.run(main)
