"""Tests for nst_jax.sweep, scripts/sweep.py and re-making runs from outputs.

The sweeps use the real weights and the shared images at 32 px and 4
iterations. One 2x2 grid (style_weight x seed, noise start) is the reference:
a single run, a chunked and padded sweep, the same sweep sharded over 4
(forced host) devices, run.py's config from a member's PNG and sweep.py fed
the grid's config.json must all reproduce it. Scripts run in a process of
their own only where that is the point: to their end once, to be interrupted
(SIGINT), and with 4 host devices.
"""

import json
import os
from pathlib import Path
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from PIL import Image

from configs import gatys_sums
from configs import starry_sweep
from nst_jax import engine
from nst_jax import image as image_lib
from nst_jax import cli
from nst_jax import saved_config
from nst_jax import spec
from nst_jax import transfer
from nst_jax.errors import UserError

REPO = Path(__file__).resolve().parents[1]


def _config(**sweep_fields):
  # The sums of the previous defaults: from noise, 4 iterations at 32 px,
  # style_weight 1 and 100 give clearly different pictures there (with the
  # current means, style dominates both and the two look alike).
  config = gatys_sums.get_config()
  config.image_size = 32
  config.max_iterations = 4
  # Two blocks of VGG19, not five: what a sweep does per member does not
  # depend on the depth, and the programs compile in about half the time.
  config.content_layers = 'block2_conv2'
  config.style_layers = 'block1_conv1,block2_conv1'
  config.snapshot_every = 2
  config.init = 'noise'
  for key, value in sweep_fields.items():
    config.sweep[key] = value
  return config


def _pixels(path) -> np.ndarray:
  return np.asarray(Image.open(path).convert('RGB'), np.int16)


def _max_diff(a, b) -> int:
  return int(np.abs(_pixels(a) - _pixels(b)).max())


@pytest.fixture(scope='module')
def grid(tmp_path_factory):
  """The reference: style_weight 1, 100 x seed 0, 1, all four in one call."""
  workdir = tmp_path_factory.mktemp('grid') / 'sweep'
  lines = []
  result = transfer.run(_config(style_weight='1,100', seed='0,1'), workdir,
                        log=lines.append, sweep=True)
  return result, lines


# --- Planning (nothing compiled) ---------------------------------------------------

def _plan(config, workdir):
  return spec.parse(config, workdir, sweep=True)


def test_grid_and_zip_members(tmp_path):
  plan = _plan(_config(style_weight='1e-2,1', tv_weight='0,1,10'),
               tmp_path / 'a')
  assert plan.fields == ('style_weight', 'tv_weight')
  # The first field varies slowest: rows of the contact sheet.
  assert [m.values for m in plan.members] == [
      {'style_weight': s, 'tv_weight': t}
      for s in (0.01, 1.0) for t in (0.0, 1.0, 10.0)]
  plan = _plan(
      _config(mode='zip', style_weight='1,10', seed='3,4',
              style_layer_weights='1,1; 0,0.5'), tmp_path / 'b')
  assert [m.values for m in plan.members] == [
      {'style_weight': 1.0, 'style_layer_weights': '1,1', 'seed': 3},
      {'style_weight': 10.0, 'style_layer_weights': '0,0.5', 'seed': 4}]
  member = plan.members[1].config
  assert (member.style_weight, member.seed) == (10.0, 4)
  assert member.style_layer_weights == '0,0.5'
  assert plan.members[1].loss_weights['style_layers'] == (0, 0.5)
  assert not spec.swept_fields(member)
  spec.parse(member, tmp_path / 'c')  # a valid single-run config


