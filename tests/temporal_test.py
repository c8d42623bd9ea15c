"""Tests for nst_jax.temporal against plain numpy sums."""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nst_jax import flow
from nst_jax import losses
from nst_jax import temporal
from nst_jax import vgg


def _rng(seed=0):
  return np.random.default_rng(seed)


def test_temporal_loss_is_the_confidence_weighted_mean_square():
  rng = _rng()
  x, warped = rng.random((2, 5, 6, 3), dtype=np.float32)
  c = (rng.random((5, 6)) > 0.3).astype(np.float32)
  want = np.sum(c[..., None] * (x - warped) ** 2) / (5 * 6 * 3)
  assert float(temporal.temporal_loss(x, warped, c)) == pytest.approx(want,
                                                                     rel=1e-6)
  # D counts every pixel, not only the confident ones.
  assert float(temporal.temporal_loss(x, warped, np.ones((5, 6)))) > want


def test_temporal_loss_gradient_pulls_x_toward_the_warped_frame():
  rng = _rng(1)
  x, warped = rng.random((2, 4, 4, 3), dtype=np.float32)
  c = np.zeros((4, 4), np.float32)
  c[1, 2] = 1.0
  grad = np.asarray(jax.grad(temporal.temporal_loss)(x, warped, c))
  want = np.zeros_like(x)
  want[1, 2] = 2 * (x[1, 2] - warped[1, 2]) / x.size
  np.testing.assert_allclose(grad, want, rtol=1e-6, atol=1e-9)


def test_long_term_confidences_keep_each_pixel_for_the_nearest_neighbour():
  # Pixels: seen by j=1 only, j=2 only, both, j=4 only, partly (0.5, 0.8, 1).
  c = np.array([[1, 0, 1, 0, 0.5],
                [0, 1, 1, 0, 0.8],
                [0, 0, 1, 1, 1.0]], np.float32)
  got = np.asarray(temporal.long_term_confidences(c))
  want = np.array([[1, 0, 1, 0, 0.5],
                   [0, 1, 0, 0, 0.3],
                   [0, 0, 0, 1, 0.0]], np.float32)
  np.testing.assert_allclose(got, want, atol=1e-7)


def test_long_term_confidences_match_the_paper_formula():
  rng = _rng(2)
  c = (rng.random((4, 3, 5, 6)) > 0.4).astype(np.float32)
  want = np.stack([np.maximum(c[j] - c[:j].sum(axis=0), 0)
                   for j in range(4)])
  np.testing.assert_array_equal(temporal.long_term_confidences(c), want)


def test_long_term_loss_sums_the_terms_with_combined_weights():
  rng = _rng(3)
  x = rng.random((4, 5, 3), dtype=np.float32)
  warped = rng.random((3, 4, 5, 3), dtype=np.float32)
  c = (rng.random((3, 4, 5)) > 0.5).astype(np.float32)
  weights = [np.maximum(c[j] - c[:j].sum(axis=0), 0) for j in range(3)]
  want = sum(np.sum(w[..., None] * (x - v) ** 2) / x.size
             for w, v in zip(weights, warped))
  got = temporal.long_term_temporal_loss(x, warped, c)
  assert float(got) == pytest.approx(want, rel=1e-6)


def test_temporal_error_is_the_masked_mean_over_frames():
  rng = _rng(4)
  frames = rng.random((4, 5, 6, 3), dtype=np.float32)
  shift = np.zeros((4, 5, 6, 2), np.float32)
  shift[..., 0] = 1.0  # Frame t's pixel (y, x) was at (y, x + 1) before.
  c = (rng.random((4, 5, 6)) > 0.5).astype(np.float32)
  c[..., -1] = 0  # Those would leave the frame.
  c[2] = 0  # A frame with no confident pixel does not count.
  per_frame = []
  for t in (1, 3):
    warped = frames[t - 1][:, np.minimum(np.arange(6) + 1, 5)]
    per_frame.append(np.sum(c[t][..., None] * (frames[t] - warped) ** 2)
                     / (3 * c[t].sum()))
  got = temporal.temporal_error(frames, shift, c)
  assert float(got) == pytest.approx(np.mean(per_frame), rel=1e-5)


def test_temporal_error_is_zero_for_frames_that_follow_the_flow():
  rng = _rng(5)
  first = rng.random((6, 8, 3), dtype=np.float32)
  backward = np.zeros((3, 6, 8, 2), np.float32)
  backward[..., 1] = -1.0  # Content moves down one row per frame.
  frames = [first]
  for _ in range(2):
    frames.append(np.asarray(flow.warp(frames[-1], backward[0])))
  c = np.ones((3, 6, 8), np.float32)
  c[:, 0] = 0  # The new top row.
  assert float(temporal.temporal_error(np.stack(frames), backward, c)) == 0.0
  flicker = np.stack(frames) + np.array([0, 0.1, 0], np.float32)[:, None,
                                                                 None, None]
  # +0.1 then -0.1: a squared difference of 0.01 everywhere.
  assert float(temporal.temporal_error(flicker, backward, c)) == pytest.approx(
      0.01, rel=1e-4)


