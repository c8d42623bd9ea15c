"""Regions end to end: the config fields through spec.parse and the engine."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from configs import regions as regions_config
from nst_jax import losses
from nst_jax import spec
from nst_jax import transfer

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
  style_weight with preserve_color and two scales runs, logs the regions,
  and the members differ."""
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
  config.max_iterations, config.snapshot_every = 3, 3
  config.sweep.style_weight = '0.01,1'
  lines = []
  result = transfer.run(config, tmp_path / 'run', lines.append, sweep=True)
  assert any(l.startswith('regions: opaque 4') and
             'transparent 5' in l and '-> none' in l for l in lines), lines
  first, second = (np.asarray(Image.open(m['file']), np.float32)
                   for m in result['members'])
  # Three iterations: small steps, but the style weight moved the sky.
  assert np.abs(first - second)[:20].mean() > 0
  assert all(m['photo'] > 0 for m in result['members'])


@pytest.mark.slow
def test_a_stopped_regions_run_resumes_to_the_same_pixels(
    tmp_path, start_script, ctrl_c_at):
  """Ctrl-C after the first chunk of configs/regions.py:photo_town (guided
  style, a kept region), then --config.resume: the picture of an
  uninterrupted run (the region targets are rebuilt, the state reloaded)."""
  overrides = {'image_size': 64, 'max_iterations': 6, 'snapshot_every': 2}

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