def test_every_sweep_problem_is_reported_at_once(tmp_path):
  config = _config(mode='zip', style_weight='1,x', tv_weight='1,2,3',
                   content_weight='-1', style_layer_weights='1,2;1,1,1',
                   chunk=-2)
  config.init = 'content'
  config.sweep.seed = '0,1'
  with pytest.raises(UserError) as e:
    _plan(config, tmp_path / 'run')
  text = str(e.value)
  for needle in ("config.sweep.style_weight='1,x'", 'config.sweep.content_weight',
                 'config.sweep.style_layer_weights', 'config.sweep.chunk=-2',
                 "config.init='content'"):
    assert needle in text, text
  with pytest.raises(UserError, match="mode='zip' needs lists of one length"):
    _plan(_config(mode='zip', style_weight='1,2', tv_weight='1,2,3'),
                     tmp_path / 'run')
  with pytest.raises(UserError, match='lists no values'):
    _plan(_config(), tmp_path / 'run')


def test_run_refuses_a_sweep_and_accepts_an_empty_one(tmp_path):
  with pytest.raises(UserError, match='config.sweep.tv_weight is set.*sweep.py'):
    spec.parse(_config(tv_weight='1,2'), tmp_path / 'run')
  spec.parse(_config(), tmp_path / 'run')
  for variant in ('', 'quick'):
    config = starry_sweep.get_config(variant)
    plan = _plan(config, tmp_path / 'run')
    assert len(plan.members) == 4 and len(plan.fields) == 2
  assert starry_sweep.get_config('quick').image_size <= 64


def test_chunk_layout_pads_to_the_device_count():
  assert engine.chunk_layout(4, 0, 1) == [[0, 1, 2, 3]]
  assert engine.chunk_layout(3, 0, 4) == [[0, 1, 2, 2]]
  assert engine.chunk_layout(3, 2, 1) == [[0, 1], [2, 2]]
  assert engine.chunk_layout(3, 4, 1) == [[0, 1, 2]]
  assert engine.chunk_layout(5, 3, 2) == [[0, 1, 2, 3], [4, 4, 4, 4]]
  assert engine.chunk_layout(1, 0, 8) == [[0] * 8]


def test_member_names_say_their_values():
  assert spec.member_file(3, {'style_weight': 10.0, 'tv_weight': 1.0}, 4) == (
      'member_03_style_weight=10_tv_weight=1.png')
  assert spec.member_file(7, {'style_layer_weights': '1,0.5', 'seed': 2},
                          120) == 'member_007_style_layer_weights=1,0.5_seed=2.png'
  assert spec.member_file(0, {'content': '/photos/a cat.jpg'}, 2) == (
      'member_00_content=a_cat.png')


# --- One grid, every way ------------------------------------------------------------

def test_grid_writes_everything_with_one_compile(grid):
  result, lines = grid
  workdir = result['workdir']
  names = sorted(p.name for p in workdir.iterdir())
  assert names == ['config.json', 'contact_sheet.png', 'losses.jsonl',
                   'member_00_style_weight=1_seed=0.png',
                   'member_01_style_weight=1_seed=1.png',
                   'member_02_style_weight=100_seed=0.png',
                   'member_03_style_weight=100_seed=1.png', 'results.jsonl',
                   'snapshots']
  # A snapshot per member and chunk.
  assert sorted(p.name for p in (workdir / 'snapshots' /
                                 'member_02_style_weight=100_seed=0').iterdir()
                ) == ['iter_000002.png', 'iter_000004.png']
  rows = [json.loads(l) for l in (workdir / 'results.jsonl').read_text().splitlines()]
  assert [r['values'] for r in rows] == [
      {'style_weight': s, 'seed': n} for s in (1.0, 100.0) for n in (0, 1)]
  for row in rows:
    assert row['iterations'] == 4 and row['evaluations'] >= 5
    assert row['status'] == 'finished'
  assert rows[2]['style'] > 10 * rows[0]['style']  # 100x the style weight
  # Each member's own loss fell from its first chunk to its last, and its
  # last row is what results.jsonl reports for it.
  progress = [json.loads(l) for l in
              (workdir / 'losses.jsonl').read_text().splitlines()]
  assert [(p['member'], p['iteration']) for p in progress] == [
      (m, i) for i in (2, 4) for m in range(4)]
  for member, row in enumerate(rows):
    first, last = [p for p in progress if p['member'] == member]
    assert last['total'] < first['total'], (member, first, last)
    assert last['total'] == row['total'] and last['style'] == row['style']
  record = json.loads((workdir / 'config.json').read_text())
  assert record['config']['sweep']['style_weight'] == '1,100'
  assert len(record['members']) == 4 and record['weights']['params_sha256']
  # One trace (so one compile) of each program for the whole sweep.
  assert result['traces'] == {'init': 1, 'chunk': 1, 'terms': 1}
  assert any('iter     4/4' in l for l in lines)


