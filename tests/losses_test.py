"""Tests for nst_jax.losses against plain numpy, and its gradient in float64."""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nst_jax import losses
from nst_jax import vgg


def _layer_loss(term, f, target):
  """A term's loss of one whole feature map f float32[h, w, C]."""
  f = jnp.asarray(f)
  stat = term.statistic('block1_conv1', f, target)
  return term.distance('block1_conv1', stat, target, f.shape[0] * f.shape[1])


def content_loss(a, b, normalization):
  return _layer_loss(losses.Content(('block1_conv1',), normalization),
                     a, {'features': jnp.asarray(b)})


def style_layer_loss(f, gram, normalization):
  return _layer_loss(losses.Gram(('block1_conv1',), normalization), f, gram)


def mean_cov_layer_loss(f, target, normalization):
  return _layer_loss(losses.MeanCov(('block1_conv1',), normalization), f,
                     target)


def sliced_wasserstein_layer_loss(f, target, normalization):
  return _layer_loss(losses.SlicedWasserstein(('block1_conv1',),
                                              normalization), f, target)


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
  np.testing.assert_allclose(content_loss(a, b, 'seed'), ref, rtol=1e-5)
  np.testing.assert_allclose(content_loss(a, b, 'normalized'),
                             ref / a.size, rtol=1e-5)


def test_style_layer_loss_seed_formula(feats):
  x, s = feats
  h, w, c = x.shape
  ref = np.sum((_np_gram(s) - _np_gram(x)) ** 2) / (4 * c ** 2 * (h * w) ** 2)
  got = style_layer_loss(jnp.asarray(x), jnp.asarray(_np_gram(s)), 'seed')
  np.testing.assert_allclose(got, ref, rtol=1e-5)
  # The normalised variant is the mean over C x C of per-position Grams.
  ref_n = np.mean((_np_gram(s) / (h * w) - _np_gram(x) / (h * w)) ** 2)
  got_n = style_layer_loss(jnp.asarray(x),
                                  jnp.asarray(_np_gram(s) / (h * w)),
                                  'normalized')
  np.testing.assert_allclose(got_n, ref_n, rtol=1e-5)
  same = losses.gram_matrix(jnp.asarray(x))
  assert float(style_layer_loss(jnp.asarray(x), same, 'seed')) == 0.0


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


def _problem(params, normalization, dtype=jnp.float32, size=32,
             style_loss='gram'):
  spec = losses.LossSpec(('block3_conv2',), ('block1_conv1', 'block2_conv1',
                                             'block3_conv1'),
                         normalization=normalization, style_loss=style_loss,
                         sliced_projections=16)
  keys = jax.random.split(jax.random.key(4), 3)
  content, style, x = (vgg.preprocess(jax.random.uniform(k, (size, size, 3),
                                                         dtype)) for k in keys)
  targets = losses.compute_targets(params, content, [style], None, spec,
                                   key=jax.random.key(6))
  weights = {'content': jnp.asarray(0.5, dtype), 'style': jnp.asarray(2.0, dtype),
             'tv': jnp.asarray(0.1, dtype),
             'style_pyramid': jnp.asarray(0.4, dtype),
             'content_layers': jnp.ones(1, dtype),
             'style_layers': jnp.asarray([0.2, 0.3, 0.5], dtype)}
  return spec, targets, weights, x


def test_loss_weights_are_traced(random_params):
  spec, targets, weights, x = _problem(random_params, 'seed')
  loss = jax.jit(losses.combined_loss, static_argnums=4)
  _, terms = loss(x, random_params, targets, weights, spec)
  assert set(terms) == {'content', 'style', 'tv', 'total'}
  # Doubling the style weight doubles the style term only, without a retrace.
  _, terms2 = loss(x, random_params, targets,
                   dict(weights, style=weights['style'] * 2), spec)
  assert loss._cache_size() == 1
  np.testing.assert_allclose(terms2['style'], 2 * terms['style'], rtol=1e-5)
  np.testing.assert_allclose(terms2['content'], terms['content'], rtol=1e-5)


