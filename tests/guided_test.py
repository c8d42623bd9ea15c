"""Tests for nst_jax/guided.py: region-guided style statistics."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nst_jax import guided
from nst_jax import losses


@pytest.fixture(scope='module')
def data():
  """Features float32[6, 7, 5] (positive, like post-ReLU) and soft masks
  float32[6, 7, 3] summing to 1, one region empty in the top rows."""
  rng = np.random.default_rng(0)
  features = rng.gamma(2.0, 1.0, (6, 7, 5)).astype(np.float32) + 3.0
  raw = rng.uniform(size=(6, 7, 3))
  raw[:2, :, 2] = 0.0
  masks = (raw / raw.sum(-1, keepdims=True)).astype(np.float32)
  return features, masks


def _parts(array: np.ndarray, cuts=(9, 25)) -> list[np.ndarray]:
  """Positions [h, w, .] flattened and cut into three parts (tiles)."""
  flat = array.reshape(-1, array.shape[-1])
  return np.split(flat, cuts)


def test_guided_gram_is_the_masked_gram_over_its_weight(data):
  features, masks = data
  f = features.reshape(-1, 5).astype(np.float64)
  t = masks.reshape(-1, 3).astype(np.float64)
  gram = np.asarray(guided.guided_gram(features, masks))
  assert gram.shape == (3, 5, 5)
  for r in range(3):
    masked = f * t[:, r:r + 1]
    np.testing.assert_allclose(gram[r], masked.T @ masked / np.sum(t[:, r] ** 2),
                               rtol=1e-5)


def test_guided_gram_of_ones_is_the_normalised_gram(data):
  features, _ = data
  ones = np.ones((6, 7, 1), np.float32)
  np.testing.assert_allclose(
      guided.guided_gram(features, ones)[0],
      losses.gram_matrix(jnp.asarray(features), normalize=True), rtol=1e-6)


def test_guided_gram_sums_add_over_parts(data):
  features, masks = data
  whole_sums, whole_weight = guided.guided_gram_sums(features, masks)
  parts = [guided.guided_gram_sums(f, t)
           for f, t in zip(_parts(features), _parts(masks))]
  np.testing.assert_allclose(sum(p[0] for p in parts), whole_sums, rtol=1e-5)
  np.testing.assert_allclose(sum(p[1] for p in parts), whole_weight, rtol=1e-6)


def test_guided_mean_cov_is_the_weighted_mean_and_covariance(data):
  features, masks = data
  f = features.reshape(-1, 5).astype(np.float64)
  t = masks.reshape(-1, 3).astype(np.float64)
  mean, cov = guided.guided_mean_cov(features, masks)
  for r in range(3):
    np.testing.assert_allclose(mean[r], np.average(f, axis=0, weights=t[:, r]),
                               rtol=1e-5)
    np.testing.assert_allclose(
        cov[r], np.cov(f.T, aweights=t[:, r], bias=True), rtol=1e-4,
        atol=1e-6)


def test_guided_mean_cov_of_ones_is_feature_mean_cov(data):
  features, _ = data
  mean, cov = guided.guided_mean_cov(features, np.ones((6, 7, 1), np.float32))
  want_mean, want_cov = losses.feature_mean_cov(jnp.asarray(features))
  np.testing.assert_allclose(mean[0], want_mean, rtol=1e-6)
  np.testing.assert_allclose(cov[0], want_cov, rtol=1e-5, atol=1e-6)


def test_sort_with_weights_of_parts_is_the_wholes(data):
  features, masks = data
  directions = losses.random_directions(jax.random.key(0), 5, 4)
  values, weights = guided.guided_sorted_projections(features, masks,
                                                     directions)
  assert values.shape == (42, 4) and weights.shape == (3, 42, 4)
  np.testing.assert_allclose(
      values, losses.sorted_projections(jnp.asarray(features), directions),
      rtol=1e-6)
  # Every region's weights are its mask's values, moved with the sort.
  for p in range(4):
    np.testing.assert_allclose(np.sort(weights[:, :, p], axis=1),
                               np.sort(masks.reshape(-1, 3).T, axis=1))
  # Tiles: projections gathered back in order, then sorted whole.
  projections = jnp.concatenate([
      jnp.matmul(f, directions, precision='highest')
      for f in _parts(features)])
  tiled = guided.sort_with_weights(projections, masks)
  np.testing.assert_array_equal(tiled[0], values)
  np.testing.assert_array_equal(tiled[1], weights)


def test_weighted_quantiles_repeat_each_value_by_its_weight():
  rng = np.random.default_rng(1)
  values = np.sort(rng.normal(size=(8, 2)), axis=0).astype(np.float32)
  counts = rng.integers(0, 4, size=(8, 2))
  counts[0] = 0  # the smallest value has no weight: never a quantile
  for p in range(2):
    total = counts[:, p].sum()
    got = guided.weighted_quantiles(values[:, p:p + 1],
                                    counts[:, p:p + 1].astype(np.float32),
                                    int(total))
    np.testing.assert_array_equal(got[:, 0], np.repeat(values[:, p],
                                                       counts[:, p]))


def test_weighted_quantiles_of_ones_are_the_sorted_values():
  values = np.sort(np.random.default_rng(2).normal(size=(10, 3)), 0)
  ones = np.ones_like(values)
  np.testing.assert_array_equal(
      guided.weighted_quantiles(values.astype(np.float32), ones, 10),
      values.astype(np.float32))


def test_nothing_outside_a_region_reaches_its_quantiles(data):
  features, masks = data
  hard = np.zeros_like(masks[..., :2])
  hard[:3, ..., 0] = 1.0
  hard[3:, ..., 1] = 1.0
  features = features.copy()
  features[3:] += 100.0  # region 1 is far above region 0
  directions = jnp.ones((5, 1)) / jnp.sqrt(5.0)
  values, weights = guided.guided_sorted_projections(features, hard,
                                                     directions)
  q0 = guided.weighted_quantiles(values, weights[0], 50)
  q1 = guided.weighted_quantiles(values, weights[1], 50)
  assert float(q0.max()) < 100.0 < float(q1.min())
  top = np.sort((features[:3].reshape(-1, 5) @ np.asarray(directions))[:, 0])
  assert float(q0.max()) == pytest.approx(top[-1]) and \
      float(q0.min()) == pytest.approx(top[0])


def test_guided_sliced_distance_of_ones_is_the_mean_squared_difference(data):
  features, _ = data
  directions = losses.random_directions(jax.random.key(1), 5, 6)
  values, weights = guided.guided_sorted_projections(
      features, np.ones((6, 7, 1), np.float32), directions)
  target = np.random.default_rng(3).normal(size=(42, 6)).astype(np.float32)
  target.sort(axis=0)
  got = guided.guided_sliced_distance(values, weights[0], target)
  want = np.mean((np.asarray(values) - target) ** 2)
  assert float(got) == pytest.approx(want, rel=1e-5)


def test_guided_sliced_distance_by_its_definition(data):
  features, masks = data
  directions = losses.random_directions(jax.random.key(2), 5, 3)
  values, weights = guided.guided_sorted_projections(features, masks,
                                                     directions)
  target = np.sort(np.random.default_rng(4).normal(size=(16, 3)), 0)
  for r in range(3):
    got = guided.guided_sliced_distance(values, weights[r],
                                        target.astype(np.float32))
    s, w = np.asarray(values, np.float64), np.asarray(weights[r], np.float64)
    per_direction = []
    for p in range(3):
      total, before, acc = w[:, p].sum(), 0.0, 0.0
      for i in range(42):
        mid = (before + w[i, p] / 2) / total
        before += w[i, p]
        acc += w[i, p] * (s[i, p] - target[min(int(mid * 16), 15), p]) ** 2
      per_direction.append(acc / total)
    assert float(got) == pytest.approx(np.mean(per_direction), rel=1e-5)


def test_gradients_are_finite_and_zero_outside_the_region(data):
  features, masks = data
  hard = np.zeros_like(masks[..., :2])
  hard[:3, ..., 0] = 1.0
  hard[3:, ..., 1] = 1.0
  directions = losses.random_directions(jax.random.key(3), 5, 4)
  target = jnp.sort(jax.random.normal(jax.random.key(4), (20, 4)), axis=0)

  def loss(f):
    values, weights = guided.guided_sorted_projections(f, hard, directions)
    gram = guided.guided_gram(f, hard)[0]
    mean, cov = guided.guided_mean_cov(f, hard)
    return (guided.guided_sliced_distance(values, weights[0], target)
            + jnp.sum(gram) + jnp.sum(cov[0]) + jnp.sum(mean[0]))

  grad = np.asarray(jax.jit(jax.grad(loss))(jnp.asarray(features)))
  assert np.all(np.isfinite(grad))
  assert np.abs(grad[:3]).max() > 0
  np.testing.assert_array_equal(grad[3:], 0.0)


def test_mismatched_shapes_are_refused(data):
  features, masks = data
  with pytest.raises(ValueError, match='cover different positions'):
    guided.guided_gram(features, masks[:3])
