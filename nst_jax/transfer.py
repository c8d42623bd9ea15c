"""One style-transfer run: the library behind scripts/run.py.

A single run is the one-member case of the engine: `spec.parse` checks the
config (every problem at once, before anything compiles) and `engine.run`
optimises the image in compiled chunks, writing snapshots, losses.jsonl,
config.json and final.png to the workdir (see `nst_jax.engine`).
"""

import os
from collections.abc import Callable
from typing import Any

import ml_collections

from nst_jax import engine
from nst_jax import spec as spec_lib


def run(config: ml_collections.ConfigDict,
        workdir: str | os.PathLike | None = None,
        log: Callable[[str], Any] = print) -> dict[str, Any]:
  """Runs style transfer as `config` says; writes everything under `workdir`.

  With `config.resume` set, continues the interrupted run saved there instead
  (`workdir` is then ignored).

  Returns:
    {'final': Path | None, 'workdir': Path, 'iterations': int,
     'evaluations': int, 'losses': {term: float}, 'status': str}; status is
    'finished', 'converged' or 'diverged' (then 'final' is None and the last
    finite image is kept in snapshots/).

  Raises:
    UserError: a bad config value or input file (all reported at once, before
      any compilation).
    engine.Interrupted: SIGINT/SIGTERM; the state was saved for `config.resume`.
  """
  spec = spec_lib.parse(config, workdir)
  result = engine.run(spec, log)
  (member,) = result['members']
  final = None if member['status'] == 'diverged' else member['file']
  if final is not None:
    log(f'wrote {final} ({member["iterations"]} iterations, '
        f'{member["evaluations"]} evaluations, {result["seconds"]:.1f}s); '
        f'snapshots, losses.jsonl and config.json are in {result["workdir"]}')
  return {'final': final, 'workdir': result['workdir'],
          'iterations': member['iterations'],
          'evaluations': member['evaluations'], 'status': member['status'],
          'losses': {k: member[k] for k in ('content', 'style', 'tv', 'total')}}
