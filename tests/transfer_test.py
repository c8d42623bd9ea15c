"""Tests for nst_jax.spec, nst_jax.transfer and scripts/run.py: checks, then real runs.

The end-to-end runs use the real weights (ported on first use, as a new user's
first run does) and the shared test images, at 32-128 px and a few
iterations, in this process; scripts/run.py runs once to its end, once for
its refusal (exit status 2) and twice to be interrupted (SIGTERM, SIGINT and
SIGKILL), the rest of what it does is `transfer.run`.
"""

import json
import signal
import subprocess

import numpy as np
import pytest
from PIL import Image

from configs import default as default_config
from configs import starry
from nst_jax import engine
from nst_jax import losses
from nst_jax import memory
from nst_jax import saved_config
from nst_jax import spec
from nst_jax import transfer
from nst_jax.errors import UserError

def _config(**overrides):
  config = default_config.get_config()
  config.image_size = 64
  config.max_iterations = 4
  config.snapshot_every = 2
  for key, value in overrides.items():
    config[key] = value
  return config


def _problems(config, workdir) -> list[str]:
  with pytest.raises(UserError) as e:
    spec.parse(config, workdir)
  return str(e.value).splitlines()


def test_plan_accepts_the_shipped_configs(tmp_path):
  for config in (starry.get_config(), starry.get_config('quick'),
                 default_config.get_config()):
    plan = spec.parse(config, tmp_path / 'run')
    assert plan.loss_spec.content_layers == ('block4_conv2',)
    assert len(plan.loss_spec.style_layers) == 5
  assert max(starry.get_config('quick').image_size, 0) <= 96


def test_every_problem_is_reported_at_once(tmp_path):
  config = _config(content_layers='block4_conv2,block9_conv1',
                   style_weight=-1.0, pooling='median', max_iterations=-1,
                   style_layer_weights='1,2')
  problems = _problems(config, tmp_path / 'run')
  assert len(problems) == 5, problems
  text = '\n'.join(problems)
  for needle in ('config.content_layers', 'block9_conv1', 'config.style_weight',
                 'config.pooling', "'max'", 'config.max_iterations',
                 'config.style_layer_weights'):
    assert needle in text


def test_optimizer_settings_that_do_not_combine_are_named(tmp_path):
  problems = _problems(_config(optimizer='lbfgsb', linesearch='hager-zhang'),
                       tmp_path / 'run')
  assert len(problems) == 1 and 'hager-zhang' in problems[0]
  spec.parse(_config(optimizer='lbfgsb', linesearch='backtracking'),
             tmp_path / 'run')


def test_missing_and_corrupt_images_are_named(tmp_path):
  broken = tmp_path / 'broken.jpg'
  broken.write_bytes(b'\xff\xd8\xff\xe0 this is not really a jpeg')
  problems = _problems(_config(content=str(tmp_path / 'nope.jpg'),
                               style=str(broken)), tmp_path / 'run')
  assert any('config.content' in p and 'nope' in p for p in problems)
  assert any('config.style' in p and 'broken.jpg' in p for p in problems)


def test_image_too_small_for_deepest_layer(tmp_path):
  problems = _problems(_config(image_size=12), tmp_path / 'run')
  assert any('too small' in p and 'image_size=12' in p for p in problems)
  # Shallower layers make the same size fine.
  spec.parse(_config(image_size=12, content_layers='block2_conv2',
                      style_layers='block1_conv1,block2_conv1'),
             tmp_path / 'run')


def test_unwritable_or_used_workdir(tmp_path):
  a_file = tmp_path / 'file'
  a_file.write_text('x')
  assert any('--workdir' in p for p in _problems(_config(), a_file / 'sub'))
  used = tmp_path / 'used'
  used.mkdir()
  (used / 'config.json').write_text('{}')
  assert any('already holds a run' in p for p in _problems(_config(), used))


def test_tampered_weights_fail_before_compiling(tmp_path):
  fake = tmp_path / 'vgg19.npz'
  np.savez(fake, x=np.zeros(3))
  problems = _problems(_config(weights=str(fake)), tmp_path / 'run')
  assert any('config.weights' in p and 'port_weights.py' in p
             for p in problems)


QUICK = ['--config=configs/starry.py:quick', '--config.image_size=64',
         '--config.max_iterations=6', '--config.snapshot_every=3']


