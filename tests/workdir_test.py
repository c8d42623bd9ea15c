"""Tests for nst_jax.workdir and issue 25: no run loses another's result, and
a refused run leaves nothing behind.

Each class of awkward input or fault has a row or a test: two runs racing
for one workdir (the claim itself in two processes, many times; once two
scripts), `~` in paths, refusals made before anything is written and runs
that stop before their first state save leaving nothing, one-line refusals
(the table), what a failed or stopped run says it kept. In this process where
possible; scripts only where the exit status is the subject.
"""

import json
import multiprocessing
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import psutil
import pytest
from PIL import Image

from configs import default as default_config
from nst_jax import engine
from nst_jax import progress
from nst_jax import spec
from nst_jax import transfer
from nst_jax import workdir as workdir_lib
from nst_jax.errors import UserError
from nst_jax.signals import Interrupted

REPO = Path(__file__).resolve().parents[1]
# The smallest real run: 32 px, shallow layers, two iterations.
TINY = dict(image_size=32, max_iterations=2, snapshot_every=2,
            content_layers='block2_conv1',
            style_layers='block1_conv1,block2_conv1', style_pyramid_size=0)
TINY_ARGS = [f'--config={REPO / "configs" / "starry.py"}:quick',
             *(f'--config.{k}={v}' for k, v in TINY.items())]


def _config(**overrides):
  config = default_config.get_config()
  for key, value in {**TINY, **overrides}.items():
    config[key] = value
  return config


def _png(path: Path, size=(8, 8)) -> str:
  Image.new('RGB', size, (200, 60, 30)).save(path)
  return str(path)


def _tree(workdir: str | Path) -> list[Path] | None:
  """What is in `workdir` (None: nothing there, or no such path can be)."""
  try:
    return sorted(Path(workdir).rglob('*')) if str(workdir) and Path(
        workdir).exists() else None
  except OSError:
    return None


def _refusal(config, workdir: str | Path, sweep=False) -> list[str]:
  """The problems of `transfer.run`, which must leave `workdir` as it was."""
  before = _tree(workdir)
  with pytest.raises(UserError) as e:
    transfer.run(config, workdir, log=lambda _: None, sweep=sweep)
  assert _tree(workdir) == before, 'a refused run wrote something'
  return str(e.value).splitlines()


# --- A workdir belongs to one run --------------------------------------------

def _race(barrier, root: str, races: int, name: str, results) -> None:
  """One racer: claims root/<i> as a run does (config.json, then a picture),
  at the same moment as the other, `races` times."""
  for i in range(races):
    workdir = Path(root) / str(i)
    barrier.wait()
    try:
      with workdir_lib.claim(workdir, resume=False) as claim:
        (workdir / 'config.json').write_text(name)
        claim.kept = True
        (workdir / 'final.png').write_text(name)
      results.put((i, name, 'won'))
    except UserError as e:
      results.put((i, name, str(e)))


def test_two_processes_racing_for_a_workdir_never_both_win(tmp_path):
  races = 20
  context = multiprocessing.get_context('spawn')
  barrier, results = context.Barrier(2), context.Queue()
  racers = [context.Process(target=_race, args=(barrier, str(tmp_path),
                                                races, name, results))
            for name in 'ab']
  for racer in racers:
    racer.start()
  outcomes = {}
  for _ in range(2 * races):
    i, name, outcome = results.get(timeout=120)
    outcomes.setdefault(i, {})[name] = outcome
  for racer in racers:
    racer.join(timeout=60)
  for i, pair in outcomes.items():
    winners = [name for name, outcome in pair.items() if outcome == 'won']
    assert len(winners) == 1, (i, pair)
    (loser,) = set(pair) - set(winners)
    assert ('in use by another run' in pair[loser]
            or 'already holds a run' in pair[loser]), pair[loser]
    # What the winner wrote is all there is.
    assert (tmp_path / str(i) / 'config.json').read_text() == winners[0]
    assert not (tmp_path / str(i) / workdir_lib.LOCK_FILE).exists()