def _assert_gradient_matches_central_differences(f, x, eps):
  """<grad f(x), v> equals (f(x + eps v) - f(x - eps v)) / 2 eps, 3 random v."""
  g = jax.grad(f)(x)
  assert g.dtype == jnp.float64
  for seed in range(3):
    v = jax.random.normal(jax.random.key(10 + seed), x.shape, jnp.float64)
    fd = (f(x + eps * v) - f(x - eps * v)) / (2 * eps)
    np.testing.assert_allclose(float(jnp.vdot(g, v)), float(fd), rtol=1e-5)


@pytest.mark.parametrize('normalization', losses.NORMALIZATIONS)
def test_gradient_matches_finite_differences_float64(random_params,
                                                     normalization):
  with jax.enable_x64(True):
    params = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), random_params)
    spec, targets, weights, x = _problem(params, normalization, jnp.float64,
                                         size=16)
    f = lambda y: losses.combined_loss(y, params, targets, weights, spec)[0]
    _assert_gradient_matches_central_differences(f, x, eps=1e-4)


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
        0.25 * only1['style'][layer] + 0.75 * only2['style'][layer], rtol=1e-5,
        atol=1e-6)


# --- Style loss variants: 'mean_cov' and 'sliced_wasserstein'.


def _np_mean_cov(f):
  flat = f.reshape(-1, f.shape[-1]).astype(np.float64)
  return flat.mean(0), np.cov(flat.T, bias=True)


def _np_sliced(fx, fs, directions):
  """Reference sliced W2 (times the style's mean squared projection)."""
  px = np.sort(fx.reshape(-1, fx.shape[-1]) @ directions, axis=0)
  ps = np.sort(fs.reshape(-1, fs.shape[-1]) @ directions, axis=0)
  n, m = px.shape[0], ps.shape[0]
  q = np.stack([np.interp((np.arange(n) + 0.5) / n, (np.arange(m) + 0.5) / m,
                          ps[:, p]) for p in range(ps.shape[1])], axis=1)
  return np.mean((px - q) ** 2) * np.mean(q ** 2)


def test_loss_spec_rejects_unknown_style_loss():
  with pytest.raises(ValueError, match='style_loss'):
    losses.LossSpec(('block1_conv1',), ('block1_conv1',), style_loss='gatys')
  assert losses.LossSpec(('block1_conv1',), ()).style_loss == 'gram'
  assert set(losses.STYLE_LOSSES) == {'gram', 'mean_cov', 'sliced_wasserstein'}


def test_mean_cov_layer_loss_matches_numpy(feats):
  x, s = feats
  mu_x, cov_x = _np_mean_cov(x)
  mu_s, cov_s = _np_mean_cov(s)
  mean, cov = losses.feature_mean_cov(jnp.asarray(s))
  np.testing.assert_allclose(mean, mu_s, rtol=1e-5)
  np.testing.assert_allclose(cov, cov_s, rtol=1e-4, atol=1e-7)
  ref = (np.mean((cov_x - cov_s) ** 2) +
         2 * np.mean(mu_s ** 2) * np.mean((mu_x - mu_s) ** 2))
  target = {'mean': mean, 'cov': cov}
  got = mean_cov_layer_loss(jnp.asarray(x), target, 'normalized')
  np.testing.assert_allclose(got, ref, rtol=1e-4)
  got_seed = mean_cov_layer_loss(jnp.asarray(x), target, 'seed')
  np.testing.assert_allclose(got_seed, ref / 4, rtol=1e-4)