@pytest.fixture(scope='module')
def two_runs(tmp_path_factory, run_script):
  """The same config run twice: in this process (`a`, with its log lines) and
  through scripts/run.py (`b`, its CompletedProcess)."""
  root = tmp_path_factory.mktemp('runs')
  config = starry.get_config('quick')
  config.image_size, config.max_iterations, config.snapshot_every = 64, 6, 3
  lines = []
  transfer.run(config, root / 'a', log=lines.append)
  proc = run_script('run.py', *QUICK, f'--workdir={root / "b"}')
  return root, lines, proc


def test_end_to_end_run_writes_everything(two_runs):
  root, lines, _ = two_runs
  workdir = root / 'a'
  final = workdir / 'final.png'
  assert Image.open(final).size == (64, 48)  # Tübingen is 4:3
  snaps = sorted(p.name for p in (workdir / 'snapshots').iterdir())
  assert snaps == ['iter_000003.png', 'iter_000006.png']
  rows = [json.loads(l) for l in (workdir / 'losses.jsonl').read_text().splitlines()]
  assert [r['iteration'] for r in rows] == [3, 6]
  assert rows[-1]['total'] < rows[0]['total']
  assert rows[-1]['evaluations'] >= 7
  record = json.loads((workdir / 'config.json').read_text())
  assert record['config']['style'] == 'starry_night'
  assert record['weights']['params_sha256']
  assert any(l.startswith('weights:') for l in lines), lines
  assert any('iter     6/6' in l for l in lines), lines
  assert any(str(final) in l for l in lines), lines


def test_run_py_prints_progress_and_gives_the_same_png(two_runs):
  # The script: exit status 0 (run_script checks it), its progress on
  # stdout, and the bytes of the in-process run (another process, the same
  # config and seed).
  root, _, proc = two_runs
  assert 'weights:' in proc.stdout and 'iter     6/6' in proc.stdout
  assert str(root / 'b' / 'final.png') in proc.stdout
  assert (root / 'a' / 'final.png').read_bytes() == (
      root / 'b' / 'final.png').read_bytes()


def test_user_errors_exit_2_with_one_line_each(two_runs, run_script,
                                               user_error):
  # The run spec's problems, all at once: a used workdir and a layer typo.
  root, _, _ = two_runs
  proc = run_script('run.py', *QUICK, f'--workdir={root / "a"}',
                    '--config.style_layers=block1_conv1,blok2_conv1',
                    check=False)
  errors = user_error(proc, 'already holds a run', 'blok2_conv1', lines=2)
  assert proc.stdout == ''
  assert sum('blok2_conv1' in l for l in errors) == 1


def test_unknown_config_field_is_reported(tmp_path):
  import ml_collections
  config = ml_collections.ConfigDict(dict(_config().to_dict(), stlye_weight=3.0))
  assert any('stlye_weight' in p for p in _problems(config, tmp_path / 'run'))


@pytest.mark.parametrize('iteration,total,every,seconds,steps', [
    (0, 300, 50, 2.0, 50),      # fast: up to the next snapshot
    (30, 300, 50, 2.0, 20),     # resumed mid-way: back on the snapshot grid
    (290, 300, 50, 2.0, 10),    # the scale's end
    (0, 10, 10, 140.0, 2),      # 4096 px: 300 s fit two iterations
    (0, 10, 10, 900.0, 1),      # slower than the bound: still one
    (0, 300, 50, 0.0, 50),      # nothing timed yet
])
def test_chunk_steps(iteration, total, every, seconds, steps):
  assert engine.chunk_steps(iteration, total, every, seconds,
                            chunk_seconds=300.0) == steps


def test_chunks_cut_for_time_give_the_same_picture(tmp_path, monkeypatch):
  # Every chunk cut to one iteration: the state is saved after each, PNG
  # snapshots stay on the snapshot_every grid, and the pixels are the same.
  config = _config(image_size=32, max_iterations=6, snapshot_every=3,
                   content_layers='block2_conv1',
                   style_layers='block1_conv1,block2_conv1')
  whole = transfer.run(config, tmp_path / 'whole', log=lambda _: None)
  monkeypatch.setattr(engine, 'CHUNK_SECONDS', 1e-9)
  lines = []
  cut = transfer.run(config, tmp_path / 'cut', log=lines.append)
  assert sum(l.startswith('iter') for l in lines) == 6
  rows = [json.loads(l) for l in
          (tmp_path / 'cut' / 'losses.jsonl').read_text().splitlines()]
  assert [r['iteration'] for r in rows] == [1, 2, 3, 4, 5, 6]
  assert sorted(p.name for p in (tmp_path / 'cut' / 'snapshots').iterdir()) \
      == ['iter_000003.png', 'iter_000006.png']
  np.testing.assert_array_equal(np.asarray(Image.open(cut['final'])),
                                np.asarray(Image.open(whole['final'])))


