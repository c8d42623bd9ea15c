"""Tests for nst_jax.phases: nested phases count once, runs start from zero."""

import time

from nst_jax import phases


def test_nested_phases_count_once_and_runs_start_from_zero():
  # A process's first run counts its imports: from the start of the process.
  assert phases._process_age() > 0.1  # pylint: disable=protected-access
  phases.start_run()
  with phases.phase('images'):
    time.sleep(0.05)
    with phases.phase('targets'):
      time.sleep(0.1)
  spent = phases.totals()
  assert 0.05 <= spent['images'] < 0.1 and 0.1 <= spent['targets'] < 0.15
  # Every second of the run is in one phase or in 'other'.
  parts = sum(v for k, v in spent.items() if k != 'total')
  assert abs(parts - spent['total']) < 1e-3
  phases.start_run()  # a later run in the same process
  again = phases.totals()
  assert 'imports' not in again and again['total'] < 0.05
  assert phases.summary().startswith('time: other ')