def test_member_png_holds_its_own_single_run_config(grid):
  result, _ = grid
  member = result['members'][3]['file']
  meta = image_lib.read_png_metadata(member)
  config = json.loads(meta['nst_jax:config'])
  assert config['style_weight'] == 100.0 and config['seed'] == 1
  assert not any(config['sweep'][f] for f in spec.SWEEPABLE)
  assert meta['nst_jax:seed'] == '1'
  assert len(meta['nst_jax:weights_sha256']) == 64
  versions = json.loads(meta['nst_jax:versions'])
  assert {'jax', 'jaxlib', 'flax', 'jaxopt', 'nst_jax'} <= set(versions)
  # The contact sheet holds the sweep's own config.
  sheet = json.loads(image_lib.read_png_metadata(result['sheet'])['nst_jax:config'])
  assert sheet['sweep']['seed'] == '0,1'


def test_member_equals_a_single_run(grid, tmp_path):
  result, _ = grid
  plan = _plan(_config(style_weight='1,100', seed='0,1'), tmp_path / 'x')
  single = transfer.run(plan.members[3].config, tmp_path / 'single',
                        log=lambda *_: None)
  assert _max_diff(single['final'], result['members'][3]['file']) <= 1
  row = result['members'][3]
  assert row['evaluations'] == single['evaluations']
  assert row['total'] == pytest.approx(single['losses']['total'], rel=1e-3)


def test_different_seeds_give_different_images(grid):
  members = grid[0]['members']
  diff = np.abs(_pixels(members[0]['file']) - _pixels(members[1]['file']))
  assert diff.mean() > 5  # 4 iterations from different noise


def test_chunked_and_padded_sweep_matches(grid, tmp_path):
  # Grid members 1, 2, 3 in calls of 2: the last call pads with a copy.
  lines = []
  result = transfer.run(
      _config(mode='zip', style_weight='1,100,100', seed='1,0,1', chunk=2),
      tmp_path / 'zip', log=lines.append, sweep=True)
  assert [m['values'] for m in result['members']] == [
      {'style_weight': 1.0, 'seed': 1}, {'style_weight': 100.0, 'seed': 0},
      {'style_weight': 100.0, 'seed': 1}]
  assert any('2 call(s) of 2' in l for l in lines)
  assert result['traces']['chunk'] == 1
  reference = grid[0]['members']
  for member, same in zip(result['members'], reference[1:]):
    assert _max_diff(member['file'], same['file']) <= 1
    assert member['iterations'] == same['iterations']
  # Not a 2-D grid: tiles in order, two columns for three members.
  width, _ = Image.open(result['sheet']).size
  assert 2 * 128 <= width < 3 * 128


@pytest.fixture(scope='module')
def one_by_one_batched_lbfgs(tmp_path_factory):
  """The grid's members one after another (batch 1) on 'lbfgs_batched', the
  optimiser that vmapped members switch to (optimize.for_batch)."""
  config = _config(style_weight='1,100', seed='0,1')
  config.optimizer = 'lbfgs_batched'
  return transfer.run(config, tmp_path_factory.mktemp('one_by_one') / 'sweep',
                      log=lambda *_: None, sweep=True)


@pytest.mark.parametrize('batch', [0, 3])
def test_members_evaluated_together_match(one_by_one_batched_lbfgs, tmp_path,
                                          batch):
  # All 4 members under one vmap (0), or 3 and then 1 (3, lax.map's
  # remainder) reproduce them one by one on the same optimiser, evaluation
  # for evaluation.
  result = transfer.run(
      _config(style_weight='1,100', seed='0,1', batch=batch),
      tmp_path / 'batched', log=lambda *_: None, sweep=True)
  for member, same in zip(result['members'],
                          one_by_one_batched_lbfgs['members'], strict=True):
    assert _max_diff(member['file'], same['file']) <= 1
    assert member['iterations'] == same['iterations']
    assert member['evaluations'] == same['evaluations']