@pytest.mark.slow
def test_signals_are_heard_during_a_long_chunk(tmp_path, start_script):
  # One chunk of 100000 iterations (minutes): the first SIGTERM is reported
  # while it runs, the second quits at once with one line and no crash.
  workdir = tmp_path / 'long'
  proc = start_script('run.py', '--config=configs/starry.py:quick',
                      '--config.image_size=48', '--config.max_iterations=100000',
                      '--config.snapshot_every=100000', f'--workdir={workdir}')
  for line in proc.stdout:
    if line.startswith('compiled and evaluated'):
      proc.send_signal(signal.SIGTERM)
    if line.startswith('SIGTERM: finishing this chunk'):
      proc.send_signal(signal.SIGTERM)
      break
  _, err = proc.communicate(timeout=120)
  assert proc.returncode == 130, err
  assert err.strip().splitlines() == [
      'SIGTERM again: quit without finishing the chunk; no state was saved '
      'yet, so nothing was kept: the same command starts the run again'], err
  assert not workdir.exists()  # what it had written went with it


def _starry_48(**fields):
  """starry.py:quick at 48 px, 10 iterations, a snapshot every 2, two blocks
  of VGG19 (stopping and resuming do not depend on the depth)."""
  config = starry.get_config('quick')
  config.image_size, config.max_iterations, config.snapshot_every = 48, 10, 2
  config.content_layers = 'block2_conv2'
  config.style_layers = 'block1_conv1,block2_conv1'
  for key, value in fields.items():
    config[key] = value
  return config


STARRY_48 = ['--config=configs/starry.py:quick', '--config.image_size=48',
             '--config.max_iterations=10', '--config.snapshot_every=2',
             '--config.content_layers=block2_conv2',
             '--config.style_layers=block1_conv1,block2_conv1']


@pytest.mark.slow
def test_sigint_saves_state_and_resume_matches_uninterrupted(
    tmp_path, start_script, ctrl_c_at):
  # Interrupt run.py as soon as the first chunk is reported.
  workdir = tmp_path / 'interrupted'
  proc = start_script('run.py', *STARRY_48, f'--workdir={workdir}')
  err = ctrl_c_at(proc, 'iter')
  assert f'--config.resume={workdir}' in err and 'Traceback' not in err
  assert (workdir / 'state.npz').is_file()
  snapshots = sorted((workdir / 'snapshots').iterdir())
  assert snapshots and not (workdir / 'final.png').exists()

  quiet = lambda _: None
  transfer.run(_starry_48(resume=str(workdir)), log=quiet)
  straight = transfer.run(_starry_48(), tmp_path / 'straight', log=quiet)
  straight = np.asarray(Image.open(straight['final']), np.int16)
  resumed = np.asarray(Image.open(workdir / 'final.png'), np.int16)
  assert np.abs(resumed - straight).max() <= 1
  assert not (workdir / 'state.npz').exists()
  rows = [json.loads(l) for l in (workdir / 'losses.jsonl').read_text().splitlines()]
  assert [r['iteration'] for r in rows] == [2, 4, 6, 8, 10]
  # A finished run has nothing to resume.
  with pytest.raises(UserError, match='no interrupted run'):
    transfer.run(_starry_48(resume=str(tmp_path / 'straight')), log=quiet)

  # A hard kill (the OOM killer, a lost machine) after two snapshots: the
  # state saved as the run went resumes it to the same pixels.
  killed = tmp_path / 'killed'
  proc = start_script('run.py', *STARRY_48, f'--workdir={killed}',
                      stderr=subprocess.DEVNULL)
  seen = 0
  for line in proc.stdout:
    seen += line.startswith('iter')
    if seen == 2:
      proc.kill()
      break
  proc.wait(timeout=60)
  assert proc.returncode == -signal.SIGKILL
  assert (killed / 'state.npz').is_file()
  transfer.run(_starry_48(resume=str(killed)), log=quiet)
  resumed = np.asarray(Image.open(killed / 'final.png'), np.int16)
  assert np.abs(resumed - straight).max() <= 1


