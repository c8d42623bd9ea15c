"""Smoke test of the benchmark (numbers are not checked: they live in its output)."""

import pytest

from nst_jax import benchmark


def test_benchmark_runs_and_reports_every_optimizer():
  pytest.importorskip('scipy')
  speed = benchmark.measure(size=32, budgets=(3, 6), repeats=2,
                            log=lambda _: None)
  assert set(speed['optimizers']) == set(benchmark.OPTIMIZERS)
  for name, row in speed['optimizers'].items():
    assert [p['budget'] for p in row['points']] == [3, 6], name
    # Evaluations are counted at each budget and never go backwards.
    evals = [p['evaluations'] for p in row['points']]
    assert 0 < evals[0] <= evals[1], (name, evals)
  # The engine's rows stop at each budget: reached, and passed by at most
  # the last iteration's line search.
  for name in ('lbfgs', 'optax_lbfgs', 'adam'):
    for point in speed['optimizers'][name]['points']:
      assert point['budget'] <= point['evaluations'] <= point['budget'] + 20, (
          name, point)
    assert row['overhead'] > 0
  memory = [benchmark.memory_probe(32),
            benchmark.memory_probe(32, 'tiles', iterations=1)]
  assert memory[0]['peak_rss_mib'] > 0 and memory[0]['compile_seconds'] > 0
  assert [row['iterations'] for row in memory] == [3, 1]
  # Each row names the path that ran and the estimate 'auto' went by.
  assert memory[0]['memory'].startswith('plain')
  assert memory[1]['memory'].startswith('tiles (1x1 tiles')
  assert 0 < memory[0]['estimate_mib'] < memory[1]['estimate_mib']
  text = benchmark.format_report({'device': benchmark.device_description(),
                                  'versions': {'jax': 'x'}, 'speed': speed,
                                  'memory': memory})
  assert 'lbfgs' in text and 'scipy_lbfgsb' in text and 'peak RSS' in text
  assert 'peak / estimate' in text and '| tiles (1x1 tiles' in text