def test_mean_cov_is_zero_for_the_same_statistics(feats):
  x, _ = feats
  mu = x.reshape(-1, 3).mean(0)
  # Point reflection through the mean: different features, same mean and
  # covariance.
  mirrored = 2 * mu - x
  mean, cov = losses.feature_mean_cov(jnp.asarray(mirrored))
  got = mean_cov_layer_loss(jnp.asarray(x), {'mean': mean, 'cov': cov},
                                   'normalized')
  assert float(got) < 1e-12
  # For features of zero mean it is the normalised Gram loss.
  y, z = x - mu, (x - mu)[::-1] * 1.5
  target = dict(zip(('mean', 'cov'), losses.feature_mean_cov(jnp.asarray(z))))
  np.testing.assert_allclose(
      mean_cov_layer_loss(jnp.asarray(y), target, 'normalized'),
      style_layer_loss(jnp.asarray(y), losses.gram_matrix(z, True),
                              'normalized'), rtol=1e-4)


def test_resample_quantiles():
  values = jnp.asarray([[0.0, 10.0], [1.0, 20.0], [2.0, 30.0], [3.0, 40.0]])
  np.testing.assert_array_equal(losses.resample_quantiles(values, 4), values)
  # Probabilities 1/8, 3/8, 5/8, 7/8 -> 1/4, 3/4: halfway between samples.
  np.testing.assert_allclose(losses.resample_quantiles(values, 2),
                             [[0.5, 15.0], [2.5, 35.0]])
  # Beyond the outer samples the quantile function is held constant.
  np.testing.assert_allclose(losses.resample_quantiles(values[:2], 4)[:, 0],
                             [0.0, 0.25, 0.75, 1.0])


def _sliced_target(f, spec, key, x_hw):
  term = losses.SlicedWasserstein.from_spec(spec)
  f = jnp.asarray(f)
  prepared = term.prepare('block1_conv1', f.shape[-1], key, f.dtype)
  return term.target('block1_conv1',
                     term.statistic('block1_conv1', f, prepared, True),
                     prepared, x_hw)


def test_sliced_wasserstein_zero_same_positive_other_permutation_invariant():
  spec = losses.LossSpec((), ('block1_conv1',), style_loss='sliced_wasserstein',
                         normalization='normalized', sliced_projections=8)
  rng = np.random.default_rng(2)
  x = rng.random((5, 4, 6)).astype(np.float32)
  s = (rng.random((7, 3, 6)) ** 2).astype(np.float32)  # 21 positions, not 20
  key = jax.random.key(3)
  loss = lambda f, t: float(sliced_wasserstein_layer_loss(
      jnp.asarray(f), t, 'normalized'))

  target_x = _sliced_target(x, spec, key, (5, 4))
  directions = np.asarray(target_x['directions'])
  assert directions.shape == (6, 8)
  np.testing.assert_allclose(np.linalg.norm(directions, axis=0), 1, rtol=1e-5)
  # The same feature set, in any order of positions, is at distance 0.
  perm = rng.permutation(20)
  shuffled = x.reshape(20, 6)[perm].reshape(5, 4, 6)
  assert loss(x, target_x) == 0.0
  assert loss(shuffled, target_x) < 1e-10
  # Another set: positive, as in numpy, and still blind to the order.
  target_s = _sliced_target(s, spec, key, (5, 4))
  np.testing.assert_array_equal(target_s['directions'], directions)
  assert target_s['quantiles'].shape == (20, 8)
  ref = _np_sliced(x.astype(np.float64), s, directions.astype(np.float64))
  assert ref > 1e-3
  np.testing.assert_allclose(loss(x, target_s), ref, rtol=1e-4)
  np.testing.assert_allclose(loss(shuffled, target_s), ref, rtol=1e-4)
  seed = sliced_wasserstein_layer_loss(jnp.asarray(x), target_s, 'seed')
  np.testing.assert_allclose(seed, ref / 4, rtol=1e-4)
  # Targets for another image size do not fit: a clear error, not a broadcast.
  with pytest.raises(ValueError, match='positions'):
    loss(x, _sliced_target(s, spec, key, (4, 4)))


def test_sliced_wasserstein_needs_a_key(random_params):
  spec = losses.LossSpec(('block1_conv1',), ('block1_conv1',),
                         style_loss='sliced_wasserstein')
  image = jnp.zeros((8, 8, 3))
  with pytest.raises(ValueError, match='key'):
    losses.compute_targets(random_params, image, [image], None, spec)