def _find_tile(sheet: np.ndarray, tile: np.ndarray) -> tuple[int, int]:
  """(row, column) of the top-left corner of `tile` inside `sheet`."""
  th, tw = tile.shape[:2]
  ys, xs = np.nonzero((sheet == tile[0, 0]).all(-1))
  for y, x in zip(ys, xs):
    if (sheet[y:y + th, x:x + tw].shape == tile.shape
        and (sheet[y:y + th, x:x + tw] == tile).all()):
      return int(y), int(x)
  raise AssertionError('tile not found in the contact sheet')


def test_contact_sheet_is_a_labelled_2x2_grid(grid):
  sheet = np.asarray(Image.open(grid[0]['sheet']).convert('RGB'))
  # 32 x 24 px members, shown at 128 px: each pixel a 4 x 4 block.
  corners = [_find_tile(sheet, _pixels(m['file']).astype(np.uint8)
                        .repeat(4, 0).repeat(4, 1))
             for m in grid[0]['members']]
  (y0, x0), (y1, x1), (y2, x2), (y3, x3) = corners
  # Rows are style weights, columns seeds; room for labels under each tile.
  assert y0 == y1 and y2 == y3 and y2 >= y0 + 96 + 2 * 14
  assert x0 == x2 and x1 == x3 and x1 >= x0 + 128
  height, width = sheet.shape[:2]
  assert x1 + 128 <= width < x1 + 2 * 128  # no room for a third column
  assert y2 + 96 <= height < y2 + 2 * 96
  # Row headers left of the tiles; black label text on white.
  gray = sheet.min(-1)
  assert (gray[:, :x0] < 64).sum() > 100
  assert (gray[y0 + 96:y2] < 64).sum() > 200


