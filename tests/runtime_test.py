"""Tests for nst_jax.runtime: cache on/off, XLA_FLAGS kept, distributed env.

configure() changes process-wide JAX state, so every test that calls it does so
in a child process (`_child`), never in the pytest process.
"""

import json
import os
from pathlib import Path
import subprocess
import sys

import pytest

from nst_jax import runtime
from nst_jax.errors import UserError

_REPO = Path(__file__).resolve().parents[1]

# A child: configure(), compile a small conv and its gradient, print JSON.
_CHILD = r'''
import json, os, sys
from nst_jax import runtime
if os.environ.get('TEST_PRETEND_GPU') == '1':
  runtime.gpu_plugin_installed = lambda: True
settings = runtime.configure(os.environ.get('TEST_CACHE_ARG', ''))
import jax, jax.numpy as jnp

def conv(x, k):
  return jax.lax.conv_general_dilated(x, k, (1, 1), 'SAME',
                                      dimension_numbers=('NHWC', 'HWIO', 'NHWC'))

@jax.jit
def step(x, k):
  return x - 0.1 * jax.grad(lambda y: (conv(y, k) ** 2).sum())(x)

mark = runtime.compile_counts()
out = step(jnp.ones((1, 8, 8, 4)), jnp.full((3, 3, 4, 4), 0.01))
out.block_until_ready()
counts = runtime.compile_counts() - mark
print(json.dumps({'line': runtime.describe_compiles(mark),
                  'hits': counts.cache_hits, 'misses': counts.cache_misses,
                  'programs': counts.programs,
                  'cache_dir': str(settings.cache_dir),
                  'added': settings.xla_flags_added,
                  'xla_flags': os.environ.get('XLA_FLAGS'),
                  'sum': float(out.sum())}))
'''


def _child(env_updates: dict[str, str]) -> dict:
  env = {k: v for k, v in os.environ.items()
         if k not in (runtime.CACHE_ENV, 'XLA_FLAGS', runtime.GPU_FLAGS_ENV)}
  env.update(env_updates, PYTHONPATH=str(_REPO), JAX_PLATFORMS='cpu')
  done = subprocess.run([sys.executable, '-c', _CHILD], env=env, cwd=_REPO,
                        capture_output=True, text=True, timeout=300, check=False)
  assert done.returncode == 0, done.stderr[-2000:]
  return json.loads(done.stdout.strip().splitlines()[-1])


def test_second_process_compiles_from_the_shared_cache(tmp_path):
  cache = tmp_path / 'cache'
  first = _child({runtime.CACHE_ENV: str(cache)})
  second = _child({runtime.CACHE_ENV: str(cache)})
  assert first['cache_dir'] == str(cache.resolve())
  assert first['hits'] == 0 and first['misses'] >= 1, first
  assert 'not in the cache yet' in first['line']
  assert second['misses'] == 0 and second['hits'] == first['misses'], second
  assert second['line'].endswith('(from the cache)'), second['line']
  assert second['sum'] == first['sum']
  assert any(p.name.startswith('jit_step') for p in cache.iterdir())


def test_argument_wins_over_environment(tmp_path):
  result = _child({runtime.CACHE_ENV: str(tmp_path / 'from_env'),
                   'TEST_CACHE_ARG': str(tmp_path / 'from_arg')})
  assert result['cache_dir'] == str((tmp_path / 'from_arg').resolve())
  assert not (tmp_path / 'from_env').exists()


@pytest.mark.parametrize('how', ['env', 'argument'])
def test_off_disables_the_cache(tmp_path, how):
  home = tmp_path / 'xdg'
  env = {'XDG_CACHE_HOME': str(home)}
  env.update({runtime.CACHE_ENV: 'off'} if how == 'env'
             else {'TEST_CACHE_ARG': 'OFF'})
  result = _child(env)
  assert result['cache_dir'] == 'None'
  assert result['hits'] == result['misses'] == 0, result
  assert result['programs'] >= 1
  assert result['line'].endswith('(no cache)'), result['line']
  assert not home.exists()


def test_default_cache_is_per_user_under_xdg_cache_home(tmp_path):
  result = _child({'XDG_CACHE_HOME': str(tmp_path)})
  assert result['cache_dir'] == str((tmp_path / 'nst_jax' / 'jax').resolve())
  assert result['misses'] >= 1


