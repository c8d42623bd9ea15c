"""Tests for nst_jax/losses/guided_style.py: the style loss per region."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nst_jax import losses
from nst_jax import vgg

CONTENT_LAYERS = ('block2_conv2',)
STYLE_LAYERS = ('block1_conv1', 'block2_conv1')
WEIGHTS = {'content': 1.0, 'style': 1e3, 'tv': 0.0, 'style_pyramid': 0.6,
           'photo': 0.5, 'content_layers': jnp.ones(1),
           'style_layers': jnp.asarray([1.0, 2.0])}


def _images(hw=(40, 36)):
  keys = jax.random.split(jax.random.key(7), 4)
  content, x = (vgg.preprocess(jax.random.uniform(k, (*hw, 3)))
                for k in keys[:2])
  styles = [vgg.preprocess(jax.random.uniform(keys[2], (44, 40, 3))),
            vgg.preprocess(jax.random.uniform(keys[3], (36, 48, 3)))]
  return content, x, styles


def _soft_masks(hw, regions):
  """float32[H, W, regions]: soft vertical bands summing to 1."""
  cols = jnp.linspace(0.0, regions, hw[1])
  centres = jnp.arange(regions) + 0.5
  bumps = jnp.exp(-jnp.square(cols[:, None] - centres[None]))
  bands = bumps / jnp.sum(bumps, axis=1, keepdims=True)
  return jnp.broadcast_to(bands[None], (hw[0], hw[1], regions))


@pytest.mark.parametrize('style_loss', losses.STYLE_LOSSES)
def test_guided_style_is_exact_on_every_path(random_params, exact_on_every_path,
                                             style_loss):
  """Loss and gradient on remat and tiles (several tiles, 2 pyramid levels)
  equal plain within 1e-5, with two styled regions (one from a style's own
  region) and a region kept as the photo; each path its own region targets."""
  content, x, styles = _images()
  masks = _soft_masks(content.shape[:2], 3)
  style_masks = [jnp.ones((*styles[0].shape[:2], 1)),
                 _soft_masks(styles[1].shape[:2], 2)]
  sources = ((0, 0), (1, 1))  # band 0: style 0 whole; band 1: style 1's 2nd
  term = losses.GuidedStyle(STYLE_LAYERS, 'normalized', style_loss, 8)
  spec = losses.LossSpec(CONTENT_LAYERS, STYLE_LAYERS,
                         normalization='normalized', style_loss=style_loss,
                         tile=8, style_levels=2,
                         extra_terms=(term, losses.PhotoHold()))

  def region_and_photo_targets(path_spec):
    targets = losses.region_targets(random_params, term, path_spec,
                                    masks[..., :2], styles, style_masks,
                                    sources, key=jax.random.key(3))
    return dict(targets, photo=losses.photo_target(content, masks[..., 2:]))

  plain = exact_on_every_path(random_params, spec, content, styles, x, WEIGHTS,
                              extra_targets=region_and_photo_targets,
                              key=jax.random.key(3))
  assert float(plain['style']) > 0 and float(plain['photo']) > 0


@pytest.mark.parametrize('style_loss', losses.STYLE_LOSSES)
def test_one_region_of_ones_is_the_whole_image_style_loss(random_params,
                                                          style_loss):
  """T = 1 everywhere, the whole painting: the guided term is the style loss
  of terms.py ('normalized'), on both pyramid levels. (The style has the
  picture's size: sliced_wasserstein's targets then need no resampling,
  which terms.py does by linear interpolation and the weighted quantile
  functions by steps.)"""
  content, x, styles = _images()
  styles = [styles[0][:40, :36]]
  term = losses.GuidedStyle(STYLE_LAYERS, 'normalized', style_loss, 8)
  kwargs = dict(normalization='normalized', style_loss=style_loss,
                sliced_projections=8, style_levels=2)
  guided_spec = losses.LossSpec(CONTENT_LAYERS, STYLE_LAYERS,
                                extra_terms=(term,), **kwargs)
  plain_spec = losses.LossSpec(CONTENT_LAYERS, STYLE_LAYERS, **kwargs)
  key = jax.random.key(3)
  guided_targets = losses.compute_targets(random_params, content, styles[:1],
                                          None, guided_spec, key=key)
  guided_targets.update(losses.region_targets(
      random_params, term, guided_spec, jnp.ones((*content.shape[:2], 1)),
      styles[:1], [jnp.ones((*styles[0].shape[:2], 1))], ((0, 0),), key=key))
  plain_targets = losses.compute_targets(random_params, content, styles[:1],
                                         None, plain_spec, key=key)
  _, got = losses.combined_loss(x, random_params, guided_targets, WEIGHTS,
                                guided_spec)
  _, want = losses.combined_loss(x, random_params, plain_targets, WEIGHTS,
                                 plain_spec)
  np.testing.assert_allclose(got['style'], want['style'], rtol=1e-5)


def test_each_region_is_measured_against_its_own_source(random_params):
  """The picture as its own style under its own masks has zero guided Gram
  loss when each region's source is (that style, the same region), and a
  positive one when the regions are swapped or the other style is named:
  `sources` picks both the style and the region of it."""
  _, _, styles = _images()
  a = jax.image.resize(styles[0], (32, 16, 3), 'linear')
  b = jax.image.resize(styles[1], (32, 16, 3), 'linear')
  x = jnp.concatenate([a, b], axis=1)  # [32, 32, 3]: two different halves
  other = jax.image.resize(styles[1], (32, 32, 3), 'linear')
  # Hard halves at block 1 (no mixed positions).
  masks = jnp.concatenate([jnp.ones((32, 16, 1)), jnp.zeros((32, 16, 1))], 1)
  masks = jnp.concatenate([masks, 1.0 - masks], axis=-1)
  term = losses.GuidedStyle(('block1_conv1',), 'normalized', 'gram')
  spec = losses.LossSpec(('block1_conv1',), ('block1_conv1',),
                         normalization='normalized', extra_terms=(term,))
  weights = {**WEIGHTS, 'style_layers': jnp.ones(1)}

  def style_loss(sources):
    targets = losses.compute_targets(random_params, x, [other, x], None, spec)
    targets.update(losses.region_targets(random_params, term, spec, masks,
                                         [other, x], [masks, masks], sources))
    return float(losses.combined_loss(x, random_params, targets, weights,
                                      spec)[1]['style'])

  right = style_loss(((1, 0), (1, 1)))
  swapped = style_loss(((1, 1), (1, 0)))
  other_style = style_loss(((0, 0), (0, 1)))
  assert swapped > 0 and other_style > 0
  assert right <= 1e-5 * min(swapped, other_style)


def test_photo_hold_counts_only_the_kept_pixels():
  x = jnp.zeros((4, 4, 3))
  photo = jnp.full((4, 4, 3), 2.0)
  kept = jnp.zeros((4, 4, 1)).at[:2].set(1.0)  # the top half
  loss = losses.PhotoHold().loss(x, {}, losses.photo_target(photo, kept),
                                 None)
  assert float(loss) == pytest.approx(4.0 / 2)  # (0 - 2)^2 on half the pixels


def test_layer_masks_halve_per_pool():
  masks = jnp.arange(16.0).reshape(4, 4, 1)
  by_layer = losses.layer_masks(masks, ('block1_conv2', 'block2_conv1',
                                        'block3_conv1'))
  assert by_layer['block1_conv2'].shape == (4, 4, 1)
  np.testing.assert_allclose(by_layer['block2_conv1'][..., 0],
                             [[2.5, 4.5], [10.5, 12.5]])
  np.testing.assert_allclose(by_layer['block3_conv1'][..., 0], [[7.5]])
