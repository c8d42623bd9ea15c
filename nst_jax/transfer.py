"""From a config to results: the one way to run a config, for scripts/run.py,
scripts/sweep.py, compare and the benchmark.

`spec.parse` checks the config (every problem at once, before anything
compiles) and `engine.run` optimises its members in compiled chunks, writing
snapshots, losses.jsonl, config.json and the PNGs to the workdir (see
`nst_jax.engine`).
"""

import os
from collections.abc import Callable
from typing import Any

import ml_collections

from nst_jax import engine
from nst_jax import phases
from nst_jax import spec as spec_lib


def run(config: ml_collections.ConfigDict,
        workdir: str | os.PathLike | None = None,
        log: Callable[[str], Any] = print, *, sweep: bool = False
        ) -> dict[str, Any]:
  """Runs `config` (with `sweep`, every member of config.sweep); writes
  everything under `workdir`.

  With `config.resume` set, continues the interrupted run saved there instead
  (`workdir` is then ignored).

  Returns:
    `engine.run`'s result; a single run's also has 'final' (Path, or None
    when it diverged: the last finite image is kept in snapshots/),
    'iterations', 'evaluations', 'status' ('finished', 'converged' or
    'diverged') and 'losses' ({term: float}) of its one member.

  Raises:
    UserError: a bad config value or input file (all reported at once, before
      any compilation).
    engine.Interrupted: SIGINT/SIGTERM; the state was saved for `config.resume`.
  """
  phases.start_run()
  with phases.phase('config'):
    spec = spec_lib.parse(config, workdir, sweep=sweep)
  result = engine.run(spec, log)
  if not sweep:
    (member,) = result['members']
    result.update(
        final=None if member['status'] == 'diverged' else member['file'],
        iterations=member['iterations'], evaluations=member['evaluations'],
        status=member['status'],
        losses={k: member[k] for k in ('content', 'style', 'tv', 'total')})
  return result