@pytest.mark.slow
def test_two_scripts_racing_for_a_workdir(tmp_path, start_script, user_error):
  workdir = tmp_path / 'w'
  procs = [start_script('run.py', *TINY_ARGS, f'--workdir={workdir}', *extra)
           for extra in ([], ['--config.style_weight=1'])]
  done = [subprocess.CompletedProcess(p.args, p.wait(timeout=300),
                                      p.stdout.read(), p.stderr.read())
          for p in procs]
  (winner,) = [d for d in done if d.returncode == 0]
  (loser,) = [d for d in done if d.returncode != 0]
  lines = user_error(loser, lines=1)
  assert 'in use by another run' in lines[0] or 'already holds a run' in lines[0]
  assert 'wrote' in winner.stdout and 'wrote' not in loser.stdout
  weight = json.loads((workdir / 'config.json').read_text())['config'][
      'style_weight']
  assert (weight == 1.0) == ('--config.style_weight=1' in winner.args)


def test_a_held_workdir_is_refused_naming_its_run(tmp_path):
  with workdir_lib.claim(tmp_path / 'w', resume=False):
    # The holder is named by pid and command line (under xdist a worker's
    # command is python -c ..., not pytest).
    command = re.escape(psutil.Process().cmdline()[0])
    with pytest.raises(UserError, match=rf'in use by another run \(pid '
                       rf'{os.getpid()} on .*: {command}'):
      with workdir_lib.claim(tmp_path / 'w', resume=False):
        pass
  assert not (tmp_path / 'w' / workdir_lib.LOCK_FILE).exists()


def test_a_killed_run_is_taken_over_and_its_temporaries_removed(tmp_path):
  # What SIGKILL before the first state save leaves: the config, a lock
  # naming a dead process, an empty snapshots folder, a half-written file.
  workdir = tmp_path / 'w'
  (workdir / 'snapshots').mkdir(parents=True)
  config = _config()
  (workdir / 'config.json').write_text(json.dumps(
      {'config': json.loads(config.to_json())}))
  (workdir / workdir_lib.LOCK_FILE).write_text(json.dumps(
      {'pid': 999999999, 'host': socket.gethostname(), 'started': '',
       'command': 'run.py'}))
  stray = workdir / '.state.npz.0123abcd.tmp'
  stray.write_bytes(b'')
  # The same command, and --config.resume, both accept it.
  assert spec.parse(config, workdir).workdir == workdir
  resumed = spec.parse(_config(resume=str(workdir)), None)
  assert resumed.workdir == workdir and not resumed.resume
  with workdir_lib.claim(workdir, resume=False):
    assert not stray.exists()


def test_tilde_is_expanded_everywhere(tmp_path, monkeypatch):
  home = tmp_path / 'home'
  home.mkdir()
  monkeypatch.setenv('HOME', str(home))
  monkeypatch.chdir(tmp_path)
  _png(home / 'photo.png', (40, 30))
  config = _config(content='~/photo.png')
  result = transfer.run(config, '~/nst_out', log=lambda _: None)
  assert result['final'] == home / 'nst_out' / 'final.png'
  assert not (tmp_path / '~').exists()
  # A finished run leaves no state, lock or temporary file.
  left = {p.name for p in (home / 'nst_out').iterdir()}
  assert left == {'config.json', 'final.png', 'losses.jsonl', 'snapshots'}
  # ... and a second run into it, with another style, is refused.
  assert any('already holds a run' in p for p in _refusal(
      _config(content='~/photo.png', style='the_scream'),
      home / 'nst_out'))
  with pytest.raises(UserError, match='no_such_user_25 is no user'):
    spec.parse(config, '~no_such_user_25/out')


# --- One line for each refusal, before anything is written ---------------------