def test_cpu_only_leaves_xla_flags_alone(tmp_path):
  user = '--xla_cpu_enable_fast_math=false'
  result = _child({runtime.CACHE_ENV: str(tmp_path), 'XLA_FLAGS': user})
  assert result['xla_flags'] == user
  assert result['added'] == []


def test_gpu_flags_are_appended_but_never_override_the_user(tmp_path):
  user = '--xla_gpu_enable_triton_gemm=true --xla_cpu_enable_fast_math=false'
  result = _child({runtime.CACHE_ENV: str(tmp_path), 'XLA_FLAGS': user,
                   'TEST_PRETEND_GPU': '1'})
  flags = result['xla_flags'].split()
  assert flags[:2] == user.split()
  assert '--xla_gpu_enable_triton_gemm=false' not in flags
  assert '--xla_gpu_deterministic_ops=true' in flags
  assert result['added'] == list(runtime.GPU_DETERMINISM_FLAGS)


def test_unknown_xla_flag_is_found_without_aborting_this_process():
  assert runtime.unknown_xla_flags(
      runtime.GPU_COMPILE_FLAGS + runtime.GPU_DETERMINISM_FLAGS
      + ('--xla_no_such_flag_nst=1',)) == ('--xla_no_such_flag_nst=1',)
  assert runtime.unknown_xla_flags(runtime.GPU_COMPILE_FLAGS) == ()


def test_merge_xla_flags():
  merged, added = runtime.merge_xla_flags(
      ' --xla_a=1  --noxla_b ', ('--xla_a=2', '--xla_b=true', '--xla_c=3'))
  assert merged == '--xla_a=1  --noxla_b --xla_c=3'
  assert added == ('--xla_c=3',)
  assert runtime.merge_xla_flags('', ('--xla_c=3',)) == ('--xla_c=3',
                                                          ('--xla_c=3',))


def test_resolve_cache_dir(monkeypatch, tmp_path):
  monkeypatch.delenv(runtime.CACHE_ENV, raising=False)
  monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path))
  assert runtime.resolve_cache_dir() == (tmp_path / 'nst_jax' / 'jax').resolve()
  monkeypatch.delenv('XDG_CACHE_HOME')
  monkeypatch.setenv('HOME', str(tmp_path / 'home'))
  assert runtime.resolve_cache_dir('') == (
      tmp_path / 'home' / '.cache' / 'nst_jax' / 'jax').resolve()
  monkeypatch.setenv(runtime.CACHE_ENV, ' Off ')
  assert runtime.resolve_cache_dir() is None
  assert runtime.resolve_cache_dir(tmp_path / 'x') == (tmp_path / 'x').resolve()


def test_describe_compiles_counts_only_after_the_mark():
  mark = runtime.compile_counts()
  assert runtime.describe_compiles(mark).startswith('nothing compiled')


def test_distributed_env(monkeypatch):
  for name in (runtime.COORDINATOR_ENV, runtime.NUM_PROCESSES_ENV,
               runtime.PROCESS_ID_ENV):
    monkeypatch.delenv(name, raising=False)
  assert runtime.distributed_env() is None
  monkeypatch.setenv(runtime.COORDINATOR_ENV, '127.0.0.1:1234')
  with pytest.raises(UserError, match='NST_NUM_PROCESSES'):
    runtime.distributed_env()
  monkeypatch.setenv(runtime.NUM_PROCESSES_ENV, '2')
  monkeypatch.setenv(runtime.PROCESS_ID_ENV, '1')
  assert runtime.distributed_env() == {'coordinator_address': '127.0.0.1:1234',
                                       'num_processes': 2, 'process_id': 1}
  monkeypatch.setenv(runtime.PROCESS_ID_ENV, '2')
  with pytest.raises(UserError, match="NST_PROCESS_ID='2'"):
    runtime.distributed_env()
  monkeypatch.setenv(runtime.PROCESS_ID_ENV, '0')
  monkeypatch.setenv(runtime.COORDINATOR_ENV, 'no-port')
  with pytest.raises(UserError, match='host:port'):
    runtime.distributed_env()
