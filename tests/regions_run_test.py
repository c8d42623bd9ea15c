"""Regions end to end: the config fields through spec.parse and the engine."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from PIL import ImageOps

from configs import regions as regions_config
from nst_jax import losses
from nst_jax import problem
from nst_jax import spec
from nst_jax import transfer
from nst_jax import vgg
from nst_jax.errors import UserError

LABELS = Path(__file__).resolve().parents[1] / 'configs' / 'regions'


def test_the_example_parses_to_a_plan_and_the_guided_terms(tmp_path):
  config = regions_config.get_config('photo_town,quick')
  run = spec.parse(config, tmp_path / 'run')
  names = [run.regions.content.names[m.region] for m in run.regions.mapping]
  assert sorted(names) == ['blue', 'white']
  assert [m.region for m in run.regions.styled] == [names.index('blue')]
  assert run.regions.kept == (names.index('white'),)
  keys = {t.key: type(t) for t in run.loss_spec.terms}
  assert keys['style'] is losses.GuidedStyle
  assert keys['photo'] is losses.PhotoHold
  assert run.members[0].loss_weights['photo'] == 1000.0


def test_the_default_config_has_no_regions(tmp_path):
  run = spec.parse(spec.default_config(), tmp_path / 'run')
  assert run.regions is None
  assert all(t.key != 'photo' for t in run.loss_spec.terms)
  assert not any(isinstance(t, losses.GuidedStyle)
                 for t in run.loss_spec.terms)


def test_a_sweep_with_regions_colour_control_and_two_scales(tmp_path):
  """A transparent PNG's two regions, one kept as the photo; a sweep over
  the kept region's weight with preserve_color and two scales runs, logs
  the regions, and holds the kept region closer with the larger weight."""
  alpha = np.zeros((192, 256), np.uint8)
  alpha[:80] = 255  # the sky opaque, the town transparent
  rgba = np.dstack([np.full((192, 256, 3), 90, np.uint8), alpha])
  Image.fromarray(rgba, 'RGBA').save(tmp_path / 'sky.png')
  config = spec.default_config()
  config.content_regions = str(tmp_path / 'sky.png')
  config.region_styles = 'opaque=starry_night, transparent=none'
  config.region_photo_weight = 10.0
  config.region_feather = 4.0
  config.preserve_color = 'luminance'
  config.image_size, config.scales = 64, 2
  config.content_layers = 'block2_conv2'  # two blocks of VGG19: faster
  config.style_layers = 'block1_conv1,block2_conv1'
  config.max_iterations, config.snapshot_every = 15, 15
  # From noise, with a style weight that leaves the kept town's photo term
  # (~4e3 per unit of weight at the start) the larger pull at weight 1e5.
  config.init, config.style_weight = 'noise', 1e-3
  config.sweep.region_photo_weight = '0,1e5'
  lines = []
  result = transfer.run(config, tmp_path / 'run', lines.append, sweep=True)
  assert any(l.startswith('regions: opaque 4') and
             'transparent 5' in l and '-> none' in l for l in lines), lines
  assert [m['values']['region_photo_weight'] for m in result['members']] == [
      0.0, 1e5]
  photo = np.asarray(Image.open(spec.parse(config, None, sweep=True)
                                .members[0].content_path).convert('RGB')
                     .resize((64, 48), Image.LANCZOS), np.float32)
  held, free = (np.abs(np.asarray(Image.open(m['file']), np.float32)
                       - photo)[30:].mean()
                for m in reversed(result['members']))
  assert held < 0.8 * free, (held, free)


@pytest.mark.slow
def test_a_stopped_regions_run_resumes_to_the_same_pixels(
    tmp_path, start_script, ctrl_c_at):
  """Ctrl-C after the first chunk of configs/regions.py:photo_town (guided
  style, a kept region), then --config.resume: the picture of an
  uninterrupted run (the region targets are rebuilt, the state reloaded)."""
  # Three blocks of VGG19: resuming does not depend on the depth (at two,
  # this run converges after 3 iterations, too soon to stop it midway).
  overrides = {'image_size': 64, 'max_iterations': 6, 'snapshot_every': 2,
               'content_layers': 'block3_conv2',
               'style_layers': 'block1_conv1,block2_conv1,block3_conv1'}

  def config(**extra):
    c = regions_config.get_config('photo_town')
    for key, value in {**overrides, **extra}.items():
      setattr(c, key, value)
    return c

  workdir = tmp_path / 'stopped'
  proc = start_script('run.py', '--config=configs/regions.py:photo_town',
                      *(f'--config.{k}={v}' for k, v in overrides.items()),
                      f'--workdir={workdir}')
  ctrl_c_at(proc, 'iter')
  assert (workdir / 'state.npz').is_file()
  assert not (workdir / 'final.png').exists()

  quiet = lambda _: None
  transfer.run(config(resume=str(workdir)), log=quiet)
  straight = transfer.run(config(), tmp_path / 'straight', log=quiet)
  straight = np.asarray(Image.open(straight['final']), np.int16)
  resumed = np.asarray(Image.open(workdir / 'final.png'), np.int16)
  assert np.abs(resumed - straight).max() <= 1
  rows = [json.loads(l) for l in (workdir / 'losses.jsonl').read_text()
          .splitlines()]
  assert [r['iteration'] for r in rows] == [2, 4, 6]
  assert all(r['photo'] > 0 for r in rows)


def test_a_sweep_over_photos_computes_the_region_style_targets_once(
    tmp_path, monkeypatch, random_params):
  config = regions_config.get_config('photo_town,quick')
  photo = Image.open(spec.parse(config, None).members[0].content_path)
  for name, picture in (('a', photo), ('b', ImageOps.mirror(photo))):
    picture.convert('RGB').save(tmp_path / f'{name}.png')
  config.sweep.content = f'{tmp_path / "a.png"},{tmp_path / "b.png"}'
  run = spec.parse(config, None, sweep=True)
  calls = []
  real = problem._region_targets  # pylint: disable=protected-access
  monkeypatch.setattr(problem, '_region_targets',
                      lambda *a, **k: calls.append(1) or real(*a, **k))
  built = problem.build_problem(run, run.members, 0,
                                vgg.prepare_params(random_params),
                                log=lambda _: None)
  assert len(calls) == 1
  # The style targets are shared; the photo each member keeps is its own.
  assert 'style' in built.shared and 'style' not in built.per_member
  kept = built.per_member['photo']['photo']
  assert kept.shape[0] == 2 and not np.allclose(kept[0], kept[1])


@pytest.mark.parametrize('region_styles', ['', 'opaque=starry_night'])
def test_sweeping_the_photo_weight_needs_a_region_kept_as_the_photo(
    tmp_path, region_styles):
  config = spec.default_config()
  if region_styles:
    rgba = np.zeros((192, 256, 4), np.uint8)
    rgba[:80, :, 3] = 255
    Image.fromarray(rgba, 'RGBA').save(tmp_path / 'sky.png')
    config.content_regions = str(tmp_path / 'sky.png')
    config.region_styles = region_styles + ', transparent=starry_night'
  config.sweep.region_photo_weight = '0,10'
  with pytest.raises(UserError) as e:
    spec.parse(config, None, sweep=True)
  assert str(e.value).splitlines() == [spec.NO_KEPT_REGION]