def test_temporal_error_without_any_neighbour_is_nan():
  frames = jnp.zeros((1, 4, 4, 3))
  assert np.isnan(float(temporal.temporal_error(
      frames, jnp.zeros((1, 4, 4, 2)), jnp.ones((1, 4, 4)))))


# --- The term record: on every memory path, and mapped over frames.


class _Frame(NamedTuple):
  """A 32 px frame's problem: its images (VGG inputs), loss spec, targets
  (with two neighbours) and weights."""
  content: jax.Array
  x: jax.Array
  style: jax.Array
  spec: losses.LossSpec
  targets: dict
  weights: dict


def _frame(random_params, key) -> _Frame:
  keys = jax.random.split(key, 4)
  content, x, style = (vgg.preprocess(jax.random.uniform(k, (32, 32, 3)))
                       for k in keys[:3])
  spec = losses.LossSpec(('block2_conv2',), ('block1_conv1', 'block2_conv1'),
                         tile=8, extra_terms=(temporal.Temporal(),))
  targets = losses.compute_targets(random_params, content, [style], None, spec)
  warped = x + 20.0 * jax.random.normal(keys[3], (2, 32, 32, 3))
  confidence = jnp.stack([jnp.ones((32, 32)).at[:16].set(0.0),
                          jnp.ones((32, 32))])
  targets['temporal'] = {'warped': warped, 'confidence': confidence}
  weights = {'content': 1.0, 'style': 1e3, 'tv': 0.0, 'temporal': 50.0,
             'content_layers': jnp.ones(1),
             'style_layers': jnp.asarray([1.0, 2.0])}
  return _Frame(content, x, style, spec, targets, weights)


def test_temporal_term_is_the_paper_loss_in_unit_pixels(random_params):
  f = _frame(random_params, jax.random.key(3))
  x, targets = f.x, f.targets
  _, terms = losses.combined_loss(x, random_params, targets, f.weights, f.spec)
  # Frame 1 (gap 2) counts only where frame 0 (gap 1) has no confidence.
  diff = (np.asarray(x)[None] - np.asarray(targets['temporal']['warped'])) / 255
  mask = np.zeros((2, 32, 32))
  mask[0, 16:] = 1.0
  mask[1, :16] = 1.0
  want = 50.0 * np.sum(mask[..., None] * diff ** 2) / x.size
  np.testing.assert_allclose(terms['temporal'], want, rtol=1e-5)
  assert float(terms['total']) > float(terms['temporal']) > 0


def test_temporal_term_is_exact_on_every_memory_path(random_params,
                                                     exact_on_every_path):
  f = _frame(random_params, jax.random.key(4))
  plain = exact_on_every_path(random_params, f.spec, f.content, [f.style], f.x,
                              f.weights,
                              extra_targets={'temporal': f.targets['temporal']})
  assert float(plain['temporal']) > 0


def test_temporal_term_maps_over_frames_with_their_own_neighbours(
    random_params):
  frames = [_frame(random_params, jax.random.key(k)) for k in (5, 6)]
  spec, weights = frames[0].spec, frames[0].weights
  stack = lambda *leaves: jnp.stack(leaves)
  per_frame = jax.tree.map(stack, *[f.targets['temporal'] for f in frames])
  shared = {k: v for k, v in frames[0].targets.items() if k != 'temporal'}
  xs = jnp.stack([f.x for f in frames])
  mapped = jax.jit(jax.vmap(lambda x, t, p: losses.combined_loss(
      x, p, {**shared, 'temporal': t}, weights, spec)[1],
                            in_axes=(0, 0, None)))(xs, per_frame, random_params)
  for i, f in enumerate(frames):
    _, one = losses.combined_loss(f.x, random_params,
                                  {**shared, 'temporal': f.targets['temporal']},
                                  weights, spec)
    np.testing.assert_allclose(mapped['temporal'][i], one['temporal'],
                               rtol=1e-5)
  assert abs(float(mapped['temporal'][0] - mapped['temporal'][1])) > 1e-3


def test_two_sided_temporal_term_adds_each_sides_long_term_loss(
    random_params):
  f = _frame(random_params, jax.random.key(8))
  x, one_side = f.x, f.targets['temporal']
  flipped = {'warped': one_side['warped'][::-1],
             'confidence': one_side['confidence'][::-1]}
  both = {k: jnp.concatenate([one_side[k], flipped[k]]) for k in one_side}
  term = lambda t, sides: temporal.Temporal(sides=sides).loss(x, {}, t, None)
  np.testing.assert_allclose(term(both, 2),
                             term(one_side, 1) + term(flipped, 1), rtol=1e-6)
  # Each side combines nearest-first on its own: not one chain of four.
  assert abs(float(term(both, 2) - term(both, 1))) > 1e-6