@pytest.mark.slow
def test_sharded_over_four_devices_matches(grid, tmp_path):
  driver = tmp_path / 'driver.py'
  driver.write_text(textwrap.dedent('''
      import json, sys
      import jax
      from nst_jax import saved_config, transfer
      assert jax.device_count() == 4, jax.devices()
      result = transfer.run(saved_config.load(sys.argv[1]), sys.argv[2],
                            log=lambda *_: None, sweep=True)
      sharding = result['sharding']
      print(json.dumps({'spec': list(sharding.spec),
                        'mesh': dict(sharding.mesh.shape),
                        'on': len(sharding.device_set),
                        'devices': [m['device'] for m in result['members']]}))
  '''))
  env = dict(os.environ, XLA_FLAGS='--xla_force_host_platform_device_count=4',
             JAX_PLATFORMS='cpu')
  proc = subprocess.run(
      [sys.executable, str(driver), str(grid[0]['workdir'] / 'config.json'),
       str(tmp_path / 'sharded')], cwd=REPO, env=env, capture_output=True,
      text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  out = json.loads(proc.stdout.strip().splitlines()[-1])
  assert len(set(out['devices'])) == 4, out
  assert out['spec'] == ['members'] and out['mesh'] == {'members': 4}, out
  assert out['on'] == 4, out
  for member in grid[0]['members']:
    assert _max_diff(member['file'], tmp_path / 'sharded' / member['file'].name) <= 1
  rows = [json.loads(l) for l in
          (tmp_path / 'sharded' / 'results.jsonl').read_text().splitlines()]
  assert len({r['device'] for r in rows}) == 4


# --- Re-making results from their files ---------------------------------------------

def test_run_py_config_from_a_member_png_and_json(grid, tmp_path,
                                                  script_config):
  # What scripts/run.py --config=<file> runs (its argv handling, here):
  # a member's PNG, then that run's own PNG and config.json.
  quiet = lambda _: None
  member = grid[0]['members'][1]['file']
  first = transfer.run(script_config(f'--config={member}'), tmp_path / 'a',
                       log=quiet)['final']
  assert _max_diff(first, member) <= 1
  assert (image_lib.read_png_metadata(first)['nst_jax:config'] ==
          image_lib.read_png_metadata(member)['nst_jax:config'])
  # From the run's own PNG and config.json: the same bytes.
  transfer.run(script_config(f'--config={first}'), tmp_path / 'b', log=quiet)
  transfer.run(script_config(f'--config={tmp_path / "a" / "config.json"}'),
               tmp_path / 'c', log=quiet)
  for other in 'bc':
    assert (tmp_path / other / 'final.png').read_bytes() == first.read_bytes()


def test_saved_config_overrides_and_bad_files(grid, tmp_path, script_config):
  member = grid[0]['members'][2]['file']
  config = saved_config.load(member)
  assert (config.style_weight, config.seed, config.image_size) == (100.0, 0, 32)
  # The command line loads a member's PNG once, as its config, and checks
  # overrides against its fields.
  argv, loaded = cli.load_config_argv(['run.py', '--config', str(member),
                                       '--config.image_size=48'])
  assert argv[-1] == '--config.image_size=48'
  assert loaded.to_json() == config.to_json()
  with pytest.raises(UserError, match='image_sise: unknown field; did you '
                     'mean image_size'):
    cli.load_config_argv(['run.py', f'--config={member}',
                          '--config.image_sise=48'])
  overridden = script_config('--config', str(member), '--config.image_size=48')
  assert (overridden.image_size, overridden.style_weight) == (48, 100.0)

  plain = tmp_path / 'plain.png'
  Image.new('RGB', (8, 8)).save(plain)
  with pytest.raises(UserError, match=f'{plain}.*nst_jax') as e:
    script_config(f'--config={plain}')
  assert len(str(e.value).splitlines()) == 1
  bad_json = tmp_path / 'config.json'
  bad_json.write_text('{"weights": {}}')
  with pytest.raises(UserError, match="no config object"):
    saved_config.load(bad_json)


def test_sweep_config_problems_used_workdir_and_run_refusal(grid, tmp_path,
                                                            script_config):
  config = script_config('--config=configs/starry_sweep.py:quick',
                         '--config.sweep.tv_weight=1,-3',
                         '--config.sweep.mode=zap')
  with pytest.raises(UserError) as e:
    _plan(config, tmp_path / 's')
  problems = str(e.value).splitlines()
  assert len(problems) == 2, problems
  assert any('config.sweep.tv_weight' in p for p in problems), problems
  assert any('config.sweep.mode' in p and 'zap' in p for p in problems)
  # A sweep's config.json stands for its config; its workdir is taken.
  workdir = grid[0]['workdir']
  with pytest.raises(UserError, match='already holds a run'):
    _plan(script_config(f'--config={workdir / "config.json"}'), workdir)
  # run.py will not run a sweep's config.
  with pytest.raises(UserError, match='scripts/sweep.py'):
    spec.parse(script_config(f'--config={grid[0]["sheet"]}'), tmp_path / 'r')


def test_sweep_py_reruns_a_sweep_to_the_same_bytes(grid, tmp_path, run_script):
  # The script to its end, from a sweep's config.json, into a new workdir:
  # the same bytes as the sweep made in this process (same machine, seeds).
  workdir = grid[0]['workdir']
  proc = run_script('sweep.py', f'--config={workdir / "config.json"}',
                    f'--workdir={tmp_path / "again"}')
  assert 'wrote 4 images' in proc.stdout
  for member in grid[0]['members']:
    again = tmp_path / 'again' / member['file'].name
    assert again.read_bytes() == member['file'].read_bytes()


def test_luminance_member_is_recoloured_like_its_single_run(tmp_path):
  config = _config(style_weight='1,100')
  config.init = 'content'
  config.preserve_color = 'luminance'
  result = transfer.run(config, tmp_path / 'sweep', log=lambda _: None,
                        sweep=True)
  member = result['members'][1]['file']
  single = transfer.run(saved_config.load(member),
                        tmp_path / 'single', log=lambda _: None)
  assert _max_diff(member, single['final']) <= 1
  # Recoloured, not the grey luminance image the optimiser works on.
  rgb = _pixels(member)
  assert np.abs(rgb[..., 0] - rgb[..., 2]).max() > 10


# --- Every control in a sweep ----------------------------------------------------------

CONTROLS = {
    # Coarse-to-fine: each member upsamples its own coarse result.
    'multiscale': dict(fields=dict(content_weight='0,1000'),
                       config=dict(scales=2, image_size=48, init='content')),
    # Each seed draws its own projections: per-member style targets.
    'sliced_wasserstein_seeds': dict(
        fields=dict(seed='0,1'),
        config=dict(style_loss='sliced_wasserstein', init='content')),
    # Photos of two sizes (two calls), colours matched to each photo: per-member
    # content and style targets.
    'contents_histogram': dict(
        fields=dict(content='tubingen,neuschwanstein,tubingen',
                    content_weight='0,1,1000', mode='zip'),
        config=dict(preserve_color='histogram', init='content')),
    'blended_styles': dict(
        fields=dict(content_weight='0,1000'),
        config=dict(style='starry_night,the_scream', style_blend='3,1',
                    style_scale=1.5, init='content')),
}


@pytest.mark.parametrize('name', CONTROLS)
def test_every_control_member_equals_its_single_run(name, tmp_path):
  case = CONTROLS[name]
  config = _config(**case['fields'])
  for key, value in case['config'].items():
    config[key] = value
  result = transfer.run(config, tmp_path / 'sweep', log=lambda _: None,
                        sweep=True)
  last = result['members'][-1]
  single = transfer.run(saved_config.load(last['file']), tmp_path / 'single',
                        log=lambda _: None)
  assert _max_diff(last['file'], single['final']) <= 1
  assert last['evaluations'] == single['evaluations']
  # The members are really different runs (L-BFGS does not see a common
  # scale of all loss weights, so the cases change the balance or the photo).
  assert len({_pixels(m['file']).tobytes() for m in result['members']}) == len(
      result['members'])


def test_content_folder_members_and_sheet(tmp_path):
  photos = tmp_path / 'photos'
  photos.mkdir()
  for name in ('tubingen', 'neuschwanstein'):
    src = image_lib.resolve_image(name)
    (photos / f'{name}{src.suffix}').write_bytes(src.read_bytes())
  (photos / 'notes.txt').write_text('not a photo')
  config = _config(content=str(photos))
  config.init = 'content'
  plan = _plan(config, tmp_path / 'sweep')
  assert [m.file for m in plan.members] == [
      'member_00_content=neuschwanstein.png', 'member_01_content=tubingen.png']
  assert len(engine.calls_of(plan, 1)) == 2  # two sizes: one call each
  empty = tmp_path / 'empty'
  empty.mkdir()
  with pytest.raises(UserError, match='folder with no images'):
    _plan(_config(content=str(empty)), tmp_path / 'sweep2')


@pytest.mark.slow
def test_sweep_survives_ctrl_c_and_resumes_to_the_same_pixels(
    grid, tmp_path, start_script, ctrl_c_at):
  workdir = tmp_path / 'interrupted'
  saved = grid[0]['workdir'] / 'config.json'
  proc = start_script('sweep.py', f'--config={saved}', f'--workdir={workdir}')
  err = ctrl_c_at(proc, 'members')
  assert f'--config.resume={workdir}' in err and 'Traceback' not in err
  assert (workdir / 'state.npz').is_file()
  assert not (workdir / 'contact_sheet.png').exists()
  config = saved_config.load(saved)
  config.resume = str(workdir)
  transfer.run(config, None, log=lambda _: None, sweep=True)
  for member in grid[0]['members']:
    assert _max_diff(member['file'], workdir / member['file'].name) <= 1
  assert not (workdir / 'state.npz').exists()