def test_divergence_stops_cleanly_and_keeps_last_finite_image(tmp_path):
  config = _config(optimizer='adam', learning_rate=1e30, max_iterations=6,
                   snapshot_every=3, image_size=32,
                   content_layers='block2_conv1',
                   style_layers='block1_conv1,block2_conv1')
  lines = []
  result = transfer.run(config, tmp_path / 'run', log=lines.append)
  assert result['status'] == 'diverged' and result['final'] is None
  assert any('NaN or infinite' in l and 'learning_rate' in l for l in lines)
  kept = sorted((tmp_path / 'run' / 'snapshots').iterdir())[-1]
  pixels = np.asarray(Image.open(kept))
  assert pixels.shape == (24, 32, 3)


def test_resume_refuses_a_changed_config(tmp_path):
  config = _config()
  (tmp_path / 'config.json').write_text(json.dumps(
      {'config': json.loads(config.to_json())}))
  (tmp_path / 'state.npz').write_bytes(b'')
  changed = _config(style_weight=3.0, resume=str(tmp_path), max_iterations=9)
  with pytest.raises(UserError,
                     match=f'style_weight={config.style_weight}.*style_weight=3.0'):
    spec.check_resume(changed)
  # Only the iteration counts may change.
  assert spec.check_resume(_config(resume=str(tmp_path),
                                       max_iterations=9)) == tmp_path
  assert spec.check_resume(_config(resume=str(tmp_path),
                                   scale_iterations='7')) == tmp_path
  # Fields of a section are compared one by one; sweep.batch may change.
  batched = _config(resume=str(tmp_path))
  batched.sweep.batch = 0
  assert spec.check_resume(batched) == tmp_path
  batched.sweep.chunk = 3
  with pytest.raises(UserError, match=r'used sweep\.chunk=0 but this config '
                     r'has sweep\.chunk=3: .*sweep\.batch may change'):
    spec.check_resume(batched)


def test_resume_refuses_a_sweep_whose_optimiser_would_change(tmp_path):
  # Members one by one run jaxopt's L-BFGS, vmapped ones lbfgs_batched: the
  # saved optimiser state of one does not fit the other.
  saved = _config()
  saved.sweep.style_weight = '1,10'
  (tmp_path / 'config.json').write_text(json.dumps(
      {'config': json.loads(saved.to_json())}))
  (tmp_path / 'state.npz').write_bytes(b'')
  resumed = _config(resume=str(tmp_path))
  resumed.sweep.style_weight = '1,10'
  resumed.sweep.batch = 4
  with pytest.raises(UserError, match=r'^config\.resume: the interrupted sweep '
                     r'ran sweep\.batch=1 \(optimizer lbfgs\) and this config '
                     r'has sweep\.batch=4 \(lbfgs_batched\)'):
    spec.check_resume(resumed)
  resumed.sweep.batch = 1
  assert spec.check_resume(resumed) == tmp_path
  # Between vmapped batches the optimiser stays: allowed.
  saved.sweep.batch = 0
  (tmp_path / 'config.json').write_text(json.dumps(
      {'config': json.loads(saved.to_json())}))
  resumed.sweep.batch = 8
  assert spec.check_resume(resumed) == tmp_path


def test_runs_saved_before_a_default_changed_keep_their_values(tmp_path):
  # A config saved before the style pyramid existed ran without it: loading
  # it reproduces that run, and resuming it with today's defaults is refused.
  old = json.loads(_config().to_json())
  for field in spec.ABSENT_FIELD_VALUES:
    *sections, name = field.split('.')
    section = old
    for key in sections:
      section = section[key]
    del section[name]
  (tmp_path / 'config.json').write_text(json.dumps({'config': old}))
  loaded = saved_config.load(tmp_path / 'config.json')
  assert loaded.style_pyramid_size == 0 and loaded.style_pyramid_weight == 1.0
  # A sweep saved then ran all the members of a call under one vmap.
  assert loaded.sweep.batch == 0 and spec.default_config().sweep.batch == 1
  assert spec.default_config().style_pyramid_size != 0
  (tmp_path / 'state.npz').write_bytes(b'')
  with pytest.raises(UserError, match='style_pyramid_size=0.*style_pyramid_size=256'):
    spec.check_resume(_config(resume=str(tmp_path)))
  assert spec.check_resume(_config(
      resume=str(tmp_path), style_pyramid_size=0,
      style_pyramid_weight=1.0)) == tmp_path


