"""Tests for nst_jax.losses against plain numpy, and its gradient in float64."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nst_jax import losses
from nst_jax import vgg


def _np_gram(f):
  flat = f.reshape(-1, f.shape[-1]).astype(np.float64)
  return flat.T @ flat


@pytest.fixture
def feats():
  rng = np.random.default_rng(0)
  return (rng.random((5, 4, 3)).astype(np.float32),
          rng.random((5, 4, 3)).astype(np.float32))


def test_gram_matrix(feats):
  f, _ = feats
  np.testing.assert_allclose(losses.gram_matrix(jnp.asarray(f)), _np_gram(f),
                             rtol=1e-5)
  np.testing.assert_allclose(losses.gram_matrix(jnp.asarray(f), True),
                             _np_gram(f) / 20, rtol=1e-5)


def test_content_loss_seed_and_normalized(feats):
  a, b = feats
  ref = np.sum((a.astype(np.float64) - b) ** 2)
  np.testing.assert_allclose(losses.content_loss(a, b, 'seed'), ref, rtol=1e-5)
  np.testing.assert_allclose(losses.content_loss(a, b, 'normalized'),
                             ref / a.size, rtol=1e-5)


def test_style_layer_loss_seed_formula(feats):
  x, s = feats
  h, w, c = x.shape
  ref = np.sum((_np_gram(s) - _np_gram(x)) ** 2) / (4 * c ** 2 * (h * w) ** 2)
  got = losses.style_layer_loss(jnp.asarray(x), jnp.asarray(_np_gram(s)), 'seed')
  np.testing.assert_allclose(got, ref, rtol=1e-5)
  # The normalised variant is the mean over C x C of per-position Grams.
  ref_n = np.mean((_np_gram(s) / (h * w) - _np_gram(x) / (h * w)) ** 2)
  got_n = losses.style_layer_loss(jnp.asarray(x),
                                  jnp.asarray(_np_gram(s) / (h * w)),
                                  'normalized')
  np.testing.assert_allclose(got_n, ref_n, rtol=1e-5)
  same = losses.gram_matrix(jnp.asarray(x))
  assert float(losses.style_layer_loss(jnp.asarray(x), same, 'seed')) == 0.0


def test_total_variation_loss():
  rng = np.random.default_rng(1)
  x = rng.random((6, 5, 3)) * 255
  a = (x[:-1, :-1] - x[1:, :-1]) ** 2
  b = (x[:-1, :-1] - x[:-1, 1:]) ** 2
  ref = np.sum((a + b) ** 1.25)
  np.testing.assert_allclose(losses.total_variation_loss(jnp.asarray(x, jnp.float32)),
                             ref, rtol=1e-5)
  np.testing.assert_allclose(
      losses.total_variation_loss(jnp.asarray(x, jnp.float32), 'normalized'),
      ref / a.size, rtol=1e-5)
  # Zero, with a zero (not NaN) gradient, on a flat image.
  g = jax.grad(losses.total_variation_loss)(jnp.ones((4, 4, 3)))
  assert float(losses.total_variation_loss(jnp.ones((4, 4, 3)))) == 0.0
  assert np.all(np.isfinite(g)) and np.all(g == 0)


def _problem(params, normalization, dtype=jnp.float32, size=32):
  spec = losses.LossSpec(('block3_conv2',), ('block1_conv1', 'block2_conv1',
                                             'block3_conv1'),
                         normalization=normalization)
  keys = jax.random.split(jax.random.key(4), 3)
  content, style, x = (vgg.preprocess(jax.random.uniform(k, (size, size, 3),
                                                         dtype)) for k in keys)
  targets = losses.compute_targets(params, content, [style], None, spec)
  weights = {'content': jnp.asarray(0.5, dtype), 'style': jnp.asarray(2.0, dtype),
             'tv': jnp.asarray(0.1, dtype),
             'content_layers': jnp.ones(1, dtype),
             'style_layers': jnp.asarray([0.2, 0.3, 0.5], dtype)}
  return spec, targets, weights, x


@pytest.mark.parametrize('normalization', losses.NORMALIZATIONS)
def test_combined_loss_terms_sum_to_total(random_params, normalization):
  spec, targets, weights, x = _problem(random_params, normalization)
  total, terms = losses.combined_loss(x, random_params, targets, weights, spec)
  assert set(terms) == {'content', 'style', 'tv', 'total'}
  np.testing.assert_allclose(terms['content'] + terms['style'] + terms['tv'],
                             total, rtol=1e-6)
  # Weights are traced: doubling style weight doubles the style term only.
  w2 = dict(weights, style=weights['style'] * 2)
  _, terms2 = jax.jit(losses.combined_loss, static_argnums=4)(
      x, random_params, targets, w2, spec)
  np.testing.assert_allclose(terms2['style'], 2 * terms['style'], rtol=1e-5)
  np.testing.assert_allclose(terms2['content'], terms['content'], rtol=1e-5)


@pytest.mark.parametrize('normalization', losses.NORMALIZATIONS)
def test_gradient_matches_finite_differences_float64(random_params,
                                                     normalization):
  with jax.enable_x64(True):
    params = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), random_params)
    spec, targets, weights, x = _problem(params, normalization, jnp.float64,
                                         size=16)
    f = lambda y: losses.combined_loss(y, params, targets, weights, spec)[0]
    g = jax.grad(f)(x)
    assert g.dtype == jnp.float64
    for seed in range(3):
      v = jax.random.normal(jax.random.key(10 + seed), x.shape, jnp.float64)
      eps = 1e-4
      fd = (f(x + eps * v) - f(x - eps * v)) / (2 * eps)
      np.testing.assert_allclose(float(jnp.vdot(g, v)), float(fd), rtol=1e-5)


def test_style_blend_blends_grams(random_params):
  spec = losses.LossSpec(('block1_conv1',), ('block1_conv1', 'block2_conv1'))
  k1, k2, k3 = jax.random.split(jax.random.key(5), 3)
  content = jax.random.normal(k1, (16, 16, 3))
  s1 = jax.random.normal(k2, (16, 16, 3))
  s2 = jax.random.normal(k3, (24, 20, 3))  # style images may differ in size
  blend = losses.compute_targets(random_params, content, [s1, s2],
                                 jnp.array([0.25, 0.75]), spec)
  only1 = losses.compute_targets(random_params, content, [s1], None, spec)
  only2 = losses.compute_targets(random_params, content, [s2], None, spec)
  for layer in spec.style_layers:
    np.testing.assert_allclose(
        blend['style'][layer],
        0.25 * only1['style'][layer] + 0.75 * only2['style'][layer], rtol=1e-5)