def _long(tmp_path) -> str:
  return str(tmp_path / ('x' * 300) / 'y')


def _bomb(tmp_path) -> str:
  """A PNG whose header says 60000x60000 pixels."""
  path = tmp_path / 'bomb.png'
  Image.new('RGB', (1, 1)).save(path)
  data = bytearray(path.read_bytes())
  data[16:24] = (60000).to_bytes(4, 'big') * 2  # IHDR width, height
  import zlib  # pylint: disable=import-outside-toplevel
  data[29:33] = zlib.crc32(bytes(data[12:29])).to_bytes(4, 'big')
  path.write_bytes(bytes(data))
  return str(path)


def _sweep_folder(tmp_path) -> str:
  """A folder of photos, the second of them truncated."""
  folder = tmp_path / 'photos'
  folder.mkdir()
  _png(folder / 'a.png', (40, 30))
  good = Path(_png(folder / 'b.png', (40, 30))).read_bytes()
  (folder / 'b.png').write_bytes(good[:len(good) // 2])
  return str(folder)


def _resume_with(tmp_path, config_text: str | None, state: bytes | None):
  workdir = tmp_path / 'old'
  workdir.mkdir()
  (workdir / 'config.json').write_text(
      config_text if config_text is not None else json.dumps(
          {'config': json.loads(_config().to_json())}))
  if state is not None:
    (workdir / 'state.npz').write_bytes(state)
  return {'resume': str(workdir)}


def _foreign_state() -> bytes:
  import io  # pylint: disable=import-outside-toplevel
  buffer = io.BytesIO()
  np.savez(buffer, __meta__=np.frombuffer(b'{"call": 0}', np.uint8))
  return buffer.getvalue()


# (name, overrides (a callable of tmp_path gives them), sweep, workdir (None:
# tmp_path/'w'; or a callable of tmp_path), words the one line must hold)
REFUSALS = [
    ('sweep list of empty items', {'sweep.style_weight': ','}, True, None,
     "config.sweep.style_weight=',' has an empty item"),
    ('sweep list with an empty item', {'sweep.style_weight': '1,,2'}, True,
     None, 'has an empty item'),
    ('sweep layer weights with an empty item',
     {'sweep.style_layer_weights': '1,1;'}, True, None, 'has an empty item'),
    ('corrupt config.json on resume',
     lambda t: _resume_with(t, '{"config": {', b''), False, None,
     'is not a config.json nst_jax wrote (JSONDecodeError'),
    ('foreign config.json on resume', lambda t: _resume_with(t, '[1, 2]', b''),
     False, None, 'is not a config.json nst_jax wrote'),
    ('corrupt state.npz on resume',
     lambda t: _resume_with(t, None, b'PK\x03\x04 not really'), False, None,
     'is not a readable run state'),
    ('foreign state.npz on resume',
     lambda t: _resume_with(t, None, _foreign_state()), False, None,
     'is not a readable run state (KeyError'),
    ('dangling symlink workdir', {}, False,
     lambda t: (t / 'link').symlink_to(t / 'gone') or t / 'link',
     'is a symbolic link to'),
    ('over-long workdir', {}, False, _long,
     ('--workdir=', 'longer than the file system allows')),
    ('over-long content', lambda t: {'content': _long(t)}, False, None,
     ('config.content: ', 'longer than the file system allows')),
    ('over-long resume', lambda t: {'resume': _long(t)}, False, None,
     ('config.resume=', 'longer than the file system allows')),
    ('empty workdir', {}, False, lambda t: '', '--workdir is empty'),
    ('~user that does not exist', {}, False, lambda t: '~nobody_25/w',
     'is no user'),
    ('weights path a folder', lambda t: {'weights': str(t)}, False, None,
     'is a folder: give the .npz file in it'),
    ('weights path an image', lambda t: {'weights': _png(t / 'v.jpg')}, False,
     None, 'not a zip archive'),
    ('all loss weights zero',
     {'content_weight': 0.0, 'style_weight': 0.0, 'tv_weight': 0.0}, False,
     None, 'are all 0'),
    ('a sweep member with all loss weights zero',
     {'content_weight': 0.0, 'sweep.style_weight': '0,1'}, True, None,
     'member 0 (style_weight=0): config.content_weight'),
    ('weight beyond float32', {'style_weight': 1e39}, False, None,
     'config.style_weight=1e+39 must be <= 1e+38'),
    ('bomb-sized header', lambda t: {'content': _bomb(t)}, False, None,
     'or save it as a JPEG'),
    ('corrupt photo in a sweep folder',
     lambda t: {'sweep.content': _sweep_folder(t)}, True, None,
     'b.png is truncated or corrupt'),
]


@pytest.mark.parametrize('overrides,sweep,workdir,words',
                         [row[1:] for row in REFUSALS],
                         ids=[row[0] for row in REFUSALS])
def test_refusals_are_one_line_and_write_nothing(tmp_path, overrides, sweep,
                                                 workdir, words):
  overrides = overrides(tmp_path) if callable(overrides) else overrides
  workdir = workdir(tmp_path) if callable(workdir) else tmp_path / 'w'
  config = _config()
  for key, value in overrides.items():
    *sections, name = key.split('.')
    (config[sections[0]] if sections else config)[name] = value
  problems = _refusal(config, workdir, sweep)
  assert len(problems) == 1, problems
  for needle in (words,) if isinstance(words, str) else words:
    assert needle in problems[0], problems
  assert 'max_pixels' not in problems[0] and len(problems[0]) < 400
  assert not (tmp_path / 'w').exists()


def test_offline_without_assets_is_one_short_line(tmp_path, monkeypatch):
  monkeypatch.setenv('NST_ASSETS_DIR', '')
  monkeypatch.setenv('NST_CACHE_DIR', str(tmp_path / 'cache'))
  lookups = []

  def offline(*args, **kwargs):
    lookups.append(args[0])
    raise socket.gaierror(-2, 'Name or service not known')
  monkeypatch.setattr(socket, 'getaddrinfo', offline)
  problems = _refusal(_config(content='tubingen', style='starry_night'),
                      tmp_path / 'w')
  assert len(problems) == 2, problems
  for line in problems:
    assert 'no connection: Name or service not known' in line, line
    assert 'NST_ASSETS_DIR' in line and len(line) < 450, line
  assert len(lookups) == 2  # one try each: no network is not worth a retry


@pytest.mark.parametrize('variable', ['NST_ASSETS_DIR', 'NST_CACHE_DIR',
                                      'NST_WEIGHTS_DIR'])
def test_over_long_folders_from_the_environment_are_one_line(
    tmp_path, monkeypatch, variable):
  if variable == 'NST_CACHE_DIR':
    monkeypatch.setenv('NST_ASSETS_DIR', '')  # the named images come from it
  monkeypatch.setenv(variable, _long(tmp_path))
  photo = _png(tmp_path / 'photo.png', (40, 30))
  (line,) = _refusal(_config(content=photo, style='the_scream'),
                     tmp_path / 'w')
  assert 'longer than the file system allows' in line or (
      'File name too long' in line), line
  assert variable in line or variable == 'NST_CACHE_DIR', line


@pytest.mark.parametrize('args,env,words', [
    (['--config.sweep.style_weight=,'], {}, 'has an empty item'),
    (['--workdir='], {}, '--workdir is empty'),
    ([], {'JAX_PLATFORMS': 'cuda'}, 'pip install -U "jax[cuda13]"'),
], ids=['sweep of empty items', 'empty workdir', 'a backend not installed'])
def test_scripts_refuse_in_one_line(tmp_path, run_script, user_error, args,
                                    env, words):
  if env and os.environ.get('JAX_PLATFORMS', '') != '':
    pytest.skip('JAX_PLATFORMS is set for this session')
  script = 'sweep.py' if 'sweep' in ''.join(args) else 'run.py'
  proc = run_script(script, *TINY_ARGS, *(args or [f'--workdir={tmp_path}/w']),
                    check=False, env=env, cwd=tmp_path)
  if env and proc.returncode == 0:
    pytest.skip('this machine has a CUDA backend')
  user_error(proc, words, lines=1)
  assert list(tmp_path.iterdir()) == []


# --- Refused or stopped after the claim: nothing left, or what was kept said ---

def test_a_start_loss_beyond_float32_is_refused_and_leaves_nothing(tmp_path):
  problems = _refusal(_config(style_weight=1e38), tmp_path / 'out' / 'w')
  assert len(problems) == 1 and "the start point's loss is inf" in problems[0]
  assert not (tmp_path / 'out').exists()  # the folders it made went too


def test_a_failed_write_says_what_was_kept(tmp_path, monkeypatch):
  monkeypatch.setattr(sys, 'orig_argv', ['python', 'scripts/run.py',
                                         '--config=configs/starry.py'])
  full = OSError(28, 'No space left on device')
  for kept, words in ((True, 'the state saved last is kept: continue with '
                       'python scripts/run.py --config=configs/starry.py '
                       f'--config.resume={tmp_path / "kept"}'),
                      (False, 'nothing was kept, as no state had been saved yet')):
    workdir = tmp_path / ('kept' if kept else 'lost')
    with pytest.raises(UserError, match='^cannot write x') as e:
      with workdir_lib.claim(workdir, resume=False) as claim:
        (workdir / 'config.json').write_text('{}')
        claim.kept = kept
        raise UserError('cannot write x (No space left on device)') from full
    assert str(e.value).endswith(words), str(e.value)
    assert workdir.exists() == kept


def test_ctrl_c_in_a_calls_last_chunk_stops_before_the_next_call(tmp_path,
                                                                  monkeypatch):
  # Two members, one per compiled call, one chunk each: SIGINT during the
  # first call's only chunk ends the run after it, with its picture and a
  # state to continue from; resuming makes the second.
  config = _config(init='noise')
  config.sweep.style_weight, config.sweep.chunk = '0.01,1', 1
  workdir = tmp_path / 'w'
  sent = []

  def log(line):
    if line.startswith('compiled and evaluated') and not sent:
      sent.append(os.kill(os.getpid(), 2))
  with pytest.raises(Interrupted, match=r'after 1 of 2 compiled calls.*'
                     r'--config\.resume=' + str(workdir)):
    transfer.run(config, workdir, log=log, sweep=True)
  pictures = sorted(p.name for p in workdir.glob('member_*.png'))
  assert len(pictures) == 1 and (workdir / 'state.npz').is_file()
  config.resume = str(workdir)
  transfer.run(config, None, log=lambda _: None, sweep=True)
  assert len(list(workdir.glob('member_*.png'))) == 2
  assert not (workdir / 'state.npz').exists()


def test_a_thumbnail_enlarged_a_lot_is_warned_about(tmp_path):
  run = spec.parse(_config(content=_png(tmp_path / 'thumb.png', (4, 4)),
                           image_size=96), tmp_path / 'w')
  (line,) = progress.upscale_warnings(run)
  assert 'thumb.png is 4x4 px, enlarged 24x' in line
  assert progress.upscale_warnings(spec.parse(_config(), tmp_path / 'w')) == []


def test_engine_checks_the_start_point():
  member = spec.parse(_config(), False).members[0]
  engine._check_start([member], np.array([1.0], np.float32))  # pylint: disable=protected-access
  with pytest.raises(UserError, match='style_weight=0.03, tv_weight=0: a weight is too '):
    engine._check_start([member], np.array([np.inf], np.float32))  # pylint: disable=protected-access