def test_scale_sizes_end_at_image_size(tmp_path):
  config = _config(image_size=200, scales=3, scale_ratio=2.0)
  assert spec.scale_sizes(config) == [50, 100, 200]
  plan = spec.parse(config, tmp_path / 'run')
  (member,) = plan.members
  assert [max(hw) for hw in member.scale_hws] == [50, 100, 200]
  assert spec.style_long_side(plan.style_scale, member.scale_hws[0]) == 50
  # The smallest scale must still fit the deepest layer.
  problems = _problems(_config(image_size=64, scales=4), tmp_path / 'run2')
  assert any('smallest of config.scales=4' in p for p in problems)


def test_luminance_mode_keeps_the_content_chroma(tmp_path):
  from nst_jax import color
  from nst_jax import image as image_lib
  config = _config(preserve_color='luminance', image_size=32,
                   content_layers='block2_conv1',
                   style_layers='block1_conv1,block2_conv1', max_iterations=4)
  result = transfer.run(config, tmp_path / 'run', log=lambda _: None)
  out = np.asarray(Image.open(result['final']), np.float32) / 255
  content = image_lib.load_image(spec.parse(
      config, tmp_path / 'other').members[0].content_path, long_side=32)
  iq_out = np.asarray(color.rgb_to_yiq(out))[..., 1:]
  iq_content = np.asarray(color.rgb_to_yiq(content))[..., 1:]
  # Equal up to 8-bit rounding, except where recombination had to clip.
  in_gamut = np.all((out > 0.01) & (out < 0.99), axis=-1)
  assert in_gamut.mean() > 0.5
  np.testing.assert_allclose(iq_out[in_gamut], iq_content[in_gamut], atol=0.01)


def test_too_large_for_memory_is_refused_with_a_size_that_fits(tmp_path,
                                                                monkeypatch):
  monkeypatch.setattr(memory, 'available_memory_bytes', lambda: 6 * 2**30)
  problems = _problems(_config(image_size=2048, memory='plain'),
                       tmp_path / 'run')
  (line,) = [p for p in problems if 'GiB' in p]
  assert 'config.image_size=2048' in line and '6.0 GiB available' in line
  assert '85%' in line  # the margin it keeps is named
  fits = int(line.split('image_size <= ')[1].split(',')[0])
  assert 256 < fits < 2048
  spec.parse(_config(image_size=fits, memory='plain'), tmp_path / 'run')
  # 'auto' (the default) picks a memory-saving path instead of refusing.
  plan = spec.parse(_config(image_size=2048), tmp_path / 'run')
  assert plan.loss_spec.memory in ('remat', 'tiles')
  # A budget below what is free plans for the budget: smaller tiles.
  budgeted = spec.parse(_config(image_size=2048, memory_budget=5.0),
                        tmp_path / 'run').loss_spec
  assert budgeted.memory == 'tiles' and 0 < budgeted.tile < plan.loss_spec.tile


def test_scale_iterations_give_each_scale_its_count(tmp_path):
  config = _config(image_size=96, scales=2, scale_iterations='5,2',
                   snapshot_every=5)
  lines = []
  result = transfer.run(config, tmp_path / 'run', log=lines.append)
  rows = [json.loads(l) for l in
          (tmp_path / 'run' / 'losses.jsonl').read_text().splitlines()]
  assert [(r['scale'], r['iteration']) for r in rows] == [(1, 5), (2, 2)]
  assert result['iterations'] == 7
  # Progress per scale, and before the last scale a guess for the whole run.
  progress = [l for l in lines if ' iter ' in l]
  assert progress[0].startswith('scale 1/2 iter     5/5')
  assert '(all scales ~' in progress[0]
  assert progress[1].startswith('scale 2/2 iter     2/2')
  assert 'all scales' not in progress[1]


@pytest.mark.parametrize('value', ['5', '5,2,1', '5,x', 'a'])
def test_scale_iterations_need_one_count_per_scale(tmp_path, value):
  problems = _problems(_config(image_size=96, scales=2, scale_iterations=value),
                       tmp_path / 'run')
  assert any(p.startswith(f'config.scale_iterations={value!r}: give 2 whole')
             for p in problems), problems