def test_sliced_wasserstein_directions_are_fixed_per_layer(random_params):
  spec = losses.LossSpec(('block1_conv1',), ('block1_conv1', 'block2_conv1'),
                         style_loss='sliced_wasserstein', sliced_projections=4)
  only2 = losses.LossSpec(('block1_conv1',), ('block2_conv1',),
                          style_loss='sliced_wasserstein', sliced_projections=4)
  k1, k2 = jax.random.split(jax.random.key(8))
  content = jax.random.normal(k1, (16, 12, 3))
  style = jax.random.normal(k2, (20, 20, 3))
  t = losses.compute_targets(random_params, content, [style], None, spec,
                             key=jax.random.key(1))
  t2 = losses.compute_targets(random_params, content, [style], None, only2,
                              key=jax.random.key(1))
  # Quantiles sampled at x's (= the content's) positions at each layer.
  assert t['style']['block1_conv1']['quantiles'].shape == (16 * 12, 4)
  assert t['style']['block2_conv1']['quantiles'].shape == (8 * 6, 4)
  np.testing.assert_array_equal(t['style']['block2_conv1']['directions'],
                                t2['style']['block2_conv1']['directions'])


@pytest.mark.parametrize('style_loss', ['mean_cov', 'sliced_wasserstein'])
def test_variant_gradient_matches_finite_differences_float64(random_params,
                                                             style_loss):
  with jax.enable_x64(True):
    params = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), random_params)
    spec, targets, weights, x = _problem(params, 'seed', jnp.float64, size=16,
                                         style_loss=style_loss)
    weights = dict(weights, content=jnp.float64(0.0), tv=jnp.float64(0.0))
    f = lambda y: losses.combined_loss(y, params, targets, weights, spec)[0]
    # eps smaller than above: the sorted projections are only piecewise smooth
    # (kinks where two positions swap order) and at 1e-4 some swaps fall
    # inside the difference interval.
    _assert_gradient_matches_central_differences(f, x, eps=1e-6)


@pytest.mark.parametrize('style_loss', losses.STYLE_LOSSES)
def test_blend_one_zero_equals_the_single_style(random_params, style_loss):
  spec = losses.LossSpec(('block1_conv1',), ('block1_conv1', 'block2_conv1'),
                         style_loss=style_loss, sliced_projections=8)
  k1, k2, k3 = jax.random.split(jax.random.key(5), 3)
  content = jax.random.normal(k1, (16, 16, 3))
  s1 = jax.random.normal(k2, (16, 16, 3))
  s2 = jax.random.normal(k3, (24, 20, 3)) * 3
  key = jax.random.key(2)
  blend = losses.compute_targets(random_params, content, [s1, s2],
                                 jnp.array([1.0, 0.0]), spec, key=key)
  only1 = losses.compute_targets(random_params, content, [s1], None, spec,
                                 key=key)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6,
                                                       atol=1e-6),
               blend['style'], only1['style'])


def test_mean_cov_blend_is_the_mixture_moments(random_params):
  spec = losses.LossSpec(('block1_conv1',), ('block1_conv1',),
                         style_loss='mean_cov')
  k1, k2 = jax.random.split(jax.random.key(9))
  s1 = jax.random.normal(k1, (12, 12, 3))
  s2 = jax.random.normal(k2, (12, 12, 3)) * 2 + 1
  blend = losses.compute_targets(random_params, s1, [s1, s2],
                                 jnp.array([0.5, 0.5]), spec)
  # With equal sizes and weights, the mixture is the union of the features.
  f1, f2 = (vgg.extract_features(random_params, s, ['block1_conv1'])
            ['block1_conv1'] for s in (s1, s2))
  mean, cov = losses.feature_mean_cov(jnp.concatenate([f1, f2], axis=0))
  np.testing.assert_allclose(blend['style']['block1_conv1']['mean'], mean,
                             rtol=1e-5)
  np.testing.assert_allclose(blend['style']['block1_conv1']['cov'], cov,
                             rtol=1e-4, atol=1e-4 * float(jnp.max(cov)))


