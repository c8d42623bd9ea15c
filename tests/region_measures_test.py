"""Tests for nst_jax/region_measures.py: compare.py's measures per region."""

import jax.numpy as jnp
import numpy as np
import pytest

from nst_jax import compare
from nst_jax import losses
from nst_jax import region_measures
from nst_jax import vgg


@pytest.fixture(scope='module')
def images():
  """A 32x40 photo, a painting, and masks: top 12 rows 'sky', the rest 'town'."""
  rng = np.random.default_rng(0)
  yy, xx = np.mgrid[0:32, 0:40] / 6.0
  photo = np.stack([0.5 + 0.4 * np.sin(xx + yy), 0.5 + 0.4 * np.cos(yy),
                    0.3 + 0.2 * np.sin(2 * xx)], -1).astype(np.float32)
  painting = rng.uniform(size=(32, 40, 3)).astype(np.float32)
  masks = np.zeros((32, 40, 2), np.float32)
  masks[:12, :, 0] = 1.0
  masks[12:, :, 1] = 1.0
  return photo, painting, masks


def test_ssim_map_averages_to_compares_ssim(images):
  photo, painting, _ = images
  a, b = photo[..., 0], painting[..., 1]
  values = compare.ssim_map(a, b)
  assert values.shape == (22, 30)
  assert float(jnp.mean(values)) == pytest.approx(float(compare.ssim(a, b)),
                                                  rel=1e-6)


def test_region_ssim_sees_only_its_region(images):
  photo, painting, masks = images
  picture = photo.copy()
  picture[20:] = painting[20:]  # the town's lower part replaced
  structure = np.asarray(region_measures.region_ssim(picture, photo, masks))
  assert structure[0] == pytest.approx(1.0, abs=1e-6)  # the sky is untouched
  assert structure[1] < 0.6


def test_whole_painting_style_is_compares_style(random_params, images):
  photo, painting, _ = images
  picture = np.clip(photo + 0.1 * painting, 0, 1)
  ones = np.ones((32, 40, 1), np.float32)
  target = region_measures.RegionTarget('all', painting, None)
  row, = region_measures.measure_regions(random_params, [picture], photo, ones,
                                         [target])
  # compare.py's style by its docstring (compare.measure also runs its
  # sliced measures, four times slower to compile).
  def grams(image):
    feats = vgg.extract_features(random_params, vgg.preprocess(image[None]),
                                 compare.EVAL_LAYERS)
    return [losses.gram_matrix(feats[layer][0], normalize=True)
            for layer in compare.EVAL_LAYERS]
  want = np.mean([np.linalg.norm(x - p) / np.linalg.norm(p)
                  for x, p in zip(grams(picture), grams(painting))])
  assert row['all_style'] == pytest.approx(want, rel=1e-4)
  luma = np.array([0.299, 0.587, 0.114], np.float32)
  assert row['all_structure'] == pytest.approx(
      float(compare.ssim(picture @ luma, photo @ luma)), rel=1e-5)


def test_a_region_matching_its_paintings_region_is_at_zero(random_params,
                                                           images):
  photo, painting, masks = images
  # The picture's sky is the painting's sky: measured against the painting's
  # own sky it is at 0; against the whole painting, not.
  picture = np.where(masks[..., :1] > 0, painting, photo)
  targets = [region_measures.RegionTarget('sky', painting, masks[..., 0]),
             region_measures.RegionTarget('town', None, None)]
  row, = region_measures.measure_regions(random_params, [picture], photo,
                                         masks, targets)
  assert set(row) == {'sky_structure', 'sky_style', 'town_structure'}
  # Not 0: the receptive fields of the positions near the sky's edge see the
  # photo's town, and deep layers' positions straddle it.
  whole = region_measures.measure_regions(
      random_params, [picture], photo, masks,
      [region_measures.RegionTarget('sky', painting, None), targets[1]])[0]
  assert row['sky_style'] < 0.75 * whole['sky_style']
  # The town is the photo; only its windows within 5 px of the sky see the
  # painting.
  assert 0.8 < row['town_structure'] < 1.0
  assert row['sky_structure'] < 0.5


def test_a_picture_equal_to_the_painting_is_at_zero_in_every_region(
    random_params, images):
  _, painting, masks = images
  targets = [region_measures.RegionTarget(name, painting, masks[..., r])
             for r, name in enumerate(('sky', 'town'))]
  row, = region_measures.measure_regions(random_params, [painting], painting,
                                         masks, targets)
  assert row['sky_style'] == pytest.approx(0.0, abs=1e-5)
  assert row['town_style'] == pytest.approx(0.0, abs=1e-5)
  assert row['sky_structure'] == pytest.approx(1.0, abs=1e-6)


def test_mismatched_masks_are_refused(random_params, images):
  photo, _, masks = images
  with pytest.raises(ValueError, match='do not fit the photo'):
    region_measures.measure_regions(random_params, [photo], photo, masks[:16],
                                    [region_measures.RegionTarget('a', None,
                                                                  None)] * 2)