def test_memory_path_is_chosen_per_scale(tmp_path, monkeypatch):
  # With room for the plain path at 256 px but not at 1024 px, the small
  # scales keep the fast plain path and only the last one saves memory.
  defaults = default_config.get_config()
  layers = tuple(defaults.style_layers.split(',')) + (defaults.content_layers,)
  need = lambda hw, memory_path: memory.estimate_memory_bytes(
      hw, layers, 10, 1, memory_path)
  available = int(need((768, 1024), 'plain') * 0.7)
  assert need((192, 256), 'plain') < 0.5 * available
  monkeypatch.setattr(memory, 'available_memory_bytes', lambda: available)
  run_spec = spec.parse(_config(image_size=1024, scales=3), tmp_path / 'run')
  paths = [s.memory for s in run_spec.scale_loss_specs]
  assert paths[0] == 'plain' and paths[-1] != 'plain', paths
  assert run_spec.loss_spec == run_spec.scale_loss_specs[-1]


def test_log_names_each_scales_memory_path(tmp_path):
  # 64 then 128 px on 32 px tiles: a 2x2 grid at 64x48, 3x4 at 128x96,
  # each named on its scale's line. Shallow layers keep the halo small.
  config = _config(image_size=128, scales=2, scale_iterations='1,1',
                   memory='tiles', tile=32, style_pyramid_size=0,
                   content_layers='block2_conv1',
                   style_layers='block1_conv1,block2_conv1')
  lines = []
  transfer.run(config, tmp_path / 'run', log=lines.append)
  paths = [l.split('; memory path: ')[1] for l in lines
           if l.startswith('content:')]
  halo = losses.tile_halo(spec.parse(config, tmp_path / 'x').loss_spec.layers)
  assert paths == [f'tiles (2x2 tiles of 32 px, halo {halo} px)',
                   f'tiles (3x4 tiles of 32 px, halo {halo} px)']
  lines = []
  transfer.run(_config(max_iterations=1), tmp_path / 'plain', log=lines.append)
  plain = [l for l in lines if l.startswith('content:')]
  assert plain[0].endswith('; memory path: plain (the whole network)'), plain


def test_style_pyramid_levels_per_scale(tmp_path):
  # Tubingen is 4:3. Levels halve each scale down to about 64 px here.
  config = _config(image_size=256, scales=3, style_pyramid_size=64)
  plan = spec.parse(config, tmp_path / 'run')
  assert [s.style_levels for s in plan.scale_loss_specs] == [1, 2, 3]
  off = spec.parse(_config(image_size=256, style_pyramid_size=0),
                   tmp_path / 'run')
  assert off.loss_spec.style_levels == 1
  # A small style image limits the levels instead of failing: at
  # style_scale 0.25 the painting is 64 px wide and 50 px high at 256 px,
  # and block5 needs 16 px a side, so it can be halved once.
  small = spec.parse(_config(image_size=256, style_pyramid_size=32,
                             style_scale=0.25), tmp_path / 'run')
  assert small.loss_spec.style_levels == 2
  # The default, 256: 512 px gets 512 and 256 px levels; 0 turns it off.
  starry_512 = starry.get_config()
  assert spec.parse(starry_512, tmp_path / 'run').loss_spec.style_levels == 2
  starry_512.style_pyramid_size = 0
  assert spec.parse(starry_512, tmp_path / 'run').loss_spec.style_levels == 1


def test_style_pyramid_runs_per_scale(tmp_path):
  # 64 then 128 px, the pyramid down to about 32 px: one coarse level at
  # the first scale, two at the second, each logged.
  config = _config(image_size=128, scales=2, scale_iterations='2,2',
                   style_pyramid_size=32, content_layers='block2_conv2',
                   style_layers='block1_conv1,block2_conv1')
  lines = []
  result = transfer.run(config, tmp_path / 'run', log=lines.append)
  assert result['iterations'] == 4
  pyramids = [l.split('; style also at ')[1].split('; memory path')[0]
              for l in lines if l.startswith('content:')]
  assert pyramids == ['32x24 px (style pyramid)',
                      '64x48, 32x24 px (style pyramid)']
  rows = [json.loads(l) for l in
          (tmp_path / 'run' / 'losses.jsonl').read_text().splitlines()]
  assert all(np.isfinite(r['total']) for r in rows)