def test_sliced_blend_averages_quantile_functions(random_params):
  spec = losses.LossSpec(('block1_conv1',), ('block1_conv1',),
                         style_loss='sliced_wasserstein', sliced_projections=4)
  k1, k2, k3 = jax.random.split(jax.random.key(11), 3)
  content = jax.random.normal(k1, (12, 12, 3))
  s1 = jax.random.normal(k2, (12, 16, 3))
  s2 = jax.random.normal(k3, (10, 10, 3)) * 2
  key = jax.random.key(0)
  t = lambda styles, w: losses.compute_targets(
      random_params, content, styles, w, spec, key=key)['style']['block1_conv1']
  blend = t([s1, s2], jnp.array([0.25, 0.75]))
  only1, only2 = t([s1], None), t([s2], None)
  np.testing.assert_allclose(
      blend['quantiles'],
      0.25 * only1['quantiles'] + 0.75 * only2['quantiles'], rtol=1e-5,
      atol=1e-5)
  # An average of increasing functions is increasing: still a quantile
  # function.
  assert bool(jnp.all(jnp.diff(blend['quantiles'], axis=0) >= 0))


def test_halve_is_the_mean_of_2x2_blocks():
  x = np.random.default_rng(0).random((7, 6, 3)).astype(np.float32)
  want = np.zeros((3, 3, 3), np.float32)
  for i in range(3):
    for j in range(3):
      want[i, j] = x[2 * i:2 * i + 2, 2 * j:2 * j + 2].mean(axis=(0, 1))
  np.testing.assert_allclose(losses.halve(jnp.asarray(x)), want, rtol=1e-6)


@pytest.mark.parametrize('hw,coarsest,min_side,levels', [
    ((384, 512), 256, 16, 2), ((768, 1024), 256, 16, 3),
    ((3072, 4096), 256, 16, 5), ((362, 362), 256, 16, 1),
    ((363, 363), 256, 16, 2), ((96, 128), 256, 16, 1),
    ((768, 1024), 0, 16, 1),        # 0 turns the pyramid off
    ((40, 1024), 256, 16, 2),       # a panorama: 20 px, then 10 < 16
])
def test_style_pyramid_levels(hw, coarsest, min_side, levels):
  assert losses.style_pyramid_levels(hw, coarsest, min_side) == levels


@pytest.mark.parametrize('style_loss', losses.STYLE_LOSSES)
def test_style_pyramid_adds_the_halved_levels(random_params, style_loss):
  # The pyramid's style term is the picture's plus, per level k, the style
  # loss of the picture halved k times against the style image halved k
  # times, each weighted by weights['style_pyramid'] (0.4 here).
  spec, targets, weights, x = _problem(random_params, 'normalized',
                                       style_loss=style_loss, size=48)
  pyramid = dataclasses.replace(spec, style_levels=3)
  keys = jax.random.split(jax.random.key(4), 3)
  content, style, _ = (vgg.preprocess(jax.random.uniform(k, (48, 48, 3)))
                       for k in keys)
  pyramid_targets = losses.compute_targets(random_params, content, [style],
                                           None, pyramid, key=jax.random.key(6))
  _, got = losses.combined_loss(x, random_params, pyramid_targets, weights,
                                pyramid)
  _, base = losses.combined_loss(x, random_params, targets, weights, spec)
  want = base['style']
  style_only = dict(weights, content=0.0, tv=0.0)
  for k in (1, 2):
    half = lambda a: functools.reduce(lambda b, _: losses.halve(b), range(k), a)
    level_targets = losses.compute_targets(random_params, half(content),
                                           [half(style)], None, spec,
                                           key=jax.random.key(6))
    _, level = losses.combined_loss(half(x), random_params, level_targets,
                                    style_only, spec)
    assert float(level['style']) > 0
    want = want + 0.4 * level['style']
  np.testing.assert_allclose(got['style'], want, rtol=1e-5)
  np.testing.assert_allclose(got['content'], base['content'], rtol=1e-6)
  np.testing.assert_allclose(got['tv'], base['tv'], rtol=1e-6)


