"""Smoke test of the benchmark (numbers are not checked: they live in its output)."""

import pytest

from nst_jax import benchmark
from nst_jax.errors import UserError


@pytest.fixture(autouse=True)
def two_blocks(monkeypatch):
  """Every row on two blocks of VGG19, not five: the rows' plumbing does
  not depend on the depth, and their programs compile in half the time."""
  config = benchmark._config  # pylint: disable=protected-access
  monkeypatch.setattr(benchmark, '_config', lambda size, **fields: config(
      size, **{'content_layers': 'block2_conv2',
               'style_layers': 'block1_conv1,block2_conv1', **fields}))


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


def test_sweep_rows_count_evaluations_of_vmapped_members():
  rows = benchmark.sweep_row(size=32, members=2, iterations=3, batches=(1, 2))
  assert [(r['batch'], r['optimizer']) for r in rows] == [
      (1, 'lbfgs'), (2, 'lbfgs_batched')]
  for row in rows:
    assert row['member_evaluations_per_s'] > 0
    assert row['single_member_evaluations_per_s'] > 0
    # At least one evaluation per member and iteration, and members one by
    # one (batch 1) cost what they cost alone.
    assert row['evaluations_per_member_iteration'] >= 1
  assert rows[0]['evaluation_ratio'] == 1.0
  text = benchmark.format_report({'device': 'x', 'versions': {'jax': 'x'},
                                  'speed': {'size': 32, 'budgets': [],
                                            'compile_seconds': 0.0,
                                            'value_and_grad_seconds': 0.0,
                                            'value_and_grad_in_loop_seconds':
                                            0.0, 'optimizers': {}},
                                  'sweep': rows})
  assert 'evaluation_ratio 1.000' in text and '(batch 2, lbfgs_batched' in text


def test_counting_loss_counts_a_batched_call_once():
  import jax  # pylint: disable=import-outside-toplevel
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  loss, calls = benchmark.counting_loss(lambda x, w: w * jnp.sum(x ** 2))
  grad = jax.jit(jax.vmap(jax.grad(loss)))
  jax.block_until_ready(grad(jnp.ones((4, 3)), jnp.arange(4.0)))
  jax.effects_barrier()
  assert len(calls) == 1
  jax.block_until_ready(jax.jit(jax.grad(loss))(jnp.ones(3), 2.0))
  jax.effects_barrier()
  assert len(calls) == 2


def test_flags_are_checked_before_anything_runs(tmp_path):
  # A typo in a list flag, or an --out that cannot be written, used to end
  # the benchmark after its rows with a traceback and no report.
  flags = dict(budgets=['50', '100'], optimizers=['lbfgs'],
               memory_sizes=[], memory_paths=['auto', 'tiles'],
               sweep_batch=['1', '0'], out=str(tmp_path / 'new' / 'b.json'))
  assert benchmark.check_flags(**flags) == {
      'budgets': [50, 100], 'memory_sizes': [], 'sweep_batch': [1, 0],
      'out': tmp_path / 'new' / 'b.json'}
  (tmp_path / 'file').write_text('')
  with pytest.raises(UserError) as e:
    benchmark.check_flags(**{
        **flags, 'budgets': ['5', 'a'], 'memory_sizes': ['0'],
        'sweep_batch': ['-1'], 'optimizers': ['lbfgs', 'bfgs'],
        'memory_paths': ['disk'], 'out': str(tmp_path / 'file' / 'b.json')})
  assert str(e.value).splitlines() == [
      '--budgets=5,a: give comma-separated whole numbers >= 1',
      '--memory_sizes=0: give comma-separated whole numbers >= 1',
      '--sweep_batch=-1: give comma-separated whole numbers >= 0',
      '--optimizers: unknown bfgs; choose from ' + ','.join(benchmark.OPTIMIZERS),
      '--memory_paths: unknown disk; choose from auto,plain,remat,tiles',
      f'the folder of --out={tmp_path / "file"} is not a directory '
      f'({tmp_path / "file"} is a file): choose a directory path']
  with pytest.raises(UserError, match=r'^--out=.* is a directory: name the '
                     r'JSON file, e\.g\. .*benchmark\.json$'):
    benchmark.check_flags(**{**flags, 'out': str(tmp_path)})


def test_the_script_refuses_bad_flags_in_one_line_each(run_script, user_error,
                                                       tmp_path):
  done = run_script('benchmark.py', '--budgets=50,lots',
                    f'--out={tmp_path}', check=False)
  user_error(done, '--budgets=50,lots', f'--out={tmp_path} is a directory',
             lines=2)
  assert not list(tmp_path.iterdir())
