"""Every example config runs end to end at its ':quick' size."""

import importlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nst_jax import transfer

CONFIGS = Path(__file__).resolve().parents[1] / 'configs'
EXAMPLES = [
    ('starry', 'quick'),
    ('multiscale', 'quick'),
    ('preserve_color', 'quick'),
    ('preserve_color', 'histogram,quick'),
    ('blend_styles', 'quick'),
    ('noise_avg_pool', 'quick'),
    ('style_losses', 'mean_cov,quick'),
    ('style_losses', 'sliced_wasserstein,quick'),
    ('style_losses', 'quick'),
    ('bounded', 'quick'),
    ('gatys_sums', 'quick'),
    ('highres', 'quick'),
    ('style_pyramid', 'quick'),
    ('regions', 'quick'),
    ('regions', 'photo_town,quick'),
]


def test_every_example_config_is_listed():
  listed = {name for name, _ in EXAMPLES}
  files = {p.stem for p in CONFIGS.glob('*.py')}
  # default: the field reference; from_file: loads saved runs; starry_sweep:
  # run by tests/sweep_test.py; video: run by tests/video_test.py.
  assert files - listed == {'__init__', 'default', 'from_file', 'starry_sweep',
                            'video'}


@pytest.mark.parametrize('name,variant', EXAMPLES)
def test_example_runs_at_quick_size(name, variant, tmp_path):
  config = importlib.import_module(f'configs.{name}').get_config(variant)
  config.max_iterations = min(config.max_iterations, 6)
  if config.scale_iterations:
    config.scale_iterations = ','.join(
        str(min(int(n), 6)) for n in config.scale_iterations.split(','))
  result = transfer.run(config, tmp_path / 'run', log=lambda _: None)
  assert result['status'] in ('finished', 'converged')
  pixels = np.asarray(Image.open(result['final']))
  long_side = max(pixels.shape[:2])
  assert long_side == config.image_size
  assert pixels.std() > 1  # a picture, not a flat image