# --- A new term, written exactly as docs/loss_terms.md says.


@dataclasses.dataclass(frozen=True)
class FeatureMean(losses.Term):
  """Matches each layer's mean feature vector float32[C] to the style's."""
  key = 'style'
  reference = 'styles'
  pyramid = True

  def sums(self, layer, f, inside, target):
    return {'total': jnp.sum(f, axis=(0, 1))}

  def finish(self, layer, sums, positions, target):
    return sums['total'] / positions

  def distance(self, layer, mean, target, positions):
    return jnp.mean(jnp.square(mean - target))


# Every registered style term (with content and TV), and the doc's new term.
# 37 x 27 px in 8 px tiles (block3: stride 4, halo 16 px): 5 x 4 tiles, the
# last ones overhanging, odd sizes at every level (37 -> 18 -> 9); 2 pyramid
# levels; pooling and normalization vary across the cases.
_EXACTNESS_CASES = [(name, ('max', 'avg')[i % 2], losses.NORMALIZATIONS[i // 2 % 2])
                    for i, name in enumerate([*losses.STYLE_TERMS,
                                              'feature_mean'])]


@pytest.mark.parametrize('style_loss,pooling,normalization', _EXACTNESS_CASES)
def test_every_term_is_exact_on_every_path(random_params, monkeypatch,
                                           exact_on_every_path, style_loss,
                                           pooling, normalization):
  monkeypatch.setitem(losses.STYLE_TERMS, 'feature_mean', FeatureMean)
  keys = jax.random.split(jax.random.key(7), 3)
  content, x = (vgg.preprocess(jax.random.uniform(k, (37, 27, 3)))
                for k in keys[:2])
  style = vgg.preprocess(jax.random.uniform(keys[2], (46, 22, 3)))
  spec = losses.LossSpec(('block3_conv2',), ('block1_conv1', 'block2_conv1',
                                             'block3_conv1'),
                         pooling, normalization, style_loss,
                         sliced_projections=8, tile=8, style_levels=2)
  weights = {'content': 1.0, 'style': 1.0, 'tv': 0.0, 'style_pyramid': 0.6,
             'content_layers': jnp.ones(1),
             'style_layers': jnp.linspace(1.0, 2.0, 3)}
  # Content and style of equal size in the gradient; no TV, which is the
  # same on every path by construction (it reads pixels only).
  targets = losses.compute_targets(random_params, content, [style], None, spec,
                                   key=jax.random.key(8))
  _, terms = losses.combined_loss(x, random_params, targets, weights, spec)
  weights = dict(weights, content=1 / terms['content'], style=1 / terms['style'])
  plain = exact_on_every_path(random_params, spec, content, [style], x,
                              weights, key=jax.random.key(8))
  assert float(plain['style']) > 0 and float(plain['content']) > 0


@pytest.mark.slow
def test_exact_at_the_default_depth(random_params, exact_on_every_path):
  # The default layers (down to block5_conv2: stride 16, halo 96 px) at
  # 100 x 75 px in 64 px tiles (2 x 2, the last ones overhanging).
  keys = jax.random.split(jax.random.key(7), 3)
  content, x, style = (vgg.preprocess(jax.random.uniform(k, (100, 75, 3)))
                       for k in keys)
  spec = losses.LossSpec(('block5_conv2',), (
      'block1_conv1', 'block2_conv1', 'block3_conv1', 'block4_conv1',
      'block5_conv1'), tile=64)
  weights = {'content': 1.0, 'style': 1e3, 'tv': 0.0, 'style_pyramid': 1.0,
             'content_layers': jnp.ones(1), 'style_layers': jnp.ones(5)}
  exact_on_every_path(random_params, spec, content, [style], x, weights,
                      key=jax.random.key(8))
